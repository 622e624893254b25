//! `berth info` and `berth system df`: facts about the host and the engine, counts from
//! the supervisor, image store and volume service, and sizes walked on disk.
use std::{collections::HashSet, path::Path};

use berth_common::{config::FileConfig, Config};
use berth_proto::{
    engine::v1::{DiskUsageResponse, DiskUsageRow, SystemInfoResponse, VersionResponse},
    image::v1::ListImagesRequest,
    supervisor::v1::{Container, ContainerStatus},
    volume::v1::ListVolumesRequest,
};
use tonic::Status;

use crate::engine::{upstream, Engine};

/// "2" when the unified hierarchy is mounted at /sys/fs/cgroup, else "1".
pub fn cgroup_version() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

/// MemTotal of /proc/meminfo, in bytes.
pub fn mem_total(meminfo: &str) -> i64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// PRETTY_NAME of os-release, unquoted.
pub fn pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
}

fn operating_system() -> String {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| pretty_name(&t))
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Total size of the files under `path` (symlinks not followed, counted by their own size);
/// 0 when it does not exist. Unreadable entries are skipped.
pub fn dir_size(path: &Path) -> i64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len() as i64;
    }
    let mut total = 0i64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len() as i64;
            }
        }
    }
    total
}

fn is_running(c: &Container) -> bool {
    matches!(
        c.state.as_ref().map(|s| s.status()),
        Some(ContainerStatus::Running | ContainerStatus::Restarting)
    )
}

fn is_paused(c: &Container) -> bool {
    c.state.as_ref().map(|s| s.status()) == Some(ContainerStatus::Paused)
}

/// Reclaimable is the size that nothing active uses.
fn row(total: usize, active: usize, size: i64, reclaimable: i64) -> DiskUsageRow {
    DiskUsageRow {
        total: total as i64,
        active: active as i64,
        size,
        reclaimable,
    }
}

impl Engine {
    pub async fn info_facts(&self, version: VersionResponse) -> Result<SystemInfoResponse, Status> {
        let containers = self.all_containers().await?;
        let images = self
            .clients
            .images
            .clone()
            .list_images(ListImagesRequest { all: false })
            .await
            .map_err(upstream("list images"))?
            .into_inner()
            .images;
        let running = containers.iter().filter(|c| is_running(c)).count() as i64;
        let paused = containers.iter().filter(|c| is_paused(c)).count() as i64;
        let total = containers.len() as i64;
        // The same file and environment the engine started from.
        let file = FileConfig::load().unwrap_or_default();
        let config = Config::from_file(&file);
        let (logging_driver, _) = file.logs.effective("", &Default::default());
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Ok(SystemInfoResponse {
            version: Some(version),
            containers: total,
            containers_running: running,
            containers_paused: paused,
            containers_stopped: total - running - paused,
            images: images.len() as i64,
            root_dir: config.root.display().to_string(),
            run_dir: config.run_dir.display().to_string(),
            cgroup_version: cgroup_version().to_string(),
            cgroup_driver: "cgroupfs".to_string(),
            // Only the built-in runtime is wired up (see the supervisor's spec).
            runtimes: vec!["berth".to_string()],
            default_runtime: "berth".to_string(),
            logging_driver,
            ncpu,
            mem_total: mem_total(&meminfo),
            name: hostname(),
            instance: config.instance,
            storage_driver: "overlay2".to_string(),
            operating_system: operating_system(),
        })
    }

    pub async fn measure_disk_usage(&self) -> Result<DiskUsageResponse, Status> {
        let containers = self.all_containers().await?;
        let images = self
            .clients
            .images
            .clone()
            .list_images(ListImagesRequest { all: true })
            .await
            .map_err(upstream("list images"))?
            .into_inner()
            .images;
        let volumes = self
            .clients
            .volumes
            .clone()
            .list_volumes(ListVolumesRequest::default())
            .await
            .map_err(upstream("list volumes"))?
            .into_inner()
            .volumes;

        let used_images: HashSet<&str> = containers
            .iter()
            .filter_map(|c| c.spec.as_ref())
            .map(|s| s.image_id.as_str())
            .collect();
        let active_images: Vec<_> = images
            .iter()
            .filter(|i| used_images.contains(i.id.as_str()))
            .collect();
        let images_size: i64 = images.iter().map(|i| i.size).sum();
        let active_size: i64 = active_images.iter().map(|i| i.size).sum();
        let images_row = row(
            images.len(),
            active_images.len(),
            images_size,
            images_size - active_size,
        );

        // (upper dir, running) per container; volume (mountpoint, in use).
        let uppers: Vec<(String, bool)> = containers
            .iter()
            .map(|c| {
                let upper = c
                    .spec
                    .as_ref()
                    .and_then(|s| s.rootfs.as_ref())
                    .map(|r| r.upper_dir.clone())
                    .unwrap_or_default();
                (upper, is_running(c) || is_paused(c))
            })
            .collect();
        let vols: Vec<(String, bool)> = volumes
            .iter()
            .map(|v| (v.mountpoint.clone(), !v.used_by.is_empty()))
            .collect();
        let (containers_row, volumes_row) = tokio::task::spawn_blocking(move || {
            let sized = |items: &[(String, bool)]| -> DiskUsageRow {
                let mut size = 0;
                let mut idle = 0;
                for (path, active) in items {
                    let s = if path.is_empty() {
                        0
                    } else {
                        dir_size(Path::new(path))
                    };
                    size += s;
                    if !active {
                        idle += s;
                    }
                }
                let active = items.iter().filter(|(_, a)| *a).count();
                row(items.len(), active, size, idle)
            };
            (sized(&uppers), sized(&vols))
        })
        .await
        .map_err(|e| Status::internal(format!("measure disk usage: {e}")))?;

        Ok(DiskUsageResponse {
            images: Some(images_row),
            containers: Some(containers_row),
            volumes: Some(volumes_row),
            build_cache: Some(DiskUsageRow::default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_os_release() {
        assert_eq!(
            mem_total("MemTotal:       16318440 kB\nMemFree: 1 kB\n"),
            16318440 * 1024
        );
        assert_eq!(mem_total(""), 0);
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\n").as_deref(),
            Some("Ubuntu 22.04.4 LTS")
        );
        assert!(["1", "2"].contains(&cgroup_version()));
    }

    #[test]
    fn dir_size_sums_files_without_following_links() {
        let dir = std::env::temp_dir().join(format!("berth-info-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/f"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.join("a/b/g"), vec![0u8; 234]).unwrap();
        std::os::unix::fs::symlink("/usr", dir.join("link")).unwrap();
        let size = dir_size(&dir);
        assert!((1234..1234 + 64).contains(&size), "{size}");
        assert_eq!(dir_size(&dir.join("missing")), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
