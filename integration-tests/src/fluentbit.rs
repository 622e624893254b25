//! A real Fluent Bit (forward input on loopback, file output) for the fluentd driver tests.
//!
//! The binary is `BERTH_FLUENT_BIT` or the one `deploy/install-deps.sh` builds
//! (`/var/cache/berth-peers/fluent-bit/build/bin/fluent-bit`, v1.8). Every event lands in
//! `<dir>/out/<tag>` as out_file's default format, `tag: [secs.nanos, {record}]`, which
//! [`FluentBit::records`] parses back. Killed by its PID on drop.
use std::{
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

const DEFAULT_BINARY: &str = "/var/cache/berth-peers/fluent-bit/build/bin/fluent-bit";

/// One event as Fluent Bit stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub tag: String,
    /// Whole seconds and nanoseconds of the event time.
    pub secs: u64,
    pub nanos: u32,
    pub record: serde_json::Value,
}

pub struct FluentBit {
    child: Child,
    dir: tempfile::TempDir,
    /// The forward input's port on 127.0.0.1.
    pub port: u16,
}

impl FluentBit {
    /// The binary the tests run.
    pub fn binary() -> PathBuf {
        std::env::var_os("BERTH_FLUENT_BIT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY))
    }

    /// Starts Fluent Bit on a free loopback port.
    pub fn start() -> FluentBit {
        // The port is free when we look; another process may take it first, so try a few.
        let mut last = String::new();
        for _ in 0..5 {
            match FluentBit::try_start_on(free_port()) {
                Ok(fb) => return fb,
                Err(log) => last = log,
            }
        }
        panic!("fluent-bit did not come up:\n{last}");
    }

    /// Starts Fluent Bit on `port` (a restart on the port an earlier one had).
    pub fn start_on(port: u16) -> FluentBit {
        FluentBit::try_start_on(port)
            .unwrap_or_else(|log| panic!("fluent-bit did not come up on {port}:\n{log}"))
    }

    fn try_start_on(port: u16) -> Result<FluentBit, String> {
        let bin = FluentBit::binary();
        assert!(
            bin.exists(),
            "{} is missing: run deploy/install-deps.sh (it builds Fluent Bit) or set BERTH_FLUENT_BIT",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("bfb")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let conf = format!(
            "[SERVICE]\n    Flush        0.2\n    Log_Level    warn\n    Daemon       off\n\n\
             [INPUT]\n    Name    forward\n    Listen  127.0.0.1\n    Port    {port}\n\n\
             [OUTPUT]\n    Name    file\n    Match   *\n    Path    {}\n",
            out.display()
        );
        let conf_path = dir.path().join("fluent-bit.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("fluent-bit.log")).unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut fb = FluentBit { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = fb.child.try_wait() {
                return Err(fb.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(fb);
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Dropping kills it.
        Err(fb.log())
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Fluent Bit's own output, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fluent-bit.log")).unwrap_or_default()
    }

    /// Every stored event, in file order per tag (tags sorted).
    pub fn events(&self) -> Vec<Event> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("out"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(parse_line)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every stored event as (tag, record).
    pub fn records(&self) -> Vec<(String, serde_json::Value)> {
        self.events()
            .into_iter()
            .map(|e| (e.tag, e.record))
            .collect()
    }

    /// Waits up to `timeout` for events matching `f` to number at least `n`; returns the
    /// matching ones (panics with everything stored when they do not come).
    pub fn wait_for(&self, n: usize, timeout: Duration, f: impl Fn(&Event) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<Event> = self.events().into_iter().filter(|e| f(e)).collect();
            if found.len() >= n {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "wanted {n} events, got {}: {found:#?}\nall: {:#?}\nfluent-bit log:\n{}",
                    found.len(),
                    self.events(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `tag: [secs.nanos, {json}]`; `None` for anything else (e.g. a line being written).
fn parse_line(line: &str) -> Option<Event> {
    let (tag, rest) = line.split_once(": [")?;
    let (time, rest) = rest.split_once(", ")?;
    let json = rest.strip_suffix(']')?;
    let (secs, nanos) = time.split_once('.')?;
    Some(Event {
        tag: tag.to_string(),
        secs: secs.parse().ok()?,
        nanos: nanos.parse().ok()?,
        record: serde_json::from_str(json).ok()?,
    })
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl Drop for FluentBit {
    fn drop(&mut self) {
        // Only the Fluent Bit this harness started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_file_lines_parse() {
        let e =
            parse_line(r#"app.web: [1709190309.123456789, {"log":"a, b: [c]","n":"1"}]"#).unwrap();
        assert_eq!(
            (e.tag.as_str(), e.secs, e.nanos),
            ("app.web", 1_709_190_309, 123_456_789)
        );
        assert_eq!(e.record["log"], "a, b: [c]");
        assert!(parse_line("app.web: [1709190309.1").is_none());
    }
}
