//! The driver interface: a [`Logger`] receives a container's lines; a driver that can
//! give them back also offers a [`LogReader`]. Each driver validates its own options.
use std::{
    collections::BTreeMap,
    fs::File,
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    awslogs,
    error::{Error, Result},
    fluentd, jsonfile, local,
    remote::{self, Delivery, DeliveryStats},
    syslog,
};

pub const STDOUT: u8 = berth_wire::STREAM_STDOUT;
pub const STDERR: u8 = berth_wire::STREAM_STDERR;

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// [`STDOUT`] or [`STDERR`].
    pub stream: u8,
    /// The line including its `\n` when it had one.
    pub line: Vec<u8>,
    pub time_unix_nano: i64,
}

/// Where a container's lines go.
pub trait Logger: Send {
    fn name(&self) -> &'static str;
    /// Writes one line (possibly buffered until [`Logger::flush`]).
    fn log(&mut self, msg: &Message) -> io::Result<()>;
    /// Hands everything logged so far to the kernel (it then survives a crash of this
    /// process) and returns the recovery position: the length of the current file for
    /// file drivers, 0 otherwise.
    fn flush(&mut self) -> io::Result<u64>;
    /// True when the current file is full and [`Logger::rotate`] should run before the
    /// next line (called between lines so the caller can checkpoint first).
    fn wants_rotation(&self) -> bool {
        false
    }
    fn rotate(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// After a crash: drops what was written after the last checkpoint `position`
    /// (those lines are resent by the shim).
    fn recover(&mut self, _position: u64) -> io::Result<()> {
        Ok(())
    }
    /// How to read the log back; `None` for write-only drivers.
    fn reader(&self) -> Option<Arc<dyn LogReader>>;
    /// Delivery counters of a remote driver.
    fn stats(&self) -> Option<DeliveryStats> {
        None
    }
    /// A handle on a remote driver's delivery, kept by the router outside the writer's
    /// lock so a log blocked on a full queue can still be closed and inspected.
    fn delivery(&self) -> Option<Delivery> {
        None
    }
}

/// Reads a driver's stored lines.
pub trait LogReader: Send + Sync {
    /// The last `tail` lines (all when `None`) and a cursor at their end, for following.
    fn read_existing(&self, tail: Option<usize>) -> io::Result<(Vec<Message>, FileCursor)>;
    /// Like [`LogReader::read_existing`], but a reader may skip lines older than `since`
    /// (Unix nanoseconds, 0: none) without decoding them. Callers still filter.
    fn read_existing_since(
        &self,
        tail: Option<usize>,
        since: i64,
    ) -> io::Result<(Vec<Message>, FileCursor)> {
        let _ = since;
        self.read_existing(tail)
    }
    /// Lines written since the cursor, moving it on.
    fn read_new(&self, cursor: &mut FileCursor) -> io::Result<Vec<Message>>;
}

/// A position in a log file, kept open so rotation does not lose it.
#[derive(Debug)]
pub struct FileCursor {
    pub(crate) file: Option<File>,
    pub(crate) pos: u64,
}

/// A log's configuration as given to OpenLog (stored in `meta.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogConfig {
    pub driver: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub image_id: String,
    /// The container's labels, for the `labels`/`labels-regex` options.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The container's environment (`KEY=VALUE`), for the `env`/`env-regex` options.
    #[serde(default)]
    pub env: Vec<String>,
}

pub const DEFAULT_DRIVER: &str = jsonfile::NAME;

/// The canonical driver name (`""` means json-file), refusing unknown ones.
pub fn driver_name(driver: &str) -> Result<&'static str> {
    match driver {
        "" | jsonfile::NAME => Ok(jsonfile::NAME),
        syslog::NAME => Ok(syslog::NAME),
        local::NAME => Ok(local::NAME),
        fluentd::NAME => Ok(fluentd::NAME),
        awslogs::NAME => Ok(awslogs::NAME),
        NONE => Ok(NONE),
        other => Err(Error::UnknownDriver(other.to_string())),
    }
}

/// Validates a driver's options, naming the first one refused.
pub fn validate(config: &LogConfig) -> Result<()> {
    let (_, options) = remote::split_delivery_options(&config.options)?;
    let config = &LogConfig {
        options,
        ..config.clone()
    };
    match driver_name(&config.driver)? {
        jsonfile::NAME => jsonfile::validate(config),
        syslog::NAME => {
            let (remote, _) = local::split_cache_options(&config.options)?;
            syslog::Options::parse(&remote)?;
            // A bad tag template is refused at create time too, as Docker does.
            crate::tag::expand(config, "", "").map(|_| ())
        }
        local::NAME => local::options(&config.options).map(|_| ()),
        fluentd::NAME => fluentd::validate(&without_cache(config)?),
        awslogs::NAME => awslogs::validate(&without_cache(config)?),
        NONE => none_options(config),
        _ => unreachable!("driver_name returns known drivers"),
    }
}

/// A logger for `config` writing under `dir` as `<id>-json.log` (json-file).
pub fn new_logger(config: &LogConfig, dir: &Path, id: &str) -> Result<Box<dyn Logger>> {
    let (mode, options) = remote::split_delivery_options(&config.options)?;
    let config = &LogConfig {
        options,
        ..config.clone()
    };
    match driver_name(&config.driver)? {
        jsonfile::NAME => Ok(Box::new(jsonfile::open_for(config, log_path(dir, id))?)),
        // Dual logging: a local copy (cache-* options) lets `logs` read a syslog
        // container, as Docker does by default.
        syslog::NAME => with_cache(config, dir, id, |c| {
            Ok(Box::new(syslog::open(c, id, mode)?))
        }),
        local::NAME => Ok(Box::new(local::open(&config.options, dir, id)?)),
        fluentd::NAME => with_cache(config, dir, id, |c| {
            Ok(Box::new(fluentd::open(c, id, mode)?))
        }),
        awslogs::NAME => with_cache(config, dir, id, |c| {
            Ok(Box::new(awslogs::open(c, id, mode)?))
        }),
        NONE => {
            none_options(config)?;
            Ok(Box::new(NoneLogger))
        }
        _ => unreachable!("driver_name returns known drivers"),
    }
}

/// `config` without the local cache's `cache-*` options.
fn without_cache(config: &LogConfig) -> Result<LogConfig> {
    let (options, _) = local::split_cache_options(&config.options)?;
    Ok(LogConfig {
        options,
        ..config.clone()
    })
}

/// A remote driver's logger made by `open` (given its own options), with Docker's local
/// cache beside it unless `cache-disabled=true`.
fn with_cache(
    config: &LogConfig,
    dir: &Path,
    id: &str,
    open: impl FnOnce(&LogConfig) -> Result<Box<dyn Logger>>,
) -> Result<Box<dyn Logger>> {
    let (options, cache) = local::split_cache_options(&config.options)?;
    let remote = open(&LogConfig {
        options,
        ..config.clone()
    })?;
    let delivery = remote.delivery();
    let logger: Box<dyn Logger> = match cache {
        Some(cache) => Box::new(local::Cached {
            remote,
            cache: local::open(&cache, dir, id)?,
        }),
        None => remote,
    };
    Ok(match delivery {
        Some(delivery) => Box::new(Tracked { logger, delivery }),
        None => logger,
    })
}

/// Exposes the remote part's [`Delivery`] from outside the local cache's wrapper.
struct Tracked {
    logger: Box<dyn Logger>,
    delivery: Delivery,
}

impl Logger for Tracked {
    fn name(&self) -> &'static str {
        self.logger.name()
    }
    fn log(&mut self, msg: &Message) -> io::Result<()> {
        self.logger.log(msg)
    }
    fn flush(&mut self) -> io::Result<u64> {
        self.logger.flush()
    }
    fn wants_rotation(&self) -> bool {
        self.logger.wants_rotation()
    }
    fn rotate(&mut self) -> io::Result<()> {
        self.logger.rotate()
    }
    fn recover(&mut self, position: u64) -> io::Result<()> {
        self.logger.recover(position)
    }
    fn reader(&self) -> Option<Arc<dyn LogReader>> {
        self.logger.reader()
    }
    fn stats(&self) -> Option<DeliveryStats> {
        Some(self.delivery.stats())
    }
    fn delivery(&self) -> Option<Delivery> {
        Some(self.delivery.clone())
    }
}

/// Checks, for a new or changed configuration, that a stream peer can be reached now:
/// Docker fails `run` when syslog, or fluentd without `fluentd-async`, cannot be dialled.
/// Not done when logs are reloaded at startup, where a peer that is down must not lose
/// the container's log.
pub fn check_peer(config: &LogConfig, id: &str) -> Result<()> {
    let driver = driver_name(&config.driver)?;
    if driver != syslog::NAME && driver != fluentd::NAME {
        return Ok(());
    }
    let (_, options) = remote::split_delivery_options(&config.options)?;
    let (options, _) = local::split_cache_options(&options)?;
    let config = &LogConfig {
        options,
        ..config.clone()
    };
    match driver {
        syslog::NAME => syslog::check_peer(config, id),
        _ => fluentd::check_reachable(config),
    }
}

/// The file `logs` reads for `config`: json-file's log, or the local driver's (also the
/// cache of remote drivers); `None` when nothing is kept locally.
pub fn stored_path(config: &LogConfig, dir: &Path, id: &str) -> Result<Option<PathBuf>> {
    Ok(match driver_name(&config.driver)? {
        jsonfile::NAME => Some(log_path(dir, id)),
        local::NAME => Some(local::path(dir, id)),
        NONE => None,
        _ => {
            let (_, options) = remote::split_delivery_options(&config.options)?;
            let (_, cache) = local::split_cache_options(&options)?;
            cache.map(|_| local::path(dir, id))
        }
    })
}

/// Docker's `none` driver: lines are dropped and nothing can be read back.
pub const NONE: &str = "none";

fn none_options(config: &LogConfig) -> Result<()> {
    match config.options.keys().next() {
        Some(key) => Err(Error::UnknownOption {
            key: key.clone(),
            driver: NONE.to_string(),
        }),
        None => Ok(()),
    }
}

struct NoneLogger;

impl Logger for NoneLogger {
    fn name(&self) -> &'static str {
        NONE
    }
    fn log(&mut self, _msg: &Message) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<u64> {
        Ok(0)
    }
    fn reader(&self) -> Option<Arc<dyn LogReader>> {
        None
    }
}

/// The json-file log of container `id` in its directory.
pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}-json.log"))
}
