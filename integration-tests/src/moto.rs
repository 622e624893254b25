//! moto's server mode as a CloudWatch Logs stand-in on a loopback port, for awslogs tests.
//! `deploy/install-deps.sh` installs it (`moto[server]` from PyPI); the server is killed
//! by its PID on drop. Reads go through boto3 (installed with moto) pointed at the server
//! with dummy credentials (moto does not check signatures).
use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::eventually;

pub struct Moto {
    child: Child,
    pub port: u16,
}

/// A free loopback port (never 5000, moto's default, which other tools may hold).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        if port != 5000 {
            return port;
        }
    }
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Moto {
        Moto::start_on(free_port())
    }

    /// Starts moto on `port` (a restart, or a peer that comes up late).
    pub fn start_on(port: u16) -> Moto {
        let port_arg = port.to_string();
        let args = ["-H", "127.0.0.1", "-p", port_arg.as_str()];
        let spawn = |cmd: &mut Command| {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let child = spawn(Command::new("moto_server").args(args))
            .or_else(|_| {
                spawn(
                    Command::new("python3")
                        .args(["-m", "moto.server"])
                        .args(args),
                )
            })
            .expect("start moto_server (deploy/install-deps.sh installs it)");
        let mut moto = Moto { child, port };
        let up = eventually(Duration::from_secs(30), || {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start: {status}");
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "moto_server did not come up on 127.0.0.1:{port}");
        moto
    }

    /// `http://127.0.0.1:PORT`, for `awslogs-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The events of a stream, oldest first: (timestamp in ms, message). Empty when the
    /// group or stream does not exist.
    pub fn events(&self, group: &str, stream: &str) -> Vec<(i64, String)> {
        let out = self.boto3(
            r#"
import json, sys
from botocore.exceptions import ClientError
events, token = [], None
try:
    while True:
        kw = dict(logGroupName=sys.argv[2], logStreamName=sys.argv[3], startFromHead=True)
        if token:
            kw["nextToken"] = token
        r = logs.get_log_events(**kw)
        events += [[e["timestamp"], e["message"]] for e in r["events"]]
        if not r["events"] or r.get("nextForwardToken") in (None, token):
            break
        token = r["nextForwardToken"]
except ClientError as e:
    if e.response["Error"]["Code"] != "ResourceNotFoundException":
        raise
print(json.dumps(events))
"#,
            &[group, stream],
        );
        let v: Vec<(i64, String)> = serde_json::from_str(&out).expect("events JSON");
        v
    }

    /// The stream names of a group (empty when it does not exist).
    pub fn streams(&self, group: &str) -> Vec<String> {
        let out = self.boto3(
            r#"
import json, sys
from botocore.exceptions import ClientError
try:
    r = logs.describe_log_streams(logGroupName=sys.argv[2])
    print(json.dumps([s["logStreamName"] for s in r["logStreams"]]))
except ClientError as e:
    if e.response["Error"]["Code"] != "ResourceNotFoundException":
        raise
    print("[]")
"#,
            &[group],
        );
        serde_json::from_str(&out).expect("streams JSON")
    }

    /// Runs `script` with `logs`, a boto3 CloudWatch Logs client of this server, and
    /// `sys.argv[1..]` = endpoint, `args`; returns its stdout.
    fn boto3(&self, script: &str, args: &[&str]) -> String {
        let prelude = "import boto3, sys\n\
            logs = boto3.client('logs', endpoint_url=sys.argv[1], region_name='us-east-1', \
            aws_access_key_id='test', aws_secret_access_key='test')\n";
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!("{prelude}{script}"))
            .arg(self.endpoint())
            .args(args)
            .env_remove("AWS_PROFILE")
            .output()
            .expect("run python3 with boto3");
        assert!(
            out.status.success(),
            "boto3 query failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Only the server this test started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
