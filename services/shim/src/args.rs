//! Command line: parsed by hand to keep the binary small.
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub id: String,
    pub bundle: PathBuf,
    pub attach_socket: PathBuf,
    pub log_socket: PathBuf,
    pub wait_attach: bool,
}

pub const USAGE: &str =
    "usage: berth-shim --id <id> --bundle <dir> --attach-socket <path> --log-socket <path> [--wait-attach]";

impl Args {
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let (mut id, mut bundle, mut attach, mut log, mut wait_attach) =
            (None, None, None, None, false);
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            if flag == "--wait-attach" {
                wait_attach = true;
                continue;
            }
            let slot = match flag.as_str() {
                "--id" => &mut id,
                "--bundle" => &mut bundle,
                "--attach-socket" => &mut attach,
                "--log-socket" => &mut log,
                _ => return Err(format!("unknown argument {arg:?}; {USAGE}")),
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?,
            };
            *slot = Some(value);
        }
        let need = |v: Option<String>, name: &str| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| format!("missing {name}; {USAGE}"))
        };
        Ok(Args {
            id: need(id, "--id")?,
            bundle: need(bundle, "--bundle")?.into(),
            attach_socket: need(attach, "--attach-socket")?.into(),
            log_socket: need(log, "--log-socket")?.into(),
            wait_attach,
        })
    }
}

/// `berth-shim exec …`: runs one more process in a running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    pub id: String,
    pub exec_id: String,
    pub bundle: PathBuf,
    /// The container's first process (host PID) whose namespaces and cgroups to join.
    pub pid: i32,
    /// A JSON file holding an OCI runtime `Process`.
    pub process: PathBuf,
    /// `user[:group]` as given; empty: root.
    pub user: String,
    pub attach_socket: PathBuf,
    pub wait_attach: bool,
}

pub const EXEC_USAGE: &str = "usage: berth-shim exec --id <id> --exec-id <id> --bundle <dir> --pid <pid> --process <json file> --user <user> --attach-socket <path> [--wait-attach]";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start(Args),
    Exec(ExecArgs),
}

impl Command {
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Command, String> {
        let first = it.next();
        match first.as_deref() {
            Some("exec") => ExecArgs::parse(it).map(Command::Exec),
            _ => Args::parse(first.into_iter().chain(it)).map(Command::Start),
        }
    }
}

impl ExecArgs {
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<ExecArgs, String> {
        let mut v: [Option<String>; 7] = Default::default();
        let mut wait_attach = false;
        const FLAGS: [&str; 7] = [
            "--id",
            "--exec-id",
            "--bundle",
            "--pid",
            "--process",
            "--user",
            "--attach-socket",
        ];
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, val)) if f.starts_with("--") => (f.to_string(), Some(val.to_string())),
                _ => (arg.clone(), None),
            };
            if flag == "--wait-attach" {
                wait_attach = true;
                continue;
            }
            let Some(i) = FLAGS.iter().position(|f| *f == flag) else {
                return Err(format!("unknown argument {arg:?}; {EXEC_USAGE}"));
            };
            let value = match inline {
                Some(val) => val,
                None => it
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value; {EXEC_USAGE}"))?,
            };
            v[i] = Some(value);
        }
        let [id, exec_id, bundle, pid, process, user, attach] = v;
        let need = |v: Option<String>, name: &str| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| format!("missing {name}; {EXEC_USAGE}"))
        };
        let exec_id = need(exec_id, "--exec-id")?;
        if exec_id.contains('/') || exec_id.starts_with('.') {
            return Err(format!("invalid exec id {exec_id:?}"));
        }
        let pid_s = need(pid, "--pid")?;
        let pid = pid_s
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid --pid {pid_s:?}"))?;
        Ok(ExecArgs {
            id: need(id, "--id")?,
            exec_id,
            bundle: need(bundle, "--bundle")?.into(),
            pid,
            process: need(process, "--process")?.into(),
            user: user.unwrap_or_default(),
            attach_socket: need(attach, "--attach-socket")?.into(),
            wait_attach,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, String> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_all_flags() {
        let a =
            parse("--id c1 --bundle /b --attach-socket=/a.sock --log-socket /l.sock --wait-attach")
                .unwrap();
        assert_eq!(a.id, "c1");
        assert_eq!(a.attach_socket, PathBuf::from("/a.sock"));
        assert!(a.wait_attach);
        assert!(parse("--id c1 --bundle /b --attach-socket /a")
            .unwrap_err()
            .contains("--log-socket"));
        assert!(parse("--bogus").is_err());
    }

    #[test]
    fn parses_exec() {
        let c = Command::parse(
            "exec --id c1 --exec-id e1 --bundle /b --pid 42 --process /p.json --user nobody --attach-socket /e.sock"
                .split_whitespace()
                .map(String::from),
        )
        .unwrap();
        let Command::Exec(e) = c else {
            panic!("not exec")
        };
        assert_eq!(
            (e.pid, e.user.as_str(), e.exec_id.as_str()),
            (42, "nobody", "e1")
        );
        assert!(!e.wait_attach);
        // An empty --user is root.
        let e = ExecArgs::parse(
            [
                "--id",
                "c",
                "--exec-id",
                "e",
                "--bundle",
                "/b",
                "--pid",
                "1",
                "--process",
                "/p",
                "--user",
                "",
                "--attach-socket",
                "/s",
                "--wait-attach",
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .unwrap();
        assert!(e.user.is_empty() && e.wait_attach);
        assert!(ExecArgs::parse(["--pid", "x"].iter().map(|s| s.to_string())).is_err());
        assert!(matches!(
            Command::parse(
                "--id c1 --bundle /b --attach-socket /a --log-socket /l"
                    .split_whitespace()
                    .map(String::from)
            ),
            Ok(Command::Start(_))
        ));
    }
}
