//! `berth events`: every service's events, in order, with Docker's names and filters,
//! from history (`--since`/`--until`) and live, across restarts of the engine and of a
//! publishing service.
use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use berth_integration_tests::{now_arg, stderr, unique, Engine, Registry};
use serde_json::Value;

const JSON: &str = "{{json .}}";

/// The events between `since` and now, as JSON, with `filters`.
fn history(engine: &Engine, since: &str, filters: &[&str]) -> Vec<Value> {
    let until = now_arg();
    let mut args = vec![
        "events", "--since", since, "--until", &until, "--format", JSON,
    ];
    for f in filters {
        args.extend(["--filter", f]);
    }
    engine
        .ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// "type action" of each event.
fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["Type"].as_str().unwrap(),
                e["Action"].as_str().unwrap()
            )
        })
        .collect()
}

/// A `berth events` follower, its lines arriving on a channel; killed on drop.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(engine: &Engine, args: &[&str]) -> Follower {
        let mut all = vec!["events", "--format", JSON];
        all.extend_from_slice(args);
        let mut child = engine
            .berth_cmd(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start berth events");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        // The stream is set up once the engine has read the history; a marker event
        // would be filtered out, so give it a moment.
        std::thread::sleep(Duration::from_millis(500));
        Follower { child, lines }
    }

    /// The next `n` events, failing after 20 s.
    fn take(&self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| {
                let line = self
                    .lines
                    .recv_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|_| panic!("event {} of {n} did not arrive", i + 1));
                serde_json::from_str(&line).unwrap()
            })
            .collect()
    }

    /// Nothing more arrives within `wait`.
    fn assert_quiet(&self, wait: Duration) {
        if let Ok(line) = self.lines.recv_timeout(wait) {
            panic!("unexpected event {line}");
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_containers_life_comes_in_order_from_every_service() {
    let engine = Engine::with_busybox();
    let name = unique("life");
    let volume = unique("data");
    let since = now_arg();
    let follower = Follower::start(&engine, &["--filter", &format!("container={name}")]);

    let out = engine.berth(&[
        "run",
        "--name",
        &name,
        "--label",
        "app=shop",
        "-v",
        &format!("{volume}:/data"),
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let id = engine.inspect(&name, "{{.Id}}");
    engine.ok(&["rm", &name]);

    // Live: the container filter keeps this container's own events.
    let live = follower.take(5);
    assert_eq!(
        actions(&live),
        [
            "container create",
            // The attached `run` attaches, then starts, as in Docker.
            "container attach",
            "container start",
            "container die",
            "container destroy"
        ]
    );
    for e in &live {
        assert_eq!(e["Actor"]["ID"], id.as_str());
        assert_eq!(e["id"], id.as_str());
        assert_eq!(e["Actor"]["Attributes"]["name"], name.as_str());
        assert_eq!(e["Actor"]["Attributes"]["image"], "busybox");
        assert_eq!(e["Actor"]["Attributes"]["app"], "shop");
        assert_eq!(e["scope"], "local");
    }
    assert_eq!(live[3]["Actor"]["Attributes"]["exitCode"], "3");
    let times: Vec<i64> = live
        .iter()
        .map(|e| e["timeNano"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    follower.assert_quiet(Duration::from_millis(300));

    // History: the same life, with the volume and network events around it, merged by
    // time.
    let all = history(&engine, &since, &[]);
    let seen = actions(&all);
    let position = |what: &str| {
        seen.iter()
            .position(|a| a == what)
            .unwrap_or_else(|| panic!("no {what} in {seen:?}"))
    };
    let order = [
        "volume create",
        "container create",
        // Docker's order for an attached run.
        "container attach",
        "network connect",
        "container start",
        // The network is gone before the exit is recorded (ADR 16).
        "network disconnect",
        "container die",
        "container destroy",
        "volume unmount",
    ];
    let at: Vec<usize> = order.iter().map(|a| position(a)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let mount = &all[position("volume mount")];
    assert_eq!(mount["Actor"]["ID"], volume.as_str());
    assert_eq!(mount["Actor"]["Attributes"]["container"], id.as_str());
    assert_eq!(mount["Actor"]["Attributes"]["destination"], "/data");
    let connect = &all[position("network connect")];
    assert_eq!(connect["Actor"]["Attributes"]["name"], "bridge");
    assert_eq!(connect["Actor"]["Attributes"]["container"], id.as_str());
    let times: Vec<i64> = all
        .iter()
        .map(|e| e["timeNano"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");

    // Filters: one key ORed, keys ANDed.
    let some = history(
        &engine,
        &since,
        &[
            "type=container",
            "event=start",
            "event=die",
            &format!("container={name}"),
        ],
    );
    assert_eq!(actions(&some), ["container start", "container die"]);
    let labelled = history(&engine, &since, &["label=app=shop", "event=destroy"]);
    assert_eq!(actions(&labelled), ["container destroy"]);
    let volumes = history(&engine, &since, &[&format!("volume={volume}")]);
    assert_eq!(
        actions(&volumes),
        ["volume create", "volume mount", "volume unmount"]
    );
    assert!(history(&engine, &since, &["container=nothing-like-this"]).is_empty());
}

#[test]
fn image_network_and_volume_changes_are_events() {
    let engine = Engine::with_busybox();
    let since = now_arg();
    let tag = format!("{}:v1", unique("copy"));
    let network = unique("net");
    let volume = unique("vol");
    engine.ok(&["tag", "busybox", &tag]);
    engine.ok(&["rmi", &tag]);
    engine.ok(&["network", "create", &network]);
    engine.ok(&["network", "rm", &network]);
    engine.ok(&["volume", "create", &volume]);
    engine.ok(&["volume", "rm", &volume]);
    let all = history(&engine, &since, &[]);
    assert_eq!(
        actions(&all),
        [
            "image tag",
            "image untag",
            "network create",
            "network destroy",
            "volume create",
            "volume destroy"
        ]
    );
    let busybox_id = engine.ok(&["image", "inspect", "--format", "{{.Id}}", "busybox"]);
    assert_eq!(all[0]["Actor"]["ID"], busybox_id.trim());
    assert_eq!(all[0]["Actor"]["Attributes"]["name"], tag.as_str());
    assert_eq!(all[2]["Actor"]["Attributes"]["name"], network.as_str());
    assert_eq!(all[2]["Actor"]["Attributes"]["type"], "bridge");
    assert_eq!(all[4]["Actor"]["ID"], volume.as_str());
    assert_eq!(all[4]["Actor"]["Attributes"]["driver"], "local");

    // The image filter takes the name with or without its tag; the load at start-up is
    // in the whole history.
    let repo = tag.split(':').next().unwrap();
    assert_eq!(
        actions(&history(&engine, &since, &[&format!("image={repo}")])),
        ["image tag", "image untag"]
    );
    assert_eq!(
        actions(&history(&engine, "0", &["type=image", "event=load"])),
        ["image load"]
    );
    // The default line: time, type, action, actor, attributes sorted.
    let until = now_arg();
    let text = engine.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=network",
    ]);
    let first = text.lines().next().unwrap();
    assert!(
        first.contains(" network create ")
            && first.ends_with(&format!("(name={network}, type=bridge)")),
        "{text}"
    );
}

#[test]
fn push_and_pull_are_image_events() {
    let registry = Registry::start();
    let engine = Engine::with_busybox();
    let image = format!("{}/ev/bb:1", registry.addr);
    let since = now_arg();
    engine.ok(&["tag", "busybox", &image]);
    engine.ok(&["push", &image]);
    engine.ok(&["rmi", &image]);
    engine.ok(&["pull", &image]);
    let all = history(&engine, &since, &["type=image"]);
    assert_eq!(
        actions(&all),
        ["image tag", "image push", "image untag", "image pull"]
    );
    // Docker's actor for push and pull is the reference; `name` is its repository.
    assert_eq!(all[1]["Actor"]["ID"], image.as_str());
    assert_eq!(all[3]["Actor"]["ID"], image.as_str());
    let repo = image.rsplit_once(':').unwrap().0;
    assert_eq!(all[3]["Actor"]["Attributes"]["name"], repo);
    let pulls = history(&engine, &since, &["event=pull", &format!("image={repo}")]);
    assert_eq!(actions(&pulls), ["image pull"]);
}

#[test]
fn bad_requests_name_the_bad_value() {
    let engine = Engine::start();
    let out = engine.berth(&["events", "--filter", "colour=red", "--until", "1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("colour"), "{}", stderr(&out));
    let out = engine.berth(&["events", "--since", "yesterday-ish"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("yesterday-ish"), "{}", stderr(&out));
    let out = engine.berth(&["events", "--since", "200", "--until", "100"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("since"), "{}", stderr(&out));
}

#[test]
fn prunes_are_events_with_the_space_reclaimed() {
    let engine = Engine::with_busybox();
    let volume = unique("pvol");
    let network = unique("pnet");
    engine.ok(&["volume", "create", &volume]);
    engine.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/d"),
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/d/f",
        "bs=1024",
        "count=64",
    ]);
    engine.ok(&["network", "create", &network]);
    let since = now_arg();
    engine.ok(&["volume", "prune", "-a", "-f"]);
    engine.ok(&["network", "prune", "-f"]);
    engine.ok(&["image", "prune", "-a", "-f"]);
    let prunes = history(&engine, &since, &["event=prune"]);
    assert_eq!(
        actions(&prunes),
        ["volume prune", "network prune", "image prune"]
    );
    let reclaimed = |e: &Value| -> u64 {
        e["Actor"]["Attributes"]["reclaimed"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no reclaimed bytes: {e}"))
    };
    assert!(reclaimed(&prunes[0]) >= 64 * 1024, "{}", prunes[0]);
    assert!(reclaimed(&prunes[2]) > 0, "{}", prunes[2]);
    // What each prune removed is an event of its own, before the prune's.
    let all = actions(&history(&engine, &since, &[]));
    let at = |what: &str| all.iter().position(|a| a == what).unwrap();
    assert!(at("volume destroy") < at("volume prune"), "{all:?}");
    assert!(at("network destroy") < at("network prune"), "{all:?}");
    assert!(at("image delete") < at("image prune"), "{all:?}");
}

#[test]
fn events_outlive_restarts_of_the_engine_and_of_a_publisher() {
    let mut engine = Engine::with_busybox();
    let since = now_arg();
    let first = unique("before");
    engine.ok(&["create", "--name", &first, "busybox", "true"]);

    // A new subscriber after an engine crash still gets the history.
    engine.restart_service("engine", true);
    let after_engine = history(&engine, &since, &["type=container"]);
    assert_eq!(actions(&after_engine), ["container create"]);
    assert_eq!(
        after_engine[0]["Actor"]["Attributes"]["name"],
        first.as_str()
    );

    // A follower carries on across a kill -9 of the supervisor, with nothing twice.
    let follower = Follower::start(&engine, &["--filter", "type=container"]);
    engine.ok(&["start", &first]);
    let before = follower.take(2);
    assert_eq!(actions(&before), ["container start", "container die"]);
    engine.restart_service("supervisor", true);
    let second = unique("after");
    engine.ok(&["create", "--name", &second, "busybox", "true"]);
    engine.ok(&["rm", &first]);
    let after = follower.take(2);
    assert_eq!(actions(&after), ["container create", "container destroy"]);
    assert_eq!(after[0]["Actor"]["Attributes"]["name"], second.as_str());
    assert_eq!(after[1]["Actor"]["Attributes"]["name"], first.as_str());
    follower.assert_quiet(Duration::from_millis(1500));

    // The follower's engine crashes: the command waits for it and resumes, with nothing
    // lost or repeated.
    engine.restart_service("engine", true);
    engine.ok(&["rm", &second]);
    let resumed = follower.take(1);
    assert_eq!(actions(&resumed), ["container destroy"]);
    assert_eq!(resumed[0]["Actor"]["Attributes"]["name"], second.as_str());
    follower.assert_quiet(Duration::from_millis(1500));

    // And the whole history is there, once each, in order.
    let all = history(&engine, &since, &["type=container"]);
    assert_eq!(
        actions(&all),
        [
            "container create",
            "container start",
            "container die",
            "container create",
            "container destroy",
            "container destroy"
        ]
    );
}
