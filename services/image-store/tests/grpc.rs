//! The gRPC service over a Unix socket in a temp dir, with a real client.
mod common;

use std::{path::Path, sync::Arc, time::Duration};

use berth_image_store::{service::ImageStoreService, Store};
use berth_proto::image::v1::{
    image_store_client::ImageStoreClient, upload_chunk::Part, GetImageRequest,
    GetSnapshotMountsRequest, ListImagesRequest, PrepareSnapshotRequest, RemoveImageRequest,
    RemoveSnapshotRequest, TagImageRequest, UploadChunk, UploadHeader,
};
use common::*;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{transport::Channel, Code};

/// Serves a store rooted in `root` on `socket` until the returned sender is dropped.
async fn serve(
    root: &Path,
    socket: &Path,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let store = Arc::new(Store::open(root).unwrap());
    let listener = UnixListener::bind(socket).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ImageStoreService::new(store).into_server())
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, handle)
}

fn upload(header: UploadHeader, bytes: Vec<u8>) -> impl tokio_stream::Stream<Item = UploadChunk> {
    let mut chunks = vec![UploadChunk {
        part: Some(Part::Header(header)),
    }];
    for c in bytes.chunks(64 * 1024) {
        chunks.push(UploadChunk {
            part: Some(Part::Data(c.to_vec())),
        });
    }
    tokio_stream::iter(chunks)
}

#[tokio::test(flavor = "multi_thread")]
async fn image_store_over_a_unix_socket() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("state");
    let socket = work.path().join("image-store.sock");
    let (stop, server) = serve(&root, &socket).await;
    let mut client: ImageStoreClient<Channel> =
        ImageStoreClient::new(berth_common::client::unix_channel(&socket));

    // Load the busybox test image.
    let tarball = busybox_image(work.path());
    let loaded = client
        .load_images(upload(
            UploadHeader::default(),
            std::fs::read(&tarball).unwrap(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loaded.images.len(), 1);
    let bb = &loaded.images[0];
    assert_eq!(bb.repo_tags, vec!["busybox:latest"]);
    assert_eq!(bb.config.as_ref().unwrap().cmd, vec!["sh"]);
    assert_eq!(bb.layers.len(), 2);
    assert_eq!(
        (bb.architecture.as_str(), bb.os.as_str()),
        ("amd64", "linux")
    );
    assert!(!bb.config_json.is_empty());

    // Import with changes.
    let rootfs = gzip(&tar_of(&[file("hello", "hi")]));
    let header = UploadHeader {
        reference: "hello:v1".into(),
        changes: vec!["CMD [\"/hello\"]".into(), "ENV X=1".into()],
        message: "imported".into(),
    };
    let imported = client
        .import_image(upload(header, rootfs))
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(imported.repo_tags, vec!["hello:v1"]);
    assert_eq!(imported.config.as_ref().unwrap().env, vec!["X=1"]);
    assert_eq!(imported.comment, "imported");

    // A malformed import is InvalidArgument naming the entry, leaving no temp file.
    let evil = tar_of(&[file("../evil", "x")]);
    let err = client
        .import_image(upload(UploadHeader::default(), evil))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("../evil"), "{}", err.message());
    assert_eq!(names(&root.join("tmp")), Vec::<String>::new());

    // Lookups.
    let got = client
        .get_image(GetImageRequest {
            reference: "busybox".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.id, bb.id);
    let err = client
        .get_image(GetImageRequest {
            reference: "nosuch".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "no such image: nosuch:latest");
    let err = client
        .get_image(GetImageRequest {
            reference: "UPPER".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("UPPER"), "{}", err.message());
    client
        .tag_image(TagImageRequest {
            source: bb.id.clone(),
            target: "localhost:5000/bb:t".into(),
        })
        .await
        .unwrap();
    let list = client
        .list_images(ListImagesRequest { all: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.images.len(), 2);

    // Snapshots.
    let key = "c0ffee";
    let m = client
        .prepare_snapshot(PrepareSnapshotRequest {
            key: key.into(),
            image: "busybox".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.lower_dirs.len(), 2);
    assert_eq!(m.image_id, bb.id);
    let again = client
        .prepare_snapshot(PrepareSnapshotRequest {
            key: key.into(),
            image: "busybox:latest".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, m);
    let err = client
        .prepare_snapshot(PrepareSnapshotRequest {
            key: key.into(),
            image: "hello:v1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let got = client
        .get_snapshot_mounts(GetSnapshotMountsRequest { key: key.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, m);
    let err = client
        .remove_image(RemoveImageRequest {
            reference: bb.id.clone(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Restart: state kept.
    drop(stop);
    server.await.unwrap();
    let _ = std::fs::remove_file(&socket);
    let (stop, server) = serve(&root, &socket).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut client: ImageStoreClient<Channel> =
        ImageStoreClient::new(berth_common::client::unix_channel(&socket));
    let got = client
        .get_snapshot_mounts(GetSnapshotMountsRequest { key: key.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, m);
    let got = client
        .get_image(GetImageRequest {
            reference: "hello:v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.id, imported.id);

    client
        .remove_snapshot(RemoveSnapshotRequest { key: key.into() })
        .await
        .unwrap();
    client
        .remove_snapshot(RemoveSnapshotRequest { key: key.into() })
        .await
        .unwrap();
    let err = client
        .get_snapshot_mounts(GetSnapshotMountsRequest { key: key.into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let removed = client
        .remove_image(RemoveImageRequest {
            reference: bb.id.clone(),
            force: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        removed.untagged,
        vec!["busybox:latest", "localhost:5000/bb:t"]
    );
    assert_eq!(removed.deleted.len(), 3);
    drop(stop);
    server.await.unwrap();
}
