//! `berth events` / `berth system events`: the engine's merged event stream, printed as
//! Docker prints it (one line per event, or each event through `--format`). When the
//! engine goes away mid-stream (a restart), the command waits for it and resumes after
//! the last event it printed.
use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use berth_proto::engine::v1::{EventFilter, EventMessage, EventsRequest, VersionRequest};
use serde_json::{json, Value};
use tonic::Code;

use crate::args::EventsArgs;
use crate::client::Engine;
use crate::{format, logs, parse};

/// Docker's default line: `<time> <type> <action> <actor> (<k=v>, ...)`, attributes
/// sorted by key.
pub fn line(e: &EventMessage) -> String {
    let mut attrs: Vec<(&String, &String)> = e.attributes.iter().collect();
    attrs.sort();
    let mut out = format!(
        "{} {} {} {}",
        logs::timestamp(e.time_nano),
        e.r#type,
        e.action,
        e.actor_id
    );
    if !attrs.is_empty() {
        let list: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(" ({})", list.join(", ")));
    }
    out
}

/// The event as Docker's API returns it (`{{json .}}`), with the legacy `status`, `id`
/// and `from` fields that Docker fills for containers and images.
pub fn json(e: &EventMessage) -> Value {
    let attributes: serde_json::Map<String, Value> = e
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut v = json!({
        "Type": e.r#type,
        "Action": e.action,
        "Actor": { "ID": e.actor_id, "Attributes": attributes },
        "scope": e.scope,
        "time": e.time_nano / 1_000_000_000,
        "timeNano": e.time_nano,
    });
    if e.r#type == "container" || e.r#type == "image" {
        v["status"] = json!(e.action);
        v["id"] = json!(e.actor_id);
        if let Some(image) = e.attributes.get("image") {
            v["from"] = json!(image);
        }
    }
    v
}

/// How long `berth events` keeps trying to reach an engine that went away.
const RESUME_PATIENCE: Duration = Duration::from_secs(30);

/// What identifies an event among those with the same time (to skip it on a resume).
fn key(e: &EventMessage) -> (String, String, String, String) {
    (
        e.service.clone(),
        e.r#type.clone(),
        e.action.clone(),
        e.actor_id.clone(),
    )
}

/// Where a resumed stream picks up: after the last event printed, skipping the ones
/// already printed at that very nanosecond.
#[derive(Default)]
struct Position {
    time_nano: i64,
    printed_at_time: HashSet<(String, String, String, String)>,
}

impl Position {
    fn is_new(&self, e: &EventMessage) -> bool {
        e.time_nano > self.time_nano
            || (e.time_nano == self.time_nano && !self.printed_at_time.contains(&key(e)))
    }

    fn advance(&mut self, e: &EventMessage) {
        if e.time_nano > self.time_nano {
            self.time_nano = e.time_nano;
            self.printed_at_time.clear();
        }
        self.printed_at_time.insert(key(e));
    }
}

/// A broken stream (the engine died or restarts), as opposed to a refused request.
fn engine_went_away(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    )
}

pub async fn events(mut engine: Engine, args: EventsArgs) -> Result<i32> {
    let now = SystemTime::now();
    let time = |flag: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|s| parse::time_arg(flag, s, now))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let mut filters = Vec::new();
    for value in &args.filter {
        let (key, value) = parse::key_value("--filter", value)?;
        filters.push(EventFilter { key, value });
    }
    let template = args
        .format
        .as_deref()
        .map(|f| format::Template::parse(&format::unescape_format(f)))
        .transpose()?;
    let mut req = EventsRequest {
        since_time_nano: time("--since", &args.since)?,
        until_time_nano: time("--until", &args.until)?,
        filters,
    };
    // Without --since only new events; a resume starts from here at the earliest.
    let started = parse::system_time_nanos(now);
    let mut position = Position::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let broken = match engine.events(req.clone()).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(e)) => {
                            if !position.is_new(&e) {
                                continue;
                            }
                            position.advance(&e);
                            let text = match &template {
                                Some(t) => t.render(&json(&e))?,
                                None => line(&e),
                            };
                            let written = writeln!(out, "{text}").and_then(|()| out.flush());
                            if let Err(e) = written {
                                if e.kind() == std::io::ErrorKind::BrokenPipe {
                                    return Ok(0);
                                }
                                return Err(e.into());
                            }
                        }
                        Ok(None) => return Ok(0),
                        Err(status) if engine_went_away(&status) => break status,
                        Err(status) => return Err(status.into()),
                    }
                }
            }
            Err(status) => return Err(status.into()),
        };
        // The engine went away mid-stream: every service keeps its own log, so the same
        // events are there once it is back.
        let from = position.time_nano.max(req.since_time_nano).max(started);
        eprintln!(
            "berth: the event stream broke ({}); resuming after {}",
            broken.message(),
            logs::timestamp(from)
        );
        req.since_time_nano = from;
        wait_for_engine(&mut engine).await?;
    }
}

/// Waits until the engine answers again, for up to [`RESUME_PATIENCE`].
async fn wait_for_engine(engine: &mut Engine) -> Result<()> {
    let deadline = tokio::time::Instant::now() + RESUME_PATIENCE;
    loop {
        match engine.version(VersionRequest {}).await {
            Ok(_) => return Ok(()),
            Err(status) if tokio::time::Instant::now() >= deadline => {
                bail!(
                    "the engine did not come back within {} s: {}",
                    RESUME_PATIENCE.as_secs(),
                    status.message()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> EventMessage {
        EventMessage {
            r#type: "container".into(),
            action: "die".into(),
            actor_id: "3f2a".into(),
            attributes: [
                ("name".to_string(), "web".to_string()),
                ("image".to_string(), "busybox".to_string()),
                ("exitCode".to_string(), "0".to_string()),
            ]
            .into_iter()
            .collect(),
            time_nano: 1_700_000_000_123_456_789,
            scope: "local".into(),
            service: "supervisor".into(),
        }
    }

    #[test]
    fn lines_look_like_dockers() {
        assert_eq!(
            line(&event()),
            "2023-11-14T22:13:20.123456789Z container die 3f2a (exitCode=0, image=busybox, name=web)"
        );
    }

    #[test]
    fn a_resume_skips_what_was_printed() {
        let mut position = Position::default();
        let first = event();
        assert!(position.is_new(&first));
        position.advance(&first);
        assert!(!position.is_new(&first));
        // Same nanosecond, another event: new.
        let mut twin = event();
        twin.action = "destroy".into();
        assert!(position.is_new(&twin));
        let mut older = event();
        older.time_nano -= 1;
        older.action = "start".into();
        assert!(!position.is_new(&older));
    }

    #[test]
    fn json_has_dockers_fields() {
        let v = json(&event());
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Action"], "die");
        assert_eq!(v["Actor"]["ID"], "3f2a");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "0");
        assert_eq!(v["status"], "die");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["time"], 1_700_000_000);
        assert_eq!(v["timeNano"], 1_700_000_000_123_456_789i64);
        let t =
            format::Template::parse("{{.Type}} {{.Action}} {{.Actor.Attributes.name}}").unwrap();
        assert_eq!(t.render(&v).unwrap(), "container die web");
    }
}
