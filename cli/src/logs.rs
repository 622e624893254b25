//! `berth logs`.
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use berth_proto::engine::v1::ContainerLogsRequest;
use berth_proto::logs::v1::LogStream;

use crate::args::LogsArgs;
use crate::client::Engine;
use crate::parse;

/// The RFC 3339 nano timestamp `-t` prefixes lines with (always 9 digits, like Docker).
pub fn timestamp(unix_nano: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(unix_nano.max(0) as u64);
    humantime::format_rfc3339_nanos(t).to_string()
}

pub async fn logs(mut engine: Engine, args: LogsArgs) -> Result<i32> {
    let now = SystemTime::now();
    let since = args
        .since
        .as_deref()
        .map(|s| parse::time_arg("--since", s, now))
        .transpose()?
        .unwrap_or(0);
    let until = args
        .until
        .as_deref()
        .map(|s| parse::time_arg("--until", s, now))
        .transpose()?
        .unwrap_or(0);
    let req = ContainerLogsRequest {
        id: args.container.clone(),
        follow: args.follow,
        tail: parse::tail(&args.tail)?,
        since_unix_nano: since,
        until_unix_nano: until,
    };
    let mut stream = engine.container_logs(req).await?.into_inner();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut err = stderr.lock();
    let result: Result<()> = async {
        while let Some(entry) = stream.message().await? {
            let is_err = entry.stream == LogStream::Stderr as i32;
            if is_err {
                // Keep the order of the two streams: what went to stdout goes out first.
                out.flush()?;
            }
            let w: &mut dyn Write = if is_err { &mut err } else { &mut out };
            if args.timestamps {
                w.write_all(timestamp(entry.time_unix_nano).as_bytes())?;
                w.write_all(b" ")?;
            }
            w.write_all(&entry.line)?;
            if args.follow {
                w.flush()?;
            }
        }
        out.flush()?;
        Ok(())
    }
    .await;
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(0),
        Err(e) => Err(e),
        Ok(()) => Ok(0),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(
            timestamp(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            timestamp(1_700_000_000_000_000_000),
            "2023-11-14T22:13:20.000000000Z"
        );
    }
}
