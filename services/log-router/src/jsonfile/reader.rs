//! Reading a json-file log and its rotated files back.
use std::{
    fs::{self, File},
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use flate2::read::MultiGzDecoder;

use crate::logger::{FileCursor, LogReader, Message};

use super::{codec::*, JsonFileLogger};

/// Reads a json-file log and its rotated files, plain or compressed.
pub struct JsonFileReader {
    pub path: PathBuf,
    pub max_file: u32,
}

pub(super) const CHUNK: usize = 64 * 1024;
/// Read size for whole files.
pub(super) const READ_CHUNK: usize = 1 << 20;

/// The gzip header's extra field of a compressed rotated file.
#[derive(serde::Deserialize)]
pub(super) struct GzExtra {
    #[serde(rename = "lastTime")]
    last_time: String,
}

/// A rotated file opened for reading.
pub(super) enum Rotated {
    Plain(File),
    Gzip(File),
}

impl Rotated {
    /// `<path>.n` or, when compressed (or being compressed meanwhile), `<path>.n.gz`.
    pub(super) fn open(path: &Path, n: u32) -> io::Result<Option<Rotated>> {
        match File::open(JsonFileLogger::rotated(path, n)) {
            Ok(f) => return Ok(Some(Rotated::Plain(f))),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        match File::open(JsonFileLogger::rotated_gz(path, n)) {
            Ok(f) => Ok(Some(Rotated::Gzip(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether every line of the file is older than `since` (plain: its last line;
    /// compressed: the `lastTime` Docker and berth put in the gzip header).
    pub(super) fn ends_before(&self, since: i64) -> io::Result<bool> {
        match self {
            Rotated::Plain(f) => last_line_before(f, since),
            Rotated::Gzip(f) => {
                let mut clone = f.try_clone()?;
                let last = {
                    let gz = MultiGzDecoder::new(io::BufReader::with_capacity(4096, &clone));
                    gz.header()
                        .and_then(|h| h.extra())
                        .and_then(|x| serde_json::from_slice::<GzExtra>(x).ok())
                        .and_then(|x| parse_time(&x.last_time))
                };
                clone.seek(SeekFrom::Start(0))?;
                Ok(last.is_some_and(|t| t < since))
            }
        }
    }

    pub(super) fn into_reader(self) -> Box<dyn Read> {
        match self {
            Rotated::Plain(f) => Box::new(f),
            Rotated::Gzip(f) => {
                Box::new(MultiGzDecoder::new(io::BufReader::with_capacity(CHUNK, f)))
            }
        }
    }
}

impl JsonFileReader {
    /// Rotated files, newest first, that exist: every index below `max-file` (a crash
    /// mid-rotation may leave a gap), then any older ones left by a larger `max-file`.
    fn rotated_files(&self) -> io::Result<Vec<Rotated>> {
        let mut files = Vec::new();
        for n in 1..self.max_file.max(1) {
            if let Some(f) = Rotated::open(&self.path, n)? {
                files.push(f);
            }
        }
        for n in self.max_file.max(1).. {
            match Rotated::open(&self.path, n)? {
                Some(f) => files.push(f),
                None => break,
            }
        }
        Ok(files)
    }
}

/// Appends the last `want` complete lines of `file[..end]` to `lines` (newest first),
/// reading backwards in chunks.
pub(super) fn tail_lines(
    file: &mut File,
    end: u64,
    want: usize,
    lines: &mut Vec<Vec<u8>>,
) -> io::Result<()> {
    let mut pos = end;
    let mut carry: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    while pos > 0 && lines.len() < want {
        let n = (CHUNK as u64).min(pos) as usize;
        pos -= n as u64;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut chunk[..n])?;
        // `carry` holds the (partial) line after this chunk.
        let mut block = chunk[..n].to_vec();
        block.extend_from_slice(&carry);
        let mut stop = block.len();
        // The final `\n` of the block ends the line after it, not a new empty line.
        if block.last() == Some(&b'\n') && carry.is_empty() {
            stop -= 1;
        }
        while lines.len() < want {
            let Some(i) = block[..stop].iter().rposition(|&b| b == b'\n') else {
                break;
            };
            lines.push(block[i + 1..stop].to_vec());
            stop = i;
        }
        carry = block[..stop].to_vec();
    }
    if pos == 0 && !carry.is_empty() && lines.len() < want {
        lines.push(carry);
    }
    Ok(())
}

/// Appends the last `want` lines of a whole (decompressed) file to `lines`, newest first.
pub(super) fn tail_lines_in(buf: &[u8], want: usize, lines: &mut Vec<Vec<u8>>) {
    let buf = buf.strip_suffix(b"\n").unwrap_or(buf);
    if buf.is_empty() {
        return;
    }
    for line in buf.rsplit(|&b| b == b'\n') {
        if lines.len() >= want {
            break;
        }
        lines.push(line.to_vec());
    }
}

/// Decodes the complete lines of `buf` at or after `since`, returning how many bytes
/// were consumed.
pub(super) fn decode_complete(buf: &[u8], since: i64, out: &mut Vec<Message>) -> usize {
    let mut used = 0;
    let mut rest = buf;
    while let Some(i) = find_byte(rest, b'\n') {
        let line = &rest[..i];
        used += i + 1;
        rest = &rest[i + 1..];
        if since > 0 && line_time(line).is_some_and(|t| t < since) {
            continue;
        }
        if let Some(m) = decode_line(line) {
            if m.time_unix_nano >= since {
                out.push(m);
            }
        }
    }
    used
}

/// The time stamp of a line in the writer's format, read from its end without decoding
/// the rest; `None` for other shapes. (`"time"` is the last field and a JSON string
/// cannot hold an unescaped `"`, so the last `,"time":"` is the field.)
pub fn line_time(line: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b",\"time\":\"";
    let body = line.strip_suffix(b"\"}")?;
    // The writer's time stamps are 30 bytes long.
    if let Some(at) = body.len().checked_sub(KEY.len() + 30) {
        if &body[at..at + KEY.len()] == KEY {
            return parse_time_fast(&body[at + KEY.len()..]);
        }
    }
    let tail = &body[body.len().saturating_sub(KEY.len() + 40)..];
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    parse_time_fast(&tail[at + KEY.len()..])
}

/// Whether the last complete line of the plain file `f` is older than `since`, so the
/// file can be skipped.
pub(super) fn last_line_before(f: &File, since: i64) -> io::Result<bool> {
    let mut f = f.try_clone()?;
    let len = f.metadata()?.len();
    let mut lines = Vec::new();
    tail_lines(&mut f, len, 1, &mut lines)?;
    // The clone shares the offset: put it back for the reader.
    f.seek(SeekFrom::Start(0))?;
    let last = lines
        .first()
        .and_then(|l| line_time(l).or_else(|| Some(decode_line(l)?.time_unix_nano)));
    Ok(last.is_some_and(|t| t < since))
}

/// Decodes every complete line `r` yields (up to `limit` bytes) at or after `since`,
/// reading in large chunks; returns the bytes consumed (the end of the last complete
/// line).
pub(super) fn decode_stream(
    r: &mut dyn Read,
    limit: u64,
    since: i64,
    out: &mut Vec<Message>,
    buf: &mut Vec<u8>,
) -> io::Result<u64> {
    let mut r = r.take(limit);
    let mut consumed = 0u64;
    buf.clear();
    loop {
        let have = buf.len();
        buf.resize(have + READ_CHUNK, 0);
        let n = loop {
            match r.read(&mut buf[have..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        buf.truncate(have + n);
        if n == 0 {
            return Ok(consumed);
        }
        let used = decode_complete(buf, since, out);
        consumed += used as u64;
        buf.drain(..used);
    }
}

impl JsonFileReader {
    /// [`LogReader::read_existing`] keeping only lines at or after `since` (Unix
    /// nanoseconds, 0: all) when reading everything: older lines are skipped from their
    /// time stamp alone (read from the end of the line, the log text is not decoded),
    /// and a plain rotated file whose last line is older is not read at all. With
    /// `tail` the last lines are taken first, then filtered, as Docker does.
    pub fn read_existing_since(
        &self,
        tail: Option<usize>,
        since: i64,
    ) -> io::Result<(Vec<Message>, FileCursor)> {
        let mut current = match File::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut msgs = Vec::new();
        let mut end = 0;
        if let Some(f) = current.as_mut() {
            end = f.metadata()?.len();
        }
        match tail {
            Some(want) => {
                let mut lines = Vec::new();
                if let Some(f) = current.as_mut() {
                    // Only complete lines: the end may hold a line being written.
                    let mut buf = vec![0u8; (end as usize).min(CHUNK)];
                    let start = end - buf.len() as u64;
                    f.seek(SeekFrom::Start(start))?;
                    f.read_exact(&mut buf)?;
                    if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
                        end = start + i as u64 + 1;
                    } else if start == 0 {
                        end = 0;
                    }
                    tail_lines(f, end, want, &mut lines)?;
                }
                if lines.len() < want {
                    for rotated in self.rotated_files()? {
                        if lines.len() >= want {
                            break;
                        }
                        match rotated {
                            Rotated::Plain(mut f) => {
                                let len = f.metadata()?.len();
                                tail_lines(&mut f, len, want, &mut lines)?;
                            }
                            gz => {
                                let mut buf = Vec::new();
                                gz.into_reader().read_to_end(&mut buf)?;
                                tail_lines_in(&buf, want, &mut lines);
                            }
                        }
                    }
                }
                msgs.reserve(lines.len());
                msgs.extend(
                    lines
                        .iter()
                        .rev()
                        .filter_map(|l| decode_line(l))
                        .filter(|m| m.time_unix_nano >= since),
                );
            }
            None => {
                let mut buf = Vec::with_capacity(READ_CHUNK * 2);
                for rotated in self.rotated_files()?.into_iter().rev() {
                    if since > 0 && rotated.ends_before(since)? {
                        continue;
                    }
                    let r = &mut *rotated.into_reader();
                    decode_stream(r, u64::MAX, since, &mut msgs, &mut buf)?;
                }
                if let Some(f) = current.as_mut() {
                    f.seek(SeekFrom::Start(0))?;
                    end = decode_stream(f, end, since, &mut msgs, &mut buf)?;
                }
            }
        }
        Ok((
            msgs,
            FileCursor {
                file: current,
                pos: end,
            },
        ))
    }
}

impl LogReader for JsonFileReader {
    fn read_existing(&self, tail: Option<usize>) -> io::Result<(Vec<Message>, FileCursor)> {
        self.read_existing_since(tail, 0)
    }

    fn read_existing_since(
        &self,
        tail: Option<usize>,
        since: i64,
    ) -> io::Result<(Vec<Message>, FileCursor)> {
        JsonFileReader::read_existing_since(self, tail, since)
    }

    fn read_new(&self, cursor: &mut FileCursor) -> io::Result<Vec<Message>> {
        let mut msgs = Vec::new();
        loop {
            if let Some(f) = cursor.file.as_mut() {
                let len = f.metadata()?.len();
                if len < cursor.pos {
                    cursor.pos = 0;
                }
                if len > cursor.pos {
                    let mut buf = vec![0u8; (len - cursor.pos) as usize];
                    f.seek(SeekFrom::Start(cursor.pos))?;
                    f.read_exact(&mut buf)?;
                    cursor.pos += decode_complete(&buf, 0, &mut msgs) as u64;
                }
            }
            // Rotated: once the old file is read to its end, go on with the new one.
            let fresh = match fs::metadata(&self.path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(msgs),
                Err(e) => return Err(e),
            };
            let same = match cursor.file.as_ref() {
                Some(f) => f.metadata()?.ino() == fresh.ino(),
                None => false,
            };
            if same {
                return Ok(msgs);
            }
            cursor.file = Some(File::open(&self.path)?);
            cursor.pos = 0;
        }
    }
}
