//! PullImage: manifest (or index → platform) → config → layers downloaded in parallel,
//! each unpacked while it streams and verified (blob digest and diff ID) as it goes, then
//! committed by the store in one step.
use std::{sync::Arc, time::Duration};

use berth_proto::image::v1 as pb;
use bytes::{Buf, Bytes};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use berth_common::config::RegistriesConfig;

use super::{
    client::{auth_error, Credentials, Registry},
    parse_platform,
    reference::{Endpoint, RemoteRef},
    select_platform, sha256_digest, short_digest, Descriptor, Inflight, ManifestDoc, Throttle,
    Verifier, MT_DOCKER_LAYER_FOREIGN, MT_DOCKER_LAYER_GZIP, MT_DOCKER_LAYER_ZSTD, MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_NONDIST_GZIP,
    MT_OCI_LAYER_NONDIST_TAR, MT_OCI_LAYER_NONDIST_ZSTD, MT_OCI_LAYER_TAR, MT_OCI_LAYER_ZSTD,
    MT_OCI_MANIFEST,
};
use crate::{
    config::ConfigDoc,
    error::{Error, Result},
    store::{ImageInfo, PulledLayer, Store, TempPath},
};

/// Parallel layer downloads (each unpacked as it arrives) per pull: skopeo's number. On
/// loopback 3 and 6 measured the same (the CPU is the limit there); against a remote
/// registry more connections hide more latency.
const PARALLEL: usize = 6;

pub type Progress = mpsc::Sender<pb::PullProgress>;

#[derive(Default)]
pub struct PullRequest {
    pub reference: String,
    pub creds: Credentials,
    pub platform: String,
    /// Insecure registries and mirrors (the configuration file's `[registries]`).
    pub registries: Arc<RegistriesConfig>,
}

fn msg(id: &str, status: impl Into<String>, current: i64, total: i64) -> pb::PullProgress {
    pb::PullProgress {
        id: id.to_string(),
        status: status.into(),
        current,
        total,
        image: None,
    }
}

/// Fetches the manifest at `reference` (tag or digest) and returns (bytes, digest, content type).
pub async fn fetch_manifest(
    reg: &Registry,
    r: &RemoteRef,
    reference: &str,
) -> Result<(Bytes, String, String)> {
    let accept = [
        MT_DOCKER_MANIFEST,
        MT_DOCKER_LIST,
        MT_OCI_MANIFEST,
        MT_OCI_INDEX,
    ]
    .join(", ");
    let resp = reg
        .send(
            Method::GET,
            &format!("/v2/{}/manifests/{reference}", r.repository),
            &[("accept", accept)],
            Bytes::new(),
        )
        .await?;
    let status = resp.status;
    if !status.is_success() {
        let m = resp.error_message().await;
        return Err(match status {
            StatusCode::NOT_FOUND => {
                Error::NotFound(format!("manifest for {} not found: {m}", r.shown()))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                auth_error(status, &reg.endpoint.display, &m)
            }
            _ => Error::Unavailable(format!(
                "registry {}: GET manifest {reference}: {m}",
                reg.endpoint.display
            )),
        });
    }
    let content_type = resp.header("content-type").unwrap_or_default();
    let header_digest = resp.header("docker-content-digest");
    let body = resp.bytes().await?;
    let digest = sha256_digest(&body);
    if reference.starts_with("sha256:") && reference != digest {
        return Err(Error::DigestMismatch {
            what: format!("manifest {reference}"),
            expected: reference.to_string(),
            actual: digest,
        });
    }
    if let Some(h) = header_digest {
        if h.starts_with("sha256:") && h != digest {
            return Err(Error::DigestMismatch {
                what: format!("manifest for {}", r.shown()),
                expected: h,
                actual: digest,
            });
        }
    }
    Ok((body, digest, content_type))
}

async fn fetch_blob_bytes(reg: &Registry, r: &RemoteRef, d: &Descriptor) -> Result<Bytes> {
    let resp = reg
        .send(
            Method::GET,
            &format!("/v2/{}/blobs/{}", r.repository, d.digest),
            &[],
            Bytes::new(),
        )
        .await?;
    let status = resp.status;
    if !status.is_success() {
        let m = resp.error_message().await;
        return Err(blob_error(reg, r, &d.digest, status, &m));
    }
    let body = resp.bytes().await?;
    let mut v = Verifier::new(&d.digest, (d.size > 0).then_some(d.size as u64))?;
    v.update(&body)?;
    v.finish()?;
    Ok(body)
}

fn blob_error(reg: &Registry, r: &RemoteRef, digest: &str, status: StatusCode, m: &str) -> Error {
    match status {
        StatusCode::NOT_FOUND => Error::NotFound(format!(
            "blob {digest} of {} not found: {m}",
            r.familiar_name()
        )),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            auth_error(status, &reg.endpoint.display, m)
        }
        _ => Error::Unavailable(format!(
            "registry {}: GET blob {digest}: {m}",
            reg.endpoint.display
        )),
    }
}

/// Why a download stopped early because another layer of the pull failed (never shown:
/// the first error is the one reported).
fn cancelled() -> Error {
    Error::Internal("pull cancelled".into())
}

/// Downloads one layer and unpacks it as it arrives (progress "Downloading", throttled).
///
/// The response body is handed, frame by frame, to a blocking task that writes the blob
/// to a temp file, hashes it (the manifest's digest) and feeds it through the decompressor
/// and the tar extractor into a temp snapshot dir, hashing the tar stream (the diff ID).
/// Each byte is hashed once per digest and nothing is read back. The layer is returned
/// only when both digests match; otherwise both temp paths are gone when this returns.
async fn download(
    store: &Arc<Store>,
    reg: &Registry,
    r: &RemoteRef,
    d: &Descriptor,
    diff_id: &str,
    tx: &Progress,
    cancel: &mut watch::Receiver<bool>,
) -> Result<PulledLayer> {
    let id = short_digest(&d.digest);
    let path = format!("/v2/{}/blobs/{}", r.repository, d.digest);
    let resp = tokio::select! {
        resp = reg.send(Method::GET, &path, &[], Bytes::new()) => resp?,
        _ = cancel.wait_for(|c| *c) => return Err(cancelled()),
    };
    let status = resp.status;
    if !status.is_success() {
        let m = resp.error_message().await;
        return Err(blob_error(reg, r, &d.digest, status, &m));
    }
    let expected_size = (d.size > 0).then_some(d.size as u64);
    let verifier = Verifier::new(&d.digest, expected_size)?;
    let blob = TempPath::new(store.temp_path("pull"));
    let (data_tx, data_rx) = mpsc::channel::<Bytes>(32);
    let unpacker = {
        let store = store.clone();
        let path = blob.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut tee = match Tee::create(&path, data_rx, verifier) {
                Ok(t) => t,
                Err(e) => return (Err(e), None),
            };
            let unpacked = store.unpack_to_temp(&mut tee);
            // Whatever the extractor left (or all of it, when it failed): the blob's digest
            // is reported before anything unpacking said.
            (tee.finish(), Some(unpacked))
        })
    };
    let streamed = stream_body(reg, d, resp.body, data_tx, &id, tx, cancel).await;
    // The unpacker ends once the sender is gone; waiting for it means its temp dir is
    // either returned or removed before this returns.
    let (blob_checked, unpacked) = unpacker
        .await
        .map_err(|e| Error::Internal(format!("unpack task: {e}")))?;
    streamed?;
    let _ = tx.send(msg(&id, "Verifying Checksum", 0, 0)).await;
    blob_checked?;
    let _ = tx.send(msg(&id, "Download complete", 0, 0)).await;
    let (snapshot, unpacked) =
        unpacked.ok_or_else(|| Error::Internal("no unpack result".into()))??;
    if unpacked.diff_id != diff_id {
        return Err(Error::DigestMismatch {
            what: format!("layer {} (diff ID)", d.digest),
            expected: diff_id.to_string(),
            actual: unpacked.diff_id,
        });
    }
    let _ = tx.send(msg(&id, "Extracting", d.size, d.size)).await;
    let _ = tx.send(msg(&id, "Pull complete", 0, 0)).await;
    Ok(PulledLayer {
        blob,
        snapshot,
        diff_id: unpacked.diff_id,
        size: unpacked.size,
    })
}

/// Passes the body's frames to the unpacker, counting them against the expected size.
async fn stream_body(
    reg: &Registry,
    d: &Descriptor,
    mut body: hyper::body::Incoming,
    data_tx: mpsc::Sender<Bytes>,
    id: &str,
    tx: &Progress,
    cancel: &mut watch::Receiver<bool>,
) -> Result<()> {
    let mut throttle = Throttle::new(Duration::from_millis(100));
    let total = d.size;
    let mut received: u64 = 0;
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(Duration::from_secs(60), body.frame()) => frame,
            _ = cancel.wait_for(|c| *c) => return Err(cancelled()),
        };
        let frame = frame.map_err(|_| {
            Error::Unavailable(format!(
                "registry {}: download of {} stalled",
                reg.endpoint.display, d.digest
            ))
        })?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            Error::Unavailable(format!(
                "registry {}: download of {}: {e}",
                reg.endpoint.display, d.digest
            ))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len() as u64;
        if total > 0 && received > total as u64 {
            return Err(Error::DigestMismatch {
                what: format!("blob {}", d.digest),
                expected: format!("{total} bytes"),
                actual: format!("more than {total} bytes"),
            });
        }
        let sent = tokio::select! {
            sent = data_tx.send(data) => sent,
            _ = cancel.wait_for(|c| *c) => return Err(cancelled()),
        };
        if sent.is_err() {
            // The unpacker stopped (it reads to the end unless it failed): its result says why.
            break;
        }
        if throttle.ready() {
            let _ = tx
                .send(msg(id, "Downloading", received as i64, total))
                .await;
        }
    }
    let _ = tx
        .send(msg(id, "Downloading", received as i64, total))
        .await;
    Ok(())
}

/// The unpacker's reader: the blob's frames as they arrive, each written to the blob's
/// temp file and hashed on the way through.
struct Tee {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
    file: std::fs::File,
    path: std::path::PathBuf,
    verifier: Verifier,
    /// The first failure writing or checking the blob (the extractor only sees an I/O error).
    failed: Option<Error>,
    /// Bytes whose writeback was started.
    flushed: u64,
}

/// The blob's writeback is started every this many bytes.
const WRITEBACK_CHUNK: u64 = 8 << 20;

impl Tee {
    fn create(
        path: &std::path::Path,
        rx: mpsc::Receiver<Bytes>,
        verifier: Verifier,
    ) -> Result<Tee> {
        let file = std::fs::File::create(path).map_err(Error::io("create", path))?;
        Ok(Tee {
            rx,
            cur: Bytes::new(),
            file,
            path: path.to_path_buf(),
            verifier,
            failed: None,
            flushed: 0,
        })
    }

    /// The next frame, written and hashed; None at the end of the body.
    fn next_frame(&mut self) -> Option<Bytes> {
        let data = self.rx.blocking_recv()?;
        if self.failed.is_none() {
            if let Err(e) = self.verifier.update(&data) {
                self.failed = Some(e);
            } else if let Err(e) = std::io::Write::write_all(&mut self.file, &data) {
                self.failed = Some(Error::io("write", &self.path)(e));
            } else {
                let written = self.verifier.received;
                if written - self.flushed >= WRITEBACK_CHUNK {
                    crate::unpack::start_writeback(
                        &self.file,
                        self.flushed,
                        written - self.flushed,
                    );
                    self.flushed = written;
                }
            }
        }
        Some(data)
    }

    /// Takes the rest of the body and checks the blob's digest and size.
    fn finish(mut self) -> Result<()> {
        while self.next_frame().is_some() {}
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.verifier.finish()
    }
}

impl std::io::Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.next_frame() {
                Some(data) => self.cur = data,
                None => return Ok(0),
            }
            if self.failed.is_some() {
                return Err(std::io::Error::other("the layer blob could not be stored"));
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

pub async fn pull(
    store: Arc<Store>,
    inflight: Arc<Inflight>,
    req: PullRequest,
    tx: Progress,
) -> Result<ImageInfo> {
    let r = RemoteRef::parse(&req.reference, &req.registries)?;
    let want = parse_platform(&req.platform)?;
    let _ = tx
        .send(msg(
            r.tag
                .as_deref()
                .unwrap_or(r.digest.as_deref().unwrap_or("")),
            format!("Pulling from {}", r.repository),
            0,
            0,
        ))
        .await;
    // Mirrors first, in order, like Docker's registry-mirrors: any failure there falls
    // back to the next one and finally to the registry itself. Credentials are for that
    // registry only, so mirrors are asked anonymously.
    for mirror in req.registries.mirrors_of(&r.reference.domain) {
        let endpoint = Endpoint::for_mirror(&mirror)?;
        let session = Registry::new(
            endpoint,
            Credentials::default(),
            Some(format!("repository:{}:pull", r.repository)),
        )?;
        match pull_from(&store, &inflight, &r, session, &want, &tx).await {
            Ok(info) => return Ok(info),
            Err(e) => {
                tracing::warn!(%mirror, error = %e, "pull from mirror failed, trying the next source");
            }
        }
    }
    let session = Registry::new(
        r.endpoint.clone(),
        req.creds,
        Some(format!("repository:{}:pull", r.repository)),
    )?;
    pull_from(&store, &inflight, &r, session, &want, &tx).await
}

/// Pulls `r` through `reg` (the registry or one of its mirrors).
async fn pull_from(
    store: &Arc<Store>,
    inflight: &Inflight,
    r: &RemoteRef,
    reg: Registry,
    want: &super::Platform,
    tx: &Progress,
) -> Result<ImageInfo> {
    let reg = Arc::new(reg);
    let (body, top_digest, ct) = fetch_manifest(&reg, r, &r.manifest_ref()).await?;
    let mut doc: ManifestDoc = serde_json::from_slice(&body)
        .map_err(|e| Error::Unavailable(format!("invalid manifest for {}: {e}", r.shown())))?;
    if doc.is_index(&ct) {
        let chosen = select_platform(&doc.manifests, want).ok_or_else(|| {
            Error::NotFound(format!(
                "no matching manifest for {}/{}{} in the manifest list entries of {}",
                want.os,
                want.architecture,
                want.variant
                    .as_deref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default(),
                r.shown()
            ))
        })?;
        let (body, _, _) = fetch_manifest(&reg, r, &chosen.digest).await?;
        doc = serde_json::from_slice(&body)
            .map_err(|e| Error::Unavailable(format!("invalid manifest {}: {e}", chosen.digest)))?;
    }
    let config_desc = doc.config.clone().ok_or_else(|| {
        Error::Unavailable(format!(
            "manifest for {} has no config (schema 1 manifests are not supported)",
            r.shown()
        ))
    })?;
    for l in &doc.layers {
        if !is_layer_media_type(&l.media_type) {
            return Err(Error::InvalidArgument(format!(
                "layer {} of {} has the unsupported media type {:?}",
                l.digest,
                r.shown(),
                l.media_type
            )));
        }
    }
    // An image stored already is known by its config digest (its ID): its config is the
    // stored, verified one, so an up-to-date pull costs one manifest GET.
    let stored = store.get_image(&config_desc.digest).ok();
    let config: Bytes = match &stored {
        Some(info) => Bytes::from(info.config_json.clone()),
        None => fetch_blob_bytes(&reg, r, &config_desc).await?,
    };
    let cfg = ConfigDoc::parse(&config)?;
    if cfg.rootfs.diff_ids.len() != doc.layers.len() {
        return Err(Error::Unavailable(format!(
            "image config of {} lists {} layers but the manifest has {}",
            r.shown(),
            cfg.rootfs.diff_ids.len(),
            doc.layers.len()
        )));
    }
    // Chain IDs, to skip layers that are unpacked already.
    let mut chains = Vec::new();
    let mut parent: Option<String> = None;
    for diff in &cfg.rootfs.diff_ids {
        let c = match &parent {
            None => diff.clone(),
            Some(p) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{p} {diff}").as_bytes()))
            ),
        };
        parent = Some(c.clone());
        chains.push(c);
    }
    let image_id = sha256_digest(&config);

    let digests: Vec<String> = doc.layers.iter().map(|l| l.digest.clone()).collect();
    let _guards = inflight.lock_all(&digests).await;
    // Taken before looking: a layer found here stays until this pull has committed, even
    // if a concurrent rmi or prune removes the last image using it.
    let lease = store.lease(chains.iter().cloned());
    let result = fetch_and_commit(
        store,
        &reg,
        r,
        &doc,
        &chains,
        &cfg.rootfs.diff_ids,
        config,
        stored.is_some(),
        &top_digest,
        tx,
    )
    .await;
    drop(lease);
    if store.has_orphans() {
        let s = store.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = s.collect_orphans() {
                tracing::warn!(error = %e, "removing layers no image uses");
            }
        })
        .await;
    }
    let (info, changed) = result?;
    {
        // Remember where the blobs are, for cross-repository mounts on push.
        let s = store.clone();
        let mut blobs = digests;
        blobs.push(image_id);
        let (registry, repository) = (r.endpoint_name(), r.repository.clone());
        tokio::task::spawn_blocking(move || s.record_blob_sources(&blobs, &registry, &repository))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
    }
    let _ = tx
        .send(msg("", format!("Digest: {top_digest}"), 0, 0))
        .await;
    let status = if changed == 0 && stored.is_some() {
        format!("Status: Image is up to date for {}", r.shown())
    } else {
        format!("Status: Downloaded newer image for {}", r.shown())
    };
    let _ = tx.send(msg("", status, 0, 0)).await;
    Ok(info)
}

/// Layer media types berth unpacks (compression is detected from the content).
fn is_layer_media_type(mt: &str) -> bool {
    mt.is_empty()
        || matches!(
            mt,
            MT_DOCKER_LAYER_GZIP
                | MT_DOCKER_LAYER_ZSTD
                | MT_DOCKER_LAYER_FOREIGN
                | MT_OCI_LAYER_TAR
                | MT_OCI_LAYER_GZIP
                | MT_OCI_LAYER_ZSTD
                | MT_OCI_LAYER_NONDIST_TAR
                | MT_OCI_LAYER_NONDIST_GZIP
                | MT_OCI_LAYER_NONDIST_ZSTD
        )
}

/// Downloads the missing layers and stores the image; returns it with the number of
/// layers downloaded (for an image here already: 1 when a name was added, else 0).
#[allow(clippy::too_many_arguments)]
async fn fetch_and_commit(
    store: &Arc<Store>,
    reg: &Arc<Registry>,
    r: &RemoteRef,
    doc: &ManifestDoc,
    chains: &[String],
    diff_ids: &[String],
    config: Bytes,
    stored: bool,
    top_digest: &str,
    tx: &Progress,
) -> Result<(ImageInfo, usize)> {
    let mut needed = Vec::new();
    for (i, l) in doc.layers.iter().enumerate() {
        let id = short_digest(&l.digest);
        let have = {
            let s = store.clone();
            let c = chains[i].clone();
            tokio::task::spawn_blocking(move || s.has_chain(&c))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??
        };
        if have {
            let _ = tx.send(msg(&id, "Already exists", 0, 0)).await;
        } else {
            let _ = tx.send(msg(&id, "Pulling fs layer", 0, 0)).await;
            needed.push(i);
        }
    }
    let tag = if r.digest.is_none() {
        r.tag.as_ref().map(|t| format!("{}:{t}", r.familiar_name()))
    } else {
        None
    };
    let repo_digest = format!("{}@{top_digest}", r.familiar_name());
    if needed.is_empty() && stored {
        // Nothing to download or unpack: only the names, in one small transaction.
        let s = store.clone();
        let id = sha256_digest(&config);
        let (info, renamed) =
            tokio::task::spawn_blocking(move || s.name_pulled(&id, tag, &repo_digest))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
        return Ok((info, usize::from(renamed)));
    }

    // Download and unpack in parallel (bounded), every layer into its own temp dir (overlay
    // stacks them, so the order matters only at commit). The first failure stops the
    // others; each removes its temp files before it ends, so nothing is kept.
    let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut set = tokio::task::JoinSet::new();
    for &i in &needed {
        let d = doc.layers[i].clone();
        let diff_id = diff_ids[i].clone();
        let reg = reg.clone();
        let r = r.clone();
        let tx = tx.clone();
        let sem = sem.clone();
        let store = store.clone();
        let mut cancel = cancel_rx.clone();
        set.spawn(async move {
            let _permit = tokio::select! {
                p = sem.acquire_owned() => p,
                _ = cancel.wait_for(|c| *c) => return Err(cancelled()),
            };
            let _ = tx
                .send(msg(&short_digest(&d.digest), "Waiting", 0, 0))
                .await;
            let layer = download(&store, &reg, &r, &d, &diff_id, &tx, &mut cancel).await?;
            Ok::<_, Error>((i, layer))
        });
    }
    let mut pulled: Vec<Option<PulledLayer>> = (0..doc.layers.len()).map(|_| None).collect();
    let mut failed: Option<Error> = None;
    while let Some(res) = set.join_next().await {
        match res.map_err(|e| Error::Internal(format!("download task: {e}"))) {
            Ok(Ok((i, layer))) => pulled[i] = Some(layer),
            Ok(Err(e)) | Err(e) => {
                if failed.is_none() {
                    failed = Some(e);
                    let _ = cancel_tx.send(true);
                }
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }

    // Commit: rename the layers into place, one flush, one transaction.
    let layers: Vec<(Option<PulledLayer>, String)> = pulled
        .into_iter()
        .zip(&doc.layers)
        .map(|(p, l)| (p, l.digest.clone()))
        .collect();
    let info = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.commit_pulled(&config, layers, tag, &repo_digest))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??
    };
    Ok((info, needed.len()))
}
