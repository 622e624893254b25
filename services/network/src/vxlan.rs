//! The kernel side of an overlay network on one host: a VXLAN device enslaved to the
//! network's bridge, and for every remote endpoint a static FDB entry (MAC → remote host)
//! and a permanent neighbour entry (IP → MAC) on that device.
//!
//! The device has learning off and `proxy` on: ARP requests for remote containers are
//! answered by the device itself from its neighbour table, and with no all-zeros FDB entry
//! no broadcast ever crosses the tunnel, so each host's bridge answers for the shared
//! gateway address alone. Every function here runs inside [`crate::link::run`].
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::{
    packet_route::{
        address::AddressAttribute,
        link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage},
        neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
        },
        AddressFamily,
    },
    Handle, LinkVxlan,
};

use crate::{
    link::{self, errno, nl, require},
    names::format_mac,
    Result,
};

/// Linux's default MTU, for an underlay address no device holds.
const DEFAULT_MTU: u32 = 1500;

/// Creates (or fixes) vxlan `name`: `vni`, `local`, UDP destination `port`, learning off,
/// proxy on, `mtu`, enslaved to `bridge`, up. Idempotent: an existing link of that name
/// that is not such a VXLAN (another kind, VNI, port, local address or flags) is deleted
/// and recreated. Returns true when it was created (the caller then owns undoing it).
pub async fn ensure_vxlan(
    h: &Handle,
    name: &str,
    vni: u32,
    local: Ipv4Addr,
    port: u16,
    bridge: &str,
    mtu: u32,
) -> Result<bool> {
    let bridge_index = require(h, bridge).await?;
    let created = match get_link(h, name).await? {
        Some(msg) if matches_vxlan(&msg, vni, local, port) => false,
        Some(_) => {
            link::delete(h, name).await?;
            create(h, name, vni, local, port).await?;
            true
        }
        None => {
            create(h, name, vni, local, port).await?;
            true
        }
    };
    let result = async {
        let index = require(h, name).await?;
        link::set_mtu(h, index, name, mtu).await?;
        link::enslave(h, name, bridge_index, bridge).await
    }
    .await;
    if let Err(e) = result {
        if created {
            let _ = link::delete(h, name).await;
        }
        return Err(e);
    }
    Ok(created)
}

async fn create(h: &Handle, name: &str, vni: u32, local: Ipv4Addr, port: u16) -> Result<()> {
    h.link()
        .add(
            LinkVxlan::new(name, vni)
                .local(local)
                .port(port)
                .learning(false)
                .udp_csum(false)
                .proxy(true)
                .l2miss(false)
                .l3miss(false)
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!(
            "create vxlan {name} (vni {vni}, local {local}, port {port})"
        )))
}

async fn get_link(h: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(msg) => Ok(msg),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("look up link {name}"))(e)),
    }
}

/// True when `msg` is a VXLAN with exactly these parameters, learning off and proxy on.
fn matches_vxlan(msg: &LinkMessage, vni: u32, local: Ipv4Addr, port: u16) -> bool {
    let infos = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => Some(infos),
        _ => None,
    });
    let Some(infos) = infos else {
        return false;
    };
    let is_vxlan = infos
        .iter()
        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vxlan)));
    let data = infos.iter().find_map(|i| match i {
        LinkInfo::Data(InfoData::Vxlan(data)) => Some(data),
        _ => None,
    });
    let Some(data) = data.filter(|_| is_vxlan) else {
        return false;
    };
    let has = |want: &InfoVxlan| data.iter().any(|d| d == want);
    has(&InfoVxlan::Id(vni))
        && has(&InfoVxlan::Local(local))
        && has(&InfoVxlan::Port(port))
        && has(&InfoVxlan::Learning(false))
        && has(&InfoVxlan::Proxy(true))
        && !has(&InfoVxlan::L2Miss(true))
        && !has(&InfoVxlan::L3Miss(true))
}

/// FDB entry `mac` → `remote` (underlay IP) on vxlan `dev`: NTF_SELF, permanent, replacing
/// any entry for that MAC.
pub async fn fdb_replace(h: &Handle, dev: &str, mac: [u8; 6], remote: Ipv4Addr) -> Result<()> {
    let index = require(h, dev).await?;
    h.neighbours()
        .add_bridge(index, &mac)
        .destination(IpAddr::V4(remote))
        .flags(NeighbourFlags::Own)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(nl(format!(
            "add FDB entry {} -> {remote} on {dev}",
            format_mac(&mac)
        )))
}

/// Deletes the FDB entry of `mac` on vxlan `dev`; a missing entry or device succeeds.
pub async fn fdb_delete(h: &Handle, dev: &str, mac: [u8; 6]) -> Result<()> {
    let Some(index) = link::index_of(h, dev).await? else {
        return Ok(());
    };
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.flags = NeighbourFlags::Own;
    msg.header.state = NeighbourState::Permanent;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    match h.neighbours().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::ENODEV)) => Ok(()),
        Err(e) => Err(nl(format!(
            "delete FDB entry {} on {dev}",
            format_mac(&mac)
        ))(e)),
    }
}

/// Permanent neighbour entry `ip` → `mac` on `dev`, replacing any entry for `ip`.
pub async fn neigh_replace(h: &Handle, dev: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
    let index = require(h, dev).await?;
    h.neighbours()
        .add(index, IpAddr::V4(ip))
        .link_layer_address(&mac)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(nl(format!(
            "add neighbour {ip} -> {} on {dev}",
            format_mac(&mac)
        )))
}

/// Deletes the neighbour entry of `ip` on `dev`; a missing entry or device succeeds.
pub async fn neigh_delete(h: &Handle, dev: &str, ip: Ipv4Addr) -> Result<()> {
    let Some(index) = link::index_of(h, dev).await? else {
        return Ok(());
    };
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    match h.neighbours().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::ENODEV)) => Ok(()),
        Err(e) => Err(nl(format!("delete neighbour {ip} on {dev}"))(e)),
    }
}

/// The remote entries now on vxlan `dev`, for reconciling after a restart: its permanent
/// FDB entries that have a remote, as (MAC, remote underlay IP), and its permanent IPv4
/// neighbour entries, as (IP, MAC). Both sorted. A missing device has none.
#[allow(clippy::type_complexity)]
pub async fn remote_entries(
    h: &Handle,
    dev: &str,
) -> Result<(Vec<([u8; 6], Ipv4Addr)>, Vec<(Ipv4Addr, [u8; 6])>)> {
    let Some(index) = link::index_of(h, dev).await? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let fdb: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_collect()
        .await
        .map_err(nl(format!("list the FDB of {dev}")))?;
    let mut remotes: Vec<([u8; 6], Ipv4Addr)> = fdb
        .iter()
        .filter(|m| {
            m.header.ifindex == index
                && m.header.state == NeighbourState::Permanent
                && m.header.flags.contains(NeighbourFlags::Own)
        })
        .filter_map(|m| Some((lladdr(m)?, remote_ip(m)?)))
        .collect();
    let neighbours: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute()
        .try_collect()
        .await
        .map_err(nl(format!("list the neighbours of {dev}")))?;
    let mut neigh: Vec<(Ipv4Addr, [u8; 6])> = neighbours
        .iter()
        .filter(|m| m.header.ifindex == index && m.header.state == NeighbourState::Permanent)
        .filter_map(|m| {
            let ip = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                _ => None,
            })?;
            Some((ip, lladdr(m)?))
        })
        .collect();
    remotes.sort();
    remotes.dedup();
    neigh.sort();
    neigh.dedup();
    Ok((remotes, neigh))
}

fn lladdr(m: &NeighbourMessage) -> Option<[u8; 6]> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => l.as_slice().try_into().ok(),
        _ => None,
    })
}

/// NDA_DST of a bridge-family entry: the library leaves it as raw bytes there.
fn remote_ip(m: &NeighbourMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

/// MTU of the link that holds `addr` (the underlay), [`DEFAULT_MTU`] when no link does.
pub async fn mtu_of_address(h: &Handle, addr: Ipv4Addr) -> Result<u32> {
    let addrs: Vec<_> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses"))?;
    let holder = addrs.iter().find(|a| {
        a.attributes.iter().any(|attr| {
            matches!(attr, AddressAttribute::Address(IpAddr::V4(ip))
                | AddressAttribute::Local(IpAddr::V4(ip)) if *ip == addr)
        })
    });
    let Some(holder) = holder else {
        return Ok(DEFAULT_MTU);
    };
    let index = holder.header.index;
    let mut links = h.link().get().match_index(index).execute();
    let msg = match links.try_next().await {
        Ok(msg) => msg,
        Err(e) if errno(&e) == Some(libc::ENODEV) => None,
        Err(e) => return Err(nl(format!("look up the link that holds {addr}"))(e)),
    };
    Ok(msg
        .and_then(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(mtu) => Some(*mtu),
                _ => None,
            })
        })
        .unwrap_or(DEFAULT_MTU))
}
