//! `ContainerStats`: resource usage read from the containers' cgroups and network
//! namespaces, one round per second for many containers.
//!
//! Cost matters (`berth stats` over 100 containers): a round is one blocking task that
//! reads `/proc/stat` once, then per container a handful of small files, each opened and
//! read with one read(2) into a buffer reused across rounds; file paths are kept per
//! container between rounds. Nothing is spawned per container.
//!
//! Per container (v1 / v2):
//! - CPU: `cpuacct.usage` / `cpu.stat` usage_usec (ns).
//! - memory: `memory.usage_in_bytes` / `memory.current` minus the inactive page cache
//!   (`total_inactive_file` / `inactive_file` of `memory.stat`), as Docker shows it; the
//!   limit is `hierarchical_memory_limit` (v1 `memory.stat`) / `memory.max`, or the
//!   host's MemTotal when lower or unlimited.
//! - block I/O: `blkio.throttle.io_service_bytes` Read/Write / `io.stat` rbytes/wbytes.
//! - pids: `pids.current`.
//! - network: `/proc/<pid>/net/dev` of the container's first process (its netns), summed
//!   over the interfaces but `lo`; 0 for `--network host`.
//! - online CPUs: the CPUs of the container's cpuset (v1 `cpuset.cpus`, v2
//!   `cpuset.cpus.effective`), else the host's.
use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::Read,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use berth_proto::supervisor::v1::ContainerStatsSample;
use tokio::sync::mpsc;
use tonic::Status;

use crate::{
    cgroup::{self, Layout},
    error::{Error, Result},
    lifecycle::Supervisor,
    store::Record,
};

/// Time between two samples of a streamed container.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Bigger than every file read here; a fuller read is continued.
const BUF_SIZE: usize = 16 * 1024;

// ----- parsers -----

/// A decimal number, surrounding whitespace allowed; None for `max` or garbage.
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

/// The value of `key` in a `key value` per line file (`memory.stat`, `cpu.stat`).
pub fn keyed(text: &[u8], key: &str) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// v1 `blkio.throttle.io_service_bytes`: (read, write) bytes summed over the devices.
pub fn blkio_v1(text: &[u8]) -> (u64, u64) {
    let Ok(text) = std::str::from_utf8(text) else {
        return (0, 0);
    };
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(op), Some(n)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let n: u64 = n.parse().unwrap_or(0);
        match op {
            "Read" => r = r.saturating_add(n),
            "Write" => w = w.saturating_add(n),
            _ => {}
        }
    }
    (r, w)
}

/// v2 `io.stat`: (rbytes, wbytes) summed over the devices.
pub fn io_stat_v2(text: &[u8]) -> (u64, u64) {
    let Ok(text) = std::str::from_utf8(text) else {
        return (0, 0);
    };
    let (mut r, mut w) = (0u64, 0u64);
    for kv in text.split_whitespace() {
        if let Some(n) = kv.strip_prefix("rbytes=") {
            r = r.saturating_add(n.parse().unwrap_or(0));
        } else if let Some(n) = kv.strip_prefix("wbytes=") {
            w = w.saturating_add(n.parse().unwrap_or(0));
        }
    }
    (r, w)
}

/// `/proc/stat`: the host's CPU time in ns, as Docker counts it (user, nice, system,
/// idle, iowait, irq, softirq of the `cpu` line).
pub fn system_cpu_nanos(text: &[u8], clk_tck: u64) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let line = text.lines().next()?;
    let mut f = line.split_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let mut ticks = 0u64;
    for _ in 0..7 {
        ticks = ticks.saturating_add(f.next()?.parse::<u64>().ok()?);
    }
    Some(ticks.saturating_mul(1_000_000_000) / clk_tck.max(1))
}

/// `/proc/<pid>/net/dev`: (rx, tx) bytes summed over the interfaces but `lo`.
pub fn net_dev(text: &[u8]) -> (u64, u64) {
    let Ok(text) = std::str::from_utf8(text) else {
        return (0, 0);
    };
    let (mut rx, mut tx) = (0u64, 0u64);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let mut f = rest.split_whitespace();
        let r: u64 = f.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let t: u64 = f.nth(7).and_then(|n| n.parse().ok()).unwrap_or(0);
        rx = rx.saturating_add(r);
        tx = tx.saturating_add(t);
    }
    (rx, tx)
}

/// The number of CPUs in a cpuset list (`0-2,4` → 4); None when empty or malformed.
pub fn cpuset_count(text: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(text).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    let mut n = 0u32;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<u32>().ok()?;
                n += 1;
            }
        }
    }
    Some(n)
}

/// `/proc/meminfo` MemTotal in bytes.
pub fn mem_total(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Docker's memory usage: usage minus the inactive file cache (when smaller).
pub fn memory_usage(usage: u64, inactive_file: u64) -> u64 {
    if inactive_file < usage {
        usage - inactive_file
    } else {
        usage
    }
}

// ----- reading -----

/// What a round needs to know of one container.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    pub name: String,
    /// The container's first process (its network namespace).
    pub pid: i32,
    /// `--network host`: the host's counters are not the container's.
    pub host_network: bool,
}

impl Target {
    pub fn of(rec: &Record) -> Target {
        Target {
            id: rec.id.clone(),
            name: rec.name.clone(),
            pid: rec.pid,
            host_network: rec.spec.network.as_ref().is_some_and(|n| n.mode == "host"),
        }
    }
}

/// The files of one container, built once.
struct Paths {
    cpu: PathBuf,
    mem_usage: PathBuf,
    mem_stat: PathBuf,
    /// v2 `memory.max` (v1 reads the limit from `memory.stat`).
    mem_max: Option<PathBuf>,
    io: PathBuf,
    pids: PathBuf,
    cpuset: PathBuf,
}

/// Reads rounds of samples; kept (buffer, paths, host facts) from one round to the next.
pub struct Reader {
    layout: Layout,
    instance: String,
    buf: Buf,
    clk_tck: u64,
    host_mem: u64,
    host_cpus: u32,
    paths: HashMap<String, Paths>,
}

/// A read buffer kept across rounds: initialized once, grown only for a bigger file.
struct Buf {
    data: Vec<u8>,
    len: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            data: vec![0; BUF_SIZE],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// Reads `path` into `buf` (one read(2) for a small file); false when it cannot be read.
fn read_into(buf: &mut Buf, path: &Path) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    buf.len = 0;
    loop {
        if buf.len == buf.data.len() {
            buf.data.resize(buf.data.len() * 2, 0);
        }
        match f.read(&mut buf.data[buf.len..]) {
            Ok(0) => return true,
            Ok(n) => {
                buf.len += n;
                // A short read of a proc or cgroup file is the whole of it.
                if buf.len < buf.data.len() {
                    return true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn sysconf_or(name: libc::c_int, default: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 {
        v as u64
    } else {
        default
    }
}

impl Reader {
    pub fn new(layout: Layout, instance: &str) -> Reader {
        let mut buf = Buf::new();
        let host_mem = if read_into(&mut buf, Path::new("/proc/meminfo")) {
            mem_total(buf.bytes()).unwrap_or(0)
        } else {
            0
        };
        Reader {
            layout,
            instance: instance.to_string(),
            buf,
            clk_tck: sysconf_or(libc::_SC_CLK_TCK, 100),
            host_mem,
            host_cpus: sysconf_or(libc::_SC_NPROCESSORS_ONLN, 1) as u32,
            paths: HashMap::new(),
        }
    }

    fn paths_for(&self, id: &str) -> Paths {
        let rel = cgroup::path(&self.instance, id);
        let dir = |c: &str| {
            self.layout
                .dir(c, &rel)
                .unwrap_or_else(|| PathBuf::from("/nonexistent"))
        };
        if self.layout.is_v2() {
            let d = dir("memory");
            Paths {
                cpu: d.join("cpu.stat"),
                mem_usage: d.join("memory.current"),
                mem_stat: d.join("memory.stat"),
                mem_max: Some(d.join("memory.max")),
                io: d.join("io.stat"),
                pids: d.join("pids.current"),
                cpuset: d.join("cpuset.cpus.effective"),
            }
        } else {
            let mem = dir("memory");
            Paths {
                cpu: dir("cpuacct").join("cpuacct.usage"),
                mem_usage: mem.join("memory.usage_in_bytes"),
                mem_stat: mem.join("memory.stat"),
                mem_max: None,
                io: dir("blkio").join("blkio.throttle.io_service_bytes"),
                pids: dir("pids").join("pids.current"),
                cpuset: dir("cpuset").join("cpuset.cpus"),
            }
        }
    }

    /// The host's CPU time now (ns).
    fn system_cpu(&mut self) -> u64 {
        if read_into(&mut self.buf, Path::new("/proc/stat")) {
            system_cpu_nanos(self.buf.bytes(), self.clk_tck).unwrap_or(0)
        } else {
            0
        }
    }

    /// One sample per target, None for a container whose cgroup is gone.
    pub fn round(&mut self, targets: &[Target]) -> Vec<Option<ContainerStatsSample>> {
        let read_unix_nano = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let system_cpu_nanos = self.system_cpu();
        let wanted: HashSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        self.paths.retain(|id, _| wanted.contains(id.as_str()));
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            if !self.paths.contains_key(&t.id) {
                let p = self.paths_for(&t.id);
                self.paths.insert(t.id.clone(), p);
            }
            let mut sample = self.sample(t);
            if let Some(s) = sample.as_mut() {
                s.read_unix_nano = read_unix_nano;
                s.system_cpu_nanos = system_cpu_nanos;
            }
            out.push(sample);
        }
        out
    }

    fn sample(&mut self, t: &Target) -> Option<ContainerStatsSample> {
        let Reader {
            layout,
            buf,
            host_mem,
            host_cpus,
            paths,
            ..
        } = self;
        let p = paths.get(&t.id)?;
        let v2 = layout.is_v2();
        // The CPU counter first: a container whose cgroup is gone has no sample.
        if !read_into(buf, &p.cpu) {
            return None;
        }
        let cpu_usage_nanos = if v2 {
            keyed(buf.bytes(), "usage_usec")
                .unwrap_or(0)
                .saturating_mul(1000)
        } else {
            parse_u64(buf.bytes()).unwrap_or(0)
        };
        let usage = if read_into(buf, &p.mem_usage) {
            parse_u64(buf.bytes()).unwrap_or(0)
        } else {
            0
        };
        let (inactive, stat_limit) = if read_into(buf, &p.mem_stat) {
            if v2 {
                (keyed(buf.bytes(), "inactive_file").unwrap_or(0), None)
            } else {
                (
                    keyed(buf.bytes(), "total_inactive_file").unwrap_or(0),
                    keyed(buf.bytes(), "hierarchical_memory_limit"),
                )
            }
        } else {
            (0, None)
        };
        let limit = match &p.mem_max {
            // `max` does not parse: unlimited.
            Some(max) if read_into(buf, max) => parse_u64(buf.bytes()),
            Some(_) => None,
            None => stat_limit,
        };
        let memory_limit = match limit {
            Some(l) if *host_mem == 0 || l < *host_mem => l,
            _ => *host_mem,
        };
        let (block_read_bytes, block_write_bytes) = if read_into(buf, &p.io) {
            if v2 {
                io_stat_v2(buf.bytes())
            } else {
                blkio_v1(buf.bytes())
            }
        } else {
            (0, 0)
        };
        let pids = if read_into(buf, &p.pids) {
            parse_u64(buf.bytes()).unwrap_or(0)
        } else {
            0
        };
        let online_cpus = if read_into(buf, &p.cpuset) {
            cpuset_count(buf.bytes()).unwrap_or(*host_cpus)
        } else {
            *host_cpus
        };
        let (net_rx_bytes, net_tx_bytes) = if t.host_network || t.pid <= 0 {
            (0, 0)
        } else {
            if read_into(buf, Path::new(&format!("/proc/{}/net/dev", t.pid))) {
                net_dev(buf.bytes())
            } else {
                (0, 0)
            }
        };
        Some(ContainerStatsSample {
            id: t.id.clone(),
            name: t.name.clone(),
            read_unix_nano: 0,
            cpu_usage_nanos,
            system_cpu_nanos: 0,
            online_cpus,
            memory_usage: memory_usage(usage, inactive),
            memory_limit,
            net_rx_bytes,
            net_tx_bytes,
            block_read_bytes,
            block_write_bytes,
            pids,
            gone: false,
        })
    }
}

// ----- the stream -----

fn gone_sample(id: &str, name: &str) -> ContainerStatsSample {
    ContainerStatsSample {
        id: id.to_string(),
        name: name.to_string(),
        read_unix_nano: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0),
        gone: true,
        ..Default::default()
    }
}

type Sender = mpsc::Sender<std::result::Result<ContainerStatsSample, Status>>;

/// Starts the rounds for `references` (empty: every running container) and returns
/// their samples. Unknown references fail before anything is sent. A named container
/// that is not running gets one `gone` sample (and samples again if it starts while
/// streaming); with no names, containers come and go with the running set.
pub async fn stats(
    sup: &Supervisor,
    references: &[String],
    stream: bool,
) -> Result<mpsc::Receiver<std::result::Result<ContainerStatsSample, Status>>> {
    let mut named = Vec::new();
    for r in references {
        let rec = sup.resolve(r)?;
        if !named.contains(&rec.id) {
            named.push(rec.id);
        }
    }
    let (tx, rx) = mpsc::channel(256);
    let sup = sup.clone();
    tokio::spawn(async move {
        if let Err(e) = run(sup, named, stream, &tx).await {
            let _ = tx.send(Err(e.into())).await;
        }
    });
    Ok(rx)
}

/// (id, name) of named containers that are not running.
type Stopped = Vec<(String, String)>;

/// The containers of this round and, for named ones, those not running.
fn targets(sup: &Supervisor, named: &[String]) -> Result<(Vec<Target>, Stopped)> {
    if named.is_empty() {
        let recs = sup.store().list(true)?;
        return Ok((
            recs.iter()
                .filter(|r| r.is_running())
                .map(Target::of)
                .collect(),
            Vec::new(),
        ));
    }
    let mut running = Vec::new();
    let mut stopped = Vec::new();
    for id in named {
        match sup.store().get(id)? {
            Some(rec) if rec.is_running() => running.push(Target::of(&rec)),
            Some(rec) => stopped.push((rec.id, rec.name)),
            None => stopped.push((id.clone(), String::new())),
        }
    }
    Ok((running, stopped))
}

async fn run(sup: Supervisor, named: Vec<String>, stream: bool, tx: &Sender) -> Result<()> {
    let mut reader = Reader::new(sup.layout().clone(), sup.instance_name());
    // Containers that had a live sample in the last round, with their names.
    let mut live: HashMap<String, String> = HashMap::new();
    let mut first = true;
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tx.closed() => return Ok(()),
        }
        let (targets, stopped) = targets(&sup, &named)?;
        // One blocking task per round reads every container; the reader comes back.
        let mut r = reader;
        let (r, targets, samples) = tokio::task::spawn_blocking(move || {
            let samples = r.round(&targets);
            (r, targets, samples)
        })
        .await
        .map_err(|e| Error::Internal(format!("stats round: {e}")))?;
        reader = r;
        let mut now_live: HashMap<String, String> = HashMap::with_capacity(targets.len());
        let mut out = Vec::with_capacity(targets.len() + stopped.len());
        for (t, s) in targets.iter().zip(samples) {
            if let Some(s) = s {
                now_live.insert(t.id.clone(), t.name.clone());
                out.push(s);
            }
        }
        for (id, name) in &live {
            if !now_live.contains_key(id) {
                out.push(gone_sample(id, name));
            }
        }
        if first {
            for (id, name) in &stopped {
                out.push(gone_sample(id, name));
            }
            // Named, running, but its cgroup already gone.
            for t in &targets {
                if !now_live.contains_key(&t.id) && !live.contains_key(&t.id) {
                    out.push(gone_sample(&t.id, &t.name));
                }
            }
        }
        first = false;
        live = now_live;
        for s in out {
            if tx.send(Ok(s)).await.is_err() {
                return Ok(());
            }
        }
        if !stream {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMORY_STAT: &str = "cache 1000\nrss 5000\nhierarchical_memory_limit 67108864\n\
hierarchical_memsw_limit 134217728\ntotal_cache 4096\ntotal_rss 8192\n\
total_inactive_file 3000\ntotal_active_file 200\n";

    #[test]
    fn memory_stat_and_usage() {
        let b = MEMORY_STAT.as_bytes();
        assert_eq!(keyed(b, "total_inactive_file"), Some(3000));
        assert_eq!(keyed(b, "hierarchical_memory_limit"), Some(67108864));
        // A key that is a prefix of another does not match it.
        assert_eq!(keyed(b, "total_inactive"), None);
        assert_eq!(keyed(b, "cache"), Some(1000));
        assert_eq!(memory_usage(10_000, 3000), 7000);
        assert_eq!(memory_usage(2000, 3000), 2000);
        assert_eq!(
            parse_u64(b"9223372036854771712\n"),
            Some(9223372036854771712)
        );
        assert_eq!(parse_u64(b"max\n"), None);
        assert_eq!(
            keyed(
                b"usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
                "usage_usec"
            ),
            Some(1500)
        );
    }

    #[test]
    fn blkio_and_io_stat() {
        let v1 = b"254:0 Read 4096\n254:0 Write 1048576\n254:0 Sync 0\n254:0 Async 1052672\n\
254:0 Discard 0\n254:0 Total 1052672\n7:1 Read 100\n7:1 Write 0\nTotal 1052772\n";
        assert_eq!(blkio_v1(v1), (4196, 1048576));
        assert_eq!(blkio_v1(b""), (0, 0));
        let v2 = b"254:0 rbytes=4096 wbytes=1048576 rios=1 wios=256 dbytes=0 dios=0\n\
7:1 rbytes=100 wbytes=5 rios=1 wios=1 dbytes=0 dios=0\n";
        assert_eq!(io_stat_v2(v2), (4196, 1048581));
    }

    #[test]
    fn proc_stat_in_nanoseconds() {
        let text = b"cpu  100 2 30 4000 5 6 7 8 0 0\ncpu0 50 1 15 2000 2 3 3 4 0 0\nintr 1\n";
        // 100+2+30+4000+5+6+7 = 4150 ticks of 10 ms (steal left out, as Docker).
        assert_eq!(system_cpu_nanos(text, 100), Some(41_500_000_000));
        assert_eq!(system_cpu_nanos(b"intr 1\n", 100), None);
    }

    #[test]
    fn net_dev_without_lo() {
        let text = b"Inter-|   Receive                                                |  Transmit\n\
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n\
  eth0:    5000      40    0    0    0     0          0         0     3000      30    0    0    0     0       0          0\n\
  eth1:123456789012 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
        assert_eq!(net_dev(text), (5000 + 123456789012, 3000 + 7));
    }

    #[test]
    fn cpuset_and_meminfo() {
        assert_eq!(cpuset_count(b"0-2,4\n"), Some(4));
        assert_eq!(cpuset_count(b"0\n"), Some(1));
        assert_eq!(cpuset_count(b"\n"), None);
        assert_eq!(cpuset_count(b"3-1"), None);
        assert_eq!(
            mem_total(b"MemTotal:       16318028 kB\nMemFree: 1 kB\n"),
            Some(16318028 * 1024)
        );
    }

    #[test]
    fn a_round_over_fake_v1_cgroups() {
        let dir = tempfile::tempdir().unwrap();
        let mut mounts = Vec::new();
        for c in ["memory", "cpuacct", "cpuset", "blkio", "pids"] {
            let d = dir.path().join(c).join("inst/c1");
            std::fs::create_dir_all(&d).unwrap();
            mounts.push((c.to_string(), dir.path().join(c)));
        }
        let w = |c: &str, f: &str, v: &str| {
            std::fs::write(dir.path().join(c).join("inst/c1").join(f), v).unwrap()
        };
        w("cpuacct", "cpuacct.usage", "123456789\n");
        w("memory", "memory.usage_in_bytes", "10000\n");
        w("memory", "memory.stat", MEMORY_STAT);
        w(
            "blkio",
            "blkio.throttle.io_service_bytes",
            "254:0 Read 10\n254:0 Write 20\nTotal 30\n",
        );
        w("pids", "pids.current", "3\n");
        w("cpuset", "cpuset.cpus", "0\n");
        let mut reader = Reader::new(Layout::fixed_v1(mounts), "inst");
        let targets = [
            Target {
                id: "c1".into(),
                name: "web".into(),
                pid: 0,
                host_network: false,
            },
            Target {
                id: "c2".into(),
                name: "gone".into(),
                pid: 0,
                host_network: false,
            },
        ];
        let out = reader.round(&targets);
        assert!(out[1].is_none());
        let s = out[0].as_ref().unwrap();
        assert_eq!(
            (
                s.cpu_usage_nanos,
                s.memory_usage,
                s.block_read_bytes,
                s.block_write_bytes,
                s.pids,
                s.online_cpus,
                s.name.as_str()
            ),
            (123456789, 7000, 10, 20, 3, 1, "web")
        );
        assert_eq!(s.memory_limit, 67108864.min(reader.host_mem.max(1)));
        assert!(s.system_cpu_nanos > 0 && s.read_unix_nano > 0);
        // The paths of containers no longer asked for are forgotten.
        reader.round(&targets[..1]);
        assert_eq!(reader.paths.len(), 1);
    }
}
