//! `berth events` / `berth system events`: the engine's merged event stream, printed as
//! Docker prints it (one line per event, or each event through `--format`).
use std::io::Write;
use std::time::SystemTime;

use anyhow::Result;
use berth_proto::engine::v1::{EventFilter, EventMessage, EventsRequest};
use serde_json::{json, Value};

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
    let req = EventsRequest {
        since_time_nano: time("--since", &args.since)?,
        until_time_nano: time("--until", &args.until)?,
        filters,
    };
    let mut stream = engine.events(req).await?.into_inner();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while let Some(e) = stream.message().await? {
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
    Ok(0)
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
