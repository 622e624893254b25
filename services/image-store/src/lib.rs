//! Content-addressed image store with overlay layer snapshots
