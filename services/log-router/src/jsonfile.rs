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
use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Read, Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{SystemTime, UNIX_EPOCH},
};

use flate2::{read::MultiGzDecoder, Compression, GzBuilder};

use crate::{
    attrs,
    error::{Error, Result},
    logger::{FileCursor, LogConfig, LogReader, Logger, Message, STDERR, STDOUT},
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
    match v {
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        _ => None,
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
    let mut out = Vec::with_capacity(30);
    write_time(&mut out, nanos);
    String::from_utf8(out).expect("ASCII")
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Appends `nanos` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
fn write_time(out: &mut Vec<u8>, nanos: i64) {
    let nanos = nanos.max(0) as u64;
    let secs = nanos / 1_000_000_000;
    let frac = (nanos % 1_000_000_000) as u32;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let sod = (secs % 86_400) as u32;
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y as u64);
    put(5, 2, u64::from(mo));
    put(8, 2, u64::from(d));
    put(11, 2, u64::from(sod / 3600));
    put(14, 2, u64::from(sod / 60 % 60));
    put(17, 2, u64::from(sod % 60));
    put(20, 9, u64::from(frac));
    out.extend_from_slice(&b);
}

/// RFC 3339 as Docker and this writer produce it: any fraction length, `Z` or a
/// `+HH:MM`/`-HH:MM` offset; `None` otherwise.
fn parse_time_fast(s: &[u8]) -> Option<i64> {
    fn num(s: &[u8]) -> Option<u32> {
        s.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    }
    let (s, offset) = match s.split_last()? {
        (b'Z', rest) => (rest, 0i64),
        _ if s.len() >= 6 && matches!(s[s.len() - 6], b'+' | b'-') && s[s.len() - 3] == b':' => {
            let (rest, off) = s.split_at(s.len() - 6);
            let (h, m) = (num(&off[1..3])?, num(&off[4..6])?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::from(h * 3600 + m * 60);
            (rest, if off[0] == b'-' { -secs } else { secs })
        }
        _ => return None,
    };
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' {
        return None;
    }
    if s[16] != b':' {
        return None;
    }
    thread_local! {
        /// The last date parsed and its day number: a log's lines share their dates.
        static LAST_DATE: std::cell::Cell<([u8; 10], i64)> =
            const { std::cell::Cell::new(([0; 10], 0)) };
    }
    let date: [u8; 10] = s[..10].try_into().expect("10 bytes");
    let (last, last_days) = LAST_DATE.get();
    let days = if last == date && last_days != 0 {
        last_days
    } else {
        let (y, mo, d) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
            return None;
        }
        let days = days_from_civil(i64::from(y), mo, d);
        LAST_DATE.set((date, days));
        days
    };
    let (h, mi, sec) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let nanos = match &s[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            num(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec) - offset;
    secs.checked_mul(1_000_000_000)?
        .checked_add(i64::from(nanos))
}

fn parse_time(s: &str) -> Option<i64> {
    if let Some(t) = parse_time_fast(s.as_bytes()) {
        return Some(t);
    }
    let t: SystemTime = humantime::parse_rfc3339_weak(s).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// Appends one json-file line (with its `\n`) for `msg` to `out`, escaping exactly as
/// Docker's jsonlog does: `"` `\` `\n` `\r` as backslash escapes, other control bytes and
/// `<` `>` `&` as `\u00XX`, U+2028/U+2029 escaped, and each byte of invalid UTF-8 as
/// `\ufffd`.
pub fn encode_line(out: &mut Vec<u8>, msg: &Message) {
    encode_line_with_attrs(out, msg, &[]);
}

/// [`encode_line`] with `attrs`, an encoded JSON object ([`encode_attrs`]; empty for
/// none), written as Docker does between `"stream"` and `"time"`.
pub fn encode_line_with_attrs(out: &mut Vec<u8>, msg: &Message, attrs: &[u8]) {
    out.extend_from_slice(b"{\"log\":");
    write_json_bytes(out, &msg.line, false);
    out.extend_from_slice(b",\"stream\":\"");
    out.extend_from_slice(stream_name(msg.stream).as_bytes());
    if attrs.is_empty() {
        out.extend_from_slice(b"\",\"time\":\"");
    } else {
        out.extend_from_slice(b"\",\"attrs\":");
        out.extend_from_slice(attrs);
        out.extend_from_slice(b",\"time\":\"");
    }
    write_time(out, msg.time_unix_nano);
    out.extend_from_slice(b"\"}\n");
}

/// The extra attributes as Go's `json.Marshal` of a `map[string]string` writes them:
/// keys sorted, HTML-safe escaping, `\t` as a short escape. Empty for no attributes.
pub fn encode_attrs(attrs: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    if attrs.is_empty() {
        return out;
    }
    out.push(b'{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_bytes(&mut out, k.as_bytes(), true);
        out.push(b':');
        write_json_bytes(&mut out, v.as_bytes(), true);
    }
    out.push(b'}');
    out
}

/// A JSON string of `s`; `go_marshal`: `\t` as encoding/json writes it rather than as
/// jsonlog's `\u0009`.
fn write_json_bytes(out: &mut Vec<u8>, s: &[u8], go_marshal: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        let v = chunk.valid().as_bytes();
        let mut run = 0;
        let mut i = 0;
        while i < v.len() {
            let b = v[i];
            let esc: Option<&[u8]> = match b {
                b'"' => Some(b"\\\""),
                b'\\' => Some(b"\\\\"),
                b'\n' => Some(b"\\n"),
                b'\r' => Some(b"\\r"),
                b'\t' if go_marshal => Some(b"\\t"),
                b'<' | b'>' | b'&' | 0..=0x1f => Some(b""),
                0xe2 if v[i + 1] == 0x80 && matches!(v[i + 2], 0xa8 | 0xa9) => Some(b""),
                _ => None,
            };
            let Some(esc) = esc else {
                i += 1;
                continue;
            };
            out.extend_from_slice(&v[run..i]);
            if !esc.is_empty() {
                out.extend_from_slice(esc);
                i += 1;
            } else if b == 0xe2 {
                out.extend_from_slice(if v[i + 2] == 0xa8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
            } else {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                i += 1;
            }
            run = i;
        }
        out.extend_from_slice(&v[run..]);
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

#[derive(serde::Deserialize)]
struct JsonLine {
    #[serde(default)]
    log: String,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    time: String,
}

/// Parses one json-file line (without its `\n`); `None` for a corrupt line. `attrs` are
/// skipped.
pub fn decode_line(line: &[u8]) -> Option<Message> {
    if let Some(m) = decode_fast(line) {
        return Some(m);
    }
    let l: JsonLine = serde_json::from_slice(line).ok()?;
    Some(Message {
        stream: if l.stream == "stderr" { STDERR } else { STDOUT },
        line: l.log.into_bytes(),
        time_unix_nano: parse_time(&l.time).unwrap_or(0),
    })
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `v` that is below `n` (exact for the lowest such byte,
/// which is all the callers use).
#[inline]
fn bytes_below(v: u64, n: u8) -> u64 {
    v.wrapping_sub(LO * u64::from(n)) & !v & HI
}

#[inline]
fn word(s: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"))
}

/// The first `needle` in `hay`, eight bytes at a time.
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let pat = LO * u64::from(needle);
    let mut i = 0;
    while i + 8 <= hay.len() {
        let z = bytes_below(word(hay, i) ^ pat, 1);
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    hay[i..].iter().position(|&b| b == needle).map(|p| i + p)
}

/// The first byte of a JSON string body that is not copied as is: `"`, `\` or a
/// control byte.
fn find_special(s: &[u8]) -> Option<usize> {
    const QUOTE: u64 = LO * b'"' as u64;
    const BACKSLASH: u64 = LO * b'\\' as u64;
    let mut i = 0;
    while i + 8 <= s.len() {
        let v = word(s, i);
        let z = bytes_below(v ^ QUOTE, 1) | bytes_below(v ^ BACKSLASH, 1) | bytes_below(v, 0x20);
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|p| i + p)
}

fn hex4(s: &[u8]) -> Option<u32> {
    let s = s.get(..4)?;
    s.iter()
        .try_fold(0u32, |n, &c| Some(n * 16 + (c as char).to_digit(16)?))
}

/// Reads a JSON string body (after its opening quote) into `out`; returns what follows
/// the closing quote. `None` for anything the fast path does not handle.
fn unescape<'a>(mut s: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
    loop {
        let i = find_special(s)?;
        out.extend_from_slice(&s[..i]);
        match s[i] {
            b'"' => return Some(&s[i + 1..]),
            b'\\' => {
                let esc = *s.get(i + 1)?;
                s = &s[i + 2..];
                let c = match esc {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'u' => {
                        let mut cp = hex4(s)?;
                        s = &s[4..];
                        if (0xd800..0xdc00).contains(&cp) {
                            let lo = hex4(s.strip_prefix(b"\\u")?)?;
                            if !(0xdc00..0xe000).contains(&lo) {
                                return None;
                            }
                            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                            s = &s[6..];
                        }
                        let c = char::from_u32(cp)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        continue;
                    }
                    _ => return None,
                };
                out.push(c);
            }
            _ => return None,
        }
    }
}

/// Skips a JSON string body (after its opening quote); returns what follows it.
fn skip_string(s: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    loop {
        match *s.get(i)? {
            b'"' => return Some(&s[i + 1..]),
            b'\\' => i += 2,
            b if b < 0x20 => return None,
            _ => i += 1,
        }
    }
}

/// Skips Docker's attrs object of strings (after its `{`); returns what follows it.
fn skip_attrs(mut s: &[u8]) -> Option<&[u8]> {
    if let Some(rest) = s.strip_prefix(b"}") {
        return Some(rest);
    }
    loop {
        s = skip_string(s.strip_prefix(b"\"")?)?;
        s = skip_string(s.strip_prefix(b":\"")?)?;
        match s.split_first()? {
            (b',', rest) => s = rest,
            (b'}', rest) => return Some(rest),
            _ => return None,
        }
    }
}

/// The writer's exact format, decoded without serde; `None` sends the line to serde.
fn decode_fast(line: &[u8]) -> Option<Message> {
    let rest = line.strip_prefix(b"{\"log\":\"")?;
    let mut text = Vec::with_capacity(rest.len().saturating_sub(59));
    let rest = unescape(rest, &mut text)?;
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b",\"stream\":\"stdout\"") {
        (STDOUT, r)
    } else {
        (STDERR, rest.strip_prefix(b",\"stream\":\"stderr\"")?)
    };
    let rest = match rest.strip_prefix(b",\"attrs\":{") {
        Some(r) => skip_attrs(r)?,
        None => rest,
    };
    let time = rest.strip_prefix(b",\"time\":\"")?.strip_suffix(b"\"}")?;
    Some(Message {
        stream,
        line: text,
        time_unix_nano: parse_time_fast(time)?,
    })
}

/// Compressions running, by log path: the next rotation of a log waits for its own.
static PENDING: Mutex<Vec<(PathBuf, JoinHandle<()>)>> = Mutex::new(Vec::new());

/// Waits for the background compressions of the log at `path`.
fn wait_compression(path: &Path) {
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
fn spawn_compression(path: &Path, plains: Vec<PathBuf>) {
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

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `plain` to `plain.gz`: written aside, synced, renamed in, then `plain` removed.
fn compress_file(plain: &Path) -> io::Result<()> {
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

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

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

/// Reads a json-file log and its rotated files, plain or compressed.
pub struct JsonFileReader {
    pub path: PathBuf,
    pub max_file: u32,
}

const CHUNK: usize = 64 * 1024;
/// Read size for whole files.
const READ_CHUNK: usize = 1 << 20;

/// The gzip header's extra field of a compressed rotated file.
#[derive(serde::Deserialize)]
struct GzExtra {
    #[serde(rename = "lastTime")]
    last_time: String,
}

/// A rotated file opened for reading.
enum Rotated {
    Plain(File),
    Gzip(File),
}

impl Rotated {
    /// `<path>.n` or, when compressed (or being compressed meanwhile), `<path>.n.gz`.
    fn open(path: &Path, n: u32) -> io::Result<Option<Rotated>> {
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
    fn ends_before(&self, since: i64) -> io::Result<bool> {
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

    fn into_reader(self) -> Box<dyn Read> {
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

/// Appends the last `want` lines of a whole (decompressed) file to `lines`, newest first.
fn tail_lines_in(buf: &[u8], want: usize, lines: &mut Vec<Vec<u8>>) {
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
fn decode_complete(buf: &[u8], since: i64, out: &mut Vec<Message>) -> usize {
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
fn last_line_before(f: &File, since: i64) -> io::Result<bool> {
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
fn decode_stream(
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
                max_file: 3,
                compress: false,
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
            compress: false,
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
            compress: false,
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

#[cfg(test)]
mod bench {
    use super::*;
    use std::time::Instant;

    /// `cargo test --release -p berth-log-router -- --ignored bench`
    #[test]
    #[ignore]
    fn bench_read_1m_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = Options::parse(&BTreeMap::new()).unwrap();
        let mut logger = JsonFileLogger::open(path.clone(), opts).unwrap();
        let t = Instant::now();
        for i in 0..1_000_000i64 {
            let m = Message {
                stream: STDOUT,
                line: format!("line {i}\n").into_bytes(),
                time_unix_nano: 1_795_810_500_000_000_000 + i * 1000,
            };
            logger.log(&m).unwrap();
        }
        logger.flush().unwrap();
        eprintln!("write 1M: {:?}", t.elapsed());
        let reader = logger.reader().unwrap();
        for _ in 0..3 {
            let t = Instant::now();
            let (m, _) = reader.read_existing(None).unwrap();
            assert_eq!(m.len(), 1_000_000);
            eprintln!("read_existing(None): {:?}", t.elapsed());
        }
        let t = Instant::now();
        let direct = JsonFileReader {
            path: path.clone(),
            max_file: 1,
        };
        let (m, _) = direct
            .read_existing_since(None, 1_795_810_500_000_000_000 + 900_000 * 1000)
            .unwrap();
        assert_eq!(m.len(), 100_000);
        eprintln!("read_existing_since(None, last 10%): {:?}", t.elapsed());
        for _ in 0..3 {
            let t = Instant::now();
            let (m, _) = reader.read_existing(Some(10)).unwrap();
            assert_eq!(m.len(), 10);
            eprintln!("read_existing(Some(10)): {:?}", t.elapsed());
        }
    }

    /// Through the router: written by `write_batch`, read by `read_logs` (what the gRPC
    /// service streams from), to see what the router adds to the reader.
    #[test]
    #[ignore]
    fn bench_router_read_1m_lines() {
        use crate::router::{ReadRequest, Router};
        let dir = tempfile::tempdir().unwrap();
        let router = Router::open(dir.path()).unwrap();
        let log = router.ingest_log("c").unwrap();
        let records: Vec<berth_wire::LogRecord> = (0..1_000_000u64)
            .map(|i| berth_wire::LogRecord {
                seq: i,
                time_unix_nano: 1_795_810_500_000_000_000 + i as i64 * 1000,
                stream: STDOUT,
                line: format!("line {i}\n").into_bytes(),
            })
            .collect();
        let t = Instant::now();
        for batch in records.chunks(1000) {
            log.write_batch(batch).unwrap();
        }
        eprintln!("router write 1M: {:?}", t.elapsed());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for tail in [None, Some(10)] {
            let t = Instant::now();
            let n = rt.block_on(async {
                let mut rx = router
                    .read_logs(
                        "c",
                        ReadRequest {
                            tail,
                            ..ReadRequest::default()
                        },
                    )
                    .unwrap();
                let mut n = 0;
                while let Some(m) = rx.recv().await {
                    m.unwrap();
                    n += 1;
                }
                n
            });
            eprintln!(
                "router read_logs(tail {tail:?}): {n} lines in {:?}",
                t.elapsed()
            );
        }
    }

    /// The same lines rotated at 10 MB into compressed files.
    #[test]
    #[ignore]
    fn bench_read_1m_lines_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = Options {
            max_size: Some(10 << 20),
            max_file: 20,
            compress: true,
        };
        let mut logger = JsonFileLogger::open(path.clone(), opts).unwrap();
        let t = Instant::now();
        let mut worst = std::time::Duration::ZERO;
        for i in 0..1_000_000i64 {
            let m = Message {
                stream: STDOUT,
                line: format!("line {i}\n").into_bytes(),
                time_unix_nano: 1_795_810_500_000_000_000 + i * 1000,
            };
            if logger.wants_rotation() {
                let r = Instant::now();
                logger.rotate().unwrap();
                worst = worst.max(r.elapsed());
            }
            logger.log(&m).unwrap();
        }
        logger.flush().unwrap();
        eprintln!(
            "write 1M with rotation: {:?}, slowest rotate {worst:?}",
            t.elapsed()
        );
        wait_compression(&path);
        let reader = logger.reader().unwrap();
        for _ in 0..2 {
            let t = Instant::now();
            let (m, _) = reader.read_existing(None).unwrap();
            assert_eq!(m.len(), 1_000_000);
            eprintln!("read_existing(None) over .gz: {:?}", t.elapsed());
        }
        let t = Instant::now();
        let (m, _) = reader.read_existing(Some(10)).unwrap();
        assert_eq!(m.len(), 10);
        eprintln!("read_existing(Some(10)): {:?}", t.elapsed());
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;
    use std::time::Duration;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn msg(line: &str, t: i64) -> Message {
        Message {
            stream: STDOUT,
            line: line.as_bytes().to_vec(),
            time_unix_nano: t,
        }
    }

    fn write_lines(logger: &mut JsonFileLogger, range: std::ops::Range<i64>) {
        for i in range {
            logger.log(&msg(&format!("line {i}\n"), i)).unwrap();
            if logger.wants_rotation() {
                logger.rotate().unwrap();
            }
        }
        logger.flush().unwrap();
    }

    fn times(msgs: &[Message]) -> Vec<i64> {
        msgs.iter().map(|m| m.time_unix_nano).collect()
    }

    #[test]
    fn word_at_a_time_search_matches_a_plain_one() {
        let specials = b"ab\"\\\x01\x1f\x7f\xff\n <";
        for gap in [1u32, 5, 17] {
            let hay: Vec<u8> = (0..300u32)
                .map(|i| {
                    if i % gap == 0 {
                        specials[(i * 7 % 13 % 11) as usize]
                    } else {
                        b'x'
                    }
                })
                .collect();
            for start in 0..hay.len() {
                for end in start..(start + 40).min(hay.len()) {
                    let h = &hay[start..end];
                    assert_eq!(find_byte(h, b'\n'), h.iter().position(|&b| b == b'\n'));
                    assert_eq!(
                        find_special(h),
                        h.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                    );
                }
            }
        }
        let plain = [b'x'; 40];
        assert_eq!(find_byte(&plain, b'\n'), None);
        assert_eq!(find_special(&plain), None);
    }

    #[test]
    fn since_skips_older_lines_and_files() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c-json.log");
            let o = Options {
                max_size: Some(1000),
                max_file: 5,
                compress,
            };
            let mut logger = JsonFileLogger::open(path.clone(), o).unwrap();
            write_lines(&mut logger, 1..80);
            let reader = JsonFileReader {
                path: path.clone(),
                max_file: 5,
            };
            let (all, _) = reader.read_existing(None).unwrap();
            wait_compression(&path);
            for n in 1..5 {
                let rotated = Rotated::open(&path, n).unwrap().unwrap();
                assert_eq!(matches!(rotated, Rotated::Gzip(_)), compress);
                let mut lines = Vec::new();
                let mut text = Vec::new();
                Rotated::open(&path, n)
                    .unwrap()
                    .unwrap()
                    .into_reader()
                    .read_to_end(&mut text)
                    .unwrap();
                tail_lines_in(&text, 1, &mut lines);
                let last = decode_line(&lines[0]).unwrap().time_unix_nano;
                assert!(!rotated.ends_before(last).unwrap());
                assert!(rotated.ends_before(last + 1).unwrap());
                // The check leaves the file at its start.
                let mut again = Vec::new();
                rotated.into_reader().read_to_end(&mut again).unwrap();
                assert_eq!(again, text);
            }
            for since in [0, 1, 2, 30, 60, 79, 80, 1000] {
                let want: Vec<Message> = all
                    .iter()
                    .filter(|m| m.time_unix_nano >= since)
                    .cloned()
                    .collect();
                let (got, cursor) = reader.read_existing_since(None, since).unwrap();
                assert_eq!(got, want, "since {since}");
                assert_eq!(cursor.pos, fs::metadata(&path).unwrap().len());
                let (got, _) = reader.read_existing_since(Some(10), since).unwrap();
                assert_eq!(got, want[want.len().saturating_sub(10)..]);
            }
        }
        let mut line = Vec::new();
        encode_line(&mut line, &msg("x\",\"time\":\"1\n", 77));
        assert_eq!(line_time(&line[..line.len() - 1]), Some(77));
        assert_eq!(
            line_time(br#"{"time":"2024-01-02T03:04:05Z","log":"a"}"#),
            None
        );
    }

    #[test]
    fn router_restarts_keep_every_line_with_compression() {
        use crate::router::{ReadRequest, Router};
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            driver: NAME.to_string(),
            options: opts(&[
                ("max-size", "2k"),
                ("max-file", "100"),
                ("compress", "true"),
            ]),
            ..LogConfig::default()
        };
        let record = |i: u64| berth_wire::LogRecord {
            seq: i,
            time_unix_nano: i as i64,
            stream: STDOUT,
            line: format!("line {i}\n").into_bytes(),
        };
        for round in 0..3u64 {
            let router = Router::open(dir.path()).unwrap();
            router.open_log("c", config.clone()).unwrap();
            let log = router.get("c").unwrap();
            assert_eq!(log.next_seq(), round * 300);
            let records: Vec<_> = (round * 300..round * 300 + 300).map(record).collect();
            // Resends of the previous round are skipped.
            let from = (round * 300).saturating_sub(5);
            let resent: Vec<_> = (from..round * 300).map(record).collect();
            log.write_batch(&resent).unwrap();
            for batch in records.chunks(7) {
                log.write_batch(batch).unwrap();
            }
        }
        let router = Router::open(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let mut rx = router.read_logs("c", ReadRequest::default()).unwrap();
            let mut got = Vec::new();
            while let Some(m) = rx.recv().await {
                got.push(m.unwrap().time_unix_nano);
            }
            got
        });
        assert_eq!(got, (0..900).collect::<Vec<i64>>());
        let gz = fs::read_dir(dir.path().join("containers").join("c"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".gz")
            })
            .count();
        assert!(gz > 10, "{gz}");
    }

    #[test]
    fn compress_needs_rotation_as_docker_says() {
        let e = Options::parse(&opts(&[("compress", "true")])).unwrap_err();
        assert_eq!(e.to_string(), COMPRESS_NEEDS_MAX_FILE);
        let e = Options::parse(&opts(&[("compress", "true"), ("max-size", "1m")])).unwrap_err();
        assert_eq!(e.to_string(), COMPRESS_NEEDS_MAX_FILE);
        assert!(Options::parse(&opts(&[("compress", "yes")])).is_err());
        let o = Options::parse(&opts(&[
            ("compress", "True"),
            ("max-size", "1m"),
            ("max-file", "2"),
        ]))
        .unwrap();
        assert!(o.compress);
        let o = Options::parse(&opts(&[("compress", "false")])).unwrap();
        assert!(!o.compress);
    }

    #[test]
    fn time_format_matches_humantime_both_ways() {
        for t in [
            0i64,
            5,
            1_795_810_500_123_456_789,
            951_782_400_000_000_000, // 2000-02-29
            4_107_542_399_999_999_999,
            1_709_251_199_000_000_001,
        ] {
            let s = format_time(t);
            let want = humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(t as u64))
                .to_string();
            assert_eq!(s, want);
            assert_eq!(parse_time_fast(s.as_bytes()), Some(t), "{s}");
        }
        assert_eq!(
            parse_time_fast(b"2024-01-02T03:04:05.5Z"),
            parse_time("2024-01-02T03:04:05.500000000Z")
        );
        assert_eq!(
            parse_time_fast(b"2024-01-02T03:04:05Z"),
            Some(1_704_164_645_000_000_000)
        );
        assert_eq!(
            parse_time_fast(b"2024-01-02T03:04:05.25-01:30"),
            Some(1_704_170_045_250_000_000)
        );
        assert_eq!(parse_time_fast(b"2024-13-02T03:04:05Z"), None);
        assert_eq!(
            parse_time("2024-01-02T04:04:05+01:00"),
            Some(1_704_164_645_000_000_000)
        );
    }

    #[test]
    fn fast_decoder_agrees_with_serde() {
        let lines: &[&[u8]] = &[
            b"hi\n",
            b"",
            b"\"q\" \\ <a> & \x01\x1f\t\r\n",
            "h\u{e9}llo \u{2603} \u{1f600} \u{2028}\u{2029}\n".as_bytes(),
            b"\xff\xfe bad",
        ];
        for (i, &line) in lines.iter().enumerate() {
            for attrs in [BTreeMap::new(), opts(&[("a\"b", "c\\d\t<"), ("k", "")])] {
                let m = Message {
                    stream: if i % 2 == 0 { STDOUT } else { STDERR },
                    line: line.to_vec(),
                    time_unix_nano: 1_700_000_000_000_000_000 + i as i64,
                };
                let mut out = Vec::new();
                encode_line_with_attrs(&mut out, &m, &encode_attrs(&attrs));
                let raw = &out[..out.len() - 1];
                let fast = decode_fast(raw).expect("fast path");
                let l: JsonLine = serde_json::from_slice(raw).unwrap();
                assert_eq!(fast.line, l.log.as_bytes());
                assert_eq!(fast.time_unix_nano, parse_time(&l.time).unwrap());
                assert_eq!(fast.stream, m.stream);
                // Valid JSON with attrs as a map of the values given.
                let v: serde_json::Value = serde_json::from_slice(raw).unwrap();
                if !attrs.is_empty() {
                    let got: BTreeMap<String, String> =
                        serde_json::from_value(v["attrs"].clone()).unwrap();
                    assert_eq!(got, attrs);
                }
            }
        }
        // Other shapes go to serde: other key order, escaped slash, surrogate pairs,
        // Go's trimmed fractions, offsets, no log field.
        let other: &[(&str, &str, i64)] = &[
            (
                r#"{"time":"2024-01-02T03:04:05Z","stream":"stderr","log":"x\/y"}"#,
                "x/y",
                1_704_164_645_000_000_000,
            ),
            (
                r#"{"log":"\ud83d\ude00\u00e9","stream":"stdout","time":"2024-01-02T03:04:05.1Z"}"#,
                "\u{1f600}\u{e9}",
                1_704_164_645_100_000_000,
            ),
            (
                r#"{"log":"a","stream":"stdout","time":"2024-01-02T04:04:05+01:00"}"#,
                "a",
                1_704_164_645_000_000_000,
            ),
            (
                r#"{"stream":"stdout","time":"2024-01-02T03:04:05Z"}"#,
                "",
                1_704_164_645_000_000_000,
            ),
        ];
        for (raw, text, t) in other {
            let m = decode_line(raw.as_bytes()).unwrap_or_else(|| panic!("{raw}"));
            assert_eq!((m.line.as_slice(), m.time_unix_nano), (text.as_bytes(), *t));
        }
        assert_eq!(decode_line(b"{\"log\":\"unterminated"), None);
        assert_eq!(decode_line(b"garbage"), None);
    }

    #[test]
    fn attrs_are_written_as_docker_does() {
        let m = Message {
            stream: STDOUT,
            line: b"hi\n".to_vec(),
            time_unix_nano: 1_795_810_500_123_456_789,
        };
        let mut out = Vec::new();
        encode_line_with_attrs(
            &mut out,
            &m,
            &encode_attrs(&opts(&[("b", "2"), ("a", "<1>")])),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log\":\"hi\\n\",\"stream\":\"stdout\",\"attrs\":{\"a\":\"\\u003c1\\u003e\",\"b\":\"2\"},\"time\":\"2026-11-27T20:15:00.123456789Z\"}\n"
        );
        assert!(encode_attrs(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn open_for_resolves_attrs_and_the_reader_ignores_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let config = LogConfig {
            options: opts(&[("labels", "team"), ("env", "MODE")]),
            labels: opts(&[("team", "web"), ("other", "x")]),
            env: vec!["MODE=prod".to_string()],
            ..LogConfig::default()
        };
        let mut logger = open_for(&config, path.clone()).unwrap();
        write_lines(&mut logger, 0..3);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.lines()
                .all(|l| l.contains(r#","attrs":{"MODE":"prod","team":"web"},"time":"#)),
            "{text}"
        );
        let (m, _) = logger.reader().unwrap().read_existing(None).unwrap();
        assert_eq!(m[2], msg("line 2\n", 2));
        let bad = LogConfig {
            options: opts(&[("env-regex", "(")]),
            ..LogConfig::default()
        };
        let e = open_for(&bad, path.clone()).err().unwrap().to_string();
        assert!(e.contains("env-regex"), "{e}");
        assert!(validate(&bad).is_err());
        assert!(validate(&config).is_ok());
    }

    fn compressed_logger(path: &Path, max_file: u32) -> JsonFileLogger {
        let o = Options {
            max_size: Some(1000),
            max_file,
            compress: true,
        };
        JsonFileLogger::open(path.to_path_buf(), o).unwrap()
    }

    #[test]
    fn compressed_rotation_reads_follows_and_counts_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut logger = compressed_logger(&path, 4);
        let reader = logger.reader().unwrap();
        let (_, mut cursor) = reader.read_existing(None).unwrap();
        // About 17 lines a file: one rotation, then follow it.
        write_lines(&mut logger, 0..20);
        let followed = reader.read_new(&mut cursor).unwrap();
        assert_eq!(times(&followed), (0..20).collect::<Vec<_>>());
        write_lines(&mut logger, 20..100);
        let followed = reader.read_new(&mut cursor).unwrap();
        assert_eq!(followed.last().unwrap().time_unix_nano, 99);
        wait_compression(&path);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "c-json.log",
                "c-json.log.1.gz",
                "c-json.log.2.gz",
                "c-json.log.3.gz"
            ]
        );
        // The current file stays plain.
        assert!(fs::read(&path).unwrap().starts_with(b"{\"log\""));
        let (all, _) = reader.read_existing(None).unwrap();
        let n = all.len();
        assert!(n > 40 && n < 100, "{n}");
        assert_eq!(times(&all), (100 - n as i64..100).collect::<Vec<_>>());
        for k in [1, 5, 30, n - 1, n, n + 5] {
            let (tail, _) = reader.read_existing(Some(k)).unwrap();
            assert_eq!(tail, all[n.saturating_sub(k)..], "tail {k}");
        }
        // Mid-compression a reader finds the plain file: reads are the same.
        let gz = JsonFileLogger::rotated_gz(&path, 2);
        let mut plain = Vec::new();
        MultiGzDecoder::new(File::open(&gz).unwrap())
            .read_to_end(&mut plain)
            .unwrap();
        fs::write(JsonFileLogger::rotated(&path, 2), plain).unwrap();
        fs::remove_file(&gz).unwrap();
        let (again, _) = reader.read_existing(None).unwrap();
        assert_eq!(again, all);
    }

    #[test]
    fn crash_leftovers_are_compressed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        {
            let o = Options {
                max_size: Some(1000),
                max_file: 3,
                compress: false,
            };
            let mut logger = JsonFileLogger::open(path.clone(), o).unwrap();
            write_lines(&mut logger, 0..45);
        }
        let (before, _) = JsonFileReader {
            path: path.clone(),
            max_file: 3,
        }
        .read_existing(None)
        .unwrap();
        // Plain `.1` and `.2`; a stale temporary from a crash; `.2` already compressed
        // but not yet removed.
        fs::write(
            with_suffix(&JsonFileLogger::rotated(&path, 1), ".gz.tmp"),
            b"junk",
        )
        .unwrap();
        compress_file(&JsonFileLogger::rotated(&path, 2)).unwrap();
        fs::write(
            JsonFileLogger::rotated(&path, 2),
            fs::read(&path).unwrap(), // wrong content: must not be read
        )
        .unwrap();
        let mut logger = compressed_logger(&path, 3);
        wait_compression(&path);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["c-json.log", "c-json.log.1.gz", "c-json.log.2.gz"]);
        let reader = logger.reader().unwrap();
        let (after, _) = reader.read_existing(None).unwrap();
        assert_eq!(after, before);
        write_lines(&mut logger, 45..60);
        let (after, _) = reader.read_existing(None).unwrap();
        assert_eq!(after.last().unwrap().time_unix_nano, 59);
    }

    #[test]
    fn max_file_two_with_compression_keeps_one_gz() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut logger = compressed_logger(&path, 2);
        write_lines(&mut logger, 0..200);
        wait_compression(&path);
        assert!(JsonFileLogger::rotated_gz(&path, 1).exists());
        assert!(!JsonFileLogger::rotated(&path, 1).exists());
        assert!(!JsonFileLogger::rotated_gz(&path, 2).exists());
        let (all, _) = logger.reader().unwrap().read_existing(None).unwrap();
        assert_eq!(all.last().unwrap().time_unix_nano, 199);
        let first = all[0].time_unix_nano;
        assert_eq!(times(&all), (first..200).collect::<Vec<_>>());
    }
}
