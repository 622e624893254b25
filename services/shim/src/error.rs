use std::io;

/// Everything that can stop a container from starting. The exit code follows Docker:
/// 127 command not found, 126 found but not runnable (or bad user/workdir), 125 other.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("{0}")]
    Spec(String),
    #[error("exec: \"{0}\": executable file not found in $PATH")]
    NotFound(String),
    #[error("exec: \"{0}\": stat {0}: no such file or directory")]
    NoSuchFile(String),
    #[error("exec: \"{0}\": permission denied")]
    PermissionDenied(String),
    #[error("{0}")]
    User(String),
    #[error("workdir {0} is not a directory")]
    Workdir(String),
    #[error("chdir to cwd {path:?} set in config.json failed: {source}")]
    Chdir { path: String, source: io::Error },
    /// A failure the container process reported over the status pipe.
    #[error("{msg}")]
    Reported { code: i32, msg: String },
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The exit code `docker run` would give for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotFound(_) | Error::NoSuchFile(_) => 127,
            Error::PermissionDenied(_)
            | Error::User(_)
            | Error::Workdir(_)
            | Error::Chdir { .. } => 126,
            Error::Reported { code, .. } => *code,
            Error::Io { .. } | Error::Spec(_) => 125,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context (what was done to which path) to a raw OS error.
pub trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
