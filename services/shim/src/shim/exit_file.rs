//! `<bundle>/exit.json` (and `<bundle>/exec-<exec id>.json` for an exec), written once
//! when the process has ended.
use std::path::Path;

use crate::error::{Context, Result};
use crate::rfc3339::format_unix_nano;
use crate::runtime::cgroup;

pub fn write(
    bundle: &Path,
    name: &str,
    exit_code: i32,
    oom_killed: bool,
    finished_unix_nano: i64,
) -> Result<()> {
    let body = serde_json::json!({
        "exit_code": exit_code,
        "oom_killed": oom_killed,
        "finished_at": format_unix_nano(finished_unix_nano),
    });
    let tmp = bundle.join(format!(".{name}.tmp"));
    let dest = bundle.join(name);
    std::fs::write(&tmp, format!("{body}\n")).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &dest).ctx(|| format!("rename {} to {}", tmp.display(), dest.display()))
}

/// True when the kernel's OOM killer killed something in the container's memory cgroup
/// (v1 `memory.oom_control`, v2 `memory.events`).
pub fn oom_killed(cgroups_path: &str) -> bool {
    if cgroups_path.is_empty() {
        return false;
    }
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let rel = cgroups_path.trim_start_matches('/');
    cgroup::parse_mountinfo(&text)
        .iter()
        .filter(|m| m.fstype.starts_with("cgroup"))
        .any(|m| {
            ["memory.oom_control", "memory.events"].iter().any(|f| {
                std::fs::read_to_string(m.mount_point.join(rel).join(f)).is_ok_and(|t| {
                    t.lines().any(|l| {
                        l.strip_prefix("oom_kill ")
                            .and_then(|n| n.trim().parse::<u64>().ok())
                            .is_some_and(|n| n > 0)
                    })
                })
            })
        })
}
