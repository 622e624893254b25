//! RFC 3339 timestamps with nanoseconds in UTC, without a date-time crate.

/// Formats nanoseconds since the Unix epoch as `2006-01-02T15:04:05.999999999Z`.
pub fn format_unix_nano(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The wall clock as nanoseconds since the Unix epoch.
pub fn now_unix_nano() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_unix_nano(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_unix_nano(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            format_unix_nano(1_798_761_599_999_999_999),
            "2026-12-31T23:59:59.999999999Z"
        );
        assert_eq!(format_unix_nano(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            format_unix_nano(4_107_542_400_000_000_000),
            "2100-03-01T00:00:00.000000000Z"
        );
    }
}
