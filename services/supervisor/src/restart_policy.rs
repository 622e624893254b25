//! Restart policies (`--restart`): validation, the restart decision and Docker's backoff.
use std::time::Duration;

use berth_proto::supervisor::v1::RestartPolicy;

use crate::error::{Error, Result};

/// The first delay; doubled for each consecutive restart.
pub const INITIAL_DELAY: Duration = Duration::from_millis(100);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    No,
    /// At most `max` restarts when `max > 0`.
    OnFailure {
        max: i32,
    },
    Always,
    UnlessStopped,
}

/// Validates the policy as given at create.
pub fn parse(p: Option<&RestartPolicy>) -> Result<Policy> {
    let Some(p) = p else {
        return Ok(Policy::No);
    };
    if p.maximum_retry_count < 0 {
        return Err(Error::InvalidArgument(
            "invalid restart policy: maximum retry count can not be negative".into(),
        ));
    }
    let policy = match p.name.as_str() {
        "" | "no" => Policy::No,
        "on-failure" => Policy::OnFailure {
            max: p.maximum_retry_count,
        },
        "always" => Policy::Always,
        "unless-stopped" => Policy::UnlessStopped,
        other => {
            return Err(Error::InvalidArgument(format!(
                "invalid restart policy: {other}"
            )))
        }
    };
    if p.maximum_retry_count > 0 && !matches!(policy, Policy::OnFailure { .. }) {
        return Err(Error::InvalidArgument(format!(
            "invalid restart policy: maximum retry count can only be used with 'on-failure' (got '{}')",
            p.name
        )));
    }
    Ok(policy)
}

/// Whether a container that ended with `exit_code` after `restart_count` restarts is
/// restarted. A stop or kill through the API prevents it.
pub fn should_restart(
    policy: Policy,
    exit_code: i32,
    restart_count: i32,
    stopped_by_user: bool,
) -> bool {
    if stopped_by_user {
        return false;
    }
    match policy {
        Policy::No => false,
        Policy::Always | Policy::UnlessStopped => true,
        Policy::OnFailure { max } => exit_code != 0 && (max <= 0 || restart_count < max),
    }
}

/// Docker's backoff: the next delay given the previous one (None: no restart yet) and
/// how long the container ran.
pub fn next_delay(previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        Some(p) if ran < RESET_AFTER => (p * 2).min(MAX_DELAY),
        _ => INITIAL_DELAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(name: &str, max: i32) -> RestartPolicy {
        RestartPolicy {
            name: name.into(),
            maximum_retry_count: max,
        }
    }

    #[test]
    fn policies_validate_like_docker() {
        assert_eq!(parse(None).unwrap(), Policy::No);
        assert_eq!(parse(Some(&rp("", 0))).unwrap(), Policy::No);
        assert_eq!(parse(Some(&rp("no", 0))).unwrap(), Policy::No);
        assert_eq!(
            parse(Some(&rp("on-failure", 3))).unwrap(),
            Policy::OnFailure { max: 3 }
        );
        assert_eq!(parse(Some(&rp("always", 0))).unwrap(), Policy::Always);
        assert_eq!(
            parse(Some(&rp("unless-stopped", 0))).unwrap(),
            Policy::UnlessStopped
        );
        assert_eq!(
            parse(Some(&rp("sometimes", 0))).unwrap_err().to_string(),
            "invalid restart policy: sometimes"
        );
        assert!(parse(Some(&rp("always", 2))).is_err());
        assert!(parse(Some(&rp("on-failure", -1))).is_err());
    }

    #[test]
    fn decisions() {
        assert!(!should_restart(Policy::No, 1, 0, false));
        assert!(should_restart(Policy::Always, 0, 9, false));
        assert!(!should_restart(Policy::Always, 0, 0, true));
        assert!(should_restart(Policy::UnlessStopped, 0, 0, false));
        let of = Policy::OnFailure { max: 2 };
        assert!(!should_restart(of, 0, 0, false));
        assert!(should_restart(of, 1, 1, false));
        assert!(!should_restart(of, 1, 2, false));
        assert!(should_restart(Policy::OnFailure { max: 0 }, 1, 100, false));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let short = Duration::from_secs(1);
        assert_eq!(next_delay(None, short), INITIAL_DELAY);
        assert_eq!(
            next_delay(Some(INITIAL_DELAY), short),
            Duration::from_millis(200)
        );
        assert_eq!(next_delay(Some(Duration::from_secs(50)), short), MAX_DELAY);
        assert_eq!(
            next_delay(Some(Duration::from_secs(8)), Duration::from_secs(10)),
            INITIAL_DELAY
        );
    }
}
