//! The end-to-end tests against the real services, binaries and kernel, as one test binary:
//! one link instead of one per file keeps the test build small and fast. Each module is one
//! capability; tests in different modules run side by side, so each makes its own engine,
//! names and kernel objects and never changes the process's environment.
mod berthd;
mod cow;
mod etcd_client;
mod events;
mod grpc;
mod images;
mod images_more;
mod info;
mod interactive;
mod lifecycle;
mod lifecycle_more;
mod logs_awslogs;
mod logs_fluentd;
mod logs_json;
mod logs_syslog;
mod logs_syslog_tls;
mod multihost_harness;
mod network;
mod network_bridge;
mod overlay;
mod registry;
mod registry_more;
mod registry_skopeo;
mod restart;
mod run;
mod tls;
mod tracing;
mod volumes;
mod volumes_more;
