//! Saga helpers: an undo stack of compensations run in reverse on failure, and a collector
//! for teardowns that go on through failures and report all of them in one status.
use std::{future::Future, pin::Pin};

use tonic::{Code, Status};

type Compensation =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send>> + Send>;

/// Compensating steps of a saga in progress, run last-first by [`UndoStack::unwind`].
#[derive(Default)]
pub struct UndoStack {
    steps: Vec<(String, Compensation)>,
}

impl UndoStack {
    pub fn new() -> UndoStack {
        UndoStack::default()
    }

    /// Records how to undo the step just taken.
    pub fn push<F, Fut>(&mut self, what: impl Into<String>, undo: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
    {
        self.steps
            .push((what.into(), Box::new(move || Box::pin(undo()))));
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The saga succeeded: forget the compensations.
    pub fn commit(mut self) {
        self.steps.clear();
    }

    /// Runs every compensation, newest first, through failures; returns the failures.
    pub async fn unwind(mut self) -> Failures {
        let mut failures = Failures::default();
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(status) = undo().await {
                tracing::warn!(step = %what, error = %status.message(), "compensation failed");
                failures.push(what, status);
            }
        }
        failures
    }

    /// Unwinds, then returns `error` with the compensation failures (if any) appended to
    /// its message; its code and metadata (an exit code) are kept.
    pub async fn fail(self, error: Status) -> Status {
        let failures = self.unwind().await;
        if failures.is_empty() {
            return error;
        }
        let mut out = Status::new(
            error.code(),
            format!(
                "{} (cleanup also failed: {})",
                error.message(),
                failures.message()
            ),
        );
        *out.metadata_mut() = error.metadata().clone();
        out
    }
}

/// Failures collected while a teardown goes on.
#[derive(Default, Debug)]
pub struct Failures {
    errors: Vec<(String, Status)>,
}

impl Failures {
    pub fn push(&mut self, what: impl Into<String>, status: Status) {
        self.errors.push((what.into(), status));
    }

    /// Keeps the value of a successful step, records a failed one.
    pub fn check<T>(&mut self, what: &str, result: Result<T, Status>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(status) => {
                tracing::warn!(step = %what, error = %status.message(), "teardown step failed");
                self.push(what, status);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    fn message(&self) -> String {
        self.errors
            .iter()
            .map(|(what, s)| format!("{what}: {}", s.message()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Ok when nothing failed, else one status naming every failure, with the code of
    /// the first (Internal when codes differ would hide the useful one).
    pub fn into_result(self) -> Result<(), Status> {
        match self.errors.first() {
            None => Ok(()),
            Some((_, first)) => {
                let code = if first.code() == Code::Ok {
                    Code::Unknown
                } else {
                    first.code()
                };
                Err(Status::new(code, self.message()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn stack(log: &Arc<Mutex<Vec<&'static str>>>, steps: &[(&'static str, bool)]) -> UndoStack {
        let mut undo = UndoStack::new();
        for &(name, ok) in steps {
            let log = log.clone();
            undo.push(name, move || async move {
                log.lock().unwrap().push(name);
                if ok {
                    Ok(())
                } else {
                    Err(Status::unavailable(format!("{name} down")))
                }
            });
        }
        undo
    }

    #[tokio::test]
    async fn unwind_runs_in_reverse_through_failures() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let undo = stack(
            &log,
            &[
                ("network", true),
                ("volumes", false),
                ("log", true),
                ("snapshot", false),
            ],
        );
        assert_eq!(undo.len(), 4);
        let failures = undo.unwind().await;
        assert_eq!(
            *log.lock().unwrap(),
            vec!["snapshot", "log", "volumes", "network"]
        );
        assert_eq!(failures.len(), 2);
        let status = failures.into_result().unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "snapshot: snapshot down; volumes: volumes down"
        );
    }

    #[tokio::test]
    async fn commit_runs_nothing() {
        let log = Arc::new(Mutex::new(Vec::new()));
        stack(&log, &[("a", true), ("b", true)]).commit();
        assert!(log.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn fail_keeps_the_original_code_and_exit_code() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let error = berth_common::status::with_exit_code("exec: nope", 127);
        let out = stack(&log, &[("a", true)]).fail(error).await;
        assert_eq!(out.message(), "exec: nope");
        assert_eq!(berth_common::status::exit_code_of(&out), Some(127));

        let error = berth_common::status::with_exit_code("exec: nope", 126);
        let out = stack(&log, &[("log", false)]).fail(error).await;
        assert_eq!(out.code(), Code::FailedPrecondition);
        assert_eq!(
            out.message(),
            "exec: nope (cleanup also failed: log: log down)"
        );
        assert_eq!(berth_common::status::exit_code_of(&out), Some(126));
    }

    #[test]
    fn no_failures_is_ok() {
        let mut f = Failures::default();
        assert_eq!(f.check("x", Ok::<_, Status>(3)), Some(3));
        assert!(f.into_result().is_ok());
    }
}
