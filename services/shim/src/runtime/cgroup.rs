//! Moves a process into its cgroup in every mounted hierarchy. The supervisor creates
//! the directories; the runtime only joins the ones that exist.
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mounted directory of the file system (a cgroup path for cgroup mounts).
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    /// Super block options (the cgroup v1 controllers).
    pub super_opts: String,
}

/// Parses /proc/self/mountinfo; mount points have `\040`-style octal escapes.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountInfo {
                root: unescape(fields.get(3)?),
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                fstype: fields.get(sep + 1)?.to_string(),
                super_opts: fields.get(sep + 3).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `cgroup.procs` files of `cgroups_path` in every cgroup hierarchy that has it.
pub fn procs_files(mounts: &[MountInfo], cgroups_path: &str) -> Vec<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    let mut files: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| m.mount_point.join(rel).join("cgroup.procs"))
        .collect();
    files.dedup();
    files
}

/// The `cgroup.procs` files of the cgroups listed in a `/proc/<pid>/cgroup` text: for
/// each `id:controllers:path` line, the hierarchy mounted with those controllers (v1) or
/// the cgroup2 mount (empty controllers).
pub fn procs_files_of(proc_cgroup: &str, mounts: &[MountInfo]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let mount = mounts.iter().find(|m| {
            if ctrls.is_empty() {
                m.fstype == "cgroup2"
            } else {
                m.fstype == "cgroup"
                    && ctrls
                        .split(',')
                        .all(|c| m.super_opts.split(',').any(|o| o == c))
            }
        });
        let Some(m) = mount else { continue };
        let rel = path
            .strip_prefix(m.root.as_str())
            .filter(|_| m.root != "/")
            .unwrap_or(path)
            .trim_start_matches('/');
        let file = m.mount_point.join(rel).join("cgroup.procs");
        if !files.contains(&file) {
            files.push(file);
        }
    }
    files
}

/// Writes `pid` into the cgroup in every hierarchy where the supervisor created it.
pub fn join(pid: i32, cgroups_path: &str) -> Result<()> {
    if cgroups_path.is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "read /proc/self/mountinfo".into())?;
    for file in procs_files(&parse_mountinfo(&text), cgroups_path) {
        if Path::new(&file).exists() {
            std::fs::write(&file, pid.to_string()).ctx(|| format!("write {}", file.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpu,cpuacct
40 1 0:50 / /mnt/with\\040space rw - ext4 /dev/vda rw
";

    #[test]
    fn parses_mountinfo_and_finds_cgroup_files() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 5);
        assert_eq!(m[4].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[2].fstype, "cgroup2");
        let files = procs_files_of("12:pids:/berth-x/c1\n3:cpu,cpuacct:/berth-x/c1\n0::/\n", &m);
        assert_eq!(
            files,
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/berth-x/c1/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/unified/cgroup.procs")
            ]
        );
        let files = procs_files(&m, "/berth-x/c1");
        assert_eq!(
            files,
            vec![
                PathBuf::from("/sys/fs/cgroup/unified/berth-x/c1/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/berth-x/c1/cgroup.procs")
            ]
        );
    }
}
