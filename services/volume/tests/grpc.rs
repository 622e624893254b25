//! The real binary over its socket, killed with SIGKILL in between: state survives.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use berth_proto::volume::v1::{self as pb, volumes_client::VolumesClient};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(root: &Path, run: &Path) -> Child {
    let sock = run.join("volume.sock");
    let _ = std::fs::remove_file(&sock);
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_berth-volume"))
            .env("BERTH_ROOT", root)
            .env("BERTH_RUN", run)
            .env_remove("BERTH_VOLUME_SOCKET")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "volume socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn mount(t: pb::MountType, source: &str, destination: &str) -> pb::MountSpec {
    pb::MountSpec {
        r#type: t as i32,
        source: source.into(),
        destination: destination.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_over_grpc_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (root, run) = (dir.path().join("root"), dir.path().join("run"));
    let child = spawn(&root, &run);
    let mut client =
        VolumesClient::new(berth_common::client::unix_channel(run.join("volume.sock")));

    let err = client
        .create_volume(pb::CreateVolumeRequest {
            name: "x/y".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err
        .message()
        .starts_with("create x/y: \"x/y\" includes invalid characters"));
    let v = client
        .create_volume(pb::CreateVolumeRequest {
            name: "data".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v.driver.as_str(), v.scope.as_str()), ("local", "local"));
    let m = client
        .prepare_mounts(pb::PrepareMountsRequest {
            container_id: "c1".into(),
            mounts: vec![
                mount(pb::MountType::Volume, "data", "/data"),
                mount(pb::MountType::Volume, "", "/anon"),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(m[0].source, v.mountpoint);
    let anon = m[1].volume_name.clone();
    let err = client
        .prepare_mounts(pb::PrepareMountsRequest {
            container_id: "c2".into(),
            mounts: vec![mount(pb::MountType::Unspecified, "", "/x")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    drop(child); // SIGKILL
    let _child = spawn(&root, &run);
    let err = client
        .remove_volume(pb::RemoveVolumeRequest {
            name: "data".into(),
            force: true,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            tonic::Code::FailedPrecondition,
            "remove data: volume is in use - [c1]"
        )
    );
    let got = client
        .get_volume(pb::GetVolumeRequest {
            name: "data".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.used_by, ["c1"]);
    let released = client
        .release_mounts(pb::ReleaseMountsRequest {
            container_id: "c1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.anonymous_volumes, std::slice::from_ref(&anon));
    for name in ["data", anon.as_str()] {
        client
            .remove_volume(pb::RemoveVolumeRequest {
                name: name.into(),
                force: false,
            })
            .await
            .unwrap();
    }
    let err = client
        .get_volume(pb::GetVolumeRequest {
            name: "data".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (tonic::Code::NotFound, "no such volume: data")
    );
    let list = client
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.volumes.is_empty());
}
