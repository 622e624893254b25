//! Several "hosts" on this one machine, for multi-host (overlay) tests.
//!
//! An [`Underlay`] is a set of network namespaces made with `ip netns`: one underlay
//! namespace `<p>ul` holding the bridge `ul0` (192.0.2.1/24, where etcd listens), and per host
//! `i` a namespace `<p>h<i>` whose `eth0` (192.0.2.(11+i)/24) is one end of a veth pair whose
//! other end, `h<i>`, is a port of `ul0`. Each host namespace runs its own berth services
//! ([`crate::Engine::start_in_netns`]). Nothing is created in the root namespace: dropping
//! the underlay deletes its namespaces, and every veth dies with them.
//!
//! Names are `bu<pid>x<n>…` (`<pid>` this test process, `<n>` a counter), short because
//! they show up in `ip netns` listings; namespaces of this scheme whose process is gone (a
//! crashed run) are deleted when a new underlay is made.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

static UNDERLAY_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where `ip netns` keeps its namespace files.
const NETNS_DIR: &str = "/run/netns";

/// The underlay bridge's name, in the underlay namespace.
pub const UNDERLAY_BRIDGE: &str = "ul0";

/// Hosts joined by an underlay bridge, each in its own network namespace.
pub struct Underlay {
    prefix: String,
    hosts: usize,
    /// Namespaces made so far (deleted on drop, also after a half-done `new`).
    made: Vec<String>,
}

impl Underlay {
    /// Builds the underlay namespace with its bridge and `hosts` host namespaces wired to
    /// it. Panics (after removing what it made) when a step fails.
    pub fn new(hosts: usize) -> Underlay {
        assert!(hosts > 0 && hosts <= 200, "1..=200 hosts");
        remove_stale_namespaces();
        let prefix = format!(
            "bu{}x{}",
            std::process::id(),
            UNDERLAY_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut underlay = Underlay {
            prefix,
            hosts,
            made: Vec::new(),
        };
        let ul = underlay.underlay_name();
        underlay.add_netns(&ul);
        ip(&["-n", &ul, "link", "add", UNDERLAY_BRIDGE, "type", "bridge"]);
        ip(&[
            "-n",
            &ul,
            "addr",
            "add",
            &format!("{}/24", Underlay::underlay_ip()),
            "dev",
            UNDERLAY_BRIDGE,
        ]);
        ip(&["-n", &ul, "link", "set", UNDERLAY_BRIDGE, "up"]);
        for host in 0..hosts {
            let name = underlay.host_name(host);
            underlay.add_netns(&name);
            let port = Underlay::port_name(host);
            // Both ends are made in the underlay namespace; the peer moves into the host
            // namespace as eth0 in the same call.
            ip(&[
                "-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &name,
            ]);
            ip(&[
                "-n",
                &ul,
                "link",
                "set",
                &port,
                "master",
                UNDERLAY_BRIDGE,
                "up",
            ]);
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{}/24", underlay.host_ip(host)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &name, "link", "set", "eth0", "mtu", "1500", "up"]);
        }
        underlay
    }

    fn add_netns(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.made.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// The name prefix of every namespace of this underlay (`bu<pid>x<n>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many hosts the underlay has.
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// The `ip netns` name of the underlay namespace.
    pub fn underlay_name(&self) -> String {
        format!("{}ul", self.prefix)
    }

    /// The `ip netns` name of host `host`'s namespace (for `ip netns exec`).
    pub fn host_name(&self, host: usize) -> String {
        assert!(host < self.hosts, "host {host} of {}", self.hosts);
        format!("{}h{host}", self.prefix)
    }

    /// The namespace file of host `host` (`/run/netns/<name>`).
    pub fn netns_path(&self, host: usize) -> PathBuf {
        Path::new(NETNS_DIR).join(self.host_name(host))
    }

    /// The namespace file of the underlay namespace (where etcd runs).
    pub fn underlay_netns(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(self.underlay_name())
    }

    /// Host `host`'s underlay address (its `eth0`): 192.0.2.(11+host).
    pub fn host_ip(&self, host: usize) -> Ipv4Addr {
        assert!(host < self.hosts, "host {host} of {}", self.hosts);
        Ipv4Addr::new(192, 0, 2, 11 + host as u8)
    }

    /// The underlay bridge's address, 192.0.2.1 (etcd listens here).
    pub fn underlay_ip() -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, 1)
    }

    /// The underlay-side veth end of host `host` (a port of `ul0`).
    pub fn port_name(host: usize) -> String {
        format!("h{host}")
    }

    /// Takes host `host` off the underlay (its bridge port down): the host is unreachable
    /// until [`Underlay::restore_link`].
    pub fn cut_link(&self, host: usize) {
        self.set_port(host, "down");
    }

    /// Puts host `host` back on the underlay.
    pub fn restore_link(&self, host: usize) {
        self.set_port(host, "up");
    }

    fn set_port(&self, host: usize, state: &str) {
        let _ = self.host_name(host);
        ip(&[
            "-n",
            &self.underlay_name(),
            "link",
            "set",
            &Underlay::port_name(host),
            state,
        ]);
    }

    /// A command run inside host `host`'s namespace (`ip netns exec <name> <program>`).
    pub fn exec_cmd(&self, host: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host_name(host), program]);
        cmd
    }

    /// Runs `program args…` inside host `host`'s namespace.
    pub fn exec(&self, host: usize, program: &str, args: &[&str]) -> Output {
        self.exec_cmd(host, program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec")
    }

    /// True when host `host` gets an answer to one ping of `ip` (2 s timeout).
    pub fn ping(&self, host: usize, ip: Ipv4Addr) -> bool {
        self.exec(
            host,
            "/bin/busybox",
            &["ping", "-c1", "-W2", &ip.to_string()],
        )
        .status
        .success()
    }

    /// The namespaces of this underlay that exist now (empty after drop).
    pub fn existing(prefix: &str) -> Vec<String> {
        netns_names()
            .into_iter()
            .filter(|n| n.starts_with(prefix) && parse_name(n).is_some())
            .collect()
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        // Hosts first, then the underlay; a namespace still held by a process lives on until
        // that process exits, but its name is gone either way.
        for name in self.made.iter().rev() {
            delete_netns(name);
        }
    }
}

/// Runs `ip args…` and panics with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn delete_netns(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn netns_names() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

/// `bu<pid>x<n>ul` or `bu<pid>x<n>h<i>` → the pid; anything else → None.
fn parse_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("bu")?;
    let (pid, rest) = rest.split_once('x')?;
    let pid: u32 = pid.parse().ok()?;
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let tail = &rest[digits..];
    let host_ok = tail
        .strip_prefix('h')
        .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()));
    (tail == "ul" || host_ok).then_some(pid)
}

/// Deletes namespaces of this naming scheme left by test processes that no longer run.
fn remove_stale_namespaces() {
    for name in netns_names() {
        if let Some(pid) = parse_name(&name) {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                delete_netns(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn names_of_the_scheme_only() {
        assert_eq!(parse_name("bu123x0ul"), Some(123));
        assert_eq!(parse_name("bu123x4h2"), Some(123));
        assert_eq!(parse_name("bu123x4h"), None);
        assert_eq!(parse_name("bu123x4"), None);
        assert_eq!(parse_name("bu123ul"), None);
        assert_eq!(parse_name("bux1ul"), None);
        assert_eq!(parse_name("build"), None);
        assert_eq!(parse_name("berthlab-h0"), None);
        assert_eq!(parse_name("bu1x2h3x"), None);
    }
}
