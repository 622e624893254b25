//! json-file and local drivers end to end: rotation with compression read back by `logs`,
//! Docker's `attrs` from labels and env, and the configuration file's default driver.
use std::{fs, path::Path};

use berth_integration_tests::{busybox_image, stderr, stdout, unique, Engine};

fn files_of(log_path: &str) -> Vec<String> {
    let path = Path::new(log_path);
    let base = path.file_name().unwrap().to_str().unwrap().to_string();
    let mut names: Vec<String> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&base) && !n.ends_with(".tmp"))
        .collect();
    names.sort();
    names
}

#[test]
fn compressed_rotation_keeps_max_file_and_logs_reads_across_files() {
    let engine = Engine::with_busybox();
    let name = unique("rot");
    let out = engine.berth(&[
        "run",
        "--name",
        &name,
        "--log-opt",
        "max-size=4k",
        "--log-opt",
        "max-file=3",
        "--log-opt",
        "compress=true",
        "busybox",
        "seq",
        "1",
        "3000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log_path = engine.inspect(&name, "{{.LogPath}}");
    assert!(log_path.ends_with("-json.log"), "{log_path}");
    // Compression runs in the background: wait until the rotated files are all .gz.
    let settled = berth_integration_tests::eventually(std::time::Duration::from_secs(10), || {
        files_of(&log_path)
            .iter()
            .skip(1)
            .all(|n| n.ends_with(".gz"))
    });
    let files = files_of(&log_path);
    assert!(settled, "{files:?}");
    assert!(files.len() <= 3 && files.len() >= 2, "{files:?}");

    let logs = stdout(&engine.berth(&["logs", &name]));
    let numbers: Vec<u32> = logs.lines().map(|l| l.parse().unwrap()).collect();
    // The oldest lines rotated away; what is left is contiguous up to the last one.
    assert_eq!(numbers.last(), Some(&3000));
    // About 55 lines fit in 4 KiB: two full files at least, never all 3,000 lines.
    assert!(
        numbers.len() > 100 && numbers.len() < 3000,
        "{}",
        numbers.len()
    );
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
    let tail = stdout(&engine.berth(&["logs", "--tail", "2", &name]));
    assert_eq!(tail, "2999\n3000\n");

    // Docker's rule: compression needs at least two files.
    let out = engine.berth(&[
        "run",
        "--log-opt",
        "compress=true",
        "--log-opt",
        "max-file=1",
        "--log-opt",
        "max-size=1m",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("compress"), "{}", stderr(&out));
}

#[test]
fn labels_and_env_options_write_attrs() {
    let engine = Engine::with_busybox();
    let name = unique("attrs");
    engine.ok(&[
        "run",
        "--name",
        &name,
        "--label",
        "team=blue",
        "--label",
        "other=x",
        "-e",
        "STAGE=test",
        "--log-opt",
        "labels=team",
        "--log-opt",
        "env=STAGE",
        "busybox",
        "echo",
        "hi",
    ]);
    let log_path = engine.inspect(&name, "{{.LogPath}}");
    let text = fs::read_to_string(&log_path).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["log"], "hi\n");
    assert_eq!(
        line["attrs"],
        serde_json::json!({"STAGE": "test", "team": "blue"})
    );
    // Docker's field order: log, stream, attrs, time.
    let first = text.lines().next().unwrap();
    let (log, stream, attrs, time) = (
        first.find("\"log\"").unwrap(),
        first.find("\"stream\"").unwrap(),
        first.find("\"attrs\"").unwrap(),
        first.find("\"time\"").unwrap(),
    );
    assert!(log < stream && stream < attrs && attrs < time, "{first}");
    assert_eq!(stdout(&engine.berth(&["logs", &name])), "hi\n");

    let out = engine.berth(&["run", "--log-opt", "env-regex=(", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("env-regex"), "{}", stderr(&out));
}

#[test]
fn config_file_sets_the_default_driver_and_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    fs::write(
        &file,
        "[logs]\ndriver = \"local\"\noptions = { max-size = \"2m\", max-file = \"2\" }\n",
    )
    .unwrap();
    let engine = Engine::start_with_env(&[("BERTH_CONFIG_FILE", file.to_str().unwrap())]);
    engine.ok(&["load", "-i", busybox_image().to_str().unwrap()]);

    let plain = unique("dflt");
    engine.ok(&["run", "--name", &plain, "busybox", "echo", "one"]);
    assert_eq!(
        engine.inspect(&plain, "{{.HostConfig.LogConfig.Type}}"),
        "local"
    );
    let config = engine.inspect(&plain, "{{json .HostConfig.LogConfig.Config}}");
    assert!(config.contains("\"max-size\":\"2m\""), "{config}");
    assert!(engine
        .inspect(&plain, "{{.LogPath}}")
        .ends_with("-local.log"));
    assert_eq!(stdout(&engine.berth(&["logs", &plain])), "one\n");

    // Own options over the defaults for the same driver, per key.
    let own = unique("own");
    engine.ok(&[
        "run",
        "--name",
        &own,
        "--log-opt",
        "max-size=5m",
        "busybox",
        "true",
    ]);
    let config = engine.inspect(&own, "{{json .HostConfig.LogConfig.Config}}");
    assert!(config.contains("\"max-size\":\"5m\""), "{config}");
    assert!(config.contains("\"max-file\":\"2\""), "{config}");

    // Another driver named: none of the default driver's options.
    let other = unique("json");
    engine.ok(&[
        "run",
        "--name",
        &other,
        "--log-driver",
        "json-file",
        "busybox",
        "true",
    ]);
    assert_eq!(
        engine.inspect(&other, "{{json .HostConfig.LogConfig.Config}}"),
        "{}"
    );
}

#[test]
fn malformed_logs_section_stops_the_engine_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    fs::write(&file, "[logs]\ndrvier = \"local\"\n").unwrap();
    let out = std::process::Command::new(berth_integration_tests::bin_dir().join("berth-engine"))
        .env("BERTH_CONFIG_FILE", &file)
        .env("BERTH_ROOT", dir.path().join("root"))
        .env("BERTH_RUN", dir.path().join("run"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("drvier"), "{}", stderr(&out));
}
