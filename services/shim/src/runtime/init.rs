//! The container's first process between fork and execve. The shim is single-threaded,
//! so allocating here is safe.
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::stdio::ChildStdio;
use super::{capabilities, exec_path, rootfs, user, ANN_USER};
use crate::error::{Context, Error, Result};
use crate::sys;

pub(super) fn run(
    spec: &Spec,
    bundle: &Path,
    io: &ChildStdio,
    cgroup: OwnedFd,
    status: &OwnedFd,
    go: OwnedFd,
) -> Result<Infallible> {
    reset_signals();
    // Wait until the shim has moved us into our cgroups (so the cgroup namespace is
    // rooted there and all memory is charged to the container).
    let mut b = [0u8; 1];
    if sys::read_full(cgroup.as_raw_fd(), &mut b).ctx(|| "wait for cgroup setup".into())? != 1 {
        unsafe { libc::_exit(125) };
    }
    drop(cgroup);
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Spec("no process".into()))?;
    let linux = spec.linux().as_ref();
    let namespaces = linux
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let has_ns = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    let mut flags = 0;
    for ns in &namespaces {
        let flag = ns_flag(ns.typ());
        match ns.path() {
            Some(path) if ns.typ() != LinuxNamespaceType::Pid => {
                let f = std::fs::File::open(path)
                    .ctx(|| format!("open namespace {}", path.display()))?;
                if unsafe { libc::setns(f.as_raw_fd(), flag) } != 0 {
                    return Err(Error::io(
                        format!("join namespace {}", path.display()),
                        std::io::Error::last_os_error(),
                    ));
                }
            }
            None if ns.typ() != LinuxNamespaceType::Pid => flags |= flag,
            _ => {}
        }
    }
    if flags != 0 && unsafe { libc::unshare(flags) } != 0 {
        return Err(Error::io(
            "unshare namespaces",
            std::io::Error::last_os_error(),
        ));
    }
    super::stdio::install(io).ctx(|| "set up container stdio".into())?;

    let rootfs = rootfs::rootfs_path(spec, bundle);
    if !has_ns(LinuxNamespaceType::Mount) {
        return Err(Error::Spec(
            "the built-in runtime needs a mount namespace".into(),
        ));
    }
    rootfs::prepare(spec, &rootfs)?;
    if let Some(h) = spec
        .hostname()
        .as_deref()
        .filter(|_| has_ns(LinuxNamespaceType::Uts))
    {
        if unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) } != 0 {
            return Err(Error::io(
                format!("sethostname {h}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    rootfs::pivot(&rootfs)?;

    let cwd = if process.cwd().as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        process.cwd().clone()
    };
    match std::fs::metadata(&cwd) {
        Ok(m) if !m.is_dir() => return Err(Error::Workdir(cwd.display().to_string())),
        Ok(_) => {}
        // Docker creates a missing working directory.
        Err(_) => rootfs::mkdir_all(&cwd)?,
    }
    if let Some(l) = linux {
        rootfs::mask(l.masked_paths().as_deref().unwrap_or_default())?;
        rootfs::readonly(l.readonly_paths().as_deref().unwrap_or_default())?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rootfs::root_readonly()?;
    }
    apply_rlimits(process.rlimits().as_deref().unwrap_or_default());

    let annotations = spec.annotations().clone().unwrap_or_default();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let who = user::resolve(
        annotations.get(ANN_USER).map_or("", String::as_str),
        &passwd,
        &group,
    )?;
    drop((passwd, group));
    set_credentials(&who, process.capabilities().as_ref())?;
    std::env::set_current_dir(&cwd).ctx(|| format!("chdir to workdir {}", cwd.display()))?;

    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", who.home));
    }
    let args = process.args().clone().unwrap_or_default();
    let exe = exec_path::lookup(&args[0], exec_path::path_from_env(&env), exec_path::probe)?;
    if process.no_new_privileges().unwrap_or(false)
        && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0
    {
        return Err(Error::io(
            "set no_new_privs",
            std::io::Error::last_os_error(),
        ));
    }
    let to_c = |s: &str| {
        CString::new(s)
            .map_err(|_| Error::Spec(format!("argument or variable with a NUL byte: {s:?}")))
    };
    let exe_c = sys::cstr(&exe).ctx(|| format!("path {}", exe.display()))?;
    let argv: Vec<CString> = args.iter().map(|a| to_c(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|e| to_c(e)).collect::<Result<_>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());

    super::write_status(status.as_raw_fd(), 0, "");
    if sys::read_full(go.as_raw_fd(), &mut b).unwrap_or(0) != 1 {
        // The shim went away or cancelled the start.
        unsafe { libc::_exit(125) };
    }
    drop(go);
    unsafe { libc::execve(exe_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let e = std::io::Error::last_os_error();
    let name = exe.display().to_string();
    let err = match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NoSuchFile(name),
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied(name),
        _ => Error::Reported {
            code: 126,
            msg: format!("exec: \"{name}\": {e}"),
        },
    };
    // Also to the container's stderr, so `logs` shows why it ended.
    let _ = sys::write_all(2, format!("{err}\n").as_bytes());
    Err(err)
}

fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80,
    }
}

/// The shim blocks SIGCHLD and ignores SIGPIPE; both would leak into the container.
fn reset_signals() {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
}

/// Applies the spec's rlimits, clamped to the current hard limit: root here lacks
/// CAP_SYS_RESOURCE, so raising one would fail.
fn apply_rlimits(limits: &[oci_spec::runtime::PosixRlimit]) {
    for l in limits {
        let Ok(serde_json::Value::String(name)) = serde_json::to_value(l.typ()) else {
            continue;
        };
        let res = match name.as_str() {
            "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
            "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
            "RLIMIT_CORE" => libc::RLIMIT_CORE,
            "RLIMIT_STACK" => libc::RLIMIT_STACK,
            "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
            "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
            "RLIMIT_DATA" => libc::RLIMIT_DATA,
            "RLIMIT_AS" => libc::RLIMIT_AS,
            "RLIMIT_CPU" => libc::RLIMIT_CPU,
            "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
            "RLIMIT_NICE" => libc::RLIMIT_NICE,
            "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
            "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
            "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
            _ => continue,
        };
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if unsafe { libc::getrlimit(res, &mut cur) } != 0 {
            continue;
        }
        let hard = l.hard().min(cur.rlim_max);
        let new = libc::rlimit {
            rlim_cur: l.soft().min(hard),
            rlim_max: hard,
        };
        unsafe { libc::setrlimit(res, &new) };
    }
}

fn set_credentials(
    who: &user::ExecUser,
    caps: Option<&oci_spec::runtime::LinuxCapabilities>,
) -> Result<()> {
    if let Some(c) = caps {
        capabilities::drop_bounding(c)?;
    }
    let os = |what: &str| Error::io(what.to_string(), std::io::Error::last_os_error());
    unsafe {
        // Keep permitted capabilities across the uid change; they are set right after.
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        let groups: Vec<libc::gid_t> = who.groups.clone();
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            return Err(os("setgroups"));
        }
        if libc::setresgid(who.gid, who.gid, who.gid) != 0 {
            return Err(os(&format!("setgid {}", who.gid)));
        }
        if libc::setresuid(who.uid, who.uid, who.uid) != 0 {
            return Err(os(&format!("setuid {}", who.uid)));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    if let Some(c) = caps {
        capabilities::apply(c)?;
    }
    Ok(())
}
