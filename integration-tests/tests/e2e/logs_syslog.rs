//! The syslog log driver against a real rsyslogd (Debian's), started by the test on
//! loopback ports and private sockets with its own config, killed by PID on drop.
use std::{
    fs,
    net::{TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use berth_integration_tests::{eventually, stderr, stdout, unique, Engine};

struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
    udp: u16,
    tcp: u16,
}

impl Rsyslog {
    fn start() -> Rsyslog {
        // Free ports chosen by the kernel; released just before rsyslogd binds them.
        let udp = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("udp port")
            .port();
        let tcp = TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("tcp port")
            .port();
        Rsyslog::start_on(udp, tcp)
    }

    /// Starts rsyslogd on the given loopback ports (a restart reuses them).
    fn start_on(udp: u16, tcp: u16) -> Rsyslog {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        // One line per message: severity|facility|app-name|syslogtag|msg|version|input.
        let conf = format!(
            r#"global(workDirectory="{d}")
module(load="imudp")
module(load="imtcp")
module(load="imptcp")
module(load="imuxsock" SysSock.Use="off")
template(name="line" type="string" string="%syslogseverity%|%syslogfacility%|%app-name%|%syslogtag%|%msg%|%protocol-version%|%inputname%\n")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imptcp" path="{d}/stream.sock")
input(type="imuxsock" Socket="{d}/dgram.sock" RateLimit.Interval="0")
*.* action(type="omfile" file="{d}/out.log" template="line")
"#
        );
        fs::write(dir.path().join("rsyslog.conf"), conf).expect("write conf");
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rsyslogd (install-deps.sh installs it)");
        let r = Rsyslog {
            child,
            dir,
            udp,
            tcp,
        };
        let ready = eventually(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", tcp)).is_ok()
                && r.path("stream.sock").exists()
                && r.path("dgram.sock").exists()
        });
        assert!(ready, "rsyslogd did not come up");
        r
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits for `n` lines whose app-name or tag contains `needle`.
    fn lines(&self, needle: &str, n: usize) -> Vec<Vec<String>> {
        let mut found = Vec::new();
        let ok = eventually(Duration::from_secs(10), || {
            found = read_lines(&self.path("out.log"), needle);
            found.len() >= n
        });
        assert!(
            ok,
            "wanted {n} lines for {needle}, got {found:?}\n{}",
            fs::read_to_string(self.path("out.log")).unwrap_or_default()
        );
        found
    }
}

fn read_lines(path: &Path, needle: &str) -> Vec<Vec<String>> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(|l| l.split('|').map(|f| f.trim().to_string()).collect())
        .collect()
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        // Only the rsyslogd this test started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a container printing one stdout and one stderr line; returns its name and ID.
fn run(engine: &Engine, opts: &[&str]) -> (String, String) {
    let name = unique("sl");
    let mut args = vec!["run", "--name", &name, "--log-driver", "syslog"];
    for o in opts {
        args.extend(["--log-opt", o]);
    }
    args.extend(["busybox", "sh", "-c", "echo out; echo err >&2"]);
    let out = engine.berth(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = engine.inspect(&name, "{{.Id}}");
    (name, id)
}

/// (severity, msg) pairs, sorted.
fn sev_msg(lines: &[Vec<String>]) -> Vec<(String, String)> {
    let mut v: Vec<_> = lines.iter().map(|l| (l[0].clone(), l[4].clone())).collect();
    v.sort();
    v
}

fn pairs() -> Vec<(String, String)> {
    // rsyslog prints numbers: 3 is err, 6 is info.
    vec![("3".into(), "err".into()), ("6".into(), "out".into())]
}

#[test]
fn udp_default_format_carries_tag_and_severity() {
    let rs = Rsyslog::start();
    let engine = Engine::with_busybox();
    let addr = format!("syslog-address=udp://127.0.0.1:{}", rs.udp);
    let (name, id) = run(&engine, &[&addr, "tag={{.Name}}/{{.ID}}"]);
    let tag = format!("{name}/{}", &id[..12]);
    let lines = rs.lines(&tag, 2);
    assert_eq!(sev_msg(&lines), pairs(), "{lines:?}");
    for l in &lines {
        assert_eq!(l[1], "3", "daemon: {l:?}");
        assert!(l[3].starts_with(&format!("{tag}[")), "{l:?}");
        assert_eq!(l[6], "imudp", "{l:?}");
    }
    // Dual logging: `logs` reads the local copy.
    let out = engine.berth(&["logs", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (stdout(&out), stderr(&out)),
        ("out\n".into(), "err\n".into())
    );
}

#[test]
fn cache_disabled_syslog_local_and_none_reading() {
    let rs = Rsyslog::start();
    let engine = Engine::with_busybox();
    let addr = format!("syslog-address=udp://127.0.0.1:{}", rs.udp);
    let (name, _) = run(
        &engine,
        &[
            &addr,
            "cache-disabled=true",
            "syslog-format=rfc3164",
            "tag={{.Name}}",
        ],
    );
    let lines = rs.lines(&name, 2);
    assert_eq!(sev_msg(&lines), pairs(), "{lines:?}");
    assert!(
        lines.iter().all(|l| l[3].starts_with(&format!("{name}["))),
        "{lines:?}"
    );
    let out = engine.berth(&["logs", &name]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));

    for (driver, readable) in [("local", true), ("none", false)] {
        let name = unique(driver);
        let out = engine.berth(&[
            "run",
            "--name",
            &name,
            "--log-driver",
            driver,
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ]);
        assert_eq!(out.status.code(), Some(0), "{driver}: {}", stderr(&out));
        let out = engine.berth(&["logs", &name]);
        if readable {
            assert_eq!(
                (stdout(&out), stderr(&out)),
                ("out\n".into(), "err\n".into())
            );
        } else {
            assert_ne!(out.status.code(), Some(0), "{driver}: {}", stdout(&out));
            assert_eq!(stdout(&out), "");
            assert!(
                stderr(&out).contains("configured logging driver does not support reading"),
                "{}",
                stderr(&out)
            );
        }
    }
    let out = engine.berth(&[
        "run",
        "--log-driver",
        "none",
        "--log-opt",
        "max-size=1m",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("max-size"), "{}", stderr(&out));
}

#[test]
fn tcp_rfc5424_with_facility() {
    let rs = Rsyslog::start();
    let engine = Engine::with_busybox();
    let addr = format!("syslog-address=tcp://127.0.0.1:{}", rs.tcp);
    let (name, _) = run(
        &engine,
        &[
            &addr,
            "syslog-format=rfc5424",
            "syslog-facility=local3",
            "tag={{.Name}}",
        ],
    );
    let lines = rs.lines(&name, 2);
    assert_eq!(sev_msg(&lines), pairs(), "{lines:?}");
    for l in &lines {
        assert_eq!(
            (l[1].as_str(), l[2].as_str()),
            ("19", name.as_str()),
            "local3: {l:?}"
        );
        assert_eq!((l[5].as_str(), l[6].as_str()), ("1", "imtcp"), "{l:?}");
    }
}

#[test]
fn unix_stream_and_datagram_sockets() {
    let rs = Rsyslog::start();
    let engine = Engine::with_busybox();
    let stream = format!("syslog-address=unix://{}", rs.path("stream.sock").display());
    let (name, _) = run(
        &engine,
        &[&stream, "syslog-format=rfc5424micro", "tag={{.Name}}"],
    );
    let lines = rs.lines(&name, 2);
    assert_eq!(sev_msg(&lines), pairs(), "{lines:?}");
    assert!(lines.iter().all(|l| l[6] == "imptcp"), "{lines:?}");

    let dgram = format!(
        "syslog-address=unixgram://{}",
        rs.path("dgram.sock").display()
    );
    let (name, _) = run(&engine, &[&dgram, "tag={{.Name}}"]);
    let lines = rs.lines(&name, 2);
    assert_eq!(sev_msg(&lines), pairs(), "{lines:?}");
    assert!(lines.iter().all(|l| l[6] == "imuxsock"), "{lines:?}");
}

#[test]
fn bad_options_exit_125_naming_them_and_create_nothing() {
    let engine = Engine::with_busybox();
    let before = engine.footprint();
    for (opt, needle) in [
        ("syslog-format=nope", "syslog-format"),
        ("nosuch=1", "nosuch"),
        ("syslog-facility=nope", "syslog-facility"),
        ("tag={{.Nope}}", ".Nope"),
    ] {
        let out = engine.berth(&[
            "run",
            "--log-driver",
            "syslog",
            "--log-opt",
            "syslog-address=udp://127.0.0.1:9",
            "--log-opt",
            opt,
            "busybox",
            "true",
        ]);
        assert_eq!(out.status.code(), Some(125), "{opt}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{opt}: {}", stderr(&out));
    }
    // A tcp peer that is not listening fails the start, as in Docker.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port();
    let addr = format!("syslog-address=tcp://127.0.0.1:{port}");
    let out = engine.berth(&[
        "run",
        "--rm",
        "--log-driver",
        "syslog",
        "--log-opt",
        &addr,
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("syslog-address"), "{}", stderr(&out));
    assert_eq!(engine.footprint(), before);
    assert_eq!(engine.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn tcp_peer_restart_is_redialled() {
    let rs = Rsyslog::start();
    let engine = Engine::with_busybox();
    let addr = format!("syslog-address=tcp://127.0.0.1:{}", rs.tcp);
    let name = unique("re");
    let out = engine.berth(&[
        "run",
        "-d",
        "--name",
        &name,
        "--log-driver",
        "syslog",
        "--log-opt",
        &addr,
        "--log-opt",
        "tag={{.Name}}",
        "busybox",
        "sh",
        "-c",
        "echo first; sleep 3; for i in 1 2 3 4 5; do echo later$i; sleep 0.3; done",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    rs.lines(&name, 1);
    let (udp, tcp) = (rs.udp, rs.tcp);
    drop(rs);
    let rs = Rsyslog::start_on(udp, tcp);
    // The first write into the dead connection may vanish (TCP reports the reset on the
    // next one, as with Docker); the lines after it arrive over the new connection.
    let lines = rs.lines("later5|", 1);
    assert_eq!(lines[0][2], name, "{lines:?}");
    engine.wait_status(&name, "exited");
}
