//! Delivers log records to the log router with resend after reconnect: records stay
//! here until the router acknowledges them.
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_wire::{encode_into, kind, Decoder, LogRecord};

const RETRY: Duration = Duration::from_millis(200);
/// Beyond this much unacknowledged output the shim stops reading the container.
const MAX_RECORDS: usize = 1024;
const MAX_BYTES: usize = 4 << 20;
/// How much encoded output to queue on the socket at once.
const OUT_CHUNK: usize = 256 << 10;

struct Conn {
    sock: UnixStream,
    dec: Decoder,
    out: Vec<u8>,
    /// RESUME received: LOG frames may flow.
    resumed: bool,
    /// The next sequence number to send.
    cursor: u64,
    end_sent: bool,
}

pub struct LogShip {
    id: String,
    path: PathBuf,
    records: VecDeque<LogRecord>,
    bytes: usize,
    next_seq: u64,
    /// The first RESUME of this shim's life sets the numbering: a restarted container
    /// continues the router's sequence instead of colliding with it.
    numbered: bool,
    conn: Option<Conn>,
    next_try: Instant,
    /// END's sequence number, once the container's output has ended.
    end_seq: Option<u64>,
    end_acked: bool,
}

impl LogShip {
    pub fn new(id: String, path: PathBuf) -> LogShip {
        LogShip {
            id,
            path,
            records: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
            numbered: false,
            conn: None,
            next_try: Instant::now(),
            end_seq: None,
            end_acked: false,
        }
    }

    /// A ship that sends nothing (exec output is not logged, as in Docker).
    pub fn disabled() -> LogShip {
        let mut l = LogShip::new(String::new(), PathBuf::new());
        l.end_acked = true;
        l
    }

    pub fn push(&mut self, stream: u8, line: Vec<u8>, time_unix_nano: i64) {
        if self.end_acked {
            return;
        }
        self.bytes += line.len();
        self.records.push_back(LogRecord {
            seq: self.next_seq,
            time_unix_nano,
            stream,
            line,
        });
        self.next_seq += 1;
    }

    /// No more records will come.
    pub fn end(&mut self) {
        self.end_seq.get_or_insert(self.next_seq);
    }

    pub fn end_acked(&self) -> bool {
        self.end_acked
    }

    pub fn over_limit(&self) -> bool {
        self.records.len() >= MAX_RECORDS || self.bytes >= MAX_BYTES
    }

    pub fn unacked(&self) -> usize {
        self.records.len()
    }

    /// The socket to poll and for what.
    pub fn poll_fd(&self) -> Option<(RawFd, i16)> {
        self.conn.as_ref().map(|c| {
            (
                c.sock.as_raw_fd(),
                libc::POLLIN | if c.out.is_empty() { 0 } else { libc::POLLOUT },
            )
        })
    }

    /// How long poll may sleep before a reconnect is due.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        match self.conn {
            None if !self.end_acked => Some(self.next_try.saturating_duration_since(now)),
            _ => None,
        }
    }

    /// Connects when due, queues frames, writes what the socket takes.
    pub fn tick(&mut self, now: Instant) {
        if self.end_acked {
            return;
        }
        if self.conn.is_none() && now >= self.next_try {
            self.connect();
        }
        if let Some(c) = self.conn.as_mut() {
            Self::fill(c, &self.records, self.next_seq, self.end_seq);
            if let Err(e) = Self::flush(c) {
                self.disconnect(now, e);
            }
        }
    }

    fn connect(&mut self) {
        let Ok(sock) = UnixStream::connect(&self.path) else {
            self.next_try = Instant::now() + RETRY;
            return;
        };
        if sock.set_nonblocking(true).is_err() {
            self.next_try = Instant::now() + RETRY;
            return;
        }
        let mut out = Vec::new();
        encode_into(&mut out, kind::HELLO, self.id.as_bytes());
        self.conn = Some(Conn {
            sock,
            dec: Decoder::default(),
            out,
            resumed: false,
            cursor: 0,
            end_sent: false,
        });
    }

    fn disconnect(&mut self, now: Instant, _why: io::Error) {
        self.conn = None;
        self.next_try = now + RETRY;
    }

    fn fill(c: &mut Conn, records: &VecDeque<LogRecord>, next_seq: u64, end_seq: Option<u64>) {
        if !c.resumed {
            return;
        }
        let first = records.front().map_or(next_seq, |r| r.seq);
        c.cursor = c.cursor.max(first);
        while c.cursor < next_seq && c.out.len() < OUT_CHUNK {
            let rec = &records[(c.cursor - first) as usize];
            encode_into(&mut c.out, kind::LOG, &rec.encode());
            c.cursor += 1;
        }
        if let Some(end) = end_seq {
            if c.cursor >= next_seq && !c.end_sent {
                encode_into(&mut c.out, kind::END, &end.to_be_bytes());
                c.end_sent = true;
            }
        }
    }

    fn flush(c: &mut Conn) -> io::Result<()> {
        while !c.out.is_empty() {
            match c.sock.write(&c.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads RESUME/ACK frames from the router.
    pub fn on_readable(&mut self, now: Instant) {
        let Some(c) = self.conn.as_mut() else { return };
        let mut buf = [0u8; 512];
        let mut gone = None;
        loop {
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    gone = Some(io::Error::from(io::ErrorKind::UnexpectedEof));
                    break;
                }
                Ok(n) => c.dec.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    gone = Some(e);
                    break;
                }
            }
        }
        loop {
            let frame = match c.dec.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    gone = Some(e);
                    break;
                }
            };
            let Ok(n) = frame.as_u64() else { continue };
            match frame.kind {
                kind::RESUME => {
                    if !self.numbered {
                        self.numbered = true;
                        renumber(&mut self.records, &mut self.next_seq, &mut self.end_seq, n);
                    }
                    while self.records.front().is_some_and(|r| r.seq < n) {
                        let r = self.records.pop_front().expect("front exists");
                        self.bytes -= r.line.len();
                    }
                    c.resumed = true;
                    c.cursor = n;
                }
                kind::ACK => {
                    while self.records.front().is_some_and(|r| r.seq <= n) {
                        let r = self.records.pop_front().expect("front exists");
                        self.bytes -= r.line.len();
                    }
                    if self.end_seq.is_some_and(|e| n >= e) && c.end_sent {
                        self.end_acked = true;
                    }
                }
                _ => {}
            }
        }
        if let Some(e) = gone {
            self.disconnect(now, e);
        } else {
            self.tick(now);
        }
    }
}

/// Shifts the records held before the first RESUME so they start at `start`.
fn renumber(
    records: &mut VecDeque<LogRecord>,
    next_seq: &mut u64,
    end_seq: &mut Option<u64>,
    start: u64,
) {
    let first = records.front().map_or(*next_seq, |r| r.seq);
    for r in records.iter_mut() {
        r.seq = r.seq - first + start;
    }
    *next_seq = *next_seq - first + start;
    if let Some(e) = end_seq.as_mut() {
        *e = *e - first + start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_resume_renumbers_and_acks_drop_records() {
        let mut records = VecDeque::new();
        for seq in 0..3 {
            records.push_back(LogRecord {
                seq,
                time_unix_nano: 0,
                stream: 1,
                line: b"x\n".to_vec(),
            });
        }
        let (mut next, mut end) = (3, Some(3));
        renumber(&mut records, &mut next, &mut end, 10);
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![10, 11, 12]
        );
        assert_eq!((next, end), (13, Some(13)));
    }
}
