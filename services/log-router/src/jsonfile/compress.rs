//! gzip of rotated files off the ingest path (see the module above for the order of steps).
use std::{
    fs::{self, File},
    io::{self, BufWriter, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::Mutex,
    thread::JoinHandle,
};

use flate2::{Compression, GzBuilder};

use super::{
    codec::*,
    reader::{tail_lines, CHUNK},
};

/// Compressions running, by log path: the next rotation of a log waits for its own.
pub(super) static PENDING: Mutex<Vec<(PathBuf, JoinHandle<()>)>> = Mutex::new(Vec::new());

/// Waits for the background compressions of the log at `path`.
pub(super) fn wait_compression(path: &Path) {
    let mine: Vec<JoinHandle<()>> = {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        let (mine, others) = std::mem::take(&mut *pending)
            .into_iter()
            .partition(|(p, _)| p == path);
        *pending = others;
        mine.into_iter().map(|(_, h)| h).collect()
    };
    for h in mine {
        let _ = h.join();
    }
}

/// Compresses the rotated files `plains` of the log at `path` on a thread of its own.
pub(super) fn spawn_compression(path: &Path, plains: Vec<PathBuf>) {
    if plains.is_empty() {
        return;
    }
    let handle = std::thread::Builder::new()
        .name("log-compress".to_string())
        .spawn(move || {
            for plain in plains {
                if let Err(e) = compress_file(&plain) {
                    tracing::warn!(file = %plain.display(), error = %e, "cannot compress log");
                }
            }
        });
    match handle {
        Ok(h) => {
            let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
            // Finished ones of logs that never rotate again (closed containers) go.
            pending.retain(|(_, h)| !h.is_finished());
            pending.push((path.to_path_buf(), h));
        }
        Err(e) => tracing::warn!(error = %e, "cannot start log compression"),
    }
}

pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `plain` to `plain.gz`: written aside, synced, renamed in, then `plain` removed.
pub(super) fn compress_file(plain: &Path) -> io::Result<()> {
    let mut input = match File::open(plain) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let gz = with_suffix(plain, ".gz");
    let tmp = with_suffix(plain, ".gz.tmp");
    let result = (|| {
        // As Docker: the last line's time in the header, so `since` can skip the file.
        let len = input.metadata()?.len();
        let mut last = Vec::new();
        tail_lines(&mut input, len, 1, &mut last)?;
        input.seek(SeekFrom::Start(0))?;
        let mut builder = GzBuilder::new();
        if let Some(t) = last
            .first()
            .and_then(|l| Some(decode_line(l)?.time_unix_nano))
        {
            builder = builder.extra(format!("{{\"lastTime\":\"{}\"}}", format_time(t)));
        }
        let out = File::create(&tmp)?;
        let mut enc = builder.write(BufWriter::with_capacity(CHUNK, out), Compression::default());
        io::copy(&mut input, &mut enc)?;
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        fs::rename(&tmp, &gz)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    match fs::remove_file(plain) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub(super) fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
