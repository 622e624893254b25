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
}
