//! Network commands (`network create|ls|rm|prune|connect|disconnect`) and `port`.
use std::collections::HashMap;
use std::io::Write;

use anyhow::{bail, Result};
use berth_proto::engine::v1::ContainerRef;
use berth_proto::network::v1::{
    ConnectContainerRequest, CreateNetworkRequest, DisconnectContainerRequest, EndpointConfig,
    ListNetworksRequest, NetworkInfo, PruneNetworksRequest, RemoveNetworkRequest,
};
use serde_json::{json, Value};

use crate::args::{
    NetworkConnectArgs, NetworkCreateArgs, NetworkDisconnectArgs, NetworkLsArgs, NetworkRmArgs,
    PortArgs, PruneArgs,
};
use crate::client::Engine;
use crate::{container, format, parse, ports};

/// `network ls -f`: Docker's filter keys; one value per key reaches the service.
pub fn filters(values: &[String]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for value in values {
        let (key, val) = parse::key_value("--filter", value)?;
        if !matches!(
            key.as_str(),
            "name" | "id" | "driver" | "label" | "dangling" | "scope" | "type"
        ) {
            bail!("invalid filter '{key}'");
        }
        if out.insert(key.clone(), val).is_some() {
            bail!("only one value per filter key is supported: {key}");
        }
    }
    Ok(out)
}

/// `berth network create`: prints the new network's ID.
pub async fn create(mut engine: Engine, args: NetworkCreateArgs) -> Result<i32> {
    if !matches!(args.driver.as_str(), "bridge" | "macvlan" | "overlay") {
        bail!(
            "plugin \"{}\" not found: berth has the bridge, macvlan and overlay drivers",
            args.driver
        );
    }
    let req = CreateNetworkRequest {
        name: args.name.clone(),
        driver: args.driver.clone(),
        subnet: args.subnet.clone().unwrap_or_default(),
        gateway: args.gateway.clone().unwrap_or_default(),
        ip_range: args.ip_range.clone().unwrap_or_default(),
        internal: args.internal,
        options: parse::key_values("--opt", &args.opt)?,
        labels: parse::labels(&args.label)?,
        attachable: args.attachable,
    };
    let n = engine.create_network(req).await?.into_inner();
    println!("{}", n.id);
    Ok(0)
}

/// One `network ls` row as Docker's formatter names its fields.
pub fn ls_row(n: &NetworkInfo, no_trunc: bool) -> Value {
    let id: String = if no_trunc {
        n.id.clone()
    } else {
        n.id.chars().take(12).collect()
    };
    let mut labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    json!({
        "ID": id,
        "Name": n.name,
        "Driver": n.driver,
        "Scope": if n.scope.is_empty() { "local" } else { n.scope.as_str() },
        "CreatedAt": n.created,
        "Internal": n.internal.to_string(),
        "IPv6": "false",
        "Labels": labels.join(","),
    })
}

/// `berth network ls`.
pub async fn ls(mut engine: Engine, args: NetworkLsArgs) -> Result<i32> {
    let mut nets = engine
        .list_networks(ListNetworksRequest {
            filters: filters(&args.filter)?,
        })
        .await?
        .into_inner()
        .networks;
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Value> = nets.iter().map(|n| ls_row(n, args.no_trunc)).collect();
    let mut out = String::new();
    if args.quiet {
        for r in &rows {
            out.push_str(r["ID"].as_str().unwrap_or_default());
            out.push('\n');
        }
    } else {
        let headers = json!({"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
            "CreatedAt": "CREATED AT", "Internal": "INTERNAL", "IPv6": "IPV6", "Labels": "LABELS"});
        out = match format::listing(args.format.as_deref().unwrap_or(""), &headers, &rows)? {
            Some(text) => text,
            None => {
                let cols = ["ID", "Name", "Driver", "Scope"];
                let mut table = vec![cols
                    .iter()
                    .map(|c| headers[c].as_str().unwrap_or_default().to_string())
                    .collect()];
                for r in &rows {
                    table.push(
                        cols.iter()
                            .map(|c| r[c].as_str().unwrap_or_default().to_string())
                            .collect(),
                    );
                }
                format::table(&table)
            }
        };
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(0)
}

/// `berth network rm`: prints each removed name; goes on after a failure (exit 1, as
/// Docker).
pub async fn rm(mut engine: Engine, args: NetworkRmArgs) -> Result<i32> {
    let mut code = 0;
    for name in &args.names {
        match engine
            .remove_network(RemoveNetworkRequest { name: name.clone() })
            .await
        {
            Ok(_) => println!("{name}"),
            Err(st) if crate::client::is_connect_error(&st) => return Err(st.into()),
            Err(st) => {
                eprintln!("Error response from daemon: {}", st.message());
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `berth network prune`.
pub async fn prune(mut engine: Engine, args: PruneArgs) -> Result<i32> {
    if !args.force
        && !container::confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )?
    {
        return Ok(0);
    }
    let resp = engine
        .prune_networks(PruneNetworksRequest::default())
        .await?
        .into_inner();
    std::io::stdout().write_all(prune_report(&resp.deleted).as_bytes())?;
    Ok(0)
}

/// Docker's prune report: nothing when nothing was removed.
pub fn prune_report(deleted: &[String]) -> String {
    if deleted.is_empty() {
        return String::new();
    }
    let mut out = String::from("Deleted Networks:\n");
    for name in deleted {
        out.push_str(name);
        out.push('\n');
    }
    out
}

/// `berth network connect [--alias A]... [--ip IP] NETWORK CONTAINER`.
pub async fn connect(mut engine: Engine, args: NetworkConnectArgs) -> Result<i32> {
    let ipv4_address = args
        .ip
        .as_deref()
        .map(ports::ipv4)
        .transpose()?
        .unwrap_or_default();
    engine
        .connect_network(ConnectContainerRequest {
            container_id: args.container.clone(),
            network: args.network.clone(),
            endpoint: Some(EndpointConfig {
                aliases: args.alias.clone(),
                ipv4_address,
                mac_address: String::new(),
            }),
            container_name: String::new(),
        })
        .await?;
    Ok(0)
}

/// `berth network disconnect [-f] NETWORK CONTAINER`.
pub async fn disconnect(mut engine: Engine, args: NetworkDisconnectArgs) -> Result<i32> {
    engine
        .disconnect_network(DisconnectContainerRequest {
            container_id: args.container.clone(),
            network: args.network.clone(),
            force: args.force,
        })
        .await?;
    Ok(0)
}

/// `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub async fn port(mut engine: Engine, args: PortArgs) -> Result<i32> {
    let filter = args
        .private_port
        .as_deref()
        .map(ports::private_port)
        .transpose()?;
    let details = engine
        .inspect_container(ContainerRef {
            id: args.container.clone(),
        })
        .await?
        .into_inner();
    let published = match details.network.as_ref() {
        Some(a) if !a.ports.is_empty() => ports::published(&a.ports),
        _ => details
            .container
            .and_then(|c| c.spec)
            .and_then(|s| s.network)
            .map(|n| n.ports)
            .unwrap_or_default(),
    };
    let lines = ports::port_lines(&published, filter.as_ref());
    if let (Some((p, proto)), true) = (&filter, lines.is_empty()) {
        bail!(
            "Error: No public port '{p}/{proto}' published for {}",
            args.container
        );
    }
    let mut out = String::new();
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_filters() {
        let f = filters(&["driver=bridge".into(), "label=a=b".into()]).unwrap();
        assert_eq!(f["driver"], "bridge");
        assert_eq!(f["label"], "a=b");
        assert!(filters(&["colour=red".into()]).is_err());
        assert!(filters(&["name".into()]).is_err());
        assert!(filters(&["name=a".into(), "name=b".into()]).is_err());
    }

    #[test]
    fn ls_rows_and_prune_report() {
        let n = NetworkInfo {
            id: "0123456789abcdef0123".into(),
            name: "front".into(),
            driver: "bridge".into(),
            ..Default::default()
        };
        let r = ls_row(&n, false);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Scope"], "local");
        assert_eq!(ls_row(&n, true)["ID"], "0123456789abcdef0123");
        assert_eq!(prune_report(&[]), "");
        assert_eq!(
            prune_report(&["a".into(), "b".into()]),
            "Deleted Networks:\na\nb\n"
        );
    }
}
