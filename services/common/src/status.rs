//! Helpers for `tonic::Status` shared across services.
use tonic::Status;

/// Metadata key carrying the exit code the CLI should use for a failed start
/// (126: cannot be invoked, 127: not found), as Docker's CLI does.
pub const EXIT_CODE_KEY: &str = "berth-exit-code";

/// A `FailedPrecondition` status carrying an exit code for the CLI.
pub fn with_exit_code(message: impl Into<String>, exit_code: i32) -> Status {
    let mut status = Status::failed_precondition(message);
    if let Ok(value) = exit_code.to_string().parse() {
        status.metadata_mut().insert(EXIT_CODE_KEY, value);
    }
    status
}

/// The exit code a status carries, if any.
pub fn exit_code_of(status: &Status) -> Option<i32> {
    status
        .metadata()
        .get(EXIT_CODE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Prefixes the message with context while keeping the code and metadata.
pub fn context(status: Status, what: &str) -> Status {
    let mut out = Status::new(status.code(), format!("{what}: {}", status.message()));
    *out.metadata_mut() = status.metadata().clone();
    out
}
