//! The kernel side of one endpoint: a veth pair on a bridge or a macvlan on a parent,
//! ending as `ethN` in the container's namespace with its address, MAC and maybe the
//! default route. Each function either finishes or leaves nothing.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use crate::{
    ipam::Subnet,
    link::{self, Placement},
    names, Error, Result,
};

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    pub netns: PathBuf,
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub subnet: Subnet,
    pub mac: [u8; 6],
    /// The gateway of the default route, when this endpoint carries it.
    pub route_via: Option<Ipv4Addr>,
    /// MTU of both ends of a bridge veth (an overlay's is the underlay's minus 50); None
    /// leaves the kernel's default. Not used by macvlans, which inherit their parent's.
    pub mtu: Option<u32>,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// Host end `host_ifname` on bridge `bridge`.
    Bridge { bridge: String, host_ifname: String },
    /// A macvlan (mode bridge) on `parent`.
    Macvlan { parent: String },
}

/// Builds the endpoint; blocking (runs netlink on threads of its own).
pub fn create(spec: &Spec) -> Result<()> {
    let to = Placement {
        netns: spec.netns.clone(),
        ifname: spec.ifname.clone(),
        mac: spec.mac,
    };
    match &spec.kind {
        Kind::Bridge {
            bridge,
            host_ifname,
        } => {
            let (host, bridge, mtu) = (host_ifname.clone(), bridge.clone(), spec.mtu);
            link::run(None, move |h| async move {
                link::create_veth(&h, &host, &bridge, mtu, &to).await
            })?
        }
        Kind::Macvlan { parent } => {
            let parent = parent.clone();
            link::run(None, move |h| async move {
                link::create_macvlan(&h, &parent, &to).await
            })?
        }
    }
    let (ifname, ip, prefix_len, via) = (
        spec.ifname.clone(),
        spec.ip,
        spec.subnet.prefix,
        spec.route_via,
    );
    let configured = link::run(Some(&spec.netns), move |h| async move {
        link::configure(&h, &ifname, ip, prefix_len, via).await
    });
    if let Err(e) = configured {
        let _ = remove(&spec.netns, &spec.ifname, host_ifname(&spec.kind));
        return Err(e);
    }
    Ok(())
}

fn host_ifname(kind: &Kind) -> &str {
    match kind {
        Kind::Bridge { host_ifname, .. } => host_ifname,
        Kind::Macvlan { .. } => "",
    }
}

/// Deletes an endpoint's link: the veth's host end (which takes its peer along), or the
/// container-side link. Missing links and namespaces succeed.
pub fn remove(netns: &Path, ifname: &str, host_ifname: &str) -> Result<()> {
    if !host_ifname.is_empty() {
        let host = host_ifname.to_string();
        return link::run(None, move |h| async move { link::delete(&h, &host).await });
    }
    if !crate::netns::is_namespace(netns) {
        return Ok(());
    }
    let name = ifname.to_string();
    link::run(Some(netns), move |h| async move {
        link::delete(&h, &name).await
    })
}

/// True when the endpoint's link still exists (after a reboot it does not).
pub fn exists(netns: &Path, ifname: &str, host_ifname: &str) -> Result<bool> {
    if !host_ifname.is_empty() {
        let host = host_ifname.to_string();
        return link::run(None, move |h| async move {
            Ok(link::index_of(&h, &host).await?.is_some())
        });
    }
    if !crate::netns::is_namespace(netns) {
        return Ok(false);
    }
    let name = ifname.to_string();
    link::run(Some(netns), move |h| async move {
        Ok(link::index_of(&h, &name).await?.is_some())
    })
}

/// A MAC given by the user, or the one derived from the address.
pub fn mac(given: &str, ip: Ipv4Addr) -> Result<[u8; 6]> {
    if given.is_empty() {
        Ok(names::mac_for(ip))
    } else {
        names::parse_mac(given).map_err(Error::InvalidArgument)
    }
}
