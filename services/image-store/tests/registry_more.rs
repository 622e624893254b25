//! zstd layers, leases against concurrent deletion, cross-repository mounts and pull
//! mirrors. Registry tests run Debian's `docker-registry` on a free loopback port and are
//! skipped when it is missing.
mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use berth_common::config::RegistriesConfig;
use berth_image_store::{
    registry::{
        client::Credentials,
        pull::{pull, PullRequest},
        Inflight,
    },
    store::{ImageInfo, Store},
    unpack, Error,
};
use berth_proto::image::v1 as pb;
use common::{registry::*, *};

/// zstd by the real `zstd` command when installed, else by ruzstd's own encoder.
fn zstd(bytes: &[u8]) -> Vec<u8> {
    if let Ok(mut child) = Command::new("zstd")
        .args(["-q", "-c", "-3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        let mut stdin = child.stdin.take().unwrap();
        let input = bytes.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        return out.stdout;
    }
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

fn layer_tar(tag: &str) -> Vec<u8> {
    tar_of(&[
        dir("etc"),
        file("etc/hello", &format!("hello from {tag}\n")),
        file("etc/big", &"x".repeat(300_000)),
    ])
}

async fn do_push(
    store: &Arc<Store>,
    reference: &str,
) -> (Result<String, Error>, Vec<pb::PushProgress>) {
    push_collect(store, reference, Credentials::default()).await
}

async fn do_pull(
    store: &Arc<Store>,
    reference: &str,
    registries: RegistriesConfig,
) -> (Result<ImageInfo, Error>, Vec<pb::PullProgress>) {
    let request = PullRequest {
        reference: reference.to_string(),
        registries: Arc::new(registries),
        ..Default::default()
    };
    pull_collect(store, Arc::new(Inflight::default()), request).await
}

#[test]
fn zstd_layers_unpack_with_the_diff_id_of_the_tar() {
    let work = tempfile::tempdir().unwrap();
    let tar = layer_tar("zstd");
    // One frame, and two frames back to back (what parallel compressors write).
    let one = zstd(&tar);
    let mut two = zstd(&tar[..10_240]);
    two.extend(zstd(&tar[10_240..]));
    for (i, blob) in [one, two].iter().enumerate() {
        assert_eq!(unpack::Compression::detect(blob), unpack::Compression::Zstd);
        let dest = work.path().join(format!("fs{i}"));
        std::fs::create_dir(&dest).unwrap();
        let u = unpack::unpack_layer(&blob[..], &dest).unwrap();
        assert_eq!(u.diff_id, sha(&tar), "frames: {}", i + 1);
        assert_eq!(
            std::fs::read_to_string(dest.join("etc/hello")).unwrap(),
            "hello from zstd\n"
        );
    }
    // A corrupt frame is an error, not a short layer.
    let mut bad = zstd(&tar);
    let n = bad.len();
    bad.truncate(n - 20);
    let dest = work.path().join("bad");
    std::fs::create_dir(&dest).unwrap();
    assert!(unpack::unpack_layer(&bad[..], &dest).is_err());

    // Loaded from an OCI layout: the blob is kept as is, the image runs from its snapshot.
    let store = Store::open(work.path().join("store")).unwrap();
    let blob = zstd(&tar);
    let layout = oci_layout("zs:1", &[(blob.clone(), tar.clone())], None);
    let file = write_temp(work.path(), "layout.tar", &layout);
    let info = store.load_images(&file).unwrap().remove(0);
    assert_eq!(info.layers, vec![sha(&tar)]);
    let (_, blobs) = store.push_source("zs:1").unwrap();
    assert_eq!(blobs[0].1, sha(&blob), "the zstd blob is stored as is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zstd_images_push_as_oci_and_pull_back() {
    let Some(reg) = start_registry(&[]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let tar = layer_tar("registry");
    let blob = zstd(&tar);
    let layout = oci_layout("zs:1", &[(blob.clone(), tar.clone())], None);
    src.load_images(&write_temp(work.path(), "l.tar", &layout))
        .unwrap();
    let remote = format!("{}/zs/app:1", reg.host);
    src.tag_image("zs:1", &remote).unwrap();
    let (res, _) = do_push(&src, &remote).await;
    res.expect("push");

    let dst = Arc::new(Store::open(work.path().join("dst")).unwrap());
    let (res, msgs) = do_pull(&dst, &remote, RegistriesConfig::default()).await;
    let info = res.unwrap_or_else(|e| panic!("pull: {e}\n{msgs:?}"));
    assert_eq!(info.layers, vec![sha(&tar)]);
    let (_, blobs) = dst.push_source(&remote).unwrap();
    assert_eq!(blobs[0].1, sha(&blob), "pulled as the zstd blob");
}

/// skopeo recompresses the busybox test image with zstd into the registry (a real
/// producer of `+zstd` OCI layers); berth pulls it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulls_a_zstd_image_made_by_skopeo() {
    let Some(reg) = start_registry(&[]) else {
        return;
    };
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("skipping: skopeo is not installed");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let image = busybox_image(work.path());
    let remote = format!("{}/skopeo/bb:zstd", reg.host);
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-compress-format",
            "zstd",
            "--dest-compress",
        ])
        .arg(format!("oci-archive:{}", image.display()))
        .arg(format!("docker://{remote}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dst = Arc::new(Store::open(work.path().join("dst")).unwrap());
    let (res, msgs) = do_pull(&dst, &remote, RegistriesConfig::default()).await;
    let info = res.unwrap_or_else(|e| panic!("pull: {e}\n{msgs:?}"));
    let (_, blobs) = dst.push_source(&info.id).unwrap();
    assert_eq!(blobs.len(), 2);
    for (path, _, _) in &blobs {
        assert_eq!(
            unpack::Compression::of_file(path).unwrap(),
            unpack::Compression::Zstd
        );
    }
    // The same content as the original image: same diff IDs.
    let plain = Store::open(work.path().join("plain")).unwrap();
    let loaded = plain.load_images(&image).unwrap().remove(0);
    assert_eq!(info.layers, loaded.layers);
}

#[test]
fn a_leased_layer_survives_rmi_and_prune_until_the_pull_commits() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = Store::open(&root).unwrap();
    let base = layer_tar("base");
    let top = layer_tar("top");
    let layout = oci_layout(
        "app:1",
        &[(gzip(&base), base.clone()), (top.clone(), top.clone())],
        None,
    );
    let info = store
        .load_images(&write_temp(work.path(), "l.tar", &layout))
        .unwrap()
        .remove(0);
    let (_, blobs) = store.push_source("app:1").unwrap();
    let chains = chain_ids(&info.layers);
    let committed = names(&root.join("snapshots/committed"));
    assert_eq!(committed.len(), 2);

    // A pull found both layers here ("Already exists") and holds them.
    let lease = store.lease(chains.clone());
    let removed = store.remove_image("app:1", false).unwrap();
    assert_eq!(removed.deleted, vec![info.id.clone()], "no layer deleted");
    let pruned = store.prune_images(true).unwrap();
    assert!(pruned.deleted.is_empty(), "{pruned:?}");
    assert_eq!(names(&root.join("snapshots/committed")), committed);
    for (path, _, _) in &blobs {
        assert!(path.exists(), "{} was removed", path.display());
    }
    assert!(store.has_chain(&chains[1]).unwrap());
    // The pull commits, using the layers it found.
    let layers: Vec<_> = blobs.iter().map(|(_, d, _)| (None, d.clone())).collect();
    let pulled = store
        .commit_pulled(
            &info.config_json,
            layers,
            Some("app:1".into()),
            "app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        )
        .unwrap();
    drop(lease);
    assert!(store.collect_orphans().unwrap().is_empty());
    assert_eq!(pulled.id, info.id);
    assert_eq!(names(&root.join("snapshots/committed")), committed);

    // A pull that fails instead: the kept layers go when its lease is dropped.
    let lease = store.lease(chains.clone());
    store.remove_image("app:1", false).unwrap();
    assert!(store.has_orphans());
    assert!(store.collect_orphans().unwrap().is_empty(), "still leased");
    drop(lease);
    let mut gone = store.collect_orphans().unwrap();
    gone.sort();
    let mut want = chains.clone();
    want.sort();
    assert_eq!(gone, want);
    assert_empty_store(&root);
}

#[test]
fn the_startup_sweep_removes_layers_an_unfinished_pull_kept() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    {
        let store = Store::open(&root).unwrap();
        let base = layer_tar("base");
        let layout = oci_layout("app:1", &[(gzip(&base), base.clone())], None);
        let info = store
            .load_images(&write_temp(work.path(), "l.tar", &layout))
            .unwrap()
            .remove(0);
        let _lease = store.lease(chain_ids(&info.layers));
        store.remove_image("app:1", false).unwrap();
        assert_eq!(names(&root.join("snapshots/committed")).len(), 1);
        // The process dies here with the lease held.
    }
    let store = Store::open(&root).unwrap();
    assert!(store.list_images(true).unwrap().is_empty());
    assert_empty_store(&root);
}

/// A pull from a registry whose blobs come slowly (a proxy that waits before each blob
/// response): prune and rmi run while it downloads, and it still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_during_a_slow_pull_keeps_what_the_pull_needs() {
    let Some(reg) = start_registry(&[]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let base = layer_tar("base");
    let top = layer_tar("slow-top");
    let one = oci_layout("one:1", &[(gzip(&base), base.clone())], None);
    let two = oci_layout(
        "two:1",
        &[(gzip(&base), base.clone()), (gzip(&top), top.clone())],
        None,
    );
    src.load_images(&write_temp(work.path(), "1.tar", &one))
        .unwrap();
    src.load_images(&write_temp(work.path(), "2.tar", &two))
        .unwrap();
    let remote_one = format!("{}/slow/one:1", reg.host);
    let remote_two = format!("{}/slow/two:1", reg.host);
    src.tag_image("one:1", &remote_one).unwrap();
    src.tag_image("two:1", &remote_two).unwrap();
    do_push(&src, &remote_one).await.0.unwrap();
    do_push(&src, &remote_two).await.0.unwrap();

    // The destination has image one (the base layer); two's pull will find the base here
    // and download only its top layer, slowly.
    let root = work.path().join("dst");
    let dst = Arc::new(Store::open(&root).unwrap());
    do_pull(&dst, &remote_one, RegistriesConfig::default())
        .await
        .0
        .unwrap();
    let proxy = slow_proxy(&reg.host, Duration::from_millis(1500)).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let puller = tokio::spawn(pull(
        dst.clone(),
        Arc::new(Inflight::default()),
        PullRequest {
            reference: format!("{proxy}/slow/two:1"),
            ..Default::default()
        },
        tx,
    ));
    let mut msgs = Vec::new();
    let mut pruned = None;
    while let Some(m) = rx.recv().await {
        if m.status == "Already exists" && pruned.is_none() {
            // The pull holds the base layer and waits for its top layer: the base's only
            // image goes now, and prune runs.
            let d = dst.clone();
            let one = remote_one.clone();
            pruned = Some(
                tokio::task::spawn_blocking(move || {
                    d.remove_image(&one, false).unwrap();
                    d.prune_images(true).unwrap()
                })
                .await
                .unwrap(),
            );
            assert!(!puller.is_finished(), "the pull was not slow enough");
        }
        msgs.push(m);
    }
    let info = puller
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("pull: {e}\n{msgs:?}"));
    let pruned = pruned.expect("the base layer was found present");
    assert!(pruned.deleted.is_empty(), "{pruned:?}");
    assert_eq!(info.layers, vec![sha(&base), sha(&top)]);
    // Everything the image needs is here; nothing else is.
    assert_eq!(names(&root.join("snapshots/committed")).len(), 2);
    assert!(dst.collect_orphans().unwrap().is_empty());
    let again = dst.get_image(&format!("{proxy}/slow/two:1")).unwrap();
    assert_eq!(again.id, info.id);
}

/// An HTTP proxy on loopback to `upstream` that holds every blob response for `delay`.
async fn slow_proxy(upstream: &str, delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                // Requests here are GET/HEAD without bodies: read the head only.
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                if text.contains("/blobs/sha256:") {
                    tokio::time::sleep(delay).await;
                }
                // One request per connection upstream.
                let text = text.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                if up.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
                let mut resp = Vec::new();
                let _ = up.read_to_end(&mut resp).await;
                let _ = client.write_all(&resp).await;
                let _ = client.shutdown().await;
            });
        }
    });
    addr
}

fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let c = match out.last() {
            None => d.clone(),
            Some(p) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{p} {d}").as_bytes()))
            ),
        };
        out.push(c);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_repository_mounts_the_layers_of_the_first() {
    let Some(reg) = start_registry(&[]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(work.path().join("s")).unwrap());
    store.load_images(&busybox_image(work.path())).unwrap();
    let a = format!("{}/a:1", reg.host);
    let b = format!("{}/team/b:1", reg.host);
    store.tag_image("busybox:latest", &a).unwrap();
    store.tag_image("busybox:latest", &b).unwrap();
    let (res, msgs) = do_push(&store, &a).await;
    let digest_a = res.unwrap();
    assert!(msgs.iter().any(|m| m.status == "Pushed"), "{msgs:?}");
    let (res, msgs) = do_push(&store, &b).await;
    let digest_b = res.unwrap();
    assert_eq!(digest_a, digest_b);
    let mounted = msgs.iter().filter(|m| m.status == "Mounted from a").count();
    assert_eq!(mounted, 2, "{msgs:?}");
    assert!(!msgs.iter().any(|m| m.status == "Pushed"), "{msgs:?}");

    // A fresh store pulls from b (so the blobs are really there), then pushes to c: the
    // pull recorded b as a source.
    let other = Arc::new(Store::open(work.path().join("o")).unwrap());
    do_pull(&other, &b, RegistriesConfig::default())
        .await
        .0
        .unwrap();
    let c = format!("{}/c:1", reg.host);
    other.tag_image(&b, &c).unwrap();
    let (res, msgs) = do_push(&other, &c).await;
    res.unwrap();
    assert!(
        msgs.iter().any(|m| m.status == "Mounted from team/b"),
        "{msgs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirrors_are_tried_in_order_then_the_registry() {
    let Some(reg) = start_registry(&[]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("s")).unwrap());
    src.load_images(&busybox_image(work.path())).unwrap();
    let remote = format!("{}/m/bb:1", reg.host);
    src.tag_image("busybox:latest", &remote).unwrap();
    do_push(&src, &remote).await.0.unwrap();

    // Nothing listens at `dead`: a registry that is down, served by its mirror.
    let dead = format!("127.0.0.1:{}", free_port());
    let mut registries = RegistriesConfig::default();
    registries.mirror.insert(
        dead.clone(),
        vec![
            format!("http://127.0.0.1:{}", free_port()), // a dead mirror first
            format!("http://{}", reg.host),
        ],
    );
    let dst = Arc::new(Store::open(work.path().join("d")).unwrap());
    let via_mirror = format!("{dead}/m/bb:1");
    let (res, msgs) = do_pull(&dst, &via_mirror, registries.clone()).await;
    let info = res.unwrap_or_else(|e| panic!("pull: {e}\n{msgs:?}"));
    assert!(info.repo_tags.contains(&via_mirror), "{:?}", info.repo_tags);

    // A mirror without the image: the registry itself answers.
    let mut registries = RegistriesConfig::default();
    let empty = start_registry(&[]).unwrap();
    registries
        .mirror
        .insert(reg.host.clone(), vec![format!("http://{}", empty.host)]);
    let dst = Arc::new(Store::open(work.path().join("d2")).unwrap());
    let (res, msgs) = do_pull(&dst, &remote, registries).await;
    res.unwrap_or_else(|e| panic!("pull: {e}\n{msgs:?}"));

    // No mirror answers and the registry is down: the registry's error.
    let mut registries = RegistriesConfig::default();
    registries.mirror.insert(
        dead.clone(),
        vec![format!("http://127.0.0.1:{}", free_port())],
    );
    let dst = Arc::new(Store::open(work.path().join("d3")).unwrap());
    let (res, _) = do_pull(&dst, &via_mirror, registries).await;
    let err = tonic::Status::from(res.unwrap_err());
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains(&dead), "{err:?}");
}
