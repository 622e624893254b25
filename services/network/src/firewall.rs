//! Packet filtering and NAT for berth's networks, behind [`FirewallDriver`].
//!
//! The one implementation, [`Nftables`], renders the whole desired state as nft script text and
//! loads it with `nft -f -`. nft applies a script as one kernel transaction, so a script that
//! (re)creates the table, flushes it and adds every rule either lands completely or not at
//! all, and applying the same state twice leaves the same ruleset.
//!
//! We drive the `nft` binary rather than the `nftables` crate: that crate only wraps the same
//! binary with JSON (de)serialisation and pulls in `schemars` and its proc-macro tree for it;
//! the text format is what operators read in `nft list`, and rendering it is a few dozen lines.
//!
//! Everything lives in berth's own `ip` table (named after the engine instance); other
//! tables — Docker's, firewalld's, the distribution's — are never read or touched.
//!
//! Published ports on loopback work like Docker's `userland-proxy=false`: connections to
//! `127.0.0.0/8` are DNATed in `output`, leave through the bridge masqueraded to the
//! bridge's address, and the bridge has `route_localnet` set so the replies (un-NATed back to
//! a 127/8 destination) are accepted. The userland proxy still binds the port (conflicts are
//! detected, and whatever DNAT does not cover still works), but DNAT takes the connections
//! first. A raw-priority rule drops packets arriving on a bridge addressed to 127/8, which
//! `route_localnet` would otherwise let containers send to the host's loopback services.
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::{Error, Result};

/// Everything the firewall must express, as one desired state. A driver replaces its whole
/// ruleset with this state atomically, so reconciling after a crash is one `apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallState {
    pub networks: Vec<FirewallNetwork>,
    pub ports: Vec<PublishedPort>,
}

/// A bridge network: masquerade for its subnet (unless internal), isolation from every
/// other berth bridge, and no traffic in or out of the bridge when `internal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallNetwork {
    /// The bridge interface name.
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix_len: u8,
    pub internal: bool,
}

/// One published port: DNAT of traffic to a local address (every local address when
/// `host_ip` is None) and `host_port` to the container. Loopback addresses are DNATed only
/// from the host itself (`output`) and only to a container on one of the state's bridges;
/// otherwise the userland proxy serves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    pub protocol: crate::proxy::Protocol,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

pub trait FirewallDriver: Send + Sync {
    /// Replaces every rule this driver owns with `state`, atomically.
    fn apply(&self, state: &FirewallState) -> Result<()>;
    /// Removes everything this driver made (its table). Idempotent.
    fn remove_all(&self) -> Result<()>;
}

/// nftables driver owning the table `ip <table>`.
///
/// Methods run the `nft` binary and block for a few milliseconds: call them from a blocking
/// thread (`spawn_blocking`), not from a tokio worker.
#[derive(Debug, Clone)]
pub struct Nftables {
    table: String,
}

impl Nftables {
    /// The table name is validated when used (see [`validate_table_name`]), so a bad name
    /// surfaces as `InvalidArgument` from the first call.
    pub fn new(table: String) -> Nftables {
        Nftables { table }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The nft script [`apply`](FirewallDriver::apply) would load for `state`.
    pub fn render(&self, state: &FirewallState) -> Result<String> {
        render_ruleset(&self.table, state)
    }

    /// Number of rules in the table; 0 when the table does not exist. For tests and
    /// diagnostics.
    pub fn rule_count(&self) -> Result<usize> {
        validate_table_name(&self.table)?;
        let out = run_nft(&["-j", "list", "table", "ip", &self.table], None)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // nft's only way of saying "no such table" is ENOENT's text.
            if stderr.contains("No such file or directory") {
                return Ok(0);
            }
            return Err(nft_error(
                &format!("nft list table ip {}", self.table),
                &out,
            ));
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::sys(
                format!("parsing `nft -j list table ip {}`", self.table),
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })?;
        let items = json
            .get("nftables")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter(|item| item.get("rule").is_some()).count())
            .unwrap_or(0);
        Ok(items)
    }

    /// Loads an nft script as one transaction. Split out of `apply` so tests can prove a
    /// failing script leaves the previous ruleset in place.
    fn load(&self, script: &str) -> Result<()> {
        let out = run_nft(&["-f", "-"], Some(script))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(nft_error(
                &format!("nft: loading rules into table ip {}", self.table),
                &out,
            ))
        }
    }
}

impl FirewallDriver for Nftables {
    fn apply(&self, state: &FirewallState) -> Result<()> {
        let script = self.render(state)?;
        let bridges: BTreeSet<&str> = state.networks.iter().map(|n| n.bridge.as_str()).collect();
        for b in &bridges {
            validate_sysctl_interface(b)?;
        }
        self.load(&script)?;
        // Loopback connections to published ports are DNATed in `output` and leave through the
        // bridge with a 127/8 source, which masquerade rewrites to the bridge's address. The
        // container's replies arrive on the bridge and are un-NATed to that 127/8 destination
        // before routing, and the kernel drops a packet from a non-loopback interface to 127/8
        // as a martian unless `route_localnet` is set on the interface it arrived on. So it is
        // set on each berth bridge — never `all`, `default` or any other interface. The rules
        // are loaded first: they include the guard that drops 127/8 traffic sent by containers
        // (which `route_localnet` would accept), so the sysctl never takes effect unguarded.
        for b in &bridges {
            enable_route_localnet(Path::new(SYSCTL_CONF), b)?;
        }
        Ok(())
    }

    fn remove_all(&self) -> Result<()> {
        validate_table_name(&self.table)?;
        // Declaring the table first makes the delete succeed whether or not it existed
        // (nft 1.0.6 has no `destroy`), without parsing error text.
        let t = &self.table;
        self.load(&format!("table ip {t}\ndelete table ip {t}\n"))
    }
}

/// Where the per-interface IPv4 sysctls live.
const SYSCTL_CONF: &str = "/proc/sys/net/ipv4/conf";

/// `conf/all` and `conf/default` are not interfaces: writing them would change every
/// interface (or every future one). `.` and `..` are not interface names either.
fn validate_sysctl_interface(bridge: &str) -> Result<()> {
    validate_bridge_name(bridge)?;
    if matches!(bridge, "all" | "default" | "." | "..") {
        return Err(Error::InvalidArgument(format!(
            "invalid bridge name {bridge:?}: reserved by /proc/sys/net/ipv4/conf"
        )));
    }
    Ok(())
}

/// Writes `1` to `<conf>/<bridge>/route_localnet`. Returns false, changing nothing, when the
/// interface does not exist (yet): its next `apply` sets it.
fn enable_route_localnet(conf: &Path, bridge: &str) -> Result<bool> {
    validate_sysctl_interface(bridge)?;
    let path = conf.join(bridge).join("route_localnet");
    // No `create`: an interface that does not exist has no sysctl directory, and this must
    // never make a file of its own.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"1"));
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(bridge, "bridge does not exist yet; route_localnet not set");
            Ok(false)
        }
        Err(e) => Err(Error::sys(format!("write 1 to {}", path.display()), e)),
    }
}

/// Renders `state` as one nft script for table `ip <table>`.
///
/// Rules are written in the form `nft list` prints them back, so the listing of an applied
/// table reads the same as this text.
pub fn render_ruleset(table: &str, state: &FirewallState) -> Result<String> {
    validate_table_name(table)?;
    for n in &state.networks {
        validate_bridge_name(&n.bridge)?;
        if n.prefix_len > 32 {
            return Err(Error::InvalidArgument(format!(
                "invalid prefix length /{} for network on bridge {}",
                n.prefix_len, n.bridge
            )));
        }
    }

    // Every bridge, internal ones too: the host reaches containers on any of them.
    let all_bridges: BTreeSet<&str> = state.networks.iter().map(|n| n.bridge.as_str()).collect();

    let mut prerouting = Vec::new();
    let mut output = Vec::new();
    for p in &state.ports {
        let proto = match p.protocol {
            crate::proxy::Protocol::Tcp => "tcp",
            crate::proxy::Protocol::Udp => "udp",
        };
        let host_ip = p.host_ip.filter(|ip| !ip.is_unspecified());
        let loopback = host_ip.is_some_and(|ip| ip.is_loopback());
        let daddr = host_ip
            .map(|ip| format!("ip daddr {ip} "))
            .unwrap_or_default();
        let target = format!(
            "{proto} dport {} dnat to {}:{}",
            p.host_port, p.container_ip, p.container_port
        );
        let own_bridge = state.networks.iter().find(|n| contains(n, p.container_ip));
        // 127/8 never legitimately arrives from another interface, so loopback addresses
        // are only DNATed in `output`.
        if !loopback {
            // Like Docker with the userland proxy on: traffic from the container's own bridge
            // is not DNATed (it would come back without hairpin NAT); it reaches the proxy.
            let not_own_bridge = own_bridge
                .map(|n| format!("iifname != \"{}\" ", n.bridge))
                .unwrap_or_default();
            prerouting.push(format!(
                "{daddr}fib daddr type local {not_own_bridge}{target}"
            ));
        }
        // Loopback is DNATed only into a berth bridge, where postrouting masquerades it and
        // `route_localnet` lets the replies back in; anywhere else a 127/8 source cannot
        // leave the host, so those connections are left to the userland proxy.
        match (own_bridge, host_ip) {
            (Some(_), _) => output.push(format!("{daddr}fib daddr type local {target}")),
            (None, Some(_)) if loopback => {}
            (None, Some(_)) => output.push(format!("{daddr}fib daddr type local {target}")),
            (None, None) => output.push(format!(
                "ip daddr != 127.0.0.0/8 fib daddr type local {target}"
            )),
        }
    }

    let mut postrouting = Vec::new();
    let mut forward = Vec::new();
    for n in state.networks.iter().filter(|n| !n.internal) {
        postrouting.push(format!(
            "ip saddr {}/{} oifname != \"{}\" masquerade",
            network_address(n),
            n.prefix_len,
            n.bridge
        ));
    }
    // Loopback DNATed to a container keeps its 127/8 source, which the container could not
    // answer; it takes the bridge's address instead.
    let mut loopback_guard = Vec::new();
    for b in &all_bridges {
        postrouting.push(format!("ip saddr 127.0.0.0/8 oifname \"{b}\" masquerade"));
        // `route_localnet` on the bridge makes the kernel accept 127/8 destinations arriving
        // on it, which would let a container reach the host's loopback-only services. At raw
        // priority (before conntrack un-NATs replies) legitimate replies are still addressed
        // to the bridge's own address, so only packets sent to 127/8 by containers match.
        loopback_guard.push(format!("iifname \"{b}\" ip daddr 127.0.0.0/8 drop"));
    }
    // Internal bridges first, so not even established traffic crosses them.
    for n in state.networks.iter().filter(|n| n.internal) {
        let b = &n.bridge;
        forward.push(format!("iifname \"{b}\" oifname != \"{b}\" drop"));
        forward.push(format!("oifname \"{b}\" iifname != \"{b}\" drop"));
    }
    // Replies (to published ports, to outbound connections) skip the isolation checks.
    forward.push("ct state established,related accept".to_string());
    let bridges: BTreeSet<&str> = state
        .networks
        .iter()
        .filter(|n| !n.internal)
        .map(|n| n.bridge.as_str())
        .collect();
    for b in &bridges {
        let others: Vec<String> = bridges
            .iter()
            .filter(|o| *o != b)
            .map(|o| format!("\"{o}\""))
            .collect();
        // nft lists a one-element set as a plain value; render it that way too.
        let oifs = match others.as_slice() {
            [] => continue,
            [one] => one.clone(),
            many => format!("{{ {} }}", many.join(", ")),
        };
        forward.push(format!("iifname \"{b}\" oifname {oifs} drop"));
    }

    let mut s = String::new();
    // `table` creates it when missing, so the flush cannot fail; the flush empties every chain
    // before the declarations below refill them, all in the same transaction.
    let _ = writeln!(s, "table ip {table}");
    let _ = writeln!(s, "flush table ip {table}");
    let _ = writeln!(s, "table ip {table} {{");
    chain(
        &mut s,
        "loopback_guard",
        "type filter hook prerouting priority raw; policy accept;",
        &loopback_guard,
    );
    chain(
        &mut s,
        "prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
        &prerouting,
    );
    chain(
        &mut s,
        "output",
        "type nat hook output priority -100; policy accept;",
        &output,
    );
    chain(
        &mut s,
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
        &postrouting,
    );
    chain(
        &mut s,
        "forward",
        "type filter hook forward priority filter; policy accept;",
        &forward,
    );
    s.push_str("}\n");
    Ok(s)
}

fn chain(s: &mut String, name: &str, head: &str, rules: &[String]) {
    let _ = writeln!(s, "\tchain {name} {{");
    let _ = writeln!(s, "\t\t{head}");
    for r in rules {
        let _ = writeln!(s, "\t\t{r}");
    }
    s.push_str("\t}\n");
}

fn mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

fn network_address(n: &FirewallNetwork) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(n.subnet) & mask(n.prefix_len))
}

fn contains(n: &FirewallNetwork, ip: Ipv4Addr) -> bool {
    u32::from(ip) & mask(n.prefix_len) == u32::from(network_address(n))
}

fn valid_chars(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Table names are written unquoted (nft accepts no quoted table name), so besides the
/// character set they must start the way nft's identifiers do: a letter or `_`.
pub fn validate_table_name(name: &str) -> Result<()> {
    let starts_ok = name
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_');
    if starts_ok && name.len() <= 255 && valid_chars(name) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid nftables table name {name:?}: use 1-255 characters [A-Za-z0-9_.-], starting with a letter or _"
        )))
    }
}

/// Bridge names are quoted in rules; the character set keeps quotes, `*` wildcards and nft
/// syntax out, and 15 bytes is the kernel's interface name limit.
pub fn validate_bridge_name(name: &str) -> Result<()> {
    if !name.is_empty() && name.len() <= 15 && valid_chars(name) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid bridge name {name:?}: use 1-15 characters [A-Za-z0-9_.-]"
        )))
    }
}

fn run_nft(args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let ctx = || format!("running nft {}", args.join(" "));
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::sys(ctx(), e))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // nft reads the whole script before it parses or prints anything, so writing it all
        // before collecting output cannot deadlock. Dropping the pipe sends EOF.
        if let Err(e) = pipe.write_all(text.as_bytes()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::sys(ctx(), e));
        }
    }
    child.wait_with_output().map_err(|e| Error::sys(ctx(), e))
}

fn nft_error(context: &str, out: &Output) -> Error {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let msg = match stderr.trim() {
        "" => format!("nft exited with {}", out.status),
        s => s.to_string(),
    };
    Error::sys(context, io::Error::other(msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Protocol;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn net(bridge: &str, subnet: [u8; 4], prefix_len: u8, internal: bool) -> FirewallNetwork {
        FirewallNetwork {
            bridge: bridge.into(),
            subnet: subnet.into(),
            prefix_len,
            internal,
        }
    }

    fn port(
        protocol: Protocol,
        host_ip: Option<[u8; 4]>,
        host_port: u16,
        container_ip: [u8; 4],
        container_port: u16,
    ) -> PublishedPort {
        PublishedPort {
            protocol,
            host_ip: host_ip.map(Ipv4Addr::from),
            host_port,
            container_ip: container_ip.into(),
            container_port,
        }
    }

    fn sample() -> FirewallState {
        FirewallState {
            networks: vec![
                net("br-a", [172, 18, 0, 0], 16, false),
                net("br-b", [172, 19, 0, 1], 24, false), // host bits are masked off
                net("br-int", [172, 20, 0, 0], 16, true),
            ],
            ports: vec![
                port(Protocol::Tcp, None, 8080, [172, 18, 0, 2], 80),
                port(
                    Protocol::Udp,
                    Some([10, 0, 0, 1]),
                    5353,
                    [172, 19, 0, 3],
                    53,
                ),
                port(
                    Protocol::Tcp,
                    Some([127, 0, 0, 1]),
                    9000,
                    [172, 18, 0, 2],
                    90,
                ),
                port(Protocol::Tcp, Some([0, 0, 0, 0]), 443, [10, 9, 9, 9], 8443),
                // Loopback to a container on no berth bridge: left to the proxy entirely.
                port(
                    Protocol::Tcp,
                    Some([127, 0, 0, 1]),
                    9443,
                    [10, 9, 9, 9],
                    9443,
                ),
            ],
        }
    }

    #[test]
    fn renders_exact_ruleset() {
        let text = render_ruleset("berth", &sample()).expect("render");
        let want = r#"table ip berth
flush table ip berth
table ip berth {
	chain loopback_guard {
		type filter hook prerouting priority raw; policy accept;
		iifname "br-a" ip daddr 127.0.0.0/8 drop
		iifname "br-b" ip daddr 127.0.0.0/8 drop
		iifname "br-int" ip daddr 127.0.0.0/8 drop
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local iifname != "br-a" tcp dport 8080 dnat to 172.18.0.2:80
		ip daddr 10.0.0.1 fib daddr type local iifname != "br-b" udp dport 5353 dnat to 172.19.0.3:53
		fib daddr type local tcp dport 443 dnat to 10.9.9.9:8443
	}
	chain output {
		type nat hook output priority -100; policy accept;
		fib daddr type local tcp dport 8080 dnat to 172.18.0.2:80
		ip daddr 10.0.0.1 fib daddr type local udp dport 5353 dnat to 172.19.0.3:53
		ip daddr 127.0.0.1 fib daddr type local tcp dport 9000 dnat to 172.18.0.2:90
		ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 443 dnat to 10.9.9.9:8443
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 172.18.0.0/16 oifname != "br-a" masquerade
		ip saddr 172.19.0.0/24 oifname != "br-b" masquerade
		ip saddr 127.0.0.0/8 oifname "br-a" masquerade
		ip saddr 127.0.0.0/8 oifname "br-b" masquerade
		ip saddr 127.0.0.0/8 oifname "br-int" masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "br-int" oifname != "br-int" drop
		oifname "br-int" iifname != "br-int" drop
		ct state established,related accept
		iifname "br-a" oifname "br-b" drop
		iifname "br-b" oifname "br-a" drop
	}
}
"#;
        assert_eq!(text, want);
    }

    #[test]
    fn renders_empty_state_as_empty_chains() {
        let text = render_ruleset("t", &FirewallState::default()).expect("render");
        assert!(text.contains("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct state established,related accept\n\t}\n"));
        assert!(text.contains("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t}\n"));
        assert!(text.contains("\tchain loopback_guard {\n\t\ttype filter hook prerouting priority raw; policy accept;\n\t}\n"));
    }

    #[test]
    fn loopback_dnat_only_into_bridges() {
        // The same published port with and without its container's bridge in the state.
        let p = port(Protocol::Udp, None, 53, [172, 18, 0, 2], 53);
        let on = FirewallState {
            networks: vec![net("br-a", [172, 18, 0, 0], 16, true)],
            ports: vec![p.clone()],
        };
        let text = render_ruleset("t", &on).expect("render");
        assert!(text.contains("\t\tfib daddr type local udp dport 53 dnat to 172.18.0.2:53\n"));
        // Internal bridges get the loopback masquerade and guard too (the host reaches
        // containers on them), but not the subnet masquerade.
        assert!(text.contains("\t\tip saddr 127.0.0.0/8 oifname \"br-a\" masquerade\n"));
        assert!(text.contains("\t\tiifname \"br-a\" ip daddr 127.0.0.0/8 drop\n"));
        assert!(!text.contains("oifname != \"br-a\" masquerade"));

        let off = FirewallState {
            networks: vec![],
            ports: vec![p],
        };
        let text = render_ruleset("t", &off).expect("render");
        assert!(text.contains(
            "\t\tip daddr != 127.0.0.0/8 fib daddr type local udp dport 53 dnat to 172.18.0.2:53\n"
        ));
        assert!(!text.contains("masquerade"));
        assert!(!text.contains("drop"));
    }

    #[test]
    fn route_localnet_written_only_for_existing_bridges() {
        let conf = tempfile::tempdir().expect("tempdir");
        let dir = conf.path().join("br-x");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("route_localnet"), "0\n").expect("seed");
        assert!(enable_route_localnet(conf.path(), "br-x").expect("write"));
        assert_eq!(
            std::fs::read_to_string(dir.join("route_localnet")).expect("read"),
            "1\n"
        );
        // A bridge that does not exist yet is skipped, and nothing is created for it.
        assert!(!enable_route_localnet(conf.path(), "br-later").expect("skip"));
        assert!(!conf.path().join("br-later").exists());
        // Names that are not one interface are refused (`apply` checks them all before it
        // loads anything): `all`/`default` would change every interface.
        for bad in ["all", "default", ".", "..", "br/x", ""] {
            assert!(
                matches!(
                    enable_route_localnet(conf.path(), bad),
                    Err(Error::InvalidArgument(_))
                ),
                "{bad:?}"
            );
            assert!(
                matches!(
                    validate_sysctl_interface(bad),
                    Err(Error::InvalidArgument(_))
                ),
                "{bad:?}"
            );
        }
        assert!(!conf.path().join("all").exists());
    }

    #[test]
    fn rejects_names_that_could_inject_syntax() {
        for bad in [
            "br0\" drop",
            "br0; flush ruleset",
            "br*",
            "",
            "a-very-long-bridge0",
            "br 0",
        ] {
            let mut st = sample();
            st.networks[0].bridge = bad.into();
            match render_ruleset("berth", &st) {
                Err(Error::InvalidArgument(m)) => assert!(m.contains(&format!("{bad:?}")), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        for bad in ["1berth", "-x", "a b", "t{", "x;flush ruleset", ""] {
            assert!(matches!(
                render_ruleset(bad, &FirewallState::default()),
                Err(Error::InvalidArgument(m)) if m.contains(&format!("{bad:?}"))
            ));
            let nft = Nftables::new(bad.into());
            assert!(matches!(nft.remove_all(), Err(Error::InvalidArgument(_))));
            assert!(matches!(nft.rule_count(), Err(Error::InvalidArgument(_))));
        }
        let mut st = sample();
        st.networks[0].prefix_len = 33;
        assert!(matches!(
            render_ruleset("berth", &st),
            Err(Error::InvalidArgument(_))
        ));
        assert!(validate_table_name("berth_fw-1.x").is_ok());
    }

    fn can_run_nft() -> bool {
        let root = nix::unistd::geteuid().is_root();
        let have = Command::new("nft")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !(root && have) {
            eprintln!("skipping: needs root and the nft binary");
        }
        root && have
    }

    /// Deletes the test's table even when an assertion fails.
    struct TableGuard(Nftables);
    impl Drop for TableGuard {
        fn drop(&mut self) {
            let _ = self.0.remove_all();
        }
    }

    fn unique_table() -> TableGuard {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "berth_fwtest_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        TableGuard(Nftables::new(name))
    }

    fn listing(nft: &Nftables) -> String {
        let out = run_nft(&["list", "table", "ip", nft.table()], None).expect("nft list");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn applies_idempotently_and_removes() {
        if !can_run_nft() {
            return;
        }
        let g = unique_table();
        let nft = &g.0;
        assert_eq!(nft.rule_count().expect("count absent"), 0);

        let st = sample();
        nft.apply(&st).expect("apply");
        let listed = listing(nft);
        // Every rendered rule is listed back verbatim.
        let rendered = nft.render(&st).expect("render");
        for line in rendered
            .lines()
            .filter(|l| l.starts_with("\t\t") && !l.contains("hook"))
        {
            assert!(listed.contains(line), "missing {line:?} in\n{listed}");
        }
        let n = nft.rule_count().expect("count");
        assert_eq!(n, 20);

        nft.apply(&st).expect("re-apply");
        assert_eq!(
            nft.rule_count().expect("count"),
            n,
            "re-apply duplicated rules"
        );
        assert_eq!(listing(nft), listed);

        // A smaller state replaces, not adds.
        let small = FirewallState {
            networks: vec![st.networks[0].clone()],
            ports: vec![],
        };
        nft.apply(&small).expect("apply small");
        // masquerade, loopback masquerade, loopback guard, ct state
        assert_eq!(nft.rule_count().expect("count"), 4);

        // Three bridges: isolation uses an anonymous set, listed back in the same form.
        let mut three = st.clone();
        three.networks.push(net("br-c", [172, 21, 0, 0], 16, false));
        nft.apply(&three).expect("apply three");
        let listed = listing(nft);
        assert!(
            listed.contains("\t\tiifname \"br-a\" oifname { \"br-b\", \"br-c\" } drop\n"),
            "{listed}"
        );

        nft.remove_all().expect("remove");
        assert_eq!(nft.rule_count().expect("count"), 0);
        nft.remove_all().expect("remove again");
    }

    #[test]
    fn failed_apply_changes_nothing_and_reports_stderr() {
        if !can_run_nft() {
            return;
        }
        let g = unique_table();
        let nft = &g.0;
        nft.apply(&sample()).expect("apply");
        let before = listing(nft);

        // A valid script with one bad rule at the end: nft must reject the whole transaction.
        let mut script = nft.render(&FirewallState::default()).expect("render");
        script.push_str(&format!(
            "add rule ip {} forward meta nosuchthing 1 drop\n",
            nft.table()
        ));
        let err = nft.load(&script).expect_err("bad script must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("Error:") && msg.contains("nosuchthing"),
            "{msg}"
        );
        assert_eq!(listing(nft), before);
    }

    /// Deletes the test's network namespace (and with it the veth pair) on drop.
    struct NetnsGuard(String);
    impl Drop for NetnsGuard {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `f` on a thread that joined the namespace `ns` first: sockets it makes and
    /// `/proc/sys/net` it writes are the namespace's.
    fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    }

    fn route_localnet(ifname: &str) -> String {
        std::fs::read_to_string(format!("{SYSCTL_CONF}/{ifname}/route_localnet"))
            .expect("read route_localnet")
            .trim()
            .to_string()
    }

    /// End to end: a "container" in a namespace the test made, behind a veth playing the
    /// bridge, and no proxy on the host port. Host traffic to a host address and to loopback
    /// is DNATed to it, loopback masqueraded to the bridge's address; and the container
    /// cannot use the bridge's `route_localnet` to reach the host's loopback services.
    #[test]
    fn dnat_reaches_container_from_host() {
        use std::io::{Read, Write};
        use std::net::{SocketAddr, TcpListener, TcpStream};
        use std::time::Duration;
        if !can_run_nft() {
            return;
        }
        let pid = std::process::id();
        let ns = NetnsGuard(format!("berth_fwtest_{pid}"));
        let (host_if, ctr_if) = (format!("bfw{pid}h"), format!("bfw{pid}c"));
        let octet = (pid % 250).to_string();
        let host_ip: Ipv4Addr = format!("198.18.{octet}.1").parse().expect("ip");
        let ctr_ip: Ipv4Addr = format!("198.18.{octet}.2").parse().expect("ip");
        ip(&["netns", "add", &ns.0]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ctr_if, "netns", &ns.0,
        ]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let exec = |args: &[&str]| {
            let mut v = vec!["netns", "exec", &ns.0, "ip"];
            v.extend_from_slice(args);
            ip(&v);
        };
        exec(&["addr", "add", &format!("{ctr_ip}/30"), "dev", &ctr_if]);
        exec(&["link", "set", &ctr_if, "up"]);
        exec(&["link", "set", "lo", "up"]);

        // The container's server tells each client the source address it sees.
        let server = in_netns(&ns.0, move || {
            TcpListener::bind((ctr_ip, 0)).expect("bind in netns")
        });
        let ctr_port = server.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for mut c in server.incoming().flatten() {
                let peer = c
                    .peer_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let _ = c.write_all(format!("hello {peer}").as_bytes());
            }
        });

        // Host ports nobody listens on, so only DNAT can answer.
        let free_port = || {
            TcpListener::bind("0.0.0.0:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        };
        let (any_port, lo_port) = (free_port(), free_port());
        let state = FirewallState {
            networks: vec![FirewallNetwork {
                bridge: host_if.clone(),
                subnet: ctr_ip,
                prefix_len: 30,
                internal: false,
            }],
            ports: vec![
                PublishedPort {
                    protocol: Protocol::Tcp,
                    host_ip: None,
                    host_port: any_port,
                    container_ip: ctr_ip,
                    container_port: ctr_port,
                },
                PublishedPort {
                    protocol: Protocol::Tcp,
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    host_port: lo_port,
                    container_ip: ctr_ip,
                    container_port: ctr_port,
                },
            ],
        };
        let others: Vec<(&str, String)> = ["all", "default", "lo"]
            .into_iter()
            .map(|i| (i, route_localnet(i)))
            .collect();
        let g = unique_table();
        let nft = &g.0;
        nft.apply(&state).expect("apply");
        assert_eq!(route_localnet(&host_if), "1");
        for (i, before) in &others {
            assert_eq!(&route_localnet(i), before, "{i}'s route_localnet changed");
        }

        let timeout = Duration::from_secs(5);
        // Returns the client's own address and the source address the container saw.
        let hello = |addr: &str| -> std::io::Result<(SocketAddr, String)> {
            let addr: SocketAddr = addr.parse().expect("addr");
            let mut c = TcpStream::connect_timeout(&addr, timeout)?;
            c.set_read_timeout(Some(timeout))?;
            let mut got = String::new();
            c.read_to_string(&mut got)?;
            Ok((c.local_addr()?, got))
        };
        // Through DNAT from a host address: the source is the host's address on the bridge.
        let (_, got) = hello(&format!("{host_ip}:{any_port}")).expect("host address via DNAT");
        assert_eq!(got, format!("hello {host_ip}"));
        // Loopback, bound to every address and to 127.0.0.1: the client's side of the
        // connection says 127.0.0.1, the container's says the bridge address (masquerade).
        for to in [
            format!("127.0.0.1:{any_port}"),
            format!("127.0.0.2:{any_port}"),
            format!("127.0.0.1:{lo_port}"),
        ] {
            let (local, got) = hello(&to).unwrap_or_else(|e| panic!("{to} via DNAT: {e}"));
            assert_eq!(
                local.ip(),
                std::net::IpAddr::from(Ipv4Addr::LOCALHOST),
                "{to}"
            );
            assert_eq!(got, format!("hello {host_ip}"), "{to}");
        }
        // A port published on 127.0.0.1 only is not DNATed from another loopback address.
        let err = hello(&format!("127.0.0.2:{lo_port}")).expect_err("127.0.0.2 not published");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");

        // The container tries the host's loopback-only services. Its own loopback routes
        // come first, so it routes 127.0.0.1 to the host explicitly (all in its namespace),
        // and accepts 127/8 replies on its side of the veth.
        let service = TcpListener::bind("127.0.0.1:0").expect("loopback service");
        let service_port = service.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for mut c in service.incoming().flatten() {
                let _ = c.write_all(b"loopback-only secret");
            }
        });
        exec(&["rule", "add", "pref", "200", "lookup", "local"]);
        exec(&["rule", "del", "pref", "0", "lookup", "local"]);
        exec(&[
            "route",
            "add",
            "127.0.0.1/32",
            "via",
            &host_ip.to_string(),
            "dev",
            &ctr_if,
            "table",
            "100",
        ]);
        exec(&[
            "rule",
            "add",
            "pref",
            "100",
            "to",
            "127.0.0.1/32",
            "lookup",
            "100",
        ]);
        let ctr_sysctl = format!("{SYSCTL_CONF}/{ctr_if}/route_localnet");
        in_netns(&ns.0, move || {
            std::fs::write(ctr_sysctl, "1").expect("netns sysctl")
        });
        let attack = |ns: &str| {
            in_netns(ns, move || {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, service_port));
                let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
                c.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut got = String::new();
                c.read_to_string(&mut got)?;
                Ok::<_, std::io::Error>(got)
            })
        };
        // Control: the same ruleset without the guard lets it in, so the route works and
        // the guard is what stops it below.
        let unguarded: String = nft
            .render(&state)
            .expect("render")
            .lines()
            .filter(|l| !l.contains("ip daddr 127.0.0.0/8 drop"))
            .map(|l| format!("{l}\n"))
            .collect();
        nft.load(&unguarded).expect("load without guard");
        let leaked = attack(&ns.0);
        nft.apply(&state).expect("re-apply");
        assert_eq!(
            leaked.expect("control: unguarded route_localnet is reachable"),
            "loopback-only secret"
        );
        let err = attack(&ns.0).expect_err("guard must drop 127/8 from the bridge");
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            "{err}"
        );
    }
}
