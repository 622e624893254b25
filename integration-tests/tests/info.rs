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
