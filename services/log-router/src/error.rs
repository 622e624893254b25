//! The log router's one error type and its mapping to gRPC status codes.
use tonic::Status;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown log driver: {0}")]
    UnknownDriver(String),
    #[error("unknown log opt '{key}' for {driver} log driver")]
    UnknownOption { key: String, driver: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("no such container: {0}")]
    NotFound(String),
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
            Error::UnknownDriver(_) | Error::UnknownOption { .. } | Error::InvalidArgument(_) => {
                Status::invalid_argument(msg)
            }
            Error::NotFound(_) => Status::not_found(msg),
            Error::Io { .. } => Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn errors_map_to_precise_codes() {
        let s: Status = Error::UnknownOption {
            key: "x".into(),
            driver: "json-file".into(),
        }
        .into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "unknown log opt 'x' for json-file log driver");
        let s: Status = Error::UnknownDriver("nope".into()).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "unknown log driver: nope")
        );
        let s: Status = Error::NotFound("c1".into()).into();
        assert_eq!(s.code(), Code::NotFound);
    }
}
