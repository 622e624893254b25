//! The volume store against temp dirs (each test its own, removed even on failure).
use std::{os::unix::fs::MetadataExt, path::PathBuf};

use berth_volume::{
    driver,
    mounts::{MountKind, MountSpec},
    store::CreateRequest,
    Error, Store,
};

/// Unmounts whatever a test left mounted at the path, even when it fails midway.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = driver::unmount(&self.0);
    }
}

fn spec(kind: MountKind, source: &str, destination: &str) -> MountSpec {
    MountSpec {
        kind: Some(kind),
        source: source.into(),
        destination: destination.into(),
        read_only: false,
        options: vec![],
        ..Default::default()
    }
}

fn named(name: &str) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        ..Default::default()
    }
}

#[test]
fn create_get_list_remove() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut req = named("v1");
    req.labels.insert("a".into(), "b".into());
    req.options.insert("type".into(), "tmpfs".into());
    req.options.insert("device".into(), "tmpfs".into());
    req.options.insert("o".into(), "size=1m".into());
    let _guard = Unmount(dir.path().join("volumes/v1/_data"));
    let v = store.create_volume(req).unwrap();
    assert!(
        driver::is_mountpoint(&v.mountpoint).unwrap(),
        "tmpfs mounted at create"
    );
    assert_eq!(v.driver, "local");
    assert_eq!(v.mountpoint, dir.path().join("volumes/v1/_data"));
    assert!(v.mountpoint.is_dir());
    assert_eq!(v.options["type"], "tmpfs");
    assert!(
        humantime::parse_rfc3339(&v.created_at).is_ok(),
        "{}",
        v.created_at
    );
    // Same name again: the existing volume, unchanged.
    let again = store.create_volume(named("v1")).unwrap();
    assert_eq!(again, v);
    assert_eq!(store.get_volume("v1").unwrap(), v);

    let anon = store.create_volume(named("")).unwrap();
    assert!(berth_common::ids::is_full_id(&anon.name));
    assert_eq!(store.list_volumes(&[]).unwrap().len(), 2);

    assert!(matches!(
        store.create_volume(named("x/y")),
        Err(Error::InvalidName(_))
    ));
    let mut nfs = named("v2");
    nfs.driver = "nfs".into();
    assert_eq!(
        store.create_volume(nfs).unwrap_err().to_string(),
        "unknown volume driver: nfs"
    );
    assert_eq!(
        store.get_volume("nope").unwrap_err().to_string(),
        "no such volume: nope"
    );

    store.remove_volume("v1", false).unwrap();
    assert!(!driver::is_mountpoint(&v.mountpoint).unwrap());
    assert!(!dir.path().join("volumes/v1").exists());
    assert!(matches!(
        store.remove_volume("v1", false),
        Err(Error::NotFound(_))
    ));
    store.remove_volume("v1", true).unwrap();

    // State survives reopening.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.list_volumes(&[]).unwrap(), vec![anon]);
}

#[test]
fn prepare_mounts_resolves_records_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bind_src = dir.path().join("host/a/b");
    let specs = vec![
        spec(MountKind::Bind, bind_src.to_str().unwrap(), "/data"),
        spec(MountKind::Volume, "shared", "/shared"),
        spec(MountKind::Volume, "", "/anon"),
        MountSpec {
            options: vec!["size=64m".into()],
            ..spec(MountKind::Tmpfs, "", "/tmp")
        },
    ];
    let m = store.prepare_mounts("c1", &specs, &[]).unwrap();
    assert_eq!(m.len(), 4);
    assert!(bind_src.is_dir(), "a missing bind source is created");
    assert_eq!(m[0].source, bind_src.to_str().unwrap());
    assert_eq!(m[1].volume_name, "shared");
    assert_eq!(
        m[1].source,
        dir.path().join("volumes/shared/_data").to_str().unwrap()
    );
    let anon = m[2].volume_name.clone();
    assert!(berth_common::ids::is_full_id(&anon));
    assert!(store.get_volume(&anon).unwrap().anonymous);
    assert_eq!(
        (m[3].kind, m[3].options.clone()),
        (MountKind::Tmpfs, vec!["size=64m".to_string()])
    );

    // Same container again: the same answer, no new anonymous volume.
    assert_eq!(store.prepare_mounts("c1", &specs, &[]).unwrap(), m);
    assert_eq!(store.list_volumes(&[]).unwrap().len(), 2);

    let m2 = store
        .prepare_mounts("c2", &[spec(MountKind::Volume, "shared", "/s")], &[])
        .unwrap();
    assert_eq!(m2[0].volume_name, "shared");
    assert_eq!(store.get_volume("shared").unwrap().used_by, ["c1", "c2"]);

    // In use: refused, force does not override.
    for force in [false, true] {
        assert_eq!(
            store
                .remove_volume("shared", force)
                .unwrap_err()
                .to_string(),
            "remove shared: volume is in use - [c1, c2]"
        );
    }
    assert_eq!(store.release_mounts("c1").unwrap(), vec![anon.clone()]);
    assert_eq!(store.release_mounts("c1").unwrap(), Vec::<String>::new());
    assert_eq!(store.release_mounts("c2").unwrap(), Vec::<String>::new());
    assert!(store.get_volume("shared").unwrap().used_by.is_empty());
    store.remove_volume("shared", false).unwrap();
    store.remove_volume(&anon, false).unwrap();
    assert!(store.list_volumes(&[]).unwrap().is_empty());
}

#[test]
fn a_failed_prepare_records_nothing_and_removes_what_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // The second mount fails after the first volume was made: a file where the bind
    // source's parent directory should be.
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let specs = vec![
        spec(MountKind::Volume, "newvol", "/v"),
        spec(MountKind::Volume, "", "/anon"),
        spec(
            MountKind::Bind,
            dir.path().join("made/x").to_str().unwrap(),
            "/made",
        ),
        spec(
            MountKind::Bind,
            dir.path().join("file/sub").to_str().unwrap(),
            "/b",
        ),
    ];
    assert!(matches!(
        store.prepare_mounts("c1", &specs, &[]),
        Err(Error::Io { .. })
    ));
    assert!(store.list_volumes(&[]).unwrap().is_empty());
    let volumes: Vec<_> = std::fs::read_dir(dir.path().join("volumes"))
        .unwrap()
        .collect();
    assert!(volumes.is_empty(), "{volumes:?}");
    assert!(!dir.path().join("made").exists());
    // Invalid specs fail before anything is made.
    let err = store
        .prepare_mounts(
            "c1",
            &[
                spec(MountKind::Volume, "ok1", "/a"),
                spec(MountKind::Volume, "x", "relative"),
            ],
            &[],
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("'relative' mount path must be absolute"),
        "{err}"
    );
    assert!(store.list_volumes(&[]).unwrap().is_empty());
    for bad in ["", "../x", ".hidden", "a/b"] {
        let e = store.prepare_mounts(bad, &[], &[]).unwrap_err().to_string();
        assert!(e.starts_with("invalid container id"), "{e}");
    }
    // Nothing was recorded for c1: a good call now works.
    let m = store
        .prepare_mounts("c1", &[spec(MountKind::Volume, "newvol", "/v")], &[])
        .unwrap();
    assert_eq!(m[0].volume_name, "newvol");
}

/// Two image layers: the lower has /www/{index.html,old.txt,sub/}, the upper replaces
/// index.html, whites out old.txt and adds a symlink.
fn layers(root: &std::path::Path) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let (lower, upper) = (root.join("l1"), root.join("l2"));
    std::fs::create_dir_all(lower.join("www/sub")).unwrap();
    std::fs::write(lower.join("www/index.html"), "old").unwrap();
    std::fs::write(lower.join("www/old.txt"), "gone").unwrap();
    std::fs::write(lower.join("file"), "f").unwrap();
    std::fs::set_permissions(lower.join("www"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(lower.join("www/sub"), Some(33), Some(33)).unwrap();
    std::fs::create_dir_all(upper.join("www")).unwrap();
    std::fs::set_permissions(upper.join("www"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::write(upper.join("www/index.html"), "new").unwrap();
    std::os::unix::fs::symlink("index.html", upper.join("www/link")).unwrap();
    nix::sys::stat::mknod(
        &upper.join("www/old.txt"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    vec![upper, lower]
}

#[test]
fn empty_volumes_are_filled_from_the_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let lowers = layers(&dir.path().join("image"));
    let m = store
        .prepare_mounts(
            "c1",
            &[
                spec(MountKind::Volume, "site", "/www"),
                spec(MountKind::Volume, "", "/www/sub"),
            ],
            &lowers,
        )
        .unwrap();
    let data = PathBuf::from(&m[0].source);
    assert_eq!(
        std::fs::read_to_string(data.join("index.html")).unwrap(),
        "new"
    );
    assert!(!data.join("old.txt").exists(), "the whiteout hides it");
    assert_eq!(
        std::fs::read_link(data.join("link")).unwrap(),
        PathBuf::from("index.html")
    );
    assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o7777, 0o750);
    let sub = std::fs::metadata(&m[1].source).unwrap();
    assert_eq!(
        (sub.uid(), sub.gid()),
        (33, 33),
        "anonymous volume keeps the owner"
    );
    assert!(
        !dir.path().join("copyup").join("c1").exists(),
        "the image view is gone"
    );

    // Not empty any more: a second user sees the volume's content, not the image's.
    std::fs::write(data.join("index.html"), "mine").unwrap();
    store
        .prepare_mounts("c2", &[spec(MountKind::Volume, "site", "/www")], &lowers)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(data.join("index.html")).unwrap(),
        "mine"
    );
    // nocopy leaves a new volume empty.
    let m = store
        .prepare_mounts(
            "c3",
            &[MountSpec {
                options: vec!["nocopy".into()],
                ..spec(MountKind::Volume, "bare", "/www")
            }],
            &lowers,
        )
        .unwrap();
    assert!(m[0].options.is_empty());
    assert_eq!(std::fs::read_dir(&m[0].source).unwrap().count(), 0);
}

#[test]
fn bind_sources_are_checked_against_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let lowers = layers(&dir.path().join("image"));
    let file = dir.path().join("hostfile");
    std::fs::write(&file, "x").unwrap();
    let e = store
        .prepare_mounts(
            "c1",
            &[spec(MountKind::Bind, file.to_str().unwrap(), "/www")],
            &lowers,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is a file but /www in the image is a directory"),
        "{e}"
    );
    let e = store
        .prepare_mounts(
            "c1",
            &[spec(MountKind::Bind, dir.path().to_str().unwrap(), "/file")],
            &lowers,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is a directory but /file in the image is a file"),
        "{e}"
    );
    let missing = dir.path().join("missing");
    let e = store
        .prepare_mounts(
            "c1",
            &[
                spec(MountKind::Volume, "made", "/m"),
                MountSpec {
                    require_source: true,
                    ..spec(MountKind::Bind, missing.to_str().unwrap(), "/x")
                },
            ],
            &lowers,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("bind source path does not exist"), "{e}");
    assert!(!missing.exists());
    assert!(
        store.list_volumes(&[]).unwrap().is_empty(),
        "nothing created"
    );
    // A file over a file is fine.
    store
        .prepare_mounts(
            "c1",
            &[spec(MountKind::Bind, file.to_str().unwrap(), "/file")],
            &lowers,
        )
        .unwrap();
}

#[test]
fn list_filters_follow_docker() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (name, team) in [("alpha", "a"), ("beta", "b"), ("gamma", "")] {
        let mut req = named(name);
        if !team.is_empty() {
            req.labels.insert("team".into(), team.into());
        }
        store.create_volume(req).unwrap();
    }
    let anon = store
        .prepare_mounts(
            "c1",
            &[
                spec(MountKind::Volume, "beta", "/b"),
                spec(MountKind::Volume, "", "/anon"),
            ],
            &[],
        )
        .unwrap()[1]
        .volume_name
        .clone();
    let names = |f: &[&str]| -> Vec<String> {
        let f: Vec<String> = f.iter().map(|s| s.to_string()).collect();
        store
            .list_volumes(&f)
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect()
    };
    assert_eq!(names(&["dangling=true"]), ["alpha", "gamma"]);
    assert_eq!(names(&["label=team"]), ["alpha", "beta"]);
    assert_eq!(names(&["label=team=b"]), ["beta"]);
    // A 64-hex name sorts before "gamma".
    assert_eq!(names(&["label!=team"]), [anon.clone(), "gamma".to_string()]);
    assert_eq!(names(&["anonymous=true"]), [anon]);
    assert_eq!(names(&["name=mm", "dangling=true"]), ["gamma"]);
    assert_eq!(names(&["name=alp", "name=gam"]), ["alpha", "gamma"]);
    assert_eq!(names(&["dangling=false", "anonymous=false"]), ["beta"]);
    for bad in ["dangling=maybe", "colour=red", "nokey"] {
        let e = store.list_volumes(&[bad.to_string()]).unwrap_err();
        assert_eq!(e.to_string(), format!("invalid filter {bad:?}"));
    }
}

#[test]
fn driver_mounts_are_restored_at_start_and_refused_when_bad() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("volumes/scratch/_data");
    let _guard = Unmount(data.clone());
    {
        let store = Store::open(dir.path()).unwrap();
        let mut req = named("scratch");
        for (k, v) in [
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=2m,mode=1777"),
        ] {
            req.options.insert(k.into(), v.into());
        }
        store.create_volume(req).unwrap();
        let st = nix::sys::statfs::statfs(&data).unwrap();
        assert_eq!(st.blocks() as u64 * st.block_size() as u64, 2 << 20);
        // The mount goes away (a host reboot): the next start mounts it again.
        driver::unmount(&data).unwrap();
        let mut bad = named("broken");
        for (k, v) in [("type", "nosuchfs"), ("device", "x")] {
            bad.options.insert(k.into(), v.into());
        }
        let e = store.create_volume(bad).unwrap_err();
        assert!(e.to_string().starts_with("mount volume broken:"), "{e}");
        assert!(!dir.path().join("volumes/broken").exists(), "undone");
        assert!(matches!(
            store.get_volume("broken"),
            Err(Error::NotFound(_))
        ));
    }
    let store = Store::open(dir.path()).unwrap();
    assert!(driver::is_mountpoint(&data).unwrap());
    store.remove_volume("scratch", false).unwrap();
    assert!(!driver::is_mountpoint(&data).unwrap());
}
