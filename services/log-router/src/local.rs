//! Docker's `local` driver, and the local cache ("dual logging") kept beside remote
//! drivers so `logs` works for them.
//!
//! Lines are stored in json-file's format by [`JsonFileLogger`] in a file of their own,
//! `<id>-local.log`, with Docker's local defaults (max-size 20m, max-file 5, compress
//! true: rotated files are gzipped in the background, `<id>-local.log.1.gz`, ...).
//! Docker's own local driver writes protobuf frames; the format is internal to the
//! daemon, so berth keeps one encoder and one reader.
use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    error::{Error, Result},
    jsonfile::{self, JsonFileLogger},
    logger::{LogReader, Logger, Message},
};

pub const NAME: &str = "local";

const KNOWN_OPTIONS: &[&str] = &["max-size", "max-file", "compress"];
const DEFAULTS: &[(&str, &str)] = &[("max-size", "20m"), ("max-file", "5"), ("compress", "true")];

type Opts = BTreeMap<String, String>;

/// The cache options Docker accepts on every remote driver (`cache-max-size` ...).
pub const CACHE_PREFIX: &str = "cache-";
const CACHE_DISABLED: &str = "cache-disabled";

/// Parses the local driver's options over Docker's defaults.
pub fn options(opts: &BTreeMap<String, String>) -> Result<jsonfile::Options> {
    if let Some(key) = opts.keys().find(|k| !KNOWN_OPTIONS.contains(&k.as_str())) {
        return Err(Error::UnknownOption {
            key: key.clone(),
            driver: NAME.to_string(),
        });
    }
    let mut merged: BTreeMap<String, String> = DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    merged.extend(
        opts.iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    // Docker's local driver refuses compression without rotated files, in its words.
    let compress = merged.get("compress").and_then(|v| jsonfile::parse_bool(v));
    if compress == Some(true) && merged.get("max-file").map(String::as_str) == Some("1") {
        return Err(Error::InvalidArgument(
            "compression cannot be enabled when max file count is 1".to_string(),
        ));
    }
    jsonfile::Options::parse(&merged)
}

/// The local log of container `id` in its directory.
pub fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}-local.log"))
}

pub fn open(opts: &BTreeMap<String, String>, dir: &Path, id: &str) -> Result<JsonFileLogger> {
    let opts = options(opts)?;
    JsonFileLogger::open(path(dir, id), opts)
        .map_err(|e| Error::io(format!("open local log of {id}"), e))
}

/// Splits a remote driver's options into its own and the cache's (prefix removed).
/// Returns `None` for the cache when `cache-disabled=true`.
pub fn split_cache_options(opts: &Opts) -> Result<(Opts, Option<Opts>)> {
    let mut remote = BTreeMap::new();
    let mut cache = BTreeMap::new();
    let mut disabled = false;
    for (k, v) in opts {
        if k == CACHE_DISABLED {
            disabled = match v.as_str() {
                "" | "false" | "0" => false,
                "true" | "1" => true,
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "invalid {CACHE_DISABLED}: {v:?}"
                    )))
                }
            };
        } else if let Some(rest) = k.strip_prefix(CACHE_PREFIX) {
            cache.insert(rest.to_string(), v.clone());
        } else {
            remote.insert(k.clone(), v.clone());
        }
    }
    // Validates the cache keys even when disabled, so a typo is still reported.
    options(&cache).map_err(|e| match e {
        Error::UnknownOption { key, driver } => Error::UnknownOption {
            key: format!("{CACHE_PREFIX}{key}"),
            driver,
        },
        e => e,
    })?;
    Ok((remote, (!disabled).then_some(cache)))
}

/// A remote driver with a local copy that `logs` reads.
pub struct Cached {
    pub remote: Box<dyn Logger>,
    pub cache: JsonFileLogger,
}

impl Logger for Cached {
    fn name(&self) -> &'static str {
        self.remote.name()
    }

    fn log(&mut self, msg: &Message) -> io::Result<()> {
        // Remote first: when it fails nothing is cached, and the line comes back from the
        // shim for both.
        self.remote.log(msg)?;
        self.cache.log(msg)
    }

    fn flush(&mut self) -> io::Result<u64> {
        self.remote.flush()?;
        self.cache.flush()
    }

    fn wants_rotation(&self) -> bool {
        self.cache.wants_rotation()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.cache.rotate()
    }

    fn recover(&mut self, position: u64) -> io::Result<()> {
        self.cache.recover(position)
    }

    fn reader(&self) -> Option<Arc<dyn LogReader>> {
        self.cache.reader()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn docker_local_defaults_and_overrides() {
        let o = options(&BTreeMap::new()).unwrap();
        assert_eq!((o.max_size, o.max_file), (Some(20 * 1024 * 1024), 5));
        let o = options(&opts(&[("max-size", "1m"), ("max-file", "2")])).unwrap();
        assert_eq!((o.max_size, o.max_file), (Some(1024 * 1024), 2));
        let e = options(&opts(&[("tag", "x")])).unwrap_err().to_string();
        assert!(e.contains("'tag'") && e.contains("local"), "{e}");
    }

    #[test]
    fn compression_is_on_by_default_and_needs_rotated_files() {
        assert!(options(&BTreeMap::new()).unwrap().compress);
        let o = options(&opts(&[("compress", "false"), ("max-file", "1")])).unwrap();
        assert_eq!((o.compress, o.max_file), (false, 1));
        let e = options(&opts(&[("max-file", "1")]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "compression cannot be enabled when max file count is 1");
    }

    #[test]
    fn local_logs_rotate_into_gzip_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut logger = open(
            &opts(&[("max-size", "1k"), ("max-file", "3")]),
            dir.path(),
            "c",
        )
        .unwrap();
        for i in 0..100i64 {
            let m = Message {
                stream: crate::logger::STDOUT,
                line: format!("line {i}\n").into_bytes(),
                time_unix_nano: i,
            };
            if logger.wants_rotation() {
                logger.rotate().unwrap();
            }
            logger.log(&m).unwrap();
        }
        logger.flush().unwrap();
        let (all, _) = logger.reader().unwrap().read_existing(None).unwrap();
        assert_eq!(all.last().unwrap().time_unix_nano, 99);
        // Compression runs in the background; the newest rotated file is either form.
        let gz2 = dir.path().join("c-local.log.2.gz");
        assert!(gz2.exists(), "{}", gz2.display());
    }

    #[test]
    fn cache_options_are_split_off_and_checked() {
        let (remote, cache) = split_cache_options(&opts(&[
            ("syslog-format", "rfc5424"),
            ("cache-max-size", "1m"),
        ]))
        .unwrap();
        assert_eq!(remote, opts(&[("syslog-format", "rfc5424")]));
        assert_eq!(cache, Some(opts(&[("max-size", "1m")])));
        let (_, cache) = split_cache_options(&opts(&[("cache-disabled", "true")])).unwrap();
        assert_eq!(cache, None);
        let e = split_cache_options(&opts(&[("cache-nope", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache-nope"), "{e}");
    }
}
