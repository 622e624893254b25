//! Registry credentials in a Docker-compatible config file: `$BERTH_CONFIG/config.json`, else
//! `~/.berth/config.json`, shaped like `~/.docker/config.json`
//! (`{"auths": {"127.0.0.1:5000": {"auth": base64("user:pass")}}}`).
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use berth_proto::image::v1::RegistryAuth;
use serde_json::{json, Map, Value};

/// Docker Hub's key in the config file.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (padding optional, whitespace ignored); None when malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The `auth` value of a config entry.
pub fn encode_auth(username: &str, password: &str) -> String {
    base64_encode(format!("{username}:{password}").as_bytes())
}

/// Splits an `auth` value into username and password.
pub fn decode_auth(auth: &str) -> Option<(String, String)> {
    let text = String::from_utf8(base64_decode(auth)?).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The registry host a reference names, Docker's way: the first path component when it
/// has a `.` or `:` or is `localhost`, else Docker Hub (`docker.io`).
pub fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

/// A server as given to `login`/`logout` or a key in the file, without scheme, path or
/// trailing slash: `https://127.0.0.1:5000/` → `127.0.0.1:5000`.
pub fn host_of(server: &str) -> String {
    let s = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    s.split('/').next().unwrap_or_default().to_string()
}

/// The config file key for a server or registry host (Docker Hub's is its v1 URL).
pub fn config_key(server: &str) -> String {
    let host = host_of(server);
    if is_docker_hub(&host) {
        DOCKER_HUB_KEY.to_string()
    } else {
        host
    }
}

/// What the image store is told for a server: the host, empty for Docker Hub.
pub fn registry_host(server: &str) -> String {
    let host = host_of(server);
    if is_docker_hub(&host) {
        String::new()
    } else {
        host
    }
}

/// `$BERTH_CONFIG/config.json`, else `~/.berth/config.json`.
pub fn config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".berth/config.json")
}

/// The whole file (other keys are kept); an empty object when it does not exist.
pub fn load(path: &Path) -> Result<Value> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(json!({})),
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            if !v.is_object() {
                bail!("{} is not a JSON object", path.display());
            }
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Writes `config` to `path` with mode 0600, through a temporary file and a rename.
pub fn save(path: &Path, config: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config"),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        let mut text = serde_json::to_string_pretty(config)?;
        text.push('\n');
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Adds (or replaces) the entry for `server`.
pub fn store(path: &Path, server: &str, username: &str, password: &str) -> Result<()> {
    let mut config = load(path)?;
    let obj = config.as_object_mut().expect("load returns an object");
    let auths = obj
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths.as_object_mut().expect("an object");
    let key = config_key(server);
    // Drop other spellings of the same server (`https://host/`).
    auths.retain(|k, _| k == &key || config_key(k) != key);
    auths.insert(key, json!({ "auth": encode_auth(username, password) }));
    save(path, &config)
}

/// Removes the entry for `server`; false when there was none.
pub fn remove(path: &Path, server: &str) -> Result<bool> {
    let mut config = load(path)?;
    let key = config_key(server);
    let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| config_key(k) != key);
    if auths.len() == before {
        return Ok(false);
    }
    save(path, &config)?;
    Ok(true)
}

/// The credentials stored for `registry` (a host as [`registry_of`] gives), if any.
pub fn lookup_in(config: &Value, registry: &str) -> Option<RegistryAuth> {
    let key = config_key(registry);
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.get(&key).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| config_key(k) == key)
            .map(|e| e.1)
    })?;
    let mut auth = RegistryAuth::default();
    if let Some((user, pass)) = entry
        .get("auth")
        .and_then(Value::as_str)
        .and_then(decode_auth)
    {
        auth.username = user;
        auth.password = pass;
    }
    if let Some(u) = entry.get("username").and_then(Value::as_str) {
        auth.username = u.to_string();
    }
    if let Some(p) = entry.get("password").and_then(Value::as_str) {
        auth.password = p.to_string();
    }
    if let Some(t) = entry.get("identitytoken").and_then(Value::as_str) {
        auth.identity_token = t.to_string();
    }
    (auth != RegistryAuth::default()).then_some(auth)
}

/// The credentials for the registry `reference` names, from the user's config file. An
/// unreadable file means no credentials (the registry then answers as it does).
pub fn auth_for(reference: &str) -> Option<RegistryAuth> {
    let config = load(&config_path()).ok()?;
    lookup_in(&config, &registry_of(reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
        }
        assert!(base64_decode("a*b").is_none());
        assert_eq!(encode_auth("user", "pa:ss"), "dXNlcjpwYTpzcw==");
        assert_eq!(
            decode_auth("dXNlcjpwYTpzcw==").unwrap(),
            ("user".into(), "pa:ss".into())
        );
        assert!(decode_auth("bm9jb2xvbg==").is_none()); // "nocolon"
    }

    #[test]
    fn registries_and_keys() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/bb:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/a"), "localhost");
        assert_eq!(registry_of("ghcr.io/o/a@sha256:00"), "ghcr.io");
        assert_eq!(config_key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(config_key(""), DOCKER_HUB_KEY);
        assert_eq!(config_key(DOCKER_HUB_KEY), DOCKER_HUB_KEY);
        assert_eq!(config_key("https://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(registry_host(DOCKER_HUB_KEY), "");
        assert_eq!(registry_host("http://reg:5000"), "reg:5000");
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        assert!(!remove(&path, "127.0.0.1:5000").unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"credsStore": "x", "auths": {"other:1": {"auth": "eDp5"}}}"#,
        )
        .unwrap();
        store(&path, "127.0.0.1:5000", "user", "pass").unwrap();
        store(&path, "docker.io", "hub", "secret").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let config = load(&path).unwrap();
        assert_eq!(config["credsStore"], "x");
        assert_eq!(
            config["auths"]["127.0.0.1:5000"]["auth"],
            encode_auth("user", "pass")
        );
        assert_eq!(
            config["auths"][DOCKER_HUB_KEY]["auth"],
            encode_auth("hub", "secret")
        );
        let auth = lookup_in(&config, &registry_of("127.0.0.1:5000/bb:1")).unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("user", "pass")
        );
        let hub = lookup_in(&config, &registry_of("busybox")).unwrap();
        assert_eq!(hub.username, "hub");
        assert!(lookup_in(&config, "elsewhere:1").is_none());
        assert!(remove(&path, "https://127.0.0.1:5000").unwrap());
        assert!(!remove(&path, "127.0.0.1:5000").unwrap());
        let config = load(&path).unwrap();
        assert!(config["auths"].get("127.0.0.1:5000").is_none());
        assert!(config["auths"].get("other:1").is_some());
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
