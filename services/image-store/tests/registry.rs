//! Pull, push and login against a real registry (Debian's `docker-registry`, distribution
//! 2.8) started on a free loopback port; skipped when the binary is missing.
mod common;

use std::{
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use berth_image_store::{
    registry::{
        client::Credentials,
        pull::{pull, PullRequest},
        push::check_auth,
        Inflight,
    },
    store::Store,
    Error,
};
use berth_proto::image::v1 as pb;
use common::{registry::*, *};

fn loaded_store(work: &Path) -> (Arc<Store>, PathBuf) {
    let root = work.join("src-store");
    let store = Store::open(&root).unwrap();
    let tarball = busybox_image(work);
    store.load_images(&tarball).unwrap();
    (Arc::new(store), root)
}

async fn do_push(
    store: &Arc<Store>,
    reference: &str,
    creds: Credentials,
) -> (Result<String, Error>, Vec<pb::PushProgress>) {
    push_collect(store, reference, creds).await
}

async fn do_pull(
    store: &Arc<Store>,
    inflight: &Arc<Inflight>,
    reference: &str,
    creds: Credentials,
) -> (
    Result<berth_image_store::store::ImageInfo, Error>,
    Vec<pb::PullProgress>,
) {
    let request = PullRequest {
        reference: reference.to_string(),
        creds,
        platform: String::new(),
        ..Default::default()
    };
    pull_collect(store, inflight.clone(), request).await
}

fn statuses<T>(msgs: &[T], f: impl Fn(&T) -> &str) -> Vec<String> {
    msgs.iter().map(|m| f(m).to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_then_pull_into_a_fresh_store() {
    let Some(reg) = start_registry(&[]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (src, src_root) = loaded_store(work.path());
    let local = src.get_image("busybox:latest").unwrap();
    let remote = format!("{}/team/busybox:1.0", reg.host);
    src.tag_image("busybox:latest", &remote).unwrap();

    let (res, msgs) = do_push(&src, &remote, Credentials::default()).await;
    let digest = res.expect("push");
    let st = statuses(&msgs, |m| &m.status);
    assert!(st.iter().any(|s| s == "Pushed"), "{st:?}");
    assert!(st.iter().any(|s| s == "Preparing"), "{st:?}");
    let last = msgs.last().unwrap();
    assert_eq!(last.digest, digest);
    assert!(
        last.status
            .starts_with(&format!("1.0: digest: {digest} size: ")),
        "{}",
        last.status
    );
    let pushed = src.get_image(&remote).unwrap();
    assert!(pushed
        .repo_digests
        .contains(&format!("{}/team/busybox@{digest}", reg.host)));

    // A second push finds every layer there.
    let (res, msgs) = do_push(&src, &remote, Credentials::default()).await;
    assert_eq!(res.unwrap(), digest);
    let st = statuses(&msgs, |m| &m.status);
    assert!(st.iter().any(|s| s == "Layer already exists"), "{st:?}");
    assert!(!st.iter().any(|s| s == "Pushed"), "{st:?}");

    // Pull into a fresh store.
    let root = work.path().join("dst-store");
    let dst = Arc::new(Store::open(&root).unwrap());
    let inflight = Arc::new(Inflight::default());
    let (res, msgs) = do_pull(&dst, &inflight, &remote, Credentials::default()).await;
    let img = res.expect("pull");
    assert_eq!(img.id, local.id);
    assert_eq!(img.layers, local.layers);
    assert_eq!(img.repo_tags, vec![remote.clone()]);
    assert_eq!(
        img.repo_digests,
        vec![format!("{}/team/busybox@{digest}", reg.host)]
    );
    let st = statuses(&msgs, |m| &m.status);
    for want in [
        "Pulling fs layer",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        "Pull complete",
    ] {
        assert!(st.iter().any(|s| s == want), "{want} missing: {st:?}");
    }
    assert!(st.contains(&format!("Digest: {digest}")), "{st:?}");
    assert!(
        st.contains(&format!("Status: Downloaded newer image for {remote}")),
        "{st:?}"
    );
    assert_eq!(names(&root.join("tmp")), Vec::<String>::new());
    // The unpacked rootfs works as a snapshot.
    let mounts = dst.prepare_snapshot("c1", &remote).unwrap();
    assert_eq!(mounts.lower_dirs.len(), local.layers.len());
    let (top, base) = (&mounts.lower_dirs[0], &mounts.lower_dirs[1]);
    assert!(base.join("bin/busybox").metadata().unwrap().len() > 500_000);
    assert_eq!(
        std::fs::read_to_string(top.join("etc/berth-release")).unwrap(),
        "berth test image\n"
    );
    let wh = std::fs::symlink_metadata(top.join("etc/berth-base-only")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout in the top layer"
    );
    // The layer blobs are stored as pushed: the gzip layer as loaded, the plain-tar base
    // layer as the gzip copy made (once) for the push.
    let (_, src_blobs) = src.push_source(&remote).unwrap();
    let (_, dst_blobs) = dst.push_source(&remote).unwrap();
    let gz_base = src.gzip_layer_blob(&src_blobs[0].1).unwrap();
    assert_eq!(src.gzip_layer_blob(&src_blobs[0].1).unwrap(), gz_base);
    assert_eq!(dst_blobs[0].1, gz_base.1);
    assert_eq!(dst_blobs[1].1, src_blobs[1].1);
    dst.remove_snapshot("c1").unwrap();

    // Pulling again: up to date; by digest: no new tag, found by digest.
    let (res, msgs) = do_pull(&dst, &inflight, &remote, Credentials::default()).await;
    res.unwrap();
    let st = statuses(&msgs, |m| &m.status);
    assert!(st.iter().any(|s| s == "Already exists"), "{st:?}");
    assert!(
        st.contains(&format!("Status: Image is up to date for {remote}")),
        "{st:?}"
    );
    let by_digest = format!("{}/team/busybox@{digest}", reg.host);
    let (res, _) = do_pull(&dst, &inflight, &by_digest, Credentials::default()).await;
    let img = res.unwrap();
    assert_eq!(img.repo_tags, vec![remote.clone()]);
    assert_eq!(dst.get_image(&by_digest).unwrap().id, local.id);

    // Removing the image removes the gzip copy too.
    src.remove_image(&remote, false).unwrap();
    src.remove_image("busybox:latest", false).unwrap();
    assert_empty_store(&src_root);

    // Concurrent pulls of the same image into another fresh store do the work once.
    let root2 = work.path().join("dst2-store");
    let dst2 = Arc::new(Store::open(&root2).unwrap());
    let (a, b) = tokio::join!(
        do_pull(&dst2, &inflight, &remote, Credentials::default()),
        do_pull(&dst2, &inflight, &remote, Credentials::default())
    );
    a.0.unwrap();
    b.0.unwrap();
    let downloads =
        a.1.iter()
            .chain(&b.1)
            .filter(|m| m.status == "Download complete")
            .count();
    assert_eq!(downloads, local.layers.len(), "each layer downloaded once");
    assert_eq!(
        names(&root2.join("snapshots/committed")).len(),
        local.layers.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tags_and_unreachable_registries() {
    let Some(reg) = start_registry(&[]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let dst = Arc::new(Store::open(&root).unwrap());
    let inflight = Arc::new(Inflight::default());
    let reference = format!("{}/nosuch/repo:v1", reg.host);
    let (res, _) = do_pull(&dst, &inflight, &reference, Credentials::default()).await;
    let err = res.unwrap_err();
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("manifest for {reference} not found")),
        "{}",
        status.message()
    );
    assert_eq!(names(&root.join("tmp")), Vec::<String>::new());

    let dead = format!("127.0.0.1:{}/a/b:c", free_port());
    let (res, _) = do_pull(&dst, &inflight, &dead, Credentials::default()).await;
    let status = tonic::Status::from(res.unwrap_err());
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("127.0.0.1:"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_login_push_and_pull() {
    let Some(reg) = start_registry(&[("alice", "s3cret")]) else {
        return;
    };
    let good = Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    let bad = Credentials {
        username: "alice".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    assert_eq!(
        check_auth(&reg.host, good.clone(), &Default::default())
            .await
            .unwrap(),
        "Login Succeeded"
    );
    let err = tonic::Status::from(
        check_auth(&reg.host, bad.clone(), &Default::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains(&reg.host), "{}", err.message());
    assert!(err.message().contains("incorrect username or password"));
    let err = tonic::Status::from(
        check_auth(&reg.host, Credentials::default(), &Default::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    let work = tempfile::tempdir().unwrap();
    let (src, _) = loaded_store(work.path());
    let remote = format!("{}/private/busybox:latest", reg.host);
    src.tag_image("busybox:latest", &remote).unwrap();
    let (res, _) = do_push(&src, &remote, Credentials::default()).await;
    let err = tonic::Status::from(res.unwrap_err());
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    do_push(&src, &remote, good.clone()).await.0.expect("push");

    let root = work.path().join("dst");
    let dst = Arc::new(Store::open(&root).unwrap());
    let inflight = Arc::new(Inflight::default());
    let (res, _) = do_pull(&dst, &inflight, &remote, bad).await;
    let err = tonic::Status::from(res.unwrap_err());
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let (res, _) = do_pull(&dst, &inflight, &remote, good).await;
    assert_eq!(
        res.expect("pull").id,
        src.get_image("busybox:latest").unwrap().id
    );
}

/// A tiny fake registry speaking Docker Hub's bearer flow: `/v2/` wants
/// `Bearer tok123`, which `/token` hands out for `alice:pw` (basic).
async fn bearer_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let realm = format!("http://{host}/token");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let realm = realm.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&buf).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let auth = req
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("authorization:")
                            .then(|| l[14..].trim().to_string())
                    })
                    .unwrap_or_default();
                // base64("alice:pw") = YWxpY2U6cHc=
                let (status, extra, body) = if path.starts_with("/token") {
                    if auth == "Basic YWxpY2U6cHc=" && path.contains("service=test") {
                        ("200 OK", String::new(), r#"{"token":"tok123"}"#.to_string())
                    } else {
                        (
                            "401 Unauthorized",
                            String::new(),
                            r#"{"details":"incorrect username or password"}"#.to_string(),
                        )
                    }
                } else if auth == "Bearer tok123" {
                    ("200 OK", String::new(), "{}".to_string())
                } else {
                    (
                        "401 Unauthorized",
                        format!(
                            "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\"\r\n"
                        ),
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                            .to_string(),
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_login() {
    let host = bearer_server().await;
    let good = Credentials {
        username: "alice".into(),
        password: "pw".into(),
        ..Default::default()
    };
    assert_eq!(
        check_auth(&host, good, &Default::default()).await.unwrap(),
        "Login Succeeded"
    );
    let bad = Credentials {
        username: "alice".into(),
        password: "nope".into(),
        ..Default::default()
    };
    let err = tonic::Status::from(
        check_auth(&host, bad, &Default::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains(&host), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_the_platform_from_an_index() {
    use berth_image_store::registry::{
        client::Registry, reference::Endpoint, sha256_digest, MT_DOCKER_LIST, MT_DOCKER_MANIFEST,
    };
    let Some(reg) = start_registry(&[]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (src, _) = loaded_store(work.path());
    let remote = format!("{}/multi/busybox:single", reg.host);
    src.tag_image("busybox:latest", &remote).unwrap();
    let (res, msgs) = do_push(&src, &remote, Credentials::default()).await;
    let digest = res.unwrap();
    let size: i64 = msgs
        .last()
        .unwrap()
        .status
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // A manifest list naming the same manifest for two platforms.
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_DOCKER_LIST,
        "manifests": [
            {"mediaType": MT_DOCKER_MANIFEST, "size": size, "digest": digest,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": MT_DOCKER_MANIFEST, "size": size, "digest": digest,
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]
    });
    let body = bytes::Bytes::from(serde_json::to_vec(&list).unwrap());
    let list_digest = sha256_digest(&body);
    let client = Registry::new(
        Endpoint::for_domain(&reg.host, &Default::default()),
        Credentials::default(),
        None,
    )
    .unwrap();
    let resp = client
        .send(
            http::Method::PUT,
            "/v2/multi/busybox/manifests/multi",
            &[("content-type", MT_DOCKER_LIST.to_string())],
            body,
        )
        .await
        .unwrap();
    assert!(resp.status.is_success(), "{}", resp.error_message().await);

    let root = work.path().join("dst");
    let dst = Arc::new(Store::open(&root).unwrap());
    let inflight = Arc::new(Inflight::default());
    let multi = format!("{}/multi/busybox:multi", reg.host);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let task = tokio::spawn(pull(
        dst.clone(),
        inflight.clone(),
        PullRequest {
            reference: multi.clone(),
            creds: Credentials::default(),
            platform: "linux/s390x".into(),
            ..Default::default()
        },
        tx,
    ));
    while rx.recv().await.is_some() {}
    let err = tonic::Status::from(task.await.unwrap().unwrap_err());
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("linux/s390x"), "{}", err.message());

    let (res, msgs) = do_pull(&dst, &inflight, &multi, Credentials::default()).await;
    let img = res.unwrap();
    assert_eq!(img.id, src.get_image("busybox:latest").unwrap().id);
    // The repo digest is the list's, as Docker records it.
    assert_eq!(
        img.repo_digests,
        vec![format!("{}/multi/busybox@{list_digest}", reg.host)]
    );
    assert!(msgs
        .iter()
        .any(|m| m.status == format!("Digest: {list_digest}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_push_and_login_over_grpc() {
    use berth_image_store::service::ImageStoreService;
    use berth_proto::image::v1::image_store_client::ImageStoreClient;
    use tokio_stream::wrappers::UnixListenerStream;
    let Some(reg) = start_registry(&[]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (src, _) = loaded_store(work.path());
    let remote = format!("{}/grpc/busybox:v1", reg.host);
    src.tag_image("busybox:latest", &remote).unwrap();
    drop(src); // the server opens the same state dir
    let socket = work.path().join("s.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let store = Arc::new(Store::open(work.path().join("src-store")).unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ImageStoreService::new(store).into_server())
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    let mut client = ImageStoreClient::new(berth_common::client::unix_channel(&socket));

    let mut stream = client
        .push_image(pb::PushImageRequest {
            reference: remote.clone(),
            auth: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(m) = stream.message().await.unwrap() {
        last = Some(m);
    }
    let last = last.unwrap();
    assert!(last.digest.starts_with("sha256:"), "{last:?}");

    // Remove it locally, then pull it back: the last message carries the image.
    client
        .remove_image(pb::RemoveImageRequest {
            reference: remote.clone(),
            force: false,
        })
        .await
        .unwrap();
    let mut stream = client
        .pull_image(pb::PullImageRequest {
            reference: remote.clone(),
            auth: None,
            platform: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut msgs = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        msgs.push(m);
    }
    let image = msgs
        .last()
        .unwrap()
        .image
        .clone()
        .expect("image on the last message");
    // busybox:latest still names the same image (only the remote tag was removed).
    assert_eq!(
        image.repo_tags,
        vec![remote.clone(), "busybox:latest".to_string()]
    );
    assert!(image
        .repo_digests
        .contains(&format!("{}/grpc/busybox@{}", reg.host, last.digest)));

    // Errors end the stream with a status.
    let mut stream = client
        .pull_image(pb::PullImageRequest {
            reference: format!("{}/grpc/busybox:nosuch", reg.host),
            auth: None,
            platform: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let err = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    let ok = client
        .check_registry_auth(pb::CheckRegistryAuthRequest {
            registry: reg.host.clone(),
            auth: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.status, "Login Succeeded");
    let _ = stop.send(());
    server.await.unwrap();
}

/// A fake registry serving fixed GET routes (path → (content type, body)), no auth.
async fn static_server(routes: std::collections::HashMap<String, (String, Vec<u8>)>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&buf).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, ct, body) = match routes.get(&path) {
                    Some((ct, body)) => ("200 OK", ct.clone(), body.clone()),
                    None => (
                        "404 Not Found",
                        "application/json".to_string(),
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                            .to_vec(),
                    ),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_layer_aborts_the_pull_and_keeps_nothing() {
    use berth_image_store::registry::{sha256_digest, MT_DOCKER_LAYER_GZIP, MT_DOCKER_MANIFEST};
    let good = gzip(&tar_of(&[dir("etc/"), file("etc/a", "a\n")]));
    let good2 = gzip(&tar_of(&[file("etc/b", "b\n")]));
    let config = config_for(
        &[
            &tar_of(&[dir("etc/"), file("etc/a", "a\n")]),
            &tar_of(&[file("etc/b", "b\n")]),
        ],
        "sh",
    );
    let mut corrupt = good2.clone();
    let n = corrupt.len();
    corrupt[n - 9] ^= 0xff; // inside the gzip trailer's CRC: same length, other digest
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": config.len(), "digest": sha256_digest(&config)},
        "layers": [
            {"mediaType": MT_DOCKER_LAYER_GZIP, "size": good.len(), "digest": sha256_digest(&good)},
            {"mediaType": MT_DOCKER_LAYER_GZIP, "size": good2.len(), "digest": sha256_digest(&good2)},
        ]
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let mut routes = std::collections::HashMap::new();
    routes.insert(
        "/v2/bad/img/manifests/latest".to_string(),
        (MT_DOCKER_MANIFEST.to_string(), manifest),
    );
    for (digest, body) in [
        (sha256_digest(&config), config.clone()),
        (sha256_digest(&good), good.clone()),
        (sha256_digest(&good2), corrupt),
    ] {
        routes.insert(
            format!("/v2/bad/img/blobs/{digest}"),
            ("application/octet-stream".to_string(), body),
        );
    }
    let host = static_server(routes).await;
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let dst = Arc::new(Store::open(&root).unwrap());
    let inflight = Arc::new(Inflight::default());
    let (res, _) = do_pull(
        &dst,
        &inflight,
        &format!("{host}/bad/img"),
        Credentials::default(),
    )
    .await;
    let err = res.unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert_empty_store(&root);
    assert!(dst.list_images(true).unwrap().is_empty());
}

/// Serves a one-image registry at `/v2/bad/img` whose manifest names `blobs` (gzip layers,
/// served as given) and whose config lists `diff_ids_of` (the tars the config claims).
async fn serve_image(blobs: &[Vec<u8>], diff_ids_of: &[&[u8]]) -> String {
    use berth_image_store::registry::{sha256_digest, MT_DOCKER_LAYER_GZIP, MT_DOCKER_MANIFEST};
    let config = config_for(diff_ids_of, "sh");
    let layers: Vec<serde_json::Value> = blobs
        .iter()
        .map(|b| {
            serde_json::json!({"mediaType": MT_DOCKER_LAYER_GZIP, "size": b.len(), "digest": sha256_digest(b)})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": config.len(), "digest": sha256_digest(&config)},
        "layers": layers,
    }))
    .unwrap();
    let mut routes = std::collections::HashMap::new();
    routes.insert(
        "/v2/bad/img/manifests/latest".to_string(),
        (MT_DOCKER_MANIFEST.to_string(), manifest),
    );
    for body in std::iter::once(&config).chain(blobs) {
        routes.insert(
            format!("/v2/bad/img/blobs/{}", sha256_digest(body)),
            ("application/octet-stream".to_string(), body.clone()),
        );
    }
    static_server(routes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_unlike_its_diff_id_or_unsafe_aborts_the_pull_and_keeps_nothing() {
    let a = tar_of(&[dir("etc/"), file("etc/a", "a\n")]);
    let b = tar_of(&[file("etc/b", "b\n")]);
    let other = tar_of(&[file("etc/b", "not b\n")]);
    let evil = tar_of(&[file("../evil", "x")]);
    // (blobs served, tars the config lists, the error expected)
    type Case<'a> = (Vec<Vec<u8>>, Vec<&'a [u8]>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        // The blob is the one the manifest names, but its tar is not the config's layer.
        (vec![gzip(&a), gzip(&other)], vec![&a, &b], "diff ID"),
        // A layer that would write outside its snapshot.
        (vec![gzip(&a), gzip(&evil)], vec![&a, &evil], "unsafe"),
    ];
    for (blobs, diffs, what) in cases {
        let host = serve_image(&blobs, &diffs).await;
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("store");
        let dst = Arc::new(Store::open(&root).unwrap());
        let inflight = Arc::new(Inflight::default());
        let (res, _) = do_pull(
            &dst,
            &inflight,
            &format!("{host}/bad/img"),
            Credentials::default(),
        )
        .await;
        let err = res.unwrap_err();
        match what {
            "diff ID" => assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}"),
            _ => assert!(matches!(err, Error::UnsafeEntry { .. }), "{err:?}"),
        }
        assert_empty_store(&root);
        assert!(!work.path().join("evil").exists());
        assert!(dst.list_images(true).unwrap().is_empty());
    }
}
