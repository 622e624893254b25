//! Volume commands.
use std::io::Write;

use anyhow::Result;
use berth_proto::volume::v1::{
    CreateVolumeRequest, ListVolumesRequest, PruneVolumesRequest, RemoveVolumeRequest,
};
use serde_json::{json, Value};

use crate::args::{VolumeCreateArgs, VolumeLsArgs, VolumePruneArgs, VolumeRmArgs};
use crate::client::Engine;
use crate::format;
use crate::parse;

/// `berth volume create`: prints the volume's name.
pub async fn create(mut engine: Engine, args: VolumeCreateArgs) -> Result<i32> {
    let name = args
        .name
        .clone()
        .or(args.name_flag.clone())
        .unwrap_or_default();
    let req = CreateVolumeRequest {
        name,
        driver: args.driver.clone(),
        labels: parse::labels(&args.label)?,
        options: parse::key_values("--opt", &args.opt)?,
    };
    let v = engine.create_volume(req).await?.into_inner();
    println!("{}", v.name);
    Ok(0)
}

/// `berth volume ls`.
pub async fn ls(mut engine: Engine, args: VolumeLsArgs) -> Result<i32> {
    let mut vols = engine
        .list_volumes(ListVolumesRequest {
            filters: args.filter.clone(),
        })
        .await?
        .into_inner()
        .volumes;
    vols.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    if args.quiet {
        for v in &vols {
            out.push_str(&v.name);
            out.push('\n');
        }
    } else {
        let rows: Vec<Value> = vols
            .iter()
            .map(|v| {
                let mut labels: Vec<String> = v
                    .labels
                    .iter()
                    .map(|(k, val)| format!("{k}={val}"))
                    .collect();
                labels.sort();
                json!({
                    "Driver": if v.driver.is_empty() { "local" } else { v.driver.as_str() },
                    "Name": v.name,
                    "Mountpoint": v.mountpoint,
                    "Labels": labels.join(","),
                    "Scope": if v.scope.is_empty() { "local" } else { v.scope.as_str() },
                    "Links": "N/A",
                    "Size": "N/A",
                })
            })
            .collect();
        let headers = json!({"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
            "Labels": "LABELS", "Scope": "SCOPE", "Links": "LINKS", "Size": "SIZE"});
        match format::listing(args.format.as_deref().unwrap_or(""), &headers, &rows)? {
            Some(text) => out = text,
            None => {
                let mut table = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
                for r in &rows {
                    table.push(vec![
                        r["Driver"].as_str().unwrap_or_default().into(),
                        r["Name"].as_str().unwrap_or_default().into(),
                    ]);
                }
                out = format::table(&table);
            }
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(0)
}

/// `berth volume rm`.
pub async fn rm(mut engine: Engine, args: VolumeRmArgs) -> Result<i32> {
    let mut code = 0;
    for name in &args.names {
        match engine
            .remove_volume(RemoveVolumeRequest {
                name: name.clone(),
                force: args.force,
            })
            .await
        {
            Ok(_) => println!("{name}"),
            Err(st) if crate::client::is_connect_error(&st) => return Err(st.into()),
            Err(st) => {
                eprintln!("Error response from daemon: {}", st.message());
                code = 125;
            }
        }
    }
    Ok(code)
}

/// Bytes under `dir` (not following symlinks); 0 when this host cannot read it.
/// `berth volume prune`: removes unused volumes, anonymous ones only unless `-a`
/// (Docker ≥ 23); the volume service does it, skipping volumes taken into use meanwhile.
pub async fn prune(mut engine: Engine, args: VolumePruneArgs) -> Result<i32> {
    for f in &args.filter {
        if !(f.starts_with("label=") || f.starts_with("label!=")) {
            anyhow::bail!(
                "invalid filter {f:?}: volume prune takes label=KEY[=VALUE] and label!=KEY[=VALUE]"
            );
        }
    }
    let warning = if args.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !args.force && !crate::container::confirm(warning)? {
        return Ok(0);
    }
    let pruned = engine
        .prune_volumes(PruneVolumesRequest {
            filters: args.filter.clone(),
            all: args.all,
        })
        .await?
        .into_inner();
    let (deleted, reclaimed) = (pruned.deleted, pruned.space_reclaimed);
    let mut out = String::new();
    if !deleted.is_empty() {
        out.push_str("Deleted Volumes:\n");
        for d in &deleted {
            out.push_str(d);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        format::human_size_prec(reclaimed as f64, 4)
    ));
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(0)
}
