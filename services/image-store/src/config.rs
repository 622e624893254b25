//! Image config documents: reading the fields berth shows, and applying Dockerfile-like
//! changes (`docker import -c`) to a new config.
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The parts of an image config (Docker's or OCI's) berth reads. Unknown fields are kept in
/// the stored blob and ignored here.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigDoc {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    pub volumes: Option<BTreeMap<String, Value>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: Option<String>,
}

impl ConfigDoc {
    pub fn parse(bytes: &[u8]) -> Result<ConfigDoc> {
        let doc: ConfigDoc = serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidArchive(format!("invalid image config: {e}")))?;
        for d in &doc.rootfs.diff_ids {
            if !is_digest(d) {
                return Err(Error::InvalidArchive(format!(
                    "invalid diff ID {d:?} in image config"
                )));
            }
        }
        Ok(doc)
    }
}

/// True for "sha256:<64 lower-case hex>".
pub fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(crate::reference::is_sha256_hex)
}

/// Applies one Dockerfile-like instruction to the `config` object of an image config.
/// Supported: CMD, ENTRYPOINT (JSON or shell form), ENV, LABEL, WORKDIR, USER, EXPOSE,
/// VOLUME, STOPSIGNAL.
pub fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidChange {
        change: change.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = change.trim();
    let (keyword, rest) = match trimmed.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim()),
        None => (trimmed, ""),
    };
    if rest.is_empty() {
        return Err(bad("missing argument"));
    }
    match keyword.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), strings(&command_form(rest)));
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), strings(&command_form(rest)));
        }
        "ENV" => {
            let pairs = key_values(rest).map_err(|e| bad(&e))?;
            let env = config
                .entry("Env")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !env.is_array() {
                *env = Value::Array(Vec::new());
            }
            let list = env.as_array_mut().expect("array");
            for (k, v) in pairs {
                let prefix = format!("{k}=");
                list.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
                list.push(Value::String(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let pairs = key_values(rest).map_err(|e| bad(&e))?;
            let labels = object(config, "Labels");
            for (k, v) in pairs {
                labels.insert(k, Value::String(v));
            }
        }
        "WORKDIR" => {
            let dir = words(rest).map_err(|e| bad(&e))?.join(" ");
            let dir = if dir.starts_with('/') {
                dir
            } else {
                let base = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/");
                format!("{}/{dir}", base.trim_end_matches('/'))
            };
            config.insert("WorkingDir".into(), Value::String(dir));
        }
        "USER" => {
            config.insert("User".into(), Value::String(rest.to_string()));
        }
        "EXPOSE" => {
            let ports = words(rest).map_err(|e| bad(&e))?;
            let exposed = object(config, "ExposedPorts");
            for p in ports {
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let proto = proto.to_ascii_lowercase();
                let valid_port = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
                let ok = match port.split_once('-') {
                    Some((a, b)) => valid_port(a) && valid_port(b),
                    None => valid_port(port),
                };
                if !ok || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                    return Err(bad(&format!("invalid port {p:?}")));
                }
                exposed.insert(format!("{port}/{proto}"), Value::Object(Map::new()));
            }
        }
        "VOLUME" => {
            let vols = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(v) => v,
                Err(_) => words(rest).map_err(|e| bad(&e))?,
            };
            let volumes = object(config, "Volumes");
            for v in vols {
                volumes.insert(v, Value::Object(Map::new()));
            }
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), Value::String(rest.to_string()));
        }
        other => return Err(bad(&format!("unsupported instruction {other:?}"))),
    }
    Ok(())
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

fn object<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = config
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("object")
}

/// JSON array form, or shell form wrapped in `/bin/sh -c` (as Docker does when the JSON
/// does not parse).
fn command_form(rest: &str) -> Vec<String> {
    if rest.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), rest.into()]
}

/// `A=1 B="two words"` or the legacy `KEY value with spaces`.
fn key_values(rest: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| "expected KEY=VALUE or KEY VALUE".to_string())?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words(rest)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("expected KEY=VALUE, got {w:?}")),
        })
        .collect()
}

/// Splits like a shell: whitespace separates words; quotes group; backslash escapes.
fn words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(chars.next().ok_or("trailing backslash")?);
                in_word = true;
            }
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated quote".into()),
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => {
                            cur.push(chars.next().ok_or("trailing backslash")?)
                        }
                        Some(x) => cur.push(x),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn applied(changes: &[&str]) -> Value {
        let mut config = Map::new();
        for c in changes {
            apply_change(&mut config, c).unwrap_or_else(|e| panic!("{c}: {e}"));
        }
        Value::Object(config)
    }

    #[test]
    fn applies_docker_import_changes() {
        let c = applied(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/run --flag",
            "ENV A=1 B=\"two words\"",
            "ENV LEGACY some value",
            "ENV A=3",
            "WORKDIR /app",
            "WORKDIR sub",
            "USER nobody:nogroup",
            "LABEL version=1.0 \"com.example.x\"=y",
            "EXPOSE 80 53/udp 8000-8001",
            "VOLUME /data",
            "STOPSIGNAL SIGINT",
            "cmd echo lower",
        ]);
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo lower"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/run --flag"]));
        assert_eq!(c["Env"], json!(["B=two words", "LEGACY=some value", "A=3"]));
        assert_eq!(c["WorkingDir"], json!("/app/sub"));
        assert_eq!(c["User"], json!("nobody:nogroup"));
        assert_eq!(c["Labels"], json!({"version": "1.0", "com.example.x": "y"}));
        assert_eq!(
            c["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "8000-8001/tcp": {}})
        );
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        assert_eq!(c["StopSignal"], json!("SIGINT"));
        assert_eq!(applied(&[r#"CMD ["sh"]"#])["Cmd"], json!(["sh"]));
    }

    #[test]
    fn refuses_bad_changes_naming_them() {
        for bad in [
            "RUN echo",
            "CMD",
            "EXPOSE http",
            "EXPOSE 80/xyz",
            "ENV A=\"open",
            "LABEL =x",
        ] {
            let mut config = Map::new();
            let err = apply_change(&mut config, bad).expect_err(bad).to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn parses_configs_with_nulls_and_unknown_fields() {
        let doc = ConfigDoc::parse(
            br#"{"architecture":"amd64","os":"linux","config":{"Env":null,"Cmd":["sh"],"Foo":1},
                "rootfs":{"type":"layers","diff_ids":[]},"container_config":{}}"#,
        )
        .unwrap();
        assert_eq!(doc.config.unwrap().cmd.unwrap(), vec!["sh"]);
        assert!(ConfigDoc::parse(br#"{"rootfs":{"diff_ids":["md5:x"]}}"#).is_err());
        assert!(ConfigDoc::parse(b"not json").is_err());
    }
}
