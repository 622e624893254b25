//! Where each service keeps its state and its socket.
//!
//! Defaults work with no configuration: state under `/var/lib/berth/<service>/`, sockets
//! at `/run/berth/<service>.sock`, kernel objects named after the instance `berth`.
//! Environment overrides: `BERTH_ROOT`, `BERTH_RUN`, `BERTH_INSTANCE`, and
//! `BERTH_<SERVICE>_SOCKET` (e.g. `BERTH_ENGINE_SOCKET`) for one socket.
use std::path::{Path, PathBuf};

/// The six services, each its own binary, socket and state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Engine,
    ImageStore,
    Supervisor,
    Network,
    Volume,
    LogRouter,
}

impl Service {
    pub const ALL: [Service; 6] = [
        Service::Engine,
        Service::ImageStore,
        Service::Supervisor,
        Service::Network,
        Service::Volume,
        Service::LogRouter,
    ];

    /// Short name used for directories, sockets and binaries (`berth-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Service::Engine => "engine",
            Service::ImageStore => "image-store",
            Service::Supervisor => "supervisor",
            Service::Network => "network",
            Service::Volume => "volume",
            Service::LogRouter => "log-router",
        }
    }

    fn env_prefix(self) -> String {
        format!("BERTH_{}", self.name().replace('-', "_").to_uppercase())
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Root of all durable state; each service uses `<root>/<service>/`.
    pub root: PathBuf,
    /// Sockets, shim sockets and network namespace files.
    pub run_dir: PathBuf,
    /// Prefix of every kernel object this engine makes (cgroups, links, nft tables).
    pub instance: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/var/lib/berth"),
            run_dir: PathBuf::from("/run/berth"),
            instance: "berth".to_string(),
        }
    }
}

impl Config {
    /// Defaults with the `BERTH_*` environment overrides applied.
    pub fn from_env() -> Config {
        let mut config = Config::default();
        if let Some(root) = env_path("BERTH_ROOT") {
            config.root = root;
        }
        if let Some(run) = env_path("BERTH_RUN") {
            config.run_dir = run;
        }
        if let Ok(instance) = std::env::var("BERTH_INSTANCE") {
            if !instance.is_empty() {
                config.instance = instance;
            }
        }
        config
    }

    pub fn state_dir(&self, service: Service) -> PathBuf {
        self.root.join(service.name())
    }

    pub fn socket(&self, service: Service) -> PathBuf {
        env_path(&format!("{}_SOCKET", service.env_prefix()))
            .unwrap_or_else(|| self.run_dir.join(format!("{}.sock", service.name())))
    }

    /// Plain Unix socket on which shims deliver container output to the log router.
    pub fn log_ingest_socket(&self) -> PathBuf {
        env_path("BERTH_LOG_INGEST_SOCKET")
            .unwrap_or_else(|| self.run_dir.join("log-router.ingest.sock"))
    }

    /// Directory of the shims' attach sockets.
    pub fn shim_dir(&self) -> PathBuf {
        self.run_dir.join("shim")
    }

    /// Directory where the network service bind-mounts container network namespaces.
    pub fn netns_dir(&self) -> PathBuf {
        self.run_dir.join("netns")
    }

    /// Parent cgroup of every container of this instance.
    pub fn cgroup_parent(&self) -> &str {
        &self.instance
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
