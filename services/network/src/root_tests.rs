//! Tests against the real kernel (need root; skipped otherwise): bridges, veths, macvlans
//! and namespaces made by a service on a unique instance, all removed by [`Env`]'s Drop,
//! on failure too. Traffic stays inside namespaces these tests make.
use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    path::Path,
    sync::{Arc, Mutex},
};

use berth_common::Config;
use berth_proto::network::v1::{
    AttachContainerRequest, ConnectContainerRequest, CreateNetworkRequest,
    DisconnectContainerRequest, EndpointConfig, PortBinding,
};

use crate::{
    firewall::{FirewallDriver, FirewallState},
    ipam, link, names, netns, Error, NetworkService, Options, Result,
};

/// Records what the service asks of the firewall (the real driver is tested on its own).
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<FirewallState>>>);

impl FirewallDriver for Recorder {
    fn apply(&self, state: &FirewallState) -> Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state.clone());
        Ok(())
    }
    fn remove_all(&self) -> Result<()> {
        Ok(())
    }
}

impl Recorder {
    fn last(&self) -> FirewallState {
        self.0.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

struct Env {
    dir: tempfile::TempDir,
    config: Config,
    prefix: String,
    firewall: Recorder,
    /// Extra links the test made itself (macvlan parents).
    extra: Vec<String>,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn host_links() -> Vec<String> {
    link::run(None, |h| async move { link::link_names(&h).await }).unwrap()
}

fn delete_link(name: &str) {
    let name = name.to_string();
    let _ = link::run(None, move |h| async move { link::delete(&h, &name).await });
}

impl Env {
    fn new() -> Env {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = tempfile::Builder::new()
            .prefix("bnr")
            .tempdir_in("/tmp")
            .unwrap();
        let config = Config {
            root: dir.path().join("root"),
            run_dir: dir.path().join("run"),
            instance: format!("berth-nr{}-{n}", std::process::id()),
        };
        let prefix = config.link_prefix();
        Env {
            dir,
            config,
            prefix,
            firewall: Recorder::default(),
            extra: Vec::new(),
        }
    }

    async fn open(&self) -> NetworkService {
        let options = Options {
            firewall: Box::new(self.firewall.clone()),
            pools: ipam::parse_pools("10.213.0.0/16/24").unwrap(),
            ipam_lock: crate::hosts_lock::ipam_lock_path(),
            dns_upstreams: Vec::new(),
            cluster: None,
        };
        NetworkService::open_with(&self.config, options)
            .await
            .unwrap()
    }

    fn own_links(&self) -> Vec<String> {
        let mut v: Vec<String> = host_links()
            .into_iter()
            .filter(|l| names::is_own_link(&self.prefix, l))
            .collect();
        v.sort();
        v
    }

    /// This test's links once `settled` holds of them (within 5 s): a namespace that goes
    /// takes its links along, and the kernel destroys them in the background.
    fn own_links_once(&self, settled: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let links = self.own_links();
            if settled(&links) || std::time::Instant::now() >= deadline {
                return links;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.config.netns_dir()) {
            for e in entries.flatten() {
                let _ = netns::remove(&e.path());
            }
        }
        for l in host_links() {
            if names::is_own_link(&self.prefix, &l) || self.extra.contains(&l) {
                delete_link(&l);
            }
        }
        let _ = &self.dir;
    }
}

fn ip_of(a: &berth_proto::network::v1::Attachment, i: usize) -> Ipv4Addr {
    a.endpoints[i]
        .ipv4_address
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Default route lines (/proc/net/route of the thread's namespace).
fn default_routes() -> Vec<String> {
    std::fs::read_to_string("/proc/thread-self/net/route")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some("00000000"))
        .map(str::to_string)
        .collect()
}

/// Serves one TCP connection on `ip:port` inside `server`'s namespace and connects to it
/// from `client`'s: proves the two namespaces reach each other over the network.
fn tcp_reaches(server: &Path, client: &Path, ip: Ipv4Addr) -> bool {
    let listener = netns::in_namespace(server, move || TcpListener::bind((ip, 7777)))
        .unwrap()
        .unwrap();
    let accept = std::thread::spawn(move || listener.accept().is_ok());
    let connected = netns::in_namespace(client, move || {
        TcpStream::connect_timeout(
            &SocketAddrV4::new(ip, 7777).into(),
            std::time::Duration::from_secs(3),
        )
        .is_ok()
    })
    .unwrap();
    connected && accept.join().unwrap()
}

/// Create then start, as the engine and the supervisor do.
async fn attach_active(
    service: &NetworkService,
    req: &AttachContainerRequest,
) -> crate::Result<berth_proto::network::v1::Attachment> {
    service.attach_with(req).await?;
    service.activate(&req.container_id).await
}

fn id(n: u8) -> String {
    format!("{:02x}", n).repeat(32)
}

#[tokio::test(flavor = "multi_thread")]
async fn default_bridge_gives_containers_addresses_and_they_reach_each_other() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let env = Env::new();
    let service = env.open().await;
    let bridge = names::default_bridge(&env.prefix);
    assert_eq!(env.own_links(), vec![bridge.clone()]);
    let info = service.get_network("bridge").unwrap();
    assert_eq!(info.interface, bridge);
    let subnet: ipam::Subnet = info.subnet.parse().unwrap();
    assert!(ipam::parse_pools("10.213.0.0/16/24").unwrap()[0]
        .base
        .covers(subnet));

    let (c1, c2) = (id(1), id(2));
    let a1 = service.attach(&c1, "", "one").await.unwrap();
    let a2 = service.attach(&c2, "default", "two").await.unwrap();
    assert_eq!((a1.mode.as_str(), a2.mode.as_str()), ("bridge", "bridge"));
    assert_eq!(a1.endpoints.len(), 1);
    let (ip1, ip2) = (ip_of(&a1, 0), ip_of(&a2, 0));
    assert_eq!(
        Some(ip1),
        subnet
            .first_host()
            .map(|g| Ipv4Addr::from(u32::from(g) + 1))
    );
    assert_ne!(ip1, ip2);
    assert_eq!(
        a1.endpoints[0].mac_address,
        names::format_mac(&names::mac_for(ip1))
    );
    assert!(
        a1.dns_servers.is_empty(),
        "default bridge uses the host's resolvers"
    );
    // Idempotent.
    assert_eq!(service.attach(&c1, "bridge", "one").await.unwrap(), a1);

    let (p1, p2) = (Path::new(&a1.netns_path), Path::new(&a2.netns_path));
    let (mut ifs, routes) =
        netns::in_namespace(p1, || (netns::interface_names(), default_routes())).unwrap();
    ifs.sort();
    assert_eq!(ifs, vec!["eth0", "lo"]);
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(tcp_reaches(p2, p1, ip2), "c1 cannot reach c2 at {ip2}");
    assert_eq!(env.own_links().len(), 3, "bridge and two veths");
    let info = service.get_network("bridge").unwrap();
    assert_eq!(info.containers.len(), 2);

    service.detach(&c1).await.unwrap();
    service.detach(&c2).await.unwrap();
    let only_bridge = vec![bridge];
    assert_eq!(env.own_links_once(|l| l == only_bridge), only_bridge);
    assert!(!p1.exists() && !p2.exists());
    // Only this test's own links are compared: other tests make links in parallel.
}

#[tokio::test(flavor = "multi_thread")]
async fn user_networks_fixed_ips_connect_disconnect_and_remove() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let env = Env::new();
    let service = env.open().await;
    let net = service
        .create_network(&CreateNetworkRequest {
            name: "appnet".into(),
            subnet: "10.213.250.0/24".into(),
            ip_range: "10.213.250.128/25".into(),
            labels: HashMap::from([("team".to_string(), "a".to_string())]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(net.gateway, "10.213.250.1");
    assert_eq!(net.interface, names::user_bridge(&env.prefix, &net.id));
    assert!(host_links().contains(&net.interface));
    let dup = service
        .create_network(&CreateNetworkRequest {
            name: "appnet".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(dup, Error::AlreadyExists(_)));
    assert_eq!(dup.to_string(), "network with name appnet already exists");
    let filtered = service
        .list_networks_filtered(&HashMap::from([(
            "label".to_string(),
            "team=a".to_string(),
        )]))
        .unwrap();
    assert_eq!(filtered.len(), 1);

    let c = id(3);
    let a = attach_active(
        &service,
        &AttachContainerRequest {
            container_id: c.clone(),
            mode: "appnet".into(),
            container_name: "web".into(),
            endpoint: Some(EndpointConfig {
                ipv4_address: "10.213.250.7".into(),
                aliases: vec!["www".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(a.endpoints[0].ipv4_address, "10.213.250.7/24");
    assert_eq!(a.dns_servers, vec!["10.213.250.1"]);
    // A second container with the same address is refused and leaves nothing.
    let links_before = env.own_links();
    let e = service
        .attach_with(&AttachContainerRequest {
            container_id: id(4),
            mode: "appnet".into(),
            endpoint: Some(EndpointConfig {
                ipv4_address: "10.213.250.7".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("10.213.250.7"), "{e}");
    assert_eq!(env.own_links(), links_before);
    assert!(service.get_attachment(&id(4)).unwrap().is_none());
    // Allocation starts in the ip-range.
    let b = service.attach(&id(5), "appnet", "").await.unwrap();
    assert_eq!(b.endpoints[0].ipv4_address, "10.213.250.128/24");
    service.detach(&id(5)).await.unwrap();

    let e = service.remove_network("appnet").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "error while removing network: network appnet id {} has active endpoints",
            net.id
        )
    );
    assert!(service.remove_network("bridge").await.is_err());

    // Connect to the default bridge as eth1, then disconnect.
    let a = service
        .connect(&ConnectContainerRequest {
            container_id: c.clone(),
            network: "bridge".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a.endpoints.len(), 2);
    let mut ifs = netns::in_namespace(Path::new(&a.netns_path), netns::interface_names).unwrap();
    ifs.sort();
    assert_eq!(ifs, vec!["eth0", "eth1", "lo"]);
    let again = service
        .connect(&ConnectContainerRequest {
            container_id: c.clone(),
            network: "bridge".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(again, Error::AlreadyExists(_)), "{again}");
    let a = service
        .disconnect(&DisconnectContainerRequest {
            container_id: c.clone(),
            network: "bridge".into(),
            force: false,
        })
        .await
        .unwrap();
    assert_eq!(a.endpoints.len(), 1);

    // Stopped: no address, no link, no name; a connect is only recorded, and the next
    // start makes both endpoints, the fixed address again.
    let veths = env.own_links();
    service.deactivate(&c).await.unwrap();
    let a = service.get_attachment(&c).unwrap().unwrap();
    assert!(a.ip_addresses.is_empty() && a.endpoints[0].ipv4_address.is_empty());
    assert!(!Path::new(&a.netns_path).exists());
    assert!(
        env.own_links_once(|l| l.len() < veths.len()).len() < veths.len(),
        "veth kept after deactivation"
    );
    let a = service
        .connect(&ConnectContainerRequest {
            container_id: c.clone(),
            network: "bridge".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a.endpoints.len(), 2);
    assert!(!Path::new(&a.netns_path).exists());
    let a = service.activate(&c).await.unwrap();
    assert_eq!(a.endpoints[0].ipv4_address, "10.213.250.7/24");
    let mut ifs = netns::in_namespace(Path::new(&a.netns_path), netns::interface_names).unwrap();
    ifs.sort();
    assert_eq!(ifs, vec!["eth0", "eth1", "lo"]);

    service.detach(&c).await.unwrap();
    assert_eq!(service.remove_network("appnet").await.unwrap(), net.id);
    assert!(!host_links().contains(&net.interface));
    assert!(matches!(
        service.get_network("appnet").unwrap_err(),
        Error::NetworkNotFound(_)
    ));
    // Prune removes only unused user networks.
    service
        .create_network(&CreateNetworkRequest {
            name: "spare".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        service.prune_networks(&HashMap::new()).await.unwrap(),
        vec!["spare".to_string()]
    );
    assert_eq!(env.own_links(), vec![names::default_bridge(&env.prefix)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn macvlan_on_a_test_veth_and_published_ports() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut env = Env::new();
    let service = env.open().await;
    // The parent: one end of a veth pair this test makes (never a real interface).
    let tag = format!("{:05x}", std::process::id() & 0xfffff);
    let (parent, peer) = (format!("bmt{tag}a"), format!("bmt{tag}b"));
    env.extra = vec![parent.clone(), peer.clone()];
    {
        let (p, q) = (parent.clone(), peer.clone());
        link::run(None, move |h| async move {
            h.link()
                .add(rtnetlink::LinkVeth::new(&p, &q).build())
                .execute()
                .await
                .map_err(|e| Error::sys("veth", std::io::Error::other(e.to_string())))
        })
        .unwrap();
    }
    let e = service
        .create_network(&CreateNetworkRequest {
            name: "mv".into(),
            driver: "macvlan".into(),
            subnet: "10.213.251.0/24".into(),
            options: HashMap::from([("parent".to_string(), "nosuchif0".to_string())]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nosuchif0"), "{e}");
    let net = service
        .create_network(&CreateNetworkRequest {
            name: "mv".into(),
            driver: "macvlan".into(),
            subnet: "10.213.251.0/24".into(),
            gateway: "10.213.251.254".into(),
            options: HashMap::from([("parent".to_string(), parent.clone())]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(net.interface, parent);
    let a = service.attach(&id(6), "mv", "").await.unwrap();
    assert_eq!(a.endpoints[0].ipv4_address, "10.213.251.1/24");
    let ifs = netns::in_namespace(Path::new(&a.netns_path), netns::interface_names).unwrap();
    assert!(ifs.contains(&"eth0".to_string()), "{ifs:?}");
    service.detach(&id(6)).await.unwrap();
    service.remove_network("mv").await.unwrap();
    assert!(
        host_links().contains(&parent),
        "the parent is not ours to delete"
    );

    // A port already taken is accepted at create and fails the activation, which
    // leaves nothing behind; once the port is free the same container activates.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let before = env.own_links();
    let on_taken = AttachContainerRequest {
        container_id: id(7),
        ports: vec![PortBinding {
            protocol: "tcp".into(),
            container_port: 80,
            host_ip: "127.0.0.1".into(),
            host_port: port.into(),
        }],
        ..Default::default()
    };
    service.attach_with(&on_taken).await.unwrap();
    let e = service.activate(&id(7)).await.unwrap_err();
    assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
    assert_eq!(
        e.to_string(),
        format!("Bind for 127.0.0.1:{port} failed: port is already allocated")
    );
    assert_eq!(env.own_links(), before);
    assert!(!env.config.netns_dir().join(id(7)).exists());
    assert!(service
        .get_attachment(&id(7))
        .unwrap()
        .unwrap()
        .ports
        .is_empty());
    drop(taken);
    let a = service.activate(&id(7)).await.unwrap();
    assert_eq!(a.ports[0].host_port, u32::from(port));
    // Deactivation frees the port and the namespace, and is idempotent.
    service.deactivate(&id(7)).await.unwrap();
    service.deactivate(&id(7)).await.unwrap();
    assert!(!env.config.netns_dir().join(id(7)).exists());
    assert_eq!(env.own_links_once(|l| l == before), before);
    assert!(env.firewall.last().ports.is_empty());
    TcpListener::bind(("127.0.0.1", port)).expect("port released at deactivation");
    service.detach(&id(7)).await.unwrap();
    // A free ephemeral port is bound, recorded and handed to the firewall.
    let a = attach_active(
        &service,
        &AttachContainerRequest {
            container_id: id(8),
            ports: vec![PortBinding {
                protocol: "tcp".into(),
                container_port: 80,
                host_ip: "127.0.0.1".into(),
                host_port: 0,
            }],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(a.ports.len(), 1);
    assert_ne!(a.ports[0].host_port, 0);
    let fw = env.firewall.last();
    assert_eq!(fw.ports.len(), 1);
    assert_eq!(fw.ports[0].container_ip, ip_of(&a, 0));
    assert_eq!(fw.networks.len(), 1);
    service.detach(&id(8)).await.unwrap();
    assert!(env.firewall.last().ports.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_endpoints_and_removes_strays() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let env = Env::new();
    let c = id(9);
    let (a, bridge) = {
        let service = env.open().await;
        let a = service.attach(&c, "", "").await.unwrap();
        (a, names::default_bridge(&env.prefix))
    };
    // A veth of a crashed attach, and a deleted bridge (as after a reboot).
    let stray = names::host_veth(&env.prefix);
    {
        let s = stray.clone();
        link::run(None, move |h| async move {
            h.link()
                .add(rtnetlink::LinkVeth::new(&s, &format!("{s}x")).build())
                .execute()
                .await
                .map_err(|e| Error::sys("veth", std::io::Error::other(e.to_string())))
        })
        .unwrap();
    }
    delete_link(&bridge);
    let service = env.open().await;
    let links = env.own_links();
    assert!(links.contains(&bridge), "bridge not recreated: {links:?}");
    assert!(!links.contains(&stray), "stray veth kept: {links:?}");
    let again = service.get_attachment(&c).unwrap().unwrap();
    assert_eq!(again.endpoints, a.endpoints);
    // The veth is a port of the recreated bridge again.
    let host = &a.endpoints[0].host_interface;
    let master = std::fs::read_link(format!("/sys/class/net/{host}/master")).unwrap();
    assert!(master.ends_with(&bridge), "{master:?}");
    service.detach(&c).await.unwrap();
    let only_bridge = vec![bridge];
    assert_eq!(env.own_links_once(|l| l == only_bridge), only_bridge);
}
