//! The network service against the real kernel (needs root): namespaces are made, have
//! `lo` up, are shared and removed, and attachments survive a restart.
use std::path::{Path, PathBuf};

use berth_common::{ids, Config};
use berth_network::{
    firewall::{FirewallDriver, Nftables},
    ipam, link, names, netns, NetworkService, Options,
};

/// A private root, run dir and instance; removes whatever a test left on drop.
struct Env {
    _dir: tempfile::TempDir,
    config: Config,
    ids: Vec<String>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("bn")
            .tempdir_in("/tmp")
            .unwrap();
        let config = Config {
            root: dir.path().join("root"),
            run_dir: dir.path().join("run"),
            // One instance per test: each has its own bridge and nft table to remove.
            instance: format!("berth-nt{}-{}", std::process::id(), {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            }),
        };
        Env {
            _dir: dir,
            config,
            ids: Vec::new(),
        }
    }

    /// The service on a small test pool (so the default bridge never takes 172.17/16).
    async fn open(&self) -> NetworkService {
        let options = Options {
            firewall: Box::new(Nftables::new(self.config.nft_table())),
            pools: ipam::parse_pools("10.213.0.0/16/24").unwrap(),
            ipam_lock: berth_network::hosts_lock::ipam_lock_path(),
            dns_upstreams: Vec::new(),
            cluster: None,
        };
        NetworkService::open_with(&self.config, options)
            .await
            .unwrap()
    }

    fn id(&mut self) -> String {
        let id = ids::random_id();
        self.ids.push(id.clone());
        id
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = netns::remove(&self.config.netns_dir().join(id));
        }
        // The default bridge (and anything else) this instance made, and its nft table.
        let prefix = self.config.link_prefix();
        let links =
            link::run(None, |h| async move { link::link_names(&h).await }).unwrap_or_default();
        for l in links.into_iter().filter(|l| names::is_own_link(&prefix, l)) {
            let _ = link::run(None, move |h| async move { link::delete(&h, &l).await });
        }
        let _ = Nftables::new(self.config.nft_table()).remove_all();
    }
}

fn mounted(path: &Path) -> bool {
    let target = path.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test]
async fn none_makes_a_namespace_with_lo_up_and_detach_removes_it() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut env = Env::new();
    let service = env.open().await;
    let id = env.id();
    let a = service.attach(&id, "none", "").await.unwrap();
    assert_eq!(a.mode, "none");
    let path = PathBuf::from(&a.netns_path);
    assert_eq!(path, env.config.netns_dir().join(&id));
    assert!(path.exists() && mounted(&path) && netns::is_namespace(&path));

    let (names, flags) = netns::in_namespace(&path, || {
        (netns::interface_names(), netns::interface_flags("lo"))
    })
    .unwrap();
    assert_eq!(names, vec!["lo".to_string()]);
    let flags = flags.unwrap();
    assert!(
        flags & libc::IFF_UP as libc::c_short != 0,
        "lo is down: {flags:#x}"
    );

    // Idempotent: the same attachment again, no second namespace.
    let again = service.attach(&id, "none", "").await.unwrap();
    assert_eq!(again, a);
    // Another mode for the same container is refused.
    assert!(service.attach(&id, "host", "").await.is_err());

    let nets = service.list_networks().unwrap();
    let none = nets.iter().find(|n| n.name == "none").unwrap();
    assert_eq!(none.containers, vec![id.clone()]);
    assert_eq!(none.driver, "null");
    assert_eq!(service.get_network(&none.id[..12]).unwrap().name, "none");

    service.detach(&id).await.unwrap();
    assert!(!path.exists());
    assert!(!mounted(&path));
    service.detach(&id).await.unwrap();
    assert!(service.get_attachment(&id).unwrap().is_none());
}

#[tokio::test]
async fn host_and_container_modes_share_namespaces() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut env = Env::new();
    let service = env.open().await;
    let (owner, joiner, host, via_host) = (env.id(), env.id(), env.id(), env.id());
    let a = service.attach(&owner, "none", "").await.unwrap();
    let b = service
        .attach(&joiner, &format!("container:{owner}"), "")
        .await
        .unwrap();
    assert_eq!(b.netns_path, a.netns_path);
    assert_eq!(b.mode, format!("container:{owner}"));

    let h = service.attach(&host, "host", "").await.unwrap();
    assert_eq!((h.mode.as_str(), h.netns_path.as_str()), ("host", ""));
    let v = service
        .attach(&via_host, &format!("container:{host}"), "")
        .await
        .unwrap();
    assert_eq!(v.netns_path, "");

    // The joiner does not own the namespace: detaching it leaves the owner's in place.
    service.detach(&joiner).await.unwrap();
    assert!(netns::is_namespace(Path::new(&a.netns_path)));
    service.detach(&owner).await.unwrap();
    assert!(!Path::new(&a.netns_path).exists());
    service.detach(&host).await.unwrap();
    service.detach(&via_host).await.unwrap();

    // Unknown modes and targets.
    let e = service.attach(&env.id(), "foo", "").await.unwrap_err();
    let s: tonic::Status = e.into();
    assert_eq!(
        (s.code(), s.message()),
        (tonic::Code::NotFound, "network foo not found")
    );
    let missing = ids::random_id();
    let s: tonic::Status = service
        .attach(&env.id(), &format!("container:{missing}"), "")
        .await
        .unwrap_err()
        .into();
    assert_eq!(s.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        std::fs::read_dir(env.config.netns_dir()).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn attachments_survive_a_restart_and_orphans_are_removed() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut env = Env::new();
    let id = env.id();
    let orphan = env.id();
    let path = {
        let service = env.open().await;
        service.attach(&id, "none", "").await.unwrap().netns_path
    };
    // A namespace made but never recorded (a crash in between).
    let orphan_path = env.config.netns_dir().join(&orphan);
    netns::create(&orphan_path).unwrap();
    // A stopped (recorded, inactive) container whose namespace a crash left behind.
    let stopped = env.id();
    let stopped_path = {
        let service = env.open().await;
        let a = service.attach(&stopped, "none", "").await.unwrap();
        service.deactivate(&stopped).await.unwrap();
        assert!(!Path::new(&a.netns_path).exists());
        a.netns_path
    };
    netns::create(Path::new(&stopped_path)).unwrap();

    let service = env.open().await;
    let a = service
        .get_attachment(&id)
        .unwrap()
        .expect("attachment kept");
    assert_eq!(a.netns_path, path);
    assert!(netns::is_namespace(Path::new(&path)));
    assert!(!orphan_path.exists(), "orphaned namespace kept");
    assert!(
        !Path::new(&stopped_path).exists(),
        "namespace of an inactive container kept"
    );
    assert!(service.get_attachment(&stopped).unwrap().is_some());
    service.detach(&stopped).await.unwrap();
    service.detach(&id).await.unwrap();
    assert!(!mounted(Path::new(&path)));
}
