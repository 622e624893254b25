//! Finds the executable the way Docker reports it: a name with a `/` is used as is,
//! anything else is looked up in the container's `$PATH`.
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What is at a candidate path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Missing,
    Dir,
    File { executable: bool },
}

/// Probes a path in the real file system (as the container's user: `access(X_OK)`).
pub fn probe(p: &Path) -> Probe {
    match std::fs::metadata(p) {
        Err(_) => Probe::Missing,
        Ok(m) if m.is_dir() => Probe::Dir,
        Ok(_) => {
            let executable = crate::sys::cstr(p)
                .map(|c| unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0)
                .unwrap_or(false);
            Probe::File { executable }
        }
    }
}

/// The value of `PATH` in an environment list, or the default.
pub fn path_from_env(env: &[String]) -> &str {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

pub fn lookup(name: &str, path_env: &str, probe: impl Fn(&Path) -> Probe) -> Result<PathBuf> {
    if name.is_empty() {
        return Err(Error::NotFound(name.to_string()));
    }
    if name.contains('/') {
        return match probe(Path::new(name)) {
            Probe::File { executable: true } => Ok(PathBuf::from(name)),
            Probe::Missing => Err(Error::NoSuchFile(name.to_string())),
            _ => Err(Error::PermissionDenied(name.to_string())),
        };
    }
    for dir in path_env.split(':') {
        // An empty PATH element means the current directory.
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if probe(&candidate) == (Probe::File { executable: true }) {
            return Ok(candidate);
        }
    }
    Err(Error::NotFound(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(p: &Path) -> Probe {
        match p.to_str().unwrap() {
            "/bin/sh" | "/usr/bin/env" => Probe::File { executable: true },
            "/usr/local/bin/env" | "/etc/passwd" => Probe::File { executable: false },
            "/bin" => Probe::Dir,
            _ => Probe::Missing,
        }
    }

    #[test]
    fn searches_path_and_classifies_failures() {
        assert_eq!(
            lookup("sh", DEFAULT_PATH, fake).unwrap(),
            PathBuf::from("/bin/sh")
        );
        // A non-executable earlier match is skipped, like Go's LookPath.
        assert_eq!(
            lookup("env", DEFAULT_PATH, fake).unwrap(),
            PathBuf::from("/usr/bin/env")
        );
        let e = lookup("nosuch", DEFAULT_PATH, fake).unwrap_err();
        assert_eq!(
            e.to_string(),
            "exec: \"nosuch\": executable file not found in $PATH"
        );
        assert_eq!(e.exit_code(), 127);
        assert_eq!(
            lookup("/etc/passwd", "", fake).unwrap_err().exit_code(),
            126
        );
        assert_eq!(
            lookup("/bin", "", fake).unwrap_err().to_string(),
            "exec: \"/bin\": permission denied"
        );
        assert_eq!(lookup("/nope", "", fake).unwrap_err().exit_code(), 127);
        assert_eq!(lookup("sh", "/opt", fake).unwrap_err().exit_code(), 127);
    }

    #[test]
    fn path_comes_from_env() {
        let env = vec!["A=1".to_string(), "PATH=/x:/y".to_string()];
        assert_eq!(path_from_env(&env), "/x:/y");
        assert_eq!(path_from_env(&[]), DEFAULT_PATH);
    }
}
