//! PullImage: manifest (or index → platform) → config → layers downloaded in parallel,
//! verified while streaming, then unpacked once via the store.
use std::{sync::Arc, time::Duration};

use berth_proto::image::v1 as pb;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::{io::AsyncWriteExt, sync::mpsc};

use berth_common::config::RegistriesConfig;

use super::{
    client::{auth_error, Credentials, Registry},
    parse_platform,
    reference::{Endpoint, RemoteRef},
    select_platform, sha256_digest, short_digest, Descriptor, Inflight, ManifestDoc, TempFile,
    Throttle, Verifier, MT_DOCKER_LAYER_FOREIGN, MT_DOCKER_LAYER_GZIP, MT_DOCKER_LAYER_ZSTD,
    MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_NONDIST_GZIP,
    MT_OCI_LAYER_NONDIST_TAR, MT_OCI_LAYER_NONDIST_ZSTD, MT_OCI_LAYER_TAR, MT_OCI_LAYER_ZSTD,
    MT_OCI_MANIFEST,
};
use crate::{
    config::ConfigDoc,
    error::{Error, Result},
    store::{ImageInfo, Store},
};

/// Parallel layer downloads per pull.
const PARALLEL: usize = 3;

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

/// Streams one layer blob into `dest`, verifying it; progress "Downloading" (throttled).
async fn download(
    reg: &Registry,
    r: &RemoteRef,
    d: &Descriptor,
    dest: &TempFile,
    tx: &Progress,
) -> Result<()> {
    let id = short_digest(&d.digest);
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
    let mut body = resp.body;
    let mut file = tokio::fs::File::create(&dest.0)
        .await
        .map_err(Error::io("create", &dest.0))?;
    let mut v = Verifier::new(&d.digest, (d.size > 0).then_some(d.size as u64))?;
    let mut throttle = Throttle::new(Duration::from_millis(100));
    let total = d.size;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), body.frame())
            .await
            .map_err(|_| {
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
        if let Ok(data) = frame.into_data() {
            v.update(&data)?;
            file.write_all(&data)
                .await
                .map_err(Error::io("write", &dest.0))?;
            if throttle.ready() {
                let _ = tx
                    .send(msg(&id, "Downloading", v.received as i64, total))
                    .await;
            }
        }
    }
    file.sync_all().await.map_err(Error::io("sync", &dest.0))?;
    let _ = tx
        .send(msg(&id, "Downloading", v.received as i64, total))
        .await;
    let _ = tx.send(msg(&id, "Verifying Checksum", 0, 0)).await;
    v.finish()?;
    let _ = tx.send(msg(&id, "Download complete", 0, 0)).await;
    Ok(())
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

    // Download in parallel (bounded); any failure aborts the others and keeps nothing.
    let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    for &i in &needed {
        let d = doc.layers[i].clone();
        let reg = reg.clone();
        let r = r.clone();
        let tx = tx.clone();
        let sem = sem.clone();
        let dest = TempFile(store.temp_path("pull"));
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let _ = tx
                .send(msg(&short_digest(&d.digest), "Waiting", 0, 0))
                .await;
            download(&reg, &r, &d, &dest, &tx).await?;
            Ok::<_, Error>((i, dest))
        });
    }
    let mut files: Vec<Option<TempFile>> = (0..doc.layers.len()).map(|_| None).collect();
    while let Some(res) = set.join_next().await {
        match res.map_err(|e| Error::Internal(format!("download task: {e}"))) {
            Ok(Ok((i, f))) => files[i] = Some(f),
            Ok(Err(e)) | Err(e) => {
                // Wait for the other downloads to stop, so their temp files are gone
                // when the error is reported ("keeps nothing").
                set.shutdown().await;
                return Err(e);
            }
        }
    }

    // Unpack (once) and commit.
    let layers: Vec<(Option<std::path::PathBuf>, String)> = files
        .iter()
        .zip(&doc.layers)
        .map(|(f, l)| (f.as_ref().map(|f| f.0.clone()), l.digest.clone()))
        .collect();
    let sizes: Vec<i64> = doc.layers.iter().map(|l| l.size).collect();
    let short: Vec<String> = doc.layers.iter().map(|l| short_digest(&l.digest)).collect();
    let info = {
        let store = store.clone();
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut on_layer = |i: usize, done: bool| {
                let m = if done {
                    msg(&short[i], "Pull complete", 0, 0)
                } else {
                    msg(&short[i], "Extracting", sizes[i], sizes[i])
                };
                let _ = tx.blocking_send(m);
            };
            store.commit_pulled(&config, &layers, tag, &repo_digest, &mut on_layer)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??
    };
    drop(files);
    Ok((info, needed.len()))
}
