//! Pull, push, login and logout against a real registry (Debian's `docker-registry`) on a
//! private loopback port: `run` pulls what is missing, whiteouts survive the round trip,
//! digests are shown, and credentials live in a Docker-compatible config file.
use std::path::Path;
use std::process::Output;

use berth_integration_tests::{stderr, stdout, unique, Engine, Registry, Terminal};

/// Runs the CLI with `BERTH_CONFIG` set to `config`.
fn berth_in(engine: &Engine, config: &Path, args: &[&str]) -> Output {
    engine
        .berth_cmd(args)
        .env("BERTH_CONFIG", config)
        .output()
        .expect("run berth")
}

fn ok_in(engine: &Engine, config: &Path, args: &[&str]) -> String {
    let out = berth_in(engine, config, args);
    assert!(
        out.status.success(),
        "berth {args:?} failed with {:?}\nstdout: {}\nstderr: {}\n{}",
        out.status.code(),
        stdout(&out),
        stderr(&out),
        engine.service_logs()
    );
    stdout(&out)
}

/// The digest from push's last line, `<tag>: digest: sha256:… size: N`.
fn pushed_digest(out: &str, tag: &str) -> String {
    let last = out.lines().last().unwrap_or_default();
    let rest = last
        .strip_prefix(&format!("{tag}: digest: "))
        .unwrap_or_else(|| panic!("no digest line in push output:\n{out}"));
    let (digest, size) = rest.split_once(" size: ").expect("size");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{last}"
    );
    assert!(size.parse::<u64>().unwrap() > 0, "{last}");
    digest.to_string()
}

#[test]
fn push_then_run_pulls_the_missing_image() {
    let registry = Registry::start();
    let engine = Engine::with_busybox();
    let repo = format!("{}/bb", registry.addr);
    let image = format!("{repo}:1");
    engine.ok(&["tag", "busybox", &image]);
    let pushed = engine.ok(&["push", &image]);
    let digest = pushed_digest(&pushed, "1");
    // Not a terminal: plain lines, no cursor movement or byte counters.
    assert!(!pushed.contains('\x1b'), "{pushed:?}");
    assert!(!pushed.contains("MB/"), "{pushed}");
    // Remove every local name, so the image and its layers are gone.
    engine.ok(&["rmi", "busybox", &image]);
    assert!(!engine.ok(&["images"]).contains("bb"));

    let out = engine.berth(&["run", "--rm", &image, "cat", "/etc/berth-release"]);
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        stderr(&out),
        engine.service_logs(),
        registry.log()
    );
    assert_eq!(stdout(&out).trim(), "berth test image");
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("Unable to find image '{image}' locally\n")),
        "{err}"
    );
    assert!(err.contains(&format!("Digest: {digest}")), "{err}");
    // The second layer's whiteout still hides the base layer's file.
    let out = engine.berth(&["run", "--rm", &image, "cat", "/etc/berth-base-only"]);
    assert_eq!(out.status.code(), Some(1), "the whited-out file is visible");
    assert!(!stderr(&out).contains("Unable to find image"));

    // Pulling again changes nothing.
    let again = engine.ok(&["pull", &image]);
    assert!(
        again.contains(&format!("Status: Image is up to date for {image}")),
        "{again}"
    );
    assert_eq!(again.lines().last(), Some(image.as_str()), "{again}");
    assert_eq!(engine.ok(&["pull", "-q", &image]), format!("{image}\n"));

    // By digest.
    let by_digest = format!("{repo}@{digest}");
    let out = engine.ok(&["pull", &by_digest]);
    assert_eq!(out.lines().last(), Some(by_digest.as_str()), "{out}");

    // images shows the registry-qualified name, and the digest with --digests.
    let images = engine.ok(&["images"]);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with(&format!("{repo} ")) && l.contains(" 1 ")),
        "{images}"
    );
    let with_digests = engine.ok(&["images", "--digests"]);
    assert!(with_digests.starts_with("REPOSITORY"), "{with_digests}");
    assert!(with_digests.lines().next().unwrap().contains("DIGEST"));
    assert!(
        with_digests
            .lines()
            .any(|l| l.starts_with(&format!("{repo} ")) && l.contains(&digest)),
        "{with_digests}"
    );

    // A tag the registry does not have: berth's engine-error exit code, naming it.
    let missing = format!("{repo}:nosuchtag");
    let out = engine.berth(&["pull", &missing]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("nosuchtag"), "{}", stderr(&out));
    // `run` of it: the pull's error, after saying it is not here.
    let out = engine.berth(&["run", "--rm", &missing, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("Unable to find image"));
    assert!(stderr(&out).contains("nosuchtag"), "{}", stderr(&out));
    // --pull never does not pull.
    let out = engine.berth(&["run", "--rm", "--pull", "never", &missing, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(!stderr(&out).contains("Unable to find image"));
}

#[test]
fn login_logout_and_a_protected_registry() {
    let registry = Registry::with_auth("berth", "s3cret");
    let engine = Engine::with_busybox();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("cfg");
    let file = config.join("config.json");
    let server = registry.addr.as_str();
    let image = format!("{server}/private/bb:1");
    engine.ok(&["tag", "busybox", &image]);

    // Without credentials the registry refuses the push.
    let out = berth_in(&engine, &config, &["push", &image]);
    assert_eq!(out.status.code(), Some(125), "{}", stdout(&out));

    // A wrong password is an error, and nothing is stored.
    let out = berth_in(
        &engine,
        &config,
        &["login", "-u", "berth", "-p", "wrong", server],
    );
    assert_eq!(out.status.code(), Some(125), "{}", stdout(&out));
    assert!(!stdout(&out).contains("Login Succeeded"));
    assert!(!file.exists());

    let out = berth_in(
        &engine,
        &config,
        &["login", "-u", "berth", "-p", "s3cret", server],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Login Succeeded\n");
    assert!(stderr(&out).contains("WARNING! Using --password via the CLI is insecure"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    // base64("berth:s3cret")
    assert_eq!(json["auths"][server]["auth"], "YmVydGg6czNjcmV0");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Logged in: push, remove, pull back.
    let pushed = ok_in(&engine, &config, &["push", &image]);
    pushed_digest(&pushed, "1");
    engine.ok(&["rmi", &image]);
    let pulled = ok_in(&engine, &config, &["pull", &image]);
    assert_eq!(pulled.lines().last(), Some(image.as_str()), "{pulled}");
    engine.ok(&["rmi", &image]);
    // The repository's digest reference went with its last tag, as in Docker.
    let repo = image.rsplit_once(':').unwrap().0;
    assert!(
        !engine.ok(&["images"]).contains(repo),
        "{}",
        engine.ok(&["images"])
    );

    // Logged out: the entry is gone and the pull is refused.
    assert_eq!(
        ok_in(&engine, &config, &["logout", server]),
        format!("Removing login credentials for {server}\n")
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(json["auths"].get(server).is_none(), "{json}");
    assert_eq!(
        ok_in(&engine, &config, &["logout", server]),
        format!("Not logged in to {server}\n")
    );
    let out = berth_in(&engine, &config, &["pull", &image]);
    assert_eq!(out.status.code(), Some(125), "{}", stdout(&out));
    assert!(!engine.berth(&["image", "inspect", &image]).status.success());
}

#[test]
fn pull_on_a_terminal_keeps_one_line_per_layer_and_create_pulls_too() {
    let registry = Registry::start();
    let engine = Engine::with_busybox();
    let image = format!("{}/tty/bb:2", registry.addr);
    engine.ok(&["tag", "busybox", &image]);
    engine.ok(&["push", &image]);
    engine.ok(&["rmi", "busybox", &image]);

    let term = Terminal::new(&engine);
    term.line("clear");
    term.line(&format!("berth pull {image}; echo pulled-$?"));
    term.wait_for("pulled-0");
    let screen = term.screen();
    // Each layer's line was rewritten in place: two layers, each shown once, completed.
    let layers: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains(": Pull complete"))
        .collect();
    assert_eq!(layers.len(), 2, "{screen}");
    for word in ["Pulling fs layer", "Downloading", "Extracting", "Waiting"] {
        assert!(!screen.contains(word), "{word} left on screen:\n{screen}");
    }
    assert!(
        screen.contains(&format!("Status: Downloaded newer image for {image}")),
        "{screen}"
    );
    assert!(screen.lines().any(|l| l.trim() == image), "{screen}");

    // `create` pulls a missing image too; stdout is only the ID.
    engine.ok(&["rmi", &image]);
    let name = unique("pulled");
    let out = engine.berth(&["create", "--name", &name, &image]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).starts_with(&format!("Unable to find image '{image}' locally")));
    assert_eq!(stdout(&out).trim().len(), 64, "{}", stdout(&out));
    engine.ok(&["rm", &name]);
    // --pull always pulls a present image (to stderr) and goes on.
    let out = engine.berth(&["run", "--rm", "--pull", "always", &image, "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Unable to find image"));
    assert!(
        stderr(&out).contains("Image is up to date"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
}
