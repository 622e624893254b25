//! The supervisor's one error type and its mapping to gRPC status codes.
use tonic::Status;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameConflict { name: String, id: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("cannot remove container \"/{0}\": container is running: stop the container before removing or force remove")]
    RemoveRunning(String),
    /// A state conflict other than the above.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The shim reported that the process could not be started (126, 127, ...).
    #[error("{message}")]
    StartFailed { message: String, exit_code: i32 },
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The kernel refused a cgroup write (a limit it cannot take, or one below what the
    /// container uses now).
    #[error("cannot write {value:?} to {path}: {source}")]
    CgroupWrite {
        path: String,
        value: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
    /// The network service failed a call (activation at start); its code is passed on.
    #[error("{}", .0.message())]
    Network(tonic::Status),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to I/O results.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let msg = e.to_string();
        match e {
            Error::NotFound(_) => Status::not_found(msg),
            Error::NameConflict { .. } => Status::already_exists(msg),
            Error::InvalidArgument(_) => Status::invalid_argument(msg),
            Error::NotRunning(_) | Error::RemoveRunning(_) | Error::FailedPrecondition(_) => {
                Status::failed_precondition(msg)
            }
            Error::StartFailed { exit_code, .. } => {
                berth_common::status::with_exit_code(msg, exit_code)
            }
            Error::CgroupWrite { ref source, .. } => match source.raw_os_error() {
                Some(libc::EINVAL | libc::ERANGE | libc::EOVERFLOW | libc::ENOSPC) => {
                    Status::invalid_argument(msg)
                }
                Some(libc::EBUSY) => Status::failed_precondition(msg),
                _ => Status::internal(msg),
            },
            Error::Db(_) | Error::Io { .. } | Error::Internal(_) => Status::internal(msg),
            Error::Network(status) => Status::new(status.code(), msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn errors_map_to_precise_codes() {
        let s: Status = Error::NotFound("web".into()).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "no such container: web")
        );
        let s: Status = Error::NameConflict {
            name: "web".into(),
            id: "ab".into(),
        }
        .into();
        assert_eq!(s.code(), Code::AlreadyExists);
        assert!(s.message().starts_with(
            "Conflict. The container name \"/web\" is already in use by container \"ab\"."
        ));
        let s: Status = Error::StartFailed {
            message: "exec: nope".into(),
            exit_code: 127,
        }
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(berth_common::status::exit_code_of(&s), Some(127));
        let s: Status = Error::NotRunning("abc".into()).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::FailedPrecondition, "container abc is not running")
        );
        let s: Status = Error::Network(Status::failed_precondition(
            "Bind for 0.0.0.0:8080 failed: port is already allocated",
        ))
        .into();
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::FailedPrecondition,
                "Bind for 0.0.0.0:8080 failed: port is already allocated"
            )
        );
        let s: Status = Error::CgroupWrite {
            path: "/sys/fs/cgroup/cpuset/b/c/cpuset.cpus".into(),
            value: "7".into(),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        }
        .into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().starts_with(
            "cannot write \"7\" to /sys/fs/cgroup/cpuset/b/c/cpuset.cpus: Invalid argument"
        ));
        let s: Status = Error::RemoveRunning("web".into()).into();
        assert_eq!(
            s.message(),
            "cannot remove container \"/web\": container is running: stop the container before removing or force remove"
        );
    }
}
