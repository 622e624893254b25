//! Docker's json-file driver: one JSON object per line,
//! `{"log":"hi\n","stream":"stdout","time":"2026-11-27T20:15:00.123456789Z"}`,
//! with `max-size`/`max-file` rotation (`<id>-json.log.1` is the newest rotated file).
use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Read, Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    error::{Error, Result},
    logger::{FileCursor, LogReader, Logger, Message, STDERR, STDOUT},
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Rotate when the file reaches this many bytes; `None`: never.
    pub max_size: Option<u64>,
    /// Files kept, the current one included.
    pub max_file: u32,
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
        if let Some(v) = opts.get("compress") {
            if !matches!(v.as_str(), "" | "true" | "false" | "1" | "0") {
                return Err(Error::InvalidArgument(format!(
                    "error reading compress log option: {v:?}"
                )));
            }
        }
        Ok(Options { max_size, max_file })
    }
}

/// Docker's RAMInBytes: `123`, `10k`, `10m`, `1.5g`, `10MiB`, binary units.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    let n = num * mult as f64;
    (n >= 1.0).then_some(n as u64)
}

fn stream_name(stream: u8) -> &'static str {
    if stream == STDERR {
        "stderr"
    } else {
        "stdout"
    }
}

/// `nanos` since the epoch as RFC 3339 with nanoseconds, UTC.
pub fn format_time(nanos: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64);
    humantime::format_rfc3339_nanos(t).to_string()
}

fn parse_time(s: &str) -> Option<i64> {
    let t: SystemTime = humantime::parse_rfc3339_weak(s).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// Appends one json-file line (with its `\n`) for `msg` to `out`, escaping exactly as
/// Docker's jsonlog does: `"` `\` `\n` `\r` as backslash escapes, other control bytes and
/// `<` `>` `&` as `\u00XX`, U+2028/U+2029 escaped, and each byte of invalid UTF-8 as
/// `\ufffd`.
pub fn encode_line(out: &mut Vec<u8>, msg: &Message) {
    out.extend_from_slice(b"{\"log\":");
    write_json_bytes(out, &msg.line);
    out.extend_from_slice(b",\"stream\":\"");
    out.extend_from_slice(stream_name(msg.stream).as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(format_time(msg.time_unix_nano).as_bytes());
    out.extend_from_slice(b"\"}\n");
}

fn write_json_bytes(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' => {
                    out.push(b'\\');
                    out.push(c as u8);
                }
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '<' | '>' | '&' | '\0'..='\x1f' => {
                    let b = c as u8;
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

#[derive(serde::Deserialize)]
struct JsonLine {
    log: String,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    time: String,
}

/// Parses one json-file line (without its `\n`); `None` for a corrupt line.
pub fn decode_line(line: &[u8]) -> Option<Message> {
    let l: JsonLine = serde_json::from_slice(line).ok()?;
    Some(Message {
        stream: if l.stream == "stderr" { STDERR } else { STDOUT },
        line: l.log.into_bytes(),
        time_unix_nano: parse_time(&l.time).unwrap_or(0),
    })
}

/// The json-file [`Logger`].
pub struct JsonFileLogger {
    path: PathBuf,
    opts: Options,
    out: BufWriter<File>,
    size: u64,
    buf: Vec<u8>,
}

impl JsonFileLogger {
    pub fn open(path: PathBuf, opts: Options) -> io::Result<JsonFileLogger> {
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(JsonFileLogger {
            path,
            opts,
            out: BufWriter::with_capacity(64 * 1024, file),
            size,
            buf: Vec::with_capacity(256),
        })
    }

    /// `<path>.n`: the n-th newest rotated file.
    fn rotated(path: &Path, n: u32) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        PathBuf::from(s)
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
        encode_line(&mut self.buf, msg);
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
        if self.opts.max_file > 1 {
            for n in (1..self.opts.max_file).rev() {
                let from = if n == 1 {
                    self.path.clone()
                } else {
                    Self::rotated(&self.path, n - 1)
                };
                match fs::rename(&from, Self::rotated(&self.path, n)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        } else {
            // A new inode rather than a truncation, so followers see the change.
            fs::remove_file(&self.path)?;
        }
        let file = open_append(&self.path)?;
        self.out = BufWriter::with_capacity(64 * 1024, file);
        self.size = 0;
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

/// Reads a json-file log and its rotated files.
pub struct JsonFileReader {
    pub path: PathBuf,
    pub max_file: u32,
}

const CHUNK: usize = 64 * 1024;

impl JsonFileReader {
    /// Rotated files, newest first, that exist.
    fn rotated_files(&self) -> Vec<PathBuf> {
        (1..self.max_file.max(1))
            .map(|n| JsonFileLogger::rotated(&self.path, n))
            .chain((self.max_file.max(1)..).map(|n| JsonFileLogger::rotated(&self.path, n)))
            .take_while(|p| p.exists())
            .collect()
    }
}

/// Appends the last `want` complete lines of `file[..end]` to `lines` (newest first),
/// reading backwards in chunks.
fn tail_lines(file: &mut File, end: u64, want: usize, lines: &mut Vec<Vec<u8>>) -> io::Result<()> {
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

/// Decodes the complete lines of `buf`, returning how many bytes were consumed.
fn decode_complete(buf: &[u8], out: &mut Vec<Message>) -> usize {
    let mut used = 0;
    for line in buf.split_inclusive(|&b| b == b'\n') {
        if line.last() != Some(&b'\n') {
            break;
        }
        used += line.len();
        if let Some(m) = decode_line(&line[..line.len() - 1]) {
            out.push(m);
        }
    }
    used
}

impl LogReader for JsonFileReader {
    fn read_existing(&self, tail: Option<usize>) -> io::Result<(Vec<Message>, FileCursor)> {
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
                for path in self.rotated_files() {
                    if lines.len() >= want {
                        break;
                    }
                    let mut f = File::open(&path)?;
                    let len = f.metadata()?.len();
                    tail_lines(&mut f, len, want, &mut lines)?;
                }
                msgs.extend(lines.iter().rev().filter_map(|l| decode_line(l)));
            }
            None => {
                for path in self.rotated_files().iter().rev() {
                    let buf = fs::read(path)?;
                    decode_complete(&buf, &mut msgs);
                }
                if let Some(f) = current.as_mut() {
                    let mut buf = vec![0u8; end as usize];
                    f.seek(SeekFrom::Start(0))?;
                    f.read_exact(&mut buf)?;
                    end = decode_complete(&buf, &mut msgs) as u64;
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
                    cursor.pos += decode_complete(&buf, &mut msgs) as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(line: &[u8], stream: u8, t: i64) -> Message {
        Message {
            stream,
            line: line.to_vec(),
            time_unix_nano: t,
        }
    }

    fn encoded(line: &[u8]) -> String {
        let mut out = Vec::new();
        encode_line(&mut out, &msg(line, STDOUT, 1_795_810_500_123_456_789));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn line_format_is_dockers() {
        assert_eq!(
            encoded(b"hi\n"),
            "{\"log\":\"hi\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-27T20:15:00.123456789Z\"}\n"
        );
        let mut out = Vec::new();
        encode_line(&mut out, &msg(b"x", STDERR, 5));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log\":\"x\",\"stream\":\"stderr\",\"time\":\"1970-01-01T00:00:00.000000005Z\"}\n"
        );
    }

    #[test]
    fn escaping_matches_docker() {
        let line = encoded(b"a\"b\\c\r\t\x01\x1f<>&\xe2\x80\xa8\n");
        assert!(
            line.starts_with(r#"{"log":"a\"b\\c\r\u0009\u0001\u001f\u003c\u003e\u0026\u2028\n","#),
            "{line}"
        );
        // Each invalid byte becomes one U+FFFD, as Go's decoder yields one per byte.
        let line = encoded(b"\xff\xe2\x82a\xc3\xa9");
        assert!(
            line.starts_with(r#"{"log":"\ufffd\ufffd\ufffdaé","#),
            "{line}"
        );
    }

    #[test]
    fn lines_round_trip() {
        for line in [
            &b"hi\n"[..],
            b"",
            b"\"quoted\" <x> & \x07\r\n",
            "héllo ☃\n".as_bytes(),
        ] {
            let m = msg(line, STDERR, 1_700_000_000_000_000_001);
            let mut out = Vec::new();
            encode_line(&mut out, &m);
            assert_eq!(decode_line(&out[..out.len() - 1]), Some(m));
        }
        let mut out = Vec::new();
        encode_line(&mut out, &msg(b"\xffa", STDOUT, 0));
        assert_eq!(
            decode_line(&out[..out.len() - 1]).unwrap().line,
            "\u{fffd}a".as_bytes()
        );
    }

    #[test]
    fn options_are_validated_with_dockers_text() {
        let opts = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = Options::parse(&opts(&[("x", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown log opt 'x' for json-file log driver"
        );
        let o = Options::parse(&opts(&[
            ("max-size", "10m"),
            ("max-file", "3"),
            ("tag", "t"),
        ]))
        .unwrap();
        assert_eq!(
            o,
            Options {
                max_size: Some(10 << 20),
                max_file: 3
            }
        );
        assert!(Options::parse(&opts(&[("max-file", "3")])).is_err());
        assert!(Options::parse(&opts(&[("max-size", "ten")])).is_err());
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("100"), Some(100));
    }

    fn write_lines(logger: &mut JsonFileLogger, range: std::ops::Range<i64>) {
        for i in range {
            logger
                .log(&msg(format!("line {i}\n").as_bytes(), STDOUT, i))
                .unwrap();
            if logger.wants_rotation() {
                logger.rotate().unwrap();
            }
        }
        logger.flush().unwrap();
    }

    fn texts(msgs: &[Message]) -> Vec<String> {
        msgs.iter()
            .map(|m| String::from_utf8(m.line.clone()).unwrap())
            .collect()
    }

    #[test]
    fn tail_reads_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = Options {
            max_size: None,
            max_file: 1,
        };
        let mut logger = JsonFileLogger::open(path.clone(), opts).unwrap();
        // Enough lines to span several 64 KiB chunks.
        write_lines(&mut logger, 0..5000);
        let reader = logger.reader().unwrap();
        let (m, _) = reader.read_existing(Some(3)).unwrap();
        assert_eq!(texts(&m), ["line 4997\n", "line 4998\n", "line 4999\n"]);
        let (m, _) = reader.read_existing(Some(2500)).unwrap();
        assert_eq!(m.len(), 2500);
        assert_eq!(m[0].time_unix_nano, 2500);
        let (m, _) = reader.read_existing(Some(10_000)).unwrap();
        assert_eq!(m.len(), 5000);
        let (m, _) = reader.read_existing(Some(0)).unwrap();
        assert!(m.is_empty());
        let (m, _) = reader.read_existing(None).unwrap();
        assert_eq!(m.len(), 5000);
        // A partial line being written is not returned, and a cursor picks it up later.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"log\":\"par")
            .unwrap();
        let (m, mut cursor) = reader.read_existing(Some(1)).unwrap();
        assert_eq!(texts(&m), ["line 4999\n"]);
        assert!(reader.read_new(&mut cursor).unwrap().is_empty());
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"tial\\n\",\"stream\":\"stderr\",\"time\":\"1970-01-01T00:00:01Z\"}\n")
            .unwrap();
        let m = reader.read_new(&mut cursor).unwrap();
        assert_eq!(texts(&m), ["partial\n"]);
        assert_eq!(m[0].stream, STDERR);
        assert_eq!(m[0].time_unix_nano, 1_000_000_000);
    }

    #[test]
    fn rotation_keeps_max_file_files_and_readers_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = Options {
            max_size: Some(1000),
            max_file: 3,
        };
        let mut logger = JsonFileLogger::open(path.clone(), opts).unwrap();
        let reader = logger.reader().unwrap();
        let (_, mut cursor) = reader.read_existing(None).unwrap();
        write_lines(&mut logger, 0..100);
        assert!(JsonFileLogger::rotated(&path, 2).exists());
        assert!(!JsonFileLogger::rotated(&path, 3).exists());
        // The follower had the first file open: it reads on through the rotations it
        // can still reach (files deleted meanwhile are gone, as with Docker).
        let followed = reader.read_new(&mut cursor).unwrap();
        assert!(!followed.is_empty());
        let (all, _) = reader.read_existing(None).unwrap();
        let n = all.len();
        assert!(n < 100 && n > 20, "{n}");
        assert_eq!(all.last().unwrap().time_unix_nano, 99);
        assert_eq!(all[0].time_unix_nano, 100 - n as i64);
        let (tail, _) = reader.read_existing(Some(n - 1)).unwrap();
        assert_eq!(tail, all[1..]);
    }
}
