//! Framed byte protocols between a container's shim and the services, kept free of
//! dependencies so the shim stays tiny.
//!
//! Every frame is `[kind: u8][len: u32 big-endian][payload: len bytes]`.
//!
//! **Attach** (client ↔ shim, on the shim's attach socket):
//! client sends [`kind::ATTACH`] first (payload: [`AttachFlags`] byte), then
//! [`kind::STDIN`], [`kind::RESIZE`], [`kind::CLOSE_STDIN`]; the shim sends
//! [`kind::STDOUT`], [`kind::STDERR`] and finally [`kind::EXIT`] ([`ExitRecord`]).
//!
//! **Log ingest** (shim → log router, on the router's ingest socket): the shim sends
//! [`kind::HELLO`] (payload: container ID); the router answers [`kind::RESUME`] with the
//! next sequence number it needs; the shim (re)sends [`kind::LOG`] frames ([`LogRecord`],
//! one line each) from there and finally [`kind::END`] (payload: its sequence number,
//! u64) when the container's output has ended. The router answers [`kind::ACK`] (u64:
//! every record up to and including it is written) and the shim drops acknowledged
//! records. After a router restart the shim reconnects and resends what was not
//! acknowledged: no line is lost.
use std::io::{self, Read, Write};

pub mod kind {
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const EXIT: u8 = 3;
    pub const ATTACH: u8 = 0x10;
    pub const STDIN: u8 = 0x11;
    pub const RESIZE: u8 = 0x12;
    pub const CLOSE_STDIN: u8 = 0x13;
    pub const HELLO: u8 = 0x20;
    pub const RESUME: u8 = 0x21;
    pub const LOG: u8 = 0x22;
    pub const ACK: u8 = 0x23;
    pub const END: u8 = 0x24;
}

/// Frames larger than this are a protocol error.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Docker splits longer lines into partial entries of this size.
pub const MAX_LINE: usize = 16 * 1024;
const HEADER: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(kind: u8, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            kind,
            payload: payload.into(),
        }
    }

    /// The encoded frame, header included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.payload.len());
        encode_into(&mut out, self.kind, &self.payload);
        out
    }

    /// The payload as a big-endian u64 (RESUME, ACK, END).
    pub fn as_u64(&self) -> io::Result<u64> {
        let bytes: [u8; 8] = self
            .payload
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid("short u64 payload"))?;
        Ok(u64::from_be_bytes(bytes))
    }
}

pub fn encode_into(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(HEADER + payload.len());
    encode_into(&mut buf, kind, payload);
    w.write_all(&buf)
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut header = [0u8; HEADER];
    let mut filled = 0;
    while filled < HEADER {
        match r.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = payload_len(&header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame {
        kind: header[0],
        payload,
    }))
}

fn payload_len(header: &[u8]) -> io::Result<usize> {
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(invalid("frame larger than 1 MiB"));
    }
    Ok(len)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Incremental decoder for non-blocking readers: push what was read, pop whole frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`. Consumed bytes are dropped only on `push`,
    /// so taking many small frames out of one big read costs no copying of the rest.
    start: usize,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let rest = &self.buf[self.start..];
        if rest.len() < HEADER {
            return Ok(None);
        }
        let len = payload_len(rest)?;
        if rest.len() < HEADER + len {
            return Ok(None);
        }
        let frame = Frame {
            kind: rest[0],
            payload: rest[HEADER..HEADER + len].to_vec(),
        };
        self.start += HEADER + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(frame))
    }

    /// True when no partial frame is buffered.
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }
}

/// Which streams an attach client wants (payload of [`kind::ATTACH`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttachFlags {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl AttachFlags {
    pub fn encode(self) -> [u8; 1] {
        [(self.stdin as u8) | (self.stdout as u8) << 1 | (self.stderr as u8) << 2]
    }

    pub fn decode(payload: &[u8]) -> AttachFlags {
        let b = payload.first().copied().unwrap_or(0b110);
        AttachFlags {
            stdin: b & 1 != 0,
            stdout: b & 2 != 0,
            stderr: b & 4 != 0,
        }
    }
}

/// How the container's process ended (payload of [`kind::EXIT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    /// The exit status, or 128 + signal number when killed by a signal.
    pub exit_code: i32,
    pub oom_killed: bool,
    pub finished_unix_nano: i64,
}

impl ExitRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13);
        out.extend_from_slice(&self.exit_code.to_be_bytes());
        out.push(self.oom_killed as u8);
        out.extend_from_slice(&self.finished_unix_nano.to_be_bytes());
        out
    }

    pub fn decode(p: &[u8]) -> io::Result<ExitRecord> {
        if p.len() < 13 {
            return Err(invalid("short exit record"));
        }
        Ok(ExitRecord {
            exit_code: i32::from_be_bytes(p[0..4].try_into().unwrap()),
            oom_killed: p[4] != 0,
            finished_unix_nano: i64::from_be_bytes(p[5..13].try_into().unwrap()),
        })
    }
}

/// A terminal size (payload of [`kind::RESIZE`]): `[rows u16][cols u16]`, big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WinSize {
    pub rows: u16,
    pub cols: u16,
}

impl WinSize {
    pub fn encode(self) -> [u8; 4] {
        let [r0, r1] = self.rows.to_be_bytes();
        let [c0, c1] = self.cols.to_be_bytes();
        [r0, r1, c0, c1]
    }

    pub fn decode(p: &[u8]) -> io::Result<WinSize> {
        if p.len() < 4 {
            return Err(invalid("short resize payload"));
        }
        Ok(WinSize {
            rows: u16::from_be_bytes([p[0], p[1]]),
            cols: u16::from_be_bytes([p[2], p[3]]),
        })
    }
}

/// Stream numbers in [`LogRecord`].
pub const STREAM_STDOUT: u8 = 1;
pub const STREAM_STDERR: u8 = 2;

/// One line of container output (payload of [`kind::LOG`]): `[seq u64][time i64][stream u8][line]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub seq: u64,
    pub time_unix_nano: i64,
    pub stream: u8,
    /// The line including its `\n`; without one for a partial line (longer than
    /// [`MAX_LINE`], or the last bytes before the stream ended).
    pub line: Vec<u8>,
}

impl LogRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.line.len());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_unix_nano.to_be_bytes());
        out.push(self.stream);
        out.extend_from_slice(&self.line);
        out
    }

    pub fn decode(p: &[u8]) -> io::Result<LogRecord> {
        if p.len() < 17 {
            return Err(invalid("short log record"));
        }
        Ok(LogRecord {
            seq: u64::from_be_bytes(p[0..8].try_into().unwrap()),
            time_unix_nano: i64::from_be_bytes(p[8..16].try_into().unwrap()),
            stream: p[16],
            line: p[17..].to_vec(),
        })
    }
}

/// Splits a byte stream into log lines the way Docker does: at each `\n`, and every
/// [`MAX_LINE`] bytes for longer lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes and returns the complete lines (and full-size partials) they finish.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let take = bytes
                .iter()
                .take(room)
                .position(|&b| b == b'\n')
                .map(|i| i + 1);
            match take {
                Some(n) => {
                    self.pending.extend_from_slice(&bytes[..n]);
                    lines.push(std::mem::take(&mut self.pending));
                    bytes = &bytes[n..];
                }
                None => {
                    let n = room.min(bytes.len());
                    self.pending.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if self.pending.len() == MAX_LINE {
                        lines.push(std::mem::take(&mut self.pending));
                    }
                }
            }
        }
        lines
    }

    /// The unterminated rest, at end of stream.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_reader_and_decoder() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, kind::STDOUT, b"hello\n").unwrap();
        write_frame(
            &mut bytes,
            kind::EXIT,
            &ExitRecord {
                exit_code: 137,
                oom_killed: true,
                finished_unix_nano: 5,
            }
            .encode(),
        )
        .unwrap();
        let mut reader = &bytes[..];
        assert_eq!(
            read_frame(&mut reader).unwrap(),
            Some(Frame::new(kind::STDOUT, b"hello\n".to_vec()))
        );
        let exit = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(ExitRecord::decode(&exit.payload).unwrap().exit_code, 137);
        assert_eq!(read_frame(&mut reader).unwrap(), None);

        let mut decoder = Decoder::default();
        for b in &bytes {
            decoder.push(std::slice::from_ref(b));
        }
        assert_eq!(decoder.next_frame().unwrap().unwrap().payload, b"hello\n");
        assert_eq!(decoder.next_frame().unwrap().unwrap().kind, kind::EXIT);
        assert!(decoder.next_frame().unwrap().is_none());
        assert!(decoder.is_empty());
    }

    #[test]
    fn oversized_frame_is_refused() {
        let mut bytes = vec![kind::LOG];
        bytes.extend_from_slice(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
        assert_eq!(
            read_frame(&mut &bytes[..]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn log_record_round_trips() {
        let rec = LogRecord {
            seq: 9,
            time_unix_nano: -1,
            stream: STREAM_STDERR,
            line: b"x\n".to_vec(),
        };
        assert_eq!(LogRecord::decode(&rec.encode()).unwrap(), rec);
    }

    #[test]
    fn splitter_cuts_at_newlines_and_at_16k() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\nbc"), vec![b"a\n".to_vec()]);
        assert_eq!(s.push(b"d\n\n"), vec![b"bcd\n".to_vec(), b"\n".to_vec()]);
        let long = vec![b'x'; MAX_LINE + 3];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(s.finish(), Some(b"xxx".to_vec()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn attach_flags_round_trip() {
        let f = AttachFlags {
            stdin: true,
            stdout: false,
            stderr: true,
        };
        assert_eq!(AttachFlags::decode(&f.encode()), f);
    }
}
