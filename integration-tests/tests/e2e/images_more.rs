//! save, history, image prune and commit, end to end.
use std::io::Read;

use berth_integration_tests::{stderr, stdout, Engine};

/// The archive's entries: name and content.
fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn json_of(entries: &[(String, Vec<u8>)], name: &str) -> serde_json::Value {
    let (_, data) = entries
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing"));
    serde_json::from_slice(data).unwrap()
}

#[test]
fn save_rmi_load_and_run() {
    let engine = Engine::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("busybox.tar");
    engine.ok(&["save", "-o", file.to_str().unwrap(), "busybox"]);
    let bytes = std::fs::read(&file).unwrap();
    let e = entries(&bytes);
    let manifest = json_of(&e, "manifest.json");
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["busybox:latest"])
    );
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for l in layers {
        assert!(e.iter().any(|(n, _)| n == l.as_str().unwrap()), "{l}");
    }
    let config = manifest[0]["Config"].as_str().unwrap();
    assert!(e.iter().any(|(n, _)| n == config));
    let index = json_of(&e, "index.json");
    let m = &index["manifests"][0];
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert_eq!(
        m["annotations"]["io.containerd.image.name"],
        "docker.io/library/busybox:latest"
    );
    let digest = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
    let oci = json_of(&e, &format!("blobs/sha256/{digest}"));
    assert_eq!(oci["layers"].as_array().unwrap().len(), 2);
    assert!(e.iter().any(|(n, _)| n == "oci-layout"));

    // To stdout when it is not a terminal: the same archive.
    let piped = engine.berth(&["image", "save", "busybox"]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(
        entries(&piped.stdout)
            .into_iter()
            .map(|x| x.0)
            .collect::<Vec<_>>(),
        e.iter().map(|x| x.0.clone()).collect::<Vec<_>>()
    );

    let id = engine.inspect("busybox", "{{.Id}}");
    engine.ok(&["rmi", "busybox"]);
    assert!(!engine.ok(&["images"]).contains("busybox"));
    let loaded = engine.ok(&["load", "-i", file.to_str().unwrap()]);
    assert_eq!(loaded, "Loaded image: busybox:latest\n");
    assert_eq!(engine.inspect("busybox", "{{.Id}}"), id);
    assert_eq!(
        engine.ok(&["run", "--rm", "busybox", "cat", "/etc/berth-release"]),
        "berth test image\n"
    );

    let missing = engine.berth(&["save", "-o", file.to_str().unwrap(), "nope:1"]);
    assert!(!missing.status.success());
}

#[test]
fn history_lists_the_config_history_newest_first() {
    let engine = Engine::with_busybox();
    let out = engine.ok(&["history", "busybox"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("IMAGE")
            && lines[0].contains("CREATED BY")
            && lines[0].contains("COMMENT"),
        "{out}"
    );
    let id = engine.inspect("busybox", "{{.Id}}");
    let short = &id.trim_start_matches("sha256:")[..12];
    assert!(lines[1].starts_with(short), "{out}");
    assert!(
        lines[1].contains("berth build-busybox-image.sh: berth-release"),
        "{out}"
    );
    assert!(lines[2].starts_with("<missing>"), "{out}");
    assert!(
        lines[2].contains("berth build-busybox-image.sh: busybox base"),
        "{out}"
    );

    let full = engine.ok(&["image", "history", "--no-trunc", "busybox"]);
    assert!(full.contains(&id), "{full}");
    assert!(full.contains("berth build-busybox-image.sh: berth-release"));
    assert!(full.contains("berth build-busybox-image.sh: busybox base"));
    assert_eq!(
        engine.ok(&["history", "-q", "busybox"]),
        format!("{short}\n<missing>\n")
    );
    assert!(!engine.berth(&["history", "nope:1"]).status.success());
}

#[test]
fn image_prune_removes_dangling_images_only() {
    let engine = Engine::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rootfs.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "hello", &b"hello\n"[..]).unwrap();
    std::fs::write(&file, b.into_inner().unwrap()).unwrap();
    let id = engine
        .ok(&["import", file.to_str().unwrap()])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    engine.ok(&["create", "--name", "user", "busybox", "true"]);

    let out = engine.ok(&["image", "prune", "-f"]);
    assert!(out.starts_with("Deleted Images:\n"), "{out}");
    assert!(out.contains(&format!("deleted: {id}\n")), "{out}");
    assert!(out.contains("\nTotal reclaimed space: "), "{out}");
    assert!(!engine.ok(&["images", "-a", "--no-trunc"]).contains(&id));
    assert!(engine.ok(&["images"]).contains("busybox"));

    // Nothing left to prune.
    assert_eq!(
        engine.ok(&["image", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    // Declining the prompt prunes nothing.
    let out = engine.berth_stdin(&["image", "prune", "-a"], b"n\n");
    assert!(stdout(&out).starts_with(
        "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue? [y/N] "
    ));
    // -a keeps busybox: a container uses it.
    engine.ok(&["image", "prune", "-a", "-f"]);
    assert!(engine.ok(&["images"]).contains("busybox"));
    engine.ok(&["rm", "user"]);
    let out = engine.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: busybox:latest\n"), "{out}");
    assert!(!engine.ok(&["images"]).contains("busybox"));
}

#[test]
fn commit_records_changes_whiteouts_and_config() {
    let engine = Engine::with_busybox();
    engine.ok(&[
        "run",
        "--name",
        "c",
        "busybox",
        "sh",
        "-c",
        "echo new > /etc/new && rm /etc/passwd && mkdir /opq && echo a > /opq/a",
    ]);
    let id = engine.ok(&["commit", "-m", "my change", "-a", "me", "c", "snap:1"]);
    assert!(id.starts_with("sha256:") && id.trim().len() == 71, "{id}");
    assert_eq!(engine.inspect("snap:1", "{{.Id}}"), id.trim());
    assert_eq!(
        engine.ok(&["run", "--rm", "snap:1", "cat", "/etc/new"]),
        "new\n"
    );
    let out = engine.berth(&["run", "--rm", "snap:1", "cat", "/etc/passwd"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(
        engine.ok(&["run", "--rm", "snap:1", "cat", "/etc/berth-release"]),
        "berth test image\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&engine.ok(&["image", "inspect", "snap:1"])).unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 3);
    let history = engine.ok(&["history", "snap:1"]);
    assert_eq!(history.lines().count(), 4, "{history}");
    assert!(
        history.lines().nth(1).unwrap().contains("my change"),
        "{history}"
    );

    engine.ok(&[
        "container",
        "commit",
        "-c",
        r#"CMD ["echo","from-commit"]"#,
        "c",
        "snap:2",
    ]);
    assert_eq!(engine.ok(&["run", "--rm", "snap:2"]), "from-commit\n");

    // A running container is paused for the commit and keeps running.
    engine.ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "busybox",
        "sh",
        "-c",
        "echo x > /x; sleep 100",
    ]);
    let mut done = false;
    for _ in 0..50 {
        let out = engine.berth(&["exec", "r", "cat", "/x"]);
        if out.status.success() {
            done = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(done);
    let id = engine.ok(&["commit", "r"]);
    assert_eq!(engine.inspect("r", "{{.State.Status}}"), "running");
    assert_eq!(engine.ok(&["run", "--rm", id.trim(), "cat", "/x"]), "x\n");
    engine.ok(&["rm", "-f", "r"]);
    assert!(!engine.berth(&["commit", "nope"]).status.success());
}

#[test]
fn save_refuses_to_write_to_a_terminal() {
    let engine = Engine::with_busybox();
    let term = berth_integration_tests::Terminal::new(&engine);
    // Arithmetic in the echo: the typed line itself must not match what we wait for.
    term.line("berth save busybox; echo rc=$((1000+$?))");
    term.wait_for("rc=1");
    let screen = term.screen();
    assert!(
        screen.contains("cowardly refusing to save to a terminal"),
        "{screen}"
    );
    assert!(!screen.contains("rc=1000"), "{screen}");
}
