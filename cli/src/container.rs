//! Container commands: run, create, start, stop, kill, wait, rm, prune, ps.
use std::io::{BufRead, Read, Write};
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use berth_proto::engine::v1::{
    run_input, run_output, ContainerRef, CreateContainerRequest, PruneContainersRequest,
    RemoveContainerRequest, RunInput, RunStart, StringList,
};
use berth_proto::supervisor::v1::{
    attach_input, attach_output, AttachInput, AttachStart, Container, ContainerStatus,
    KillContainerRequest, ListContainersRequest, LogConfig, Resize, StopContainerRequest,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::args::{
    ContainerFlags, CreateArgs, KillArgs, NamesArgs, PruneArgs, PsArgs, RmArgs, RunArgs, StartArgs,
    StopArgs,
};
use crate::client::Engine;
use crate::format;
use crate::parse;

fn env_lookup(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Turns the `run`/`create` flags into the engine's request.
pub fn create_request(flags: &ContainerFlags) -> Result<CreateContainerRequest> {
    let (image, cmd) = flags
        .image_and_cmd
        .split_first()
        .ok_or_else(|| anyhow!("\"run\" requires at least 1 argument"))?;
    if image.starts_with('-') {
        bail!("unknown flag: {image}");
    }
    if image.is_empty() {
        bail!("invalid reference format: the image name is empty");
    }
    let mut env = Vec::new();
    for file in &flags.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read env file {file}"))?;
        env.extend(parse::env_file(file, &text, &env_lookup)?);
    }
    for value in &flags.env {
        env.extend(parse::env_flag(value, &env_lookup)?);
    }
    let mounts = flags
        .volume
        .iter()
        .map(|v| parse::volume_spec(v))
        .collect::<Result<Vec<_>>>()?;
    let extra_hosts = flags
        .add_host
        .iter()
        .map(|h| parse::add_host(h))
        .collect::<Result<Vec<_>>>()?;
    let dns_servers = flags
        .dns
        .iter()
        .map(|d| parse::dns(d))
        .collect::<Result<Vec<_>>>()?;
    let log_options = parse::key_values("--log-opt", &flags.log_opt)?;
    let log_config = (flags.log_driver.is_some() || !log_options.is_empty()).then(|| LogConfig {
        driver: flags.log_driver.clone().unwrap_or_default(),
        options: log_options,
    });
    Ok(CreateContainerRequest {
        name: flags.name.clone().unwrap_or_default(),
        image: image.clone(),
        cmd: (!cmd.is_empty()).then(|| StringList {
            values: cmd.to_vec(),
        }),
        entrypoint: flags.entrypoint.as_ref().map(|e| StringList {
            values: if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            },
        }),
        env,
        working_dir: flags.workdir.clone().unwrap_or_default(),
        user: flags.user.clone().unwrap_or_default(),
        hostname: flags.hostname.clone().unwrap_or_default(),
        tty: flags.tty,
        open_stdin: flags.interactive,
        labels: parse::labels(&flags.label)?,
        mounts,
        network: flags.network.clone().unwrap_or_default(),
        log_config,
        auto_remove: flags.rm,
        stop_signal: flags.stop_signal.clone().unwrap_or_default(),
        stop_timeout: flags.stop_timeout,
        read_only_rootfs: flags.read_only,
        extra_hosts,
        dns_servers,
        domainname: flags.domainname.clone().unwrap_or_default(),
        runtime: flags.runtime.clone().unwrap_or_default(),
    })
}

fn write_out(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

fn write_err(bytes: &[u8]) -> Result<()> {
    let mut err = std::io::stderr().lock();
    err.write_all(bytes)?;
    err.flush()?;
    Ok(())
}

/// The terminal in raw mode while it lives.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enable() -> Option<RawTerminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

fn terminal_size() -> Option<Resize> {
    let mut ws: nix::libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass.
    let rc = unsafe { nix::libc::ioctl(1, nix::libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then(|| Resize {
        rows: ws.ws_row.into(),
        cols: ws.ws_col.into(),
    })
}

fn stdin_is_tty() -> bool {
    nix::unistd::isatty(std::io::stdin()).unwrap_or(false)
}

/// Reads stdin on a thread and hands chunks to `send`; `close` is sent at EOF.
fn forward_stdin<T: Send + 'static>(tx: mpsc::Sender<T>, data: fn(Vec<u8>) -> T, close: fn() -> T) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(data(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.blocking_send(close());
    });
}

/// `berth run`: returns the container's exit code.
pub async fn run(mut engine: Engine, args: RunArgs) -> Result<i32> {
    let create = create_request(&args.flags)?;
    let tty = args.flags.tty;
    let interactive = args.flags.interactive && !args.detach;
    if tty && interactive && !stdin_is_tty() {
        bail!("the input device is not a TTY");
    }
    let (tx, rx) = mpsc::channel::<RunInput>(16);
    tx.send(RunInput {
        input: Some(run_input::Input::Start(RunStart {
            create: Some(create),
            detach: args.detach,
            attach_stdin: interactive,
            detach_keys: args.detach_keys.clone().unwrap_or_default(),
        })),
    })
    .await?;
    if tty && !args.detach {
        if let Some(size) = terminal_size() {
            tx.send(RunInput {
                input: Some(run_input::Input::Resize(size)),
            })
            .await?;
        }
    }
    let mut output = engine
        .run_container(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let _raw = (tty && interactive && stdin_is_tty())
        .then(RawTerminal::enable)
        .flatten();
    if interactive {
        forward_stdin(
            tx.clone(),
            |b| RunInput {
                input: Some(run_input::Input::Stdin(b)),
            },
            || RunInput {
                input: Some(run_input::Input::CloseStdin(true)),
            },
        );
    }
    let mut signals = if args.detach {
        None
    } else {
        Some(watch_signals(tty, tx.clone()))
    };
    let mut id = String::new();
    let mut interrupts = 0;
    loop {
        let msg = tokio::select! {
            msg = output.message() => msg?,
            Some(sig) = recv_signal(&mut signals) => {
                if let Some(code) = sig.strip_prefix("EXIT:") {
                    return Ok(code.parse().unwrap_or(125));
                }
                // Docker's sig-proxy: the container gets the signal; a third Ctrl-C
                // leaves the CLI (the container goes on).
                if sig == "SIGINT" {
                    interrupts += 1;
                    if interrupts >= 3 {
                        write_err(b"got 3 SIGINT/SIGTERM, forcefully exiting\n")?;
                        return Ok(130);
                    }
                }
                if !id.is_empty() {
                    let mut engine = engine.clone();
                    let req = KillContainerRequest { id: id.clone(), signal: sig.to_string() };
                    tokio::spawn(async move {
                        let _ = engine.kill_container(req).await;
                    });
                }
                continue;
            }
        };
        let Some(msg) = msg else {
            if args.detach && !id.is_empty() {
                write_out(format!("{id}\n").as_bytes())?;
                return Ok(0);
            }
            bail!("the engine ended the run without the container's exit status");
        };
        match msg.output {
            Some(run_output::Output::ContainerId(cid)) => id = cid,
            Some(run_output::Output::Stdout(b)) => write_out(&b)?,
            Some(run_output::Output::Stderr(b)) => write_err(&b)?,
            Some(run_output::Output::Warning(w)) => {
                write_err(format!("WARNING: {w}\n").as_bytes())?
            }
            Some(run_output::Output::Exit(status)) => return Ok(status.exit_code),
            Some(run_output::Output::Detached(_)) => {
                if args.detach {
                    write_out(format!("{id}\n").as_bytes())?;
                }
                return Ok(0);
            }
            None => {}
        }
    }
}

async fn recv_signal(rx: &mut Option<mpsc::Receiver<&'static str>>) -> Option<&'static str> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// With a TTY, window size changes become resize messages; without one, the signals a
/// user sends the CLI are proxied to the container (Docker's `--sig-proxy`).
fn watch_signals(tty: bool, input: mpsc::Sender<RunInput>) -> mpsc::Receiver<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = mpsc::channel(8);
    if tty {
        if let Ok(mut winch) = signal(SignalKind::window_change()) {
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some(size) = terminal_size() {
                        let msg = RunInput {
                            input: Some(run_input::Input::Resize(size)),
                        };
                        if input.send(msg).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
        // No proxy with a TTY (as Docker), but leave cleanly so the terminal is restored.
        for (kind, name) in [
            (SignalKind::terminate(), "EXIT:143"),
            (SignalKind::hangup(), "EXIT:129"),
        ] {
            if let Ok(mut stream) = signal(kind) {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if stream.recv().await.is_some() {
                        let _ = tx.send(name).await;
                    }
                });
            }
        }
        return rx;
    }
    let kinds = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ];
    for (kind, name) in kinds {
        if let Ok(mut stream) = signal(kind) {
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(name).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
    rx
}

/// `berth create`: prints the new container's ID.
pub async fn create(mut engine: Engine, args: CreateArgs) -> Result<i32> {
    let req = create_request(&args.flags)?;
    let container = engine.create_container(req).await?.into_inner();
    println!("{}", container.id);
    Ok(0)
}

/// Runs `op` for each name, printing errors as they come; the exit code is the first
/// failure's (Docker goes on through the list too).
async fn each<F, Fut>(names: &[String], mut op: F) -> Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let mut code = 0;
    for name in names {
        match op(name.clone()).await {
            Ok(Some(line)) => println!("{line}"),
            Ok(None) => {}
            Err(err) => {
                if crate::is_connect_failure(&err) {
                    return Err(err);
                }
                let f = crate::client::failure(&err, std::path::Path::new(""), "");
                eprintln!("{}", f.message);
                if code == 0 {
                    code = f.code;
                }
            }
        }
    }
    Ok(code)
}

/// `berth start [-a]`.
pub async fn start(engine: Engine, args: StartArgs) -> Result<i32> {
    if args.attach {
        if args.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        return start_attached(engine, &args.containers[0]).await;
    }
    each(&args.containers, |name| {
        let mut engine = engine.clone();
        async move {
            engine
                .start_container(ContainerRef { id: name.clone() })
                .await?;
            Ok(Some(name))
        }
    })
    .await
}

async fn start_attached(mut engine: Engine, name: &str) -> Result<i32> {
    let (tx, rx) = mpsc::channel::<AttachInput>(16);
    tx.send(AttachInput {
        input: Some(attach_input::Input::Start(AttachStart {
            id: name.to_string(),
            stdin: false,
            stdout: true,
            stderr: true,
            start: true,
            detach_keys: String::new(),
        })),
    })
    .await?;
    let mut output = engine
        .attach_container(ReceiverStream::new(rx))
        .await?
        .into_inner();
    loop {
        let Some(msg) = output.message().await? else {
            bail!("the engine ended the attach without the container's exit status");
        };
        match msg.output {
            Some(attach_output::Output::Stdout(b)) => write_out(&b)?,
            Some(attach_output::Output::Stderr(b)) => write_err(&b)?,
            Some(attach_output::Output::Exit(status)) => return Ok(status.exit_code),
            Some(attach_output::Output::Detached(_)) => return Ok(0),
            None => {}
        }
    }
}

/// `berth stop`.
pub async fn stop(engine: Engine, args: StopArgs) -> Result<i32> {
    each(&args.containers, |name| {
        let mut engine = engine.clone();
        let req = StopContainerRequest {
            id: name.clone(),
            timeout_seconds: args.timeout,
            signal: args.signal.clone().unwrap_or_default(),
        };
        async move {
            engine.stop_container(req).await?;
            Ok(Some(name))
        }
    })
    .await
}

/// `berth kill`.
pub async fn kill(engine: Engine, args: KillArgs) -> Result<i32> {
    each(&args.containers, |name| {
        let mut engine = engine.clone();
        let req = KillContainerRequest {
            id: name.clone(),
            signal: args.signal.clone(),
        };
        async move {
            engine.kill_container(req).await?;
            Ok(Some(name))
        }
    })
    .await
}

/// `berth wait`: prints each exit code.
pub async fn wait(engine: Engine, args: NamesArgs) -> Result<i32> {
    each(&args.containers, |name| {
        let mut engine = engine.clone();
        async move {
            let status = engine
                .wait_container(ContainerRef { id: name })
                .await?
                .into_inner();
            Ok(Some(status.exit_code.to_string()))
        }
    })
    .await
}

/// `berth rm`.
pub async fn rm(engine: Engine, args: RmArgs) -> Result<i32> {
    each(&args.containers, |name| {
        let mut engine = engine.clone();
        let req = RemoveContainerRequest {
            id: name.clone(),
            force: args.force,
            volumes: args.volumes,
        };
        async move {
            engine.remove_container(req).await?;
            Ok(Some(name))
        }
    })
    .await
}

/// Asks Docker's question; true on y/yes.
pub fn confirm(warning: &str) -> Result<bool> {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// `berth container prune`.
pub async fn prune(mut engine: Engine, args: PruneArgs) -> Result<i32> {
    if !args.force && !confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let resp = engine
        .prune_containers(PruneContainersRequest {})
        .await?
        .into_inner();
    let mut out = String::new();
    if !resp.deleted.is_empty() {
        out.push_str("Deleted Containers:\n");
        for id in &resp.deleted {
            out.push_str(id);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str("Total reclaimed space: 0B\n");
    write_out(out.as_bytes())?;
    Ok(0)
}

/// "running", "exited", ... from the proto enum.
pub fn status_name(status: i32) -> &'static str {
    match ContainerStatus::try_from(status).unwrap_or(ContainerStatus::Unspecified) {
        ContainerStatus::Unspecified => "unknown",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Paused => "paused",
        ContainerStatus::Restarting => "restarting",
        ContainerStatus::Removing => "removing",
        ContainerStatus::Exited => "exited",
        ContainerStatus::Dead => "dead",
    }
}

/// Parses an RFC 3339 time from the engine; empty or the zero time is `None`.
pub fn time_of(s: &str) -> Option<SystemTime> {
    if s.is_empty() || s.starts_with("0001-") {
        return None;
    }
    let nanos = parse::rfc3339_nanos(s).ok()?;
    u64::try_from(nanos)
        .ok()
        .map(|n| SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(n))
}

/// Docker's `CreatedAt` form: `2024-01-02 10:00:00 +0000 UTC`.
pub fn created_at(t: Option<SystemTime>) -> String {
    match t {
        Some(t) => {
            let s = humantime::format_rfc3339_seconds(t).to_string();
            format!("{} +0000 UTC", s.trim_end_matches('Z').replace('T', " "))
        }
        None => String::new(),
    }
}

/// The container's command as `ps` shows it: entrypoint and cmd joined by spaces.
pub fn command_of(c: &Container) -> String {
    let spec = c.spec.clone().unwrap_or_default();
    spec.entrypoint
        .iter()
        .chain(spec.cmd.iter())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `ps` row as Docker's formatter names its fields.
pub fn ps_row(c: &Container, no_trunc: bool, now: SystemTime) -> Value {
    let spec = c.spec.clone().unwrap_or_default();
    let state = c.state.clone().unwrap_or_default();
    let id = if no_trunc {
        c.id.clone()
    } else {
        c.id.chars().take(12).collect()
    };
    let created = time_of(&c.created);
    let mut labels: Vec<String> = spec
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let mounts: Vec<String> = spec
        .mounts
        .iter()
        .map(|m| {
            if m.name.is_empty() {
                m.source.clone()
            } else {
                m.name.clone()
            }
        })
        .collect();
    let status_name = status_name(state.status);
    json!({
        "Command": format::command_column(&command_of(c), no_trunc),
        "CreatedAt": created_at(created),
        "ID": id,
        "Image": spec.image,
        "Labels": labels.join(","),
        "LocalVolumes": spec.mounts.iter().filter(|m| m.r#type == "volume").count().to_string(),
        "Mounts": mounts.join(","),
        "Names": c.name.trim_start_matches('/'),
        "Networks": spec.network.map(|n| n.mode).unwrap_or_default(),
        "Ports": "",
        "RunningFor": created.map(|t| format::ago(t, now)).unwrap_or_default(),
        "Size": "0B",
        "State": status_name,
        "Status": format::status_column(
            status_name,
            state.exit_code,
            time_of(&state.started_at),
            time_of(&state.finished_at),
            now,
        ),
    })
}

/// `ps --filter`: values of one key are alternatives (OR), different keys all apply (AND),
/// as Docker does.
#[derive(Debug, Default)]
pub struct PsFilters {
    filters: Vec<(String, Vec<String>)>,
}

impl PsFilters {
    pub fn parse(values: &[String]) -> Result<PsFilters> {
        let mut out = PsFilters::default();
        for value in values {
            let (k, v) = parse::key_value("--filter", value)?;
            if !matches!(
                k.as_str(),
                "id" | "name" | "label" | "status" | "ancestor" | "exited"
            ) {
                bail!("invalid filter '{k}'");
            }
            if k == "status"
                && !matches!(
                    v.as_str(),
                    "created"
                        | "restarting"
                        | "running"
                        | "removing"
                        | "paused"
                        | "exited"
                        | "dead"
                )
            {
                bail!("invalid filter 'status={v}'");
            }
            match out.filters.iter_mut().find(|(key, _)| *key == k) {
                Some((_, vs)) => vs.push(v),
                None => out.filters.push((k, vec![v])),
            }
        }
        Ok(out)
    }

    pub fn matches(&self, c: &Container) -> bool {
        let spec = c.spec.clone().unwrap_or_default();
        let state = c.state.clone().unwrap_or_default();
        self.filters.iter().all(|(key, values)| {
            values.iter().any(|v| match key.as_str() {
                "id" => c.id.starts_with(v.as_str()),
                "name" => c
                    .name
                    .trim_start_matches('/')
                    .contains(v.trim_start_matches('/')),
                "label" => match v.split_once('=') {
                    Some((k, val)) => spec.labels.get(k).is_some_and(|x| x == val),
                    None => spec.labels.contains_key(v),
                },
                "status" => status_name(state.status) == v,
                "ancestor" => {
                    spec.image == *v
                        || spec.image_id == *v
                        || spec
                            .image_id
                            .trim_start_matches("sha256:")
                            .starts_with(v.as_str())
                        || format!("{v}:latest") == spec.image
                }
                "exited" => {
                    status_name(state.status) == "exited" && state.exit_code.to_string() == *v
                }
                _ => false,
            })
        })
    }
}

/// `berth ps`.
pub async fn ps(mut engine: Engine, args: PsArgs) -> Result<i32> {
    let resp = engine
        .list_containers(ListContainersRequest {
            all: args.all || args.latest,
        })
        .await?
        .into_inner();
    let filters = PsFilters::parse(&args.filter)?;
    let mut containers: Vec<Container> = resp
        .containers
        .into_iter()
        .filter(|c| filters.matches(c))
        .collect();
    containers.sort_by(|a, b| {
        time_of(&b.created)
            .cmp(&time_of(&a.created))
            .then_with(|| a.id.cmp(&b.id))
    });
    if args.latest {
        containers.truncate(1);
    }
    let now = SystemTime::now();
    let rows: Vec<Value> = containers
        .iter()
        .map(|c| ps_row(c, args.no_trunc, now))
        .collect();
    let mut out = String::new();
    if args.quiet {
        for row in &rows {
            out.push_str(row["ID"].as_str().unwrap_or_default());
            out.push('\n');
        }
    } else {
        let headers = json!({
            "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
            "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
            "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS", "State": "STATE",
            "Size": "SIZE", "LocalVolumes": "LOCAL VOLUMES",
        });
        match format::listing(args.format.as_deref().unwrap_or(""), &headers, &rows)? {
            Some(text) => out = text,
            None => {
                let cols = [
                    "ID",
                    "Image",
                    "Command",
                    "RunningFor",
                    "Status",
                    "Ports",
                    "Names",
                ];
                let mut table = vec![cols
                    .iter()
                    .map(|c| headers[c].as_str().unwrap().to_string())
                    .collect()];
                for row in &rows {
                    table.push(
                        cols.iter()
                            .map(|c| row[c].as_str().unwrap_or_default().to_string())
                            .collect(),
                    );
                }
                out = format::table(&table);
            }
        }
    }
    write_out(out.as_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn request(args: &[&str]) -> Result<CreateContainerRequest> {
        let cli = Cli::try_parse_from(["berth", "create"].iter().chain(args.iter())).unwrap();
        let Command::Create(c) = cli.command else {
            panic!()
        };
        create_request(&c.flags)
    }

    #[test]
    fn create_requests() {
        let r = request(&[
            "--name", "web", "-e", "A=1", "-l", "k=v", "-v", "/h:/c:ro", "busybox", "sh", "-c", "x",
        ])
        .unwrap();
        assert_eq!(r.name, "web");
        assert_eq!(r.image, "busybox");
        assert_eq!(r.cmd.unwrap().values, vec!["sh", "-c", "x"]);
        assert!(r.entrypoint.is_none());
        assert_eq!(r.env, vec!["A=1"]);
        assert_eq!(r.labels["k"], "v");
        assert!(r.mounts[0].read_only);
        assert!(r.log_config.is_none());
        let r = request(&["--entrypoint", "", "busybox"]).unwrap();
        assert!(r.cmd.is_none());
        assert_eq!(r.entrypoint.unwrap().values, Vec::<String>::new());
        let r = request(&[
            "--log-driver",
            "none",
            "--log-opt",
            "a=b",
            "--stop-timeout",
            "3",
            "busybox",
        ])
        .unwrap();
        let lc = r.log_config.unwrap();
        assert_eq!(
            (lc.driver.as_str(), lc.options["a"].as_str()),
            ("none", "b")
        );
        assert_eq!(r.stop_timeout, Some(3));
        let err = request(&["-v", "a:b:c:d", "busybox"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("'a:b:c:d'"), "{err}");
        let err = request(&["--env-file", "/nonexistent.env", "busybox"]).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent.env"));
        let err = request(&["--bogus", "busybox"]).unwrap_err().to_string();
        assert!(err.contains("--bogus"), "{err}");
    }

    #[test]
    fn ps_filters() {
        use berth_proto::supervisor::v1::{ContainerSpec, ContainerState};
        let c = Container {
            id: "abcdef".into(),
            name: "web-1".into(),
            spec: Some(ContainerSpec {
                image: "busybox".into(),
                labels: [("tier".to_string(), "front".to_string())].into(),
                ..Default::default()
            }),
            state: Some(ContainerState {
                status: ContainerStatus::Exited as i32,
                exit_code: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let f = |v: &[&str]| {
            PsFilters::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .matches(&c)
        };
        assert!(f(&[]));
        assert!(f(&["status=exited"]));
        assert!(!f(&["status=running"]));
        assert!(f(&["status=running", "status=exited"]));
        assert!(f(&[
            "name=web",
            "id=abc",
            "label=tier",
            "label=tier=front",
            "exited=2"
        ]));
        assert!(!f(&["name=web", "label=tier=back"]));
        assert!(f(&["ancestor=busybox"]));
        for bad in ["status=bogus", "color=red", "novalue"] {
            let err = PsFilters::parse(&[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(err.contains(bad.split('=').next().unwrap()), "{err}");
        }
    }

    #[test]
    fn ps_rows() {
        use berth_proto::supervisor::v1::{ContainerSpec, ContainerState};
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let c = Container {
            id: "0123456789abcdef0123".into(),
            name: "/web".into(),
            created: "2023-11-14T22:12:20.5Z".into(),
            spec: Some(ContainerSpec {
                image: "busybox".into(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hello world; sleep 100".into(),
                ],
                ..Default::default()
            }),
            state: Some(ContainerState {
                status: ContainerStatus::Exited as i32,
                exit_code: 3,
                started_at: "2023-11-14T22:12:21Z".into(),
                finished_at: "2023-11-14T22:13:17Z".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let row = ps_row(&c, false, now);
        assert_eq!(row["ID"], "0123456789ab");
        assert_eq!(row["Names"], "web");
        assert_eq!(row["Command"], "\"sh -c echo hello wo…\"");
        assert_eq!(row["RunningFor"], "59 seconds ago");
        assert_eq!(row["Status"], "Exited (3) 3 seconds ago");
        assert_eq!(row["CreatedAt"], "2023-11-14 22:12:20 +0000 UTC");
        assert_eq!(ps_row(&c, true, now)["ID"], "0123456789abcdef0123");
    }
}
