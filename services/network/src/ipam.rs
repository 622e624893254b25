//! Address management, pure: subnets, the pools new networks are carved from, and address
//! allocation inside a subnet. The kernel facts (the host's addresses and routes) and the
//! store's allocations come in as arguments.
use std::{fmt, net::Ipv4Addr, str::FromStr};

/// Environment variable replacing the default pools: `<cidr>/<size>`, comma-separated
/// (e.g. `10.213.0.0/16/24`).
pub const POOL_ENV: &str = "BERTH_ADDRESS_POOL";

/// An IPv4 network: address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// The network containing `addr` with `prefix` (host bits cleared).
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    fn first(self) -> u32 {
        u32::from(self.addr)
    }

    fn last(self) -> u32 {
        self.first() | !mask(self.prefix)
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.first()
    }

    pub fn overlaps(self, other: Subnet) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// True when every address of `other` is in `self`.
    pub fn covers(self, other: Subnet) -> bool {
        self.prefix <= other.prefix && self.contains(other.addr)
    }

    /// The first address usable by a host (the gateway by default).
    pub fn first_host(self) -> Option<Ipv4Addr> {
        (self.prefix <= 30).then(|| Ipv4Addr::from(self.first() + 1))
    }

    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(self.last())
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    /// Parses `a.b.c.d/n`; the address must be the network's own (Docker refuses
    /// `10.0.0.1/24` as a subnet too).
    fn from_str(s: &str) -> Result<Subnet, String> {
        let bad = || format!("invalid CIDR address: {s}");
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let subnet = Subnet::containing(ip, prefix);
        if subnet.addr != ip {
            return Err(format!(
                "invalid subnet {s}: it should be {subnet} (host bits set)"
            ));
        }
        Ok(subnet)
    }
}

/// A range subnets are carved from: every `size`-long subnet inside `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub base: Subnet,
    pub size: u8,
}

impl Pool {
    fn candidates(self) -> impl Iterator<Item = Subnet> {
        let step = 1u64 << (32 - u32::from(self.size));
        let first = u64::from(self.base.first());
        let last = u64::from(self.base.last());
        (0..)
            .map(move |i| first + i * step)
            .take_while(move |start| *start <= last)
            .map(move |start| Subnet {
                addr: Ipv4Addr::from(start as u32),
                prefix: self.size,
            })
    }
}

/// Docker's default pools: 172.17–31.0.0/16, then 192.168.0.0/16 in /20s.
pub fn default_pools() -> Vec<Pool> {
    let mut pools: Vec<Pool> = (17..=31)
        .map(|b| Pool {
            base: Subnet {
                addr: Ipv4Addr::new(172, b, 0, 0),
                prefix: 16,
            },
            size: 16,
        })
        .collect();
    pools.push(Pool {
        base: Subnet {
            addr: Ipv4Addr::new(192, 168, 0, 0),
            prefix: 16,
        },
        size: 20,
    });
    pools
}

/// Parses [`POOL_ENV`]'s value: `<cidr>/<size>[,<cidr>/<size>…]`.
pub fn parse_pools(s: &str) -> Result<Vec<Pool>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let bad =
                || format!("invalid address pool {p:?}: want <cidr>/<size>, e.g. 10.213.0.0/16/24");
            let (cidr, size) = p.rsplit_once('/').ok_or_else(bad)?;
            let base: Subnet = cidr.parse()?;
            let size: u8 = size.parse().map_err(|_| bad())?;
            if size < base.prefix || size > 30 {
                return Err(bad());
            }
            Ok(Pool { base, size })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|pools| {
            if pools.is_empty() {
                Err(format!("invalid address pool {s:?}: empty"))
            } else {
                Ok(pools)
            }
        })
}

/// The pools in effect: [`POOL_ENV`] when set, else Docker's.
pub fn pools_from_env() -> Result<Vec<Pool>, String> {
    match std::env::var(POOL_ENV) {
        Ok(v) if !v.trim().is_empty() => parse_pools(&v),
        _ => Ok(default_pools()),
    }
}

/// The first candidate subnet of `pools` that overlaps nothing in `used` (the host's
/// addresses and routes, and every network berth knows).
pub fn choose_subnet(pools: &[Pool], used: &[Subnet]) -> Option<Subnet> {
    pools
        .iter()
        .flat_map(|p| p.candidates())
        .find(|c| !used.iter().any(|u| u.overlaps(*c)))
}

/// The lowest free address of `range` (inside `subnet`) that is neither the subnet's
/// network or broadcast address, nor the gateway, nor in `taken`.
pub fn allocate(
    subnet: Subnet,
    range: Subnet,
    gateway: Option<Ipv4Addr>,
    taken: &[Ipv4Addr],
) -> Option<Ipv4Addr> {
    (range.first()..=range.last())
        .map(Ipv4Addr::from)
        .find(|ip| usable(subnet, *ip) && Some(*ip) != gateway && !taken.contains(ip))
}

/// Like [`allocate`], starting after `after` and wrapping around: addresses are handed
/// out in turn, so one just given back (by a host that may only be cut off) is the last
/// to be reused. Overlay networks allocate this way, as Docker's do.
pub fn allocate_after(
    subnet: Subnet,
    range: Subnet,
    gateway: Option<Ipv4Addr>,
    taken: &[Ipv4Addr],
    after: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let free = |ip: &Ipv4Addr| usable(subnet, *ip) && Some(*ip) != gateway && !taken.contains(ip);
    let start = after
        .filter(|a| range.contains(*a))
        .map_or(range.first(), |a| u32::from(a).saturating_add(1));
    (start..=range.last())
        .chain(range.first()..start.min(range.last().saturating_add(1)))
        .map(Ipv4Addr::from)
        .find(free)
}

/// Checks a fixed address (`--ip`): inside the subnet, usable, not the gateway, free.
pub fn check_fixed(
    subnet: Subnet,
    gateway: Option<Ipv4Addr>,
    taken: &[Ipv4Addr],
    ip: Ipv4Addr,
) -> Result<(), String> {
    if !subnet.contains(ip) {
        return Err(format!(
            "invalid address {ip}: it does not belong to any of this network's subnets ({subnet})"
        ));
    }
    if !usable(subnet, ip) || Some(ip) == gateway {
        return Err(format!("address {ip} is reserved in {subnet}"));
    }
    if taken.contains(&ip) {
        return Err(format!("address {ip} is already in use"));
    }
    Ok(())
}

fn usable(subnet: Subnet, ip: Ipv4Addr) -> bool {
    // /31 and /32 have no network or broadcast address (RFC 3021).
    subnet.prefix >= 31 || (ip != subnet.addr && ip != subnet.broadcast())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Subnet {
        x.parse().unwrap()
    }

    fn ip(x: &str) -> Ipv4Addr {
        x.parse().unwrap()
    }

    #[test]
    fn subnets_parse_and_compare() {
        assert_eq!(s("10.1.0.0/16").to_string(), "10.1.0.0/16");
        assert!("10.1.0.1/16"
            .parse::<Subnet>()
            .unwrap_err()
            .contains("10.1.0.0/16"));
        assert!("10.1.0.0/33".parse::<Subnet>().is_err());
        assert!("nonsense"
            .parse::<Subnet>()
            .unwrap_err()
            .contains("nonsense"));
        assert!(s("10.0.0.0/8").overlaps(s("10.3.0.0/24")));
        assert!(!s("10.0.0.0/24").overlaps(s("10.0.1.0/24")));
        assert!(s("0.0.0.0/0").overlaps(s("10.0.1.0/24")));
        assert!(s("10.0.0.0/16").covers(s("10.0.3.0/24")));
        assert!(!s("10.0.3.0/24").covers(s("10.0.0.0/16")));
        assert_eq!(s("10.0.3.0/24").first_host(), Some(ip("10.0.3.1")));
        assert_eq!(
            Subnet::containing(ip("192.168.5.7"), 20),
            s("192.168.0.0/20")
        );
    }

    #[test]
    fn default_pools_start_with_docker0s_subnet() {
        let pools = default_pools();
        assert_eq!(choose_subnet(&pools, &[]), Some(s("172.17.0.0/16")));
        let used = [s("172.17.0.0/16"), s("172.18.5.0/24")];
        assert_eq!(choose_subnet(&pools, &used), Some(s("172.19.0.0/16")));
        // A host route over all of 172.16/12 pushes networks into 192.168/16 in /20s.
        let used = [s("172.16.0.0/12"), s("192.168.0.0/24")];
        assert_eq!(choose_subnet(&pools, &used), Some(s("192.168.16.0/20")));
    }

    #[test]
    fn env_pools_replace_the_defaults() {
        let pools = parse_pools("10.213.0.0/16/24").unwrap();
        assert_eq!(
            pools,
            vec![Pool {
                base: s("10.213.0.0/16"),
                size: 24
            }]
        );
        let used = [s("10.213.0.0/24"), s("10.213.1.0/24")];
        assert_eq!(choose_subnet(&pools, &used), Some(s("10.213.2.0/24")));
        for bad in ["", "10.213.0.0/16", "10.213.0.0/16/8", "x/16/24"] {
            assert!(parse_pools(bad).is_err(), "{bad}");
        }
        let full = [s("10.213.0.0/16")];
        assert_eq!(choose_subnet(&pools, &full), None);
    }

    #[test]
    fn addresses_allocate_lowest_first_and_skip_reserved() {
        let net = s("10.0.0.0/24");
        let gw = net.first_host();
        assert_eq!(allocate(net, net, gw, &[]), Some(ip("10.0.0.2")));
        assert_eq!(
            allocate(net, net, gw, &[ip("10.0.0.2"), ip("10.0.0.4")]),
            Some(ip("10.0.0.3"))
        );
        let range = s("10.0.0.128/25");
        assert_eq!(allocate(net, range, gw, &[]), Some(ip("10.0.0.128")));
        let tiny = s("10.0.0.0/30");
        assert_eq!(
            allocate(tiny, tiny, tiny.first_host(), &[ip("10.0.0.2")]),
            None
        );
    }

    #[test]
    fn addresses_allocate_in_turn_after_the_last_one() {
        let net = s("10.0.0.0/29");
        let gw = net.first_host();
        let after = |a: Option<&str>, taken: &[&str]| {
            let taken: Vec<Ipv4Addr> = taken.iter().map(|t| ip(t)).collect();
            allocate_after(net, net, gw, &taken, a.map(ip))
        };
        assert_eq!(after(None, &[]), Some(ip("10.0.0.2")));
        assert_eq!(after(Some("10.0.0.2"), &[]), Some(ip("10.0.0.3")));
        // Wraps past the broadcast address to the lowest free one.
        assert_eq!(after(Some("10.0.0.6"), &["10.0.0.3"]), Some(ip("10.0.0.2")));
        assert_eq!(after(Some("10.0.0.6"), &["10.0.0.2"]), Some(ip("10.0.0.3")));
        let all = ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"];
        assert_eq!(after(Some("10.0.0.4"), &all), None);
        // A cursor outside the range starts from the beginning.
        assert_eq!(after(Some("192.168.0.1"), &[]), Some(ip("10.0.0.2")));
    }

    #[test]
    fn fixed_addresses_are_checked_and_errors_name_them() {
        let net = s("10.0.0.0/24");
        let gw = net.first_host();
        assert!(check_fixed(net, gw, &[], ip("10.0.0.9")).is_ok());
        let e = check_fixed(net, gw, &[], ip("10.0.1.9")).unwrap_err();
        assert!(e.contains("10.0.1.9"), "{e}");
        let e = check_fixed(net, gw, &[ip("10.0.0.9")], ip("10.0.0.9")).unwrap_err();
        assert!(e.contains("10.0.0.9") && e.contains("in use"), "{e}");
        assert!(check_fixed(net, gw, &[], ip("10.0.0.1")).is_err());
        assert!(check_fixed(net, gw, &[], ip("10.0.0.255")).is_err());
    }
}
