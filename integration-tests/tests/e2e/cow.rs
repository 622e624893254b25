//! Copy-on-write: the image's layers stay read-only, each container has its own upper layer,
//! and OCI whiteouts in the image hide the files they delete.
use berth_integration_tests::{unique, Engine};

#[test]
fn whiteout_in_the_second_layer_hides_the_base_file() {
    let engine = Engine::with_busybox();
    let out = engine.berth(&["run", "--rm", "busybox", "cat", "/etc/berth-base-only"]);
    assert_eq!(out.status.code(), Some(1), "the whited-out file is visible");
    assert_eq!(
        engine
            .ok(&["run", "--rm", "busybox", "cat", "/etc/berth-release"])
            .trim(),
        "berth test image"
    );
}

#[test]
fn writes_stay_in_their_container() {
    let engine = Engine::with_busybox();
    let writer = unique("writer");
    engine.ok(&[
        "run",
        "--name",
        &writer,
        "busybox",
        "sh",
        "-c",
        "cat /etc/written 2>/dev/null; echo mine > /etc/written; rm -f /etc/passwd",
    ]);

    // Another container of the same image sees neither the new file nor the deletion.
    let out = engine.berth(&["run", "--rm", "busybox", "cat", "/etc/written"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(engine
        .ok(&["run", "--rm", "busybox", "cat", "/etc/passwd"])
        .contains("root:x:0:0"));

    // The writer still sees its own changes when started again.
    assert_eq!(engine.ok(&["start", "-a", &writer]), "mine\n");
    let upper = engine
        .root
        .join("image-store/snapshots/active")
        .join(engine.inspect(&writer, "{{.Id}}"))
        .join("upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/written")).unwrap(),
        "mine\n"
    );

    // The image's own layers are untouched.
    let committed = engine.root.join("image-store/snapshots/committed");
    let mut found_passwd = false;
    for layer in std::fs::read_dir(committed).unwrap().flatten() {
        assert!(!layer.path().join("fs/etc/written").exists());
        found_passwd |= layer.path().join("fs/etc/passwd").is_file();
    }
    assert!(found_passwd, "the base layer lost /etc/passwd");
}
