//! `berth info` / `berth system info` and `berth system df`.
use std::io::Write;

use anyhow::Result;
use berth_proto::engine::v1::{
    DiskUsageRequest, DiskUsageResponse, DiskUsageRow, PruneContainersRequest, SystemInfoRequest,
    SystemInfoResponse,
};
use berth_proto::image::v1::PruneImagesRequest;
use berth_proto::network::v1::PruneNetworksRequest;
use berth_proto::volume::v1::PruneVolumesRequest;
use serde_json::{json, Value};

use crate::args::{DfArgs, InfoArgs, SystemPruneArgs};
use crate::client::Engine;
use crate::format;

/// Docker's `units.BytesSize`: binary units, 4 significant digits ("15.56GiB").
pub fn bytes_size(size: i64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = size.max(0) as f64;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", format::go_g(size, 4), UNITS[i])
}

/// `uname -m` names, as `docker info` prints Architecture.
fn machine(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => other,
    }
}

/// The `{{json .}}` view of `info`, with Docker's field names.
pub fn info_json(i: &SystemInfoResponse) -> Value {
    let v = i.version.clone().unwrap_or_default();
    let runtimes: serde_json::Map<String, Value> =
        i.runtimes.iter().map(|r| (r.clone(), json!({}))).collect();
    json!({
        "Containers": i.containers,
        "ContainersRunning": i.containers_running,
        "ContainersPaused": i.containers_paused,
        "ContainersStopped": i.containers_stopped,
        "Images": i.images,
        "ServerVersion": v.version,
        "Driver": i.storage_driver,
        "LoggingDriver": i.logging_driver,
        "CgroupDriver": i.cgroup_driver,
        "CgroupVersion": i.cgroup_version,
        "Runtimes": runtimes,
        "DefaultRuntime": i.default_runtime,
        "KernelVersion": v.kernel_version,
        "OperatingSystem": i.operating_system,
        "OSType": v.os,
        "Architecture": machine(&v.arch),
        "NCPU": i.ncpu,
        "MemTotal": i.mem_total,
        "Name": i.name,
        "DockerRootDir": i.root_dir,
        "RunDir": i.run_dir,
        "Instance": i.instance,
    })
}

/// The text block of `berth info`, Docker's layout.
pub fn info_text(i: &SystemInfoResponse) -> String {
    let v = i.version.clone().unwrap_or_default();
    let mut out = String::new();
    out.push_str(&format!(
        "Client:\n Version:    {}\n Context:    default\n\n",
        env!("CARGO_PKG_VERSION")
    ));
    out.push_str("Server:\n");
    let mut line = |k: &str, v: &dyn std::fmt::Display| out.push_str(&format!(" {k}: {v}\n"));
    line("Containers", &i.containers);
    line(" Running", &i.containers_running);
    line(" Paused", &i.containers_paused);
    line(" Stopped", &i.containers_stopped);
    line("Images", &i.images);
    line("Server Version", &v.version);
    line("Storage Driver", &i.storage_driver);
    line("Logging Driver", &i.logging_driver);
    line("Cgroup Driver", &i.cgroup_driver);
    line("Cgroup Version", &i.cgroup_version);
    line("Runtimes", &i.runtimes.join(" "));
    line("Default Runtime", &i.default_runtime);
    line("Kernel Version", &v.kernel_version);
    line("Operating System", &i.operating_system);
    line("OSType", &v.os);
    line("Architecture", &machine(&v.arch));
    line("CPUs", &i.ncpu);
    line("Total Memory", &bytes_size(i.mem_total));
    line("Name", &i.name);
    line("Berth Root Dir", &i.root_dir);
    line("Berth Run Dir", &i.run_dir);
    line("Instance", &i.instance);
    out
}

/// `--format` of `info`: `json` or a template over [`info_json`].
pub fn render_info(i: &SystemInfoResponse, format: Option<&str>) -> Result<String> {
    match format.map(str::trim) {
        None | Some("") => Ok(info_text(i)),
        Some("json") => Ok(format!("{}\n", serde_json::to_string(&info_json(i))?)),
        Some(tpl) => {
            let template = format::Template::parse(&format::unescape_format(tpl))?;
            Ok(format!("{}\n", template.render(&info_json(i))?))
        }
    }
}

/// `berth info`.
pub async fn info(mut engine: Engine, args: InfoArgs) -> Result<i32> {
    let i = engine.system_info(SystemInfoRequest {}).await?.into_inner();
    let text = render_info(&i, args.format.as_deref())?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(0)
}

/// "12.3MB (45%)", as `docker system df` prints RECLAIMABLE; no percentage for an empty
/// total or when `percent` is off (build cache).
fn reclaimable(row: &DiskUsageRow, percent: bool) -> String {
    let size = format::human_size_prec(row.reclaimable.max(0) as f64, 4);
    if percent && row.size > 0 {
        let pct = (row.reclaimable as f64 * 100.0 / row.size as f64) as i64;
        format!("{size} ({pct}%)")
    } else {
        size
    }
}

/// The rows of `system df`, with Docker's `--format` field names.
pub fn df_rows(d: &DiskUsageResponse) -> Vec<Value> {
    let rows = [
        ("Images", d.images, true),
        ("Containers", d.containers, true),
        ("Local Volumes", d.volumes, true),
        ("Build Cache", d.build_cache, false),
    ];
    rows.into_iter()
        .map(|(name, row, percent)| {
            let row = row.unwrap_or_default();
            json!({
                "Type": name,
                "TotalCount": row.total.to_string(),
                "Active": row.active.to_string(),
                "Size": format::human_size_prec(row.size.max(0) as f64, 4),
                "Reclaimable": reclaimable(&row, percent),
            })
        })
        .collect()
}

pub fn render_df(d: &DiskUsageResponse, format: Option<&str>) -> Result<String> {
    let rows = df_rows(d);
    let headers = json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE",
        "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
    if let Some(text) = format::listing(format.unwrap_or(""), &headers, &rows)? {
        return Ok(text);
    }
    let keys = ["Type", "TotalCount", "Active", "Size", "Reclaimable"];
    let mut table = vec![keys
        .iter()
        .map(|k| headers[k].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()];
    for r in &rows {
        table.push(
            keys.iter()
                .map(|k| r[k].as_str().unwrap_or_default().to_string())
                .collect(),
        );
    }
    Ok(format::table(&table))
}

/// `berth system df`.
pub async fn df(mut engine: Engine, args: DfArgs) -> Result<i32> {
    let d = engine.disk_usage(DiskUsageRequest {}).await?.into_inner();
    let text = render_df(&d, args.format.as_deref())?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::engine::v1::VersionResponse;

    fn sample_info() -> SystemInfoResponse {
        SystemInfoResponse {
            version: Some(VersionResponse {
                version: "0.1.0".into(),
                api_version: "1.0".into(),
                os: "linux".into(),
                arch: "amd64".into(),
                kernel_version: "5.15.0".into(),
            }),
            containers: 2,
            containers_running: 1,
            containers_paused: 0,
            containers_stopped: 1,
            images: 1,
            root_dir: "/var/lib/berth".into(),
            run_dir: "/run/berth".into(),
            cgroup_version: "1".into(),
            cgroup_driver: "cgroupfs".into(),
            runtimes: vec!["berth".into()],
            default_runtime: "berth".into(),
            logging_driver: "json-file".into(),
            ncpu: 8,
            mem_total: 25_198_604_288,
            name: "host".into(),
            instance: "berth".into(),
            storage_driver: "overlay2".into(),
            operating_system: "Ubuntu 22.04.4 LTS".into(),
        }
    }

    #[test]
    fn docker_bytes_size() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(1023), "1023B");
        assert_eq!(bytes_size(1536), "1.5KiB");
        assert_eq!(bytes_size(25_198_604_288), "23.47GiB");
        assert_eq!(bytes_size(16 << 30), "16GiB");
    }

    #[test]
    fn info_text_block() {
        let text = info_text(&sample_info());
        for line in [
            "Server:\n Containers: 2\n  Running: 1\n  Paused: 0\n  Stopped: 1\n Images: 1\n",
            " Server Version: 0.1.0\n",
            " Storage Driver: overlay2\n",
            " Logging Driver: json-file\n",
            " Cgroup Driver: cgroupfs\n",
            " Cgroup Version: 1\n",
            " Runtimes: berth\n",
            " Default Runtime: berth\n",
            " Kernel Version: 5.15.0\n",
            " Operating System: Ubuntu 22.04.4 LTS\n",
            " OSType: linux\n",
            " Architecture: x86_64\n",
            " CPUs: 8\n",
            " Total Memory: 23.47GiB\n",
            " Name: host\n",
            " Berth Root Dir: /var/lib/berth\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }

    #[test]
    fn info_formats() {
        let i = sample_info();
        for f in ["json", "{{json .}}"] {
            let out = render_info(&i, Some(f)).unwrap();
            let v: Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(v["Containers"], 2);
            assert_eq!(v["ContainersRunning"], 1);
            assert_eq!(v["ContainersStopped"], 1);
            assert_eq!(v["Driver"], "overlay2");
            assert_eq!(v["CgroupVersion"], "1");
            assert_eq!(v["NCPU"], 8);
            assert_eq!(v["MemTotal"], 25_198_604_288i64);
            assert_eq!(v["DockerRootDir"], "/var/lib/berth");
            assert_eq!(v["OSType"], "linux");
        }
        assert_eq!(render_info(&i, Some("{{.NCPU}}")).unwrap(), "8\n");
        assert_eq!(
            render_info(&i, Some("{{.LoggingDriver}}")).unwrap(),
            "json-file\n"
        );
    }

    #[test]
    fn df_table() {
        let d = DiskUsageResponse {
            images: Some(DiskUsageRow {
                total: 2,
                active: 1,
                size: 12_345_678,
                reclaimable: 5_555_555,
            }),
            containers: Some(DiskUsageRow {
                total: 2,
                active: 1,
                size: 204_800,
                reclaimable: 0,
            }),
            volumes: Some(DiskUsageRow {
                total: 1,
                active: 0,
                size: 102_400,
                reclaimable: 102_400,
            }),
            build_cache: Some(DiskUsageRow::default()),
        };
        let out = render_df(&d, None).unwrap();
        assert_eq!(
            out,
            "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n\
             Images          2         1         12.35MB   5.556MB (44%)\n\
             Containers      2         1         204.8kB   0B (0%)\n\
             Local Volumes   1         0         102.4kB   102.4kB (100%)\n\
             Build Cache     0         0         0B        0B\n"
        );
        let json = render_df(&d, Some("json")).unwrap();
        let first: Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(first["Type"], "Images");
        assert_eq!(first["TotalCount"], "2");
        assert_eq!(first["Reclaimable"], "5.556MB (44%)");
        let empty = render_df(&DiskUsageResponse::default(), None).unwrap();
        assert!(empty.contains("Images          0         0         0B        0B\n"));
    }
}

/// Docker's warning for `system prune`, listing what the flags add.
pub fn prune_warning(all: bool, volumes: bool) -> String {
    let mut out = String::from(
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
    );
    if volumes {
        out.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    out.push_str(if all {
        "  - all images without at least one container associated to them\n"
    } else {
        "  - all dangling images\n"
    });
    out.push_str("  - unused build cache\n");
    out
}

/// `berth system prune`: stopped containers, then unused networks, anonymous volumes
/// (`--volumes`), dangling images (all unused with `-a`), in Docker's order and report.
/// Build cache: berth has none.
pub async fn prune(mut engine: Engine, args: SystemPruneArgs) -> Result<i32> {
    if !args.force && !crate::container::confirm(&prune_warning(args.all, args.volumes))? {
        return Ok(0);
    }
    let mut out = String::new();
    let section = |out: &mut String, title: &str, lines: &[String]| {
        if !lines.is_empty() {
            out.push_str(title);
            out.push_str(":\n");
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
            out.push('\n');
        }
    };
    let containers = engine
        .prune_containers(PruneContainersRequest {})
        .await?
        .into_inner();
    section(&mut out, "Deleted Containers", &containers.deleted);
    let networks = engine
        .prune_networks(PruneNetworksRequest::default())
        .await?
        .into_inner();
    section(&mut out, "Deleted Networks", &networks.deleted);
    let mut reclaimed = 0i64;
    if args.volumes {
        let volumes = engine
            .prune_volumes(PruneVolumesRequest {
                filters: Vec::new(),
                all: false,
            })
            .await?
            .into_inner();
        reclaimed += volumes.space_reclaimed as i64;
        section(&mut out, "Deleted Volumes", &volumes.deleted);
    }
    let images = engine
        .prune_images(PruneImagesRequest { all: args.all })
        .await?
        .into_inner();
    reclaimed += images.space_reclaimed.max(0);
    let lines: Vec<String> = images
        .untagged
        .iter()
        .map(|u| format!("untagged: {u}"))
        .chain(images.deleted.iter().map(|d| format!("deleted: {d}")))
        .collect();
    section(&mut out, "Deleted Images", &lines);
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        format::human_size_prec(reclaimed as f64, 4)
    ));
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod prune_tests {
    #[test]
    fn the_warning_lists_what_the_flags_add() {
        let plain = super::prune_warning(false, false);
        assert!(plain.contains("all dangling images") && !plain.contains("volumes"));
        let full = super::prune_warning(true, true);
        assert!(
            full.contains("anonymous volumes") && full.contains("without at least one container")
        );
    }
}
