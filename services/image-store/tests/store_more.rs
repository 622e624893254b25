//! history, prune, save and commit against the store library, with real tarballs.
mod common;

use std::{
    fs,
    io::Read,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::Path,
};

use berth_image_store::{
    store::{CommitOptions, ImportOptions, Store},
    unpack::{get_xattr, set_xattr, OPAQUE_XATTR},
};
use common::*;
use serde_json::{json, Value};

fn open(root: &Path) -> Store {
    Store::open(root).expect("open store")
}

#[test]
fn history_is_newest_first_with_layer_sizes() {
    let work = tempfile::tempdir().unwrap();
    let store = open(&work.path().join("state"));
    let img = store
        .load_images(&busybox_image(work.path()))
        .unwrap()
        .remove(0);
    let h = store.image_history("busybox").unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].id, img.id);
    assert_eq!(h[1].id, "<missing>");
    assert_eq!(
        h[0].created_by,
        "berth build-busybox-image.sh: berth-release"
    );
    assert_eq!(
        h[1].created_by,
        "berth build-busybox-image.sh: busybox base"
    );
    assert!(h[1].size > 500_000 && h[0].size < h[1].size, "{h:?}");
    assert_eq!(h[0].size + h[1].size, img.size);
}

#[test]
fn prune_removes_dangling_then_unused_images_keeping_shared_layers() {
    let work = tempfile::tempdir().unwrap();
    let store = open(&work.path().join("state"));
    let busybox = store
        .load_images(&busybox_image(work.path()))
        .unwrap()
        .remove(0);
    let layer = tar_of(&[file("a", "1")]);
    let tarball = write_temp(work.path(), "a.tar", &layer);
    let dangling = store
        .import_image(&tarball, &ImportOptions::default())
        .unwrap();
    let tagged = store
        .import_image(
            &tarball,
            &ImportOptions {
                reference: "t:1".into(),
                changes: vec!["CMD [\"x\"]".into()],
                ..Default::default()
            },
        )
        .unwrap();
    store.prepare_snapshot("c1", "busybox").unwrap();

    let p = store.prune_images(false).unwrap();
    assert_eq!(p.untagged, Vec::<String>::new());
    // The layer is shared with t:1, so only the image goes.
    assert_eq!(p.deleted, vec![dangling.id.clone()]);
    assert_eq!(p.space_reclaimed, 0);
    assert!(store.get_image(&dangling.id).is_err());
    assert_eq!(store.get_image("t:1").unwrap().id, tagged.id);

    let p = store.prune_images(true).unwrap();
    assert_eq!(p.untagged, vec!["t:1"]);
    assert_eq!(p.deleted.len(), 2, "{p:?}");
    assert_eq!(p.deleted[0], tagged.id);
    assert!(p.space_reclaimed > 0);
    assert_eq!(store.get_image("busybox").unwrap().id, busybox.id);
    assert_eq!(store.prune_images(true).unwrap(), Default::default());
    store.remove_snapshot("c1").unwrap();
    let p = store.prune_images(true).unwrap();
    assert_eq!(p.untagged, vec!["busybox:latest"]);
    assert_eq!(p.space_reclaimed, busybox.size);
    assert_empty_store(&work.path().join("state"));
}

fn archive(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (e.path().unwrap().display().to_string(), data)
        })
        .collect()
}

#[test]
fn save_writes_docker_archive_and_oci_layout_that_load_back() {
    let work = tempfile::tempdir().unwrap();
    let store = open(&work.path().join("state"));
    let img = store
        .load_images(&busybox_image(work.path()))
        .unwrap()
        .remove(0);
    store.tag_image("busybox", "other/box:2").unwrap();
    let out = work.path().join("saved.tar");
    store
        .save_images(
            &["busybox".into(), "other/box:2".into(), img.id.clone()],
            &out,
        )
        .unwrap();
    let entries = archive(&out);
    let get = |name: &str| -> Value {
        serde_json::from_slice(&entries.iter().find(|e| e.0 == name).unwrap().1).unwrap()
    };
    let manifest = get("manifest.json");
    assert_eq!(manifest.as_array().unwrap().len(), 1);
    assert_eq!(
        manifest[0]["RepoTags"],
        json!(["busybox:latest", "other/box:2"])
    );
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", hex_of(&img.id))
    );
    // Every layer blob hashes to its name (stored as is) and decompresses to its diff ID.
    for (l, diff) in manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&img.layers)
    {
        let name = l.as_str().unwrap();
        let data = &entries.iter().find(|e| e.0 == name).unwrap().1;
        assert_eq!(format!("blobs/sha256/{}", hex_of(&sha(data))), name);
        let mut plain = Vec::new();
        if data.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(&data[..])
                .read_to_end(&mut plain)
                .unwrap();
        } else {
            plain = data.clone();
        }
        assert_eq!(&sha(&plain), diff);
    }
    let index = get("index.json");
    let refs: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        refs,
        vec![
            ("docker.io/library/busybox:latest".into(), "latest".into()),
            ("docker.io/other/box:2".into(), "2".into()),
        ]
    );
    assert_eq!(get("oci-layout"), json!({"imageLayoutVersion": "1.0.0"}));

    // Loads into another store as the same image.
    let other = open(&work.path().join("state2"));
    let loaded = other.load_images(&out).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, img.id);
    assert_eq!(loaded[0].repo_tags, vec!["busybox:latest", "other/box:2"]);

    // The OCI layout alone loads too.
    let oci_only = work.path().join("oci.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&oci_only).unwrap());
        for (name, data) in entries.iter().filter(|e| e.0 != "manifest.json") {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(if name.ends_with('/') {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.finish().unwrap();
    }
    let third = open(&work.path().join("state3"));
    let loaded = third.load_images(&oci_only).unwrap();
    assert_eq!(loaded[0].id, img.id);

    // By ID only: untagged.
    store
        .save_images(std::slice::from_ref(&img.id), &out)
        .unwrap();
    let entries = archive(&out);
    let m: Value =
        serde_json::from_slice(&entries.iter().find(|e| e.0 == "manifest.json").unwrap().1)
            .unwrap();
    assert_eq!(m[0]["RepoTags"], Value::Null);
    assert!(store.save_images(&["nope:1".into()], &out).is_err());
}

#[test]
fn commit_turns_the_upper_dir_into_a_layer_with_whiteouts() {
    let work = tempfile::tempdir().unwrap();
    let store = open(&work.path().join("state"));
    let base = store
        .load_images(&busybox_image(work.path()))
        .unwrap()
        .remove(0);
    let m = store.prepare_snapshot("c1", "busybox").unwrap();
    let up = &m.upper_dir;
    fs::create_dir(up.join("etc")).unwrap();
    fs::write(up.join("etc/new"), "new\n").unwrap();
    let c = std::ffi::CString::new(up.join("etc/passwd").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) },
        0
    );
    fs::create_dir(up.join("home")).unwrap();
    set_xattr(&up.join("home"), OPAQUE_XATTR, b"y").unwrap();

    let mut config = serde_json::Map::new();
    config.insert("Cmd".into(), json!(["sh", "-c", "x"]));
    config.insert("Env".into(), json!(["A=1"]));
    let img = store
        .commit_snapshot(
            "c1",
            &CommitOptions {
                reference: "snap:1".into(),
                changes: vec!["CMD [\"echo\",\"hi\"]".into(), "ENV B=2".into()],
                message: "msg".into(),
                author: "me".into(),
                config,
            },
        )
        .unwrap();
    assert_eq!(img.repo_tags, vec!["snap:1"]);
    assert_eq!(img.layers.len(), 3);
    assert_eq!(img.layers[..2], base.layers[..]);
    let rc = img.config.config.clone().unwrap();
    assert_eq!(rc.cmd.unwrap(), vec!["echo", "hi"]);
    assert_eq!(rc.env.unwrap(), vec!["A=1", "B=2"]);
    assert_eq!(img.config.author.as_deref(), Some("me"));
    assert_eq!(img.config.comment.as_deref(), Some("msg"));
    let h = store.image_history("snap:1").unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(
        (h[0].created_by.as_str(), h[0].comment.as_str()),
        ("berth commit", "msg")
    );

    let m2 = store.prepare_snapshot("c2", "snap:1").unwrap();
    let top = &m2.lower_dirs[0];
    assert_eq!(fs::read_to_string(top.join("etc/new")).unwrap(), "new\n");
    let wh = fs::symlink_metadata(top.join("etc/passwd")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        get_xattr(&top.join("home"), OPAQUE_XATTR)
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );

    // An empty upper dir still makes a (empty) layer; untagged.
    let empty = store
        .commit_snapshot("c2", &CommitOptions::default())
        .unwrap();
    assert_eq!(empty.layers.len(), 4);
    assert!(empty.repo_tags.is_empty());
    assert!(store
        .commit_snapshot("nope", &CommitOptions::default())
        .is_err());
    assert!(store
        .commit_snapshot(
            "c2",
            &CommitOptions {
                changes: vec!["BOGUS x".into()],
                ..Default::default()
            }
        )
        .is_err());
}
