//! Keeping a long-running service's memory small: glibc keeps memory freed by the
//! blocking-pool threads in per-thread arenas after a burst of work, so an idle service
//! would carry its peak. Fewer arenas and a periodic trim give it back.
use std::time::Duration;

const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Limits glibc to two malloc arenas and returns free heap memory to the kernel every
/// few seconds. Call from inside the tokio runtime; calls after the first (several services
/// in one process, `berthd`) do nothing.
pub fn keep_small() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(start_trimming);
}

fn start_trimming() {
    // SAFETY: mallopt and malloc_trim only tune and compact glibc's allocator.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            unsafe { libc::malloc_trim(0) };
        }
    });
}
