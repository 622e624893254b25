//! Attach: relays between a gRPC attach stream and the shim's attach socket (wire frames),
//! starting the container first when asked, and watching stdin for the detach keys.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use berth_proto::supervisor::v1::{
    attach_input, attach_output, AttachInput, AttachOutput, AttachStart, ExitStatus,
};
use berth_wire::{kind, AttachFlags, Decoder, ExitRecord, Frame, WinSize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{unix::OwnedWriteHalf, UnixStream},
    sync::{mpsc, oneshot},
};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::{
    error::{Error, Result},
    lifecycle::{exit_status, Supervisor},
    watch as pidwatch,
};

/// Where the final exit status comes from.
#[derive(Debug, Clone)]
pub(crate) enum ExitSource {
    /// The container's record (once it says exited).
    Container(String),
    /// An exec: its EXIT frame, else `<bundle>/exec-<id>.json`.
    Exec { status_file: PathBuf, shim_pid: i32 },
}

impl ExitSource {
    /// Publishes a `container` event about the attached container (`detach`, `resize`); an
    /// exec's attach publishes none, as Docker has no such events for execs.
    fn publish(&self, sup: &Supervisor, action: &str, extra: &[(&str, String)]) {
        if let ExitSource::Container(id) = self {
            if let Ok(rec) = sup.record(id) {
                sup.publish(&rec, action, extra);
            }
        }
    }

    async fn resolve(&self, sup: &Supervisor, frame: Option<ExitStatus>) -> Result<ExitStatus> {
        match self {
            ExitSource::Container(id) => match sup.exit_status_after_end(id).await {
                Ok(e) => Ok(e),
                Err(e) => frame.ok_or(e),
            },
            ExitSource::Exec {
                status_file,
                shim_pid,
            } => {
                if let Some(f) = frame {
                    return Ok(f);
                }
                let e =
                    pidwatch::read_exit_file(status_file, *shim_pid, Duration::from_secs(5)).await;
                Ok(ExitStatus {
                    exit_code: e.exit_code,
                    oom_killed: e.oom_killed,
                    finished_at: e.finished_at,
                })
            }
        }
    }
}

pub type Output = Result<AttachOutput, Status>;

/// Docker's default detach sequence: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[16, 17];

/// Parses Docker's detach-keys format (`ctrl-p,ctrl-q`, `a,ctrl-@`); `None` for "none".
pub fn parse_detach_keys(spec: &str) -> Result<Option<Vec<u8>>> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(Some(DEFAULT_DETACH_KEYS.to_vec()));
    }
    if spec.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let invalid = || Error::InvalidArgument(format!("Invalid detach keys ({spec}) provided"));
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let lower = part.to_ascii_lowercase();
        if let Some(key) = lower.strip_prefix("ctrl-") {
            let mut chars = key.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(invalid());
            };
            let code = match c {
                'a'..='z' => c as u8 - b'a' + 1,
                '@' => 0,
                '[' => 27,
                '\\' => 28,
                ']' => 29,
                '^' => 30,
                '_' => 31,
                _ => return Err(invalid()),
            };
            out.push(code);
        } else {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii() => out.push(c as u8),
                _ => return Err(invalid()),
            }
        }
    }
    Ok(Some(out))
}

/// Watches a byte stream for the detach sequence, holding back a partial match.
#[derive(Debug)]
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> DetachScanner {
        DetachScanner { keys, matched: 0 }
    }

    /// The bytes to forward, and whether the sequence completed (the rest is dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            if self.matched > 0 {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                    continue;
                }
            }
            out.push(b);
        }
        (out, false)
    }
}

fn flags_of(start: &AttachStart) -> AttachFlags {
    if !start.stdin && !start.stdout && !start.stderr {
        return AttachFlags {
            stdin: false,
            stdout: true,
            stderr: true,
        };
    }
    AttachFlags {
        stdin: start.stdin,
        stdout: start.stdout,
        stderr: start.stderr,
    }
}

pub(crate) async fn connect(socket: &Path, flags: AttachFlags) -> std::io::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket).await?;
    stream
        .write_all(&Frame::new(kind::ATTACH, flags.encode().to_vec()).encode())
        .await?;
    Ok(stream)
}

fn exit_output(e: ExitStatus) -> AttachOutput {
    AttachOutput {
        output: Some(attach_output::Output::Exit(e)),
    }
}

fn one_message(msg: Output) -> mpsc::Receiver<Output> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(msg);
    rx
}

/// Sets up an attach described by `start` and returns the output stream; `input` carries
/// the rest of the client's messages.
pub async fn attach<S>(
    sup: &Supervisor,
    start: AttachStart,
    input: S,
) -> Result<mpsc::Receiver<Output>>
where
    S: Stream<Item = Result<AttachInput, Status>> + Send + Unpin + 'static,
{
    let flags = flags_of(&start);
    let detach_keys = parse_detach_keys(&start.detach_keys)?;
    let id = sup.resolve(&start.id)?.id;
    let socket = sup.attach_socket_path(&id);

    let stream = if start.start {
        let _guard = sup.lock_container(&id).await;
        let rec = sup.record(&id)?;
        if rec.is_running() {
            match connect(&socket, flags).await {
                Ok(s) => {
                    sup.publish(&rec, "attach", &[]);
                    s
                }
                Err(_) => {
                    return Ok(one_message(Ok(exit_output(
                        sup.exit_status_after_end(&id).await?,
                    ))))
                }
            }
        } else {
            // Docker's order: the client attaches, then the container starts.
            sup.publish(&rec, "attach", &[]);
            let rec = sup.start_locked(rec, true).await?;
            match connect(&socket, flags).await {
                Ok(s) => s,
                Err(e) => {
                    // The process waits for an attach that will never come: end it.
                    let _ = sup.signal_running(&rec, libc::SIGKILL);
                    return Err(Error::Internal(format!(
                        "attach to container {id} at {}: {e}",
                        socket.display()
                    )));
                }
            }
        }
    } else {
        let rec = sup.record(&id)?;
        if !rec.is_running() {
            return Err(Error::NotRunning(id));
        }
        match connect(&socket, flags).await {
            Ok(s) => {
                sup.publish(&rec, "attach", &[]);
                s
            }
            // The socket vanished with the container: report how it ended.
            Err(_) => {
                let exit = match sup.exit_status_after_end(&id).await {
                    Ok(e) => e,
                    Err(_) => exit_status(&sup.record(&id)?),
                };
                return Ok(one_message(Ok(exit_output(exit))));
            }
        }
    };

    Ok(relay(
        sup,
        ExitSource::Container(id),
        stream,
        flags.stdin,
        detach_keys,
        input,
    ))
}

/// Relays between an attach connection to a shim and the gRPC streams.
pub(crate) fn relay<S>(
    sup: &Supervisor,
    source: ExitSource,
    stream: UnixStream,
    stdin: bool,
    detach_keys: Option<Vec<u8>>,
    input: S,
) -> mpsc::Receiver<Output>
where
    S: Stream<Item = Result<AttachInput, Status>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel::<Output>(64);
    let (read, write) = stream.into_split();
    let (detach_tx, detach_rx) = oneshot::channel::<()>();
    let scanner = if stdin {
        detach_keys.map(DetachScanner::new)
    } else {
        None
    };
    let input_task = tokio::spawn(relay_input(
        input,
        write,
        scanner,
        stdin,
        detach_tx,
        (sup.clone(), source.clone()),
    ));
    let sup = sup.clone();
    tokio::spawn(async move {
        relay_output(&sup, &source, read, tx, detach_rx).await;
        input_task.abort();
    });
    rx
}

async fn write_frame(w: &mut OwnedWriteHalf, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    for chunk in payload
        .chunks(berth_wire::MAX_PAYLOAD)
        .chain(payload.is_empty().then_some(&[][..]))
    {
        w.write_all(&Frame::new(kind, chunk.to_vec()).encode())
            .await?;
    }
    Ok(())
}

async fn relay_input<S>(
    mut input: S,
    mut w: OwnedWriteHalf,
    mut scanner: Option<DetachScanner>,
    stdin: bool,
    mut detach: oneshot::Sender<()>,
    (sup, source): (Supervisor, ExitSource),
) where
    S: Stream<Item = Result<AttachInput, Status>> + Send + Unpin + 'static,
{
    while let Some(msg) = input.next().await {
        let msg = match msg {
            Ok(AttachInput { input: Some(m) }) => m,
            Ok(_) => continue,
            Err(_) => break,
        };
        let res = match msg {
            attach_input::Input::Stdin(bytes) if stdin => {
                let (fwd, detached) = match scanner.as_mut() {
                    Some(s) => s.feed(&bytes),
                    None => (bytes, false),
                };
                let res = if fwd.is_empty() {
                    Ok(())
                } else {
                    write_frame(&mut w, kind::STDIN, &fwd).await
                };
                if detached {
                    // Keep the connection open until the output side has seen this.
                    let _ = std::mem::replace(&mut detach, oneshot::channel().0).send(());
                    break;
                }
                res
            }
            attach_input::Input::Stdin(_) => Ok(()),
            attach_input::Input::Resize(r) => {
                let size = WinSize {
                    rows: r.rows.min(u16::MAX as u32) as u16,
                    cols: r.cols.min(u16::MAX as u32) as u16,
                };
                let res = write_frame(&mut w, kind::RESIZE, &size.encode()).await;
                if res.is_ok() {
                    let extra = [
                        ("height", size.rows.to_string()),
                        ("width", size.cols.to_string()),
                    ];
                    source.publish(&sup, "resize", &extra);
                }
                res
            }
            attach_input::Input::CloseStdin(true) if stdin => {
                write_frame(&mut w, kind::CLOSE_STDIN, &[]).await
            }
            attach_input::Input::CloseStdin(_) | attach_input::Input::Start(_) => Ok(()),
        };
        if res.is_err() {
            break;
        }
    }
    // Keep the write half (and so the connection) open until the output side ends.
    std::future::pending::<()>().await;
}

fn rfc3339_from_nanos(nanos: i64) -> String {
    let t = if nanos >= 0 {
        std::time::UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        std::time::UNIX_EPOCH
    };
    humantime::format_rfc3339_nanos(t).to_string()
}

async fn relay_output(
    sup: &Supervisor,
    source: &ExitSource,
    mut read: tokio::net::unix::OwnedReadHalf,
    tx: mpsc::Sender<Output>,
    mut detach: oneshot::Receiver<()>,
) {
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut detach_armed = true;
    'outer: loop {
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let out = match frame.kind {
                        kind::STDOUT => attach_output::Output::Stdout(frame.payload),
                        kind::STDERR => attach_output::Output::Stderr(frame.payload),
                        kind::EXIT => {
                            let exit = match ExitRecord::decode(&frame.payload) {
                                Ok(r) => ExitStatus {
                                    exit_code: r.exit_code,
                                    oom_killed: r.oom_killed,
                                    finished_at: rfc3339_from_nanos(r.finished_unix_nano),
                                },
                                Err(_) => break 'outer,
                            };
                            // Report the exit once it is recorded, so that a caller that
                            // removes or inspects the container next sees it exited.
                            let exit = source
                                .resolve(sup, Some(exit.clone()))
                                .await
                                .unwrap_or(exit);
                            let _ = tx.send(Ok(exit_output(exit))).await;
                            return;
                        }
                        _ => continue,
                    };
                    if tx
                        .send(Ok(AttachOutput { output: Some(out) }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
        tokio::select! {
            biased;
            res = &mut detach, if detach_armed => {
                if res.is_ok() {
                    source.publish(sup, "detach", &[]);
                    let _ = tx.send(Ok(AttachOutput { output: Some(attach_output::Output::Detached(true)) })).await;
                    return;
                }
                detach_armed = false;
            }
            n = read.read(&mut buf) => match n {
                Ok(0) | Err(_) => break 'outer,
                Ok(n) => decoder.push(&buf[..n]),
            },
            _ = tx.closed() => return,
        }
    }
    // The shim went away without an EXIT frame: take the status from the record.
    let msg = match source.resolve(sup, None).await {
        Ok(exit) => Ok(exit_output(exit)),
        Err(e) => Err(Status::from(e)),
    };
    let _ = tx.send(msg).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_like_docker() {
        assert_eq!(parse_detach_keys("").unwrap(), Some(vec![16, 17]));
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            Some(vec![16, 17])
        );
        assert_eq!(
            parse_detach_keys("ctrl-@,a,ctrl-[").unwrap(),
            Some(vec![0, b'a', 27])
        );
        assert_eq!(parse_detach_keys("none").unwrap(), None);
        let err = parse_detach_keys("ctrl-1").unwrap_err().to_string();
        assert_eq!(err, "Invalid detach keys (ctrl-1) provided");
        assert!(parse_detach_keys("ab").is_err());
    }

    #[test]
    fn scanner_holds_partial_matches_and_detects_the_sequence() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"abc"), (b"abc".to_vec(), false));
        assert_eq!(s.feed(&[b'x', 16]), (b"x".to_vec(), false));
        assert_eq!(s.feed(b"y"), (vec![16, b'y'], false));
        assert_eq!(s.feed(&[16, 16, 17, b'z']), (vec![16], true));
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(&[16]), (vec![], false));
        assert_eq!(s.feed(&[17]), (vec![], true));
    }

    #[test]
    fn flags_default_to_output_streams() {
        let f = flags_of(&AttachStart::default());
        assert_eq!(
            f,
            AttachFlags {
                stdin: false,
                stdout: true,
                stderr: true
            }
        );
        let f = flags_of(&AttachStart {
            stdin: true,
            stdout: true,
            ..Default::default()
        });
        assert_eq!(
            f,
            AttachFlags {
                stdin: true,
                stdout: true,
                stderr: false
            }
        );
    }

    #[test]
    fn exit_time_formats_rfc3339() {
        assert_eq!(
            rfc3339_from_nanos(1_500_000_000),
            "1970-01-01T00:00:01.500000000Z"
        );
    }
}
