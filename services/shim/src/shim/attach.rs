//! Attach clients: each gets the output from when it attached and may send stdin.
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use berth_wire::{encode_into, AttachFlags, Decoder, Frame};

/// A client that reads slower than this much buffered output is dropped, so one stuck
/// client cannot grow the shim without bound.
const MAX_BUFFERED: usize = 8 << 20;

pub struct Client {
    sock: UnixStream,
    dec: Decoder,
    out: Vec<u8>,
    pub flags: Option<AttachFlags>,
    pub dead: bool,
}

impl Client {
    pub fn new(sock: UnixStream) -> io::Result<Client> {
        sock.set_nonblocking(true)?;
        Ok(Client {
            sock,
            dec: Decoder::default(),
            out: Vec::new(),
            flags: None,
            dead: false,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Queues output for a client that asked for this stream.
    pub fn send(&mut self, kind: u8, payload: &[u8]) {
        let wanted = match (self.flags, kind) {
            (Some(f), berth_wire::kind::STDOUT) => f.stdout,
            (Some(f), berth_wire::kind::STDERR) => f.stderr,
            (Some(_), _) => true,
            (None, _) => false,
        };
        if !wanted || self.dead {
            return;
        }
        encode_into(&mut self.out, kind, payload);
        if self.out.len() > MAX_BUFFERED {
            self.dead = true;
        }
    }

    pub fn flush(&mut self) {
        while !self.out.is_empty() && !self.dead {
            match self.sock.write(&self.out) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EPIPE and friends: the client left; the shim goes on.
                Err(_) => self.dead = true,
            }
        }
        if self.out.is_empty() && self.out.capacity() > 64 << 10 {
            self.out = Vec::new();
        }
    }

    /// Reads what the client sent and returns its whole frames.
    pub fn read_frames(&mut self) -> Vec<Frame> {
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => self.dec.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        let mut frames = Vec::new();
        loop {
            match self.dec.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        frames
    }
}
