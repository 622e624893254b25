//! The commands that attach to a container's or a process's streams: `attach`,
//! `start -a [-i]` and `exec`. The plumbing (stdin, raw terminal, resizes, signals,
//! detach) is [`crate::session`], shared with `run`.
use anyhow::{anyhow, bail, Context, Result};
use berth_proto::engine::v1::ContainerRef;
use berth_proto::supervisor::v1::{
    attach_input, exec_input, AttachInput, AttachStart, Container, ContainerStatus, ExecInput,
    ExecStart,
};

use crate::args::{AttachArgs, ExecArgs, StartArgs};
use crate::client::Engine;
use crate::parse;
use crate::session::{self, Mode, Session};

async fn inspect(engine: &mut Engine, name: &str) -> Result<Container> {
    engine
        .inspect_container(ContainerRef {
            id: name.to_string(),
        })
        .await?
        .into_inner()
        .container
        .ok_or_else(|| anyhow!("the engine returned no container for {name}"))
}

fn attach_start(id: String, stdin: bool, start: bool, detach_keys: String) -> AttachInput {
    AttachInput {
        input: Some(attach_input::Input::Start(AttachStart {
            id,
            stdin,
            stdout: true,
            stderr: true,
            start,
            detach_keys,
        })),
    }
}

/// `berth attach`: returns the container's exit code (0 after detaching).
pub async fn attach(mut engine: Engine, args: AttachArgs) -> Result<i32> {
    let detach_keys = parse::detach_keys(args.detach_keys.as_deref())?;
    let container = inspect(&mut engine, &args.container).await?;
    let status = container.state.as_ref().map_or(0, |s| s.status);
    if status == ContainerStatus::Paused as i32 {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    if status != ContainerStatus::Running as i32 && status != ContainerStatus::Restarting as i32 {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let spec = container.spec.clone().unwrap_or_default();
    let stdin = !args.no_stdin && spec.open_stdin;
    session::check_tty(spec.tty, stdin)?;
    let mode = Mode {
        tty: spec.tty,
        stdin,
        sig_proxy: args.sig_proxy,
        quiet: false,
    };
    let start = attach_start(container.id.clone(), stdin, false, detach_keys);
    let (mut session, input) = Session::new(start, mode).await?;
    let mut output = engine.attach_container(input).await?.into_inner();
    session.begin();
    let mut id = container.id;
    let end = session.pump(&engine, &mut output, &mut id).await?;
    session::finish(&mut session, end, "attach")
}

/// `berth start -a [-i]`: attaches with `start` set, so no output is missed.
pub async fn start_attached(mut engine: Engine, args: &StartArgs) -> Result<i32> {
    let detach_keys = parse::detach_keys(args.detach_keys.as_deref())?;
    let container = inspect(&mut engine, &args.containers[0]).await?;
    let spec = container.spec.clone().unwrap_or_default();
    let stdin = args.interactive && spec.open_stdin;
    session::check_tty(spec.tty, stdin)?;
    let mode = Mode {
        tty: spec.tty,
        stdin,
        sig_proxy: true,
        quiet: false,
    };
    let start = attach_start(container.id.clone(), stdin, true, detach_keys);
    let (mut session, input) = Session::new(start, mode).await?;
    let mut output = engine.attach_container(input).await?.into_inner();
    session.begin();
    let mut id = container.id;
    let end = session.pump(&engine, &mut output, &mut id).await?;
    session::finish(&mut session, end, "attach")
}

fn env_lookup(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Turns the `exec` flags into the start message.
pub fn exec_start(args: &ExecArgs) -> Result<ExecStart> {
    let (container, cmd) = args
        .container_and_cmd
        .split_first()
        .ok_or_else(|| anyhow!("\"exec\" requires at least 2 arguments"))?;
    if cmd.is_empty() {
        bail!("\"exec\" requires at least 2 arguments");
    }
    let mut env = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read env file {file}"))?;
        env.extend(parse::env_file(file, &text, &env_lookup)?);
    }
    for value in &args.env {
        env.extend(parse::env_flag(value, &env_lookup)?);
    }
    Ok(ExecStart {
        id: container.clone(),
        args: cmd.to_vec(),
        env,
        user: args.user.clone().unwrap_or_default(),
        working_dir: args.workdir.clone().unwrap_or_default(),
        tty: args.tty,
        stdin: args.interactive && !args.detach,
        detach: args.detach,
        detach_keys: parse::detach_keys(args.detach_keys.as_deref())?,
    })
}

/// `berth exec`: returns the process's exit code (0 when detached).
pub async fn exec(mut engine: Engine, args: ExecArgs) -> Result<i32> {
    let start = exec_start(&args)?;
    session::check_tty(start.tty, start.stdin)?;
    let mode = Mode {
        tty: start.tty && !start.detach,
        stdin: start.stdin,
        // Docker does not proxy signals to an exec'd process.
        sig_proxy: false,
        quiet: start.detach,
    };
    let detach = start.detach;
    let first = ExecInput {
        input: Some(exec_input::Input::Start(start)),
    };
    let (mut session, input) = Session::new(first, mode).await?;
    let mut output = engine.exec_container(input).await?.into_inner();
    session.begin();
    // No container ID: signals are never proxied to an exec.
    let mut id = String::new();
    let end = session.pump(&engine, &mut output, &mut id).await?;
    if detach {
        // `-d`: the stream ends (or says detached) once the process has started.
        return Ok(match end {
            session::End::Exit(code) => code,
            _ => 0,
        });
    }
    session::finish(&mut session, end, "exec")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn start(args: &[&str]) -> Result<ExecStart> {
        let cli = Cli::try_parse_from(["berth", "exec"].iter().chain(args.iter())).unwrap();
        let Command::Exec(e) = cli.command else {
            panic!()
        };
        exec_start(&e)
    }

    #[test]
    fn exec_starts() {
        let s = start(&[
            "-i",
            "-e",
            "A=1",
            "-u",
            "1000:1000",
            "-w",
            "/srv",
            "web",
            "sh",
            "-c",
            "x",
        ])
        .unwrap();
        assert_eq!(s.id, "web");
        assert_eq!(s.args, vec!["sh", "-c", "x"]);
        assert_eq!(s.env, vec!["A=1"]);
        assert_eq!(
            (s.user.as_str(), s.working_dir.as_str()),
            ("1000:1000", "/srv")
        );
        assert!(s.stdin && !s.tty && !s.detach);
        assert_eq!(s.detach_keys, "");
        // -d: no stdin even with -i.
        let s = start(&["-d", "-i", "--detach-keys", "ctrl-a", "web", "top"]).unwrap();
        assert!(s.detach && !s.stdin);
        assert_eq!(s.detach_keys, "ctrl-a");
        let s = start(&["--detach-keys", "", "web", "top"]).unwrap();
        assert_eq!(s.detach_keys, "none");
        let err = start(&["--detach-keys", "ctrl-1", "web", "top"])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid detach keys (ctrl-1)");
        let err = start(&["-e", "=x", "web", "top"]).unwrap_err().to_string();
        assert!(err.contains("=x"), "{err}");
    }
}
