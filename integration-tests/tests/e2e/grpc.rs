//! Every service answers gRPC health checks and reflection on its Unix socket.
use berth_integration_tests::{Engine, SERVICES};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

fn grpc_name(service: &str) -> &'static str {
    match service {
        "engine" => "berth.engine.v1.Engine",
        "image-store" => "berth.image.v1.ImageStore",
        "supervisor" => "berth.supervisor.v1.Supervisor",
        "network" => "berth.network.v1.Network",
        "volume" => "berth.volume.v1.Volumes",
        "log-router" => "berth.logs.v1.LogRouter",
        other => panic!("unknown service {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_service_serves_health_and_reflection() {
    let engine = Engine::start();
    for service in SERVICES {
        let channel =
            berth_common::client::unix_channel(engine.run_dir.join(format!("{service}.sock")));
        let name = grpc_name(service);

        let mut health = HealthClient::new(channel.clone());
        for probe in ["", name] {
            let reply = health
                .check(HealthCheckRequest {
                    service: probe.to_string(),
                })
                .await
                .unwrap_or_else(|e| panic!("{service}: health of {probe:?}: {e}"));
            assert_eq!(
                reply.into_inner().status(),
                ServingStatus::Serving,
                "{service} {probe:?}"
            );
        }

        let mut reflection = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = reflection
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap_or_else(|e| panic!("{service}: reflection: {e}"))
            .into_inner();
        let reply = replies
            .message()
            .await
            .unwrap()
            .expect("a reflection reply");
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("{service}: unexpected reflection reply");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.iter().any(|n| n == name),
            "{service} does not list {name}: {names:?}"
        );
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
        // The services that publish events serve their log (ADR 16).
        let publishes = matches!(service, "image-store" | "supervisor" | "network" | "volume");
        assert_eq!(
            names.iter().any(|n| n == "berth.events.v1.Events"),
            publishes,
            "{service}: {names:?}"
        );
    }
}

/// The real grpcurl (installed by deploy/install-deps.sh) lists and calls a service.
#[test]
fn grpcurl_lists_and_calls_every_service() {
    let engine = Engine::start();
    for service in SERVICES {
        let socket = engine.run_dir.join(format!("{service}.sock"));
        let grpcurl = |args: &[&str]| {
            let out = std::process::Command::new("grpcurl")
                .args([
                    "-plaintext",
                    "-authority",
                    "localhost",
                    "-unix",
                    socket.to_str().unwrap(),
                ])
                .args(args)
                .output()
                .expect("grpcurl is installed by deploy/install-deps.sh");
            assert!(
                out.status.success(),
                "grpcurl {args:?} on {service}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let listed = grpcurl(&["list"]);
        assert!(
            listed.lines().any(|l| l == grpc_name(service)),
            "{service}: {listed}"
        );
        assert!(grpcurl(&["describe", grpc_name(service)]).contains("is a service"));
        assert!(grpcurl(&["grpc.health.v1.Health/Check"]).contains("SERVING"));
    }
    let version = std::process::Command::new("grpcurl")
        .args(["-plaintext", "-authority", "localhost", "-unix"])
        .arg(engine.run_dir.join("engine.sock"))
        .arg("berth.engine.v1.Engine/Version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains("\"apiVersion\""));
}
