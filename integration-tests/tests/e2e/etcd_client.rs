//! berth-etcd against a real etcd (Debian's etcd-server): each test starts its own etcd and
//! works under a unique key prefix; the etcd is killed when the test ends.
use std::time::{Duration, Instant};

use berth_etcd::{Client, Error, Event};
use berth_integration_tests::{etcd::EtcdPeer, unique};

async fn setup() -> (EtcdPeer, Client, String) {
    let peer = tokio::task::spawn_blocking(EtcdPeer::start).await.unwrap();
    let client = Client::connect(&[peer.endpoint()])
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", peer.log()));
    let prefix = format!("/{}/", unique("berth-etcd-test"));
    (peer, client, prefix)
}

/// Polls `f` until it returns true or `timeout` passes.
async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_and_prefix_listing() {
    let (_peer, client, p) = setup().await;
    assert_eq!(client.get(&format!("{p}missing")).await.unwrap(), None);

    let r1 = client.put(&format!("{p}b"), b"two", None).await.unwrap();
    let r2 = client.put(&format!("{p}a"), b"one", None).await.unwrap();
    let r3 = client
        .put(&format!("{p}c/d"), b"three", None)
        .await
        .unwrap();
    assert!(r1 < r2 && r2 < r3, "revisions grow: {r1} {r2} {r3}");
    // Outside the prefix: a sibling whose name extends the prefix's last component.
    let outside = format!("{}x", p.trim_end_matches('/'));
    client.put(&outside, b"no", None).await.unwrap();

    let kv = client.get(&format!("{p}a")).await.unwrap().unwrap();
    assert_eq!(kv.key, format!("{p}a"));
    assert_eq!(kv.value, b"one");
    assert_eq!(kv.create_revision, r2);
    assert_eq!(kv.mod_revision, r2);
    assert_eq!(kv.lease, 0);

    let (kvs, revision) = client.get_prefix(&p).await.unwrap();
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [format!("{p}a"), format!("{p}b"), format!("{p}c/d")],
        "sorted by key, nothing outside the prefix"
    );
    assert!(
        revision > r3,
        "read revision {revision} includes every write"
    );

    // Overwriting keeps create_revision and moves mod_revision.
    let r4 = client.put(&format!("{p}a"), b"uno", None).await.unwrap();
    let kv = client.get(&format!("{p}a")).await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r2, r4));
    assert_eq!(kv.value, b"uno");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_once() {
    let (_peer, client, p) = setup().await;
    let key = format!("{p}k");
    assert!(client.create(&key, b"first", None).await.unwrap());
    assert!(!client.create(&key, b"second", None).await.unwrap());
    assert_eq!(client.get(&key).await.unwrap().unwrap().value, b"first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_all_is_all_or_nothing() {
    let (_peer, client, p) = setup().await;
    let kvs = |names: &[&str]| -> Vec<(String, Vec<u8>, Option<i64>)> {
        names
            .iter()
            .map(|n| (format!("{p}{n}"), n.as_bytes().to_vec(), None))
            .collect()
    };
    assert!(client.create_all(&kvs(&["a", "b"])).await.unwrap());
    // "b" exists: neither "c" nor "d" is created.
    assert!(!client.create_all(&kvs(&["c", "b", "d"])).await.unwrap());
    let (listed, _) = client.get_prefix(&p).await.unwrap();
    let keys: Vec<String> = listed.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, [format!("{p}a"), format!("{p}b")]);
    assert!(client.create_all(&kvs(&["c", "d"])).await.unwrap());
    assert!(client.create_all(&[]).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_if_needs_the_current_revision() {
    let (_peer, client, p) = setup().await;
    let key = format!("{p}k");
    client.put(&key, b"v1", None).await.unwrap();
    let read = client.get(&key).await.unwrap().unwrap();
    // Someone else writes in between.
    client.put(&key, b"v2", None).await.unwrap();
    assert!(!client
        .replace_if(&key, b"mine", read.mod_revision, None)
        .await
        .unwrap());
    assert_eq!(client.get(&key).await.unwrap().unwrap().value, b"v2");
    let fresh = client.get(&key).await.unwrap().unwrap();
    assert!(client
        .replace_if(&key, b"mine", fresh.mod_revision, None)
        .await
        .unwrap());
    assert_eq!(client.get(&key).await.unwrap().unwrap().value, b"mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes() {
    let (_peer, client, p) = setup().await;
    let key = format!("{p}owned");
    client.put(&key, b"host-a", None).await.unwrap();
    assert!(!client.delete_if_value(&key, b"host-b").await.unwrap());
    assert!(client.get(&key).await.unwrap().is_some());
    assert!(client.delete_if_value(&key, b"host-a").await.unwrap());
    assert!(client.get(&key).await.unwrap().is_none());
    assert!(!client.delete_if_value(&key, b"host-a").await.unwrap());

    client.put(&key, b"x", None).await.unwrap();
    assert!(client.delete(&key).await.unwrap());
    assert!(!client.delete(&key).await.unwrap());

    for i in 0..5 {
        client
            .put(&format!("{p}many/{i}"), b"x", None)
            .await
            .unwrap();
    }
    client.put(&format!("{p}keep"), b"x", None).await.unwrap();
    assert_eq!(client.delete_prefix(&format!("{p}many/")).await.unwrap(), 5);
    assert_eq!(client.delete_prefix(&format!("{p}many/")).await.unwrap(), 0);
    let (left, _) = client.get_prefix(&p).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, format!("{p}keep"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_lease_deletes_its_keys() {
    let (_peer, client, p) = setup().await;
    let lease = client.grant_lease(60).await.unwrap();
    let ttl = client.lease_ttl(lease).await.unwrap().unwrap();
    assert!((55..=60).contains(&ttl), "ttl {ttl}");
    let key = format!("{p}host");
    client.put(&key, b"alive", Some(lease)).await.unwrap();
    assert_eq!(client.get(&key).await.unwrap().unwrap().lease, lease);
    assert!(client
        .create(&format!("{p}other"), b"x", Some(lease))
        .await
        .unwrap());

    client.revoke_lease(lease).await.unwrap();
    assert!(client.get(&key).await.unwrap().is_none());
    assert!(client.get(&format!("{p}other")).await.unwrap().is_none());
    assert_eq!(client.lease_ttl(lease).await.unwrap(), None);
    // Revoking again is harmless.
    client.revoke_lease(lease).await.unwrap();
    // A key cannot be attached to a lease that is gone; the error names the key.
    match client.put(&key, b"late", Some(lease)).await {
        Err(Error::Status(status)) => {
            assert!(status.message().contains(&key), "{status:?}");
        }
        other => panic!("put with a revoked lease: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expires_without_keepalive_and_lives_with_it() {
    let (_peer, client, p) = setup().await;
    let idle = client.grant_lease(2).await.unwrap();
    let kept = client.grant_lease(2).await.unwrap();
    client
        .put(&format!("{p}idle"), b"x", Some(idle))
        .await
        .unwrap();
    client
        .put(&format!("{p}kept"), b"x", Some(kept))
        .await
        .unwrap();
    let mut guard = client.keep_alive(kept, 2);
    assert_eq!(guard.id(), kept);
    let start = Instant::now();

    let gone = eventually(Duration::from_secs(5), || async {
        client.get(&format!("{p}idle")).await.unwrap().is_none()
    })
    .await;
    assert!(gone, "a 2 s lease without keepalive outlived 5 s");
    assert_eq!(client.lease_ttl(idle).await.unwrap(), None);

    // Hold the kept key for 6 s in all.
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(start.elapsed())).await;
    assert!(
        client.get(&format!("{p}kept")).await.unwrap().is_some(),
        "the kept-alive key vanished"
    );
    assert!(client.lease_ttl(kept).await.unwrap().is_some());

    // `lost` resolves once etcd says the lease is gone.
    client.revoke_lease(kept).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("keep_alive did not notice the revoked lease");
    // And stays resolved.
    tokio::time::timeout(Duration::from_secs(1), guard.lost())
        .await
        .unwrap();

    // Dropping the guard stops the keepalives: the lease then expires.
    let dropped = client.grant_lease(2).await.unwrap();
    drop(client.keep_alive(dropped, 2));
    let expired = eventually(Duration::from_secs(5), || async {
        client.lease_ttl(dropped).await.unwrap().is_none()
    })
    .await;
    assert!(expired, "a dropped keep_alive still kept the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_changes_in_order_and_replays_history() {
    let (_peer, client, p) = setup().await;
    let (_, start) = client.get_prefix(&p).await.unwrap();
    let mut watch = client.watch_prefix(&p, 0).await.unwrap();

    let r1 = client.put(&format!("{p}a"), b"1", None).await.unwrap();
    client
        .put(&format!("{}zz", p.trim_end_matches('/')), b"outside", None)
        .await
        .unwrap();
    let r2 = client.put(&format!("{p}b"), b"2", None).await.unwrap();
    client.delete(&format!("{p}a")).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let (revision, events) = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("watch event")
            .expect("stream open")
            .expect("no error");
        assert!(revision >= r1);
        seen.extend(events);
    }
    let expected_a = |value: &[u8], revision: i64| {
        Event::Put(berth_etcd::KeyValue {
            key: format!("{p}a"),
            value: value.to_vec(),
            create_revision: revision,
            mod_revision: revision,
            lease: 0,
        })
    };
    assert_eq!(seen[0], expected_a(b"1", r1));
    match &seen[1] {
        Event::Put(kv) => assert_eq!((kv.key.as_str(), kv.mod_revision), (&*format!("{p}b"), r2)),
        other => panic!("{other:?}"),
    }
    let delete_revision = match &seen[2] {
        Event::Delete { key, mod_revision } => {
            assert_eq!(key, &format!("{p}a"));
            assert!(*mod_revision > r2);
            *mod_revision
        }
        other => panic!("{other:?}"),
    };

    // A watch from the listing's revision + 1 replays the same history.
    let mut replay = client.watch_prefix(&p, start + 1).await.unwrap();
    let mut again = Vec::new();
    while again.len() < 3 {
        let (_, events) = tokio::time::timeout(Duration::from_secs(5), replay.next())
            .await
            .expect("replayed events")
            .unwrap()
            .unwrap();
        again.extend(events);
    }
    assert_eq!(again, seen);
    assert_eq!(
        again.last(),
        Some(&Event::Delete {
            key: format!("{p}a"),
            mod_revision: delete_revision
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_survives_an_etcd_restart() {
    let (mut peer, client, p) = setup().await;
    let key = format!("{p}persisted");
    client.put(&key, b"kept", None).await.unwrap();
    let mut watch = client.watch_prefix(&p, 0).await.unwrap();

    let mut peer = tokio::task::spawn_blocking(move || {
        peer.stop();
        peer
    })
    .await
    .unwrap();
    // The watch ends with an error when etcd goes away.
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Err(Error::Unavailable(_) | Error::WatchClosed | Error::Status(_)))) => {}
        other => panic!("watch after etcd stopped: {other:?}"),
    }
    assert!(watch.next().await.is_none());
    // While etcd is down, calls fail as unavailable, naming the endpoint.
    match client.get(&key).await {
        Err(Error::Unavailable(message)) => {
            assert!(message.contains(&peer.endpoint()), "{message}");
        }
        other => panic!("get while etcd is down: {other:?}"),
    }

    let peer = tokio::task::spawn_blocking(move || {
        peer.start_again();
        peer
    })
    .await
    .unwrap();
    let mut value = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match client.get(&key).await {
            Ok(kv) => {
                value = Some(kv);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let kv =
        value.unwrap_or_else(|| panic!("client did not recover after the restart\n{}", peer.log()));
    assert_eq!(
        kv.unwrap().value,
        b"kept",
        "data persisted over the restart"
    );
    client.put(&format!("{p}after"), b"x", None).await.unwrap();
    let mut watch = client.watch_prefix(&p, 0).await.unwrap();
    client.put(&format!("{p}later"), b"y", None).await.unwrap();
    let (_, events) = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(&events[0], Event::Put(kv) if kv.key == format!("{p}later")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_have_one_winner() {
    let (_peer, client, p) = setup().await;
    let key = format!("{p}contended");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            let key = key.clone();
            tokio::spawn(async move {
                client
                    .create(&key, format!("task-{i}").as_bytes(), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    let value = client.get(&key).await.unwrap().unwrap().value;
    assert!(String::from_utf8(value).unwrap().starts_with("task-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_endpoints_are_errors() {
    assert!(matches!(
        Client::connect(&[]).await,
        Err(Error::InvalidEndpoint(_))
    ));
    assert!(matches!(
        Client::connect(&["not a url".to_string()]).await,
        Err(Error::InvalidEndpoint(_))
    ));
    // Nothing listens on port 9 (discard) here.
    let dead = "http://127.0.0.1:9".to_string();
    match Client::connect(std::slice::from_ref(&dead)).await {
        Err(Error::Unavailable(message)) => assert!(message.contains(&dead), "{message}"),
        other => panic!("{other:?}"),
    }
    // With a dead endpoint first, the next one serves.
    let (peer, _, p) = setup().await;
    let client = Client::connect(&[dead, peer.endpoint()]).await.unwrap();
    client.put(&format!("{p}k"), b"v", None).await.unwrap();
    assert_eq!(
        client.get(&format!("{p}k")).await.unwrap().unwrap().value,
        b"v"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_next_endpoint() {
    // Two separate single-member etcds stand in for two members of one cluster.
    let (first, _, p) = setup().await;
    let (second, _, _) = setup().await;
    let client = Client::connect(&[first.endpoint(), second.endpoint()])
        .await
        .unwrap();
    client.put(&format!("{p}k"), b"first", None).await.unwrap();
    let _first = tokio::task::spawn_blocking(move || {
        let mut first = first;
        first.stop();
        first
    })
    .await
    .unwrap();
    // The call that meets the stopped endpoint fails; the next ones use the other one.
    let mut served = false;
    for _ in 0..3 {
        if client.put(&format!("{p}k"), b"second", None).await.is_ok() {
            served = true;
            break;
        }
    }
    assert!(served, "the client did not move to the second endpoint");
    let direct = Client::connect(&[second.endpoint()]).await.unwrap();
    assert_eq!(
        direct.get(&format!("{p}k")).await.unwrap().unwrap().value,
        b"second"
    );
}

/// `deploy/certs.sh DIR`: a CA, server certificates naming 127.0.0.1, a client identity.
fn certs(dir: &std::path::Path) {
    let out = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/certs.sh"),
    )
    .arg(dir)
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls(dir: &std::path::Path, with_identity: bool) -> tonic::transport::ClientTlsConfig {
    let identity = (dir.join("client.pem"), dir.join("client-key.pem"));
    berth_common::tls::client_config(
        &dir.join("ca.pem"),
        with_identity.then_some((identity.0.as_path(), identity.1.as_path())),
    )
    .unwrap()
}

/// A put through a client of `endpoint` with `tls`: Ok, or the error (at connect or put).
async fn try_put(
    endpoint: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<(), Error> {
    let client = Client::connect_tls(&[endpoint.to_string()], tls).await?;
    client
        .put(&format!("/{}", unique("tls-put")), b"v", None)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_needs_the_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (good, rogue) = (dir.path().join("good"), dir.path().join("rogue"));
    certs(&good);
    certs(&rogue);
    let peer = {
        let good = good.clone();
        tokio::task::spawn_blocking(move || EtcdPeer::start_tls(&good))
            .await
            .unwrap()
    };
    let endpoint = peer.endpoint();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");

    // The right CA and a client certificate it signed: keys go in and come out.
    let client = Client::connect_tls(std::slice::from_ref(&endpoint), Some(tls(&good, true)))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", peer.log()));
    let key = format!("/{}", unique("tls"));
    client.put(&key, b"secret", None).await.unwrap();
    assert_eq!(client.get(&key).await.unwrap().unwrap().value, b"secret");

    // No client certificate, another CA's server check, another CA's client: refused.
    assert!(try_put(&endpoint, Some(tls(&good, false))).await.is_err());
    assert!(try_put(&endpoint, Some(tls(&rogue, true))).await.is_err());
    // https without TLS settings, and a scheme it does not speak: named at once.
    let e = try_put(&endpoint, None).await.unwrap_err();
    assert!(e.to_string().contains(&endpoint), "{e}");
    let e = Client::connect(&["ftp://127.0.0.1:1".to_string()])
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("ftp://127.0.0.1:1"), "{e}");
}
