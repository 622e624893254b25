//! `berth run`: output, exit codes, environment, hostname, names.
use berth_integration_tests::{stderr, stdout, unique, Engine};

#[test]
fn run_prints_output_and_exits_with_the_container_code() {
    let engine = Engine::with_busybox();
    let out = engine.berth(&["run", "--rm", "busybox", "echo", "hello"]);
    assert_eq!(stdout(&out), "hello\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));

    let out = engine.berth(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo oops >&2; exit 1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "oops\n");

    let out = engine.berth(&["run", "--rm", "busybox", "sh", "-c", "exit 42"]);
    assert_eq!(out.status.code(), Some(42));
}

#[test]
fn missing_command_exits_127_and_leaves_nothing() {
    let engine = Engine::with_busybox();
    let before = engine.footprint();
    let out = engine.berth(&["run", "--name", &unique("nf"), "busybox", "nosuchcommand"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(stderr(&out).contains("nosuchcommand"), "{}", stderr(&out));
    assert_eq!(engine.footprint(), before);
    assert_eq!(engine.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn command_that_cannot_be_invoked_exits_126_and_leaves_nothing() {
    let engine = Engine::with_busybox();
    let before = engine.footprint();
    let out = engine.berth(&["run", "busybox", "/etc"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert_eq!(engine.footprint(), before);

    // A working directory that is a file.
    let out = engine.berth(&["run", "-w", "/etc/passwd", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert_eq!(engine.footprint(), before);
    assert_eq!(engine.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn unknown_image_is_an_engine_error_naming_it() {
    let engine = Engine::start();
    // `--pull never`: by default `run` would try to pull it from Docker Hub (see registry.rs).
    let out = engine.berth(&["run", "--rm", "--pull", "never", "nosuch", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("no such image: nosuch:latest"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn environment_hostname_workdir_and_user() {
    let engine = Engine::with_busybox();
    let env = engine.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-e",
        "PATH=/bin",
        "busybox",
        "env",
    ]);
    assert!(env.lines().any(|l| l == "GREETING=hi"), "{env}");
    assert!(env.lines().any(|l| l == "PATH=/bin"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("HOSTNAME=")), "{env}");
    assert!(env.lines().any(|l| l.starts_with("HOME=")), "{env}");

    // The hostname is the 12-character container ID.
    let name = unique("host");
    let hostname = engine.ok(&["run", "--name", &name, "busybox", "hostname"]);
    let id = engine.inspect(&name, "{{.Id}}");
    assert_eq!(hostname.trim(), &id[..12]);
    assert_eq!(
        engine
            .ok(&["run", "--rm", "-h", "custom", "busybox", "hostname"])
            .trim(),
        "custom"
    );

    assert_eq!(
        engine
            .ok(&["run", "--rm", "-w", "/tmp/new/dir", "busybox", "pwd"])
            .trim(),
        "/tmp/new/dir"
    );
    assert_eq!(
        engine
            .ok(&["run", "--rm", "-u", "nobody", "busybox", "id", "-u"])
            .trim(),
        "65534"
    );
    assert_eq!(
        engine
            .ok(&[
                "run",
                "--rm",
                "--entrypoint",
                "echo",
                "busybox",
                "from",
                "entrypoint"
            ])
            .trim(),
        "from entrypoint"
    );
}

#[test]
fn env_file_is_read() {
    let engine = Engine::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env");
    std::fs::write(&file, "# comment\nA=1\n\nB=two words\n").unwrap();
    let env = engine.ok(&[
        "run",
        "--rm",
        "--env-file",
        file.to_str().unwrap(),
        "busybox",
        "env",
    ]);
    assert!(env.lines().any(|l| l == "A=1"), "{env}");
    assert!(env.lines().any(|l| l == "B=two words"), "{env}");
}

#[test]
fn name_conflict_names_the_container_holding_the_name() {
    let engine = Engine::with_busybox();
    let name = unique("dup");
    engine.ok(&["create", "--name", &name, "busybox", "true"]);
    let id = engine.inspect(&name, "{{.Id}}");
    let before = engine.footprint();
    let out = engine.berth(&["run", "--name", &name, "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains(&format!(
            "\"/{name}\" is already in use by container \"{id}\""
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(engine.footprint(), before);
}

#[test]
fn killed_container_exits_137() {
    let engine = Engine::with_busybox();
    let name = unique("kill");
    engine.ok(&["run", "-d", "--name", &name, "busybox", "sleep", "1000"]);
    engine.wait_status(&name, "running");
    engine.ok(&["kill", &name]);
    engine.wait_status(&name, "exited");
    assert_eq!(engine.inspect(&name, "{{.State.ExitCode}}"), "137");
    assert_eq!(engine.ok(&["wait", &name]).trim(), "137");
}

#[test]
fn detached_run_with_rm_removes_the_container_when_it_exits() {
    let engine = Engine::with_busybox();
    let name = unique("drm");
    engine.ok(&["run", "-d", "--rm", "--name", &name, "busybox", "true"]);
    assert!(berth_integration_tests::eventually(
        std::time::Duration::from_secs(10),
        || { !engine.ok(&["ps", "-a", "--format", "json"]).contains(&name) }
    ));
}
