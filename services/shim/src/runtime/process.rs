//! The last steps every container process takes, for the first process and for exec:
//! rlimits, user and credentials, working directory, environment, executable lookup,
//! the ready report, and execve (directly, or under the built-in init).
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::Process;

use super::{capabilities, exec_path, initproc, user};
use crate::error::{Context, Error, Result};
use crate::sys;

/// Runs inside the container's root with the process's final cwd checked. Reports ready
/// on `status`, waits for `go`, then execs; returns only the error that stopped it.
pub(super) fn exec(
    process: &Process,
    user_spec: &str,
    cwd: &Path,
    status: &OwnedFd,
    go: OwnedFd,
    init: bool,
) -> Result<Infallible> {
    apply_rlimits(process.rlimits().as_deref().unwrap_or_default());
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let who = user::resolve(user_spec, &passwd, &group)?;
    drop((passwd, group));
    set_credentials(&who, process.capabilities().as_ref())?;
    std::env::set_current_dir(cwd).ctx(|| format!("chdir to workdir {}", cwd.display()))?;

    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", who.home));
    }
    let args = process.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err(Error::Spec("process has no args".into()));
    };
    let exe = exec_path::lookup(arg0, exec_path::path_from_env(&env), exec_path::probe)?;
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
    let mut b = [0u8; 1];
    if sys::read_full(go.as_raw_fd(), &mut b).unwrap_or(0) != 1 {
        // The shim went away or cancelled the start.
        unsafe { libc::_exit(125) };
    }
    drop(go);
    let name = exe.display().to_string();
    let mut exec_now = || {
        unsafe { libc::execve(exe_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
        let e = std::io::Error::last_os_error();
        let err = match e.raw_os_error() {
            Some(libc::ENOENT) => Error::NoSuchFile(name.clone()),
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied(name.clone()),
            _ => Error::Reported {
                code: 126,
                msg: format!("exec: \"{name}\": {e}"),
            },
        };
        // Also to the process's stderr, so `logs` shows why it ended.
        let _ = sys::write_all(2, format!("{err}\n").as_bytes());
        err
    };
    if init {
        initproc::run(status.as_raw_fd(), &mut exec_now);
    }
    Err(exec_now())
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
