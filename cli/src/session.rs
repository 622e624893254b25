//! The interactive plumbing shared by `run`, `start -a`, `attach` and `exec`: the input
//! channel (start message, stdin, resizes, close-stdin), the raw terminal, the signal
//! watcher (window size changes, Docker's sig-proxy) and the output pump.
//!
//! The terminal is restored by [`RawTerminal`]'s `Drop`: on return, on error (`?`), on a
//! panic (unwinding), and on SIGTERM/SIGHUP/SIGINT/SIGQUIT, which the watcher turns into a
//! normal return while the terminal is raw.
use std::io::{Read, Write};

use anyhow::{bail, Result};
use berth_proto::engine::v1::{run_input, run_output, RunInput, RunOutput};
use berth_proto::supervisor::v1::{
    attach_input, attach_output, exec_input, AttachInput, AttachOutput, ExecInput,
    KillContainerRequest, Resize,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::client::Engine;

pub fn write_out(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

pub fn write_err(bytes: &[u8]) -> Result<()> {
    let mut err = std::io::stderr().lock();
    err.write_all(bytes)?;
    err.flush()?;
    Ok(())
}

/// The terminal in raw mode while it lives.
pub struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enable() -> Option<RawTerminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

fn terminal_size() -> Option<Resize> {
    let mut ws: nix::libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass.
    let rc = unsafe { nix::libc::ioctl(1, nix::libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then(|| Resize {
        rows: ws.ws_row.into(),
        cols: ws.ws_col.into(),
    })
}

pub fn stdin_is_tty() -> bool {
    nix::unistd::isatty(std::io::stdin()).unwrap_or(false)
}

/// Docker's check before it puts a terminal in raw mode.
pub fn check_tty(tty: bool, stdin: bool) -> Result<()> {
    if tty && stdin && !stdin_is_tty() {
        bail!("the input device is not a TTY");
    }
    Ok(())
}

/// An input message of one of the interactive streams.
pub trait Input: Send + Sync + 'static {
    fn stdin(bytes: Vec<u8>) -> Self;
    fn close_stdin() -> Self;
    fn resize(size: Resize) -> Self;
}

macro_rules! input {
    ($ty:ty, $module:ident) => {
        impl Input for $ty {
            fn stdin(bytes: Vec<u8>) -> Self {
                Self {
                    input: Some($module::Input::Stdin(bytes)),
                }
            }
            fn close_stdin() -> Self {
                Self {
                    input: Some($module::Input::CloseStdin(true)),
                }
            }
            fn resize(size: Resize) -> Self {
                Self {
                    input: Some($module::Input::Resize(size)),
                }
            }
        }
    };
}
input!(RunInput, run_input);
input!(AttachInput, attach_input);
input!(ExecInput, exec_input);

/// What an output stream says, whichever stream it is.
#[derive(Debug, PartialEq)]
pub enum Event {
    ContainerId(String),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Warning(String),
    Exit(i32),
    Detached,
}

pub trait Output {
    fn event(self) -> Option<Event>;
}

impl Output for RunOutput {
    fn event(self) -> Option<Event> {
        Some(match self.output? {
            run_output::Output::ContainerId(id) => Event::ContainerId(id),
            run_output::Output::Stdout(b) => Event::Stdout(b),
            run_output::Output::Stderr(b) => Event::Stderr(b),
            run_output::Output::Warning(w) => Event::Warning(w),
            run_output::Output::Exit(status) => Event::Exit(status.exit_code),
            run_output::Output::Detached(_) => Event::Detached,
        })
    }
}

impl Output for AttachOutput {
    fn event(self) -> Option<Event> {
        Some(match self.output? {
            attach_output::Output::Stdout(b) => Event::Stdout(b),
            attach_output::Output::Stderr(b) => Event::Stderr(b),
            attach_output::Output::Exit(status) => Event::Exit(status.exit_code),
            attach_output::Output::Detached(_) => Event::Detached,
        })
    }
}

/// How an interactive session behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// The process has a TTY: resizes are sent, and the terminal goes raw with `stdin`.
    pub tty: bool,
    /// The CLI's stdin is forwarded.
    pub stdin: bool,
    /// Without a TTY, signals the CLI receives are sent to the container (`--sig-proxy`).
    pub sig_proxy: bool,
    /// No signal handling at all (`run -d`).
    pub quiet: bool,
}

/// How a session ended.
#[derive(Debug, PartialEq)]
pub enum End {
    Exit(i32),
    Detached,
    /// The stream ended without an exit or detach.
    Closed,
}

/// The input side of a session: the channel the engine call reads.
pub struct Session<I: Input> {
    tx: mpsc::Sender<I>,
    mode: Mode,
    signals: Option<mpsc::Receiver<&'static str>>,
    raw: Option<RawTerminal>,
}

impl<I: Input> Session<I> {
    /// The channel with `start` (and, with a TTY, the terminal's size) already in it; the
    /// stream goes to the engine call.
    pub async fn new(start: I, mode: Mode) -> Result<(Session<I>, ReceiverStream<I>)> {
        let (tx, rx) = mpsc::channel::<I>(16);
        tx.send(start).await?;
        if mode.tty {
            if let Some(size) = terminal_size() {
                tx.send(I::resize(size)).await?;
            }
        }
        let session = Session {
            tx,
            mode,
            signals: None,
            raw: None,
        };
        Ok((session, ReceiverStream::new(rx)))
    }

    /// Once the engine has accepted the call: raw terminal, stdin, signals.
    pub fn begin(&mut self) {
        let mode = self.mode;
        if mode.tty && mode.stdin && stdin_is_tty() {
            self.raw = RawTerminal::enable();
        }
        if mode.stdin {
            forward_stdin(self.tx.clone());
        }
        if !mode.quiet {
            self.signals = watch_signals(mode.tty, mode.sig_proxy, self.tx.clone());
        }
    }

    /// Restores the terminal now (before printing a last message).
    pub fn restore(&mut self) {
        self.raw = None;
    }

    /// Copies the output to stdout/stderr until the process exits or the client detaches.
    /// `id` is the container signals are proxied to (set from a `ContainerId` event too).
    pub async fn pump<O: Output>(
        &mut self,
        engine: &Engine,
        output: &mut Streaming<O>,
        id: &mut String,
    ) -> Result<End> {
        let mut interrupts = 0;
        loop {
            let msg = tokio::select! {
                msg = output.message() => msg?,
                Some(sig) = recv_signal(&mut self.signals) => {
                    if let Some(code) = sig.strip_prefix("EXIT:") {
                        return Ok(End::Exit(code.parse().unwrap_or(125)));
                    }
                    // Docker's sig-proxy: the container gets the signal; a third Ctrl-C
                    // leaves the CLI (the container goes on).
                    if sig == "SIGINT" {
                        interrupts += 1;
                        if interrupts >= 3 {
                            write_err(b"got 3 SIGINT/SIGTERM, forcefully exiting\n")?;
                            return Ok(End::Exit(130));
                        }
                    }
                    if !id.is_empty() {
                        let mut engine = engine.clone();
                        let req = KillContainerRequest { id: id.clone(), signal: sig.to_string() };
                        tokio::spawn(async move {
                            let _ = engine.kill_container(req).await;
                        });
                    }
                    continue;
                }
            };
            let Some(msg) = msg else {
                return Ok(End::Closed);
            };
            match msg.event() {
                Some(Event::ContainerId(cid)) => *id = cid,
                Some(Event::Stdout(b)) => write_out(&b)?,
                Some(Event::Stderr(b)) => write_err(&b)?,
                Some(Event::Warning(w)) => write_err(format!("WARNING: {w}\n").as_bytes())?,
                Some(Event::Exit(code)) => return Ok(End::Exit(code)),
                Some(Event::Detached) => return Ok(End::Detached),
                None => {}
            }
        }
    }
}

/// The end of an attach-like session (`attach`, `start -a`, `exec`) as an exit code:
/// detaching prints Docker's "read escape sequence" and is a success.
pub fn finish<I: Input>(session: &mut Session<I>, end: End, what: &str) -> Result<i32> {
    session.restore();
    match end {
        End::Exit(code) => Ok(code),
        End::Detached => {
            write_err(b"read escape sequence\n")?;
            Ok(0)
        }
        End::Closed => bail!("the engine ended the {what} without the exit status"),
    }
}

/// Reads stdin on a thread and sends chunks; close-stdin is sent at EOF.
fn forward_stdin<I: Input>(tx: mpsc::Sender<I>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(I::stdin(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.blocking_send(I::close_stdin());
    });
}

async fn recv_signal(rx: &mut Option<mpsc::Receiver<&'static str>>) -> Option<&'static str> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// With a TTY, window size changes become resize messages, and the signals that would end
/// the CLI end it through a normal return (so the terminal is restored); without one, the
/// signals a user sends the CLI are proxied to the container (`sig_proxy`) or left alone.
fn watch_signals<I: Input>(
    tty: bool,
    sig_proxy: bool,
    input: mpsc::Sender<I>,
) -> Option<mpsc::Receiver<&'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = mpsc::channel(8);
    if tty {
        if let Ok(mut winch) = signal(SignalKind::window_change()) {
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some(size) = terminal_size() {
                        if input.send(I::resize(size)).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
        for (kind, name) in [
            (SignalKind::terminate(), "EXIT:143"),
            (SignalKind::hangup(), "EXIT:129"),
            (SignalKind::interrupt(), "EXIT:130"),
            (SignalKind::quit(), "EXIT:131"),
        ] {
            if let Ok(mut stream) = signal(kind) {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if stream.recv().await.is_some() {
                        let _ = tx.send(name).await;
                    }
                });
            }
        }
        return Some(rx);
    }
    if !sig_proxy {
        return None;
    }
    let kinds = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ];
    for (kind, name) in kinds {
        if let Ok(mut stream) = signal(kind) {
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(name).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
    Some(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::supervisor::v1::ExitStatus;

    #[test]
    fn outputs_become_events() {
        let run = |o| RunOutput { output: Some(o) };
        assert_eq!(
            run(run_output::Output::ContainerId("c".into())).event(),
            Some(Event::ContainerId("c".into()))
        );
        assert_eq!(
            run(run_output::Output::Exit(ExitStatus {
                exit_code: 4,
                ..Default::default()
            }))
            .event(),
            Some(Event::Exit(4))
        );
        assert_eq!(RunOutput { output: None }.event(), None);
        let attach = |o| AttachOutput { output: Some(o) };
        assert_eq!(
            attach(attach_output::Output::Stderr(b"e".to_vec())).event(),
            Some(Event::Stderr(b"e".to_vec()))
        );
        assert_eq!(
            attach(attach_output::Output::Detached(true)).event(),
            Some(Event::Detached)
        );
    }

    #[test]
    fn inputs_are_built_per_stream() {
        assert_eq!(
            ExecInput::stdin(b"x".to_vec()).input,
            Some(exec_input::Input::Stdin(b"x".to_vec()))
        );
        assert_eq!(
            AttachInput::close_stdin().input,
            Some(attach_input::Input::CloseStdin(true))
        );
        let size = Resize { rows: 2, cols: 3 };
        assert_eq!(
            RunInput::resize(size).input,
            Some(run_input::Input::Resize(size))
        );
    }
}
