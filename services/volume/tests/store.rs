//! The volume store against temp dirs (each test its own, removed even on failure).
use berth_volume::{
    mounts::{MountKind, MountSpec},
    store::CreateRequest,
    Error, Store,
};

fn spec(kind: MountKind, source: &str, destination: &str) -> MountSpec {
    MountSpec {
        kind: Some(kind),
        source: source.into(),
        destination: destination.into(),
        read_only: false,
        options: vec![],
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
    let v = store.create_volume(req).unwrap();
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
    assert_eq!(store.list_volumes().unwrap().len(), 2);

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
    assert!(!dir.path().join("volumes/v1").exists());
    assert!(matches!(
        store.remove_volume("v1", false),
        Err(Error::NotFound(_))
    ));
    store.remove_volume("v1", true).unwrap();

    // State survives reopening.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.list_volumes().unwrap(), vec![anon]);
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
    let m = store.prepare_mounts("c1", &specs).unwrap();
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
    assert_eq!(store.prepare_mounts("c1", &specs).unwrap(), m);
    assert_eq!(store.list_volumes().unwrap().len(), 2);

    let m2 = store
        .prepare_mounts("c2", &[spec(MountKind::Volume, "shared", "/s")])
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
    assert!(store.list_volumes().unwrap().is_empty());
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
        store.prepare_mounts("c1", &specs),
        Err(Error::Io { .. })
    ));
    assert!(store.list_volumes().unwrap().is_empty());
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
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("'relative' mount path must be absolute"),
        "{err}"
    );
    assert!(store.list_volumes().unwrap().is_empty());
    // Nothing was recorded for c1: a good call now works.
    let m = store
        .prepare_mounts("c1", &[spec(MountKind::Volume, "newvol", "/v")])
        .unwrap();
    assert_eq!(m[0].volume_name, "newvol");
}
