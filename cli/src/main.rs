//! `berth`: the command line of the berth container engine. It talks only to the engine's
//! gRPC API (see proto/berth/engine/v1/engine.proto).
mod args;
mod attach;
mod client;
mod container;
mod credentials;
mod events;
mod format;
mod image;
mod inspect;
mod limits;
mod logs;
mod mounts;
mod network;
mod parse;
mod ports;
mod registry;
mod session;
mod stats;
mod system;
mod volume;

use std::path::Path;

use anyhow::Result;
use args::{
    Cli, Command, ContainerCommand, ImageCommand, NetworkCommand, SystemCommand, VolumeCommand,
};
use tracing::Instrument;

fn main() {
    let parsed = <Cli as clap::CommandFactory>::command()
        .try_get_matches()
        .and_then(|matches| {
            let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
            Ok((cli, command_path(&matches)))
        });
    let (cli, command_name) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            use clap::error::ErrorKind;
            let _ = err.print();
            let code = match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => 125,
            };
            std::process::exit(code);
        }
    };
    let prefix = match &cli.command {
        Command::Run(_) | Command::Create(_) => "berth: ",
        Command::Container(ContainerCommand::Run(_) | ContainerCommand::Create(_)) => "berth: ",
        _ => "",
    };
    let socket = match client::engine_socket(cli.host.as_deref()) {
        Ok(s) => s,
        Err(err) => exit_with_error(&err, Path::new(""), prefix),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        // Exports this command's spans when OTEL_EXPORTER_OTLP_ENDPOINT is set; one root
        // span (`berth run`, …) holds every call the command makes.
        berth_common::telemetry::init_cli();
        let span = command_span(&command_name, &cli.command);
        let result = dispatch(cli.command, &socket).instrument(span).await;
        berth_common::telemetry::shutdown().await;
        result
    });
    match result {
        Ok(code) => {
            drop(runtime);
            std::process::exit(code)
        }
        Err(err) => exit_with_error(&err, &socket, prefix),
    }
}

/// The subcommand words (`run`, `network create`) of the parsed command line.
fn command_path(matches: &clap::ArgMatches) -> String {
    let mut words = Vec::new();
    let mut current = matches;
    while let Some((name, sub)) = current.subcommand() {
        words.push(name);
        current = sub;
    }
    words.join(" ")
}

/// The command's root span, `berth <command>`, with the objects it names.
fn command_span(name: &str, command: &Command) -> tracing::Span {
    let span = tracing::info_span!(
        "berth",
        otel.name = %format!("berth {name}"),
        otel.kind = "client",
        image = tracing::field::Empty,
        container = tracing::field::Empty,
        container_id = tracing::field::Empty,
        network = tracing::field::Empty,
        volume = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let list = |names: &[String]| names.join(",");
    match command {
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => {
            container_fields(&span, &a.flags);
        }
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            container_fields(&span, &a.flags);
        }
        Command::Start(args::StartArgs { containers, .. })
        | Command::Container(ContainerCommand::Start(args::StartArgs { containers, .. }))
        | Command::Stop(args::StopArgs { containers, .. })
        | Command::Container(ContainerCommand::Stop(args::StopArgs { containers, .. }))
        | Command::Kill(args::KillArgs { containers, .. })
        | Command::Container(ContainerCommand::Kill(args::KillArgs { containers, .. }))
        | Command::Rm(args::RmArgs { containers, .. })
        | Command::Container(ContainerCommand::Rm(args::RmArgs { containers, .. }))
        | Command::Restart(args::RestartArgs { containers, .. })
        | Command::Container(ContainerCommand::Restart(args::RestartArgs { containers, .. }))
        | Command::Wait(args::NamesArgs { containers, .. })
        | Command::Container(ContainerCommand::Wait(args::NamesArgs { containers, .. })) => {
            span.record("container", list(containers));
        }
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => {
            span.record("image", a.reference.as_str());
        }
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => {
            span.record("image", a.reference.as_str());
        }
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => {
            span.record("image", list(&a.images));
        }
        Command::Network(NetworkCommand::Create(a)) => {
            span.record("network", a.name.as_str());
        }
        Command::Network(NetworkCommand::Rm(a)) => {
            span.record("network", list(&a.names));
        }
        Command::Volume(VolumeCommand::Create(a)) => {
            if let Some(name) = a.name.as_ref().or(a.name_flag.as_ref()) {
                span.record("volume", name.as_str());
            }
        }
        Command::Volume(VolumeCommand::Rm(a)) => {
            span.record("volume", list(&a.names));
        }
        _ => {}
    }
    span
}

fn container_fields(span: &tracing::Span, flags: &args::ContainerFlags) {
    if let Some(image) = flags.image_and_cmd.first() {
        span.record("image", image.as_str());
    }
    if let Some(name) = &flags.name {
        span.record("container", name.as_str());
    }
}

fn exit_with_error(err: &anyhow::Error, socket: &Path, prefix: &str) -> ! {
    let failure = client::failure(err, socket, prefix);
    eprintln!("{}", failure.message);
    std::process::exit(failure.code)
}

/// True when `err` is a failure to reach the engine (stop going through a list).
pub fn is_connect_failure(err: &anyhow::Error) -> bool {
    err.downcast_ref::<tonic::Status>()
        .is_some_and(client::is_connect_error)
}

async fn dispatch(command: Command, socket: &Path) -> Result<i32> {
    let engine = client::connect(socket);
    match command {
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => {
            container::run(engine, a).await
        }
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            container::create(engine, a).await
        }
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => {
            container::start(engine, a).await
        }
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => {
            container::stop(engine, a).await
        }
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => {
            container::kill(engine, a).await
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => {
            container::wait(engine, a).await
        }
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => {
            container::rm(engine, a).await
        }
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => {
            container::ps(engine, a).await
        }
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => {
            logs::logs(engine, a).await
        }
        Command::Attach(a) | Command::Container(ContainerCommand::Attach(a)) => {
            attach::attach(engine, a).await
        }
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => {
            attach::exec(engine, a).await
        }
        Command::Pause(a) | Command::Container(ContainerCommand::Pause(a)) => {
            container::pause(engine, a).await
        }
        Command::Unpause(a) | Command::Container(ContainerCommand::Unpause(a)) => {
            container::unpause(engine, a).await
        }
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => {
            container::top(engine, a).await
        }
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            container::rename(engine, a).await
        }
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => {
            container::restart(engine, a).await
        }
        Command::Container(ContainerCommand::Prune(a)) => container::prune(engine, a).await,
        Command::Container(ContainerCommand::Inspect(a)) => inspect::container(engine, a).await,
        Command::Inspect(a) => inspect::inspect(engine, a).await,
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => image::images(engine, a).await,
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => {
            image::import(engine, a).await
        }
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => image::load(engine, a).await,
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => image::rmi(engine, a).await,
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => image::tag(engine, a).await,
        Command::Image(ImageCommand::Inspect(a)) => inspect::image(engine, a).await,
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => image::save(engine, a).await,
        Command::History(a) | Command::Image(ImageCommand::History(a)) => {
            image::history(engine, a).await
        }
        Command::Image(ImageCommand::Prune(a)) => image::prune(engine, a).await,
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            image::commit(engine, a).await
        }
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => registry::pull(engine, a).await,
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => registry::push(engine, a).await,
        Command::Login(a) => registry::login(engine, a).await,
        Command::Logout(a) => registry::logout(a).await,
        Command::Volume(VolumeCommand::Create(a)) => volume::create(engine, a).await,
        Command::Volume(VolumeCommand::Ls(a)) => volume::ls(engine, a).await,
        Command::Volume(VolumeCommand::Inspect(a)) => inspect::volume(engine, a).await,
        Command::Volume(VolumeCommand::Rm(a)) => volume::rm(engine, a).await,
        Command::Volume(VolumeCommand::Prune(a)) => volume::prune(engine, a).await,
        Command::Network(NetworkCommand::Ls(a)) => network::ls(engine, a).await,
        Command::Network(NetworkCommand::Create(a)) => network::create(engine, a).await,
        Command::Network(NetworkCommand::Inspect(a)) => inspect::network(engine, a).await,
        Command::Network(NetworkCommand::Rm(a)) => network::rm(engine, a).await,
        Command::Network(NetworkCommand::Prune(a)) => network::prune(engine, a).await,
        Command::Network(NetworkCommand::Connect(a)) => network::connect(engine, a).await,
        Command::Network(NetworkCommand::Disconnect(a)) => network::disconnect(engine, a).await,
        Command::Port(a) | Command::Container(ContainerCommand::Port(a)) => {
            network::port(engine, a).await
        }
        Command::Update(a) | Command::Container(ContainerCommand::Update(a)) => {
            container::update(engine, a).await
        }
        Command::Stats(a) | Command::Container(ContainerCommand::Stats(a)) => {
            stats::stats(engine, a).await
        }
        Command::Version => version(engine).await,
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => system::info(engine, a).await,
        Command::System(SystemCommand::Df(a)) => system::df(engine, a).await,
        Command::System(SystemCommand::Prune(a)) => system::prune(engine, a).await,
        Command::Events(a) | Command::System(SystemCommand::Events(a)) => {
            events::events(engine, a).await
        }
    }
}

async fn version(mut engine: client::Engine) -> Result<i32> {
    use std::io::Write;
    let os_arch = format!(
        "{}/{}",
        std::env::consts::OS,
        go_arch(std::env::consts::ARCH)
    );
    let client = format!(
        "Client:\n Version:           {}\n API version:       v1\n OS/Arch:           {os_arch}\n",
        env!("CARGO_PKG_VERSION")
    );
    print!("{client}");
    std::io::stdout().flush()?;
    let v = engine
        .version(berth_proto::engine::v1::VersionRequest {})
        .await?
        .into_inner();
    println!(
        "\nServer:\n Engine:\n  Version:          {}\n  API version:      {}\n  OS/Arch:          {}/{}\n  Kernel Version:   {}",
        v.version,
        v.api_version,
        v.os,
        go_arch(&v.arch),
        v.kernel_version
    );
    Ok(0)
}

/// Docker names architectures as Go does.
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
