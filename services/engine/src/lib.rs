//! The coordinator: user-facing API and multi-service sagas
