//! Keeping a long-running service's memory small: glibc keeps memory freed by the
//! blocking-pool threads in per-thread arenas after a burst of work, so an idle service
//! would carry its peak. Fewer arenas and a periodic trim give it back.
use std::time::Duration;

const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Limits glibc to two malloc arenas. glibc fixes the limit when the first thread arena is
/// made, so this must run before any thread starts ([`crate::serve::run_daemon`] does).
pub fn limit_arenas() {
    // SAFETY: mallopt only tunes glibc's allocator.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

/// Returns free heap memory to the kernel every few seconds. Call from inside the tokio
/// runtime; calls after the first (several services in one process, `berthd`) do nothing.
pub fn keep_small() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(start_trimming);
}

fn start_trimming() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // SAFETY: malloc_trim only compacts glibc's allocator.
            unsafe { libc::malloc_trim(0) };
        }
    });
}
