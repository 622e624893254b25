//! Signal names as Docker accepts them: `KILL`, `SIGKILL`, `sigkill`, `9`, `RTMIN+3`.
use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};

/// The signal number for `raw`; InvalidArgument naming it otherwise.
pub fn parse(raw: &str) -> Result<i32> {
    let invalid = || Error::InvalidArgument(format!("invalid signal: {raw}"));
    let trimmed = raw.trim();
    if let Ok(n) = trimmed.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(invalid())
        };
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if name.is_empty() {
        return Err(invalid());
    }
    if let Some(rt) = name.strip_prefix("RTMIN") {
        let off = if rt.is_empty() {
            0
        } else {
            rt.strip_prefix('+')
                .and_then(|n| n.parse::<i32>().ok())
                .ok_or_else(invalid)?
        };
        let n = libc::SIGRTMIN() + off;
        return if n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(invalid())
        };
    }
    if let Some(rt) = name.strip_prefix("RTMAX") {
        let off = if rt.is_empty() {
            0
        } else {
            rt.strip_prefix('-')
                .and_then(|n| n.parse::<i32>().ok())
                .ok_or_else(invalid)?
        };
        let n = libc::SIGRTMAX() - off;
        return if n >= libc::SIGRTMIN() {
            Ok(n)
        } else {
            Err(invalid())
        };
    }
    Signal::from_str(&format!("SIG{name}"))
        .map(|s| s as i32)
        .map_err(|_| invalid())
}

/// `raw`, or `default` when `raw` is empty.
pub fn parse_or(raw: &str, default: i32) -> Result<i32> {
    if raw.trim().is_empty() {
        Ok(default)
    } else {
        parse(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("SIGKILL").unwrap(), 9);
        assert_eq!(parse("sigkill").unwrap(), 9);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("HUP").unwrap(), 1);
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("usr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse("RTMIN").unwrap(), libc::SIGRTMIN());
        assert_eq!(parse("SIGRTMIN+3").unwrap(), libc::SIGRTMIN() + 3);
        assert_eq!(parse("RTMAX-1").unwrap(), libc::SIGRTMAX() - 1);
        assert_eq!(parse_or("", 15).unwrap(), 15);
        assert_eq!(parse_or("INT", 15).unwrap(), 2);
    }

    #[test]
    fn bad_signals_are_named() {
        for bad in ["FOO", "SIG", "0", "-1", "999", "RTMIN+x", "KILL9"] {
            let err = parse(bad).unwrap_err().to_string();
            assert_eq!(err, format!("invalid signal: {bad}"));
        }
    }
}
