//! Names of the kernel objects an engine instance makes, and the checks on user-given
//! names. Every interface name starts with the instance's link prefix (≤ 7 bytes) followed
//! by a one-character kind, so cleanup can tell exactly which links are its own.
use std::net::Ipv4Addr;

/// Linux limit on interface names (IFNAMSIZ − 1).
pub const IFNAME_MAX: usize = 15;

/// The default bridge network's interface: `<prefix>0` (`berth0`, like Docker's `docker0`).
pub fn default_bridge(prefix: &str) -> String {
    format!("{prefix}0")
}

/// A user bridge network's interface: `<prefix>-` and as many hex digits of the network ID
/// as fit in 15 bytes (Docker: `br-<12 hex>`).
pub fn user_bridge(prefix: &str, network_id: &str) -> String {
    format!("{prefix}-{}", id_hex(prefix, network_id))
}

/// An overlay network's bridge on this host: `<prefix>o` and as many hex digits of the
/// network ID as fit in 15 bytes (at most 12).
pub fn overlay_bridge(prefix: &str, network_id: &str) -> String {
    format!("{prefix}o{}", id_hex(prefix, network_id))
}

/// An overlay network's VXLAN device on this host: `<prefix>x` and the same hex digits as
/// [`overlay_bridge`].
pub fn overlay_vxlan(prefix: &str, network_id: &str) -> String {
    format!("{prefix}x{}", id_hex(prefix, network_id))
}

/// How many hex digits of a network ID follow `<prefix><kind>` in a name.
fn id_hex_len(prefix: &str) -> usize {
    IFNAME_MAX.saturating_sub(prefix.len() + 1).min(12)
}

fn id_hex(prefix: &str, network_id: &str) -> String {
    network_id.chars().take(id_hex_len(prefix)).collect()
}

/// The host end of a veth pair: `<prefix>v<6 hex>`.
pub fn host_veth(prefix: &str) -> String {
    format!("{prefix}v{}", random_hex(6))
}

/// The interface name of a container's n-th network (`eth0`, `eth1`, …).
pub fn container_ifname(n: usize) -> String {
    format!("eth{n}")
}

/// The lowest `ethN` not in `used`.
pub fn next_container_ifname<'a>(used: impl IntoIterator<Item = &'a str> + Clone) -> String {
    (0..)
        .map(container_ifname)
        .find(|name| !used.clone().into_iter().any(|u| u == name))
        .unwrap_or_else(|| container_ifname(0))
}

/// True when `name` is a link this instance makes: `<prefix>0`, `<prefix>-<hex>`,
/// `<prefix>v<6 hex>`, `<prefix>p<6 hex>`, `<prefix>o<hex>` or `<prefix>x<hex>` (the last
/// two with exactly as many digits as [`overlay_bridge`] puts there). Exact shapes, so an
/// instance whose prefix is a prefix of another's (`bert`, `berth`, `berto`) never claims
/// the other's links.
pub fn is_own_link(prefix: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    match rest.split_at_checked(1) {
        Some(("0", "")) => true,
        Some(("-", tail)) => hex(tail),
        // `p`: the temporary names of links on their way into a container, made by
        // versions that moved them in; a crash could have left one behind.
        Some(("v" | "p", tail)) => tail.len() == 6 && hex(tail),
        Some(("o" | "x", tail)) => tail.len() == id_hex_len(prefix) && hex(tail),
        _ => false,
    }
}

/// Docker's rule for network names.
pub fn check_network_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ))
    }
}

/// A valid interface name given by the user (`com.docker.network.bridge.name`).
pub fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid interface name {name:?}"))
    }
}

/// Docker's MAC for an address: `02:42` and the four bytes of the IPv4 address.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`; refuses multicast addresses (the kernel would too).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("invalid MAC address {s:?}");
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (dst, part) in mac.iter_mut().zip(&parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *dst = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 {
        return Err(format!("invalid MAC address {s:?}: multicast"));
    }
    Ok(mac)
}

fn random_hex(n: usize) -> String {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::from_os_rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_and_are_recognised() {
        let id = "0123456789abcdef".repeat(4);
        for prefix in ["berth", "b1a2b3c"] {
            let names = [
                default_bridge(prefix),
                user_bridge(prefix, &id),
                host_veth(prefix),
                overlay_bridge(prefix, &id),
                overlay_vxlan(prefix, &id),
            ];
            for name in &names {
                assert!(name.len() <= IFNAME_MAX, "{name}");
                assert!(is_own_link(prefix, name), "{name}");
            }
            let mut distinct = names.to_vec();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), names.len(), "{names:?}");
        }
        assert_eq!(overlay_bridge("berth", &id), "bertho012345678");
        assert_eq!(overlay_vxlan("berth", &id), "berthx012345678");
        assert_eq!(overlay_bridge("b1a2b3c", &id), "b1a2b3co0123456");
        assert_eq!(overlay_vxlan("b", &id), "bx0123456789ab");
        // Instances whose prefix extends another's with `o`/`x`: each name has one owner.
        for (short, long) in [("bert", "berto"), ("bert", "bertx"), ("bert", "bertoa")] {
            let theirs = [
                default_bridge(long),
                user_bridge(long, &id),
                overlay_bridge(long, &id),
                overlay_vxlan(long, &id),
                host_veth(long),
            ];
            for name in &theirs {
                assert!(is_own_link(long, name), "{name}");
                assert!(!is_own_link(short, name), "{short} claims {name}");
            }
        }
        assert!(!is_own_link("berth", "berthx0123"));
        assert!(!is_own_link("berth", "berthx01234567z"));
        assert_eq!(user_bridge("berth", &id), "berth-012345678");
        assert_eq!(user_bridge("b1a2b3c", &id), "b1a2b3c-0123456");
        // Another instance's or a foreign link is never ours.
        for other in [
            "berth0",
            "berthv123456",
            "eth0",
            "docker0",
            "berth-",
            "berthvxyz",
        ] {
            assert!(!is_own_link("bert", other), "{other}");
        }
        assert!(!is_own_link("berth", "berth-xyz"));
        assert!(!is_own_link("berth", "berthv1234567"));
    }

    #[test]
    fn container_ifnames_fill_gaps() {
        assert_eq!(next_container_ifname([]), "eth0");
        assert_eq!(next_container_ifname(["eth0", "eth2"]), "eth1");
        assert_eq!(next_container_ifname(["eth0", "eth1"]), "eth2");
    }

    #[test]
    fn network_names_follow_docker() {
        for good in ["appnet", "a", "my_net.1-x"] {
            assert!(check_network_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a b", "a/b", "_x"] {
            assert!(check_network_name(bad).is_err(), "{bad}");
        }
        assert!(check_ifname("br-custom").is_ok());
        assert!(check_ifname("waytoolonginterface").is_err());
        assert!(check_ifname("a/b").is_err());
    }

    #[test]
    fn macs_derive_from_addresses_and_parse() {
        let mac = mac_for(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(format_mac(&mac), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02:42:ac:11:00:02").unwrap(), mac);
        assert!(parse_mac("01:00:5e:00:00:01").is_err());
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("zz:42:ac:11:00:02").is_err());
    }
}
