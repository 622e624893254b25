//! Services on TCP with mutual TLS (issue 9): certificates from deploy/certs.sh, the engine
//! and the image store listening on loopback next to their Unix sockets, the engine
//! reaching the image store through `[remote]`, the CLI through `--host tcp://`, and
//! clients without a valid certificate refused.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use berth_integration_tests::{busybox_image, stderr, stdout, Engine};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

fn certs_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/certs.sh")
}

fn make_certs(dir: &Path) {
    let out = Command::new(certs_script())
        .arg(dir)
        .arg("berth-test-host")
        .output()
        .expect("run deploy/certs.sh");
    assert!(
        out.status.success(),
        "certs.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A health check over TLS to `port` as `identity` (None: no client certificate).
async fn health_over_tls(
    port: u16,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca.to_path_buf())))
        .domain_name("127.0.0.1");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            read(cert.to_path_buf()),
            read(key.to_path_buf()),
        ));
    }
    let channel: Channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| format!("tls config: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("health: {e:?}"))
}

/// Plain HTTP/2 (no TLS) to a TLS port gets no gRPC answer.
async fn health_plaintext(port: u16) -> Result<(), String> {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("health: {e:?}"))
}

fn wait_port(port: u16, engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port}\n{}",
            engine.service_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_over_tcp_with_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let rogue = dir.path().join("rogue");
    make_certs(&tls);
    make_certs(&rogue);
    let engine_port = free_port();
    let store_port = free_port();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ndir = \"{}\"\n\n[listen]\nengine = \"127.0.0.1:{engine_port}\"\n\
             image-store = \"127.0.0.1:{store_port}\"\n\n\
             [remote]\nimage-store = \"tcp://127.0.0.1:{store_port}\"\n",
            tls.display()
        ),
    )
    .unwrap();
    let engine = Engine::start_with_env(&[("BERTH_CONFIG_FILE", config.to_str().unwrap())]);
    wait_port(engine_port, &engine);
    wait_port(store_port, &engine);
    let host = format!("tcp://127.0.0.1:{engine_port}");
    // The engine must reach the image store over TCP: take its Unix socket away.
    std::fs::remove_file(engine.run_dir.join("image-store.sock")).unwrap();

    // The CLI over TCP with the client certificate of the configured TLS directory; the
    // engine reaches the image store over TCP too ([remote]): `load` and `images` go
    // CLI → engine → image store over mutual TLS, with a message of megabytes.
    let version = engine.ok(&["--host", &host, "version"]);
    assert!(version.contains("Server"), "{version}");
    let image = busybox_image();
    engine.ok(&["--host", &host, "load", "-i", image.to_str().unwrap()]);
    let images = engine.ok(&["--host", &host, "images"]);
    assert!(images.contains("busybox"), "{images}");
    // A container's output streams back over TLS.
    let out = engine.ok(&[
        "--host", &host, "run", "--rm", "busybox", "echo", "over-tls",
    ]);
    assert_eq!(out.trim(), "over-tls");
    let ps = engine.ok(&["--host", &host, "ps", "-a"]);
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    // BERTH_HOST and BERTH_TLS_DIR work without the configuration file.
    let out = engine
        .berth_cmd(&["ps"])
        .env("BERTH_CONFIG_FILE", dir.path().join("none.toml"))
        .env("BERTH_HOST", &host)
        .env("BERTH_TLS_DIR", &tls)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // The engine's Unix socket keeps working.
    let images = engine.ok(&["images"]);
    assert!(images.contains("busybox"), "{images}");

    // The image store answers health checks over TLS to the client certificate.
    let ca = tls.join("ca.pem");
    health_over_tls(
        store_port,
        &ca,
        Some((&tls.join("client.pem"), &tls.join("client-key.pem"))),
    )
    .await
    .unwrap();
    health_over_tls(
        engine_port,
        &ca,
        Some((&tls.join("client.pem"), &tls.join("client-key.pem"))),
    )
    .await
    .unwrap();

    // Refused: no client certificate, a certificate of another CA, no TLS at all.
    for port in [engine_port, store_port] {
        let err = health_over_tls(port, &ca, None).await.unwrap_err();
        eprintln!("no certificate: {err}");
        let err = health_over_tls(
            port,
            &ca,
            Some((&rogue.join("client.pem"), &rogue.join("client-key.pem"))),
        )
        .await
        .unwrap_err();
        eprintln!("another CA's certificate: {err}");
        let err = health_plaintext(port).await.unwrap_err();
        eprintln!("plain HTTP/2: {err}");
    }
    // The CLI with another CA's client certificate: a connection error naming the host.
    let out = engine
        .berth_cmd(&["--host", &host, "ps"])
        .env("BERTH_TLS_CERT", rogue.join("client.pem"))
        .env("BERTH_TLS_KEY", rogue.join("client-key.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Cannot connect to the berth engine at tcp://127.0.0.1"),
        "{err}"
    );
    // A CLI that trusts another CA refuses the engine's certificate.
    let out = engine
        .berth_cmd(&["--host", &host, "ps"])
        .env("BERTH_TLS_DIR", &rogue)
        .env("BERTH_CONFIG_FILE", dir.path().join("none.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    // openssl's client without a certificate: the handshake ends in an alert and no data.
    let s_client = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n' | timeout 10 openssl s_client \
             -connect 127.0.0.1:{engine_port} -CAfile {} -alpn h2 -quiet 2>&1",
            ca.display()
        ))
        .output()
        .unwrap();
    let text = stdout(&s_client);
    assert!(
        text.contains("alert") || text.contains("certificate required"),
        "openssl s_client without a certificate: {text}"
    );

    // The engine still serves after the refused clients.
    engine.ok(&["--host", &host, "version"]);
    let logs = std::fs::read_to_string(engine.log_path("engine")).unwrap();
    assert!(logs.contains("serving with mutual TLS"), "{logs}");
}

#[test]
fn a_service_without_its_certificate_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ndir = \"{}\"\n[listen]\nvolume = \"127.0.0.1:{}\"\n",
            dir.path().join("empty").display(),
            free_port()
        ),
    )
    .unwrap();
    let out = Command::new(berth_integration_tests::bin_dir().join("berth-volume"))
        .env("BERTH_CONFIG_FILE", &config)
        .env("BERTH_ROOT", dir.path().join("root"))
        .env("BERTH_RUN", dir.path().join("run"))
        .env("BERTH_INSTANCE", "berth-tls-t")
        .output()
        .expect("run berth-volume");
    assert!(!out.status.success());
    let err = stderr(&out) + &stdout(&out);
    assert!(err.contains("volume.pem"), "{err}");
    // Nothing was left listening on the socket.
    assert!(!dir.path().join("run/volume.sock").exists());
}
