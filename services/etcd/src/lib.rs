//! A small etcd v3 client for berth: keys and values, transactions, prefix watches and leases,
//! over tonic.
//!
//! The network service keeps overlay networks, cross-host address allocations, endpoints and
//! host membership (with leases) in etcd. This crate speaks etcd's public gRPC API itself,
//! from a hand-written subset of etcd's `rpc.proto` (`proto/etcd/rpc.proto`): the messages
//! carry etcd's field numbers and the services sit in etcd's `etcdserverpb` package, so the
//! wire contract is etcd's own. Why not a ready-made client crate: berth already builds its
//! gRPC code with tonic, prost and protox, and a client crate brings a second protobuf/gRPC
//! toolchain (and etcd's whole API, auth, cluster and maintenance included) for the dozen
//! calls berth makes. Here we compile only what berth uses, with the toolchain it already has.
//!
//! What the client does:
//! - [`Client::connect`] tries the endpoints in order and uses the first that answers; after a
//!   transport failure the next call goes to the next endpoint. Connections are re-made by
//!   themselves after etcd restarts (a call made while etcd is down fails with
//!   [`Error::Unavailable`]; the next one after it is back succeeds). Calls are not retried
//!   here: the caller decides what is safe to repeat.
//! - Conditional writes are single etcd transactions ([`Client::create`],
//!   [`Client::create_all`], [`Client::replace_if`], [`Client::delete_if_value`]).
//! - [`Client::keep_alive`] keeps a lease alive from a background task and reports when etcd
//!   says it is gone; [`Client::watch_prefix`] streams the changes under a prefix.
//!
//! Endpoints are `http://` or, with [`Client::connect_tls`], `https://` (the CA of etcd's
//! certificate, and a client certificate for an etcd that checks clients).
use std::{
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tonic::{
    transport::{Channel, ClientTlsConfig, Endpoint},
    Code, Status,
};
use tracing::instrument;

mod lease;
mod range;
mod watch;

pub use lease::KeepAlive;
pub use range::prefix_range_end;
pub use watch::WatchStream;

/// The generated client code and messages of `proto/etcd/rpc.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    kv_client::KvClient,
    lease_client::LeaseClient,
    request_op::Request as Op,
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// How long to wait for a TCP connection to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a unary call may take before it fails as [`Error::Unavailable`].
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// etcd answers a full prefix listing in one message; allow big ones (tonic's default is 4 MiB).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// A key and its value as etcd stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created the key (since its last deletion).
    pub create_revision: i64,
    /// The revision of the key's last change: the token for [`Client::replace_if`].
    pub mod_revision: i64,
    /// The lease the key is attached to, 0 when none.
    pub lease: i64,
}

impl From<pb::KeyValue> for KeyValue {
    fn from(kv: pb::KeyValue) -> KeyValue {
        KeyValue {
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            lease: kv.lease,
        }
    }
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key was created or changed; the new value.
    Put(KeyValue),
    /// The key was deleted (or its lease expired) at `mod_revision`.
    Delete { key: String, mod_revision: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid etcd endpoint {0}")]
    InvalidEndpoint(String),
    /// Connection or transport failure, or no answer in time; names the endpoints.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// The requested watch start revision was compacted away; re-list, then watch from the
    /// listing's revision + 1.
    #[error("etcd revision compacted (oldest available revision {revision})")]
    Compacted { revision: i64 },
    /// Any other error etcd returned (its message names the operation and key).
    #[error("etcd: {0}")]
    Status(#[from] tonic::Status),
    /// etcd closed the watch stream.
    #[error("etcd watch closed")]
    WatchClosed,
    /// The lease does not exist any more.
    #[error("etcd lease {0:x} expired")]
    LeaseExpired(i64),
}

pub type Result<T> = std::result::Result<T, Error>;

/// An etcd client. Cloning is cheap: clones share the connections.
#[derive(Clone)]
pub struct Client {
    /// One channel per endpoint, in the order given; each reconnects by itself.
    channels: Arc<[Channel]>,
    /// The index of the endpoint in use; moves on after a transport failure.
    active: Arc<AtomicUsize>,
    /// The endpoints, comma-separated, for error messages.
    endpoints: Arc<str>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// A Compare of one key.
fn compare(key: &str, result: CompareResult, target: CompareTarget, with: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(with),
        range_end: Vec::new(),
    }
}

fn put_op(key: &str, value: &[u8], lease: Option<i64>) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.to_vec(),
            lease: lease.unwrap_or(0),
            prev_kv: false,
        })),
    }
}

/// True when the status comes from the connection (not from an etcd answer): tonic attaches
/// the transport error as the source of the statuses it makes itself.
pub(crate) fn is_transport(status: &Status) -> bool {
    status.code() == Code::Unavailable || std::error::Error::source(status).is_some()
}

impl Client {
    /// Connects to etcd. `endpoints` are URLs such as `http://10.0.0.1:2379` (one per element;
    /// a comma-separated string is not split). They are tried in order and the first that
    /// accepts a connection (within 2 s) serves; after a transport failure the next call goes
    /// to the next endpoint, so a member going down does not stop the client.
    pub async fn connect(endpoints: &[String]) -> Result<Client> {
        Client::connect_tls(endpoints, None).await
    }

    /// [`Client::connect`] where `https://` endpoints use `tls` (its domain name is set per
    /// endpoint, from the URL's host, which etcd's certificate must name).
    pub async fn connect_tls(endpoints: &[String], tls: Option<ClientTlsConfig>) -> Result<Client> {
        if endpoints.is_empty() {
            return Err(Error::InvalidEndpoint("(none given)".into()));
        }
        let mut parsed = Vec::with_capacity(endpoints.len());
        for url in endpoints {
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| Error::InvalidEndpoint(format!("{url:?}: {e}")))?;
            let endpoint = match (url.strip_prefix("https://"), &tls) {
                (Some(rest), Some(tls)) => {
                    let authority = rest.split('/').next().unwrap_or(rest);
                    let host = match authority.rsplit_once(':') {
                        Some((host, _)) => host,
                        None => authority,
                    };
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    endpoint
                        .tls_config(tls.clone().domain_name(host))
                        .map_err(|e| Error::InvalidEndpoint(format!("{url:?}: {e}")))?
                }
                (Some(_), None) => {
                    return Err(Error::InvalidEndpoint(format!(
                        "{url:?}: https needs TLS settings (the CA of etcd's certificate)"
                    )))
                }
                (None, _) if url.starts_with("http://") => endpoint,
                (None, _) => {
                    return Err(Error::InvalidEndpoint(format!(
                        "{url:?}: want http://HOST:PORT or https://HOST:PORT"
                    )))
                }
            };
            let endpoint = endpoint
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                // Finds a dead peer (host gone, not just etcd stopped) on idle watch streams.
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true);
            parsed.push((url, endpoint));
        }
        let label: Arc<str> = endpoints.join(",").into();
        let mut failures = Vec::new();
        for (index, (url, endpoint)) in parsed.iter().enumerate() {
            match endpoint.connect().await {
                Ok(channel) => {
                    tracing::debug!(endpoint = %url, "connected to etcd");
                    // The others connect when first used (after a failover).
                    let channels = parsed
                        .iter()
                        .enumerate()
                        .map(|(i, (_, e))| {
                            if i == index {
                                channel.clone()
                            } else {
                                e.connect_lazy()
                            }
                        })
                        .collect();
                    return Ok(Client {
                        channels,
                        active: Arc::new(AtomicUsize::new(index)),
                        endpoints: label,
                    });
                }
                Err(e) => failures.push(format!("{url}: {}", error_chain(&e))),
            }
        }
        Err(Error::Unavailable(format!(
            "cannot connect to any etcd endpoint ({})",
            failures.join("; ")
        )))
    }

    /// The endpoint in use: its index and channel.
    pub(crate) fn channel(&self) -> (usize, Channel) {
        let index = self.active.load(Ordering::Relaxed) % self.channels.len();
        (index, self.channels[index].clone())
    }

    /// After a transport failure on endpoint `index`, the next call tries the next endpoint.
    pub(crate) fn failed(&self, index: usize) {
        if self.channels.len() > 1 {
            let next = (index + 1) % self.channels.len();
            if self
                .active
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::debug!(endpoints = %self.endpoints, next, "etcd endpoint failed; trying the next");
            }
        }
    }

    /// The error of a failed call, naming the operation, the key and (for transport failures)
    /// the endpoints.
    pub(crate) fn error(&self, op: &str, key: &str, status: Status) -> Error {
        if is_transport(&status) {
            Error::Unavailable(format!(
                "{op} {key:?} at {}: {}",
                self.endpoints,
                status_chain(&status)
            ))
        } else {
            Error::Status(Status::new(
                status.code(),
                format!("{op} {key:?}: {}", status.message()),
            ))
        }
    }

    /// Runs one unary call on the endpoint in use with [`CALL_TIMEOUT`], mapping errors.
    async fn call<T, F, Fut>(&self, op: &str, key: &str, f: F) -> Result<T>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let (index, channel) = self.channel();
        match tokio::time::timeout(CALL_TIMEOUT, f(channel)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                if is_transport(&status) {
                    self.failed(index);
                }
                Err(self.error(op, key, status))
            }
            Err(_) => {
                self.failed(index);
                Err(Error::Unavailable(format!(
                    "{op} {key:?} at {}: no answer within {}s",
                    self.endpoints,
                    CALL_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// The key's current value, `None` when it does not exist.
    #[instrument(level = "debug", skip_all, fields(key = %key))]
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let request = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let response = self
            .call("get", key, |ch| async move { kv(ch).range(request).await })
            .await?;
        Ok(response.kvs.into_iter().next().map(KeyValue::from))
    }

    /// Every key under `prefix`, sorted by key, and the store revision of the read (watch
    /// from that revision + 1 to miss nothing).
    #[instrument(level = "debug", skip_all, fields(prefix = %prefix))]
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        let (key, range_end) = range::prefix_range(prefix);
        let request = RangeRequest {
            key,
            range_end,
            sort_order: pb::range_request::SortOrder::Ascend as i32,
            sort_target: pb::range_request::SortTarget::Key as i32,
            ..Default::default()
        };
        let response = self
            .call("get prefix", prefix, |ch| async move {
                kv(ch).range(request).await
            })
            .await?;
        let revision = response.header.map_or(0, |h| h.revision);
        Ok((
            response.kvs.into_iter().map(KeyValue::from).collect(),
            revision,
        ))
    }

    /// Sets the key (attached to `lease` if given); returns the store revision of the write.
    #[instrument(level = "debug", skip_all, fields(key = %key))]
    pub async fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<i64> {
        let request = PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.to_vec(),
            lease: lease.unwrap_or(0),
            prev_kv: false,
        };
        let response = self
            .call("put", key, |ch| async move { kv(ch).put(request).await })
            .await?;
        Ok(response.header.map_or(0, |h| h.revision))
    }

    async fn txn(&self, op: &str, key: &str, request: TxnRequest) -> Result<pb::TxnResponse> {
        self.call(op, key, |ch| async move { kv(ch).txn(request).await })
            .await
    }

    /// Creates the key only if it does not exist; true when created.
    #[instrument(level = "debug", skip_all, fields(key = %key))]
    pub async fn create(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<bool> {
        let request = TxnRequest {
            compare: vec![compare(
                key,
                CompareResult::Equal,
                CompareTarget::Create,
                TargetUnion::CreateRevision(0),
            )],
            success: vec![put_op(key, value, lease)],
            failure: Vec::new(),
        };
        Ok(self.txn("create", key, request).await?.succeeded)
    }

    /// Creates every key in one transaction, only if none of them exists; true when created.
    /// The keys must be distinct (etcd refuses a transaction writing a key twice).
    #[instrument(level = "debug", skip_all, fields(keys = kvs.len(), first = kvs.first().map(|kv| kv.0.as_str())))]
    pub async fn create_all(&self, kvs: &[(String, Vec<u8>, Option<i64>)]) -> Result<bool> {
        let Some((first, _, _)) = kvs.first() else {
            return Ok(true);
        };
        let request = TxnRequest {
            compare: kvs
                .iter()
                .map(|(key, _, _)| {
                    compare(
                        key,
                        CompareResult::Equal,
                        CompareTarget::Create,
                        TargetUnion::CreateRevision(0),
                    )
                })
                .collect(),
            success: kvs
                .iter()
                .map(|(key, value, lease)| put_op(key, value, *lease))
                .collect(),
            failure: Vec::new(),
        };
        let label = if kvs.len() == 1 {
            first.clone()
        } else {
            format!("{first} (+{} more)", kvs.len() - 1)
        };
        Ok(self.txn("create all", &label, request).await?.succeeded)
    }

    /// Replaces the key only if its `mod_revision` is still `mod_revision` (an optimistic
    /// update after a read); true when replaced. `mod_revision` 0 means "only if absent".
    #[instrument(level = "debug", skip_all, fields(key = %key, mod_revision))]
    pub async fn replace_if(
        &self,
        key: &str,
        value: &[u8],
        mod_revision: i64,
        lease: Option<i64>,
    ) -> Result<bool> {
        let request = TxnRequest {
            compare: vec![compare(
                key,
                CompareResult::Equal,
                CompareTarget::Mod,
                TargetUnion::ModRevision(mod_revision),
            )],
            success: vec![put_op(key, value, lease)],
            failure: Vec::new(),
        };
        Ok(self.txn("replace", key, request).await?.succeeded)
    }

    /// Deletes the key; true when it existed.
    #[instrument(level = "debug", skip_all, fields(key = %key))]
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let request = DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let response = self
            .call("delete", key, |ch| async move {
                kv(ch).delete_range(request).await
            })
            .await?;
        Ok(response.deleted > 0)
    }

    /// Deletes the key only if its value is `value` (e.g. an address allocation still owned by
    /// this host); true when deleted.
    #[instrument(level = "debug", skip_all, fields(key = %key))]
    pub async fn delete_if_value(&self, key: &str, value: &[u8]) -> Result<bool> {
        let request = TxnRequest {
            compare: vec![compare(
                key,
                CompareResult::Equal,
                CompareTarget::Value,
                TargetUnion::Value(value.to_vec()),
            )],
            success: vec![RequestOp {
                request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                })),
            }],
            failure: Vec::new(),
        };
        let response = self.txn("delete if value", key, request).await?;
        let deleted = response.responses.iter().any(|r| {
            matches!(
                &r.response,
                Some(pb::response_op::Response::ResponseDeleteRange(d)) if d.deleted > 0
            )
        });
        Ok(response.succeeded && deleted)
    }

    /// Deletes every key under `prefix`; returns how many.
    #[instrument(level = "debug", skip_all, fields(prefix = %prefix))]
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let (key, range_end) = range::prefix_range(prefix);
        let request = DeleteRangeRequest {
            key,
            range_end,
            prev_kv: false,
        };
        let response = self
            .call("delete prefix", prefix, |ch| async move {
                kv(ch).delete_range(request).await
            })
            .await?;
        Ok(response.deleted.max(0) as u64)
    }

    /// Grants a lease of `ttl_secs` seconds; returns its ID.
    #[instrument(level = "debug", skip_all, fields(ttl_secs))]
    pub async fn grant_lease(&self, ttl_secs: i64) -> Result<i64> {
        let request = LeaseGrantRequest {
            ttl: ttl_secs,
            id: 0,
        };
        let label = format!("ttl {ttl_secs}s");
        let response = self
            .call("grant lease", &label, |ch| async move {
                LeaseClient::new(ch).lease_grant(request).await
            })
            .await?;
        if !response.error.is_empty() {
            return Err(Error::Status(Status::unknown(format!(
                "grant lease {label}: {}",
                response.error
            ))));
        }
        Ok(response.id)
    }

    /// Revokes the lease, deleting every key attached to it. A lease that no longer exists
    /// is not an error (it is gone either way).
    #[instrument(level = "debug", skip_all, fields(lease = format_args!("{id:x}")))]
    pub async fn revoke_lease(&self, id: i64) -> Result<()> {
        let label = format!("lease {id:x}");
        let request = LeaseRevokeRequest { id };
        match self
            .call("revoke", &label, |ch| async move {
                LeaseClient::new(ch).lease_revoke(request).await
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Status(status)) if status.code() == Code::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The lease's remaining TTL in seconds, `None` when it does not exist (expired or
    /// revoked).
    #[instrument(level = "debug", skip_all, fields(lease = format_args!("{id:x}")))]
    pub async fn lease_ttl(&self, id: i64) -> Result<Option<i64>> {
        let label = format!("lease {id:x}");
        let request = LeaseTimeToLiveRequest { id, keys: false };
        match self
            .call("lease ttl", &label, |ch| async move {
                LeaseClient::new(ch).lease_time_to_live(request).await
            })
            .await
        {
            Ok(response) if response.ttl < 0 => Ok(None),
            Ok(response) => Ok(Some(response.ttl)),
            Err(Error::Status(status)) if status.code() == Code::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Keeps the lease alive from a background task: a LeaseKeepAlive stream with one request
    /// every `ttl_secs / 3`, re-opened after transport errors. Dropping the guard stops it;
    /// [`KeepAlive::lost`] resolves when etcd says the lease is gone (the owner re-registers
    /// with a new lease). Must be called inside a tokio runtime.
    pub fn keep_alive(&self, id: i64, ttl_secs: i64) -> KeepAlive {
        lease::spawn(self.clone(), id, ttl_secs)
    }

    /// Watches every key under `prefix`, from `start_revision` (inclusive; 0 = from now). The
    /// stream yields batches of events in revision order with the header revision. When
    /// `start_revision` was compacted away the first item is [`Error::Compacted`]; when the
    /// connection drops the stream ends with [`Error::Unavailable`] or [`Error::WatchClosed`].
    /// After either, re-list with [`Client::get_prefix`] and watch again.
    #[instrument(level = "debug", skip_all, fields(prefix = %prefix, start_revision))]
    pub async fn watch_prefix(&self, prefix: &str, start_revision: i64) -> Result<WatchStream> {
        watch::open(self, prefix, start_revision).await
    }

    pub(crate) fn endpoints(&self) -> &str {
        &self.endpoints
    }
}

fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// An error and its sources, for messages ("transport error: tcp connect error: Connection
/// refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    with_sources(e.to_string(), e.source())
}

fn status_chain(status: &Status) -> String {
    with_sources(
        status.message().to_string(),
        std::error::Error::source(status),
    )
}

/// `out` followed by each source's text that it does not already contain.
fn with_sources(mut out: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
