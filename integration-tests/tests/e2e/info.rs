//! `berth info` and `berth system df`, checked against what the test created.
use berth_integration_tests::{unique, Engine};
use serde_json::Value;

/// The `system df` row starting with `kind`, split into its cells.
fn df_row(out: &str, kind: &str) -> Vec<String> {
    let line = out
        .lines()
        .find(|l| l.starts_with(kind))
        .unwrap_or_else(|| panic!("no {kind} row in\n{out}"));
    line[kind.len()..]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// "102.4kB" → bytes (decimal units, as Docker prints them).
fn parse_size(s: &str) -> f64 {
    let s = s.split(' ').next().unwrap();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let (n, unit) = s.split_at(split);
    let mult = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other}"),
    };
    n.parse::<f64>().unwrap() * mult
}

fn df_json(engine: &Engine) -> Vec<Value> {
    engine
        .ok(&["system", "df", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn info_and_df_count_what_was_created() {
    let engine = Engine::with_busybox();

    let info = engine.ok(&["info"]);
    assert!(info.contains(" Containers: 0\n"), "{info}");
    assert!(info.contains(" Images: 1\n"), "{info}");
    assert!(info.contains(" Logging Driver: json-file\n"), "{info}");
    assert!(info.contains(" Cgroup Driver: cgroupfs\n"), "{info}");
    assert!(info.contains(" Storage Driver: overlay2\n"), "{info}");
    assert!(info.contains(" Default Runtime: berth\n"), "{info}");
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    assert!(
        info.contains(&format!(" Cgroup Version: {cgroup}\n")),
        "{info}"
    );
    assert!(
        info.contains(&format!(" Berth Root Dir: {}\n", engine.root.display())),
        "{info}"
    );

    // One exited container that wrote 200 KB to its rootfs, one running.
    let exited = unique("wrote");
    engine.ok(&[
        "run",
        "--name",
        &exited,
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/big",
        "bs=1k",
        "count=200",
    ]);
    let running = unique("sleeper");
    engine.ok(&["run", "-d", "--name", &running, "busybox", "sleep", "1000"]);
    engine.wait_status(&running, "running");

    let info = engine.ok(&["system", "info"]);
    for line in [
        " Containers: 2\n",
        "  Running: 1\n",
        "  Paused: 0\n",
        "  Stopped: 1\n",
        " Images: 1\n",
    ] {
        assert!(info.contains(line), "{line:?} not in\n{info}");
    }
    let json: Value = serde_json::from_str(engine.ok(&["info", "--format", "{{json .}}"]).trim())
        .expect("info json");
    assert_eq!(json["Containers"], 2);
    assert_eq!(json["ContainersRunning"], 1);
    assert_eq!(json["ContainersStopped"], 1);
    assert_eq!(json["Images"], 1);
    assert_eq!(json["LoggingDriver"], "json-file");
    assert_eq!(json["CgroupVersion"], cgroup);
    assert!(json["NCPU"].as_i64().unwrap() >= 1);
    assert!(json["MemTotal"].as_i64().unwrap() > 0);
    assert_eq!(
        engine.ok(&["info", "--format", "json"]).trim(),
        serde_json::to_string(&json).unwrap()
    );

    // A volume with 100 KB written into it by a --rm container (so it is unused now).
    let vol = unique("v");
    engine.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/d"),
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/d/f",
        "bs=1k",
        "count=100",
    ]);

    let df = engine.ok(&["system", "df"]);
    assert!(
        df.starts_with("TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"),
        "{df}"
    );
    let images = df_row(&df, "Images");
    assert_eq!(&images[..2], ["1", "1"], "{df}");
    assert!(parse_size(&images[2]) > 0.0, "{df}");
    let containers = df_row(&df, "Containers");
    assert_eq!(&containers[..2], ["2", "1"], "{df}");
    // The exited container's 200 KB file is in its writable layer, and reclaimable.
    assert!(parse_size(&containers[2]) >= 204_800.0, "{df}");
    assert!(parse_size(&containers[3]) >= 204_800.0, "{df}");
    let volumes = df_row(&df, "Local Volumes");
    assert_eq!(&volumes[..2], ["1", "0"], "{df}");
    assert!(parse_size(&volumes[2]) >= 102_400.0, "{df}");
    assert!(volumes[3].ends_with("(100%)"), "{df}");
    assert_eq!(df_row(&df, "Build Cache"), ["0", "0", "0B", "0B"], "{df}");

    let rows = df_json(&engine);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1]["Type"], "Containers");
    assert_eq!(rows[1]["TotalCount"], "2");
    assert_eq!(rows[1]["Active"], "1");

    // Removing the exited container takes its layer out of the count.
    engine.ok(&["rm", &exited]);
    let df = engine.ok(&["system", "df"]);
    let containers = df_row(&df, "Containers");
    assert_eq!(&containers[..2], ["1", "1"], "{df}");
    assert!(parse_size(&containers[2]) < 204_800.0, "{df}");
    engine.ok(&["rm", "-f", &running]);
}

#[test]
fn system_prune_removes_what_nothing_uses_in_dockers_order() {
    let engine = Engine::with_busybox();
    let (stopped, running, net, used_net) = (
        unique("stopped"),
        unique("running"),
        unique("pnet"),
        unique("usednet"),
    );
    engine.ok(&["network", "create", &net]);
    engine.ok(&["network", "create", &used_net]);
    // A stopped container with an anonymous volume, and a running one that keeps its
    // network and its image.
    engine.ok(&["run", "--name", &stopped, "-v", "/data", "busybox", "true"]);
    engine.ok(&[
        "run", "-d", "--name", &running, "--net", &used_net, "busybox", "sleep", "300",
    ]);
    engine.ok(&["tag", "busybox", "spare:1"]);
    let mounts: Value =
        serde_json::from_str(&engine.inspect(&stopped, "{{json .Mounts}}")).unwrap();
    let volume = mounts[0]["Name"].as_str().unwrap_or_default().to_string();
    assert!(!volume.is_empty(), "{mounts}");

    // Without -f it asks; "n" keeps everything.
    let out = engine.berth_stdin(&["system", "prune"], b"n\n");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("WARNING! This will remove:"), "{text}");
    assert!(text.contains("all dangling images"), "{text}");
    assert!(engine.ok(&["ps", "-aq"]).lines().count() == 2);

    let out = engine.ok(&["system", "prune", "-f", "--volumes"]);
    let stopped_id = out
        .split("Deleted Containers:\n")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap_or_default()
        .to_string();
    assert_eq!(stopped_id.len(), 64, "{out}");
    assert!(
        out.contains(&format!("Deleted Networks:\n{net}\n")),
        "{out}"
    );
    assert!(!out.contains(&used_net), "{out}");
    assert!(
        out.contains(&format!("Deleted Volumes:\n{volume}\n")),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space:"), "{out}");
    // Sections come in Docker's order.
    let order: Vec<usize> = ["Deleted Containers", "Deleted Networks", "Deleted Volumes"]
        .iter()
        .map(|t| out.find(t).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    // Nothing running or in use was touched; the images stay without -a.
    assert_eq!(engine.ok(&["ps", "-aq"]).trim().len(), 12);
    assert!(engine.ok(&["images"]).contains("spare"));

    // -a: every image no container uses; spare:1 names the image `running` uses, so
    // both names stay (as with Docker) until that container is gone.
    engine.ok(&["system", "prune", "-a", "-f"]);
    let images = engine.ok(&["images"]);
    assert!(
        images.contains("busybox") && images.contains("spare"),
        "{images}"
    );
    engine.ok(&["rm", "-f", &running]);
    let out = engine.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted Images:"), "{out}");
    assert!(
        out.contains(&format!("Deleted Networks:\n{used_net}\n")),
        "{out}"
    );
    assert_eq!(engine.ok(&["images", "-q"]).trim(), "");
}
