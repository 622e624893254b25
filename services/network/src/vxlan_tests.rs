//! Overlay plumbing against the real kernel (needs root; skipped otherwise): two "hosts"
//! (namespaces joined by a veth underlay), each with a bridge holding the same gateway and
//! a VXLAN device, and one "container" namespace per host. Every object lives in a
//! namespace the test made; [`Namespaces`]'s Drop removes them all, on failure too.
use std::{
    future::Future,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
};

use futures::TryStreamExt;
use rtnetlink::{
    packet_route::{
        link::LinkAttribute,
        neighbour::{NeighbourAddress, NeighbourAttribute},
        AddressFamily,
    },
    Handle, LinkUnspec, LinkVeth,
};

use crate::{
    link::{self, Placement},
    names, netns, vxlan, Error, Result,
};

const VNI: u32 = 4242;
const PORT: u16 = 4789;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
const UNDERLAY: &str = "under0";
const BRIDGE: &str = "br0";
const VXLAN: &str = "vx0";

/// The test's namespace files, unmounted and deleted on drop (which deletes every link in
/// them, the underlay veth pair included).
struct Namespaces {
    dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
}

impl Namespaces {
    fn new() -> Namespaces {
        let dir = tempfile::Builder::new()
            .prefix(&format!("bvx{}-", std::process::id()))
            .tempdir_in("/tmp")
            .unwrap();
        Namespaces {
            dir,
            paths: Vec::new(),
        }
    }

    fn create(&mut self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        // Recorded first: a half-made namespace is removed too.
        self.paths.push(path.clone());
        netns::create(&path).unwrap();
        path
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = netns::remove(p);
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn run<T, F, Fut>(ns: &Path, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    link::run(Some(ns), f).unwrap()
}

/// (MTU, MAC, controller index) of link `name` in `ns`.
fn link_info(ns: &Path, name: &str) -> (u32, Vec<u8>, Option<u32>) {
    let name = name.to_string();
    run(ns, move |h| async move {
        let msg = h
            .link()
            .get()
            .match_name(name.clone())
            .execute()
            .try_next()
            .await
            .map_err(|e| Error::sys(format!("get {name}"), std::io::Error::other(e)))?
            .unwrap();
        let mut info = (0, Vec::new(), None);
        for a in msg.attributes {
            match a {
                LinkAttribute::Mtu(m) => info.0 = m,
                LinkAttribute::Address(mac) => info.1 = mac,
                LinkAttribute::Controller(i) => info.2 = Some(i),
                _ => {}
            }
        }
        Ok(info)
    })
}

fn index_in(ns: &Path, name: &str) -> u32 {
    let name = name.to_string();
    run(ns, move |h| async move { link::index_of(&h, &name).await }).unwrap()
}

/// The MAC `ns` has in its neighbour table for `ip`, if any.
fn neighbour_mac(ns: &Path, ip: Ipv4Addr) -> Option<Vec<u8>> {
    run(ns, move |h| async move {
        let msgs: Vec<_> = h
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::sys("list neighbours", std::io::Error::other(e)))?;
        Ok(msgs.into_iter().find_map(|m| {
            let dst = m.attributes.iter().any(|a| {
                matches!(a, NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) if *d == ip)
            });
            if !dst {
                return None;
            }
            m.attributes.into_iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) => Some(l),
                _ => None,
            })
        }))
    })
}

/// One ICMP echo from inside `ns` (busybox ping through nsenter).
fn ping(ns: &Path, ip: Ipv4Addr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["/bin/busybox", "ping", "-c1", "-W2"])
        .arg(ip.to_string())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The underlay: veth `under0` in `h1` with `192.0.2.1/24`, its peer moved into `h2` as
/// `under0` with `192.0.2.2/24`, both up with the default MTU (1500).
fn underlay(h1: &Path, h2: &Path, ip1: Ipv4Addr, ip2: Ipv4Addr) {
    let to = h2.to_path_buf();
    run(h1, move |h| async move {
        h.link()
            .add(LinkVeth::new(UNDERLAY, "underp").build())
            .execute()
            .await
            .map_err(link::nl("create the underlay veth"))?;
        let peer = link::require(&h, "underp").await?;
        let ns = std::fs::File::open(&to).map_err(|e| Error::sys("open h2", e))?;
        h.link()
            .set(
                LinkUnspec::new_with_index(peer)
                    .setns_by_fd(ns.as_raw_fd())
                    .name(UNDERLAY.to_string())
                    .build(),
            )
            .execute()
            .await
            .map_err(link::nl("move the underlay peer"))?;
        link::configure(&h, UNDERLAY, ip1, 24, None).await
    });
    run(h2, move |h| async move {
        link::configure(&h, UNDERLAY, ip2, 24, None).await
    });
}

/// A host: bridge with the gateway, vxlan on it; returns the MTU the overlay uses.
fn host(ns: &Path, local: Ipv4Addr) -> u32 {
    run(ns, move |h| async move {
        assert!(link::ensure_bridge(&h, BRIDGE, GATEWAY, 24).await?);
        let mtu = vxlan::mtu_of_address(&h, local).await? - 50;
        assert!(vxlan::ensure_vxlan(&h, VXLAN, VNI, local, PORT, BRIDGE, mtu).await?);
        // Idempotent.
        assert!(!vxlan::ensure_vxlan(&h, VXLAN, VNI, local, PORT, BRIDGE, mtu).await?);
        Ok(mtu)
    })
}

/// A container namespace `c` on host `hns`'s bridge: veth with `mtu`, `ip/24`, default
/// route via the gateway. Returns its MAC.
fn container(hns: &Path, c: &Path, ip: Ipv4Addr, mtu: u32) -> [u8; 6] {
    let mac = names::mac_for(ip);
    let to = Placement {
        netns: c.to_path_buf(),
        ifname: "eth0".into(),
        mac,
    };
    run(hns, move |h| async move {
        link::create_veth(&h, "vethc", BRIDGE, Some(mtu), &to).await
    });
    run(c, move |h| async move {
        link::configure(&h, "eth0", ip, 24, Some(GATEWAY)).await
    });
    mac
}

/// Programs on `hns`'s vxlan the remote endpoint `ip`/`mac` behind `remote`.
fn program(hns: &Path, ip: Ipv4Addr, mac: [u8; 6], remote: Ipv4Addr) {
    run(hns, move |h| async move {
        vxlan::fdb_replace(&h, VXLAN, mac, remote).await?;
        vxlan::neigh_replace(&h, VXLAN, ip, mac).await
    });
}

fn unprogram(hns: &Path, ip: Ipv4Addr, mac: [u8; 6]) {
    run(hns, move |h| async move {
        vxlan::fdb_delete(&h, VXLAN, mac).await?;
        vxlan::neigh_delete(&h, VXLAN, ip).await
    });
}

#[allow(clippy::type_complexity)]
fn entries(hns: &Path) -> (Vec<([u8; 6], Ipv4Addr)>, Vec<(Ipv4Addr, [u8; 6])>) {
    run(
        hns,
        |h| async move { vxlan::remote_entries(&h, VXLAN).await },
    )
}

#[test]
fn vxlan_overlay_connects_containers_across_hosts() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut nss = Namespaces::new();
    let (h1, h2) = (nss.create("h1"), nss.create("h2"));
    let (c1, c2) = (nss.create("c1"), nss.create("c2"));
    let (u1, u2) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let (ip1, ip2) = (Ipv4Addr::new(10, 98, 0, 2), Ipv4Addr::new(10, 98, 0, 3));

    underlay(&h1, &h2, u1, u2);
    assert!(ping(&h1, u2), "the underlay works");
    let mtu1 = host(&h1, u1);
    let mtu2 = host(&h2, u2);
    assert_eq!((mtu1, mtu2), (1450, 1450));
    // An address nobody holds: the default.
    assert_eq!(
        run(&h1, |h| async move {
            vxlan::mtu_of_address(&h, Ipv4Addr::new(203, 0, 113, 9)).await
        }),
        1500
    );
    let (vx_mtu, _, vx_master) = link_info(&h1, VXLAN);
    assert_eq!(vx_mtu, 1450);
    assert_eq!(vx_master, Some(index_in(&h1, BRIDGE)));

    let mac1 = container(&h1, &c1, ip1, mtu1);
    let mac2 = container(&h2, &c2, ip2, mtu2);
    assert_eq!(link_info(&c1, "eth0").0, 1450);
    assert_eq!(link_info(&h1, "vethc").0, 1450);
    assert_eq!(link_info(&c2, "eth0").1, mac2.to_vec());
    // The bridge follows its ports' smallest MTU.
    assert_eq!(link_info(&h1, BRIDGE).0, 1450);

    // Not programmed yet: nothing crosses (no learning, no flood entry).
    assert!(!ping(&c1, ip2));
    assert_eq!(entries(&h1), (vec![], vec![]));

    program(&h1, ip2, mac2, u2);
    program(&h2, ip1, mac1, u1);
    // Replacing is idempotent.
    program(&h1, ip2, mac2, u2);
    assert_eq!(entries(&h1), (vec![(mac2, u2)], vec![(ip2, mac2)]));
    assert_eq!(entries(&h2), (vec![(mac1, u1)], vec![(ip1, mac1)]));

    assert!(ping(&c1, ip2), "c1 -> c2 over the tunnel");
    assert!(ping(&c2, ip1), "c2 -> c1 over the tunnel");
    assert!(ping(&c1, GATEWAY), "c1 -> its gateway");
    assert!(ping(&c2, GATEWAY), "c2 -> its gateway");
    // ARP for the remote container was answered by the vxlan proxy (nothing else could),
    // and for the gateway by the local bridge.
    assert_eq!(neighbour_mac(&c1, ip2), Some(mac2.to_vec()));
    assert_eq!(neighbour_mac(&c1, GATEWAY), Some(link_info(&h1, BRIDGE).1));
    assert_eq!(neighbour_mac(&c2, GATEWAY), Some(link_info(&h2, BRIDGE).1));
    assert_ne!(link_info(&h1, BRIDGE).1, link_info(&h2, BRIDGE).1);

    // Unprogram host 1: no way back to c2 either way; twice is fine.
    unprogram(&h1, ip2, mac2);
    unprogram(&h1, ip2, mac2);
    assert_eq!(entries(&h1), (vec![], vec![]));
    assert!(!ping(&c1, ip2), "c1 -> c2 after the delete");
    assert!(!ping(&c2, ip1), "c2 -> c1 after the delete");
    assert!(ping(&c1, GATEWAY), "the gateway stays local");

    program(&h1, ip2, mac2, u2);
    assert!(ping(&c1, ip2), "c1 -> c2 after programming again");

    // Another VNI: recreated (the entries go with the old device), still on the bridge.
    let recreated = run(&h1, move |h| async move {
        let again = vxlan::ensure_vxlan(&h, VXLAN, VNI + 1, u1, PORT, BRIDGE, mtu1).await?;
        let same = vxlan::ensure_vxlan(&h, VXLAN, VNI + 1, u1, PORT, BRIDGE, mtu1).await?;
        Ok((again, same))
    });
    assert_eq!(recreated, (true, false));
    assert_eq!(link_info(&h1, VXLAN).2, Some(index_in(&h1, BRIDGE)));
    assert_eq!(entries(&h1), (vec![], vec![]));
    // A missing device: deletes succeed, no entries.
    run(&h1, |h| async move {
        link::delete(&h, VXLAN).await?;
        vxlan::fdb_delete(&h, VXLAN, [2, 0, 0, 0, 0, 1]).await?;
        vxlan::neigh_delete(&h, VXLAN, Ipv4Addr::new(10, 98, 0, 9)).await
    });
    assert_eq!(entries(&h1), (vec![], vec![]));
}
