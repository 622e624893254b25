//! The syslog driver over TLS (`tcp+tls://`, RFC 5425 octet counting) against a real
//! rsyslogd with Debian's gtls driver, certificates made by `openssl` for the test.
use std::{
    fs,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use berth_integration_tests::{eventually, stderr, stdout, unique, Engine};

struct TlsRsyslog {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>.pem`, `<name>-key.pem`), and with `server`, a certificate for 127.0.0.1
/// signed by it.
fn make_ca(dir: &Path, name: &str) {
    let key = format!("{name}-key.pem");
    let cert = format!("{name}.pem");
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &cert,
            "-days", "2", "-subj", &subject,
        ],
    );
}

impl TlsRsyslog {
    fn start() -> TlsRsyslog {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        make_ca(d, "ca");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server-key.pem",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
        // Another CA that did not sign the server's certificate.
        make_ca(d, "other");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("port")
            .port();
        let p = d.display();
        let conf = format!(
            r#"global(workDirectory="{p}" DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{p}/ca.pem" DefaultNetstreamDriverCertFile="{p}/server.pem" DefaultNetstreamDriverKeyFile="{p}/server-key.pem")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
template(name="line" type="string" string="%syslogseverity%|%app-name%|%msg%|%protocol-version%\n")
input(type="imtcp" address="127.0.0.1" port="{port}")
*.* action(type="omfile" file="{p}/out.log" template="line")
"#
        );
        fs::write(d.join("rsyslog.conf"), conf).unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(d.join("rsyslog.conf"))
            .arg("-i")
            .arg(d.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rsyslogd (install-deps.sh installs rsyslog-gnutls)");
        let r = TlsRsyslog { child, dir, port };
        assert!(
            eventually(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "rsyslogd with gtls did not come up"
        );
        r
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn lines(&self, needle: &str, n: usize) -> Vec<String> {
        let mut found = Vec::new();
        let ok = eventually(Duration::from_secs(10), || {
            found = fs::read_to_string(self.path("out.log"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_string)
                .collect();
            found.len() >= n
        });
        assert!(ok, "wanted {n} lines for {needle}, got {found:?}");
        found.sort();
        found
    }
}

impl Drop for TlsRsyslog {
    fn drop(&mut self) {
        // Only the rsyslogd this test started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(engine: &Engine, name: &str, opts: &[String]) -> std::process::Output {
    let mut args = vec!["run", "--name", name, "--log-driver", "syslog"];
    for o in opts {
        args.extend(["--log-opt", o.as_str()]);
    }
    args.extend(["busybox", "sh", "-c", "echo out; echo err >&2"]);
    engine.berth(&args)
}

#[test]
fn tls_delivers_octet_counted_messages_and_checks_the_peer() {
    let rs = TlsRsyslog::start();
    let engine = Engine::with_busybox();
    let addr = format!("syslog-address=tcp+tls://127.0.0.1:{}", rs.port);
    let ca = format!("syslog-tls-ca-cert={}", rs.path("ca.pem").display());

    // Verified against the test's CA, RFC 5424 framing inside TLS.
    let name = unique("tls");
    let out = run(
        &engine,
        &name,
        &[
            addr.clone(),
            ca,
            "syslog-format=rfc5424".into(),
            "tag={{.Name}}".into(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = rs.lines(&name, 2);
    assert_eq!(
        lines,
        vec![format!("3|{name}|err|1"), format!("6|{name}|out|1")]
    );
    assert_eq!(stdout(&engine.berth(&["logs", &name])), "out\n");

    // skip-verify: no CA given, any certificate accepted.
    let name = unique("tlsskip");
    let out = run(
        &engine,
        &name,
        &[
            addr.clone(),
            "syslog-tls-skip-verify=true".into(),
            "tag={{.Name}}".into(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    rs.lines(&name, 2);

    // A CA that did not sign the peer: the handshake fails at create, nothing is left.
    let name = unique("tlsbad");
    let other = format!("syslog-tls-ca-cert={}", rs.path("other.pem").display());
    let out = run(&engine, &name, &[addr.clone(), other]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed to initialize logging driver"),
        "{}",
        stderr(&out)
    );
    let all = stdout(&engine.berth(&["ps", "-a", "--format", "{{.Names}}"]));
    assert!(!all.contains(&name), "{all}");

    // A CA file that does not exist is named.
    let out = run(
        &engine,
        &unique("tlsnofile"),
        &[addr, "syslog-tls-ca-cert=/nonexistent/ca.pem".into()],
    );
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("syslog-tls-ca-cert"),
        "{}",
        stderr(&out)
    );
}
