//! images, import, load, rmi, and malformed tarballs refused.
use berth_integration_tests::{stderr, Engine};

fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data, link) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        // Write the raw name so that unsafe paths reach the engine unchanged.
        let name = header.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            let l = header.as_old_mut().linkname.as_mut();
            l[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn import_run_and_remove_an_image() {
    let engine = Engine::with_busybox();
    let rootfs = tar_with(&[
        ("bin/", tar::EntryType::Directory, b"", None),
        (
            "bin/busybox",
            tar::EntryType::Regular,
            &std::fs::read("/bin/busybox").unwrap(),
            None,
        ),
        ("bin/sh", tar::EntryType::Symlink, b"", Some("busybox")),
        ("hello.txt", tar::EntryType::Regular, b"imported\n", None),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rootfs.tar");
    std::fs::write(&file, rootfs).unwrap();
    engine.ok(&["image", "import", file.to_str().unwrap(), "mybox:1"]);
    assert!(engine
        .ok(&["images"])
        .lines()
        .any(|l| l.starts_with("mybox") && l.contains(" 1 ")));
    assert_eq!(
        engine.ok(&[
            "run",
            "--rm",
            "mybox:1",
            "/bin/busybox",
            "cat",
            "/hello.txt"
        ]),
        "imported\n"
    );
    engine.ok(&["rmi", "mybox:1"]);
    assert!(!engine.ok(&["images"]).contains("mybox"));
    let out = engine.berth(&["rmi", "mybox:1"]);
    assert!(!out.status.success());
}

#[test]
fn images_lists_the_loaded_busybox() {
    let engine = Engine::with_busybox();
    let images = engine.ok(&["images"]);
    assert!(images.starts_with("REPOSITORY"), "{images}");
    assert!(
        images
            .lines()
            .any(|l| l.starts_with("busybox") && l.contains("latest")),
        "{images}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&engine.ok(&["image", "inspect", "busybox"])).unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
}

#[test]
fn rmi_refuses_an_image_in_use() {
    let engine = Engine::with_busybox();
    engine.ok(&["create", "--name", "user-of-busybox", "busybox", "true"]);
    let out = engine.berth(&["rmi", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("is using its referenced image"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn malformed_tarballs_are_refused_naming_the_entry() {
    let engine = Engine::start();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "../evil",
            tar_with(&[("../evil", tar::EntryType::Regular, b"x", None)]),
        ),
        (
            "/abs",
            tar_with(&[("/abs", tar::EntryType::Regular, b"x", None)]),
        ),
        (
            "hard",
            tar_with(&[("hard", tar::EntryType::Link, b"", Some("../../etc/passwd"))]),
        ),
        (
            "link/passwd",
            tar_with(&[
                ("link", tar::EntryType::Symlink, b"", Some("/etc")),
                ("link/passwd", tar::EntryType::Regular, b"owned", None),
            ]),
        ),
    ];
    let before = engine.footprint();
    for (bad, bytes) in cases {
        let file = dir.path().join("bad.tar");
        std::fs::write(&file, bytes).unwrap();
        let out = engine.berth(&["image", "import", file.to_str().unwrap(), "bad:1"]);
        assert_eq!(out.status.code(), Some(125), "{bad} accepted");
        assert!(
            stderr(&out).contains(bad),
            "error for {bad} does not name it: {}",
            stderr(&out)
        );
    }
    assert!(engine.ok(&["images", "-a", "-q"]).trim().is_empty());
    assert_eq!(engine.footprint(), before);
    let leftovers: Vec<_> = std::fs::read_dir(engine.root.join("image-store/snapshots/committed"))
        .into_iter()
        .flatten()
        .collect();
    assert!(leftovers.is_empty(), "snapshots left behind");
    let garbage = dir.path().join("garbage.tar");
    std::fs::write(&garbage, b"this is not a tarball at all").unwrap();
    let out = engine.berth(&["load", "-i", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
}
