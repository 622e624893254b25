//! The container lifecycle: create, start, stop, kill, wait, remove, lookup, and
//! reconciliation of running records after a supervisor restart. Operations that change
//! a container's state are serialized per container by an async mutex; exits are
//! recorded by a watcher task per running container (pidfd → exit.json → record).
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use berth_common::client::Traced;
use berth_common::{
    events::{Event, EventLog},
    ids, Config, Service,
};
use berth_proto::{
    network::v1::{
        network_client::NetworkClient, ActivateContainerRequest, Attachment,
        DeactivateContainerRequest,
    },
    supervisor::v1::{
        Container, ContainerSpec, ContainerState, ContainerStatus, ExitStatus, NetworkSettings,
        Resources,
    },
};
use tokio::{sync::watch, task::AbortHandle};
use tracing::Instrument;

use crate::{
    cgroup,
    error::{Error, IoContext, Result},
    limits, names, pause, restart_policy, shim, signal, spec,
    store::{Record, Store},
    watch::{self as pidwatch, PidFd},
};

/// How long the watcher waits for the shim to write `exit.json`.
const EXIT_FILE_PATIENCE: Duration = Duration::from_secs(5);
/// How long to wait for a killed container to be recorded as exited.
const KILL_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_STOP_TIMEOUT: i32 = 10;
/// Upper bound of one network service call: a hung service must not hold a container's
/// lock forever.
const NETWORK_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Backoff of background deactivation retries (network service unreachable).
const DEACTIVATE_RETRY_FIRST: Duration = Duration::from_millis(200);
const DEACTIVATE_RETRY_MAX: Duration = Duration::from_secs(30);

/// Where the supervisor keeps things and which programs it runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    /// `<root>/supervisor` by default.
    pub state_dir: PathBuf,
    pub shim_binary: PathBuf,
    /// The host's resolv.conf, the base of the containers' one.
    pub host_resolv_conf: PathBuf,
    /// The network service, which activates a container's network before each run and
    /// deactivates it after. None: no network calls (tests without a network service).
    pub network: Option<NetworkClient<Traced>>,
}

impl Options {
    /// Must be called within a tokio runtime (the network channel is lazy but spawns).
    pub fn from_config(config: Config) -> Options {
        Options {
            state_dir: config.state_dir(Service::Supervisor),
            shim_binary: shim::binary(),
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
            network: Some(NetworkClient::new(berth_common::client::traced(
                berth_common::client::unix_channel(config.socket(Service::Network)),
            ))),
            config,
        }
    }
}

/// The supervisor's state; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    opts: Options,
    store: Store,
    cap_bounding: u64,
    cgroup_v2: bool,
    /// Where the cgroup hierarchies are mounted (limits, stats).
    layout: cgroup::Layout,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    create_lock: tokio::sync::Mutex<()>,
    /// Bumped after every recorded state change; waiters re-read the store.
    changes: watch::Sender<u64>,
    watchers: Mutex<HashMap<String, AbortHandle>>,
    /// Pending policy restarts (waiting out their backoff).
    restarts: Mutex<HashMap<String, AbortHandle>>,
    /// The last backoff delay per container (reset by a 10 s run or a user start).
    delays: Mutex<HashMap<String, Duration>>,
    /// Background deactivations retrying while the network service is unreachable;
    /// a start cancels its container's.
    deactivations: Mutex<HashMap<String, AbortHandle>>,
    /// `container` events (ADR 16), published after each recorded change.
    events: EventLog,
}

fn now() -> (String, i64) {
    let t = SystemTime::now();
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    (humantime::format_rfc3339_nanos(t).to_string(), nanos)
}

impl Supervisor {
    /// Opens the store (creating the state directories) without reconciling.
    pub fn open(opts: Options) -> Result<Supervisor> {
        berth_common::config::ensure_private_dir(&opts.state_dir)
            .ctx(|| format!("create {}", opts.state_dir.display()))?;
        let containers = opts.state_dir.join("containers");
        berth_common::config::ensure_private_dir(&containers)
            .ctx(|| format!("create {}", containers.display()))?;
        let store = Store::open(&opts.state_dir.join("meta.db"))?;
        let (changes, _) = watch::channel(0);
        let events = EventLog::open_or_memory(&opts.state_dir, "supervisor");
        Ok(Supervisor {
            inner: Arc::new(Inner {
                opts,
                store,
                cap_bounding: spec::current_bounding_set(),
                cgroup_v2: spec::host_is_cgroup_v2(),
                layout: cgroup::Layout::detect(),
                locks: Mutex::new(HashMap::new()),
                create_lock: tokio::sync::Mutex::new(()),
                changes,
                watchers: Mutex::new(HashMap::new()),
                restarts: Mutex::new(HashMap::new()),
                delays: Mutex::new(HashMap::new()),
                deactivations: Mutex::new(HashMap::new()),
                events,
            }),
        })
    }

    /// Opens and reconciles: the start-up path of the service.
    pub async fn start_up(opts: Options) -> Result<Supervisor> {
        let sup = Supervisor::open(opts)?;
        sup.reconcile().await?;
        Ok(sup)
    }

    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// Stops watching (as a process exit would); containers keep running.
    pub fn shutdown(&self) {
        let mut w = self
            .inner
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (_, h) in w.drain() {
            h.abort();
        }
        drop(w);
        let mut r = self
            .inner
            .restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (_, h) in r.drain() {
            h.abort();
        }
        drop(r);
        let mut d = self
            .inner
            .deactivations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (_, h) in d.drain() {
            h.abort();
        }
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.inner.opts.state_dir.join("containers").join(id)
    }

    fn attach_socket(&self, id: &str) -> PathBuf {
        self.inner.opts.config.shim_dir().join(format!("{id}.sock"))
    }

    fn instance(&self) -> &str {
        self.inner.opts.config.cgroup_parent()
    }

    pub(crate) fn layout(&self) -> &cgroup::Layout {
        &self.inner.layout
    }

    pub(crate) fn instance_name(&self) -> &str {
        self.instance()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    fn notify(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The log this service serves as `berth.events.v1.Events`.
    pub fn events(&self) -> &EventLog {
        &self.inner.events
    }

    /// Publishes a `container` event about `rec` with Docker's attributes (image, name,
    /// labels) plus `extra`.
    pub(crate) fn publish(&self, rec: &Record, action: &str, extra: &[(&str, String)]) {
        let mut event = Event::new("container", action, &rec.id)
            .attr("image", &rec.spec.image)
            .attr("name", &rec.name);
        for (key, value) in extra {
            event = event.attr(key, value.as_str());
        }
        self.inner.events.publish(event.attrs(&rec.spec.labels));
    }

    pub fn to_proto(&self, r: &Record) -> Container {
        Container {
            id: r.id.clone(),
            name: r.name.clone(),
            spec: Some(r.spec.clone()),
            state: Some(ContainerState {
                status: r.status as i32,
                pid: if r.is_running() { r.pid } else { 0 },
                exit_code: r.exit_code,
                started_at: r.started_at.clone(),
                finished_at: r.finished_at.clone(),
                oom_killed: r.oom_killed,
                error: r.error.clone(),
            }),
            created: r.created.clone(),
            restart_count: r.restart_count,
            bundle_path: self.bundle_dir(&r.id).display().to_string(),
            warnings: Vec::new(),
        }
    }

    fn get_id(&self, id: &str) -> Result<Record> {
        self.inner
            .store
            .get(id)?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Full ID, name (with or without `/`), or unique ID prefix.
    pub fn resolve(&self, reference: &str) -> Result<Record> {
        if reference.is_empty() {
            return Err(Error::InvalidArgument("empty container reference".into()));
        }
        if let Some(r) = self.inner.store.get(reference)? {
            return Ok(r);
        }
        let name = reference.strip_prefix('/').unwrap_or(reference);
        if let Some(r) = self.inner.store.get_by_name(name)? {
            return Ok(r);
        }
        let ids = self.inner.store.ids_with_prefix(reference, 2)?;
        match ids.as_slice() {
            [one] => self.get_id(one),
            [] => Err(Error::NotFound(reference.to_string())),
            _ => Err(Error::InvalidArgument(format!(
                "multiple containers found with prefix: {reference}"
            ))),
        }
    }

    pub fn get(&self, reference: &str) -> Result<Container> {
        Ok(self.to_proto(&self.resolve(reference)?))
    }

    pub fn list(&self, all: bool) -> Result<Vec<Container>> {
        Ok(self
            .inner
            .store
            .list(!all)?
            .iter()
            .map(|r| self.to_proto(r))
            .collect())
    }

    // ----- create -----

    pub async fn create(
        &self,
        id: &str,
        name: &str,
        spec: Option<ContainerSpec>,
    ) -> Result<Container> {
        let spec = spec.ok_or_else(|| Error::InvalidArgument("missing container spec".into()))?;
        restart_policy::parse(spec.restart_policy.as_ref())?;
        let resources = spec.resources.clone().unwrap_or_default();
        limits::validate(&resources)?;
        let id = if id.is_empty() {
            ids::random_id()
        } else if ids::is_full_id(id) {
            id.to_string()
        } else {
            return Err(Error::InvalidArgument(format!(
                "invalid container ID {id:?}: want 64 lower-case hex characters"
            )));
        };
        let name = if name.is_empty() {
            None
        } else {
            Some(names::validate(name)?)
        };
        let _create = self.inner.create_lock.lock().await;
        if let Some(existing) = self.inner.store.get(&id)? {
            return Ok(self.to_proto(&existing));
        }
        let name = match name {
            Some(name) => {
                if let Some(other) = self.inner.store.get_by_name(&name)? {
                    return Err(Error::NameConflict { name, id: other.id });
                }
                name
            }
            None => self.generate_name()?,
        };
        let bundle = self.bundle_dir(&id);
        let tmp = self
            .inner
            .opts
            .state_dir
            .join("containers")
            .join(format!(".{id}.tmp"));
        let host_resolv =
            std::fs::read_to_string(&self.inner.opts.host_resolv_conf).unwrap_or_default();
        let ctx = spec::Context {
            instance: self.instance().to_string(),
            bundle: bundle.clone(),
            cap_bounding: self.inner.cap_bounding,
            cgroup_v2: self.inner.cgroup_v2,
        };
        let _ = std::fs::remove_dir_all(&tmp);
        let written = spec::write_bundle(&tmp, &spec, &id, &ctx, &host_resolv).and_then(|()| {
            // A bundle without a row is a leftover of a crash: replace it.
            let _ = std::fs::remove_dir_all(&bundle);
            std::fs::rename(&tmp, &bundle).ctx(|| format!("rename bundle to {}", bundle.display()))
        });
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let (created, created_nanos) = now();
        let record = Record::new(id.clone(), name, spec, created, created_nanos);
        if let Err(e) = self.inner.store.insert(&record) {
            let _ = std::fs::remove_dir_all(&bundle);
            return Err(e);
        }
        tracing::info!(id = %id, name = %record.name, "created");
        self.notify();
        self.publish(&record, "create", &[]);
        let mut out = self.to_proto(&record);
        // Limits this kernel cannot apply: said now (Docker's create warnings); the start
        // skips them.
        if resources != Resources::default() {
            if let Err(e) = cgroup::create_instance(self.instance()) {
                tracing::warn!("{e}");
            }
            out.warnings = limits::unsupported(&self.inner.layout, self.instance(), &resources);
        }
        Ok(out)
    }

    fn generate_name(&self) -> Result<String> {
        for retry in 0..20 {
            let random = ids::random_id();
            let bytes: Vec<u8> = random
                .as_bytes()
                .chunks(2)
                .filter_map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
                .collect();
            let name = names::generate(&bytes, retry.min(1));
            if self.inner.store.get_by_name(&name)?.is_none() {
                return Ok(name);
            }
        }
        Err(Error::Internal(
            "could not generate a unique container name".into(),
        ))
    }

    // ----- start -----

    pub async fn start(&self, reference: &str) -> Result<Container> {
        let id = self.resolve(reference)?.id;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let rec = self.get_id(&id)?;
        if rec.is_running() {
            return Ok(self.to_proto(&rec));
        }
        let rec = self.start_locked(rec, false).await?;
        Ok(self.to_proto(&rec))
    }

    /// Starts `rec` (not running) on the user's behalf: a pending policy restart is
    /// cancelled, the stop flag, restart count and backoff are reset. The caller holds
    /// its lock.
    pub(crate) async fn start_locked(&self, rec: Record, wait_attach: bool) -> Result<Record> {
        self.cancel_restart(&rec.id);
        self.inner
            .delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rec.id);
        if rec.stopped_by_user {
            self.inner.store.set_stopped_by_user(&rec.id, false)?;
        }
        if rec.restart_count != 0 {
            self.inner.store.set_restart_count(&rec.id, 0)?;
        }
        if rec.status == ContainerStatus::Restarting {
            self.inner.store.transition(
                &rec.id,
                ContainerStatus::Restarting,
                ContainerStatus::Exited,
            )?;
        }
        self.start_run(rec, wait_attach).await
    }

    /// Starts a run of `rec`; the caller holds its lock.
    async fn start_run(&self, rec: Record, wait_attach: bool) -> Result<Record> {
        let id = rec.id.clone();
        let bundle = self.bundle_dir(&id);
        if !bundle.join("config.json").exists() {
            return Err(Error::FailedPrecondition(format!(
                "container {id}: bundle {} is missing",
                bundle.display()
            )));
        }
        // The network exists only while the container runs: made before the process.
        self.cancel_deactivation(&id);
        if let Err(e) = self.activate_network(&rec).await {
            // A previous run's network may still be active (its deactivation was pending).
            self.deactivate_network(&id).await;
            return Err(e);
        }
        match self.spawn_run(&id, &bundle, wait_attach).await {
            Ok(rec) => Ok(rec),
            Err(e) => {
                // Unless the process did start (only its final read failed).
                if !self.get_id(&id).is_ok_and(|r| r.is_running()) {
                    self.deactivate_network(&id).await;
                }
                Err(e)
            }
        }
    }

    /// The process part of [`Self::start_run`]: cgroup, shim, record, watcher.
    async fn spawn_run(
        &self,
        id: &str,
        bundle: &std::path::Path,
        wait_attach: bool,
    ) -> Result<Record> {
        let id = id.to_string();
        let bundle = bundle.to_path_buf();
        let shim_dir = self.inner.opts.config.shim_dir();
        std::fs::create_dir_all(&shim_dir).ctx(|| format!("create {}", shim_dir.display()))?;
        // Leftovers of the previous run must not be mistaken for this one's.
        let _ = std::fs::remove_file(bundle.join("exit.json"));
        let socket = self.attach_socket(&id);
        let _ = std::fs::remove_file(&socket);

        // The cgroup and its limits, before the process joins it (between its fork and
        // exec, in the shim): every run, from the stored spec.
        let resources = self.get_id(&id)?.spec.resources.unwrap_or_default();
        let (instance, cid) = (self.instance().to_string(), id.clone());
        let layout = self.inner.layout.clone();
        let applied = tokio::task::spawn_blocking(move || {
            cgroup::create(&instance, &cid)?;
            let writes = limits::writes(&resources, layout.is_v2());
            Ok::<_, Error>(limits::apply(
                &layout,
                &cgroup::path(&instance, &cid),
                &writes,
            ))
        })
        .await
        .map_err(|e| Error::Internal(format!("create cgroup: {e}")))??;
        match applied {
            Ok(warnings) if !warnings.is_empty() => {
                tracing::warn!(id = %id, ?warnings, "limits discarded");
            }
            Ok(_) => {}
            Err(e) => {
                self.start_failed(&id, &e.to_string(), 128).await;
                return Err(e);
            }
        }

        let args = shim::Args {
            id: id.clone(),
            bundle: bundle.clone(),
            attach_socket: socket,
            log_socket: self.inner.opts.config.log_ingest_socket(),
            wait_attach,
        };
        let report = shim::spawn(&self.inner.opts.shim_binary, &args).await;
        let (shim_pid, pid) = match report {
            Ok(shim::Report::Started { shim_pid, pid }) => (shim_pid, pid),
            Ok(shim::Report::Failed { exit_code, error }) => {
                self.start_failed(&id, &error, exit_code).await;
                return Err(Error::StartFailed {
                    message: error,
                    exit_code,
                });
            }
            Err(e) => {
                self.start_failed(&id, &e.to_string(), 128).await;
                return Err(e);
            }
        };
        // Pin the process first, then read its start time: both refer to the same process.
        let fd = PidFd::open(pid).ok();
        let start_time = pidwatch::start_time(pid).unwrap_or(0);
        let (started_at, _) = now();
        self.inner
            .store
            .set_running(&id, pid, start_time, shim_pid, &started_at)?;
        tracing::info!(id = %id, pid, shim_pid, "started");
        self.spawn_watcher(id.clone(), pid, shim_pid, fd);
        self.notify();
        let rec = self.get_id(&id)?;
        self.publish(&rec, "start", &[]);
        Ok(rec)
    }

    // ----- network activation -----

    /// The network client, when the container has network settings to activate.
    fn network_for(&self, rec: &Record) -> Option<NetworkClient<Traced>> {
        rec.spec.network.as_ref()?;
        self.inner.opts.network.clone()
    }

    /// Activates the container's network and writes what it got (addresses, ports,
    /// DNS, link entries) into its record and, in place, its hosts and resolv.conf,
    /// before the process starts. The network service undoes its own partial work.
    async fn activate_network(&self, rec: &Record) -> Result<()> {
        let Some(mut client) = self.network_for(rec) else {
            return Ok(());
        };
        let call = client.activate_container(ActivateContainerRequest {
            container_id: rec.id.clone(),
        });
        let attachment: Attachment = match tokio::time::timeout(NETWORK_CALL_TIMEOUT, call).await {
            Ok(Ok(a)) => a.into_inner(),
            Ok(Err(status)) => {
                tracing::warn!(id = %rec.id, error = %status.message(), "network activation failed");
                // The network's own refusals (a taken port) read as Docker's; transport
                // and server failures get told apart from them.
                let status = match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal => {
                        tonic::Status::new(
                            status.code(),
                            format!("activate the container's network: {}", status.message()),
                        )
                    }
                    _ => status,
                };
                return Err(Error::Network(status));
            }
            Err(_) => {
                return Err(Error::Network(tonic::Status::deadline_exceeded(format!(
                "activate the network of container {}: the network service did not answer in {} s",
                rec.id,
                NETWORK_CALL_TIMEOUT.as_secs()
            ))))
            }
        };
        let old = rec.spec.network.clone().unwrap_or_default();
        if attachment.netns_path != old.netns_path {
            tracing::warn!(id = %rec.id, recorded = %old.netns_path, activated = %attachment.netns_path, "network namespace differs from the recorded one");
        }
        let mut spec = rec.spec.clone();
        spec.network = Some(spec::activated_network(&old, &attachment));
        self.write_network(&rec.id, &spec)?;
        tracing::debug!(id = %rec.id, ips = ?spec.network.as_ref().map(|n| &n.ip_addresses), "network activated");
        Ok(())
    }

    /// Records `spec`'s network settings and rewrites hosts/resolv.conf in place.
    fn write_network(&self, id: &str, spec: &ContainerSpec) -> Result<()> {
        let host_resolv =
            std::fs::read_to_string(&self.inner.opts.host_resolv_conf).unwrap_or_default();
        spec::rewrite_network_files(&self.bundle_dir(id), spec, id, &host_resolv)?;
        self.inner.store.set_spec(id, spec)?;
        Ok(())
    }

    /// One DeactivateContainer call.
    async fn call_deactivate(client: &mut NetworkClient<Traced>, id: &str) -> Result<()> {
        let call = client.deactivate_container(DeactivateContainerRequest {
            container_id: id.to_string(),
        });
        match tokio::time::timeout(NETWORK_CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(Error::Network(status)),
            Err(_) => Err(Error::Network(tonic::Status::deadline_exceeded(
                "the network service did not answer",
            ))),
        }
    }

    /// Removes the container's network after its process ended (or its start failed).
    /// When the network service cannot be reached, retries in the background with
    /// backoff until it can, unless the container runs again by then.
    async fn deactivate_network(&self, id: &str) {
        let Ok(rec) = self.get_id(id) else { return };
        let Some(mut client) = self.network_for(&rec) else {
            return;
        };
        match Self::call_deactivate(&mut client, id).await {
            Ok(()) => self.forget_addresses(&rec),
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "network deactivation failed; retrying in the background");
                self.retry_deactivation(id.to_string(), client);
            }
        }
    }

    /// A stopped container shows no address and no published port.
    fn forget_addresses(&self, rec: &Record) {
        let Some(net) = rec.spec.network.as_ref() else {
            return;
        };
        if net.ip_addresses.is_empty() && net.ports.is_empty() {
            return;
        }
        // Only the network part: an update of other parts (limits) must not be undone.
        let network = spec::deactivated_network(net);
        if let Err(e) = self
            .inner
            .store
            .update_spec(&rec.id, |spec| spec.network = Some(network))
        {
            tracing::warn!(id = %rec.id, "record network settings: {e}");
        }
    }

    fn retry_deactivation(&self, id: String, mut client: NetworkClient<Traced>) {
        let sup = self.clone();
        let key = id.clone();
        let mut pending = self
            .inner
            .deactivations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let task = tokio::spawn(async move {
            let mut delay = DEACTIVATE_RETRY_FIRST;
            loop {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(DEACTIVATE_RETRY_MAX);
                // Under the container's lock: a start in between wins (it cancels us).
                let lock = sup.lock_for(&id);
                let _g = lock.lock().await;
                let rec = match sup.get_id(&id) {
                    Ok(rec) if !rec.is_running() => rec,
                    // Removed (the engine detached it) or running again: nothing to do.
                    _ => break,
                };
                match Self::call_deactivate(&mut client, &id).await {
                    Ok(()) => {
                        tracing::info!(id = %id, "network deactivated after retrying");
                        sup.forget_addresses(&rec);
                        break;
                    }
                    Err(e) => tracing::debug!(id = %id, error = %e, "network deactivation retry"),
                }
            }
            sup.inner
                .deactivations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
        if let Some(old) = pending.insert(key, task.abort_handle()) {
            old.abort();
        }
    }

    fn cancel_deactivation(&self, id: &str) {
        if let Some(h) = self
            .inner
            .deactivations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        {
            h.abort();
        }
    }

    /// At start-up: whatever was missed while the supervisor was away (exits it did
    /// not see, deactivations that never got through), every container that is not
    /// running has its network deactivated. Idempotent on the network side; in the
    /// background, so a network service that starts later is waited for.
    fn deactivate_stopped(&self) {
        if self.inner.opts.network.is_none() {
            return;
        }
        let sup = self.clone();
        tokio::spawn(async move {
            let ids: Vec<String> = match sup.inner.store.list(false) {
                Ok(recs) => recs
                    .into_iter()
                    .filter(|r| !r.is_running())
                    .map(|r| r.id)
                    .collect(),
                Err(e) => {
                    tracing::warn!("list containers to deactivate: {e}");
                    return;
                }
            };
            for id in ids {
                let lock = sup.lock_for(&id);
                let _g = lock.lock().await;
                match sup.get_id(&id) {
                    Ok(rec) if !rec.is_running() => sup.deactivate_network(&id).await,
                    _ => {}
                }
            }
        });
    }

    async fn start_failed(&self, id: &str, error: &str, exit_code: i32) {
        tracing::warn!(id = %id, exit_code, error, "start failed");
        if let Err(e) = cgroup::delete(self.instance(), id).await {
            tracing::warn!(id = %id, "{e}");
        }
        if let Err(e) = self.inner.store.set_start_error(id, error, exit_code) {
            tracing::warn!(id = %id, "record start error: {e}");
        }
        self.notify();
    }

    /// Waits for `pid` to end (immediately when `fd` is None), then records the exit.
    fn spawn_watcher(&self, id: String, pid: i32, shim_pid: i32, fd: Option<PidFd>) {
        let sup = self.clone();
        let key = id.clone();
        let task = tokio::spawn(async move {
            if let Some(fd) = fd {
                if let Err(e) = fd.exited().await {
                    tracing::warn!(id = %id, pid, "watch pidfd: {e}; polling instead");
                    while pidwatch::alive(pid) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            sup.record_exit(&id, pid, shim_pid).await;
            sup.inner
                .watchers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, task.abort_handle());
    }

    async fn record_exit(&self, id: &str, pid: i32, shim_pid: i32) {
        let exit = pidwatch::read_exit(&self.bundle_dir(id), shim_pid, EXIT_FILE_PATIENCE).await;
        // Clean up before recording, so whoever sees `exited` sees no cgroup left and no
        // network: a `stop` that returns has freed the ports, and a policy restart
        // activates anew.
        if let Err(e) = cgroup::delete(self.instance(), id).await {
            tracing::warn!(id = %id, "{e}");
        }
        self.deactivate_network(id).await;
        // Decide on a policy restart in the same step as recording the exit, so that a
        // waiter never sees `exited` for a container about to be restarted.
        let rec = self.get_id(id).ok();
        let restart = rec
            .as_ref()
            .is_some_and(|rec| self.wants_restart(rec, exit.exit_code));
        let status = if restart {
            ContainerStatus::Restarting
        } else {
            ContainerStatus::Exited
        };
        match self.inner.store.set_ended(id, pid, &exit, status) {
            Ok(true) => {
                tracing::info!(id = %id, exit_code = exit.exit_code, restart, "exited");
                // The record as read above: what the events carry (name, image, labels)
                // is not changed by the exit.
                if let Some(rec) = &rec {
                    if exit.oom_killed {
                        self.publish(rec, "oom", &[]);
                    }
                    self.publish(rec, "die", &[("exitCode", exit.exit_code.to_string())]);
                }
                if restart {
                    self.schedule_restart(id);
                }
            }
            Ok(false) => {}
            Err(e) => tracing::error!(id = %id, "record exit: {e}"),
        }
        self.notify();
    }

    fn wants_restart(&self, rec: &Record, exit_code: i32) -> bool {
        let policy = restart_policy::parse(rec.spec.restart_policy.as_ref())
            .unwrap_or(restart_policy::Policy::No);
        restart_policy::should_restart(policy, exit_code, rec.restart_count, rec.stopped_by_user)
    }

    /// How long the run that just ended lasted.
    fn ran_for(rec: &Record) -> Duration {
        let parse = |s: &str| humantime::parse_rfc3339(s).ok();
        match (parse(&rec.started_at), parse(&rec.finished_at)) {
            (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }

    /// Restarts the (`restarting`) container after the backoff delay.
    fn schedule_restart(&self, id: &str) {
        let ran = self
            .get_id(id)
            .map(|r| Self::ran_for(&r))
            .unwrap_or_default();
        let delay = {
            let mut delays = self.inner.delays.lock().unwrap_or_else(|e| e.into_inner());
            let d = restart_policy::next_delay(delays.get(id).copied(), ran);
            delays.insert(id.to_string(), d);
            d
        };
        tracing::info!(id = %id, ?delay, "restarting after backoff");
        let sup = self.clone();
        let key = id.to_string();
        let id = id.to_string();
        let mut restarts = self
            .inner
            .restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let lock = sup.lock_for(&id);
            let _g = lock.lock().await;
            sup.inner
                .restarts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            let Ok(rec) = sup.get_id(&id) else { return };
            if rec.status != ContainerStatus::Restarting || rec.stopped_by_user {
                return;
            }
            if let Err(e) = sup
                .inner
                .store
                .set_restart_count(&id, rec.restart_count + 1)
            {
                tracing::error!(id = %id, "record restart count: {e}");
            }
            // No request is behind it: the restart is a trace of its own.
            let span = tracing::info_span!(parent: None, "policy restart", container_id = %id);
            let started = sup.start_run(rec, false).instrument(span).await;
            if let Err(e) = started {
                tracing::warn!(id = %id, "policy restart failed: {e}");
                let _ = sup.inner.store.transition(
                    &id,
                    ContainerStatus::Restarting,
                    ContainerStatus::Exited,
                );
                sup.notify();
            }
        });
        if let Some(old) = restarts.insert(key, task.abort_handle()) {
            old.abort();
        }
    }

    fn cancel_restart(&self, id: &str) {
        if let Some(h) = self
            .inner
            .restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        {
            h.abort();
        }
    }

    // ----- reconcile -----

    /// Re-watches running records whose process is still the one we started; records the
    /// exit of the others.
    pub async fn reconcile(&self) -> Result<()> {
        for rec in self.inner.store.list(false)? {
            if rec.status == ContainerStatus::Created {
                self.roll_back_interrupted_start(&rec).await;
            }
        }
        // Policy restarts that were pending, or decided against by a failed restart.
        for rec in self.inner.store.with_status(ContainerStatus::Restarting)? {
            // A policy restart may have been interrupted half-way: undo what it started.
            if self.kill_leftovers(&rec.id).await {
                if let Err(e) = cgroup::delete(self.instance(), &rec.id).await {
                    tracing::warn!(id = %rec.id, "{e}");
                }
            }
            self.schedule_restart(&rec.id);
        }
        for rec in self.inner.store.with_status(ContainerStatus::Exited)? {
            if self.wants_restart(&rec, rec.exit_code)
                && self.inner.store.transition(
                    &rec.id,
                    ContainerStatus::Exited,
                    ContainerStatus::Restarting,
                )?
            {
                self.schedule_restart(&rec.id);
            }
        }
        for rec in self
            .inner
            .store
            .list(true)?
            .into_iter()
            .filter(|r| r.is_running())
        {
            match PidFd::open_verified(rec.pid, rec.pid_start_time) {
                Ok(Some(fd)) => {
                    tracing::info!(id = %rec.id, pid = rec.pid, "still running; watching again");
                    self.spawn_watcher(rec.id.clone(), rec.pid, rec.shim_pid, Some(fd));
                }
                Ok(None) => {
                    tracing::info!(id = %rec.id, pid = rec.pid, "ended while the supervisor was away");
                    self.record_exit(&rec.id, rec.pid, rec.shim_pid).await;
                }
                Err(e) => {
                    tracing::warn!(id = %rec.id, pid = rec.pid, "pidfd: {e}; polling");
                    self.spawn_watcher(rec.id.clone(), rec.pid, rec.shim_pid, None);
                }
            }
        }
        self.deactivate_stopped();
        Ok(())
    }

    /// A `created` record with a cgroup was being started when the supervisor died: the
    /// caller got no answer, so the start is undone (its processes and shim killed).
    async fn roll_back_interrupted_start(&self, rec: &Record) {
        if !self.kill_leftovers(&rec.id).await {
            return;
        }
        tracing::warn!(id = %rec.id, "start was interrupted by a supervisor restart; rolled back");
        if let Err(e) = cgroup::delete(self.instance(), &rec.id).await {
            tracing::warn!(id = %rec.id, "{e}");
        }
        let _ = std::fs::remove_file(self.attach_socket(&rec.id));
        let _ = self.inner.store.set_start_error(
            &rec.id,
            "start interrupted by a supervisor restart",
            128,
        );
    }

    /// Kills the shims and processes of a start that did not complete; false when it had
    /// not even created the cgroup.
    async fn kill_leftovers(&self, id: &str) -> bool {
        let (instance, id) = (self.instance().to_string(), id.to_string());
        tokio::task::spawn_blocking(move || {
            if !cgroup::exists(&instance, &id) {
                return false;
            }
            for pid in pidwatch::shim_pids_for(&id) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // Everything in the container's own cgroup belongs to the container.
            for pid in cgroup::procs(&instance, &id) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            true
        })
        .await
        .unwrap_or(false)
    }

    // ----- signals -----

    /// Sends `sig` to the running record's process, if it is still that process.
    fn signal_record(&self, rec: &Record, sig: i32) -> Result<()> {
        match PidFd::open_verified(rec.pid, rec.pid_start_time) {
            Ok(Some(fd)) => fd
                .send_signal(sig)
                .map_err(|e| Error::Internal(format!("signal {sig} to container {}: {e}", rec.id))),
            // Gone already: the watcher records the exit.
            Ok(None) => Ok(()),
            Err(e) => Err(Error::Internal(format!(
                "pidfd for container {}: {e}",
                rec.id
            ))),
        }
    }

    /// Waits until the container is not running; `None` waits forever. Returns the record
    /// (still running on timeout).
    async fn wait_not_running(&self, id: &str, timeout: Option<Duration>) -> Result<Record> {
        let mut rx = self.inner.changes.subscribe();
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            rx.borrow_and_update();
            let rec = self.get_id(id)?;
            if !rec.is_running() {
                return Ok(rec);
            }
            let changed = rx.changed();
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, changed).await.is_err() {
                        return self.get_id(id);
                    }
                }
                None => {
                    let _ = changed.await;
                }
            }
        }
    }

    pub async fn stop(
        &self,
        reference: &str,
        timeout_seconds: Option<i32>,
        signal_name: &str,
    ) -> Result<Container> {
        let id = self.resolve(reference)?.id;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let rec = self.stop_locked(&id, timeout_seconds, signal_name).await?;
        Ok(self.to_proto(&rec))
    }

    /// Ends a pending policy restart: the container stays exited.
    fn stop_restarting(&self, rec: &Record) -> Result<()> {
        self.cancel_restart(&rec.id);
        self.inner.store.set_stopped_by_user(&rec.id, true)?;
        self.inner.store.transition(
            &rec.id,
            ContainerStatus::Restarting,
            ContainerStatus::Exited,
        )?;
        self.notify();
        Ok(())
    }

    /// Sends `sig`; a paused container is thawed right after, so it can act on it.
    async fn signal_and_thaw(&self, rec: &Record, sig: i32) -> Result<()> {
        self.signal_record(rec, sig)?;
        if rec.is_paused() {
            pause::set_async(self.instance(), &rec.id, false).await?;
            self.inner.store.transition(
                &rec.id,
                ContainerStatus::Paused,
                ContainerStatus::Running,
            )?;
            self.notify();
        }
        Ok(())
    }

    /// Stop with the lock held.
    async fn stop_locked(
        &self,
        id: &str,
        timeout_seconds: Option<i32>,
        signal_name: &str,
    ) -> Result<Record> {
        let id = id.to_string();
        let rec = self.get_id(&id)?;
        let default_sig = signal::parse_or(&rec.spec.stop_signal, libc::SIGTERM)?;
        let sig = signal::parse_or(signal_name, default_sig)?;
        if rec.status == ContainerStatus::Restarting {
            self.stop_restarting(&rec)?;
            return self.get_id(&id);
        }
        if !rec.is_running() {
            return Ok(rec);
        }
        self.inner.store.set_stopped_by_user(&id, true)?;
        let timeout = timeout_seconds
            .or(rec.spec.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        tracing::info!(id = %id, sig, timeout, "stopping");
        self.signal_and_thaw(&rec, sig).await?;
        self.publish(&rec, "kill", &[("signal", sig.to_string())]);
        let grace = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
        let rec = self.wait_not_running(&id, grace).await?;
        let rec = if rec.is_running() {
            tracing::info!(id = %id, "did not stop in {timeout} s; killing");
            self.signal_record(&rec, libc::SIGKILL)?;
            self.publish(&rec, "kill", &[("signal", libc::SIGKILL.to_string())]);
            self.wait_not_running(&id, Some(KILL_GRACE)).await?
        } else {
            rec
        };
        if rec.is_running() {
            return Err(Error::Internal(format!(
                "container {id} did not exit after SIGKILL"
            )));
        }
        self.publish(&rec, "stop", &[]);
        Ok(rec)
    }

    pub async fn kill(&self, reference: &str, signal_name: &str) -> Result<Container> {
        let sig = signal::parse_or(signal_name, libc::SIGKILL)?;
        // No per-container lock: kill must be able to hurry a stop in progress.
        let rec = self.resolve(reference)?;
        if rec.status == ContainerStatus::Restarting {
            self.stop_restarting(&rec)?;
            return Ok(self.to_proto(&self.get_id(&rec.id)?));
        }
        if !rec.is_running() {
            return Err(Error::NotRunning(rec.id));
        }
        tracing::info!(id = %rec.id, sig, "killing");
        self.inner.store.set_stopped_by_user(&rec.id, true)?;
        self.signal_and_thaw(&rec, sig).await?;
        self.publish(&rec, "kill", &[("signal", sig.to_string())]);
        Ok(self.to_proto(&self.get_id(&rec.id)?))
    }

    /// Blocks until the container has exited, then returns how.
    pub async fn wait(&self, reference: &str) -> Result<ExitStatus> {
        let id = self.resolve(reference)?.id;
        let mut rx = self.inner.changes.subscribe();
        loop {
            rx.borrow_and_update();
            let rec = self.get_id(&id)?;
            // A created container is waited for until it has run and exited, unless its
            // last start failed: then that failure (126/127...) is the answer.
            let failed_start = rec.status == ContainerStatus::Created && !rec.error.is_empty();
            if matches!(rec.status, ContainerStatus::Exited | ContainerStatus::Dead) || failed_start
            {
                return Ok(exit_status(&rec));
            }
            if rx.changed().await.is_err() {
                return Err(Error::Internal("supervisor shutting down".into()));
            }
        }
    }

    pub async fn remove(&self, reference: &str, force: bool) -> Result<Container> {
        let id = self.resolve(reference)?.id;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let mut rec = self.get_id(&id)?;
        if rec.status == ContainerStatus::Restarting {
            if !force {
                return Err(Error::FailedPrecondition(format!(
                    "cannot remove container \"/{}\": container is restarting: stop the container before removing or force remove",
                    rec.name
                )));
            }
            self.stop_restarting(&rec)?;
            rec = self.get_id(&id)?;
        }
        if rec.is_running() {
            if !force {
                return Err(Error::RemoveRunning(rec.name));
            }
            self.inner.store.set_stopped_by_user(&id, true)?;
            self.signal_and_thaw(&rec, libc::SIGKILL).await?;
            self.publish(&rec, "kill", &[("signal", libc::SIGKILL.to_string())]);
            rec = self.wait_not_running(&id, Some(KILL_GRACE)).await?;
            if rec.is_running() {
                return Err(Error::Internal(format!(
                    "container {id} did not exit after SIGKILL"
                )));
            }
        }
        if let Err(e) = cgroup::delete(self.instance(), &id).await {
            tracing::warn!(id = %id, "{e}");
        }
        let out = self.to_proto(&rec);
        let bundle = self.bundle_dir(&id);
        match std::fs::remove_dir_all(&bundle) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", bundle.display()), e)),
        }
        let _ = std::fs::remove_file(self.attach_socket(&id));
        self.inner.store.delete(&id)?;
        self.cancel_restart(&id);
        self.inner
            .delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.inner
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        tracing::info!(id = %id, "removed");
        self.notify();
        self.publish(&rec, "destroy", &[]);
        Ok(out)
    }

    // ----- pause, rename, restart -----

    pub async fn pause(&self, reference: &str) -> Result<Container> {
        let id = self.resolve(reference)?.id;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let rec = self.get_id(&id)?;
        if rec.is_paused() {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is already paused"
            )));
        }
        if !rec.is_running() {
            return Err(Error::NotRunning(id));
        }
        pause::set_async(self.instance(), &id, true).await?;
        if !self
            .inner
            .store
            .transition(&id, ContainerStatus::Running, ContainerStatus::Paused)?
        {
            // It exited meanwhile: nothing stays frozen.
            let _ = pause::set_async(self.instance(), &id, false).await;
            return Err(Error::NotRunning(id));
        }
        tracing::info!(id = %id, "paused");
        self.notify();
        let rec = self.get_id(&id)?;
        self.publish(&rec, "pause", &[]);
        Ok(self.to_proto(&rec))
    }

    pub async fn unpause(&self, reference: &str) -> Result<Container> {
        let id = self.resolve(reference)?.id;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let rec = self.get_id(&id)?;
        if !rec.is_paused() {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not paused"
            )));
        }
        pause::set_async(self.instance(), &id, false).await?;
        self.inner
            .store
            .transition(&id, ContainerStatus::Paused, ContainerStatus::Running)?;
        tracing::info!(id = %id, "unpaused");
        self.notify();
        let rec = self.get_id(&id)?;
        self.publish(&rec, "unpause", &[]);
        Ok(self.to_proto(&rec))
    }

    pub async fn rename(&self, reference: &str, new_name: &str) -> Result<Container> {
        if new_name.is_empty() {
            return Err(Error::InvalidArgument(
                "Neither old nor new names may be empty".into(),
            ));
        }
        let name = names::validate(new_name)?;
        let id = self.resolve(reference)?.id;
        let _create = self.inner.create_lock.lock().await;
        let rec = self.get_id(&id)?;
        if rec.name == name {
            return Err(Error::InvalidArgument(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        if let Some(other) = self.inner.store.get_by_name(&name)? {
            return Err(Error::NameConflict { name, id: other.id });
        }
        self.inner.store.rename(&id, &name)?;
        tracing::info!(id = %id, old = %rec.name, new = %name, "renamed");
        self.notify();
        let renamed = self.get_id(&id)?;
        self.publish(&renamed, "rename", &[("oldName", format!("/{}", rec.name))]);
        Ok(self.to_proto(&renamed))
    }

    /// Replaces the container's network settings (after a network connect/disconnect) and
    /// rewrites its `hosts` and `resolv.conf` in place, so a running container sees them.
    pub async fn update_network(
        &self,
        reference: &str,
        network: Option<NetworkSettings>,
    ) -> Result<Container> {
        let network =
            network.ok_or_else(|| Error::InvalidArgument("missing network settings".into()))?;
        let id = self.resolve(reference)?.id;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let mut rec = self.get_id(&id)?;
        let old = rec.spec.network.clone().unwrap_or_default();
        spec::check_network_update(&old, &network)?;
        rec.spec.network = Some(network);
        let host_resolv =
            std::fs::read_to_string(&self.inner.opts.host_resolv_conf).unwrap_or_default();
        spec::rewrite_network_files(&self.bundle_dir(&id), &rec.spec, &id, &host_resolv)?;
        if !self.inner.store.set_spec(&id, &rec.spec)? {
            return Err(Error::NotFound(reference.to_string()));
        }
        tracing::info!(id = %id, "network settings updated");
        self.notify();
        Ok(self.to_proto(&rec))
    }

    /// Merges the set fields of `update` into the container's limits, writes the changed
    /// ones into its cgroup when it runs, and stores them (the next runs apply them too).
    /// The returned container carries Docker's warnings for limits this kernel lacks.
    pub async fn update_resources(
        &self,
        reference: &str,
        update: Option<Resources>,
    ) -> Result<Container> {
        let update = update.ok_or_else(|| Error::InvalidArgument("missing resources".into()))?;
        let id = self.resolve(reference)?.id;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let rec = self.get_id(&id)?;
        let old = rec.spec.resources.clone().unwrap_or_default();
        let merged = limits::merge(&old, &update)?;
        let v2 = self.inner.layout.is_v2();
        let before = limits::writes(&old, v2);
        let mut changed: Vec<limits::Write> = limits::writes(&merged, v2)
            .into_iter()
            .filter(|w| !before.contains(w))
            .collect();
        changed.extend(limits::removals(&update, v2));
        let mut warnings = if v2 {
            limits::v2_unsupported(&update)
        } else {
            Vec::new()
        };
        let live = rec.is_running() && cgroup::exists(self.instance(), &id);
        if live {
            let (layout, rel) = (
                self.inner.layout.clone(),
                cgroup::path(self.instance(), &id),
            );
            let writes = changed.clone();
            let res = tokio::task::spawn_blocking(move || limits::apply(&layout, &rel, &writes))
                .await
                .map_err(|e| Error::Internal(format!("update cgroup: {e}")))?;
            match res {
                Ok(w) => warnings.extend(w),
                // It stopped meanwhile: the next run applies the stored limits.
                Err(Error::NotRunning(_)) => {}
                Err(e) => return Err(e),
            }
        } else {
            warnings.extend(limits::unsupported_writes(
                &self.inner.layout,
                self.instance(),
                &changed,
            ));
        }
        warnings.dedup();
        self.inner
            .store
            .update_spec(&id, |spec| spec.resources = Some(merged))?
            .ok_or_else(|| Error::NotFound(reference.to_string()))?;
        tracing::info!(id = %id, live, writes = ?limits::describe(&self.inner.layout, &cgroup::path(self.instance(), &id), &changed), "resources updated");
        self.notify();
        let rec = self.get_id(&id)?;
        self.publish(&rec, "update", &[]);
        let mut out = self.to_proto(&rec);
        out.warnings = warnings;
        Ok(out)
    }

    /// Stop (if running, with `timeout_seconds`) then start.
    pub async fn restart(
        &self,
        reference: &str,
        timeout_seconds: Option<i32>,
    ) -> Result<Container> {
        let id = self.resolve(reference)?.id;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let rec = self.stop_locked(&id, timeout_seconds, "").await?;
        let rec = self.start_locked(rec, false).await?;
        self.publish(&rec, "restart", &[]);
        Ok(self.to_proto(&rec))
    }

    /// The container's processes as `ps -ef` rows (see [`crate::top`]).
    pub async fn top(&self, reference: &str) -> Result<Vec<Vec<String>>> {
        let rec = self.resolve(reference)?;
        if !rec.is_running() {
            return Err(Error::NotRunning(rec.id));
        }
        let (instance, id) = (self.instance().to_string(), rec.id.clone());
        let rows = tokio::task::spawn_blocking(move || crate::top::processes(&instance, &id))
            .await
            .map_err(|e| Error::Internal(format!("top: {e}")))?;
        self.publish(&rec, "top", &[]);
        Ok(rows)
    }

    pub(crate) fn bundle_path(&self, id: &str) -> PathBuf {
        self.bundle_dir(id)
    }

    // ----- attach support -----

    /// Holds the container's lock while an attach starts it.
    pub(crate) async fn lock_container(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock_for(id).lock_owned().await
    }

    pub(crate) fn record(&self, id: &str) -> Result<Record> {
        self.get_id(id)
    }

    pub(crate) fn attach_socket_path(&self, id: &str) -> PathBuf {
        self.attach_socket(id)
    }

    /// The exit status once the container is no longer running (bounded wait).
    pub(crate) async fn exit_status_after_end(&self, id: &str) -> Result<ExitStatus> {
        let rec = self
            .wait_not_running(id, Some(EXIT_FILE_PATIENCE + Duration::from_secs(5)))
            .await?;
        if rec.is_running() {
            return Err(Error::Internal(format!(
                "lost the attach connection to container {id}"
            )));
        }
        Ok(exit_status(&rec))
    }

    pub(crate) fn signal_running(&self, rec: &Record, sig: i32) -> Result<()> {
        self.signal_record(rec, sig)
    }
}

pub fn exit_status(rec: &Record) -> ExitStatus {
    ExitStatus {
        exit_code: rec.exit_code,
        oom_killed: rec.oom_killed,
        finished_at: rec.finished_at.clone(),
    }
}
