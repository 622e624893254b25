//! PushImage: each layer's stored blob as is (pulled/loaded blobs keep their compression),
//! the config, then a Docker v2 schema 2 manifest (OCI when a layer is uncompressed).
use std::{sync::Arc, time::Duration};

use berth_proto::image::v1 as pb;
use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::{io::AsyncReadExt, sync::mpsc};

use berth_common::config::RegistriesConfig;

use super::{
    client::{auth_error, urlencode, Credentials, Registry},
    reference::{Endpoint, RemoteRef},
    sha256_digest, short_digest, Throttle, MT_DOCKER_CONFIG, MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_MANIFEST, MT_OCI_CONFIG, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD, MT_OCI_MANIFEST,
};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::unpack::Compression;

pub type Progress = mpsc::Sender<pb::PushProgress>;

fn msg(id: &str, status: impl Into<String>, current: i64, total: i64) -> pb::PushProgress {
    pb::PushProgress {
        id: id.to_string(),
        status: status.into(),
        current,
        total,
        digest: String::new(),
    }
}

async fn blob_exists(reg: &Registry, repo: &str, digest: &str) -> Result<bool> {
    let resp = reg
        .send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            Bytes::new(),
        )
        .await?;
    let status = resp.status;
    let _ = resp.bytes().await;
    match status {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(auth_error(
            status,
            &reg.endpoint.display,
            "authentication required",
        )),
        s => Err(Error::Unavailable(format!(
            "registry {}: HEAD blob {digest}: {s}",
            reg.endpoint.display
        ))),
    }
}

/// Upload chunk size (PATCH requests).
const CHUNK: usize = 8 << 20;

/// Layers pushed at the same time.
const PARALLEL: usize = 3;

fn upload_error(reg: &Registry, repo: &str, what: &str, status: StatusCode, m: &str) -> Error {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            auth_error(status, &reg.endpoint.display, m)
        }
        StatusCode::NOT_FOUND => Error::NotFound(format!(
            "registry {}: repository {repo}: {m}",
            reg.endpoint.display
        )),
        _ => Error::Unavailable(format!("registry {}: {what}: {m}", reg.endpoint.display)),
    }
}

/// What `POST /v2/<repo>/blobs/uploads/` gave.
enum Started {
    /// `?mount=` worked (201): the blob is in the repository now.
    Mounted,
    /// An upload session at this response's Location (202).
    Session(super::client::Response),
}

/// Starts an upload of `digest`, asking the registry to mount it from `from` (another
/// repository of the same registry) when given.
async fn start_upload(
    reg: &Registry,
    repo: &str,
    digest: &str,
    from: Option<&str>,
) -> Result<Started> {
    let path = match from {
        Some(from) => format!(
            "/v2/{repo}/blobs/uploads/?mount={}&from={}",
            urlencode(digest),
            urlencode(from)
        ),
        None => format!("/v2/{repo}/blobs/uploads/"),
    };
    let resp = reg
        .send(
            Method::POST,
            &path,
            &[("content-length", "0".into())],
            Bytes::new(),
        )
        .await?;
    match resp.status {
        StatusCode::CREATED if from.is_some() => {
            let _ = resp.bytes().await;
            Ok(Started::Mounted)
        }
        StatusCode::ACCEPTED => Ok(Started::Session(resp)),
        status => {
            let m = resp.error_message().await;
            Err(upload_error(reg, repo, "starting an upload", status, &m))
        }
    }
}

/// Uploads `path` (or `data` when given) as blob `digest`: POST (unless `session` is one
/// already started), PATCH chunks, PUT. `progress(current)` after each chunk.
async fn upload_blob(
    reg: &Registry,
    repo: &str,
    digest: &str,
    source: BlobSource<'_>,
    session: Option<super::client::Response>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<()> {
    let resp = match session {
        Some(resp) => resp,
        None => match start_upload(reg, repo, digest, None).await? {
            Started::Session(resp) => resp,
            Started::Mounted => return Ok(()),
        },
    };
    let base = reg.url(&format!("/v2/{repo}/blobs/uploads/"));
    let next_location = |resp: &super::client::Response| -> Result<String> {
        let loc = resp.header("location").ok_or_else(|| {
            Error::Unavailable(format!(
                "registry {}: upload answered without a Location",
                reg.endpoint.display
            ))
        })?;
        Ok(reg.resolve_location(&base, &loc))
    };
    let mut loc = next_location(&resp)?;
    let _ = resp.bytes().await;
    let mut file = match &source {
        BlobSource::File(p) => Some(
            tokio::fs::File::open(p)
                .await
                .map_err(Error::io("open", *p))?,
        ),
        BlobSource::Bytes(_) => None,
    };
    let mut offset: u64 = 0;
    let mut whole = match &source {
        BlobSource::Bytes(b) => Some(b.clone()),
        BlobSource::File(_) => None,
    };
    loop {
        let chunk = if let Some(f) = file.as_mut() {
            let mut buf = vec![0u8; CHUNK];
            let mut n = 0;
            while n < CHUNK {
                let r = f
                    .read(&mut buf[n..])
                    .await
                    .map_err(|e| Error::Internal(format!("reading the blob {digest}: {e}")))?;
                if r == 0 {
                    break;
                }
                n += r;
            }
            buf.truncate(n);
            Bytes::from(buf)
        } else {
            whole.take().unwrap_or_default()
        };
        if chunk.is_empty() {
            break;
        }
        let len = chunk.len() as u64;
        let resp = reg
            .send(
                Method::PATCH,
                &loc,
                &[
                    ("content-type", "application/octet-stream".into()),
                    ("content-length", len.to_string()),
                    ("content-range", format!("{offset}-{}", offset + len - 1)),
                ],
                chunk,
            )
            .await?;
        let status = resp.status;
        if status != StatusCode::ACCEPTED {
            let m = resp.error_message().await;
            return Err(upload_error(
                reg,
                repo,
                &format!("uploading {digest}"),
                status,
                &m,
            ));
        }
        loc = next_location(&resp)?;
        let _ = resp.bytes().await;
        offset += len;
        progress(offset);
        if file.is_none() {
            break;
        }
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let url = format!("{loc}{sep}digest={}", urlencode(digest));
    let resp = reg
        .send(
            Method::PUT,
            &url,
            &[("content-length", "0".into())],
            Bytes::new(),
        )
        .await?;
    let status = resp.status;
    if !status.is_success() {
        let m = resp.error_message().await;
        return Err(upload_error(
            reg,
            repo,
            &format!("completing {digest}"),
            status,
            &m,
        ));
    }
    let _ = resp.bytes().await;
    Ok(())
}

enum BlobSource<'a> {
    File(&'a std::path::Path),
    Bytes(Bytes),
}

/// Mount attempts per layer (Docker tries up to 3 candidate repositories).
const MOUNT_CANDIDATES: usize = 3;

pub async fn push(
    store: Arc<Store>,
    reference: String,
    creds: Credentials,
    registries: Arc<RegistriesConfig>,
    tx: Progress,
) -> Result<String> {
    let r = RemoteRef::parse(&reference, &registries)?;
    if r.digest.is_some() {
        return Err(Error::InvalidArgument(format!(
            "cannot push a digest reference: {reference}"
        )));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let local = format!("{}:{tag}", r.familiar_name());
    let (info, layers) = {
        let s = store.clone();
        let l = local.clone();
        tokio::task::spawn_blocking(move || s.push_source(&l))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| match e {
                Error::ImageNotFound(_) => {
                    Error::ImageNotFound(format!("{local} (tag does not exist)"))
                }
                e => e,
            })?
    };
    let mut reg = Registry::new(
        r.endpoint.clone(),
        creds,
        Some(format!("repository:{}:pull,push", r.repository)),
    )?;
    let _ = tx
        .send(msg(
            "",
            format!(
                "The push refers to repository [{}]",
                if r.endpoint == Endpoint::for_domain("docker.io", &RegistriesConfig::default()) {
                    r.reference.full_name()
                } else {
                    r.familiar_name()
                }
            ),
            0,
            0,
        ))
        .await;
    for (_, d, _) in layers.iter().rev() {
        let _ = tx.send(msg(&short_digest(d), "Preparing", 0, 0)).await;
    }
    // Blobs kept from a pull or load are pushed as they are (gzip or zstd); uncompressed
    // layers (import, plain-tar OCI layers) as a gzip copy made once and remembered by the
    // store.
    let mut descs = Vec::new();
    let mut pushed_layers = Vec::new();
    for (path, digest, size) in layers {
        let compression = Compression::of_file(&path)?;
        let (path, digest, size) = if compression == Compression::None {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.gzip_layer_blob(&digest))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??
        } else {
            (path, digest, size)
        };
        let zstd = compression == Compression::Zstd;
        descs.push((digest.clone(), size as i64, zstd));
        pushed_layers.push((path, digest, size));
    }
    let layers = pushed_layers;
    // Other repositories of this registry known to hold each layer: mounted from there
    // rather than uploaded. A bearer token must allow pulling from them too.
    let registry_name = r.endpoint_name();
    let mut mounts: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (_, digest, _) in &layers {
        let s = store.clone();
        let (d, name) = (digest.clone(), registry_name.clone());
        let mut from = tokio::task::spawn_blocking(move || s.blob_sources(&d, &name))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        from.retain(|repo| *repo != r.repository);
        from.truncate(MOUNT_CANDIDATES);
        for repo in &from {
            reg.add_scope(format!("repository:{repo}:pull"));
        }
        mounts.insert(digest.clone(), from);
    }
    let reg = Arc::new(reg);
    let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    let mut seen = std::collections::HashSet::new();
    for (path, digest, size) in layers.iter().rev() {
        if !seen.insert(digest.clone()) {
            continue;
        }
        let (reg, sem, tx) = (reg.clone(), sem.clone(), tx.clone());
        let (path, digest, size) = (path.clone(), digest.clone(), *size);
        let repo = r.repository.clone();
        let candidates = mounts.remove(&digest).unwrap_or_default();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let id = short_digest(&digest);
            if blob_exists(&reg, &repo, &digest).await? {
                let _ = tx.send(msg(&id, "Layer already exists", 0, 0)).await;
                return Ok::<_, Error>(digest);
            }
            // Cross-repository mount: 201 means done; 202 means the registry could not
            // mount and opened an ordinary upload, which we use.
            let mut session = None;
            for from in &candidates {
                match start_upload(&reg, &repo, &digest, Some(from)).await {
                    Ok(Started::Mounted) => {
                        let _ = tx
                            .send(msg(&id, format!("Mounted from {from}"), 0, 0))
                            .await;
                        return Ok(digest);
                    }
                    Ok(Started::Session(resp)) => {
                        session = Some(resp);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(%from, error = %e, "cross-repository mount refused");
                    }
                }
            }
            let _ = tx.send(msg(&id, "Pushing", 0, size as i64)).await;
            let mut throttle = Throttle::new(Duration::from_millis(100));
            let ptx = tx.clone();
            let pid = id.clone();
            let mut progress = move |cur: u64| {
                if throttle.ready() || cur == size {
                    let _ = ptx.try_send(msg(&pid, "Pushing", cur as i64, size as i64));
                }
            };
            upload_blob(
                &reg,
                &repo,
                &digest,
                BlobSource::File(&path),
                session,
                &mut progress,
            )
            .await?;
            let _ = tx.send(msg(&id, "Pushed", 0, 0)).await;
            Ok(digest)
        });
    }
    let mut present = Vec::new();
    while let Some(res) = set.join_next().await {
        present.push(res.map_err(|e| Error::Internal(format!("upload task: {e}")))??);
    }
    // Config.
    let config = Bytes::from(info.config_json.clone());
    let config_digest = sha256_digest(&config);
    if !blob_exists(&reg, &r.repository, &config_digest).await? {
        upload_blob(
            &reg,
            &r.repository,
            &config_digest,
            BlobSource::Bytes(config.clone()),
            None,
            &mut |_| {},
        )
        .await?;
    }
    present.push(config_digest.clone());
    // Docker's schema 2 has no zstd layer type: an image with one goes out as OCI.
    let oci = descs.iter().any(|(_, _, zstd)| *zstd);
    let (mt, config_mt) = if oci {
        (MT_OCI_MANIFEST, MT_OCI_CONFIG)
    } else {
        (MT_DOCKER_MANIFEST, MT_DOCKER_CONFIG)
    };
    let layer_json: Vec<serde_json::Value> = descs
        .iter()
        .map(|(d, size, zstd)| {
            let layer_mt = match (oci, zstd) {
                (true, true) => MT_OCI_LAYER_ZSTD,
                (true, false) => MT_OCI_LAYER_GZIP,
                (false, _) => MT_DOCKER_LAYER_GZIP,
            };
            serde_json::json!({"mediaType": layer_mt, "size": size, "digest": d})
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {"mediaType": config_mt, "size": config.len(), "digest": config_digest},
        "layers": layer_json,
    });
    let body = Bytes::from(
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?,
    );
    let digest = sha256_digest(&body);
    let size = body.len();
    let resp = reg
        .send(
            Method::PUT,
            &format!("/v2/{}/manifests/{tag}", r.repository),
            &[("content-type", mt.to_string())],
            body,
        )
        .await?;
    let status = resp.status;
    if !status.is_success() {
        let m = resp.error_message().await;
        return Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                auth_error(status, &reg.endpoint.display, &m)
            }
            _ => Error::Unavailable(format!(
                "registry {}: PUT manifest {tag}: {m}",
                reg.endpoint.display
            )),
        });
    }
    let _ = resp.bytes().await;
    {
        let s = store.clone();
        let id = info.id.clone();
        let rd = format!("{}@{digest}", r.familiar_name());
        let repo = r.repository.clone();
        tokio::task::spawn_blocking(move || {
            s.add_repo_digest(&id, &rd)?;
            s.record_blob_sources(&present, &registry_name, &repo)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    }
    let mut last = msg("", format!("{tag}: digest: {digest} size: {size}"), 0, 0);
    last.digest = digest.clone();
    let _ = tx.send(last).await;
    Ok(digest)
}

/// CheckRegistryAuth: GET /v2/ with the credentials (following a bearer challenge).
pub async fn check_auth(
    registry: &str,
    creds: Credentials,
    registries: &RegistriesConfig,
) -> Result<String> {
    let endpoint = Endpoint::for_domain(registry, registries);
    let display = endpoint.display.clone();
    let reg = Registry::new(endpoint, creds, None)?;
    let resp = reg.send(Method::GET, "/v2/", &[], Bytes::new()).await?;
    let status = resp.status;
    if status.is_success() {
        let _ = resp.bytes().await;
        return Ok("Login Succeeded".into());
    }
    let m = resp.error_message().await;
    Err(match status {
        StatusCode::UNAUTHORIZED => Error::Unauthenticated(format!(
            "login to {display} failed: unauthorized: incorrect username or password ({m})"
        )),
        StatusCode::FORBIDDEN => auth_error(status, &display, &m),
        _ => Error::Unavailable(format!("registry {display}: GET /v2/: {m}")),
    })
}
