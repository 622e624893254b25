//! Volumes complete: copy-up, anonymous volumes from an image's VOLUME, --volumes-from,
//! --mount, --tmpfs with --read-only, driver-option (tmpfs) volumes, labels and filters,
//! in-use protection, prune, `rm -v` / `--rm`, data safety across service restarts, and
//! bad input for each spec form. Every mount a test makes lives under its engine's temp
//! dir, which the engine's Drop guard unmounts.
use std::time::Duration;

use berth_integration_tests::{eventually, stderr, unique, Engine};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

fn mountpoint(engine: &Engine, vol: &str) -> String {
    json(&engine.ok(&["volume", "inspect", vol]))[0]["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The names of a container's volumes, from `inspect`'s Mounts.
fn container_volumes(engine: &Engine, container: &str) -> Vec<String> {
    json(&engine.ok(&["inspect", container]))[0]["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] == "volume")
        .map(|m| m["Name"].as_str().unwrap().to_string())
        .collect()
}

fn volumes(engine: &Engine, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["volume", "ls", "-q"];
    for f in filters {
        args.extend(["-f", f]);
    }
    engine.ok(&args).lines().map(str::to_string).collect()
}

/// An image with content at /app (owned 1234:5678, mode 0750, a symlink) and VOLUME /app.
fn app_image(engine: &Engine) -> String {
    let builder = unique("builder");
    engine.ok(&[
        "run",
        "--name",
        &builder,
        "busybox",
        "sh",
        "-c",
        "mkdir -p /app/sub && echo hello > /app/sub/f && ln -s sub/f /app/link \
         && chown -R 1234:5678 /app/sub && chmod 0750 /app/sub",
    ]);
    let image = unique("appimg");
    engine.ok(&["commit", "-c", "VOLUME /app", &builder, &image]);
    engine.ok(&["rm", &builder]);
    image
}

#[test]
fn copy_up_fills_new_volumes_from_the_image_keeping_owner_mode_and_symlinks() {
    let engine = Engine::with_busybox();
    let image = app_image(&engine);
    let check = "stat -c '%u:%g %a' /app/sub && readlink /app/link && cat /app/link";
    let want = "1234:5678 750\nsub/f\nhello\n";

    // The image's VOLUME: an anonymous volume, filled from the image.
    let anon = unique("anon");
    assert_eq!(
        engine.ok(&["run", "--name", &anon, &image, "sh", "-c", check]),
        want
    );
    let mounts = container_volumes(&engine, &anon);
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let anon_vol = mounts[0].clone();
    assert_eq!(anon_vol.len(), 64, "{mounts:?}");

    // A named volume, created on first use and filled; checked from the host too.
    let named = unique("appdata");
    assert_eq!(
        engine.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{named}:/app"),
            &image,
            "sh",
            "-c",
            &format!("{check}; echo mine > /app/sub/f"),
        ]),
        want
    );
    let data = mountpoint(&engine, &named);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(format!("{data}/sub")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1234, 5678, 0o750)
    );
    // Not empty any more: never filled again, the container's write stays.
    assert_eq!(
        engine.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{named}:/app"),
            &image,
            "cat",
            "/app/sub/f"
        ]),
        "mine\n"
    );
    // nocopy leaves a new volume empty.
    let bare = unique("bare");
    assert_eq!(
        engine.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{bare}:/app:nocopy"),
            &image,
            "ls",
            "-A",
            "/app"
        ]),
        ""
    );

    // rm -v removes the anonymous volume, never a named one.
    engine.ok(&["rm", "-v", &anon]);
    let left = volumes(&engine, &[]);
    assert!(!left.contains(&anon_vol), "{left:?}");
    assert!(left.contains(&named) && left.contains(&bare), "{left:?}");
}

#[test]
fn run_rm_removes_anonymous_volumes_but_never_named_ones() {
    let engine = Engine::with_busybox();
    let named = unique("keep");
    engine.ok(&[
        "run",
        "--rm",
        "-v",
        "/anon",
        "-v",
        &format!("{named}:/named"),
        "busybox",
        "sh",
        "-c",
        "echo x > /anon/f; echo y > /named/f",
    ]);
    assert_eq!(volumes(&engine, &[]), vec![named.clone()]);
    // Without --rm, rm (no -v) keeps the anonymous volume; it is dangling afterwards.
    let c = unique("c");
    engine.ok(&["run", "--name", &c, "-v", "/anon", "busybox", "true"]);
    engine.ok(&["rm", &c]);
    let dangling = volumes(&engine, &["dangling=true"]);
    assert_eq!(dangling.len(), 2, "{dangling:?}");
}

#[test]
fn volumes_from_shares_volumes_and_binds_at_the_same_paths_and_ro_is_enforced() {
    let engine = Engine::with_busybox();
    let host = tempfile::tempdir().unwrap();
    let store = unique("store");
    engine.ok(&[
        "run",
        "--name",
        &store,
        "-v",
        "/data",
        "-v",
        &format!("{}:/host", host.path().display()),
        "busybox",
        "sh",
        "-c",
        "echo x > /data/f",
    ]);
    assert_eq!(
        engine.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            &store,
            "busybox",
            "sh",
            "-c",
            "cat /data/f; echo from-reader > /host/r"
        ]),
        "x\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("r")).unwrap(),
        "from-reader\n"
    );
    let out = engine.berth(&[
        "run",
        "--rm",
        "--volumes-from",
        &format!("{store}:ro"),
        "busybox",
        "sh",
        "-c",
        "cat /data/f && echo no > /data/g",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    // The shared volume is in use by the store container: --rm of the reader did not
    // remove it, and it is refused while the store exists.
    let vol = container_volumes(&engine, &store).remove(0);
    let out = engine.berth(&["volume", "rm", &vol]);
    assert_eq!(out.status.code(), Some(125));
    let out = engine.berth(&["run", "--rm", "--volumes-from", "nosuch", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).to_lowercase().contains("no such container"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn mount_flag_tmpfs_and_read_only_rootfs() {
    let engine = Engine::with_busybox();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "bound\n").unwrap();
    let v1 = unique("v1");
    engine.ok(&["volume", "create", &v1]);
    let out = engine.berth(&[
        "run",
        "--rm",
        "--read-only",
        "--mount",
        &format!("type=volume,src={v1},dst=/v,readonly"),
        "--mount",
        &format!("type=bind,src={},dst=/srv", host.path().display()),
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=64m",
        "--tmpfs",
        "/run:size=16m,mode=1777",
        "busybox",
        "sh",
        "-c",
        "cat /srv/in; grep ' /t ' /proc/mounts | grep -o size=[0-9]*k; \
         grep ' /run ' /proc/mounts | grep -o size=[0-9]*k; stat -c %a /run; \
         echo ok > /run/f && cat /run/f; echo w > /srv/out; \
         echo x > /v/x 2>&1 || true; echo x > /etc/x 2>&1 || true",
    ]);
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        stderr(&out),
    );
    assert!(out.status.success(), "{o}\n{e}");
    assert_eq!(
        o.lines().take(5).collect::<Vec<_>>(),
        ["bound", "size=65536k", "size=16384k", "1777", "ok"],
        "{o}\n{e}"
    );
    assert_eq!(e.matches("Read-only file system").count(), 2, "{e}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "w\n"
    );
    assert!(std::fs::read_dir(mountpoint(&engine, &v1))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn tmpfs_driver_volumes_are_mounted_until_removed() {
    let engine = Engine::with_busybox();
    let scratch = unique("scratch");
    engine.ok(&[
        "volume",
        "create",
        "--driver",
        "local",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=32m",
        &scratch,
    ]);
    let info = json(&engine.ok(&["volume", "inspect", &scratch]));
    assert_eq!(info[0]["Options"]["o"], "size=32m");
    let data = mountpoint(&engine, &scratch);
    let is_mounted = |p: &str| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(p) && l.contains(" - tmpfs "))
    };
    assert!(is_mounted(&data), "tmpfs on {data}");
    assert_eq!(
        engine.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{scratch}:/s"),
            "busybox",
            "sh",
            "-c",
            "echo t > /s/f; df -k /s | tail -1 | awk '{print $2}'"
        ]),
        "32768\n"
    );
    assert_eq!(std::fs::read_to_string(format!("{data}/f")).unwrap(), "t\n");
    engine.ok(&["volume", "rm", &scratch]);
    assert!(!is_mounted(&data));
    assert!(!std::path::Path::new(&data).exists());

    let out = engine.berth(&["volume", "create", "--opt", "colour=red", "bad1"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("invalid option: \"colour\""),
        "{}",
        stderr(&out)
    );
    let out = engine.berth(&["volume", "create", "--opt", "type=tmpfs", "bad2"]);
    assert!(
        stderr(&out).contains("missing required option: \"device\""),
        "{}",
        stderr(&out)
    );
    assert!(volumes(&engine, &[]).is_empty());
}

#[test]
fn labels_filters_in_use_protection_and_prune() {
    let engine = Engine::with_busybox();
    let (a, b, c) = (unique("va"), unique("vb"), unique("vc"));
    engine.ok(&["volume", "create", "--label", "team=a", &a]);
    engine.ok(&["volume", "create", "--label", "team=b", &b]);
    engine.ok(&["volume", "create", &c]);
    let info = json(&engine.ok(&["volume", "inspect", &a]));
    assert_eq!(info[0]["Labels"]["team"], "a");
    let runner = unique("runner");
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &runner,
        "-v",
        &format!("{b}:/b"),
        "-v",
        "/anon",
        "busybox",
        "sleep",
        "60",
    ]);
    let id = engine.inspect(&runner, "{{.Id}}");
    assert_eq!(volumes(&engine, &["label=team=a"]), vec![a.clone()]);
    assert_eq!(volumes(&engine, &["label=team"]).len(), 2);
    let dangling = volumes(&engine, &["dangling=true"]);
    assert!(dangling.contains(&a) && dangling.contains(&c) && !dangling.contains(&b));
    assert_eq!(
        volumes(&engine, &["dangling=true", "label=team=a"]),
        vec![a.clone()]
    );
    assert_eq!(
        volumes(&engine, &[&format!("name={}", &c[..c.len() - 2])]),
        vec![c.clone()]
    );
    let out = engine.berth(&["volume", "ls", "-f", "colour=red"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("colour=red"), "{}", stderr(&out));

    // In use by a running container: refused naming it, -f too.
    for args in [vec!["volume", "rm", &b], vec!["volume", "rm", "-f", &b]] {
        let out = engine.berth(&args);
        assert_eq!(out.status.code(), Some(125));
        assert!(
            stderr(&out).contains("volume is in use"),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(&id), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("(containers: {runner})")),
            "{}",
            stderr(&out)
        );
    }

    // An unused anonymous volume to prune.
    engine.ok(&["run", "--name", "leaver", "-v", "/gone", "busybox", "true"]);
    engine.ok(&["rm", "leaver"]);
    let before = volumes(&engine, &[]);
    let out = engine.ok(&["volume", "prune", "-f"]);
    assert!(out.starts_with("Deleted Volumes:\n"), "{out}");
    let after = volumes(&engine, &[]);
    assert_eq!(
        before.len() - after.len(),
        1,
        "only the unused anonymous one: {out}"
    );
    for v in [&a, &b, &c] {
        assert!(after.contains(v));
    }
    // -a: named ones too, but not those in use; a label filter narrows it.
    engine.ok(&["volume", "prune", "-f", "-a", "--filter", "label=team=a"]);
    assert!(!volumes(&engine, &[]).contains(&a));
    engine.ok(&["volume", "prune", "-f", "-a"]);
    let left = volumes(&engine, &[]);
    assert_eq!(
        left.len(),
        2,
        "b and the runner's anonymous volume: {left:?}"
    );
    assert!(left.contains(&b));
    engine.ok(&["rm", "-f", "-v", &runner]);
    assert_eq!(volumes(&engine, &[]), vec![b.clone()]);
    engine.ok(&["volume", "rm", &b]);
}

#[test]
fn volume_data_survives_every_service_restart_while_a_container_writes() {
    let mut engine = Engine::with_busybox();
    let vol = unique("safe");
    let writer = unique("writer");
    let script = "i=0; while [ $i -lt 150 ]; do echo $i >> /data/log; i=$((i+1)); sleep 0.02; done";
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &writer,
        "-v",
        &format!("{vol}:/data"),
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    // A second container sees the first one's writes as they happen.
    assert!(eventually(Duration::from_secs(10), || {
        engine
            .berth(&[
                "run",
                "--rm",
                "-v",
                &format!("{vol}:/d"),
                "busybox",
                "cat",
                "/d/log",
            ])
            .stdout
            .len()
            > 4
    }));
    engine.restart_service("volume", true);
    for service in [
        "image-store",
        "network",
        "log-router",
        "supervisor",
        "engine",
    ] {
        engine.restart_service(service, true);
    }
    engine.ok(&["wait", &writer]);
    let expected: String = (0..150).map(|i| format!("{i}\n")).collect();
    assert_eq!(
        std::fs::read_to_string(format!("{}/log", mountpoint(&engine, &vol))).unwrap(),
        expected
    );
    engine.ok(&["rm", &writer]);
    engine.restart_service("volume", true);
    // Content survives the container's removal and the volume service's restart.
    assert_eq!(
        engine.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{vol}:/data"),
            "busybox",
            "cat",
            "/data/log"
        ]),
        expected
    );
}

#[test]
fn bad_input_for_each_form_exits_125_naming_the_part_and_makes_nothing() {
    let engine = Engine::with_busybox();
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let missing = host.path().join("missing");
    let f = file.display().to_string();
    let m = missing.display().to_string();
    let h = host.path().display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["-v".into(), "/tmp:relative".into()], "relative"),
        (vec!["-v".into(), "vol1:/x:bogus".into()], "bogus"),
        (
            vec!["--mount".into(), "type=volume,dst=rel".into()],
            "\"rel\"",
        ),
        (
            vec!["--mount".into(), "type=disk,dst=/x".into()],
            "\"disk\"",
        ),
        (
            vec![
                "--mount".into(),
                "type=volume,src=v9,dst=/x,colour=red".into(),
            ],
            "\"colour\"",
        ),
        (
            vec!["--mount".into(), "type=tmpfs,dst=/t,tmpfs-size=lots".into()],
            "size=lots",
        ),
        (
            vec!["--mount".into(), "type=tmpfs,dst=/t,tmpfs-mode=999".into()],
            "mode=999",
        ),
        (
            vec!["--mount".into(), format!("type=bind,src={m},dst=/x")],
            "does not exist",
        ),
        (
            vec!["--mount".into(), format!("type=bind,src={f},dst=/etc")],
            "is a file but /etc in the image is a directory",
        ),
        (
            vec!["-v".into(), format!("{h}:/etc/passwd")],
            "is a directory but /etc/passwd in the image is a file",
        ),
        (vec!["--tmpfs".into(), "run".into()], "\"run\""),
        (vec!["--tmpfs".into(), "/run:bogus".into()], "\"bogus\""),
        (
            vec![
                "-v".into(),
                "/data".into(),
                "--tmpfs".into(),
                "/data".into(),
            ],
            "Duplicate mount point: /data",
        ),
        (
            vec![
                "-v".into(),
                "v2:/data".into(),
                "--mount".into(),
                "type=tmpfs,dst=/data/".into(),
            ],
            "Duplicate mount point",
        ),
        (vec!["--volumes-from".into(), "x:rx".into()], "rx"),
    ];
    let before = engine.footprint();
    for (flags, part) in cases {
        let mut args = vec!["run", "--rm", "--name", "never"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["busybox", "true"]);
        let out = engine.berth(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(part), "{args:?}: {}", stderr(&out));
        assert_eq!(engine.footprint(), before, "{args:?} left something");
        assert!(!missing.exists());
    }
    assert!(volumes(&engine, &[]).is_empty());
    assert_eq!(engine.ok(&["ps", "-aq"]), "");
}
