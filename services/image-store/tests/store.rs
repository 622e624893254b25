//! The store library driven end to end: real tarballs, real unpacking, real overlay mounts.
mod common;

use std::{
    fs,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::Path,
};

use berth_image_store::{
    store::{ImportOptions, Store},
    unpack::{get_xattr, OPAQUE_XATTR},
    Error,
};
use common::*;

fn open(root: &Path) -> Store {
    Store::open(root).expect("open store")
}

#[test]
fn loads_the_busybox_test_image_from_the_script() {
    let work = tempfile::tempdir().unwrap();
    let tarball = busybox_image(work.path());
    let root = work.path().join("state");
    let store = open(&root);
    let loaded = store.load_images(&tarball).unwrap();
    assert_eq!(loaded.len(), 1);
    let img = &loaded[0];
    assert_eq!(img.repo_tags, vec!["busybox:latest"]);
    assert_eq!(img.layers.len(), 2);
    assert_eq!(img.config.architecture, "amd64");
    let rc = img.config.config.clone().unwrap();
    assert_eq!(rc.cmd.unwrap(), vec!["sh"]);
    assert_eq!(
        rc.env.unwrap(),
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
    assert!(img.size > 500_000, "size {}", img.size);
    assert_eq!(store.get_image("busybox").unwrap().id, img.id);

    let m = store.prepare_snapshot("c1", "busybox").unwrap();
    assert_eq!(m.lower_dirs.len(), 2);
    let (top, base) = (&m.lower_dirs[0], &m.lower_dirs[1]);
    assert_eq!(
        fs::read_link(base.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(base.join("bin/busybox").metadata().unwrap().len() > 500_000);
    assert_eq!(base.join("tmp").metadata().unwrap().mode() & 0o7777, 0o1777);
    assert!(fs::read_to_string(base.join("etc/passwd"))
        .unwrap()
        .contains("nobody:x:65534:65534"));
    assert_eq!(
        fs::read_to_string(base.join("etc/berth-base-only")).unwrap(),
        "base\n"
    );
    assert_eq!(
        fs::read_to_string(top.join("etc/berth-release")).unwrap(),
        "berth test image\n"
    );
    let wh = fs::symlink_metadata(top.join("etc/berth-base-only")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout in the top layer"
    );
    // Idempotent.
    assert_eq!(store.prepare_snapshot("c1", &img.id).unwrap(), m);
    assert!(m.upper_dir.is_dir() && m.work_dir.is_dir());
}

#[test]
fn docker_archive_with_a_shared_base_layer_stores_it_once() {
    let work = tempfile::tempdir().unwrap();
    let base = tar_of(&[dir("etc/"), file("etc/os-release", "base\n")]);
    let a_top = tar_of(&[file("a.txt", "a")]);
    let b_top = tar_of(&[file("b.txt", "b")]);
    let archive = docker_archive(&[
        (&["app/a:1"], vec![base.clone(), a_top], "a"),
        (&[], vec![base.clone(), b_top.clone()], "b"),
    ]);
    let root = work.path().join("state");
    let store = open(&root);
    let loaded = store
        .load_images(&write_temp(work.path(), "a.tar", &archive))
        .unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].repo_tags, vec!["app/a:1"]);
    assert!(loaded[1].repo_tags.is_empty());
    // 3 chains (shared base + two tops), 3 layer blobs + 2 configs.
    assert_eq!(names(&root.join("snapshots/committed")).len(), 3);
    assert_eq!(names(&root.join("blobs/sha256")).len(), 5);
    assert_eq!(store.list_images(false).unwrap().len(), 1);
    assert_eq!(store.list_images(true).unwrap().len(), 2);
    let ma = store.prepare_snapshot("ka", "app/a:1").unwrap();
    let mb = store.prepare_snapshot("kb", &loaded[1].id).unwrap();
    assert_eq!(ma.lower_dirs[1], mb.lower_dirs[1], "one base snapshot");
    assert_eq!(
        fs::read_to_string(ma.lower_dirs[1].join("etc/os-release")).unwrap(),
        "base\n"
    );

    // Loading again adds nothing.
    store
        .load_images(&write_temp(work.path(), "a2.tar", &archive))
        .unwrap();
    assert_eq!(names(&root.join("snapshots/committed")).len(), 3);

    // Removing an image keeps what the other uses.
    store.remove_snapshot("ka").unwrap();
    let removed = store.remove_image("app/a:1", false).unwrap();
    assert_eq!(removed.untagged, vec!["app/a:1"]);
    assert_eq!(
        removed.deleted.len(),
        2,
        "image and its top layer: {removed:?}"
    );
    assert_eq!(names(&root.join("snapshots/committed")).len(), 2);
    assert_eq!(names(&root.join("blobs/sha256")).len(), 3);
    store.remove_snapshot("kb").unwrap();
    store.remove_image(&loaded[1].id, false).unwrap();
    assert_empty_store(&root);
    assert!(store.list_images(true).unwrap().is_empty());
}

fn layered_whiteout_image(work: &Path) -> (Vec<u8>, Vec<u8>, std::path::PathBuf) {
    let l1 = tar_of(&[
        dir("etc/"),
        file("etc/gone", "old"),
        file("etc/kept", "kept"),
        dir("d/"),
        file("d/old", "x"),
        dir("d/sub/"),
        file("d/sub/old", "y"),
    ]);
    let l2 = tar_of(&[
        dir("etc/"),
        file("etc/.wh.gone", ""),
        dir("d/"),
        file("d/.wh..wh..opq", ""),
        file("d/new", "n"),
    ]);
    let tarball = write_temp(
        work,
        "wh.tar",
        &oci_layout(
            "wh:1",
            &[(l1.clone(), l1.clone()), (gzip(&l2), l2.clone())],
            None,
        ),
    );
    (l1, l2, tarball)
}

#[test]
fn whiteouts_across_layers_become_overlay_whiteouts() {
    let work = tempfile::tempdir().unwrap();
    let (_, _, tarball) = layered_whiteout_image(work.path());
    let store = open(&work.path().join("state"));
    store.load_images(&tarball).unwrap();
    let m = store.prepare_snapshot("w", "wh:1").unwrap();
    let top = &m.lower_dirs[0];
    let wh = fs::symlink_metadata(top.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!((wh.rdev(), wh.uid(), wh.gid()), (0, 0, 0));
    assert!(!top.join("etc/.wh.gone").exists());
    assert_eq!(
        get_xattr(&top.join("d"), OPAQUE_XATTR).unwrap().as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("d/.wh..wh..opq").exists());
    // The lower layer is untouched.
    assert_eq!(
        fs::read_to_string(m.lower_dirs[1].join("etc/gone")).unwrap(),
        "old"
    );
}

#[test]
fn overlay_mount_of_a_snapshot_hides_whited_out_files() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: overlay mounts need root");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (_, _, tarball) = layered_whiteout_image(work.path());
    let store = open(&work.path().join("state"));
    store.load_images(&tarball).unwrap();
    let m = store.prepare_snapshot("mnt", "wh:1").unwrap();
    let target = work.path().join("rootfs");
    fs::create_dir(&target).unwrap();
    let lower: Vec<String> = m
        .lower_dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        m.upper_dir.display(),
        m.work_dir.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .expect("mount overlay");
    let guard = MountGuard(target.clone());
    assert!(
        !target.join("etc/gone").exists(),
        "whiteout hides the lower file"
    );
    assert_eq!(fs::read_to_string(target.join("etc/kept")).unwrap(), "kept");
    assert_eq!(
        names(&target.join("d")),
        vec!["new"],
        "opaque dir hides the lower contents"
    );
    fs::write(target.join("etc/written"), "w").unwrap();
    drop(guard);
    assert_eq!(
        fs::read_to_string(m.upper_dir.join("etc/written")).unwrap(),
        "w"
    );
    // Removal works on what overlay left (work/work has mode 0) and files owned by others.
    fs::write(m.upper_dir.join("owned"), "x").unwrap();
    std::os::unix::fs::chown(m.upper_dir.join("owned"), Some(4242), Some(4242)).unwrap();
    store.remove_snapshot("mnt").unwrap();
    assert!(!m.upper_dir.parent().unwrap().exists());
    store.remove_snapshot("mnt").unwrap();
}

/// Loads/imports `bytes`, expects an InvalidArgument-class error naming `needle`, and checks
/// that nothing was left behind.
fn refused(bytes: Vec<u8>, import: bool, needle: &str) {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("state");
    let store = open(&root);
    let path = write_temp(work.path(), "up.tar", &bytes);
    let err = if import {
        store.import_image(
            &path,
            &ImportOptions {
                reference: "evil:1".into(),
                ..Default::default()
            },
        )
    } else {
        store.load_images(&path).map(|mut v| v.remove(0))
    }
    .expect_err("should be refused");
    assert!(
        matches!(
            err,
            Error::UnsafeEntry { .. } | Error::DigestMismatch { .. }
        ),
        "unexpected error kind: {err}"
    );
    assert_eq!(
        tonic::Status::from(Error::InvalidArgument(String::new())).code(),
        tonic::Code::InvalidArgument
    );
    let msg = err.to_string();
    assert!(msg.contains(needle), "{msg:?} should name {needle:?}");
    assert_empty_store(&root);
    assert!(store.list_images(true).unwrap().is_empty());
    assert!(!work.path().join("evil").exists());
    drop(store);
    // And nothing in the database either, after a reopen.
    assert!(open(&root).list_images(true).unwrap().is_empty());
}

#[test]
fn malformed_tarballs_are_refused_leaving_nothing_behind() {
    let good = tar_of(&[file("ok", "ok")]);
    let cases: Vec<(Vec<E>, &str)> = vec![
        (vec![file("../evil", "x")], "../evil"),
        (vec![file("/abs", "x")], "/abs"),
        (
            vec![file("f", "x"), hardlink("h", "../../etc/passwd")],
            "../../etc/passwd",
        ),
        (
            vec![symlink("link", "/etc"), file("link/passwd", "x")],
            "link/passwd",
        ),
    ];
    for (entries, needle) in cases {
        let layer = tar_of(&entries);
        // As an import, as the second layer of a docker-archive, and gzipped in OCI.
        refused(layer.clone(), true, needle);
        refused(
            docker_archive(&[(&["evil:1"], vec![good.clone(), layer.clone()], "sh")]),
            false,
            needle,
        );
        refused(
            oci_layout(
                "evil:1",
                &[(good.clone(), good.clone()), (gzip(&layer), layer.clone())],
                None,
            ),
            false,
            needle,
        );
    }
    // Digest mismatches: a layer blob whose digest is not what the manifest says, and a
    // layer whose content does not match the config's diff ID.
    let wrong = format!("sha256:{}", "0".repeat(64));
    refused(
        oci_layout("evil:1", &[(good.clone(), good.clone())], Some(&wrong)),
        false,
        &wrong,
    );
    let archive = {
        let mut a = docker_archive(&[(&["evil:1"], vec![good.clone()], "sh")]);
        // Same length, different content in the layer file: flip a byte of "ok" data.
        let pos = a.windows(2).rposition(|w| w == b"ok").unwrap();
        a[pos] = b'O';
        a
    };
    refused(archive, false, "layer 1");
}

#[test]
fn import_applies_changes_and_lookups_work_by_tag_id_and_prefix() {
    let work = tempfile::tempdir().unwrap();
    let store = open(&work.path().join("state"));
    let layer = gzip(&tar_of(&[dir("bin/"), file("bin/true", "#!/bin/sh\n")]));
    let path = write_temp(work.path(), "rootfs.tgz", &layer);
    let img = store
        .import_image(
            &path,
            &ImportOptions {
                reference: "local/X".into(),
                changes: vec![],
                message: String::new(),
            },
        )
        .expect_err("upper-case repository");
    assert!(
        img.to_string().contains("local/X") && img.to_string().contains("must be lowercase"),
        "{img}"
    );
    let img = store
        .import_image(
            &path,
            &ImportOptions {
                reference: "imported".into(),
                changes: vec![
                    r#"CMD ["sh", "-c", "true"]"#.into(),
                    "ENTRYPOINT /bin/init".into(),
                    "ENV A=1".into(),
                    "WORKDIR /srv".into(),
                    "USER nobody".into(),
                    "LABEL k=v".into(),
                    "EXPOSE 8080".into(),
                ],
                message: "hello".into(),
            },
        )
        .unwrap();
    assert_eq!(img.repo_tags, vec!["imported:latest"]);
    assert_eq!(img.config.os, "linux");
    assert_eq!(img.config.comment.as_deref(), Some("hello"));
    let rc = img.config.config.clone().unwrap();
    assert_eq!(rc.cmd.unwrap(), vec!["sh", "-c", "true"]);
    assert_eq!(rc.entrypoint.unwrap(), vec!["/bin/sh", "-c", "/bin/init"]);
    assert_eq!(rc.working_dir.as_deref(), Some("/srv"));
    assert_eq!(rc.user.as_deref(), Some("nobody"));
    assert_eq!(rc.labels.unwrap()["k"], "v");
    assert!(rc.exposed_ports.unwrap().contains_key("8080/tcp"));
    assert_eq!(img.size, 10);
    let hex = img.id.strip_prefix("sha256:").unwrap();
    for r in [
        img.id.as_str(),
        hex,
        &hex[..12],
        &hex[..1],
        "imported:latest",
        "docker.io/library/imported",
    ] {
        assert_eq!(store.get_image(r).unwrap().id, img.id, "{r}");
    }
    let err = store.get_image("nosuch").unwrap_err();
    assert_eq!(err.to_string(), "no such image: nosuch:latest");
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::NotFound);

    // Enough images that some single-hex-digit prefix is ambiguous.
    let mut ids = vec![img.id.clone()];
    for i in 0..16 {
        let opts = ImportOptions {
            changes: vec![format!("LABEL n={i}")],
            ..Default::default()
        };
        ids.push(store.import_image(&path, &opts).unwrap().id);
    }
    assert_eq!(
        names(&store.root().join("snapshots/committed")).len(),
        1,
        "one layer for all"
    );
    let c = (b'0'..=b'f')
        .map(char::from)
        .find(|c| ids.iter().filter(|id| id[7..].starts_with(*c)).count() > 1)
        .unwrap();
    let err = store.get_image(&c.to_string()).unwrap_err();
    assert!(matches!(err, Error::AmbiguousId(_)), "{err}");
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(store.list_images(false).unwrap().len(), 1);
    assert_eq!(store.list_images(true).unwrap().len(), 17);
}

#[test]
fn remove_image_follows_docker_rules() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("state");
    let store = open(&root);
    let path = write_temp(work.path(), "r.tar", &tar_of(&[file("f", "x")]));
    let img = store
        .import_image(
            &path,
            &ImportOptions {
                reference: "one".into(),
                ..Default::default()
            },
        )
        .unwrap();
    store.tag_image("one", "two:t").unwrap();
    store.tag_image(&img.id, "localhost:5000/x/y:z").unwrap();
    assert!(store
        .tag_image("one", &format!("x@sha256:{}", "a".repeat(64)))
        .is_err());
    assert_eq!(
        store.get_image("one").unwrap().repo_tags,
        vec!["localhost:5000/x/y:z", "one:latest", "two:t"]
    );
    let short = &img.id[7..19];

    // By ID with several tags: needs force.
    let err = store.remove_image(short, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("referenced in multiple repositories"),
        "{err}"
    );
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::FailedPrecondition
    );
    // Removing one of several tags just untags.
    assert_eq!(
        store.remove_image("two:t", false).unwrap().untagged,
        vec!["two:t"]
    );
    assert_eq!(
        store
            .remove_image("localhost:5000/x/y:z", false)
            .unwrap()
            .deleted,
        Vec::<String>::new()
    );

    // The last tag of an image a container uses: conflict unless forced.
    let key = "0123456789abcdef0123";
    store.prepare_snapshot(key, "one").unwrap();
    let err = store.remove_image("one", false).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to remove repository reference \"one\" (must force) - container 0123456789ab is using its referenced image {short}"
        )
    );
    let removed = store.remove_image("one", true).unwrap();
    assert_eq!(removed.untagged, vec!["one:latest"]);
    assert!(removed.deleted.is_empty(), "kept while used");
    assert_eq!(store.snapshot_mounts(key).unwrap().image_id, img.id);
    assert!(store.get_image(&img.id).unwrap().repo_tags.is_empty());
    let err = store.remove_image(&img.id, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("being used by container 0123456789ab"),
        "{err}"
    );

    store.remove_snapshot(key).unwrap();
    assert!(matches!(
        store.snapshot_mounts(key),
        Err(Error::SnapshotNotFound(_))
    ));
    let removed = store.remove_image(&img.id, false).unwrap();
    assert_eq!(removed.deleted.len(), 2);
    assert_empty_store(&root);
    assert!(matches!(
        store.remove_image("one", false),
        Err(Error::ImageNotFound(_))
    ));
}

#[test]
fn state_survives_reopen_and_leftovers_are_swept() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("state");
    let (_, _, tarball) = layered_whiteout_image(work.path());
    let (id, mounts) = {
        let store = open(&root);
        let id = store.load_images(&tarball).unwrap()[0].id.clone();
        (id, store.prepare_snapshot("keep", "wh:1").unwrap())
    };
    // What a crash could leave: temp files, an unreferenced snapshot dir, blob and active dir.
    fs::write(root.join("tmp/upload-deadbeef"), "partial").unwrap();
    fs::create_dir_all(root.join("tmp/snapshot-x/fs/etc")).unwrap();
    fs::create_dir_all(root.join(format!("snapshots/committed/{}/fs", "c".repeat(64)))).unwrap();
    fs::write(
        root.join(format!("blobs/sha256/{}", "b".repeat(64))),
        "orphan",
    )
    .unwrap();
    fs::create_dir_all(root.join("snapshots/active/orphan/upper")).unwrap();

    let store = open(&root);
    let err = Store::open(&root)
        .err()
        .expect("a second store on the same dir");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    assert_eq!(store.get_image("wh:1").unwrap().id, id);
    assert_eq!(store.snapshot_mounts("keep").unwrap(), mounts);
    assert!(mounts.lower_dirs.iter().all(|d| d.is_dir()));
    assert_eq!(names(&root.join("tmp")), Vec::<String>::new());
    assert_eq!(names(&root.join("snapshots/committed")).len(), 2);
    assert_eq!(names(&root.join("blobs/sha256")).len(), 3);
    assert_eq!(names(&root.join("snapshots/active")), vec!["keep"]);
}

#[test]
fn nested_oci_index_picks_linux_amd64_and_docker_save_layer_symlinks_resolve() {
    let work = tempfile::tempdir().unwrap();
    let store = open(&work.path().join("state"));

    // OCI: index.json → image index (amd64 + arm64 + an attestation) → manifests.
    let layer = tar_of(&[file("amd64", "yes")]);
    let arm_layer = tar_of(&[file("arm64", "no")]);
    let mut entries = vec![file("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#)];
    let mut blob = |bytes: Vec<u8>| {
        let d = sha(&bytes);
        entries.push(E {
            kind: tar::EntryType::Regular,
            name: format!("./blobs/sha256/{}", hex_of(&d)),
            link: None,
            data: bytes,
            mode: 0o644,
        });
        d
    };
    let manifest_for = |blob: &mut dyn FnMut(Vec<u8>) -> String, layer: &[u8], arch: &str| {
        let mut config: serde_json::Value =
            serde_json::from_slice(&config_for(&[layer], arch)).unwrap();
        config["architecture"] = arch.into();
        let config = serde_json::to_vec(&config).unwrap();
        let (cd, cl) = (blob(config.clone()), config.len());
        let ld = blob(layer.to_vec());
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
        }))
        .unwrap();
        let len = m.len();
        (blob(m), len)
    };
    let (amd, amd_len) = manifest_for(&mut blob, &layer, "amd64");
    let (arm, arm_len) = manifest_for(&mut blob, &arm_layer, "arm64");
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd, "size": amd_len,
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm, "size": arm_len,
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let nested_len = nested.len();
    let nested_digest = blob(nested);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nested_digest,
                       "size": nested_len, "annotations": {
                           "io.containerd.image.name": "docker.io/library/multi:latest",
                           "org.opencontainers.image.ref.name": "latest"}}],
    }))
    .unwrap();
    entries.push(E {
        kind: tar::EntryType::Regular,
        name: "index.json".into(),
        link: None,
        data: index,
        mode: 0o644,
    });
    let loaded = store
        .load_images(&write_temp(work.path(), "multi.tar", &tar_of(&entries)))
        .unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].repo_tags, vec!["multi:latest"]);
    assert_eq!(loaded[0].config.architecture, "amd64");
    let m = store.prepare_snapshot("multi", "multi").unwrap();
    assert!(m.lower_dirs[0].join("amd64").exists());

    // docker save (old format) links a repeated layer to its first copy.
    let base = tar_of(&[file("base", "b")]);
    let top = tar_of(&[file("top", "t")]);
    let config = config_for(&[&base, &top], "sh");
    let config_name = format!("{}.json", hex_of(&sha(&config)));
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": ["linked:1"],
                                        "Layers": ["l1/layer.tar", "l2/layer.tar"]}]);
    let archive = tar_of(&[
        E {
            kind: tar::EntryType::Regular,
            name: config_name.clone(),
            link: None,
            data: config,
            mode: 0o644,
        },
        dir("l0/"),
        E {
            kind: tar::EntryType::Regular,
            name: "l0/layer.tar".into(),
            link: None,
            data: base,
            mode: 0o644,
        },
        dir("l1/"),
        symlink("l1/layer.tar", "../l0/layer.tar"),
        dir("l2/"),
        E {
            kind: tar::EntryType::Regular,
            name: "l2/layer.tar".into(),
            link: None,
            data: top,
            mode: 0o644,
        },
        E {
            kind: tar::EntryType::Regular,
            name: "manifest.json".into(),
            link: None,
            data: serde_json::to_vec(&manifest).unwrap(),
            mode: 0o644,
        },
    ]);
    let loaded = store
        .load_images(&write_temp(work.path(), "linked.tar", &archive))
        .unwrap();
    assert_eq!(loaded[0].repo_tags, vec!["linked:1"]);
    let m = store.prepare_snapshot("linked", "linked:1").unwrap();
    assert!(m.lower_dirs[1].join("base").exists() && m.lower_dirs[0].join("top").exists());
}

#[test]
fn concurrent_loads_of_the_same_image_store_it_once() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("state");
    let store = std::sync::Arc::new(open(&root));
    let base = tar_of(&[file("base", "b")]);
    let top = tar_of(&[file("top", "t")]);
    let archive = docker_archive(&[(&["same:1"], vec![base, top], "sh")]);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            let path = write_temp(work.path(), &format!("c{i}.tar"), &archive);
            std::thread::spawn(move || store.load_images(&path).unwrap()[0].id.clone())
        })
        .collect();
    let ids: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(names(&root.join("snapshots/committed")).len(), 2);
    assert_eq!(names(&root.join("blobs/sha256")).len(), 3);
    assert_eq!(names(&root.join("tmp")), Vec::<String>::new());
}

#[test]
fn an_image_with_sixty_layers_mounts() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: overlay mounts need root");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = open(&work.path().join("state"));
    let layers: Vec<Vec<u8>> = (0..60)
        .map(|i| tar_of(&[file(&format!("f{i}"), "x")]))
        .collect();
    let archive = docker_archive(&[(&["tall:1"], layers, "sh")]);
    store
        .load_images(&write_temp(work.path(), "tall.tar", &archive))
        .unwrap();
    let m = store.prepare_snapshot("tall", "tall:1").unwrap();
    assert_eq!(m.lower_dirs.len(), 60);
    let target = work.path().join("rootfs");
    fs::create_dir(&target).unwrap();
    let lower: Vec<String> = m
        .lower_dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        m.upper_dir.display(),
        m.work_dir.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .expect("mount overlay");
    let _guard = MountGuard(target.clone());
    assert_eq!(names(&target).len(), 60);
}
