//! Interactive containers driven through a real terminal (tmux): -it, detach keys,
//! attach, resize, exec.
use std::time::Duration;

use berth_integration_tests::{eventually, now_arg, stderr, stdout, unique, Engine, Terminal};

#[test]
fn run_it_gives_a_shell_with_a_tty_and_exit_ends_it() {
    let engine = Engine::with_busybox();
    let term = Terminal::new(&engine);
    let name = unique("shell");
    term.line(&format!(
        "berth run -it --name {name} busybox sh; echo code=$((100+$?))"
    ));
    term.wait_for("/ #");
    // Markers that neither the typed line nor a generated name can contain: a bare number
    // could match the test's PID inside a container name and race ahead.
    term.line("tty; echo ans-$((6*7))-wer");
    term.wait_for("ans-42-wer");
    assert!(term.screen().contains("/dev/pts/0"), "{}", term.screen());
    term.line("exit 3");
    term.wait_for("code=103");
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "exited");
    assert_eq!(engine.inspect(&name, "{{.State.ExitCode}}"), "3");
}

#[test]
fn ctrl_p_ctrl_q_detaches_and_attach_comes_back() {
    let engine = Engine::with_busybox();
    let term = Terminal::new(&engine);
    let name = unique("detach");
    let since = now_arg();
    term.line(&format!(
        "berth run -it --name {name} busybox sh; echo after=$((200+$?))"
    ));
    term.wait_for("/ #");
    term.send(&["C-p", "C-q"]);
    term.wait_for("after=200");
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "running");
    // Docker's order: attach before start; the detach keys publish `detach`.
    let events: Vec<String> = engine
        .container_events(&since, &name)
        .into_iter()
        .filter(|e| !e.starts_with("resize"))
        .collect();
    assert_eq!(events, ["create", "attach", "start", "detach"]);

    term.line(&format!("berth attach {name}; echo again=$((300+$?))"));
    term.line("echo back-$((50+5))-again");
    // Printed by the container's shell, so the attach is in raw mode before the keys go.
    term.wait_for("back-55-again");
    term.send(&["C-p", "C-q"]);
    term.wait_for("again=300");
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "running");
    let events = engine.container_events(&since, &name);
    let tail: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|e| !e.starts_with("resize"))
        .skip(4)
        .collect();
    assert_eq!(tail, ["attach", "detach"], "{events:?}");
    engine.ok(&["rm", "-f", &name]);
}

#[test]
fn custom_and_disabled_detach_keys() {
    let engine = Engine::with_busybox();
    let term = Terminal::new(&engine);
    let custom = unique("ckeys");
    term.line(&format!(
        "berth run -it --detach-keys ctrl-x,x --name {custom} busybox sh; echo out=$((400+$?))"
    ));
    term.wait_for("/ #");
    // The default keys pass through now: ctrl-p followed by another key reaches the shell.
    term.send(&["C-p", "C-q"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!term.screen().contains("out=400"));
    term.send(&["C-x", "x"]);
    term.wait_for("out=400");
    assert_eq!(engine.inspect(&custom, "{{.State.Status}}"), "running");
    engine.ok(&["rm", "-f", &custom]);

    let none = unique("nokeys");
    term.line(&format!(
        "berth run -it --detach-keys '' --name {none} busybox sh; echo end=$((500+$?))"
    ));
    term.wait_for("/ #");
    term.send(&["C-p", "C-q"]);
    std::thread::sleep(Duration::from_millis(300));
    term.line("exit 4");
    term.wait_for("end=504");

    let out = engine.berth(&["run", "--rm", "--detach-keys", "ctrl-", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("ctrl-"), "{}", stderr(&out));
}

#[test]
fn window_size_follows_the_terminal() {
    let engine = Engine::with_busybox();
    let term = Terminal::new(&engine);
    let name = unique("size");
    let since = now_arg();
    term.line(&format!("berth run -it --name {name} busybox sh"));
    term.wait_for("/ #");
    term.line("stty size");
    term.wait_for("30 100");
    term.resize(90, 25);
    std::thread::sleep(Duration::from_millis(300));
    term.line("stty size");
    term.wait_for("25 90");
    term.line("exit");
    // Each size the terminal had is a `resize` event, as in Docker.
    let events = engine.container_events(&since, &name);
    assert!(events.iter().any(|e| e == "resize 25x90"), "{events:?}");
    engine.ok(&["rm", "-f", &name]);
}

#[test]
fn stdin_is_piped_without_a_tty_and_eof_ends_it() {
    let engine = Engine::with_busybox();
    let out = engine.berth_stdin(
        &["run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done"],
        b"line one\nline two\n",
    );
    assert_eq!(stdout(&out), "line one\nline two\ndone\n");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn exec_runs_in_the_container() {
    let engine = Engine::with_busybox();
    let name = unique("execd");
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sh",
        "-c",
        "echo ready > /tmp/ready; sleep 1000",
    ]);
    engine.wait_status(&name, "running");
    assert_eq!(engine.ok(&["exec", &name, "cat", "/tmp/ready"]), "ready\n");
    assert_eq!(
        engine.ok(&["exec", &name, "hostname"]).trim(),
        &engine.inspect(&name, "{{.Id}}")[..12]
    );
    let env = engine.ok(&[
        "exec",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        &name,
        "sh",
        "-c",
        "echo $A $FROM_RUN; pwd; id -u",
    ]);
    assert_eq!(env, "1 1\n/tmp\n65534\n");
    assert_eq!(
        engine
            .berth(&["exec", &name, "sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );
    assert_eq!(
        engine.berth(&["exec", &name, "nosuch"]).status.code(),
        Some(127)
    );
    engine.ok(&["exec", "-d", &name, "touch", "/tmp/from-exec-d"]);
    assert!(eventually(Duration::from_secs(5), || engine
        .berth(&["exec", &name, "test", "-e", "/tmp/from-exec-d"])
        .status
        .success()));
    let piped = engine.berth_stdin(&["exec", "-i", &name, "cat"], b"through exec\n");
    assert_eq!(stdout(&piped), "through exec\n");

    let term = Terminal::new(&engine);
    term.line(&format!("berth exec -it {name} sh; echo ex=$((600+$?))"));
    term.wait_for("/ #");
    term.line("tty; exit 2");
    term.wait_for("ex=602");
    assert!(term.screen().contains("/dev/pts/"), "{}", term.screen());

    engine.ok(&["stop", "-t", "1", &name]);
    let out = engine.berth(&["exec", &name, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
    let out = engine.berth(&["attach", "nosuch-container"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("no such container"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_attached_client_sees_a_clean_break_when_services_die_and_can_attach_again() {
    use std::io::{BufRead, BufReader};
    let mut engine = Engine::with_busybox();
    for service in ["supervisor", "engine"] {
        let name = unique("live");
        let mut client = engine
            .berth_cmd(&[
                "run",
                "--name",
                &name,
                "busybox",
                "sh",
                "-c",
                "while true; do echo tick; sleep 0.1; done",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "tick");
        engine.stop_service(service, true);
        let status = client.wait().unwrap();
        assert!(
            !status.success(),
            "the CLI did not notice the {service} going away"
        );
        let mut err = String::new();
        std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut err).unwrap();
        assert!(
            !err.trim().is_empty(),
            "the CLI said nothing when the {service} died"
        );
        engine.start_service(service);
        assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "running");

        let mut again = engine
            .berth_cmd(&["attach", "--no-stdin", &name])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(again.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "tick");
        unsafe { libc::kill(again.id() as i32, libc::SIGKILL) };
        let _ = again.wait();
        engine.ok(&["rm", "-f", &name]);
    }
}

#[test]
fn a_partial_detach_sequence_is_passed_through() {
    let engine = Engine::with_busybox();
    let term = Terminal::new(&engine);
    term.line("berth run -it --rm busybox sh");
    term.wait_for("/ #");
    term.line("cat -v");
    std::thread::sleep(Duration::from_millis(200));
    term.send(&["C-p", "a", "Enter"]);
    term.wait_for("^Pa\n^Pa");
    term.send(&["C-d"]);
    term.line("exit");
}

#[test]
fn signals_sent_to_the_cli_reach_the_container() {
    use std::io::{BufRead, BufReader};
    let engine = Engine::with_busybox();
    let mut client = engine
        .berth_cmd(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got term; exit 5' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    unsafe { libc::kill(client.id() as i32, libc::SIGTERM) };
    assert_eq!(lines.next().unwrap().unwrap(), "got term");
    assert_eq!(client.wait().unwrap().code(), Some(5));
}

#[test]
fn several_clients_attach_at_once_and_all_get_the_output() {
    use std::io::{BufRead, BufReader};
    let engine = Engine::with_busybox();
    let name = unique("multi");
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo n$i; sleep 0.1; done",
    ]);
    engine.wait_status(&name, "running");
    let mut clients: Vec<_> = (0..2)
        .map(|_| {
            engine
                .berth_cmd(&["attach", "--no-stdin", &name])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let seen: Vec<Vec<String>> = clients
        .iter_mut()
        .map(|c| {
            BufReader::new(c.stdout.take().unwrap())
                .lines()
                .take(15)
                .map(|l| l.unwrap())
                .collect()
        })
        .collect();
    for c in &mut clients {
        unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
        let _ = c.wait();
    }
    // Both clients see the same lines from the point where both were attached.
    let common: Vec<&String> = seen[0].iter().filter(|l| seen[1].contains(l)).collect();
    assert!(common.len() >= 5, "{seen:?}");
    engine.ok(&["rm", "-f", &name]);
}
