//! PushImage: each layer's stored blob as is (pulled/loaded blobs keep their compression),
//! the config, then a Docker v2 schema 2 manifest (OCI when a layer is uncompressed).
use std::{sync::Arc, time::Duration};

use berth_proto::image::v1 as pb;
use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::{io::AsyncReadExt, sync::mpsc};

use super::{
    client::{auth_error, urlencode, Credentials, Registry},
    reference::{insecure_from_env, Endpoint, RemoteRef},
    sha256_digest, short_digest, Throttle, MT_DOCKER_CONFIG, MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_MANIFEST,
};
use crate::error::{Error, Result};
use crate::store::Store;

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

/// Uploads `path` (or `data` when given) as blob `digest`: POST, PATCH chunks, PUT.
/// `progress(current)` after each chunk.
async fn upload_blob(
    reg: &Registry,
    repo: &str,
    digest: &str,
    source: BlobSource<'_>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<()> {
    let resp = reg
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[("content-length", "0".into())],
            Bytes::new(),
        )
        .await?;
    let status = resp.status;
    if status != StatusCode::ACCEPTED {
        let m = resp.error_message().await;
        return Err(upload_error(reg, repo, "starting an upload", status, &m));
    }
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

/// The media type of a stored layer blob, from its first bytes.
fn layer_kind(head: &[u8]) -> Result<bool> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(true)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(Error::InvalidArgument(
            "zstd layers cannot be pushed".into(),
        ))
    } else {
        Ok(false)
    }
}

pub async fn push(
    store: Arc<Store>,
    reference: String,
    creds: Credentials,
    tx: Progress,
) -> Result<String> {
    let r = RemoteRef::parse(&reference, &insecure_from_env())?;
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
    let reg = Registry::new(
        r.endpoint.clone(),
        creds,
        Some(format!("repository:{}:pull,push", r.repository)),
    )?;
    let _ = tx
        .send(msg(
            "",
            format!(
                "The push refers to repository [{}]",
                if r.endpoint == Endpoint::for_domain("docker.io", &[]) {
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
    let reg = Arc::new(reg);
    // Blobs kept from a pull or load are pushed as they are; uncompressed layers (import,
    // plain-tar OCI layers) as a gzip copy made once and remembered by the store.
    let mut descs = Vec::new();
    let mut pushed_layers = Vec::new();
    for (path, digest, size) in layers {
        let mut head = [0u8; 4];
        let n = {
            use std::io::Read;
            let mut f = std::fs::File::open(&path).map_err(Error::io("open", &path))?;
            f.read(&mut head).map_err(Error::io("read", &path))?
        };
        let (path, digest, size) = if layer_kind(&head[..n])? {
            (path, digest, size)
        } else {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.gzip_layer_blob(&digest))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??
        };
        descs.push((digest.clone(), size as i64));
        pushed_layers.push((path, digest, size));
    }
    let layers = pushed_layers;
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
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let id = short_digest(&digest);
            if blob_exists(&reg, &repo, &digest).await? {
                let _ = tx.send(msg(&id, "Layer already exists", 0, 0)).await;
                return Ok::<_, Error>(());
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
            upload_blob(&reg, &repo, &digest, BlobSource::File(&path), &mut progress).await?;
            let _ = tx.send(msg(&id, "Pushed", 0, 0)).await;
            Ok(())
        });
    }
    while let Some(res) = set.join_next().await {
        res.map_err(|e| Error::Internal(format!("upload task: {e}")))??;
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
            &mut |_| {},
        )
        .await?;
    }
    let (mt, config_mt) = (MT_DOCKER_MANIFEST, MT_DOCKER_CONFIG);
    let layer_json: Vec<serde_json::Value> = descs
        .iter()
        .map(|(d, size)| serde_json::json!({"mediaType": MT_DOCKER_LAYER_GZIP, "size": size, "digest": d}))
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
        tokio::task::spawn_blocking(move || s.add_repo_digest(&id, &rd))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
    }
    let mut last = msg("", format!("{tag}: digest: {digest} size: {size}"), 0, 0);
    last.digest = digest.clone();
    let _ = tx.send(last).await;
    Ok(digest)
}

/// CheckRegistryAuth: GET /v2/ with the credentials (following a bearer challenge).
pub async fn check_auth(registry: &str, creds: Credentials) -> Result<String> {
    let endpoint = Endpoint::for_domain(registry, &insecure_from_env());
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
