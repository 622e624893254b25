//! The image store's one error vocabulary and its mapping to gRPC codes.
use std::path::PathBuf;

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such image: {0}")]
    ImageNotFound(String),
    #[error("no such snapshot: {0}")]
    SnapshotNotFound(String),
    #[error("invalid reference format: {reason}: {reference:?}")]
    InvalidReference { reference: String, reason: String },
    #[error("ambiguous image ID prefix {0:?}: it matches several images")]
    AmbiguousId(String),
    #[error("invalid snapshot key {0:?}")]
    InvalidKey(String),
    /// A layer entry that would escape the root or is otherwise unsafe or malformed.
    #[error("invalid layer entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// The uploaded archive or a document in it is malformed.
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    #[error("invalid change {change:?}: {reason}")]
    InvalidChange { change: String, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Removal refused because of users or several tags (Docker's "conflict: ...").
    #[error("{0}")]
    Conflict(String),
    #[error("snapshot {key} already exists for image {image_id}")]
    SnapshotExists { key: String, image_id: String },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("internal: {0}")]
    Internal(String),
    /// Registry: unknown repository, tag or manifest (the message says which).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// Registry unreachable or misbehaving.
    #[error("{0}")]
    Unavailable(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            context,
            path,
            source,
        }
    }

    pub fn unsafe_entry(entry: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::UnsafeEntry {
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let message = e.to_string();
        match e {
            Error::ImageNotFound(_) | Error::SnapshotNotFound(_) | Error::NotFound(_) => {
                Status::not_found(message)
            }
            Error::Unauthenticated(_) => Status::unauthenticated(message),
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::Unavailable(_) => Status::unavailable(message),
            Error::InvalidReference { .. }
            | Error::AmbiguousId(_)
            | Error::InvalidKey(_)
            | Error::UnsafeEntry { .. }
            | Error::DigestMismatch { .. }
            | Error::InvalidArchive(_)
            | Error::InvalidChange { .. }
            | Error::InvalidArgument(_) => Status::invalid_argument(message),
            Error::Conflict(_) => Status::failed_precondition(message),
            Error::SnapshotExists { .. } => Status::already_exists(message),
            Error::Io { .. } | Error::Db(_) | Error::Internal(_) => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn errors_map_to_precise_codes() {
        let code = |e: Error| Status::from(e).code();
        assert_eq!(
            code(Error::ImageNotFound("nosuch:latest".into())),
            Code::NotFound
        );
        assert_eq!(code(Error::SnapshotNotFound("k".into())), Code::NotFound);
        assert_eq!(
            code(Error::unsafe_entry("../evil", "path contains \"..\"")),
            Code::InvalidArgument
        );
        assert_eq!(code(Error::AmbiguousId("a".into())), Code::InvalidArgument);
        assert_eq!(
            code(Error::Conflict("conflict: x".into())),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(Error::SnapshotExists {
                key: "k".into(),
                image_id: "i".into()
            }),
            Code::AlreadyExists
        );
        let s = Status::from(Error::ImageNotFound("nosuch:latest".into()));
        assert_eq!(s.message(), "no such image: nosuch:latest");
    }
}
