//! The network service's one error type and its mapping to gRPC status codes.
use tonic::Status;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network {0} not found")]
    NetworkNotFound(String),
    /// A missing object other than a network (an endpoint, an attachment).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A state conflict (joining a container that has no network, re-attaching with
    /// another mode).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The cluster store (etcd) cannot be reached or refused the call.
    #[error("{0}")]
    Unavailable(String),
    #[error("network database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Sys {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn sys(context: impl Into<String>, source: impl Into<std::io::Error>) -> Error {
        Error::Sys {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let msg = e.to_string();
        match e {
            Error::NetworkNotFound(_) | Error::NotFound(_) => Status::not_found(msg),
            Error::AlreadyExists(_) => Status::already_exists(msg),
            Error::InvalidArgument(_) => Status::invalid_argument(msg),
            Error::FailedPrecondition(_) => Status::failed_precondition(msg),
            Error::Unavailable(_) => Status::unavailable(msg),
            Error::Db(_) | Error::Sys { .. } => Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn errors_map_to_precise_codes() {
        let s: Status = Error::NetworkNotFound("foo".into()).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "network foo not found")
        );
        let s: Status = Error::InvalidArgument("bad".into()).into();
        assert_eq!(s.code(), Code::InvalidArgument);
        let s: Status = Error::AlreadyExists("network with name a already exists".into()).into();
        assert_eq!(s.code(), Code::AlreadyExists);
    }
}
