//! Pulls of images that a real `skopeo` pushed into a real registry (Debian's
//! `docker-registry` on a private loopback port): OCI and Docker v2s2 manifests, zstd layers,
//! a two-platform image index, by tag and by digest, behind htpasswd auth, and a layer blob
//! corrupted in the registry's storage. Everything goes through the real `berth` CLI.
use std::path::Path;
use std::process::Output;

use berth_integration_tests::{
    eventually,
    skopeo::{self, Format, Pushed},
    stderr, stdout, Engine, Registry,
};

/// Asserts `out` succeeded, with the engine's and registry's logs otherwise.
fn check(engine: &Engine, registry: &Registry, args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "berth {args:?} failed with {:?}\nstdout: {}\nstderr: {}\n{}\n--- registry ---\n{}",
        out.status.code(),
        stdout(out),
        stderr(out),
        engine.service_logs(),
        registry.log()
    );
}

fn ok(engine: &Engine, registry: &Registry, args: &[&str]) -> String {
    let out = engine.berth(args);
    check(engine, registry, args, &out);
    stdout(&out)
}

/// `berth pull <reference>`: succeeds and ends with the reference, as Docker's does.
fn pull(engine: &Engine, registry: &Registry, reference: &str, extra: &[&str]) -> String {
    let mut args = vec!["pull"];
    args.extend_from_slice(extra);
    args.push(reference);
    let out = ok(engine, registry, &args);
    assert_eq!(out.lines().last(), Some(reference), "{out}");
    out
}

/// `berth run --rm <reference> echo ok` prints ok.
fn runs(engine: &Engine, registry: &Registry, reference: &str) {
    let args = ["run", "--rm", "--pull", "never", reference, "echo", "ok"];
    assert_eq!(ok(engine, registry, &args), "ok\n");
}

fn image_field(engine: &Engine, registry: &Registry, reference: &str, format: &str) -> String {
    ok(
        engine,
        registry,
        &["image", "inspect", "--format", format, reference],
    )
    .trim()
    .to_string()
}

/// Removes every image and unused layer, so the next pull is cold.
fn remove_all(engine: &Engine, registry: &Registry) {
    let ids = ok(engine, registry, &["images", "-aq"]);
    let mut args = vec!["rmi", "-f"];
    args.extend(ids.split_whitespace());
    if args.len() > 2 {
        ok(engine, registry, &args);
    }
    ok(engine, registry, &["image", "prune", "-a", "-f"]);
    assert_eq!(ok(engine, registry, &["images", "-aq"]), "");
}

/// The files under `dir` (recursively), for "nothing was kept" checks.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// Pulls `p` cold and runs it; then by digest, cold again.
fn pull_and_run(engine: &Engine, registry: &Registry, p: &Pushed) {
    let out = pull(engine, registry, &p.reference, &[]);
    assert!(
        out.contains(&format!("Digest: {}", p.digest)),
        "pull did not report the pushed digest {}:\n{out}",
        p.digest
    );
    assert!(
        out.contains(&format!(
            "Status: Downloaded newer image for {}",
            p.reference
        )),
        "{out}"
    );
    runs(engine, registry, &p.reference);
    assert_eq!(
        image_field(engine, registry, &p.reference, "{{.Architecture}}"),
        "amd64"
    );
    // The whiteout in the second layer still hides the base layer's file.
    let args = ["run", "--rm", &p.reference, "cat", "/etc/berth-base-only"];
    assert_eq!(engine.berth(&args).status.code(), Some(1));

    remove_all(engine, registry);
    let by_digest = p.by_digest();
    pull(engine, registry, &by_digest, &[]);
    runs(engine, registry, &by_digest);
    let digests = image_field(engine, registry, &by_digest, "{{json .RepoDigests}}");
    assert!(digests.contains(&by_digest), "{digests}");
    remove_all(engine, registry);
}

#[test]
fn skopeo_oci_and_v2s2_images_pull_and_run_by_tag_and_digest() {
    let registry = Registry::start();
    let engine = Engine::start();
    let oci = skopeo::push_busybox(&registry, "sk/oci:1", Format::Oci, None);
    let v2s2 = skopeo::push_busybox(&registry, "sk/v2s2:1", Format::V2s2, None);
    assert_ne!(oci.digest, v2s2.digest);
    pull_and_run(&engine, &registry, &oci);
    pull_and_run(&engine, &registry, &v2s2);

    // The two manifests share their layers and config: the second pull downloads nothing
    // and both names are one image.
    pull(&engine, &registry, &oci.reference, &[]);
    let out = pull(&engine, &registry, &v2s2.reference, &[]);
    assert_eq!(out.matches(": Already exists").count(), 2, "{out}");
    assert_eq!(
        image_field(&engine, &registry, &oci.reference, "{{.Id}}"),
        image_field(&engine, &registry, &v2s2.reference, "{{.Id}}")
    );
}

#[test]
fn skopeo_zstd_image_pulls_and_runs() {
    // A registry of its own: skopeo would reuse gzip blobs it pushed to the same registry.
    let registry = Registry::start();
    let engine = Engine::start();
    let zstd = skopeo::push_busybox(&registry, "sk/zstd:1", Format::OciZstd, None);
    pull_and_run(&engine, &registry, &zstd);
}

#[test]
fn skopeo_index_picks_the_platform() {
    let registry = Registry::start();
    let engine = Engine::start();
    let pushed = skopeo::push_busybox_index(&registry, "sk/multi:1", None);
    let index = &pushed.index;
    let arch = |r: &str| image_field(&engine, &registry, r, "{{.Architecture}}");

    // Default platform: linux/amd64.
    let out = pull(&engine, &registry, &index.reference, &[]);
    assert!(out.contains(&format!("Digest: {}", index.digest)), "{out}");
    assert_eq!(arch(&index.reference), "amd64");
    runs(&engine, &registry, &index.reference);
    let amd64_id = image_field(&engine, &registry, &index.reference, "{{.Id}}");

    // --platform linux/arm64: the other manifest, another config, another image.
    pull(
        &engine,
        &registry,
        &index.reference,
        &["--platform", "linux/arm64"],
    );
    assert_eq!(arch(&index.reference), "arm64");
    assert_ne!(
        image_field(&engine, &registry, &index.reference, "{{.Id}}"),
        amd64_id
    );

    // A platform the index does not list: the engine's error naming it, nothing pulled.
    remove_all(&engine, &registry);
    let out = engine.berth(&["pull", "--platform", "linux/s390x", &index.reference]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("linux/s390x"), "{}", stderr(&out));
    assert_eq!(ok(&engine, &registry, &["images", "-aq"]), "");

    // By the index's digest (platform chosen from it) and by one manifest's digest.
    let by_index = index.by_digest();
    pull(&engine, &registry, &by_index, &[]);
    assert_eq!(arch(&by_index), "amd64");
    runs(&engine, &registry, &by_index);
    let by_arm = format!("{}@{}", index.repo, pushed.arm64);
    pull(&engine, &registry, &by_arm, &[]);
    assert_eq!(arch(&by_arm), "arm64");
    let by_amd = format!("{}@{}", index.repo, pushed.amd64);
    pull(&engine, &registry, &by_amd, &[]);
    assert_eq!(arch(&by_amd), "amd64");
}

#[test]
fn skopeo_pushed_image_behind_htpasswd_auth() {
    let (user, password) = ("skuser", "Sk0peo-pass");
    let registry = Registry::with_auth(user, password);
    let engine = Engine::start();
    let server = registry.addr.as_str();
    let p = skopeo::push_busybox(
        &registry,
        "private/bb:1",
        Format::Oci,
        Some((user, password)),
    );

    // Not logged in: refused, naming the registry, nothing stored.
    let out = engine.berth(&["pull", &p.reference]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains(server), "{}", stderr(&out));
    assert_eq!(ok(&engine, &registry, &["images", "-aq"]), "");

    // A wrong password: exit 125 naming the registry, no credentials saved.
    let login = ["login", "-u", user, "--password-stdin", server];
    let out = engine.berth_stdin(&login, b"not-the-password\n");
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains(server), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("Login Succeeded"),
        "{}",
        stdout(&out)
    );
    let out = engine.berth(&["pull", &p.reference]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));

    // Stored credentials that the registry refuses: the pull names the registry.
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("config.json");
    // base64("skuser:wrong")
    let json = format!(r#"{{"auths":{{"{server}":{{"auth":"c2t1c2VyOndyb25n"}}}}}}"#);
    std::fs::write(&file, json).unwrap();
    let out = engine
        .berth_cmd(&["pull", &p.reference])
        .env("BERTH_CONFIG", config.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains(server), "{}", stderr(&out));

    // The right password through stdin: logged in, pull and run.
    let out = engine.berth_stdin(&login, format!("{password}\n").as_bytes());
    check(&engine, &registry, &login, &out);
    assert_eq!(stdout(&out), "Login Succeeded\n");
    pull_and_run(&engine, &registry, &p);
}

#[test]
fn corrupted_or_truncated_blob_in_the_registry_fails_and_keeps_nothing() {
    let registry = Registry::start();
    let engine = Engine::start();
    let store = engine.root.join("image-store");
    let nothing_kept = |what: &str| {
        assert_eq!(
            ok(&engine, &registry, &["images", "-aq"]),
            "",
            "after {what}"
        );
        let images = ok(&engine, &registry, &["images", "-a"]);
        assert_eq!(images.lines().count(), 1, "after {what}: {images}");
        // No blob, snapshot or download left behind (temp files go when their task does).
        let clean = eventually(std::time::Duration::from_secs(5), || {
            ["blobs", "snapshots", "tmp"]
                .iter()
                .all(|d| files_under(&store.join(d)).is_empty())
        });
        let left: Vec<String> = ["blobs", "snapshots", "tmp"]
            .iter()
            .flat_map(|d| files_under(&store.join(d)))
            .collect();
        assert!(clean, "after {what}, the store kept {left:?}");
    };

    // The small last layer corrupted (same size, flipped bytes): the big first layer downloads
    // fine, the pull still fails on the digest and keeps neither.
    let p = skopeo::push_busybox(&registry, "bad/flipped:1", Format::Oci, None);
    let layers = p.layers();
    let last = layers[1]["digest"].as_str().unwrap().to_string();
    skopeo::corrupt_blob(&registry, &last);
    let out = engine.berth(&["pull", &p.reference]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}\n{}", stdout(&out));
    assert!(err.to_lowercase().contains("digest"), "{err}");
    assert!(err.contains(&last), "the error does not name {last}: {err}");
    nothing_kept("a corrupted layer");
    // `run` of it fails the same way and leaves no container.
    let out = engine.berth(&["run", "--rm", &p.reference, "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains(&last), "{}", stderr(&out));
    assert_eq!(ok(&engine, &registry, &["ps", "-aq"]), "");
    nothing_kept("run of a corrupted image");

    // The big first layer cut in half, in a second registry (the two pushes would share
    // their blobs in one).
    let registry2 = Registry::start();
    let p = skopeo::push_busybox(&registry2, "bad/truncated:1", Format::V2s2, None);
    let first = p.layers()[0]["digest"].as_str().unwrap().to_string();
    skopeo::truncate_blob(&registry2, &first);
    let out = engine.berth(&["pull", &p.reference]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}\n{}", stdout(&out));
    assert!(
        err.contains(&first),
        "the error does not name {first}: {err}"
    );
    nothing_kept("a truncated layer");

    // The directories checked above are where the store keeps what it has.
    let image = berth_integration_tests::busybox_image();
    ok(&engine, &registry, &["load", "-i", image.to_str().unwrap()]);
    for dir in ["blobs", "snapshots"] {
        assert!(!files_under(&store.join(dir)).is_empty(), "{dir} is empty");
    }
}
