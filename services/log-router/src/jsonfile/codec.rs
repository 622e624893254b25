//! The json-file line format: encoding as Docker writes it, and decoding fast.
use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::logger::{Message, STDERR, STDOUT};

pub(super) fn stream_name(stream: u8) -> &'static str {
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
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
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
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Appends `nanos` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub(super) fn write_time(out: &mut Vec<u8>, nanos: i64) {
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
pub(super) fn parse_time_fast(s: &[u8]) -> Option<i64> {
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

pub(super) fn parse_time(s: &str) -> Option<i64> {
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
pub(super) fn write_json_bytes(out: &mut Vec<u8>, s: &[u8], go_marshal: bool) {
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
pub(super) struct JsonLine {
    #[serde(default)]
    pub(super) log: String,
    #[serde(default)]
    pub(super) stream: String,
    #[serde(default)]
    pub(super) time: String,
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

pub(super) const LO: u64 = 0x0101_0101_0101_0101;
pub(super) const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `v` that is below `n` (exact for the lowest such byte,
/// which is all the callers use).
#[inline]
pub(super) fn bytes_below(v: u64, n: u8) -> u64 {
    v.wrapping_sub(LO * u64::from(n)) & !v & HI
}

#[inline]
pub(super) fn word(s: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"))
}

/// The first `needle` in `hay`, eight bytes at a time.
pub(super) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
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
pub(super) fn find_special(s: &[u8]) -> Option<usize> {
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

pub(super) fn hex4(s: &[u8]) -> Option<u32> {
    let s = s.get(..4)?;
    s.iter()
        .try_fold(0u32, |n, &c| Some(n * 16 + (c as char).to_digit(16)?))
}

/// Reads a JSON string body (after its opening quote) into `out`; returns what follows
/// the closing quote. `None` for anything the fast path does not handle.
pub(super) fn unescape<'a>(mut s: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
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
pub(super) fn skip_string(s: &[u8]) -> Option<&[u8]> {
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
pub(super) fn skip_attrs(mut s: &[u8]) -> Option<&[u8]> {
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
pub(super) fn decode_fast(line: &[u8]) -> Option<Message> {
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
