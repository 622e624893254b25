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
    error::{Error, Result},
    jsonfile::{self, JsonFileLogger},
    local, syslog,
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
}

/// Reads a driver's stored lines.
pub trait LogReader: Send + Sync {
    /// The last `tail` lines (all when `None`) and a cursor at their end, for following.
    fn read_existing(&self, tail: Option<usize>) -> io::Result<(Vec<Message>, FileCursor)>;
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
}

pub const DEFAULT_DRIVER: &str = jsonfile::NAME;

/// The canonical driver name (`""` means json-file), refusing unknown ones.
pub fn driver_name(driver: &str) -> Result<&'static str> {
    match driver {
        "" | jsonfile::NAME => Ok(jsonfile::NAME),
        syslog::NAME => Ok(syslog::NAME),
        local::NAME => Ok(local::NAME),
        NONE => Ok(NONE),
        other => Err(Error::UnknownDriver(other.to_string())),
    }
}

/// Validates a driver's options, naming the first one refused.
pub fn validate(config: &LogConfig) -> Result<()> {
    match driver_name(&config.driver)? {
        jsonfile::NAME => jsonfile::Options::parse(&config.options).map(|_| ()),
        syslog::NAME => {
            let (remote, _) = local::split_cache_options(&config.options)?;
            syslog::Options::parse(&remote)?;
            // A bad tag template is refused at create time too, as Docker does.
            crate::tag::expand(config, "", "").map(|_| ())
        }
        local::NAME => local::options(&config.options).map(|_| ()),
        NONE => none_options(config),
        _ => unreachable!("driver_name returns known drivers"),
    }
}

/// A logger for `config` writing under `dir` as `<id>-json.log` (json-file).
pub fn new_logger(config: &LogConfig, dir: &Path, id: &str) -> Result<Box<dyn Logger>> {
    match driver_name(&config.driver)? {
        jsonfile::NAME => {
            let opts = jsonfile::Options::parse(&config.options)?;
            let logger = JsonFileLogger::open(log_path(dir, id), opts)
                .map_err(|e| Error::io(format!("open log of {id}"), e))?;
            Ok(Box::new(logger))
        }
        syslog::NAME => {
            // Dual logging: a local copy (cache-* options) lets `logs` read a syslog
            // container, as Docker does by default.
            let (options, cache) = local::split_cache_options(&config.options)?;
            let remote_config = LogConfig {
                options,
                ..config.clone()
            };
            let remote = Box::new(syslog::SyslogLogger::open(&remote_config, id)?);
            Ok(match cache {
                Some(cache) => Box::new(local::Cached {
                    remote,
                    cache: local::open(&cache, dir, id)?,
                }),
                None => remote,
            })
        }
        local::NAME => Ok(Box::new(local::open(&config.options, dir, id)?)),
        NONE => {
            none_options(config)?;
            Ok(Box::new(NoneLogger))
        }
        _ => unreachable!("driver_name returns known drivers"),
    }
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
