//! Links, addresses and routes through rtnetlink. The service never forks `ip`.
//!
//! Every call runs on a fresh OS thread with its own current-thread runtime and netlink
//! connection: in the host's namespace, or in a container's after `setns` on that thread
//! (see [`crate::netns`]), so no tokio worker ever changes namespace.
use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use futures::TryStreamExt;
use rtnetlink::{
    packet_route::{
        address::AddressAttribute,
        link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage, MacVlanMode},
        route::{RouteAddress, RouteAttribute},
        AddressFamily,
    },
    Handle, LinkBridge, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::{ipam::Subnet, netns, Error, Result};

/// Runs `f` with a netlink handle in the namespace at `ns` (None: the host's).
pub fn run<T, F, Fut>(ns: Option<&Path>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let work = move || -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::sys("start a netlink runtime", e))?;
        rt.block_on(async move {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| Error::sys("open netlink", e))?;
            let conn = tokio::spawn(conn);
            let result = f(handle).await;
            conn.abort();
            result
        })
    };
    match ns {
        Some(path) => netns::in_namespace(path, work)?,
        None => netns::on_thread(work),
    }
}

/// Context for a netlink error, with the errno when the kernel sent one.
pub(crate) fn nl(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    move |e| Error::sys(context, io_error(e))
}

fn io_error(e: rtnetlink::Error) -> std::io::Error {
    match errno(&e) {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::other(e.to_string()),
    }
}

pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.raw_code() < 0 => Some(-m.raw_code()),
        _ => None,
    }
}

fn link_name(msg: &LinkMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// The index of link `name`, None when there is none.
pub async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("look up link {name}"))(e)),
    }
}

pub(crate) async fn require(h: &Handle, name: &str) -> Result<u32> {
    index_of(h, name).await?.ok_or_else(|| {
        Error::sys(
            format!("look up link {name}"),
            std::io::Error::from_raw_os_error(libc::ENODEV),
        )
    })
}

/// Names of every link in the namespace.
pub async fn link_names(h: &Handle) -> Result<Vec<String>> {
    let msgs: Vec<LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list links"))?;
    Ok(msgs.iter().filter_map(link_name).collect())
}

/// Deletes link `name`; a missing link succeeds.
pub async fn delete(h: &Handle, name: &str) -> Result<()> {
    let Some(index) = index_of(h, name).await? else {
        return Ok(());
    };
    match h.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(nl(format!("delete link {name}"))(e)),
    }
}

/// Every IPv4 subnet in use in the namespace: its addresses' networks and its routes
/// (except the default route, which overlaps everything).
pub async fn used_subnets(h: &Handle) -> Result<Vec<Subnet>> {
    let mut used = Vec::new();
    let addrs: Vec<_> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses"))?;
    for a in addrs {
        for attr in &a.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                used.push(Subnet::containing(*ip, a.header.prefix_len));
            }
        }
    }
    let routes: Vec<_> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("list routes"))?;
    for r in routes {
        let prefix = r.header.destination_prefix_length;
        if r.header.address_family != AddressFamily::Inet || prefix == 0 {
            continue;
        }
        for attr in &r.attributes {
            if let RouteAttribute::Destination(RouteAddress::Inet(ip)) = attr {
                used.push(Subnet::containing(*ip, prefix));
            }
        }
    }
    used.sort();
    used.dedup();
    Ok(used)
}

/// Makes bridge `name` exist, carry `gateway/prefix` and be up. True when it was created
/// (the caller then owns undoing it).
pub async fn ensure_bridge(h: &Handle, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<bool> {
    let created = match index_of(h, name).await? {
        Some(_) => false,
        None => {
            h.link()
                .add(LinkBridge::new(name).build())
                .execute()
                .await
                .map_err(nl(format!("create bridge {name}")))?;
            true
        }
    };
    let result = async {
        let index = require(h, name).await?;
        match h
            .address()
            .add(index, IpAddr::V4(gateway), prefix)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(nl(format!("add {gateway}/{prefix} to {name}"))(e)),
        }
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl(format!("bring {name} up")))
    }
    .await;
    if let Err(e) = result {
        if created {
            let _ = delete(h, name).await;
        }
        return Err(e);
    }
    Ok(created)
}

/// Where a new container link goes and what it is called there.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The container's namespace file.
    pub netns: PathBuf,
    pub ifname: String,
    pub mac: [u8; 6],
}

impl Placement {
    /// The namespace file, open: a link is made inside it by its descriptor.
    fn open_netns(&self) -> Result<std::fs::File> {
        std::fs::File::open(&self.netns)
            .map_err(|e| Error::sys(format!("open {}", self.netns.display()), e))
    }
}

/// A veth pair: `host` enslaved to `bridge` and up, its peer made right inside the
/// container's namespace as `to.ifname` with `to.mac`; with `mtu`, both ends get it. On
/// failure nothing is left (deleting one end deletes both).
///
/// The peer is never moved: moving a link between namespaces waits for an RCU grace
/// period (about 20 ms here), while creating it in place costs a few hundred µs.
pub async fn create_veth(
    h: &Handle,
    host: &str,
    bridge: &str,
    mtu: Option<u32>,
    to: &Placement,
) -> Result<()> {
    let bridge_index = require(h, bridge).await?;
    let ns = to.open_netns()?;
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(to.ifname.clone())
        .address(to.mac.to_vec())
        .setns_by_fd(ns.as_raw_fd());
    let mut pair =
        LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth).name(host.to_string());
    if let Some(mtu) = mtu {
        peer = peer.mtu(mtu);
        pair = pair.mtu(mtu);
    }
    let pair = pair
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .build();
    h.link().add(pair).execute().await.map_err(nl(format!(
        "create veth pair {host} / {} in {}",
        to.ifname,
        to.netns.display()
    )))?;
    let result = enslave(h, host, bridge_index, bridge).await;
    if result.is_err() {
        let _ = delete(h, host).await;
    }
    result
}

/// Sets the MTU of link `index` (called `name`).
pub(crate) async fn set_mtu(h: &Handle, index: u32, name: &str, mtu: u32) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
        .execute()
        .await
        .map_err(nl(format!("set the MTU of {name} to {mtu}")))
}

/// A macvlan (mode bridge) on `parent` (a host link), made right inside the container's
/// namespace as `to.ifname` with `to.mac`: never moved, for the reason of [`create_veth`].
pub async fn create_macvlan(h: &Handle, parent: &str, to: &Placement) -> Result<()> {
    let parent_index = index_of(h, parent).await?.ok_or_else(|| {
        Error::InvalidArgument(format!("macvlan parent interface {parent} does not exist"))
    })?;
    let ns = to.open_netns()?;
    let link = LinkMacVlan::new(&to.ifname, parent_index, MacVlanMode::Bridge)
        .address(to.mac.to_vec())
        .setns_by_fd(ns.as_raw_fd())
        .build();
    h.link().add(link).execute().await.map_err(nl(format!(
        "create macvlan {} on {parent} in {}",
        to.ifname,
        to.netns.display()
    )))
}

/// Inside a container: puts `ip/prefix` on `ifname`, brings it up and, with `gateway`, adds
/// the default route through it.
pub async fn configure(
    h: &Handle,
    ifname: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
) -> Result<()> {
    let index = require(h, ifname).await?;
    h.address()
        .add(index, IpAddr::V4(ip), prefix)
        .execute()
        .await
        .map_err(nl(format!("add {ip}/{prefix} to {ifname}")))?;
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("bring {ifname} up")))?;
    if let Some(gw) = gateway {
        h.route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gw)
                    .output_interface(index)
                    .build(),
            )
            .execute()
            .await
            .map_err(nl(format!("add the default route via {gw} on {ifname}")))?;
    }
    Ok(())
}

/// Re-enslaves `port` to `bridge` and brings it up (a recreated bridge has no ports).
pub async fn ensure_port(h: &Handle, port: &str, bridge: &str) -> Result<()> {
    let bridge_index = require(h, bridge).await?;
    enslave(h, port, bridge_index, bridge).await
}

/// Makes `port` a port of the bridge at `bridge_index` and brings it up.
pub(crate) async fn enslave(h: &Handle, port: &str, bridge_index: u32, bridge: &str) -> Result<()> {
    let index = require(h, port).await?;
    h.link()
        .set(
            LinkUnspec::new_with_index(index)
                .controller(bridge_index)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("attach {port} to {bridge}")))
}
