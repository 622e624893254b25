//! The embedded DNS server of user-defined networks (Docker's 127.0.0.11, aardvark-dns).
//!
//! Per network one UDP socket and one TCP listener on the gateway address, port 53, in the
//! host's network namespace. Names are answered from in-memory records scoped by the
//! querier's source address; every other query is relayed to the upstream resolvers.
//! `hickory-proto` supplies the wire format only.
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use crate::{Error, Result};

/// Environment variable overriding the upstream resolvers: comma-separated `ip` or
/// `ip:port` (`[v6]:port`).
pub const UPSTREAMS_ENV: &str = "BERTH_DNS_UPSTREAMS";

/// TTL of local answers; Docker's embedded server uses 600 s as well.
const TTL: u32 = 600;
/// How long one upstream gets (per transport) before the next one is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds on per-listener work, so a flood costs bounded memory: forwarded UDP queries
/// beyond this are dropped (the client retries) and extra TCP connections are closed.
const MAX_INFLIGHT_FORWARDS: usize = 256;
const MAX_TCP_CONNECTIONS: usize = 64;
/// UDP reply size without EDNS (RFC 1035) and the most we ever send over UDP.
const MIN_UDP_PAYLOAD: usize = 512;
const MAX_UDP_PAYLOAD: usize = 4096;
const TCP_MAX_MESSAGE: usize = u16::MAX as usize;
const DNS_HEADER_LEN: usize = 12;

/// One container on one network, and the names it answers to there: its name, aliases,
/// short ID (12 hex) and hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEntry {
    pub container_id: String,
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

/// Listens on each user network's gateway address (UDP and TCP port 53, in the host's
/// network namespace), answers A queries for the containers on the networks the querying
/// container is on (found by its source address), every matching address shuffled per
/// query (round robin), PTR for their addresses; everything else is forwarded to the
/// upstream resolvers.
///
/// Details: names match case-insensitively, with or without a trailing dot, and each
/// container also answers to the first 12 characters of its ID. AAAA for a known name is
/// NODATA (NOERROR, no answers). A querier whose address is unknown on the network (the
/// host) sees that network only. Forwarding tries each upstream in turn (UDP, TCP when the
/// reply is truncated, ~2 s each); when none answers — or none is configured — the client
/// gets SERVFAIL. Dropping the server stops all its listeners.
pub struct DnsServer {
    inner: Arc<Inner>,
    listeners: Mutex<HashMap<String, Listener>>,
}

impl Default for DnsServer {
    fn default() -> DnsServer {
        DnsServer::new(Vec::new())
    }
}

impl DnsServer {
    pub fn new(upstreams: Vec<SocketAddr>) -> DnsServer {
        DnsServer {
            inner: Arc::new(Inner {
                upstreams,
                records: RwLock::new(Records::default()),
                live: AtomicUsize::new(0),
            }),
            listeners: Mutex::new(HashMap::new()),
        }
    }

    /// Starts answering on `listen:53` for network `network_id`. Idempotent.
    pub async fn serve_network(&self, network_id: &str, listen: Ipv4Addr) -> Result<()> {
        self.serve_network_on(network_id, SocketAddr::new(IpAddr::V4(listen), 53))
            .await
            .map(|_| ())
    }

    /// Like [`serve_network`](Self::serve_network) on any address; port 0 picks a free port
    /// (the same one for UDP and TCP). Returns the bound address. Serving an already served
    /// network on the same address is a no-op; on another address the listeners move.
    pub async fn serve_network_on(&self, network_id: &str, addr: SocketAddr) -> Result<SocketAddr> {
        if network_id.is_empty() {
            return Err(Error::InvalidArgument("DNS: empty network ID".into()));
        }
        if let Some(bound) = self.served_at(network_id, addr) {
            return Ok(bound);
        }
        let (udp, tcp, bound) = bind_pair(addr).await?;
        let mut listeners = lock(&self.listeners);
        // Another caller may have won the race while we were binding; keep theirs.
        if let Some(l) = listeners.get(network_id) {
            if same_listen(l.addr, addr) {
                return Ok(l.addr);
            }
        }
        let network: Arc<str> = Arc::from(network_id);
        let tasks = vec![
            tokio::spawn(run_udp(
                LiveGuard::new(&self.inner),
                network.clone(),
                Arc::new(udp),
            )),
            tokio::spawn(run_tcp(LiveGuard::new(&self.inner), network, tcp)),
        ];
        tracing::debug!(network = network_id, %bound, "DNS listening");
        // Replacing drops (and so aborts) a listener on another address.
        listeners.insert(network_id.to_string(), Listener { addr: bound, tasks });
        Ok(bound)
    }

    /// Stops the listeners of `network_id` and forgets its entries. Unknown IDs succeed.
    pub fn stop_network(&self, network_id: &str) {
        // Dropping the listener aborts its tasks; the sockets close as they unwind.
        drop(lock(&self.listeners).remove(network_id));
        write(&self.inner.records).networks.remove(network_id);
    }

    /// Replaces the entries of `network_id`.
    pub fn set_entries(&self, network_id: &str, entries: Vec<DnsEntry>) {
        let mut records = write(&self.inner.records);
        if entries.is_empty() {
            records.networks.remove(network_id);
        } else {
            records
                .networks
                .insert(network_id.to_string(), NetworkRecords::build(entries));
        }
    }

    /// Replaces the links of `container_id` (`--link target:alias` on a user network):
    /// when that container asks for `alias` (or the target's name) it gets the target's
    /// address on a network they share. Each pair is (alias, target container ID).
    pub fn set_links(&self, container_id: &str, links: Vec<(String, String)>) {
        let links: Vec<(String, String)> = links
            .into_iter()
            .filter_map(|(alias, target)| normalize(&alias).map(|a| (a, target)))
            .collect();
        let mut records = write(&self.inner.records);
        if links.is_empty() {
            records.links.remove(container_id);
        } else {
            records.links.insert(container_id.to_string(), links);
        }
    }

    /// Listener sockets still open (a served network has two: UDP and TCP). Falls to zero
    /// shortly after [`stop_network`](Self::stop_network), as aborted tasks unwind.
    pub fn live_listeners(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// The address `network_id` is served on, if it is.
    pub fn listen_addr(&self, network_id: &str) -> Option<SocketAddr> {
        lock(&self.listeners).get(network_id).map(|l| l.addr)
    }

    fn served_at(&self, network_id: &str, addr: SocketAddr) -> Option<SocketAddr> {
        lock(&self.listeners)
            .get(network_id)
            .filter(|l| same_listen(l.addr, addr))
            .map(|l| l.addr)
    }
}

/// Upstreams from resolv.conf text: every parseable `nameserver` line, port 53. Loopback
/// nameservers (systemd-resolved's 127.0.0.53) are kept: this server runs in the host's
/// namespace, where they are reachable. Link-local IPv6 with a zone (`fe80::1%eth0`) is
/// skipped, as `SocketAddr` cannot name the zone by interface name.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
            push_unique(&mut out, SocketAddr::new(ip, 53));
        }
    }
    out
}

/// The upstreams to use: `BERTH_DNS_UPSTREAMS` when set and non-empty, else the host's
/// /etc/resolv.conf (empty when unreadable, which makes forwarded queries SERVFAIL).
pub fn default_upstreams() -> Vec<SocketAddr> {
    if let Ok(list) = std::env::var(UPSTREAMS_ENV) {
        if !list.trim().is_empty() {
            return parse_upstream_list(&list);
        }
    }
    match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(text) => upstreams_from_resolv_conf(&text),
        Err(e) => {
            tracing::warn!("DNS: reading /etc/resolv.conf: {e}; no upstream resolvers");
            Vec::new()
        }
    }
}

/// Parses `ip`, `ip:port` or `[v6]:port` items separated by commas; bad items are logged
/// and skipped.
fn parse_upstream_list(list: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parsed = item.parse::<SocketAddr>().ok().or_else(|| {
            item.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        match parsed {
            Some(addr) => push_unique(&mut out, addr),
            None => tracing::warn!("{UPSTREAMS_ENV}: ignoring {item:?}: not an ip or ip:port"),
        }
    }
    out
}

fn push_unique(out: &mut Vec<SocketAddr>, addr: SocketAddr) {
    if !out.contains(&addr) {
        out.push(addr);
    }
}

// ---------------------------------------------------------------------------------------
// Records

struct Inner {
    upstreams: Vec<SocketAddr>,
    records: RwLock<Records>,
    /// Listener tasks whose sockets are still open.
    live: AtomicUsize,
}

#[derive(Default)]
struct Records {
    networks: HashMap<String, NetworkRecords>,
    /// Container ID → (normalized alias, target container ID).
    links: HashMap<String, Vec<(String, String)>>,
}

/// One network's entries, indexed for the three lookups a query needs.
#[derive(Default)]
struct NetworkRecords {
    by_name: HashMap<String, Vec<Ipv4Addr>>,
    /// Address → (container ID, PTR target). The first entry wins a duplicate address.
    by_ip: HashMap<Ipv4Addr, (String, String)>,
    /// Container ID → its addresses and normalized names here.
    by_container: HashMap<String, (Vec<Ipv4Addr>, Vec<String>)>,
}

impl NetworkRecords {
    fn build(entries: Vec<DnsEntry>) -> NetworkRecords {
        let mut net = NetworkRecords::default();
        for e in entries {
            let mut names: Vec<String> = e.names.iter().filter_map(|n| normalize(n)).collect();
            if let Some(short) = e.container_id.get(..12).and_then(normalize) {
                names.push(short);
            }
            names.dedup();
            for n in &names {
                let ips = net.by_name.entry(n.clone()).or_default();
                if !ips.contains(&e.ip) {
                    ips.push(e.ip);
                }
            }
            // The PTR target is the container's name (the first one given), as a FQDN.
            let ptr = names
                .first()
                .cloned()
                .unwrap_or_else(|| e.container_id.clone());
            net.by_ip
                .entry(e.ip)
                .or_insert_with(|| (e.container_id.clone(), format!("{ptr}.")));
            let (ips, all_names) = net.by_container.entry(e.container_id).or_default();
            if !ips.contains(&e.ip) {
                ips.push(e.ip);
            }
            all_names.extend(names);
        }
        net
    }
}

/// Lowercase, without the trailing dot; `None` for an empty name.
fn normalize(name: &str) -> Option<String> {
    let n = name.trim().trim_end_matches('.');
    (!n.is_empty()).then(|| n.to_ascii_lowercase())
}

impl Records {
    /// The querier (a container ID, if `src` is a container's address on `network`) and
    /// the networks whose names it may resolve.
    fn scope(&self, network: &str, src: IpAddr) -> (Option<&str>, Vec<&NetworkRecords>) {
        let Some(net) = self.networks.get(network) else {
            return (None, Vec::new());
        };
        let querier = match src {
            IpAddr::V4(ip) => net.by_ip.get(&ip).map(|(c, _)| c.as_str()),
            IpAddr::V6(ip) => ip
                .to_ipv4_mapped()
                .and_then(|ip| net.by_ip.get(&ip))
                .map(|(c, _)| c.as_str()),
        };
        match querier {
            // A container resolves names on every network it is on.
            Some(c) => (
                Some(c),
                self.networks
                    .values()
                    .filter(|n| n.by_container.contains_key(c))
                    .collect(),
            ),
            None => (None, vec![net]),
        }
    }

    /// Addresses for `name` as seen by `src` on `network`; empty when the name is unknown.
    fn lookup_a(&self, network: &str, src: IpAddr, name: &str) -> Vec<Ipv4Addr> {
        let (querier, nets) = self.scope(network, src);
        let mut out = Vec::new();
        // Links take precedence, as in Docker: the alias means the linked container.
        if let Some(links) = querier.and_then(|c| self.links.get(c)) {
            for (alias, target) in links {
                if alias != name && !self.container_has_name(target, name) {
                    continue;
                }
                for net in &nets {
                    if let Some((ips, _)) = net.by_container.get(target) {
                        extend_unique(&mut out, ips);
                    }
                }
            }
            if !out.is_empty() {
                return out;
            }
        }
        for net in &nets {
            if let Some(ips) = net.by_name.get(name) {
                extend_unique(&mut out, ips);
            }
        }
        out
    }

    fn container_has_name(&self, container: &str, name: &str) -> bool {
        self.networks.values().any(|n| {
            n.by_container
                .get(container)
                .is_some_and(|(_, names)| names.iter().any(|x| x == name))
        })
    }

    /// PTR targets for `ip` as seen by `src` on `network`.
    fn lookup_ptr(&self, network: &str, src: IpAddr, ip: Ipv4Addr) -> Vec<String> {
        let (_, nets) = self.scope(network, src);
        let mut out: Vec<String> = Vec::new();
        for net in nets {
            if let Some((_, ptr)) = net.by_ip.get(&ip) {
                if !out.contains(ptr) {
                    out.push(ptr.clone());
                }
            }
        }
        out
    }
}

fn extend_unique(out: &mut Vec<Ipv4Addr>, ips: &[Ipv4Addr]) {
    for ip in ips {
        if !out.contains(ip) {
            out.push(*ip);
        }
    }
}

/// `d.c.b.a.in-addr.arpa` (normalized) → a.b.c.d.
fn parse_reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = rest.split('.');
    for slot in octets.iter_mut().rev() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = p.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

// ---------------------------------------------------------------------------------------
// Query handling

enum Plan {
    /// Answered locally; encoded reply.
    Reply(Vec<u8>),
    /// Relay to the upstreams.
    Forward(Box<Message>),
}

impl Inner {
    /// Decides how to answer `bytes` from `src` on `network`; `None` drops it (not a query,
    /// or undecodable). `limit` is the largest reply the transport takes.
    fn plan(&self, network: &str, src: IpAddr, bytes: &[u8], limit: usize) -> Option<Plan> {
        let req = Message::from_vec(bytes).ok()?;
        // Never answer responses: that would let two servers ping-pong forever.
        if req.metadata.message_type != MessageType::Query {
            return None;
        }
        let limit = reply_limit(&req, limit);
        if req.metadata.op_code != OpCode::Query {
            return Some(Plan::Reply(encode(
                response_to(&req, ResponseCode::NotImp),
                limit,
            )?));
        }
        let [q] = req.queries.as_slice() else {
            return Some(Plan::Reply(encode(
                response_to(&req, ResponseCode::FormErr),
                limit,
            )?));
        };
        let answers = if q.query_class() == DNSClass::IN {
            normalize(&q.name().to_ascii())
                .and_then(|name| self.local_answers(network, src, q.query_type(), &name, q.name()))
        } else {
            None
        };
        match answers {
            Some(records) => {
                let mut resp = response_to(&req, ResponseCode::NoError);
                resp.metadata.authoritative = true;
                resp.add_answers(records);
                Some(Plan::Reply(encode(resp, limit)?))
            }
            None if self.upstreams.is_empty() => Some(Plan::Reply(encode(
                response_to(&req, ResponseCode::ServFail),
                limit,
            )?)),
            None => Some(Plan::Forward(Box::new(req))),
        }
    }

    /// Local answer records (possibly none: NODATA), or `None` when the query is not ours.
    fn local_answers(
        &self,
        network: &str,
        src: IpAddr,
        qtype: RecordType,
        name: &str,
        qname: &Name,
    ) -> Option<Vec<Record>> {
        let records = read(&self.records);
        match qtype {
            RecordType::A => {
                let mut ips = records.lookup_a(network, src, name);
                drop(records);
                if ips.is_empty() {
                    return None;
                }
                with_rng(|rng| ips.shuffle(rng));
                Some(
                    ips.into_iter()
                        .map(|ip| Record::from_rdata(qname.clone(), TTL, RData::A(A(ip))))
                        .collect(),
                )
            }
            // We hold no IPv6 records, but the name exists: NODATA, so resolvers do not
            // treat the name as nonexistent (NXDOMAIN would also poison the A answer).
            RecordType::AAAA => (!records.lookup_a(network, src, name).is_empty()).then(Vec::new),
            RecordType::PTR => {
                let ip = parse_reverse_v4(name)?;
                let targets = records.lookup_ptr(network, src, ip);
                drop(records);
                let answers: Vec<Record> = targets
                    .iter()
                    .filter_map(|t| Name::from_ascii(t).ok())
                    .map(|t| Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(t))))
                    .collect();
                (!answers.is_empty()).then_some(answers)
            }
            _ => None,
        }
    }

    /// Relays `query` (the client's bytes) to the upstreams in turn and returns the reply
    /// to send, carrying the client's query ID; SERVFAIL when no upstream answers.
    async fn forward(&self, query: &[u8], req: &Message, limit: usize) -> Option<Vec<u8>> {
        let limit = reply_limit(req, limit);
        let mut fallback: Option<Vec<u8>> = None;
        for &upstream in &self.upstreams {
            match forward_one(upstream, query).await {
                Ok(reply) => {
                    // SERVFAIL/REFUSED from one resolver says little about the next one.
                    let rcode = reply[3] & 0x0f;
                    if rcode == 2 || rcode == 5 {
                        fallback = Some(reply);
                        continue;
                    }
                    return Some(relay(reply, req, limit));
                }
                Err(e) => tracing::debug!(%upstream, "DNS forward failed: {e}"),
            }
        }
        match fallback {
            Some(reply) => Some(relay(reply, req, limit)),
            None => encode(response_to(req, ResponseCode::ServFail), limit),
        }
    }
}

/// The upstream reply with the client's ID, or a truncated reply (TC set, the client
/// retries over TCP) when it does not fit the client's transport.
fn relay(mut reply: Vec<u8>, req: &Message, limit: usize) -> Vec<u8> {
    if reply.len() > limit {
        let mut resp = response_to(req, ResponseCode::NoError);
        resp.metadata.truncation = true;
        return resp.to_vec().unwrap_or_default();
    }
    reply[..2].copy_from_slice(&req.metadata.id.to_be_bytes());
    reply
}

/// Sends `query` under a fresh random ID to one upstream over UDP, retrying over TCP when
/// the reply is truncated; returns a reply already checked to answer our ID.
async fn forward_one(upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    // A fresh ID (and socket) per upstream query: the client's ID is predictable to the
    // client's neighbours, ours is not, which makes spoofed replies harder to land.
    if query.len() < DNS_HEADER_LEN {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let id: u16 = with_rng(|rng| rng.random());
    let mut q = query.to_vec();
    q[..2].copy_from_slice(&id.to_be_bytes());

    let reply = timeout(UPSTREAM_TIMEOUT, udp_exchange(upstream, &q, id))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "UDP timeout"))??;
    // A datagram filling our whole buffer was cut short by the kernel: as good as TC.
    let oversized = reply.len() > MAX_UDP_PAYLOAD;
    if reply[2] & 0x02 == 0 && !oversized {
        return Ok(reply);
    }
    match timeout(UPSTREAM_TIMEOUT, tcp_exchange(upstream, &q, id)).await {
        Ok(Ok(full)) => Ok(full),
        Ok(Err(e)) if oversized => Err(e),
        _ if oversized => Err(io::Error::new(io::ErrorKind::TimedOut, "TCP timeout")),
        // The truncated reply still tells the client to retry over TCP itself.
        _ => Ok(reply),
    }
}

async fn udp_exchange(upstream: SocketAddr, q: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: the kernel filters out datagrams from anyone but the upstream and
    // reports ICMP port-unreachable as an error, so a dead upstream fails fast.
    sock.connect(upstream).await?;
    sock.send(q).await?;
    // One byte more than any UDP reply we relay, to tell "fits" from "cut short" while
    // keeping each in-flight forward small.
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD + 1];
    loop {
        let n = sock.recv(&mut buf).await?;
        if is_reply_to(&buf[..n], id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, q: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(q.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut framed = Vec::with_capacity(q.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(q);
    stream.write_all(&framed).await?;
    let n = usize::from(stream.read_u16().await?);
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).await?;
    if !is_reply_to(&buf, id) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "reply ID mismatch",
        ));
    }
    Ok(buf)
}

/// A DNS response header carrying `id`.
fn is_reply_to(buf: &[u8], id: u16) -> bool {
    buf.len() >= DNS_HEADER_LEN && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0
}

/// The largest reply for this request on a transport taking `transport_limit`: UDP
/// honours the client's EDNS payload size (at least 512, at most 4096).
fn reply_limit(req: &Message, transport_limit: usize) -> usize {
    if transport_limit > MAX_UDP_PAYLOAD {
        return transport_limit;
    }
    let advertised = req
        .edns
        .as_ref()
        .map_or(MIN_UDP_PAYLOAD, |e| usize::from(e.max_payload()));
    advertised.clamp(MIN_UDP_PAYLOAD, transport_limit)
}

fn response_to(req: &Message, rcode: ResponseCode) -> Message {
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.checking_disabled = req.metadata.checking_disabled;
    resp.metadata.recursion_available = true;
    resp.metadata.response_code = rcode;
    resp.add_queries(req.queries.iter().cloned());
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD as u16);
        resp.set_edns(edns);
    }
    resp
}

/// Encodes `resp`, falling back to an empty truncated reply when it exceeds `limit`.
fn encode(resp: Message, limit: usize) -> Option<Vec<u8>> {
    match resp.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Some(bytes),
        Ok(_) => resp.truncate().to_vec().ok(),
        Err(e) => {
            tracing::debug!("DNS: encoding reply: {e}");
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// Listeners

/// The tasks serving one network; dropping it aborts them.
struct Listener {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Counts a listener task as live until its future is dropped (completed or aborted),
/// which is when its socket closes.
struct LiveGuard(Arc<Inner>);

impl LiveGuard {
    fn new(inner: &Arc<Inner>) -> LiveGuard {
        inner.live.fetch_add(1, Ordering::SeqCst);
        LiveGuard(inner.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn same_listen(bound: SocketAddr, wanted: SocketAddr) -> bool {
    bound == wanted || (wanted.port() == 0 && bound.ip() == wanted.ip())
}

/// Binds UDP and TCP on the same address (for port 0, the port UDP got).
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr)> {
    // Aborted listeners close their sockets asynchronously, so a stop followed at once
    // by a serve on the same address can briefly see EADDRINUSE; port 0 can also pick a
    // UDP port whose TCP twin is taken. Both clear up on a retry.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match try_bind_pair(addr) {
            Ok(bound) => return Ok(bound),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(Error::sys(format!("DNS listener on {addr}"), e)),
        }
    }
}

fn try_bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let udp = std::net::UdpSocket::bind(addr)?;
    let bound = udp.local_addr()?;
    let tcp = std::net::TcpListener::bind(bound)?;
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    Ok((
        UdpSocket::from_std(udp)?,
        TcpListener::from_std(tcp)?,
        bound,
    ))
}

async fn run_udp(guard: LiveGuard, network: Arc<str>, sock: Arc<UdpSocket>) {
    let inner = guard.0.clone();
    // Queries are small; anything longer is cut short here and fails to decode.
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD];
    // Owned by this task: aborting it drops the set, which aborts in-flight forwards.
    let mut forwards = JoinSet::new();
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, src) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(network = &*network, "DNS UDP receive: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let query = &buf[..n];
                match inner.plan(&network, src.ip(), query, MAX_UDP_PAYLOAD) {
                    None => {}
                    Some(Plan::Reply(reply)) => send_udp(&sock, &reply, src).await,
                    Some(Plan::Forward(req)) => {
                        if forwards.len() >= MAX_INFLIGHT_FORWARDS {
                            tracing::debug!(network = &*network, "DNS: forwards full; dropping");
                            continue;
                        }
                        let (inner, sock, query) = (inner.clone(), sock.clone(), query.to_vec());
                        forwards.spawn(async move {
                            let reply = inner.forward(&query, &req, MAX_UDP_PAYLOAD).await;
                            if let Some(reply) = reply {
                                send_udp(&sock, &reply, src).await;
                            }
                        });
                    }
                }
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
        }
    }
}

async fn send_udp(sock: &UdpSocket, reply: &[u8], to: SocketAddr) {
    if let Err(e) = sock.send_to(reply, to).await {
        tracing::debug!(%to, "DNS UDP send: {e}");
    }
}

async fn run_tcp(guard: LiveGuard, network: Arc<str>, listener: TcpListener) {
    let inner = guard.0.clone();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    if conns.len() >= MAX_TCP_CONNECTIONS {
                        tracing::debug!(network = &*network, %peer, "DNS: too many TCP clients");
                        continue;
                    }
                    conns.spawn(serve_tcp(inner.clone(), network.clone(), stream, peer.ip()));
                }
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::debug!(network = &*network, "DNS TCP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Serves length-prefixed queries on one connection, one at a time, until the client
/// closes, idles, or sends something undecodable.
async fn serve_tcp(inner: Arc<Inner>, network: Arc<str>, mut stream: TcpStream, src: IpAddr) {
    loop {
        let Ok(Ok(len)) = timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        if !matches!(
            timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let reply = match inner.plan(&network, src, &query, TCP_MAX_MESSAGE) {
            None => return,
            Some(Plan::Reply(reply)) => reply,
            Some(Plan::Forward(req)) => match inner.forward(&query, &req, TCP_MAX_MESSAGE).await {
                Some(reply) => reply,
                None => return,
            },
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if !matches!(
            timeout(TCP_IDLE_TIMEOUT, stream.write_all(&framed)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers

fn with_rng<T>(f: impl FnOnce(&mut StdRng) -> T) -> T {
    thread_local! {
        static RNG: RefCell<StdRng> = RefCell::new(
            StdRng::try_from_os_rng().unwrap_or_else(|_| StdRng::seed_from_u64(fallback_seed())),
        );
    }
    RNG.with(|rng| f(&mut rng.borrow_mut()))
}

/// Only used if the OS RNG fails: good enough for shuffles, weak for IDs.
fn fallback_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    const ID1: &str = "aaaaaaaaaaaa0000000000000000000000000000000000000000000000000001";

    fn entry(id: &str, ip: [u8; 4], names: &[&str]) -> DnsEntry {
        DnsEntry {
            container_id: id.to_string(),
            ip: Ipv4Addr::from(ip),
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn query_bytes(name: &str, qtype: RecordType) -> (u16, Vec<u8>) {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        (m.metadata.id, m.to_vec().unwrap())
    }

    async fn udp_query(
        server: SocketAddr,
        from: [u8; 4],
        name: &str,
        qtype: RecordType,
    ) -> Message {
        let sock = UdpSocket::bind((Ipv4Addr::from(from), 0)).await.unwrap();
        let (id, q) = query_bytes(name, qtype);
        sock.send_to(&q, server).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, _) = timeout(Duration::from_secs(8), sock.recv_from(&mut buf))
            .await
            .expect("reply in time")
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.id, id, "reply carries the query ID");
        m
    }

    async fn tcp_query(stream: &mut TcpStream, name: &str, qtype: RecordType) -> Message {
        let (id, q) = query_bytes(name, qtype);
        stream
            .write_all(&(q.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&q).await.unwrap();
        let n = timeout(Duration::from_secs(8), stream.read_u16())
            .await
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; n as usize];
        stream.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        assert_eq!(m.metadata.id, id);
        m
    }

    fn a_ips(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(A(ip)) => Some(*ip),
                _ => None,
            })
            .collect()
    }

    fn sorted(mut v: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
        v.sort();
        v
    }

    fn any_port(ip: [u8; 4]) -> SocketAddr {
        SocketAddr::from((ip, 0))
    }

    #[tokio::test]
    async fn answers_names_aliases_and_short_id() {
        let dns = DnsServer::new(vec![]);
        let addr = dns
            .serve_network_on("n1", any_port([127, 0, 10, 1]))
            .await
            .unwrap();
        dns.set_entries(
            "n1",
            vec![
                entry(ID1, [127, 1, 0, 2], &["web", "Web-Alias", "dotted."]),
                entry("bbbbbbbbbbbb", [127, 1, 0, 3], &["db"]),
            ],
        );
        for name in [
            "web",
            "WEB.",
            "web-alias",
            "dotted",
            "aaaaaaaaaaaa",
            "AaAaAaAaAaAa.",
        ] {
            let m = udp_query(addr, [127, 0, 0, 1], name, RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(m.metadata.authoritative, "{name}: AA");
            assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 1, 0, 2)], "{name}");
            assert_eq!(m.answers[0].ttl, 600);
            // The owner name echoes the question, case included (0x20 clients check it).
            assert_eq!(&m.answers[0].name, m.queries[0].name());
        }
        // Only the 12-char short ID, not any other prefix; with no upstream an unknown name
        // is SERVFAIL.
        let m = udp_query(addr, [127, 0, 0, 1], &ID1[..13], RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        let m = udp_query(addr, [127, 0, 0, 1], "web.example.com", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn round_robin_shuffles_every_query() {
        let dns = DnsServer::new(vec![]);
        let addr = dns
            .serve_network_on("n1", any_port([127, 0, 11, 1]))
            .await
            .unwrap();
        let all = [[127, 1, 1, 2], [127, 1, 1, 3], [127, 1, 1, 4]];
        dns.set_entries(
            "n1",
            all.iter()
                .enumerate()
                .map(|(i, ip)| entry(&format!("c{i}"), *ip, &[&format!("task{i}"), "svc"]))
                .collect(),
        );
        let mut first: HashMap<Ipv4Addr, usize> = HashMap::new();
        for _ in 0..200 {
            let m = udp_query(addr, [127, 0, 0, 1], "svc", RecordType::A).await;
            let ips = a_ips(&m);
            assert_eq!(
                sorted(ips.clone()),
                all.iter().map(|ip| Ipv4Addr::from(*ip)).collect::<Vec<_>>()
            );
            *first.entry(ips[0]).or_default() += 1;
        }
        for ip in all {
            let n = first.get(&Ipv4Addr::from(ip)).copied().unwrap_or(0);
            assert!(n >= 40, "{ip:?} first {n}/200 times: {first:?}");
        }
    }

    #[tokio::test]
    async fn querier_sees_only_its_networks() {
        let dns = DnsServer::new(vec![]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 12, 1]))
            .await
            .unwrap();
        let b = dns
            .serve_network_on("B", any_port([127, 0, 12, 2]))
            .await
            .unwrap();
        dns.set_entries(
            "A",
            vec![
                entry("ca", [127, 12, 1, 2], &["alpha"]),
                entry("cab", [127, 12, 1, 3], &["both"]),
            ],
        );
        dns.set_entries(
            "B",
            vec![
                entry("cb", [127, 12, 2, 2], &["beta"]),
                entry("cab", [127, 12, 2, 3], &["both"]),
            ],
        );
        let servfail = ResponseCode::ServFail;
        // On A only: sees A's names, not B's.
        let m = udp_query(a, [127, 12, 1, 2], "alpha", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 12, 1, 2)]);
        let m = udp_query(a, [127, 12, 1, 2], "beta", RecordType::A).await;
        assert_eq!((m.metadata.response_code, m.answers.len()), (servfail, 0));
        // On B only, asking B's listener: the mirror image.
        let m = udp_query(b, [127, 12, 2, 2], "alpha", RecordType::A).await;
        assert_eq!(m.metadata.response_code, servfail);
        // On both: sees both networks' names, and both its own addresses.
        let m = udp_query(a, [127, 12, 1, 3], "beta", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 12, 2, 2)]);
        let m = udp_query(a, [127, 12, 1, 3], "both", RecordType::A).await;
        assert_eq!(
            sorted(a_ips(&m)),
            vec![Ipv4Addr::new(127, 12, 1, 3), Ipv4Addr::new(127, 12, 2, 3)]
        );
        // Its address on B does not identify it on A's listener: unknown → A only.
        let m = udp_query(a, [127, 12, 2, 3], "beta", RecordType::A).await;
        assert_eq!(m.metadata.response_code, servfail);
        // The host (unknown source) sees the listener's network only.
        let m = udp_query(a, [127, 0, 0, 1], "alpha", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 12, 1, 2)]);
        let m = udp_query(a, [127, 0, 0, 1], "beta", RecordType::A).await;
        assert_eq!(m.metadata.response_code, servfail);
        // Replacing entries takes effect at once.
        dns.set_entries("A", vec![entry("ca", [127, 12, 1, 2], &["renamed"])]);
        let m = udp_query(a, [127, 0, 0, 1], "alpha", RecordType::A).await;
        assert_eq!(m.metadata.response_code, servfail);
        let m = udp_query(a, [127, 0, 0, 1], "renamed", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 12, 1, 2)]);
    }

    #[tokio::test]
    async fn links_resolve_for_the_linking_container_only() {
        let dns = DnsServer::new(vec![]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 13, 1]))
            .await
            .unwrap();
        dns.set_entries(
            "A",
            vec![
                entry("client", [127, 13, 1, 2], &["client"]),
                entry("target", [127, 13, 1, 4], &["db-real"]),
                entry("other", [127, 13, 1, 5], &["other", "db"]),
            ],
        );
        dns.set_entries("B", vec![entry("target", [127, 13, 2, 4], &["db-real"])]);
        dns.set_links("client", vec![("DB".into(), "target".into())]);
        // The alias wins over another container's name, and gives the address on the
        // shared network only (not the target's address on B).
        let m = udp_query(a, [127, 13, 1, 2], "db", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 13, 1, 4)]);
        let m = udp_query(a, [127, 13, 1, 2], "db-real", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 13, 1, 4)]);
        // Others still get the plain name.
        let m = udp_query(a, [127, 13, 1, 5], "db", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 13, 1, 5)]);
        let m = udp_query(a, [127, 0, 0, 1], "db", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 13, 1, 5)]);
        // Clearing the links restores the plain view.
        dns.set_links("client", vec![]);
        let m = udp_query(a, [127, 13, 1, 2], "db", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 13, 1, 5)]);
    }

    #[tokio::test]
    async fn ptr_aaaa_and_header_errors() {
        let dns = DnsServer::new(vec![]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 14, 1]))
            .await
            .unwrap();
        dns.set_entries("A", vec![entry("c1", [127, 14, 1, 2], &["web", "alias"])]);
        let m = udp_query(
            a,
            [127, 0, 0, 1],
            "2.1.14.127.in-addr.arpa",
            RecordType::PTR,
        )
        .await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        match m.answers.first().map(|r| &r.data) {
            Some(RData::PTR(PTR(name))) => assert_eq!(name.to_ascii(), "web."),
            other => panic!("expected PTR, got {other:?}"),
        }
        // Unknown address: not ours, forwarded (no upstream → SERVFAIL).
        let m = udp_query(
            a,
            [127, 0, 0, 1],
            "9.1.14.127.in-addr.arpa",
            RecordType::PTR,
        )
        .await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        // AAAA for a known name: NODATA, not NXDOMAIN.
        let m = udp_query(a, [127, 0, 0, 1], "web", RecordType::AAAA).await;
        assert_eq!(
            (m.metadata.response_code, m.answers.len()),
            (ResponseCode::NoError, 0)
        );
        assert!(m.metadata.authoritative);
        // Two questions in one message: FORMERR. A non-query opcode: NOTIMP.
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut two = Message::query();
        two.add_query(Query::query(
            Name::from_ascii("web.").unwrap(),
            RecordType::A,
        ));
        two.add_query(Query::query(
            Name::from_ascii("alias.").unwrap(),
            RecordType::A,
        ));
        let mut notify = Message::new(7, MessageType::Query, OpCode::Notify);
        notify.add_query(Query::query(
            Name::from_ascii("web.").unwrap(),
            RecordType::SOA,
        ));
        for (msg, rcode) in [(two, ResponseCode::FormErr), (notify, ResponseCode::NotImp)] {
            sock.send_to(&msg.to_vec().unwrap(), a).await.unwrap();
            let mut buf = [0u8; 512];
            let n = timeout(Duration::from_secs(5), sock.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                Message::from_vec(&buf[..n]).unwrap().metadata.response_code,
                rcode
            );
        }
    }

    /// A tiny upstream: `ext.example.` → 127.9.9.9, `many.example.` → 40 addresses
    /// (truncated over UDP), anything else NXDOMAIN.
    async fn stub_upstream(ip: [u8; 4]) -> (SocketAddr, JoinHandle<()>, JoinHandle<()>) {
        fn answer(query: &[u8], udp: bool) -> Option<Vec<u8>> {
            let req = Message::from_vec(query).ok()?;
            let q = req.queries.first()?.clone();
            let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
            resp.add_query(q.clone());
            match q.name().to_ascii().as_str() {
                "ext.example." => {
                    resp.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A([127, 9, 9, 9].into())),
                    ));
                }
                "many.example." if udp => resp.metadata.truncation = true,
                "many.example." => {
                    for i in 0..40u8 {
                        resp.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::A(A([127, 9, 8, i].into())),
                        ));
                    }
                }
                _ => resp.metadata.response_code = ResponseCode::NXDomain,
            }
            resp.to_vec().ok()
        }
        let (udp, tcp, addr) = try_bind_pair(any_port(ip)).unwrap();
        let u = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, src)) = udp.recv_from(&mut buf).await {
                if let Some(r) = answer(&buf[..n], true) {
                    let _ = udp.send_to(&r, src).await;
                }
            }
        });
        let t = tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                let Ok(n) = s.read_u16().await else { continue };
                let mut buf = vec![0u8; n as usize];
                if s.read_exact(&mut buf).await.is_err() {
                    continue;
                }
                if let Some(r) = answer(&buf, false) {
                    let _ = s.write_all(&(r.len() as u16).to_be_bytes()).await;
                    let _ = s.write_all(&r).await;
                }
            }
        });
        (addr, u, t)
    }

    #[tokio::test]
    async fn forwards_to_upstream_dns_server() {
        // The upstream is another DnsServer: its host view of network "up".
        let upstream = DnsServer::new(vec![]);
        let up = upstream
            .serve_network_on("up", any_port([127, 0, 15, 9]))
            .await
            .unwrap();
        upstream.set_entries("up", vec![entry("u1", [127, 15, 9, 2], &["upstream-only"])]);

        let dns = DnsServer::new(vec![up]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 15, 1]))
            .await
            .unwrap();
        dns.set_entries("A", vec![entry("c1", [127, 15, 1, 2], &["web"])]);
        let m = udp_query(a, [127, 15, 1, 2], "upstream-only", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 15, 9, 2)]);
        // Local names are still answered locally.
        let m = udp_query(a, [127, 15, 1, 2], "web", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 15, 1, 2)]);
        // Over TCP too, several queries on one connection.
        let mut s = TcpStream::connect(a).await.unwrap();
        let m = tcp_query(&mut s, "upstream-only", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 15, 9, 2)]);
        let m = tcp_query(&mut s, "web", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 15, 1, 2)]);
    }

    #[tokio::test]
    async fn forwards_with_tcp_retry_and_relays_rcodes() {
        let (up, u, t) = stub_upstream([127, 0, 16, 9]).await;
        let dns = DnsServer::new(vec![up]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 16, 1]))
            .await
            .unwrap();
        let m = udp_query(a, [127, 0, 0, 1], "ext.example", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 9, 9, 9)]);
        let m = udp_query(a, [127, 0, 0, 1], "nx.example", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // Truncated over UDP: we fetch it over TCP, but 40 answers do not fit the
        // client's 512 bytes, so the UDP client is told to retry over TCP...
        let m = udp_query(a, [127, 0, 0, 1], "many.example", RecordType::A).await;
        assert!(m.metadata.truncation);
        // ...where it gets everything.
        let mut s = TcpStream::connect(a).await.unwrap();
        let m = tcp_query(&mut s, "many.example", RecordType::A).await;
        assert_eq!(a_ips(&m).len(), 40);
        assert!(!m.metadata.truncation);
        u.abort();
        t.abort();
    }

    #[tokio::test]
    async fn dead_upstreams_give_servfail_and_the_next_one_is_tried() {
        // Refused: a port nobody listens on (ICMP unreachable → fails at once).
        let refused = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // Blackhole: bound but never answers (timeout).
        let blackhole = std::net::UdpSocket::bind("127.0.17.9:0").unwrap();
        let hole = blackhole.local_addr().unwrap();
        let (good, u, t) = stub_upstream([127, 0, 17, 8]).await;

        let dns = DnsServer::new(vec![refused]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 17, 1]))
            .await
            .unwrap();
        let start = Instant::now();
        let m = udp_query(a, [127, 0, 0, 1], "ext.example", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );

        let dns = DnsServer::new(vec![hole]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 17, 2]))
            .await
            .unwrap();
        let start = Instant::now();
        let m = udp_query(a, [127, 0, 0, 1], "ext.example", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
            "{took:?}"
        );

        let dns = DnsServer::new(vec![hole, refused, good]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 17, 3]))
            .await
            .unwrap();
        dns.set_entries("A", vec![entry("c1", [127, 17, 1, 2], &["web"])]);
        // While that forward waits on the blackhole, local answers are not held up.
        let slow = tokio::spawn(udp_query(a, [127, 0, 0, 1], "ext.example", RecordType::A));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        let m = udp_query(a, [127, 0, 0, 1], "web", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 17, 1, 2)]);
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        let m = slow.await.unwrap();
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 9, 9, 9)]);
        drop(blackhole);
        u.abort();
        t.abort();
    }

    #[tokio::test]
    async fn malformed_input_is_dropped_and_service_continues() {
        let dns = DnsServer::new(vec![]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 18, 1]))
            .await
            .unwrap();
        dns.set_entries("A", vec![entry("c1", [127, 18, 1, 2], &["web"])]);
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (_, good) = query_bytes("web.", RecordType::A);
        let mut response = good.clone();
        response[2] |= 0x80; // QR: a response must never be answered
        let mut lying_counts = good[..12].to_vec();
        lying_counts[4..6].copy_from_slice(&[0xff, 0xff]);
        let mut bad_label = good.clone();
        bad_label[12] = 0xc0; // compression pointer into nowhere
        let garbage: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for bad in [
            vec![],
            vec![0u8; 5],
            good[..11].to_vec(),
            lying_counts,
            bad_label,
            response,
            garbage,
        ] {
            sock.send_to(&bad, a).await.unwrap();
        }
        let mut buf = [0u8; 512];
        assert!(
            timeout(Duration::from_millis(300), sock.recv(&mut buf))
                .await
                .is_err(),
            "no reply to malformed input"
        );
        let m = udp_query(a, [127, 0, 0, 1], "web", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 18, 1, 2)]);

        // TCP: a client announcing 64 KiB and stalling does not hold up others; garbage
        // closes its own connection only.
        let mut stall = TcpStream::connect(a).await.unwrap();
        stall.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
        let mut junk = TcpStream::connect(a).await.unwrap();
        junk.write_all(&[0, 4, 1, 2, 3, 4]).await.unwrap();
        let mut byte = [0u8; 1];
        let closed = timeout(Duration::from_secs(5), junk.read(&mut byte))
            .await
            .unwrap();
        assert!(matches!(closed, Ok(0) | Err(_)), "junk connection closed");
        let mut s = TcpStream::connect(a).await.unwrap();
        let m = tcp_query(&mut s, "web", RecordType::A).await;
        assert_eq!(a_ips(&m), vec![Ipv4Addr::new(127, 18, 1, 2)]);
        drop(stall);
    }

    #[tokio::test]
    async fn serve_is_idempotent_and_stop_closes_and_forgets() {
        let dns = DnsServer::new(vec![]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 19, 1]))
            .await
            .unwrap();
        assert_eq!(dns.serve_network_on("A", a).await.unwrap(), a);
        assert_eq!(
            dns.serve_network_on("A", any_port([127, 0, 19, 1]))
                .await
                .unwrap(),
            a
        );
        assert_eq!(dns.listen_addr("A"), Some(a));
        assert_eq!(dns.live_listeners(), 2);
        dns.set_entries("A", vec![entry("c1", [127, 19, 1, 2], &["web"])]);
        assert_eq!(
            a_ips(&udp_query(a, [127, 0, 0, 1], "web", RecordType::A).await).len(),
            1
        );

        dns.stop_network("A");
        dns.stop_network("A");
        dns.stop_network("never-served");
        let deadline = Instant::now() + Duration::from_secs(2);
        while dns.live_listeners() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(dns.live_listeners(), 0);
        assert!(TcpStream::connect(a).await.is_err(), "TCP listener closed");

        // Same address again right away; the old entries are gone.
        assert_eq!(dns.serve_network_on("A", a).await.unwrap(), a);
        let m = udp_query(a, [127, 0, 0, 1], "web", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        // Moving to another address closes the old one.
        let b = dns
            .serve_network_on("A", any_port([127, 0, 19, 2]))
            .await
            .unwrap();
        assert_ne!(a, b);
        drop(dns);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            TcpStream::connect(b).await.is_err(),
            "dropping the server closes it"
        );
        assert!(DnsServer::default().serve_network_on("", a).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn udp_lookup_latency() {
        let dns = DnsServer::new(vec![]);
        let a = dns
            .serve_network_on("A", any_port([127, 0, 20, 1]))
            .await
            .unwrap();
        dns.set_entries(
            "A",
            (0..100u8)
                .map(|i| {
                    entry(
                        &format!("c{i}"),
                        [127, 20, 1, i],
                        &[&format!("n{i}"), "svc"],
                    )
                })
                .collect(),
        );
        let sock = UdpSocket::bind("127.20.1.7:0").await.unwrap();
        sock.connect(a).await.unwrap();
        let (_, q) = query_bytes("n42.", RecordType::A);
        let mut buf = [0u8; 512];
        let mut samples = Vec::with_capacity(1000);
        for _ in 0..1000 {
            let start = Instant::now();
            sock.send(&q).await.unwrap();
            timeout(Duration::from_secs(2), sock.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            samples.push(start.elapsed());
        }
        samples.sort();
        let (p50, p99) = (samples[500], samples[990]);
        println!(
            "DNS UDP lookup latency over 1000 queries: median {} us, p99 {} us",
            p50.as_micros(),
            p99.as_micros()
        );
        assert!(p50 < Duration::from_millis(50), "median {p50:?}");
    }

    #[test]
    fn resolv_conf_and_env_parsing() {
        let conf = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver  1.1.1.1 # cf\n\
                    ;nameserver 9.9.9.9\nnameserver 2001:db8::1\nnameserver fe80::1%eth0\nnameserver bogus\n\
                    nameserver 1.1.1.1\noptions edns0\n";
        let want: Vec<SocketAddr> = vec![
            "127.0.0.53:53".parse().unwrap(),
            "1.1.1.1:53".parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
        ];
        assert_eq!(upstreams_from_resolv_conf(conf), want);
        assert_eq!(
            parse_upstream_list(" 127.0.0.1:5353, 8.8.8.8 ,,nonsense,[::1]:54"),
            vec![
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "8.8.8.8:53".parse().unwrap(),
                "[::1]:54".parse().unwrap()
            ]
        );
        assert_eq!(
            parse_reverse_v4("4.3.2.1.in-addr.arpa"),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        for bad in [
            "3.2.1.in-addr.arpa",
            "5.4.3.2.1.in-addr.arpa",
            "256.3.2.1.in-addr.arpa",
            "+4.3.2.1.in-addr.arpa",
            "4.3.2.1.ip6.arpa",
        ] {
            assert_eq!(parse_reverse_v4(bad), None, "{bad}");
        }
    }
}
