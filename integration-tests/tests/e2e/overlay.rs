//! Overlay networks across hosts: three "hosts" on this machine, each a network namespace
//! running its own full set of berth services, joined by an underlay bridge; etcd runs in
//! the underlay namespace and every host reaches it through the underlay (the layout of
//! deploy/multihost). Nothing touches the root namespace's network.
use std::{
    collections::BTreeSet,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use berth_integration_tests::{
    etcd::EtcdPeer, eventually, multihost::Underlay, stderr, stdout, Engine,
};

static N: AtomicU32 = AtomicU32::new(0);

/// Hosts, etcd and the underlay; dropped in that order.
struct Lab {
    hosts: Vec<Engine>,
    etcd: EtcdPeer,
    underlay: Underlay,
    /// Each host's environment, to restart it the same way.
    prefix: String,
    /// With an etcd over https: the `deploy/certs.sh` directory (CA, etcd's server
    /// certificate naming the underlay address, the hosts' client identity).
    tls: Option<tempfile::TempDir>,
}

const NODES: [&str; 3] = ["host-a", "host-b", "host-c"];

impl Lab {
    fn new(hosts: usize) -> Lab {
        Lab::with_env(hosts, |_| Vec::new())
    }

    /// Like [`Lab::new`], with extra environment per host.
    fn with_env(hosts: usize, extra: impl Fn(usize) -> Vec<(&'static str, String)> + Sync) -> Lab {
        Lab::with_options(hosts, false, extra)
    }

    /// [`Lab::new`] with etcd on https, asking every host for its client certificate.
    fn with_etcd_tls(hosts: usize) -> Lab {
        Lab::with_options(hosts, true, |_| Vec::new())
    }

    fn with_options(
        hosts: usize,
        tls: bool,
        extra: impl Fn(usize) -> Vec<(&'static str, String)> + Sync,
    ) -> Lab {
        let underlay = Underlay::new(hosts);
        let tls = tls.then(|| {
            let dir = tempfile::tempdir().unwrap();
            let out = std::process::Command::new(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/certs.sh"),
            )
            .arg(dir.path())
            .arg(Underlay::underlay_ip().to_string())
            .output()
            .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            dir
        });
        let etcd = EtcdPeer::start_in_netns_with(
            &underlay.underlay_netns(),
            Underlay::underlay_ip(),
            tls.as_ref().map(|d| d.path()),
        );
        let prefix = format!(
            "/bt{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut lab = Lab {
            hosts: Vec::new(),
            etcd,
            underlay,
            prefix,
            tls,
        };
        // Hosts start side by side: each loads the image on its own.
        let started: Vec<Engine> = thread::scope(|s| {
            let handles: Vec<_> = (0..hosts)
                .map(|i| {
                    let (lab, extra) = (&lab, &extra);
                    s.spawn(move || {
                        let mut env = lab.env(i);
                        env.extend(extra(i));
                        let env: Vec<(&str, &str)> =
                            env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        Engine::with_busybox_in_netns(&lab.underlay.netns_path(i), &env)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        lab.hosts = started;
        lab
    }

    fn env(&self, host: usize) -> Vec<(&'static str, String)> {
        vec![
            ("BERTH_CLUSTER_STORE", self.etcd.endpoint()),
            (
                "BERTH_ADVERTISE_ADDR",
                self.underlay.host_ip(host).to_string(),
            ),
            ("BERTH_NODE_NAME", NODES[host].to_string()),
            ("BERTH_CLUSTER_PREFIX", self.prefix.clone()),
            // Short, so a dead host's endpoints go quickly.
            ("BERTH_CLUSTER_LEASE_TTL", "3".to_string()),
        ]
        .into_iter()
        .chain(self.tls.iter().flat_map(|dir| {
            let file = |name: &str| dir.path().join(name).display().to_string();
            [
                ("BERTH_CLUSTER_CA", file("ca.pem")),
                ("BERTH_CLUSTER_CERT", file("client.pem")),
                ("BERTH_CLUSTER_KEY", file("client-key.pem")),
            ]
        }))
        .collect()
    }

    /// The client TLS settings of the hosts, when etcd is on https.
    fn etcd_tls(&self) -> Option<tonic::transport::ClientTlsConfig> {
        let files = berth_common::tls::ClientFiles::in_dir(self.tls.as_ref()?.path());
        let identity = Some((files.cert.as_path(), files.key.as_path()));
        Some(berth_common::tls::client_config(&files.ca, identity).unwrap())
    }

    /// The keys under this lab's prefix in etcd, read from inside the underlay (where etcd
    /// listens) with berth's own etcd client.
    fn etcd_keys(&self) -> Vec<String> {
        let netns = self.underlay.underlay_netns();
        let (endpoint, prefix) = (self.etcd.endpoint(), format!("{}/v1/", self.prefix));
        let tls = self.etcd_tls();
        thread::spawn(move || {
            use std::os::unix::io::AsRawFd;
            let ns = std::fs::File::open(&netns).unwrap();
            // SAFETY: setns on this thread only.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = berth_etcd::Client::connect_tls(&[endpoint], tls)
                    .await
                    .unwrap();
                let (kvs, _) = client.get_prefix(&prefix).await.unwrap();
                kvs.into_iter().map(|kv| kv.key).collect()
            })
        })
        .join()
        .unwrap()
    }

    fn host(&self, i: usize) -> &Engine {
        &self.hosts[i]
    }

    /// Every host's service logs and forwarding state, for failure messages.
    fn logs(&self) -> String {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let ns = self.underlay.host_name(i);
                let show = |args: &[&str]| {
                    let out = std::process::Command::new(args[0])
                        .args(&args[1..])
                        .output()
                        .map(|o| stdout(&o))
                        .unwrap_or_default();
                    format!("$ {}\n{out}", args.join(" "))
                };
                format!(
                    "===== {} =====\n{}\n{}\n{}\n{}",
                    NODES[i],
                    show(&["ip", "-n", &ns, "-d", "link"]),
                    show(&["bridge", "-n", &ns, "fdb", "show"]),
                    show(&["ip", "-n", &ns, "neigh", "show"]),
                    h.service_logs()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `network` is listed on every host.
    fn wait_network_everywhere(&self, network: &str) {
        for (i, h) in self.hosts.iter().enumerate() {
            let seen = eventually(Duration::from_secs(10), || {
                h.berth(&[
                    "network",
                    "ls",
                    "--format",
                    "{{.Name}} {{.Driver}} {{.Scope}}",
                ])
                .stdout
                .windows(network.len())
                .any(|w| w == network.as_bytes())
            });
            assert!(
                seen,
                "{network} not listed on {}\n{}",
                NODES[i],
                self.logs()
            );
        }
    }
}

/// A detached busybox httpd serving `body` as its index page.
fn serve(h: &Engine, name: &str, network: &str, alias: Option<&str>, body: &str) {
    let script =
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut args = vec!["run", "-d", "--name", name, "--net", network];
    if let Some(a) = alias {
        args.extend(["--net-alias", a]);
    }
    args.extend(["busybox", "sh", "-c", &script]);
    h.ok(&args);
}

/// `wget -qO- url` from a throwaway container on `network`; None on failure. (busybox
/// 1.35's `wget -T` crashes on a refused connection: `timeout` bounds it instead.)
fn fetch(h: &Engine, network: &str, url: &str) -> Option<String> {
    let out = h.berth(&[
        "run", "--rm", "--net", network, "busybox", "timeout", "5", "wget", "-qO-", url,
    ]);
    out.status
        .success()
        .then(|| stdout(&out).trim().to_string())
}

fn overlay(h: &Engine, args: &[&str]) {
    let mut all = vec!["network", "create", "-d", "overlay"];
    all.extend_from_slice(args);
    h.ok(&all);
}

#[test]
fn overlay_state_goes_through_an_etcd_on_https_with_client_certificates() {
    let lab = Lab::with_etcd_tls(2);
    let (a, b) = (lab.host(0), lab.host(1));
    overlay(a, &["--subnet", "10.91.0.0/24", "tlsnet"]);
    lab.wait_network_everywhere("tlsnet overlay global");
    serve(b, "tls-api", "tlsnet", None, "hello-over-tls");
    let got = eventually(Duration::from_secs(10), || {
        fetch(a, "tlsnet", "http://tls-api/").as_deref() == Some("hello-over-tls")
    });
    assert!(got, "A cannot fetch from B by name\n{}", lab.logs());
    let keys = lab.etcd_keys();
    assert!(keys.iter().any(|k| k.contains("/v1/networks/")), "{keys:?}");
    b.ok(&["rm", "-f", "tls-api"]);
}

#[test]
fn overlay_joins_containers_on_three_hosts_by_name_and_alias() {
    let lab = Lab::new(3);
    let (a, b, c) = (lab.host(0), lab.host(1), lab.host(2));
    let links_before: Vec<Vec<String>> = lab.hosts.iter().map(|h| h.links()).collect();
    overlay(
        a,
        &[
            "--subnet",
            "10.90.0.0/24",
            "--attachable",
            "-o",
            "vxlan-id=4242",
            "ovnet",
        ],
    );
    lab.wait_network_everywhere("ovnet overlay global");

    // Created on A, served on B, fetched by name from C.
    serve(b, "api", "ovnet", None, "hello-from-b");
    let started = Instant::now();
    let mut body = None;
    while started.elapsed() < Duration::from_secs(15) && body.is_none() {
        body = fetch(c, "ovnet", "http://api/");
    }
    assert_eq!(body.as_deref(), Some("hello-from-b"), "{}", lab.logs());
    let out = c.berth(&[
        "run", "--rm", "--net", "ovnet", "busybox", "ping", "-c1", "-W2", "api",
    ]);
    assert!(out.status.success(), "ping api from C: {}", stderr(&out));
    // The address came from the overlay subnet; the gateway is each host's own.
    let ip = b.container_ip("api", "ovnet");
    assert!(ip.starts_with("10.90.0."), "{ip}");
    let out = a.berth(&[
        "run", "--rm", "--net", "ovnet", "busybox", "ping", "-c1", "-W2", &ip,
    ]);
    assert!(out.status.success(), "ping {ip} from A: {}", stderr(&out));

    // An alias on two hosts answers with both, in turn (round robin: the first answer
    // changes between queries). wget cannot show it: glibc's address sorting (RFC 6724
    // rule 9) picks the same address of one subnet every time.
    serve(a, "web-a", "ovnet", Some("web"), "from-a");
    serve(b, "web-b", "ovnet", Some("web"), "from-b");
    let (ip_a, ip_b) = (
        a.container_ip("web-a", "ovnet"),
        b.container_ip("web-b", "ovnet"),
    );
    let script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do nslookup web | sed -n 's/^Address: //p' | head -1; done";
    let mut firsts = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while firsts.len() < 2 && Instant::now() < deadline {
        let out = c.berth(&[
            "run", "--rm", "--net", "ovnet", "busybox", "sh", "-c", script,
        ]);
        firsts.extend(
            stdout(&out)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty()),
        );
    }
    assert_eq!(
        firsts,
        BTreeSet::from([ip_a.clone(), ip_b.clone()]),
        "first answers for web\n{}",
        lab.logs()
    );
    // Each one serves through the alias' addresses.
    for (ip, body) in [(&ip_a, "from-a"), (&ip_b, "from-b")] {
        let got = fetch(c, "ovnet", &format!("http://{ip}/"));
        assert_eq!(got.as_deref(), Some(body), "{ip}");
    }

    // Inspect on any host lists every host's endpoints and the peers.
    let out = c.ok(&["network", "inspect", "ovnet"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let net = &v[0];
    assert_eq!(net["Driver"], "overlay");
    assert_eq!(net["Scope"], "global");
    assert_eq!(net["Attachable"], true);
    assert_eq!(
        net["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
        "4242"
    );
    let names: BTreeSet<String> = net["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| {
            format!(
                "{}@{}",
                c["Name"].as_str().unwrap(),
                c["Node"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        names.contains("api@host-b")
            && names.contains("web-a@host-a")
            && names.contains("web-b@host-b"),
        "{names:?}"
    );
    let peers: BTreeSet<String> = net["Peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(peers, ["host-a", "host-b"].map(String::from).into());

    // In use somewhere: refused everywhere, naming the hosts.
    let out = c.berth(&["network", "rm", "ovnet"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("active endpoints"),
        "{}",
        stderr(&out)
    );

    // A removed container's name and forwarding entries disappear on the other hosts.
    b.ok(&["rm", "-f", "api"]);
    assert!(
        eventually(Duration::from_secs(5), || fetch(c, "ovnet", "http://api/")
            .is_none()),
        "api still answers after rm"
    );
    a.ok(&["rm", "-f", "web-a"]);
    b.ok(&["rm", "-f", "web-b"]);
    // Removal from any host removes it from all, with its devices.
    assert!(
        eventually(Duration::from_secs(5), || c
            .berth(&["network", "rm", "ovnet"])
            .status
            .success()),
        "network rm: {}",
        lab.logs()
    );
    for (i, h) in lab.hosts.iter().enumerate() {
        let gone = eventually(Duration::from_secs(10), || {
            !stdout(&h.berth(&["network", "ls"])).contains("ovnet") && h.links() == links_before[i]
        });
        assert!(gone, "ovnet left on {}: {:?}", NODES[i], h.links());
    }
    // In etcd only the hosts' membership is left.
    let keys = lab.etcd_keys();
    assert!(
        keys.iter().all(|k| k.contains("/v1/nodes/")) && keys.len() == 3,
        "{keys:?}"
    );
}

#[test]
fn hosts_drive_each_other_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, rogue) = (dir.path().join("tls"), dir.path().join("rogue"));
    let certs = |d: &std::path::Path, hosts: &[&str]| {
        let out = std::process::Command::new(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/certs.sh"),
        )
        .arg(d)
        .args(hosts)
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    certs(&tls, &["192.0.2.11", "192.0.2.12"]);
    certs(&rogue, &["192.0.2.11"]);
    // Each host's engine also listens on its underlay address, with mutual TLS.
    let configs: Vec<std::path::PathBuf> = (0..2)
        .map(|i| {
            let path = dir.path().join(format!("berth-{i}.toml"));
            std::fs::write(
                &path,
                format!(
                    "[tls]\ndir = \"{}\"\n[listen]\nengine = \"192.0.2.1{}:7070\"\n",
                    tls.display(),
                    i + 1
                ),
            )
            .unwrap();
            path
        })
        .collect();
    let lab = Lab::with_env(2, |i| {
        vec![("BERTH_CONFIG_FILE", configs[i].display().to_string())]
    });
    overlay(lab.host(0), &["--subnet", "10.97.0.0/24", "tlsnet"]);
    lab.host(0).ok(&[
        "run", "-d", "--net", "tlsnet", "--name", "on-a", "busybox", "sleep", "300",
    ]);
    // From host B's namespace, the CLI drives host A's engine over the underlay.
    let berth = berth_integration_tests::bin_dir().join("berth");
    let remote = |env: &[(&str, &std::path::Path)], args: &[&str]| {
        let mut cmd = lab.underlay.exec_cmd(1, berth.to_str().unwrap());
        cmd.env_remove("BERTH_CONFIG_FILE")
            .env("BERTH_CONFIG_FILE", dir.path().join("none.toml"))
            .env("BERTH_TLS_DIR", &tls)
            .args(["--host", "tcp://192.0.2.11:7070"])
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let ps = loop {
        let out = remote(&[], &["ps", "--format", "{{.Names}}"]);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(ps.status.success(), "{}\n{}", stderr(&ps), lab.logs());
    assert_eq!(stdout(&ps).trim(), "on-a");
    let out = remote(
        &[],
        &[
            "network",
            "ls",
            "--filter",
            "driver=overlay",
            "--format",
            "{{.Name}}",
        ],
    );
    assert_eq!(stdout(&out).trim(), "tlsnet", "{}", stderr(&out));
    // Another CA's client certificate, or none: refused.
    let out = remote(
        &[
            ("BERTH_TLS_CERT", &rogue.join("client.pem")),
            ("BERTH_TLS_KEY", &rogue.join("client-key.pem")),
        ],
        &["ps"],
    );
    assert_eq!(out.status.code(), Some(125), "{}", stdout(&out));
    assert!(stderr(&out).contains("192.0.2.11"), "{}", stderr(&out));
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(tls.join("ca.pem"), empty.join("ca.pem")).unwrap();
    let out = remote(&[("BERTH_TLS_DIR", &empty)], &["ps"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a client without a certificate was served"
    );
    lab.host(0).ok(&["rm", "-f", "on-a"]);
}

#[test]
fn overlay_addresses_are_unique_under_concurrent_runs_on_all_hosts() {
    let lab = Lab::new(3);
    overlay(lab.host(0), &["--subnet", "10.91.0.0/24", "ipnet"]);
    lab.wait_network_everywhere("ipnet overlay");
    let per_host = 5;
    // Fifteen runs at once, five on each host, all allocating from the same subnet.
    let names: Vec<Vec<String>> = (0..3)
        .map(|i| (0..per_host).map(|k| format!("c{i}-{k}")).collect())
        .collect();
    thread::scope(|s| {
        for (i, host_names) in names.iter().enumerate() {
            for name in host_names {
                let h = lab.host(i);
                s.spawn(move || {
                    h.ok(&[
                        "run", "-d", "--net", "ipnet", "--name", name, "busybox", "sleep", "300",
                    ]);
                });
            }
        }
    });
    let mut ips = BTreeSet::new();
    for (i, host_names) in names.iter().enumerate() {
        for name in host_names {
            let ip = lab.host(i).container_ip(name, "ipnet");
            assert!(ip.starts_with("10.91.0."), "{name}: {ip}");
            assert!(
                ips.insert(ip.clone()),
                "{ip} handed out twice\n{}",
                lab.logs()
            );
        }
    }
    assert_eq!(ips.len(), 3 * per_host);
    // The gateway is never handed out.
    assert!(!ips.contains("10.91.0.1"));
}

#[test]
fn overlay_survives_a_host_dying_and_rejoining_and_an_etcd_restart() {
    let mut lab = Lab::new(2);
    overlay(lab.host(0), &["--subnet", "10.92.0.0/24", "lifenet"]);
    lab.wait_network_everywhere("lifenet overlay");
    serve(lab.host(1), "api", "lifenet", None, "still-here");
    let reach = |lab: &Lab| fetch(lab.host(0), "lifenet", "http://api/");
    assert!(
        eventually(Duration::from_secs(15), || reach(&lab).as_deref()
            == Some("still-here")),
        "{}",
        lab.logs()
    );

    // Host B dies (every service killed; its container keeps running): once its lease
    // expires, A forgets B's endpoint.
    for s in [
        "engine",
        "network",
        "supervisor",
        "volume",
        "image-store",
        "log-router",
    ] {
        lab.hosts[1].stop_service(s, true);
    }
    assert!(
        eventually(Duration::from_secs(15), || {
            let out = lab.host(0).berth(&["network", "inspect", "lifenet"]);
            !stdout(&out).contains("\"api\"")
        }),
        "B's endpoint outlived its lease\n{}",
        lab.logs()
    );
    assert!(
        reach(&lab).is_none(),
        "api answered while its host was gone"
    );

    // B comes back: its running container is published again, same address.
    for s in [
        "log-router",
        "image-store",
        "volume",
        "network",
        "supervisor",
        "engine",
    ] {
        lab.hosts[1].start_service(s);
    }
    assert!(
        eventually(Duration::from_secs(15), || reach(&lab).as_deref()
            == Some("still-here")),
        "api not reachable after B rejoined\n{}",
        lab.logs()
    );

    // etcd restarts: nothing is lost, and changes made afterwards still propagate.
    lab.etcd.stop();
    thread::sleep(Duration::from_millis(500));
    lab.etcd.start_again();
    serve(lab.host(1), "api2", "lifenet", None, "after-restart");
    assert!(
        eventually(Duration::from_secs(20), || {
            fetch(lab.host(0), "lifenet", "http://api2/").as_deref() == Some("after-restart")
        }),
        "api2 not reachable after the etcd restart\n{}",
        lab.logs()
    );
    assert_eq!(reach(&lab).as_deref(), Some("still-here"));
    lab.wait_network_everywhere("lifenet overlay");

    // The link to B is cut past the lease and restored: B rejoins on its own.
    lab.underlay.cut_link(1);
    thread::sleep(Duration::from_secs(6));
    assert!(reach(&lab).is_none());
    lab.underlay.restore_link(1);
    assert!(
        eventually(Duration::from_secs(20), || reach(&lab).as_deref()
            == Some("still-here")),
        "api not reachable after B's link came back\n{}",
        lab.logs()
    );
    for h in &lab.hosts {
        let _ = h.berth(&["rm", "-f", "api", "api2"]);
    }
}

#[test]
fn overlay_refusals_name_the_problem() {
    // No cluster store: a clear error, nothing made.
    let single = Engine::start();
    let out = single.berth(&["network", "create", "-d", "overlay", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cluster store"), "{}", stderr(&out));
    assert!(!stdout(&single.berth(&["network", "ls"])).contains("nope"));

    let lab = Lab::new(2);
    let (a, b) = (lab.host(0), lab.host(1));
    for (args, word) in [
        (vec!["-o", "vxlan-id=0", "v0"], "vxlan-id"),
        (vec!["-o", "vxlan-id=abc", "v1"], "abc"),
        (vec!["--subnet", "10.93.0.1/24", "v2"], "10.93.0.1/24"),
        (
            vec!["-o", "com.docker.network.bridge.name=x", "v3"],
            "bridge.name",
        ),
    ] {
        let mut all = vec!["network", "create", "-d", "overlay"];
        all.extend(args);
        let out = a.berth(&all);
        assert!(!out.status.success(), "{all:?} succeeded");
        assert!(stderr(&out).contains(word), "{all:?}: {}", stderr(&out));
    }
    overlay(
        a,
        &["--subnet", "10.94.0.0/24", "-o", "vxlan-id=5000", "first"],
    );
    lab.wait_network_everywhere("first overlay");
    // The same name, VNI or subnet from another host is refused.
    for (args, word) in [
        (vec!["--subnet", "10.95.0.0/24", "first"], "already exists"),
        (
            vec!["-o", "vxlan-id=5000", "--subnet", "10.95.0.0/24", "second"],
            "5000",
        ),
        (vec!["--subnet", "10.94.0.0/25", "third"], "10.94.0.0"),
    ] {
        let mut all = vec!["network", "create", "-d", "overlay"];
        all.extend(args);
        let out = b.berth(&all);
        assert!(!out.status.success(), "{all:?} succeeded");
        assert!(stderr(&out).contains(word), "{all:?}: {}", stderr(&out));
    }
    // A fixed address held on another host is refused.
    a.ok(&[
        "run",
        "-d",
        "--net",
        "first",
        "--ip",
        "10.94.0.50",
        "--name",
        "fixed",
        "busybox",
        "sleep",
        "300",
    ]);
    let out = b.berth(&[
        "run",
        "-d",
        "--net",
        "first",
        "--ip",
        "10.94.0.50",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("10.94.0.50"), "{}", stderr(&out));
    assert!(
        stdout(&b.berth(&["ps", "-aq"])).trim().is_empty(),
        "a refused run left a container"
    );
    a.ok(&["rm", "-f", "fixed"]);
}
