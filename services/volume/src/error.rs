//! The volume service's one error type and its mapping to gRPC status codes.
use tonic::Status;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("create {0}: {0:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    #[error("unknown volume driver: {0}")]
    UnknownDriver(String),
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", .containers.join(", "))]
    InUse {
        name: String,
        containers: Vec<String>,
    },
    /// A volume driver option refused (Docker's text).
    #[error("{0}")]
    InvalidOption(String),
    /// A filter refused, naming it.
    #[error("invalid filter {0:?}")]
    InvalidFilter(String),
    /// The kernel refused to mount a volume's driver options.
    #[error("mount volume {name}: {source}")]
    Mount {
        name: String,
        source: std::io::Error,
    },
    /// A mount spec refused, naming it.
    #[error("{0}")]
    InvalidMount(String),
    #[error("volume database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let msg = e.to_string();
        match e {
            Error::InvalidName(_)
            | Error::UnknownDriver(_)
            | Error::InvalidMount(_)
            | Error::InvalidOption(_)
            | Error::InvalidFilter(_)
            | Error::Mount { .. } => Status::invalid_argument(msg),
            Error::NotFound(_) => Status::not_found(msg),
            Error::InUse { .. } => Status::failed_precondition(msg),
            Error::Db(_) | Error::Io { .. } => Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn errors_map_to_precise_codes_with_dockers_text() {
        let s: Status = Error::InvalidName("x/y".into()).into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "create x/y: \"x/y\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        let s: Status = Error::InUse {
            name: "v1".into(),
            containers: vec!["abc".into(), "def".into()],
        }
        .into();
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::FailedPrecondition,
                "remove v1: volume is in use - [abc, def]"
            )
        );
        let s: Status = Error::NotFound("x".into()).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "no such volume: x")
        );
        let s: Status = Error::UnknownDriver("nfs".into()).into();
        assert_eq!(s.message(), "unknown volume driver: nfs");
    }
}
