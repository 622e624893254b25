//! Container commands: run, create, start, stop, kill, wait, rm, prune, ps.
use std::io::{BufRead, Write};
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use berth_proto::engine::v1::{
    run_input, ContainerRef, CreateContainerRequest, PruneContainersRequest,
    RemoveContainerRequest, RunInput, RunStart, StringList,
};
use berth_proto::supervisor::v1::{
    Container, ContainerStatus, KillContainerRequest, ListContainersRequest, LogConfig,
    RenameContainerRequest, RestartContainerRequest, StopContainerRequest, TopContainerRequest,
    TopContainerResponse, UpdateResourcesRequest,
};
use serde_json::{json, Value};

use crate::args::{
    ContainerFlags, CreateArgs, KillArgs, NamesArgs, PruneArgs, PsArgs, RenameArgs, RestartArgs,
    RmArgs, RunArgs, StartArgs, StopArgs, TopArgs, UpdateArgs,
};
use crate::client::Engine;
use crate::format;
use crate::parse;
use crate::session::{self, write_out, End, Mode, Session};

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
    let mounts = crate::mounts::collect(
        &flags.volume,
        &flags.mount,
        &flags.tmpfs,
        &flags.volumes_from,
    )?;
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
    let mut ports = Vec::new();
    for value in &flags.publish {
        ports.extend(crate::ports::publish(value)?);
    }
    let exposed_ports = flags
        .expose
        .iter()
        .map(|v| crate::ports::expose(v))
        .collect::<Result<Vec<_>>>()?;
    let ipv4_address = flags
        .ip
        .as_deref()
        .map(crate::ports::ipv4)
        .transpose()?
        .unwrap_or_default();
    let mac_address = flags
        .mac_address
        .as_deref()
        .map(crate::ports::mac_address)
        .transpose()?
        .unwrap_or_default();
    let log_options = parse::key_values("--log-opt", &flags.log_opt)?;
    let log_config = (flags.log_driver.is_some() || !log_options.is_empty()).then(|| LogConfig {
        driver: flags.log_driver.clone().unwrap_or_default(),
        options: log_options,
    });
    let restart_policy = flags
        .restart
        .as_deref()
        .map(parse::restart_policy)
        .transpose()?;
    if flags.rm && restart_policy.as_ref().is_some_and(|p| p.name != "no") {
        bail!("Conflicting options: --restart and --rm");
    }
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
        restart_policy,
        init: flags.init,
        ports,
        publish_all: flags.publish_all,
        exposed_ports,
        network_aliases: flags.network_alias.clone(),
        ipv4_address,
        mac_address,
        links: flags.link.clone(),
        dns_search: flags.dns_search.clone(),
        dns_options: flags.dns_option.clone(),
        resources: crate::limits::resources(&flags.limits)?,
    })
}

/// `berth run`: returns the container's exit code.
pub async fn run(mut engine: Engine, args: RunArgs) -> Result<i32> {
    let create = create_request(&args.flags)?;
    let detach_keys = parse::detach_keys(args.detach_keys.as_deref())?;
    let tty = args.flags.tty;
    let interactive = args.flags.interactive && !args.detach;
    session::check_tty(tty, interactive)?;
    crate::registry::ensure_image(&mut engine, &create.image, &args.flags.pull).await?;
    let start = RunInput {
        input: Some(run_input::Input::Start(RunStart {
            create: Some(create),
            detach: args.detach,
            attach_stdin: interactive,
            detach_keys,
        })),
    };
    let mode = Mode {
        tty: tty && !args.detach,
        stdin: interactive,
        sig_proxy: true,
        quiet: args.detach,
    };
    let (mut session, input) = Session::new(start, mode).await?;
    let mut output = engine.run_container(input).await?.into_inner();
    session.begin();
    let mut id = String::new();
    let end = session.pump(&engine, &mut output, &mut id).await;
    tracing::Span::current().record("container_id", id.as_str());
    match end? {
        End::Exit(code) => Ok(code),
        End::Detached | End::Closed if args.detach && !id.is_empty() => {
            write_out(format!("{id}\n").as_bytes())?;
            Ok(0)
        }
        End::Detached => Ok(0),
        End::Closed => bail!("the engine ended the run without the container's exit status"),
    }
}

/// `berth create`: prints the new container's ID.
pub async fn create(mut engine: Engine, args: CreateArgs) -> Result<i32> {
    let req = create_request(&args.flags)?;
    crate::registry::ensure_image(&mut engine, &req.image, &args.flags.pull).await?;
    let container = engine.create_container(req).await?.into_inner();
    for w in &container.warnings {
        eprintln!("WARNING: {w}");
    }
    println!("{}", container.id);
    Ok(0)
}

/// `berth update`: changes the limits of each container, printing its name as Docker
/// does; errors go to stderr and make the exit 1. The warnings go to stderr as
/// "WARNING: ..." like create's (Docker prints them bare on stdout after the names).
pub async fn update(engine: Engine, args: UpdateArgs) -> Result<i32> {
    if !crate::limits::any_update_flag(&args) {
        eprintln!("You must provide one or more flags when using this command.");
        return Ok(1);
    }
    let change = crate::limits::update_resources(&args)?;
    let mut warnings = Vec::new();
    let mut failed = false;
    for name in &args.containers {
        let req = UpdateResourcesRequest {
            id: name.clone(),
            resources: Some(change.clone()),
        };
        match engine.clone().update_container(req).await {
            Ok(c) => {
                println!("{name}");
                for w in c.into_inner().warnings {
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
            }
            Err(status) => {
                let err = anyhow::Error::from(status);
                if crate::is_connect_failure(&err) {
                    return Err(err);
                }
                eprintln!(
                    "{}",
                    crate::client::failure(&err, std::path::Path::new(""), "").message
                );
                failed = true;
            }
        }
    }
    for w in &warnings {
        eprintln!("WARNING: {w}");
    }
    Ok(if failed { 1 } else { 0 })
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
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        return crate::attach::start_attached(engine, &args).await;
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

/// `berth pause`.
pub async fn pause(engine: Engine, args: NamesArgs) -> Result<i32> {
    each(&args.containers, |name| {
        let mut engine = engine.clone();
        async move {
            engine
                .pause_container(ContainerRef { id: name.clone() })
                .await?;
            Ok(Some(name))
        }
    })
    .await
}

/// `berth unpause`.
pub async fn unpause(engine: Engine, args: NamesArgs) -> Result<i32> {
    each(&args.containers, |name| {
        let mut engine = engine.clone();
        async move {
            engine
                .unpause_container(ContainerRef { id: name.clone() })
                .await?;
            Ok(Some(name))
        }
    })
    .await
}

/// `berth restart`.
pub async fn restart(engine: Engine, args: RestartArgs) -> Result<i32> {
    each(&args.containers, |name| {
        let mut engine = engine.clone();
        let req = RestartContainerRequest {
            id: name.clone(),
            timeout_seconds: args.timeout,
        };
        async move {
            engine.restart_container(req).await?;
            Ok(Some(name))
        }
    })
    .await
}

/// `berth rename`: prints nothing.
pub async fn rename(mut engine: Engine, args: RenameArgs) -> Result<i32> {
    let new_name = args.new_name.trim().to_string();
    if args.container.trim().is_empty() || new_name.is_empty() {
        bail!("Error: Neither old nor new names may be empty");
    }
    engine
        .rename_container(RenameContainerRequest {
            id: args.container,
            new_name,
        })
        .await?;
    Ok(0)
}

/// `berth top`: the processes as a table (titles, then one row each).
pub async fn top(mut engine: Engine, args: TopArgs) -> Result<i32> {
    if !args.ps_options.is_empty() {
        bail!(
            "ps options are not supported: {}",
            args.ps_options.join(" ")
        );
    }
    let resp = engine
        .top_container(TopContainerRequest { id: args.container })
        .await?
        .into_inner();
    write_out(top_table(&resp).as_bytes())?;
    Ok(0)
}

/// Docker's `top` layout (a tabwriter with minimum width 20 and padding 3): every column
/// but the last is padded.
pub fn top_table(resp: &TopContainerResponse) -> String {
    let rows: Vec<&[String]> = std::iter::once(resp.titles.as_slice())
        .chain(resp.processes.iter().map(|p| p.fields.as_slice()))
        .collect();
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max((cell.chars().count() + 3).max(20));
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                out.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
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
        "Networks": spec.network.as_ref().map(|n| n.mode.clone()).unwrap_or_default(),
        "Ports": crate::ports::ps_column(
            &spec.network.as_ref().map(|n| n.ports.clone()).unwrap_or_default(),
            &crate::ports::exposed_list(&spec.exposed_ports),
        ),
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
    fn network_flags() {
        let r = request(&[
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1::53/udp",
            "-P",
            "--expose",
            "9000-9001",
            "--net",
            "front",
            "--net-alias",
            "api",
            "--network-alias",
            "v1",
            "--ip",
            "10.1.0.9",
            "--mac-address",
            "02:42:0A:01:00:09",
            "--link",
            "db:database",
            "--dns-search",
            "example.org",
            "--dns-option",
            "ndots:2",
            "busybox",
        ])
        .unwrap();
        let ports: Vec<(u32, &str, &str, u32)> = r
            .ports
            .iter()
            .map(|p| {
                (
                    p.container_port,
                    p.protocol.as_str(),
                    p.host_ip.as_str(),
                    p.host_port,
                )
            })
            .collect();
        assert_eq!(
            ports,
            vec![(80, "tcp", "", 8080), (53, "udp", "127.0.0.1", 0)]
        );
        assert!(r.publish_all);
        assert_eq!(r.exposed_ports, vec!["9000-9001"]);
        assert_eq!(r.network, "front");
        assert_eq!(r.network_aliases, vec!["api", "v1"]);
        assert_eq!(r.ipv4_address, "10.1.0.9");
        assert_eq!(r.mac_address, "02:42:0a:01:00:09");
        assert_eq!(r.links, vec!["db:database"]);
        assert_eq!(r.dns_search, vec!["example.org"]);
        assert_eq!(r.dns_options, vec!["ndots:2"]);
        let e = request(&["-p", "8080:http", "busybox"]).unwrap_err();
        assert!(e.to_string().contains("\"8080:http\""), "{e}");
        assert!(request(&["--ip", "nope", "busybox"]).is_err());
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
    fn restart_and_init_flags() {
        let r = request(&["--restart", "on-failure:3", "--init", "busybox"]).unwrap();
        let p = r.restart_policy.unwrap();
        assert_eq!((p.name.as_str(), p.maximum_retry_count), ("on-failure", 3));
        assert!(r.init);
        let r = request(&["busybox"]).unwrap();
        assert!(r.restart_policy.is_none() && !r.init);
        let err = request(&["--restart", "sometimes", "busybox"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("'sometimes'"), "{err}");
        let err = request(&["--rm", "--restart", "always", "busybox"]).unwrap_err();
        assert_eq!(err.to_string(), "Conflicting options: --restart and --rm");
        assert!(request(&["--rm", "--restart", "no", "busybox"]).is_ok());
    }

    #[test]
    fn top_tables() {
        use berth_proto::supervisor::v1::TopProcess;
        let resp = TopContainerResponse {
            titles: vec!["UID".into(), "PID".into(), "CMD".into()],
            processes: vec![
                TopProcess {
                    fields: vec!["root".into(), "4242".into(), "sleep 100".into()],
                },
                TopProcess {
                    fields: vec!["averyveryverylongusername".into(), "1".into(), "sh".into()],
                },
            ],
        };
        let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w - s.len()));
        assert_eq!(
            top_table(&resp),
            format!(
                "{}{}CMD\n{}{}sleep 100\n{}{}sh\n",
                pad("UID", 28),
                pad("PID", 20),
                pad("root", 28),
                pad("4242", 20),
                pad("averyveryverylongusername", 28),
                pad("1", 20),
            )
        );
        assert_eq!(top_table(&TopContainerResponse::default()), "\n");
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
        let mut paused = c.clone();
        let state = paused.state.as_mut().unwrap();
        state.status = ContainerStatus::Paused as i32;
        state.started_at = "2023-11-14T22:13:15Z".into();
        let row = ps_row(&paused, false, now);
        assert_eq!(
            (row["State"].as_str(), row["Status"].as_str()),
            (Some("paused"), Some("Up 5 seconds (Paused)"))
        );
        let mut restarting = c.clone();
        let state = restarting.state.as_mut().unwrap();
        state.status = ContainerStatus::Restarting as i32;
        state.exit_code = 1;
        state.finished_at = "2023-11-14T22:13:18Z".into();
        assert_eq!(
            ps_row(&restarting, false, now)["Status"],
            "Restarting (1) 2 seconds ago"
        );
    }
}
