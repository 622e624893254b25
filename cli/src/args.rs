//! The command line, as clap definitions (Docker's flags and aliases).
use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "A self-sufficient runtime for containers",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Engine to connect to: unix:///path, or tcp://host:port with mutual TLS (certificates
    /// from BERTH_TLS_DIR or berth.toml's [tls] dir: ca.pem, client.pem, client-key.pem)
    #[arg(
        short = 'H',
        long,
        global = true,
        env = "BERTH_HOST",
        value_name = "HOST"
    )]
    pub host: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// List containers
    Ps(PsArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Restart one or more containers
    Restart(RestartArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Update configuration (resource limits) of one or more containers
    Update(UpdateArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Return low-level information on containers or images
    Inspect(InspectArgs),
    /// List images
    Images(ImagesArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Authenticate to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Show the berth version information
    Version,
    /// Display system-wide information
    Info(InfoArgs),
    /// Get real time events from the server
    Events(EventsArgs),
    /// Manage berth (info, df, prune, events)
    #[command(subcommand)]
    System(SystemCommand),
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Display system-wide information
    Info(InfoArgs),
    /// Show berth disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(SystemPruneArgs),
    /// Get real time events from the server
    Events(EventsArgs),
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Filter output based on conditions provided (type, event, container, image,
    /// network, volume, label)
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a Go template (e.g. '{{json .}}')
    #[arg(long)]
    pub format: Option<String>,
    /// Show all events created since timestamp (e.g. 2013-01-02T13:23:37Z) or relative
    /// (e.g. 10m)
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp or relative time
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Args, Debug)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Format output: json or a Go template (e.g. '{{json .}}', '{{.NCPU}}')
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Format output: table, json, or a Go template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// List containers
    #[command(aliases = ["ps", "list"])]
    Ls(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Display detailed information on one or more containers
    Inspect(TypedInspectArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Restart one or more containers
    Restart(RestartArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Update configuration (resource limits) of one or more containers
    Update(UpdateArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Display detailed information on one or more images
    Inspect(TypedInspectArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Remove unused images
    Prune(ImagePruneArgs),
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect(TypedInspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused anonymous volumes (all unused ones with -a)
    Prune(VolumePruneArgs),
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// List networks
    #[command(alias = "list")]
    Ls(NetworkLsArgs),
    /// Create a network
    Create(NetworkCreateArgs),
    /// Display detailed information on one or more networks
    Inspect(TypedInspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(NetworkRmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(NetworkConnectArgs),
    /// Disconnect a container from a network
    Disconnect(NetworkDisconnectArgs),
}

/// The container configuration flags shared by `run` and `create`.
#[derive(Args, Debug, Default, Clone)]
pub struct ContainerFlags {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image ("" clears it)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Bind mount a volume (SRC:DST[:ro|rw], NAME:DST, DST)
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount (type=volume|bind|tmpfs,src=,dst=,readonly,...)
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory (/path[:size=16m,mode=1777])
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s) (NAME[:ro|rw])
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Connect a container to a network (bridge, a network name, none, host, container:<name|id>)
    #[arg(long = "network", visible_alias = "net")]
    pub network: Option<String>,
    /// Publish a container's port(s) to the host ([IP:][HOST_PORT:]CONTAINER_PORT[/PROTO])
    #[arg(short = 'p', long = "publish", value_name = "LIST")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long = "expose", value_name = "PORT[/PROTO]")]
    pub expose: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Add link to another container (name[:alias])
    #[arg(long = "link")]
    pub link: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", visible_alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i32>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Restart policy to apply when a container exits (no, on-failure[:max-retries], always, unless-stopped)
    #[arg(long)]
    pub restart: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    #[command(flatten)]
    pub limits: LimitFlags,
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub image_and_cmd: Vec<String>,
}

/// The resource limit flags of `run` and `create`, as given: the values are parsed in
/// [`crate::limits`] so that errors use Docker's words.
#[derive(Args, Debug, Default, Clone)]
pub struct LimitFlags {
    #[command(flatten)]
    pub updatable: UpdatableLimits,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune container memory swappiness (0 to 100) (default -1)
    #[arg(
        long = "memory-swappiness",
        value_name = "INT",
        allow_negative_numbers = true
    )]
    pub memory_swappiness: Option<String>,
    /// Limit read rate (bytes per second) from a device (PATH:RATE, e.g. /dev/vda:1mb)
    #[arg(long = "device-read-bps", value_name = "PATH:RATE")]
    pub device_read_bps: Vec<String>,
    /// Limit write rate (bytes per second) to a device (PATH:RATE, e.g. /dev/vda:1mb)
    #[arg(long = "device-write-bps", value_name = "PATH:RATE")]
    pub device_write_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device (PATH:N)
    #[arg(long = "device-read-iops", value_name = "PATH:N")]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (IO per second) to a device (PATH:N)
    #[arg(long = "device-write-iops", value_name = "PATH:N")]
    pub device_write_iops: Vec<String>,
}

/// The limit flags `update` can change; `run` and `create` take them too.
#[derive(Args, Debug, Default, Clone)]
pub struct UpdatableLimits {
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short = 'm', long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(
        long = "memory-swap",
        value_name = "BYTES",
        allow_negative_numbers = true
    )]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "BYTES")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long, value_name = "DECIMAL", allow_negative_numbers = true)]
    pub cpus: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", value_name = "INT", allow_negative_numbers = true)]
    pub cpu_period: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", value_name = "INT", allow_negative_numbers = true)]
    pub cpu_quota: Option<String>,
    /// CPU shares (relative weight)
    #[arg(
        short = 'c',
        long = "cpu-shares",
        value_name = "INT",
        allow_negative_numbers = true
    )]
    pub cpu_shares: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)
    #[arg(long = "blkio-weight", value_name = "UINT16")]
    pub blkio_weight: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "INT", allow_negative_numbers = true)]
    pub pids_limit: Option<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub limits: UpdatableLimits,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    pub format: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[command(flatten)]
    pub flags: ContainerFlags,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: ContainerFlags,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub sig_proxy: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(
        value_name = "CONTAINER COMMAND [ARG...]",
        required = true,
        num_args = 2..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub container_and_cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// ps options (not supported: the columns are fixed)
    #[arg(
        value_name = "ps OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub ps_options: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "NEW_NAME")]
    pub new_name: String,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "timeout", visible_alias = "time")]
    pub timeout: Option<i32>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "timeout", visible_alias = "time")]
    pub timeout: Option<i32>,
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Show the latest created container
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Filter output (id=, name=, label=, status=, ancestor=, exited=)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all" for every line)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show logs since a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative time
    #[arg(long)]
    pub until: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Return JSON for the specified type (container, image, volume)
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TypedInspectArgs {
    /// Format output using a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Repository to list
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// A tarball (optionally gzip), or - for STDIN
    #[arg(value_name = "FILE|-")]
    pub file: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

#[derive(Args, Debug)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub pause: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

#[derive(Args, Debug)]
pub struct VolumeCreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long = "label")]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Volume name
    #[arg(value_name = "VOLUME")]
    pub name: Option<String>,
    /// Volume name (alternative to the argument)
    #[arg(long = "name", conflicts_with = "name")]
    pub name_flag: Option<String>,
}

#[derive(Args, Debug)]
pub struct VolumeLsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Provide filter values (e.g. 'dangling=true', 'label=k=v', 'name=web')
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. 'label=k=v', 'label!=k')
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct VolumeRmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct NetworkLsArgs {
    /// Only display network IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Provide filter values (e.g. 'driver=bridge', 'name=front', 'label=k=v')
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    pub private_port: Option<String>,
}

#[derive(Args, Debug)]
pub struct NetworkCreateArgs {
    /// Driver to manage the Network (bridge, macvlan, overlay)
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Enable manual container attachment (overlay; every berth overlay network takes containers)
    #[arg(long)]
    pub attachable: bool,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Option<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    pub opt: Vec<String>,
    /// Set metadata on a network
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    #[arg(value_name = "NETWORK")]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct NetworkRmArgs {
    #[arg(required = true, value_name = "NETWORK")]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct NetworkConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long = "alias")]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long = "ip")]
    pub ip: Option<String>,
    #[arg(value_name = "NETWORK")]
    pub network: String,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Args, Debug)]
pub struct NetworkDisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(value_name = "NETWORK")]
    pub network: String,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn definitions_are_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_stop_at_the_image() {
        let cli = parse(&[
            "run", "--rm", "-it", "-e", "A=1", "-h", "box", "busybox", "ls", "-l", "-e",
        ]);
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert!(run.flags.rm && run.flags.interactive && run.flags.tty);
        assert_eq!(run.flags.hostname.as_deref(), Some("box"));
        assert_eq!(run.flags.env, vec!["A=1"]);
        assert_eq!(run.flags.image_and_cmd, vec!["busybox", "ls", "-l", "-e"]);
        let cli = parse(&["run", "busybox", "--rm"]);
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert!(!run.flags.rm);
        assert_eq!(run.flags.image_and_cmd, vec!["busybox", "--rm"]);
    }

    #[test]
    fn entrypoint_can_be_empty() {
        let cli = parse(&["create", "--entrypoint", "", "--net", "none", "busybox"]);
        let Command::Create(c) = cli.command else {
            panic!()
        };
        assert_eq!(c.flags.entrypoint.as_deref(), Some(""));
        assert_eq!(c.flags.network.as_deref(), Some("none"));
    }

    #[test]
    fn image_save_history_prune_commit() {
        let cli = parse(&["save", "-o", "x.tar", "a", "b"]);
        let Command::Save(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.output.as_deref(), Some("x.tar"));
        assert_eq!(s.images, vec!["a", "b"]);
        let cli = parse(&["image", "history", "--no-trunc", "-q", "busybox"]);
        let Command::Image(ImageCommand::History(h)) = cli.command else {
            panic!()
        };
        assert!(h.no_trunc && h.quiet && h.human);
        let cli = parse(&["image", "prune", "-a", "-f"]);
        let Command::Image(ImageCommand::Prune(p)) = cli.command else {
            panic!()
        };
        assert!(p.all && p.force);
        let cli = parse(&[
            "commit",
            "-a",
            "me",
            "-m",
            "msg",
            "-c",
            "CMD [\"x\"]",
            "-p=false",
            "c",
            "r:1",
        ]);
        let Command::Commit(c) = cli.command else {
            panic!()
        };
        assert!(!c.pause);
        assert_eq!(c.change, vec!["CMD [\"x\"]"]);
        assert_eq!(c.reference.as_deref(), Some("r:1"));
        let cli = parse(&["container", "commit", "c"]);
        let Command::Container(ContainerCommand::Commit(c)) = cli.command else {
            panic!()
        };
        assert!(c.pause && c.reference.is_none());
    }

    #[test]
    fn aliases() {
        assert!(matches!(
            parse(&["container", "ps", "-a"]).command,
            Command::Container(ContainerCommand::Ls(_))
        ));
        assert!(matches!(
            parse(&["image", "list"]).command,
            Command::Image(ImageCommand::Ls(_))
        ));
        let cli = parse(&["stop", "--time", "3", "web"]);
        let Command::Stop(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.timeout, Some(3));
        let cli = parse(&["-H", "unix:///tmp/x.sock", "ps"]);
        assert_eq!(cli.host.as_deref(), Some("unix:///tmp/x.sock"));
        for (args, ok) in [
            (&["container", "attach", "web"][..], true),
            (&["container", "exec", "web", "ls"][..], true),
            (&["container", "pause", "a", "b"][..], true),
            (&["container", "unpause", "a"][..], true),
            (&["container", "top", "a"][..], true),
            (&["container", "rename", "a", "b"][..], true),
            (&["container", "restart", "-t", "1", "a"][..], true),
            (&["exec", "web"][..], false),
            (&["rename", "a"][..], false),
        ] {
            let r = Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()));
            assert_eq!(r.is_ok(), ok, "{args:?}");
        }
    }

    #[test]
    fn limit_flags() {
        let Command::Run(r) = parse(&[
            "run",
            "-m",
            "64m",
            "--memory-swap",
            "-1",
            "--memory-swappiness",
            "-1",
            "-c",
            "512",
            "--cpus=0.5",
            "--oom-kill-disable",
            "--device-write-bps",
            "/dev/vda:1mb",
            "--device-write-bps",
            "/dev/vdb:2mb",
            "--pids-limit",
            "-1",
            "busybox",
            "-m",
        ])
        .command
        else {
            panic!()
        };
        let l = &r.flags.limits;
        assert_eq!(l.updatable.memory.as_deref(), Some("64m"));
        assert_eq!(l.updatable.memory_swap.as_deref(), Some("-1"));
        assert_eq!(l.memory_swappiness.as_deref(), Some("-1"));
        assert_eq!(l.updatable.cpu_shares.as_deref(), Some("512"));
        assert_eq!(l.updatable.cpus.as_deref(), Some("0.5"));
        assert_eq!(l.updatable.pids_limit.as_deref(), Some("-1"));
        assert!(l.oom_kill_disable);
        assert_eq!(l.device_write_bps, vec!["/dev/vda:1mb", "/dev/vdb:2mb"]);
        assert_eq!(r.flags.image_and_cmd, vec!["busybox", "-m"]);
        // A flag is not taken for a value.
        assert!(Cli::try_parse_from(["berth", "run", "--memory-swap", "--rm", "busybox"]).is_err());

        let Command::Update(u) =
            parse(&["update", "--cpus", "1", "-m", "128m", "web", "db"]).command
        else {
            panic!()
        };
        assert_eq!(u.limits.cpus.as_deref(), Some("1"));
        assert_eq!(u.limits.memory.as_deref(), Some("128m"));
        assert_eq!(u.containers, vec!["web", "db"]);
        assert!(Cli::try_parse_from(["berth", "update", "--cpus", "1"]).is_err());
        assert!(matches!(
            parse(&["container", "update", "-c", "2", "web"]).command,
            Command::Container(ContainerCommand::Update(_))
        ));

        let Command::Stats(s) = parse(&["stats", "--no-stream", "--format", "json", "-a"]).command
        else {
            panic!()
        };
        assert!(s.no_stream && s.all && !s.no_trunc && s.containers.is_empty());
        assert_eq!(s.format.as_deref(), Some("json"));
        assert!(matches!(
            parse(&["container", "stats", "web"]).command,
            Command::Container(ContainerCommand::Stats(_))
        ));
    }

    #[test]
    fn exec_flags_stop_at_the_command() {
        let cli = parse(&[
            "exec", "-it", "-e", "A=1", "-u", "nobody", "-w", "/tmp", "web", "ls", "-l", "-t",
        ]);
        let Command::Exec(e) = cli.command else {
            panic!()
        };
        assert!(e.interactive && e.tty && !e.detach);
        assert_eq!(e.env, vec!["A=1"]);
        assert_eq!(e.user.as_deref(), Some("nobody"));
        assert_eq!(e.workdir.as_deref(), Some("/tmp"));
        assert_eq!(e.container_and_cmd, vec!["web", "ls", "-l", "-t"]);
    }

    #[test]
    fn attach_and_start_flags() {
        let Command::Attach(a) = parse(&["attach", "web"]).command else {
            panic!()
        };
        assert!(a.sig_proxy && !a.no_stdin && a.detach_keys.is_none());
        let Command::Attach(a) = parse(&[
            "attach",
            "--sig-proxy=false",
            "--no-stdin",
            "--detach-keys",
            "ctrl-x",
            "web",
        ])
        .command
        else {
            panic!()
        };
        assert!(!a.sig_proxy && a.no_stdin);
        assert_eq!(a.detach_keys.as_deref(), Some("ctrl-x"));
        let Command::Start(s) = parse(&["start", "-ai", "--detach-keys", "", "web"]).command else {
            panic!()
        };
        assert!(s.attach && s.interactive);
        assert_eq!(s.detach_keys.as_deref(), Some(""));
        let Command::Run(r) =
            parse(&["run", "--restart", "on-failure:3", "--init", "busybox"]).command
        else {
            panic!()
        };
        assert_eq!(r.flags.restart.as_deref(), Some("on-failure:3"));
        assert!(r.flags.init);
    }
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub reference: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(value_name = "NAME[:TAG]")]
    pub reference: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}
