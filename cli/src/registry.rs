//! Registry commands: pull, push, login, logout, the pull that `run`/`create` do for a
//! missing image, and Docker's progress display.
use std::collections::HashMap;
use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use berth_proto::image::v1::{
    CheckRegistryAuthRequest, GetImageRequest, PullImageRequest, PushImageRequest, RegistryAuth,
};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::args::{LoginArgs, LogoutArgs, PullArgs, PushArgs};
use crate::client::Engine;
use crate::credentials;
use crate::format::human_size_prec;

/// One progress message, pull or push.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub id: String,
    pub status: String,
    pub current: i64,
    pub total: i64,
}

/// Docker's progress bar and byte counters, `[=====>     ]  1.2MB/4.5MB`; the bar only when
/// `bar` (Docker draws it on terminals wider than 110 columns). Empty without byte counts.
pub fn progress_bar(current: i64, total: i64, bar: bool) -> String {
    if current <= 0 && total <= 0 {
        return String::new();
    }
    let size = |n: i64| human_size_prec(n.max(0) as f64, 4);
    if total <= 0 {
        return format!("{:>8}", size(current));
    }
    let numbers = format!("{:>8}/{}", size(current), size(total));
    if !bar {
        return numbers;
    }
    let filled = ((current.max(0) as f64 / total as f64 * 100.0) as i64 / 2).clamp(0, 50) as usize;
    format!(
        "[{}>{}] {numbers}",
        "=".repeat(filled),
        " ".repeat(50 - filled)
    )
}

/// The text of one message: `<id>: <status> <progress>`. `width` is the terminal's (0: not
/// a terminal, no byte counters); the line is cut to fit it, so it never wraps.
pub fn progress_text(p: &Progress, width: usize) -> String {
    let mut text = String::new();
    if !p.id.is_empty() {
        text.push_str(&p.id);
        text.push_str(": ");
    }
    text.push_str(&p.status);
    if width > 0 {
        let detail = progress_bar(p.current, p.total, width > 110);
        if !detail.is_empty() {
            text.push(' ');
            text.push_str(&detail);
        }
        if text.chars().count() >= width {
            text = text.chars().take(width - 1).collect();
        }
    }
    text
}

/// Turns progress messages into output. On a terminal each layer keeps one line, rewritten
/// in place with ANSI cursor movement; otherwise a layer gets a plain line only when its
/// status changes. Messages without an id are plain lines in both modes.
#[derive(Debug, Default)]
pub struct Renderer {
    tty: bool,
    /// Terminal columns.
    width: usize,
    /// Layer id → its line, counted from the first line of the current block.
    lines: HashMap<String, usize>,
    /// Lines in the current block; the cursor is at the start of the line below them.
    count: usize,
    /// Last status printed per layer (plain mode).
    last: HashMap<String, String>,
}

impl Renderer {
    /// `width`: the terminal's columns when `tty` (0 if unknown).
    pub fn new(tty: bool, width: usize) -> Renderer {
        Renderer {
            tty,
            width: if tty && width == 0 { 80 } else { width },
            ..Default::default()
        }
    }

    /// The bytes to write for `p`.
    pub fn render(&mut self, p: &Progress) -> String {
        if p.id.is_empty() {
            // Not about a layer: a plain line, after which layer lines start a new block.
            self.lines.clear();
            self.count = 0;
            return format!("{}\n", progress_text(p, 0));
        }
        if !self.tty {
            if self.last.get(&p.id) == Some(&p.status) {
                return String::new();
            }
            self.last.insert(p.id.clone(), p.status.clone());
            return format!("{}\n", progress_text(p, 0));
        }
        let text = progress_text(p, self.width);
        match self.lines.get(&p.id) {
            None => {
                self.lines.insert(p.id.clone(), self.count);
                self.count += 1;
                format!("\x1b[2K\r{text}\n")
            }
            Some(&line) => {
                let up = self.count - line;
                let mut out = format!("\x1b[{up}A\x1b[2K\r{text}\n");
                if up > 1 {
                    out.push_str(&format!("\x1b[{}B", up - 1));
                }
                out
            }
        }
    }
}

/// The full reference Docker prints after a pull: `docker.io/library/busybox:latest`,
/// `127.0.0.1:5000/bb:latest`, `busybox@sha256:…` → `docker.io/library/busybox@sha256:…`.
pub fn canonical_reference(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    let registry = credentials::registry_of(name);
    let path = if name.starts_with(&format!("{registry}/")) {
        name[registry.len() + 1..].to_string()
    } else {
        name.to_string()
    };
    let path = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let mut out = format!("{registry}/{path}");
    if let Some(tag) = tag {
        out.push(':');
        out.push_str(tag);
    }
    match digest {
        Some(d) => {
            out.push('@');
            out.push_str(d);
        }
        None if tag.is_none() => out.push_str(":latest"),
        None => {}
    }
    out
}

/// The reference as Docker names it in `Unable to find image 'x:latest' locally`.
pub fn familiar_with_tag(reference: &str) -> String {
    let name = reference.split('@').next().unwrap_or_default();
    let has_tag = name
        .rfind(':')
        .is_some_and(|i| !name[i + 1..].contains('/'));
    if reference.contains('@') || has_tag {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

fn is_tty(fd: impl std::os::fd::AsFd) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// Columns of the terminal on `fd` (0 when unknown).
fn terminal_width(fd: impl std::os::fd::AsRawFd) -> usize {
    let mut ws: nix::libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass.
    let rc = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCGWINSZ, &mut ws) };
    if rc == 0 {
        usize::from(ws.ws_col)
    } else {
        0
    }
}

/// A renderer for stdout or stderr, as that is a terminal or not.
fn renderer_for(out: Out) -> Renderer {
    match out {
        Out::Stdout if is_tty(std::io::stdout()) => {
            Renderer::new(true, terminal_width(std::io::stdout()))
        }
        Out::Stderr if is_tty(std::io::stderr()) => {
            Renderer::new(true, terminal_width(std::io::stderr()))
        }
        _ => Renderer::new(false, 0),
    }
}

/// Where progress goes.
#[derive(Clone, Copy, PartialEq)]
enum Out {
    Stdout,
    Stderr,
    Nowhere,
}

fn write_to(out: Out, text: &str) -> Result<()> {
    match out {
        Out::Stdout => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes())?;
            o.flush()?;
        }
        Out::Stderr => {
            let mut e = std::io::stderr().lock();
            e.write_all(text.as_bytes())?;
            e.flush()?;
        }
        Out::Nowhere => {}
    }
    Ok(())
}

/// Pulls `reference`, showing progress on `out`.
async fn pull_image(engine: &mut Engine, reference: &str, platform: &str, out: Out) -> Result<()> {
    let mut renderer = renderer_for(out);
    let mut stream = engine
        .pull_image(PullImageRequest {
            reference: reference.to_string(),
            auth: credentials::auth_for(reference),
            platform: platform.to_string(),
        })
        .await?
        .into_inner();
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        if msg.status.is_empty() {
            continue;
        }
        let text = renderer.render(&Progress {
            id: msg.id,
            status: msg.status,
            current: msg.current,
            total: msg.total,
        });
        write_to(out, &text)?;
    }
    Ok(())
}

/// `berth pull`.
pub async fn pull(mut engine: Engine, args: PullArgs) -> Result<i32> {
    let out = if args.quiet {
        Out::Nowhere
    } else {
        Out::Stdout
    };
    let platform = args.platform.clone().unwrap_or_default();
    pull_image(&mut engine, &args.reference, &platform, out).await?;
    println!("{}", canonical_reference(&args.reference));
    Ok(0)
}

/// `berth push`.
pub async fn push(mut engine: Engine, args: PushArgs) -> Result<i32> {
    let mut renderer = renderer_for(Out::Stdout);
    let mut stream = engine
        .push_image(PushImageRequest {
            reference: args.reference.clone(),
            auth: credentials::auth_for(&args.reference),
        })
        .await?
        .into_inner();
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        if msg.status.is_empty() {
            continue;
        }
        if !args.quiet || (msg.id.is_empty() && !msg.digest.is_empty()) {
            let text = renderer.render(&Progress {
                id: msg.id,
                status: msg.status,
                current: msg.current,
                total: msg.total,
            });
            write_to(Out::Stdout, &text)?;
        }
    }
    Ok(0)
}

/// The pull policy of `run`/`create`.
pub async fn ensure_image(engine: &mut Engine, reference: &str, policy: &str) -> Result<()> {
    match policy {
        "" | "missing" => {
            match engine
                .inspect_image(GetImageRequest {
                    reference: reference.to_string(),
                })
                .await
            {
                Ok(_) => Ok(()),
                Err(st) if st.code() == Code::NotFound => {
                    eprintln!(
                        "Unable to find image '{}' locally",
                        familiar_with_tag(reference)
                    );
                    pull_image(engine, reference, "", Out::Stderr).await
                }
                Err(st) => Err(st.into()),
            }
        }
        "always" => pull_image(engine, reference, "", Out::Stderr).await,
        "never" => Ok(()),
        other => bail!(
            "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
        ),
    }
}

/// Reads one line from the terminal, without echo when `secret`.
fn prompt(label: &str, secret: bool) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    eprint!("{label}");
    std::io::stderr().flush()?;
    let saved = if secret {
        let saved = tcgetattr(&stdin).ok();
        if let Some(s) = &saved {
            let mut quiet = s.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
        }
        saved
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    if let Some(s) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &s);
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `berth login`.
pub async fn login(mut engine: Engine, args: LoginArgs) -> Result<i32> {
    let server = args.server.clone().unwrap_or_default();
    let key = credentials::config_key(&server);
    let interactive = is_tty(std::io::stdin());
    if args.password.is_some() {
        if args.password_stdin {
            bail!("--password and --password-stdin are mutually exclusive");
        }
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let mut password = args.password.clone().unwrap_or_default();
    if args.password_stdin {
        if args.username.as_deref().unwrap_or_default().is_empty() {
            bail!("Must provide --username with --password-stdin");
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("read the password from stdin")?;
        password = text.trim_end_matches(['\n', '\r']).to_string();
    }
    let mut username = args.username.clone().unwrap_or_default();
    if username.is_empty() {
        if !interactive {
            bail!("Error: Cannot perform an interactive login from a non TTY device");
        }
        username = prompt("Username: ", false)?;
        if username.is_empty() {
            bail!("Error: Non-null Username Required");
        }
    }
    if password.is_empty() {
        if !interactive {
            bail!("Error: Cannot perform an interactive login from a non TTY device");
        }
        password = prompt("Password: ", true)?;
        if password.is_empty() {
            bail!("Error: Password Required");
        }
    }
    engine
        .login(CheckRegistryAuthRequest {
            registry: credentials::registry_host(&server),
            auth: Some(RegistryAuth {
                username: username.clone(),
                password: password.clone(),
                identity_token: String::new(),
            }),
        })
        .await?;
    let path = credentials::config_path();
    credentials::store(&path, &key, &username, &password)
        .with_context(|| format!("Error saving credentials in {}", path.display()))?;
    eprintln!(
        "WARNING! Your credentials are stored unencrypted in '{}'.",
        path.display()
    );
    println!("Login Succeeded");
    Ok(0)
}

/// `berth logout`.
pub async fn logout(args: LogoutArgs) -> Result<i32> {
    let server = args.server.clone().unwrap_or_default();
    let key = credentials::config_key(&server);
    let shown = if server.is_empty() {
        key.clone()
    } else {
        server
    };
    let path = credentials::config_path();
    if credentials::remove(&path, &key)? {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, status: &str, current: i64, total: i64) -> Progress {
        Progress {
            id: id.into(),
            status: status.into(),
            current,
            total,
        }
    }

    #[test]
    fn bars() {
        assert_eq!(progress_bar(0, 0, true), "");
        assert_eq!(
            progress_bar(1_200_000, 4_500_000, true),
            format!("[{}>{}]    1.2MB/4.5MB", "=".repeat(13), " ".repeat(37))
        );
        assert_eq!(
            progress_bar(4_500_000, 4_500_000, true),
            format!("[{}>]    4.5MB/4.5MB", "=".repeat(50))
        );
        assert_eq!(progress_bar(1_200_000, 4_500_000, false), "   1.2MB/4.5MB");
        assert_eq!(progress_bar(532, 0, true), "    532B");
        let pulled = p("abc", "Pull complete", 0, 0);
        assert_eq!(progress_text(&pulled, 120), "abc: Pull complete");
        let digest = p("", "Digest: sha256:00", 0, 0);
        assert_eq!(progress_text(&digest, 120), "Digest: sha256:00");
        let down = p("abc", "Downloading", 1_200_000, 4_500_000);
        assert_eq!(progress_text(&down, 0), "abc: Downloading");
        // Narrow terminals: no bar (as Docker), and never a wrapped line.
        assert_eq!(progress_text(&down, 80), "abc: Downloading    1.2MB/4.5MB");
        assert_eq!(progress_text(&down, 10), "abc: Down");
        assert!(progress_text(&down, 111).contains("[=============>"));
    }

    #[test]
    fn plain_output_prints_status_changes_only() {
        let mut r = Renderer::new(false, 0);
        let mut out = String::new();
        for m in [
            p("a1", "Pulling fs layer", 0, 0),
            p("b2", "Pulling fs layer", 0, 0),
            p("a1", "Downloading", 10, 100),
            p("a1", "Downloading", 50, 100),
            p("a1", "Pull complete", 0, 0),
            p("", "Digest: sha256:00", 0, 0),
            p(
                "",
                "Status: Downloaded newer image for busybox:latest",
                0,
                0,
            ),
        ] {
            out.push_str(&r.render(&m));
        }
        assert_eq!(
            out,
            "a1: Pulling fs layer\nb2: Pulling fs layer\na1: Downloading\na1: Pull complete\n\
             Digest: sha256:00\nStatus: Downloaded newer image for busybox:latest\n"
        );
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn terminal_output_rewrites_layer_lines_in_place() {
        let mut r = Renderer::new(true, 120);
        assert_eq!(
            r.render(&p("a1", "Pulling fs layer", 0, 0)),
            "\x1b[2K\ra1: Pulling fs layer\n"
        );
        assert_eq!(
            r.render(&p("b2", "Pulling fs layer", 0, 0)),
            "\x1b[2K\rb2: Pulling fs layer\n"
        );
        // The first layer's line is two up; the cursor comes back below the block.
        let out = r.render(&p("a1", "Downloading", 1_200_000, 4_500_000));
        assert!(
            out.starts_with("\x1b[2A\x1b[2K\ra1: Downloading ["),
            "{out:?}"
        );
        assert!(out.ends_with("1.2MB/4.5MB\n\x1b[1B"), "{out:?}");
        // The last line needs no move down.
        assert_eq!(
            r.render(&p("b2", "Pull complete", 0, 0)),
            "\x1b[1A\x1b[2K\rb2: Pull complete\n"
        );
        assert_eq!(
            r.render(&p("", "Digest: sha256:00", 0, 0)),
            "Digest: sha256:00\n"
        );
        // After a plain line, a layer starts a new block.
        assert_eq!(r.render(&p("a1", "Pushed", 0, 0)), "\x1b[2K\ra1: Pushed\n");
    }

    #[test]
    fn references() {
        assert_eq!(
            canonical_reference("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            canonical_reference("busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(canonical_reference("me/app"), "docker.io/me/app:latest");
        assert_eq!(
            canonical_reference("docker.io/library/busybox:latest"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            canonical_reference("127.0.0.1:5000/bb"),
            "127.0.0.1:5000/bb:latest"
        );
        assert_eq!(
            canonical_reference("127.0.0.1:5000/bb@sha256:00"),
            "127.0.0.1:5000/bb@sha256:00"
        );
        assert_eq!(familiar_with_tag("busybox"), "busybox:latest");
        assert_eq!(
            familiar_with_tag("127.0.0.1:5000/bb"),
            "127.0.0.1:5000/bb:latest"
        );
        assert_eq!(
            familiar_with_tag("127.0.0.1:5000/bb:1"),
            "127.0.0.1:5000/bb:1"
        );
        assert_eq!(familiar_with_tag("bb@sha256:00"), "bb@sha256:00");
    }
}
