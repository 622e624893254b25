//! The real `berth-image-store` binary: state kept across kill -9, clean exit on SIGTERM.
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use berth_proto::image::v1::{
    image_store_client::ImageStoreClient, upload_chunk::Part, GetImageRequest,
    GetSnapshotMountsRequest, PrepareSnapshotRequest, UploadChunk, UploadHeader,
};
use common::*;

/// The service process; killed (SIGKILL) and reaped when dropped.
struct Service {
    child: Child,
    socket: PathBuf,
}

impl Service {
    fn start(dir: &Path) -> Service {
        let socket = dir.join("run/image-store.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_berth-image-store"))
            .env("BERTH_ROOT", dir.join("root"))
            .env("BERTH_RUN", dir.join("run"))
            .env("BERTH_INSTANCE", format!("t{}", std::process::id()))
            .env_remove("BERTH_IMAGE_STORE_SOCKET")
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn berth-image-store");
        let svc = Service { child, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&svc.socket).is_err() {
            assert!(Instant::now() < deadline, "the service did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        svc
    }

    async fn client(&self) -> ImageStoreClient<tonic::transport::Channel> {
        ImageStoreClient::new(berth_common::client::unix_channel(&self.socket))
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn state_survives_kill_9_and_sigterm_stops_cleanly() {
    let work = tempfile::tempdir().unwrap();
    let tarball = busybox_image(work.path());
    let svc = Service::start(work.path());
    let mut client = svc.client().await;
    let chunks = vec![
        UploadChunk {
            part: Some(Part::Header(UploadHeader::default())),
        },
        UploadChunk {
            part: Some(Part::Data(std::fs::read(&tarball).unwrap())),
        },
    ];
    let loaded = client
        .load_images(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    let id = loaded.images[0].id.clone();
    let mounts = client
        .prepare_snapshot(PrepareSnapshotRequest {
            key: "k9".into(),
            image: "busybox".into(),
        })
        .await
        .unwrap()
        .into_inner();
    drop(client);
    svc.kill9();

    let svc = Service::start(work.path());
    let mut client = svc.client().await;
    let got = client
        .get_image(GetImageRequest {
            reference: "busybox:latest".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.id, id);
    let again = client
        .get_snapshot_mounts(GetSnapshotMountsRequest { key: "k9".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, mounts);
    drop(client);

    let mut svc = svc;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(svc.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = svc.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!svc.socket.exists(), "socket removed on exit");
}
