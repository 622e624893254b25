//! `berth stats`: one stream of samples from the engine for all the containers, turned
//! into Docker's table (CPU % from two consecutive samples), redrawn each second, or one
//! table from the first two rounds with `--no-stream`.
use std::time::Duration;

use anyhow::Result;
use berth_proto::supervisor::v1::{
    ContainerStatsRequest, ContainerStatsSample, ContainerStatus, ListContainersRequest,
};
use serde_json::{json, Value};

use crate::args::StatsArgs;
use crate::client::Engine;
use crate::format;
use crate::session::write_out;

/// Docker's default `stats` format.
pub const DEFAULT_FORMAT: &str = "table {{.ID}}\\t{{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t{{.NetIO}}\\t{{.BlockIO}}\\t{{.PIDs}}";

/// How long `--no-stream` waits for a container's second sample before printing what it
/// has (a container that stopped meanwhile, or none running).
const QUIET: Duration = Duration::from_millis(2500);

/// The column titles, by field.
pub fn headers() -> Value {
    json!({
        "BlockIO": "BLOCK I/O",
        "CPUPerc": "CPU %",
        "Container": "CONTAINER",
        "ID": "CONTAINER ID",
        "MemPerc": "MEM %",
        "MemUsage": "MEM USAGE / LIMIT",
        "Name": "NAME",
        "NetIO": "NET I/O",
        "PIDs": "PIDS",
    })
}

/// Docker's `calculateCPUPercentUnix`: the container's share of the host's CPU time
/// between two samples, scaled to CPUs (100% is one CPU busy).
pub fn cpu_percent(prev: Option<&ContainerStatsSample>, cur: &ContainerStatsSample) -> f64 {
    let Some(prev) = prev else {
        return 0.0;
    };
    let cpu = cur.cpu_usage_nanos as f64 - prev.cpu_usage_nanos as f64;
    let system = cur.system_cpu_nanos as f64 - prev.system_cpu_nanos as f64;
    if cpu > 0.0 && system > 0.0 {
        cpu / system * f64::from(cur.online_cpus.max(1)) * 100.0
    } else {
        0.0
    }
}

pub fn mem_percent(usage: u64, limit: u64) -> f64 {
    if limit == 0 {
        0.0
    } else {
        usage as f64 / limit as f64 * 100.0
    }
}

/// go-units `BytesSize`: binary units, 4 significant digits ("1.5MiB", "64MiB", "0B").
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = size;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", format::go_g(size, 4), UNITS[i])
}

/// Two counters as Docker shows I/O: decimal units, 3 significant digits ("1.2kB / 648B").
pub fn io_pair(a: u64, b: u64) -> String {
    format!(
        "{} / {}",
        format::human_size_prec(a as f64, 3),
        format::human_size_prec(b as f64, 3)
    )
}

/// One container's row, by Docker's field names. `label` is what the user named it by
/// (the `Container` field); no sample is a stopped container (zeros).
pub fn row(
    label: &str,
    id: &str,
    name: &str,
    prev: Option<&ContainerStatsSample>,
    cur: Option<&ContainerStatsSample>,
    no_trunc: bool,
) -> Value {
    let zero = ContainerStatsSample::default();
    let s = cur.unwrap_or(&zero);
    let id = if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    };
    let name = name.trim_start_matches('/');
    json!({
        "BlockIO": io_pair(s.block_read_bytes, s.block_write_bytes),
        "CPUPerc": format!("{:.2}%", cur.map_or(0.0, |c| cpu_percent(prev, c))),
        "Container": label,
        "ID": id,
        "MemPerc": format!("{:.2}%", mem_percent(s.memory_usage, s.memory_limit)),
        "MemUsage": format!(
            "{} / {}",
            bytes_size(s.memory_usage as f64),
            bytes_size(s.memory_limit as f64)
        ),
        "Name": if name.is_empty() { "--" } else { name },
        "NetIO": io_pair(s.net_rx_bytes, s.net_tx_bytes),
        "PIDs": s.pids.to_string(),
    })
}

/// The text for `--format` (json, table [TEMPLATE], TEMPLATE) or Docker's table.
pub fn render(format: Option<&str>, rows: &[Value]) -> Result<String> {
    let f = format
        .map(str::trim)
        .filter(|f| !f.is_empty() && *f != "table")
        .unwrap_or(DEFAULT_FORMAT);
    Ok(format::listing(f, &headers(), rows)?.unwrap_or_default())
}

#[derive(Debug, Default)]
struct Entry {
    label: String,
    id: String,
    name: String,
    prev: Option<ContainerStatsSample>,
    last: Option<ContainerStatsSample>,
    /// Samples received (a stopped container counts as complete).
    samples: u32,
    /// Known from the stream (not only from the `-a` listing).
    sampled: bool,
}

/// The containers in the order they first appeared, each with its last two samples.
#[derive(Debug, Default)]
pub struct Tracker {
    names: Vec<String>,
    /// Keep stopped containers as zero rows (`-a`, or named ones) instead of dropping them.
    keep_stopped: bool,
    entries: Vec<Entry>,
}

impl Tracker {
    pub fn new(names: Vec<String>, keep_stopped: bool) -> Tracker {
        Tracker {
            names,
            keep_stopped,
            entries: Vec::new(),
        }
    }

    /// What the user called the container: the name or ID prefix given, else its ID.
    fn label(&self, id: &str, name: &str) -> String {
        let name = name.trim_start_matches('/');
        self.names
            .iter()
            .find(|n| {
                n.trim_start_matches('/') == name || (!n.is_empty() && id.starts_with(n.as_str()))
            })
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// A container that is not running: a row of zeros (`-a`).
    pub fn add_stopped(&mut self, id: &str, name: &str) {
        if self.entries.iter().any(|e| e.id == id) {
            return;
        }
        self.entries.push(Entry {
            label: self.label(id, name),
            id: id.to_string(),
            name: name.to_string(),
            samples: 2,
            ..Default::default()
        });
    }

    pub fn push(&mut self, s: ContainerStatsSample) {
        let index = match self.entries.iter().position(|e| e.id == s.id) {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    label: self.label(&s.id, &s.name),
                    id: s.id.clone(),
                    ..Default::default()
                });
                self.entries.len() - 1
            }
        };
        if s.gone && !self.keep_stopped {
            self.entries.remove(index);
            return;
        }
        let e = &mut self.entries[index];
        e.sampled = true;
        if !s.name.is_empty() {
            e.name.clone_from(&s.name);
        }
        if s.gone {
            e.prev = None;
            e.last = None;
            e.samples = e.samples.max(2);
        } else {
            e.prev = e.last.replace(s);
            e.samples += 1;
        }
    }

    /// `--no-stream` has its answer: `expected` containers seen, each twice (or stopped).
    pub fn settled(&self, expected: usize) -> bool {
        let seen = self.entries.iter().filter(|e| e.sampled).count();
        seen >= expected.max(1) && self.entries.iter().all(|e| e.samples >= 2)
    }

    pub fn rows(&self, no_trunc: bool) -> Vec<Value> {
        self.entries
            .iter()
            .map(|e| {
                row(
                    &e.label,
                    &e.id,
                    &e.name,
                    e.prev.as_ref(),
                    e.last.as_ref(),
                    no_trunc,
                )
            })
            .collect()
    }
}

fn stdout_is_tty() -> bool {
    nix::unistd::isatty(std::io::stdout()).unwrap_or(false)
}

/// `berth stats`.
pub async fn stats(mut engine: Engine, args: StatsArgs) -> Result<i32> {
    let format = args.format.as_deref();
    // Fail on a bad template before anything streams.
    render(format, &[])?;
    let mut names: Vec<String> = Vec::new();
    for n in &args.containers {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let mut tracker = Tracker::new(names.clone(), args.all || !names.is_empty());
    let expected = if names.is_empty() {
        let list = engine
            .list_containers(ListContainersRequest { all: args.all })
            .await?
            .into_inner()
            .containers;
        let running = [ContainerStatus::Running, ContainerStatus::Paused].map(|s| s as i32);
        let mut count = 0;
        for c in &list {
            if running.contains(&c.state.as_ref().map_or(0, |s| s.status)) {
                count += 1;
            } else {
                tracker.add_stopped(&c.id, &c.name);
            }
        }
        count
    } else {
        names.len()
    };
    if args.no_stream && names.is_empty() && expected == 0 {
        write_out(render(format, &tracker.rows(args.no_trunc))?.as_bytes())?;
        return Ok(0);
    }
    let mut stream = engine
        .container_stats(ContainerStatsRequest {
            ids: names,
            stream: true,
        })
        .await?
        .into_inner();

    if args.no_stream {
        loop {
            match tokio::time::timeout(QUIET, stream.message()).await {
                Err(_) | Ok(Ok(None)) => break,
                Ok(Err(status)) => return Err(status.into()),
                Ok(Ok(Some(sample))) => {
                    tracker.push(sample);
                    if tracker.settled(expected) {
                        break;
                    }
                }
            }
        }
        drop(stream);
        write_out(render(format, &tracker.rows(args.no_trunc))?.as_bytes())?;
        return Ok(0);
    }

    let clear = stdout_is_tty();
    let draw = |tracker: &Tracker| -> Result<()> {
        let mut text = String::new();
        if clear {
            // Docker's redraw: clear the screen, cursor home.
            text.push_str("\x1b[2J\x1b[H");
        }
        text.push_str(&render(format, &tracker.rows(args.no_trunc))?);
        write_out(text.as_bytes())
    };
    // Half a second after each round, so that a round is drawn whole.
    let start = tokio::time::Instant::now() + Duration::from_millis(500);
    let mut ticks = tokio::time::interval_at(start, Duration::from_secs(1));
    loop {
        tokio::select! {
            msg = stream.message() => match msg? {
                Some(sample) => tracker.push(sample),
                None => {
                    draw(&tracker)?;
                    return Ok(0);
                }
            },
            _ = ticks.tick() => draw(&tracker)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, cpu: u64, system: u64) -> ContainerStatsSample {
        ContainerStatsSample {
            id: id.into(),
            name: format!("{id}-name"),
            cpu_usage_nanos: cpu,
            system_cpu_nanos: system,
            online_cpus: 2,
            memory_usage: 3 << 19,
            memory_limit: 64 << 20,
            net_rx_bytes: 1234,
            net_tx_bytes: 648,
            block_read_bytes: 4_260_000,
            block_write_bytes: 0,
            pids: 3,
            ..Default::default()
        }
    }

    #[test]
    fn cpu_percent_from_two_samples() {
        let a = sample("a", 1_000_000_000, 100_000_000_000);
        // Half a CPU-second over one second of a two-CPU host (2 s of system time).
        let b = sample("a", 1_500_000_000, 102_000_000_000);
        assert!((cpu_percent(Some(&a), &b) - 50.0).abs() < 1e-9);
        assert_eq!(cpu_percent(None, &b), 0.0);
        // Counters that went back (a restart) or did not move: 0.
        assert_eq!(cpu_percent(Some(&b), &a), 0.0);
        assert_eq!(cpu_percent(Some(&a), &a), 0.0);
        // One CPU busy on two: 100%.
        let c = sample("a", 2_500_000_000, 104_000_000_000);
        assert!((cpu_percent(Some(&b), &c) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn sizes_in_dockers_units() {
        assert_eq!(bytes_size(0.0), "0B");
        assert_eq!(bytes_size(1.5 * 1024.0 * 1024.0), "1.5MiB");
        assert_eq!(bytes_size(64.0 * 1024.0 * 1024.0), "64MiB");
        assert_eq!(bytes_size(2_000_000_000.0), "1.863GiB");
        assert_eq!(bytes_size(1023.0), "1023B");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
        assert_eq!(io_pair(1234, 648), "1.23kB / 648B");
        assert_eq!(io_pair(0, 0), "0B / 0B");
        assert_eq!(io_pair(4_260_000, 1_000_000_000), "4.26MB / 1GB");
        assert_eq!(format!("{:.2}%", mem_percent(3 << 19, 64 << 20)), "2.34%");
        assert_eq!(mem_percent(5, 0), 0.0);
    }

    #[test]
    fn rows_by_dockers_field_names() {
        let a = sample("0123456789abcdef", 1_000_000_000, 100_000_000_000);
        let b = sample("0123456789abcdef", 1_500_000_000, 102_000_000_000);
        let r = row("web", &b.id, "/web", Some(&a), Some(&b), false);
        assert_eq!(
            r,
            json!({
                "BlockIO": "4.26MB / 0B",
                "CPUPerc": "50.00%",
                "Container": "web",
                "ID": "0123456789ab",
                "MemPerc": "2.34%",
                "MemUsage": "1.5MiB / 64MiB",
                "Name": "web",
                "NetIO": "1.23kB / 648B",
                "PIDs": "3",
            })
        );
        let r = row("x", "0123456789abcdef", "", None, None, true);
        assert_eq!(r["ID"], "0123456789abcdef");
        assert_eq!(r["CPUPerc"], "0.00%");
        assert_eq!(r["MemUsage"], "0B / 0B");
        assert_eq!(r["NetIO"], "0B / 0B");
        assert_eq!(r["PIDs"], "0");
        assert_eq!(r["Name"], "--");
    }

    #[test]
    fn the_table_and_json() {
        let a = sample("0123456789abcdef", 1_000_000_000, 100_000_000_000);
        let b = sample("0123456789abcdef", 1_500_000_000, 102_000_000_000);
        let rows = vec![row("web", &b.id, "web", Some(&a), Some(&b), false)];
        assert_eq!(
            render(None, &rows).unwrap(),
            "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O         BLOCK I/O     PIDS\n\
             0123456789ab   web       50.00%    1.5MiB / 64MiB      2.34%     1.23kB / 648B   4.26MB / 0B   3\n"
        );
        assert_eq!(
            render(None, &[]).unwrap(),
            "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O   BLOCK I/O   PIDS\n"
        );
        let json = render(Some("json"), &rows).unwrap();
        assert_eq!(
            json,
            "{\"BlockIO\":\"4.26MB / 0B\",\"CPUPerc\":\"50.00%\",\"Container\":\"web\",\"ID\":\"0123456789ab\",\"MemPerc\":\"2.34%\",\"MemUsage\":\"1.5MiB / 64MiB\",\"Name\":\"web\",\"NetIO\":\"1.23kB / 648B\",\"PIDs\":\"3\"}\n"
        );
        assert_eq!(
            render(Some("{{.Name}}: {{.CPUPerc}}"), &rows).unwrap(),
            "web: 50.00%\n"
        );
        assert_eq!(
            render(Some("table {{.Container}}\\t{{.PIDs}}"), &rows).unwrap(),
            "CONTAINER   PIDS\nweb         3\n"
        );
        assert!(render(Some("{{.Name"), &rows).is_err());
    }

    #[test]
    fn tracker_settles_after_two_rounds() {
        let mut t = Tracker::new(vec![], false);
        assert!(!t.settled(2));
        t.push(sample("a", 1, 10));
        t.push(sample("b", 1, 10));
        assert!(!t.settled(2));
        t.push(sample("a", 2, 20));
        assert!(!t.settled(2));
        t.push(sample("b", 3, 20));
        assert!(t.settled(2));
        let rows = t.rows(false);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Container"], "a");
        assert_eq!(rows[1]["Name"], "b-name");
        // b: 2 ns of 10 on 2 CPUs.
        assert_eq!(rows[1]["CPUPerc"], "40.00%");
        // A container that stopped is dropped when not asked for by name.
        let mut gone = sample("a", 0, 0);
        gone.gone = true;
        t.push(gone);
        assert_eq!(t.rows(false).len(), 1);
    }

    #[test]
    fn tracker_labels_and_stopped_rows() {
        let mut t = Tracker::new(vec!["a-name".into(), "b12".into()], true);
        t.push(sample("b1234", 1, 10));
        t.push(sample("a", 1, 10));
        let rows = t.rows(false);
        assert_eq!(rows[0]["Container"], "b12");
        assert_eq!(rows[1]["Container"], "a-name");
        let mut gone = sample("a", 0, 0);
        gone.gone = true;
        t.push(gone);
        t.push(sample("b1234", 2, 20));
        assert!(t.settled(2));
        let rows = t.rows(false);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["CPUPerc"], "0.00%");
        assert_eq!(rows[1]["MemUsage"], "0B / 0B");

        let mut t = Tracker::new(vec![], true);
        t.add_stopped("s1", "/old");
        assert!(!t.settled(1));
        t.push(sample("r1", 1, 10));
        t.push(sample("r1", 2, 20));
        assert!(t.settled(1));
        let rows = t.rows(true);
        assert_eq!(rows[0]["Name"], "old");
        assert_eq!(rows[0]["Container"], "s1");
        assert_eq!(rows[0]["PIDs"], "0");
    }
}
