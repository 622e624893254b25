//! Docker's json-file driver: one JSON object per line,
//! `{"log":"hi\n","stream":"stdout","time":"2026-11-27T20:15:00.123456789Z"}`
//! (with `"attrs":{...}` before `"time"` when `labels`/`env` options pick some),
//! with `max-size`/`max-file` rotation (`<id>-json.log.1` is the newest rotated file) and
//! `compress` (rotated files become `<id>-json.log.1.gz`, ...; the current one stays
//! plain).
//!
//! Compression runs on a background thread after the rotation: the full file is renamed
//! to `.1` at once (the ingest path never waits for gzip), then `.1.gz` is written beside
//! it under a temporary name, synced, renamed into place, and only then is `.1` removed,
//! so a reader always finds one of the two. The next rotation of the same log waits for
//! the compression before shifting the files. A crash mid-compression leaves `.1` (and
//! maybe a `.gz.tmp`), which the next open cleans up and compresses.
//!
//! Modules: [`codec`] (the line format), [`compress`] (gzip of rotated files),
//! [`reader`] (reading back across rotated files); options and the writer are here.
mod codec;
mod compress;
mod reader;

pub use codec::*;
pub use reader::*;

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    attrs,
    error::{Error, Result},
    logger::{LogConfig, LogReader, Logger, Message},
    optvalue,
};

use compress::{
    remove_if_exists, rename_if_exists, spawn_compression, wait_compression, with_suffix,
};

pub const NAME: &str = "json-file";

/// Options Docker's json-file driver accepts.
const KNOWN_OPTIONS: &[&str] = &[
    "max-size",
    "max-file",
    "compress",
    "labels",
    "labels-regex",
    "env",
    "env-regex",
    "tag",
];

/// Docker's text for `compress=true` without rotated files to compress.
pub const COMPRESS_NEEDS_MAX_FILE: &str =
    "compress cannot be true when max-file is less than 2 or max-size is not set";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Rotate when the file reaches this many bytes; `None`: never.
    pub max_size: Option<u64>,
    /// Files kept, the current one included (compressed ones count).
    pub max_file: u32,
    /// Gzip rotated files.
    pub compress: bool,
}

/// Go's `strconv.ParseBool`, with `""` as false.
pub fn parse_bool(v: &str) -> Option<bool> {
    if v.is_empty() {
        Some(false)
    } else {
        optvalue::parse_bool(v)
    }
}

impl Options {
    pub fn parse(opts: &BTreeMap<String, String>) -> Result<Options> {
        if let Some(key) = opts.keys().find(|k| !KNOWN_OPTIONS.contains(&k.as_str())) {
            return Err(Error::UnknownOption {
                key: key.clone(),
                driver: NAME.to_string(),
            });
        }
        let max_size = match opts.get("max-size") {
            Some(v) if !v.is_empty() && v != "-1" => Some(
                parse_size(v)
                    .ok_or_else(|| Error::InvalidArgument(format!("invalid max-size: {v:?}")))?,
            ),
            _ => None,
        };
        let max_file = match opts.get("max-file") {
            Some(v) if !v.is_empty() => match v.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "max-file must be a positive number: {v:?}"
                    )))
                }
            },
            _ => 1,
        };
        if max_file > 1 && max_size.is_none() {
            return Err(Error::InvalidArgument(
                "max-file cannot be set when max-size is not set".to_string(),
            ));
        }
        let compress = match opts.get("compress") {
            Some(v) => parse_bool(v).ok_or_else(|| {
                Error::InvalidArgument(format!("error reading compress log option: {v:?}"))
            })?,
            None => false,
        };
        if compress && (max_file < 2 || max_size.is_none()) {
            return Err(Error::InvalidArgument(COMPRESS_NEEDS_MAX_FILE.to_string()));
        }
        Ok(Options {
            max_size,
            max_file,
            compress,
        })
    }
}

/// Checks json-file options as OpenLog should: rotation options and the extra
/// attributes' regexes.
pub fn validate(config: &LogConfig) -> Result<()> {
    Options::parse(&config.options)?;
    attrs::extra_attrs(config)?;
    Ok(())
}

/// The json-file logger `config` asks for, writing `path`: options parsed and the
/// `labels`/`labels-regex`/`env`/`env-regex` attributes resolved.
pub fn open_for(config: &LogConfig, path: PathBuf) -> Result<JsonFileLogger> {
    let opts = Options::parse(&config.options)?;
    let extra = attrs::extra_attrs(config)?;
    let logger = JsonFileLogger::open(path.clone(), opts)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    Ok(logger.with_attrs(&extra))
}

pub use crate::optvalue::parse_size;

/// The json-file [`Logger`].
pub struct JsonFileLogger {
    path: PathBuf,
    opts: Options,
    out: BufWriter<File>,
    size: u64,
    buf: Vec<u8>,
    /// The encoded `"attrs"` object, empty for none.
    attrs: Vec<u8>,
}

impl JsonFileLogger {
    pub fn open(path: PathBuf, opts: Options) -> io::Result<JsonFileLogger> {
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        if opts.compress {
            Self::finish_compression(&path, opts.max_file)?;
        }
        Ok(JsonFileLogger {
            path,
            opts,
            out: BufWriter::with_capacity(64 * 1024, file),
            size,
            buf: Vec::with_capacity(256),
            attrs: Vec::new(),
        })
    }

    /// Writes `attrs` (Docker's extra attributes) in every line.
    pub fn with_attrs(mut self, attrs: &BTreeMap<String, String>) -> JsonFileLogger {
        self.attrs = encode_attrs(attrs);
        self
    }

    /// After a crash or with `compress` newly set: compresses plain rotated files left
    /// over and removes half-written `.gz.tmp` files.
    fn finish_compression(path: &Path, max_file: u32) -> io::Result<()> {
        wait_compression(path);
        let mut plains = Vec::new();
        for n in 1..max_file.max(2) {
            let plain = Self::rotated(path, n);
            remove_if_exists(&with_suffix(&plain, ".gz.tmp"))?;
            if !plain.exists() {
                continue;
            }
            if with_suffix(&plain, ".gz").exists() {
                // The rename of the synced `.gz` happened; only the removal is missing.
                remove_if_exists(&plain)?;
            } else {
                plains.push(plain);
            }
        }
        spawn_compression(path, plains);
        Ok(())
    }

    /// `<path>.n`: the n-th newest rotated file.
    fn rotated(path: &Path, n: u32) -> PathBuf {
        with_suffix(path, &format!(".{n}"))
    }

    /// `<path>.n.gz`: the n-th newest rotated file, compressed.
    fn rotated_gz(path: &Path, n: u32) -> PathBuf {
        with_suffix(path, &format!(".{n}.gz"))
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
}

impl Logger for JsonFileLogger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn log(&mut self, msg: &Message) -> io::Result<()> {
        self.buf.clear();
        encode_line_with_attrs(&mut self.buf, msg, &self.attrs);
        self.out.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<u64> {
        self.out.flush()?;
        Ok(self.size)
    }

    fn wants_rotation(&self) -> bool {
        self.opts.max_size.is_some_and(|max| self.size >= max)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let path = &self.path;
        if self.opts.max_file > 1 {
            // The previous compression must be done before its file moves.
            wait_compression(path);
            let last = self.opts.max_file - 1;
            remove_if_exists(&Self::rotated(path, last))?;
            remove_if_exists(&Self::rotated_gz(path, last))?;
            for n in (2..=last).rev() {
                rename_if_exists(&Self::rotated(path, n - 1), &Self::rotated(path, n))?;
                rename_if_exists(&Self::rotated_gz(path, n - 1), &Self::rotated_gz(path, n))?;
            }
            fs::rename(path, Self::rotated(path, 1))?;
        } else {
            // A new inode rather than a truncation, so followers see the change.
            fs::remove_file(path)?;
        }
        let file = open_append(path)?;
        self.out = BufWriter::with_capacity(64 * 1024, file);
        self.size = 0;
        if self.opts.compress && self.opts.max_file > 1 {
            spawn_compression(path, vec![Self::rotated(path, 1)]);
        }
        Ok(())
    }

    fn recover(&mut self, position: u64) -> io::Result<()> {
        if self.size > position {
            self.out.flush()?;
            self.out.get_ref().set_len(position)?;
            self.size = position;
        }
        Ok(())
    }

    fn reader(&self) -> Option<Arc<dyn LogReader>> {
        Some(Arc::new(JsonFileReader {
            path: self.path.clone(),
            max_file: self.opts.max_file,
        }))
    }
}

#[cfg(test)]
mod tests;
