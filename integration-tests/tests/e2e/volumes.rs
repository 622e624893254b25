//! Bind mounts and named volumes.
use berth_integration_tests::{stderr, unique, Engine};

#[test]
fn bind_mounts_share_host_files_and_ro_is_enforced() {
    let engine = Engine::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "from host\n").unwrap();
    let spec = format!("{}:/data", dir.path().display());
    assert_eq!(
        engine.ok(&["run", "--rm", "-v", &spec, "busybox", "cat", "/data/in.txt"]),
        "from host\n"
    );
    engine.ok(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "echo back > /data/out.txt",
    ]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "back\n"
    );

    let ro = format!("{}:/data:ro", dir.path().display());
    let out = engine.berth(&[
        "run",
        "--rm",
        "-v",
        &ro,
        "busybox",
        "sh",
        "-c",
        "echo x > /data/nope",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("nope").exists());

    // A missing host directory is created, as Docker's -v does.
    let missing = dir.path().join("made/by/berth");
    engine.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/m", missing.display()),
        "busybox",
        "true",
    ]);
    assert!(missing.is_dir());
}

#[test]
fn named_volumes_outlive_containers_and_are_protected_while_used() {
    let engine = Engine::with_busybox();
    let vol = unique("vol");
    engine.ok(&["volume", "create", &vol]);
    assert!(engine.ok(&["volume", "ls"]).contains(&vol));
    engine.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/v"),
        "busybox",
        "sh",
        "-c",
        "echo kept > /v/f",
    ]);
    assert_eq!(
        engine.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{vol}:/v"),
            "busybox",
            "cat",
            "/v/f"
        ]),
        "kept\n"
    );

    let inspect: serde_json::Value =
        serde_json::from_str(&engine.ok(&["volume", "inspect", &vol])).unwrap();
    let mountpoint = inspect[0]["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(format!("{mountpoint}/f")).unwrap(),
        "kept\n"
    );

    let user = unique("user");
    engine.ok(&[
        "create",
        "--name",
        &user,
        "-v",
        &format!("{vol}:/v"),
        "busybox",
        "true",
    ]);
    let out = engine.berth(&["volume", "rm", &vol]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("volume is in use"),
        "{}",
        stderr(&out)
    );
    engine.ok(&["rm", &user]);
    engine.ok(&["volume", "rm", &vol]);
    assert!(!engine.ok(&["volume", "ls"]).contains(&vol));

    // A volume named on first use is created.
    let auto = unique("auto");
    engine.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{auto}:/a"),
        "busybox",
        "true",
    ]);
    assert!(engine.ok(&["volume", "ls"]).contains(&auto));
}

#[test]
fn bad_mount_specs_are_refused_naming_them() {
    let engine = Engine::with_busybox();
    let before = engine.footprint();
    let out = engine.berth(&["run", "--rm", "-v", "/tmp:relative", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("relative"), "{}", stderr(&out));
    assert_eq!(engine.footprint(), before);
}
