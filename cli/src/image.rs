//! Image commands: images, import, load, rmi, tag, save, history, image prune, commit.
use std::io::{Read, Write};
use std::time::SystemTime;

use anyhow::{Context, Result};
use berth_proto::engine::v1::CommitContainerRequest;
use berth_proto::image::v1::{
    upload_chunk, GetImageRequest, HistoryEntry, Image, ListImagesRequest, PruneImagesRequest,
    RemoveImageRequest, SaveImagesRequest, TagImageRequest, UploadChunk, UploadHeader,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::args::{
    CommitArgs, HistoryArgs, ImagePruneArgs, ImagesArgs, ImportArgs, LoadArgs, RmiArgs, SaveArgs,
    TagArgs,
};
use crate::client::Engine;
use crate::container::time_of;
use crate::format;

/// Upload chunk size.
const CHUNK: usize = 64 * 1024;

/// Splits `repo:tag` (a registry port is not a tag).
pub fn split_tag(reference: &str) -> (String, String) {
    let (name, digest) = reference
        .split_once('@')
        .map(|(n, d)| (n, Some(d)))
        .unwrap_or((reference, None));
    if digest.is_some() {
        return (name.to_string(), "<none>".to_string());
    }
    match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => {
            (name[..i].to_string(), name[i + 1..].to_string())
        }
        _ => (name.to_string(), "latest".to_string()),
    }
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

/// A repository as Docker shows it: Docker Hub's `docker.io/library/` prefix dropped,
/// other registries kept (`127.0.0.1:5000/bb`).
pub fn familiar_repo(repo: &str) -> String {
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    match repo.strip_prefix("library/") {
        Some(rest) if !rest.contains('/') => rest.to_string(),
        _ => repo.to_string(),
    }
}

/// Splits `repo@sha256:…` into the familiar repository and the digest.
fn split_digest(repo_digest: &str) -> Option<(String, String)> {
    let (repo, digest) = repo_digest.split_once('@')?;
    Some((familiar_repo(repo), digest.to_string()))
}

/// Rows of `images`: one per tag, `<none>` for untagged images (and, with digests, for a
/// repository known only by digest).
pub fn image_rows(images: &[Image], no_trunc: bool, now: SystemTime) -> Vec<Value> {
    let mut rows = Vec::new();
    for img in images {
        let created = time_of(&img.created);
        let digests: Vec<(String, String)> = img
            .repo_digests
            .iter()
            .filter_map(|d| split_digest(d))
            .collect();
        let row = |repo: String, tag: String| {
            let digest = digests
                .iter()
                .find(|(r, _)| *r == repo)
                .map(|(_, d)| d.clone())
                .unwrap_or_else(|| "<none>".into());
            json!({
                "Containers": "N/A",
                "CreatedAt": crate::container::created_at(created),
                "CreatedSince": created.map(|t| format::ago(t, now)).unwrap_or_else(|| "N/A".into()),
                "Digest": digest,
                "ID": short_id(&img.id, no_trunc),
                "Repository": repo,
                "SharedSize": "N/A",
                "Size": format::human_size(img.size),
                "Tag": tag,
                "UniqueSize": "N/A",
                "VirtualSize": format::human_size(img.size),
            })
        };
        let mut repos = Vec::new();
        for t in &img.repo_tags {
            let (repo, tag) = split_tag(t);
            let repo = familiar_repo(&repo);
            repos.push(repo.clone());
            rows.push(row(repo, tag));
        }
        for (repo, _) in &digests {
            if !repos.contains(repo) {
                repos.push(repo.clone());
                rows.push(row(repo.clone(), "<none>".into()));
            }
        }
        if repos.is_empty() {
            rows.push(row("<none>".into(), "<none>".into()));
        }
    }
    rows
}

/// `berth images`.
pub async fn images(mut engine: Engine, args: ImagesArgs) -> Result<i32> {
    let mut list = engine
        .list_images(ListImagesRequest { all: args.all })
        .await?
        .into_inner()
        .images;
    list.sort_by(|a, b| {
        time_of(&b.created)
            .cmp(&time_of(&a.created))
            .then_with(|| a.id.cmp(&b.id))
    });
    if let Some(reference) = &args.reference {
        let (want_repo, want_tag) = split_tag(reference);
        let explicit_tag = reference.contains(':');
        list.retain(|img| {
            img.repo_tags.iter().any(|t| {
                let (r, tag) = split_tag(t);
                familiar_repo(&r) == familiar_repo(&want_repo) && (!explicit_tag || tag == want_tag)
            })
        });
    }
    let now = SystemTime::now();
    let mut out = String::new();
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for img in &list {
            let id = short_id(&img.id, args.no_trunc);
            if seen.insert(id.clone()) {
                out.push_str(&id);
                out.push('\n');
            }
        }
    } else {
        let rows = image_rows(&list, args.no_trunc, now);
        let headers = json!({
            "Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED",
            "CreatedAt": "CREATED AT", "Size": "SIZE", "Digest": "DIGEST", "Containers": "CONTAINERS",
            "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
        });
        match format::listing(args.format.as_deref().unwrap_or(""), &headers, &rows)? {
            Some(text) => out = text,
            None => {
                let cols: &[&str] = if args.digests {
                    &["Repository", "Tag", "Digest", "ID", "CreatedSince", "Size"]
                } else {
                    &["Repository", "Tag", "ID", "CreatedSince", "Size"]
                };
                let mut table = vec![cols
                    .iter()
                    .map(|c| headers[c].as_str().unwrap().to_string())
                    .collect()];
                for row in &rows {
                    table.push(
                        cols.iter()
                            .map(|c| row[c].as_str().unwrap_or_default().to_string())
                            .collect(),
                    );
                }
                out = format::table(&table);
            }
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(0)
}

/// Opens `file` (`-` is stdin) and streams it on a thread as upload chunks after `header`.
fn upload(file: &str, header: UploadHeader) -> Result<ReceiverStream<UploadChunk>> {
    let mut reader: Box<dyn Read + Send> = if file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("open {file}"))?)
    };
    let (tx, rx) = mpsc::channel(8);
    tx.try_send(UploadChunk {
        part: Some(upload_chunk::Part::Header(header)),
    })
    .expect("the channel has room for the header");
    let name = file.to_string();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match read_full(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    eprintln!("error reading {name}: {e}");
                    // Dropping the sender without finishing would look like EOF; abort instead.
                    std::process::exit(125);
                }
            };
            let chunk = UploadChunk {
                part: Some(upload_chunk::Part::Data(buf[..n].to_vec())),
            };
            if tx.blocking_send(chunk).is_err() {
                break;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// Reads until `buf` is full or EOF, so chunks are full-sized.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// `berth import`: prints the new image's ID.
pub async fn import(mut engine: Engine, args: ImportArgs) -> Result<i32> {
    let header = UploadHeader {
        reference: args.reference.clone().unwrap_or_default(),
        changes: args.change.clone(),
        message: args.message.clone().unwrap_or_default(),
    };
    let stream = upload(&args.file, header)?;
    let resp = engine.import_image(stream).await?.into_inner();
    println!("{}", resp.image.map(|i| i.id).unwrap_or_default());
    Ok(0)
}

/// `berth load`.
pub async fn load(mut engine: Engine, args: LoadArgs) -> Result<i32> {
    let file = args.input.clone().unwrap_or_else(|| "-".into());
    if file == "-" && nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        anyhow::bail!("requested load from stdin, but stdin is empty");
    }
    let stream = upload(&file, UploadHeader::default())?;
    let resp = engine.load_images(stream).await?.into_inner();
    if !args.quiet {
        let mut out = String::new();
        for img in &resp.images {
            if img.repo_tags.is_empty() {
                out.push_str(&format!("Loaded image ID: {}\n", img.id));
            }
            for t in &img.repo_tags {
                out.push_str(&format!("Loaded image: {t}\n"));
            }
        }
        std::io::stdout().write_all(out.as_bytes())?;
    }
    Ok(0)
}

/// `berth rmi`.
pub async fn rmi(mut engine: Engine, args: RmiArgs) -> Result<i32> {
    let mut code = 0;
    for reference in &args.images {
        match engine
            .remove_image(RemoveImageRequest {
                reference: reference.clone(),
                force: args.force,
            })
            .await
        {
            Ok(resp) => {
                let resp = resp.into_inner();
                for u in &resp.untagged {
                    println!("Untagged: {u}");
                }
                for d in &resp.deleted {
                    println!("Deleted: {d}");
                }
            }
            Err(st) if crate::client::is_connect_error(&st) => return Err(st.into()),
            Err(st) => {
                eprintln!("Error response from daemon: {}", st.message());
                code = 125;
            }
        }
    }
    Ok(code)
}

/// `berth tag`.
pub async fn tag(mut engine: Engine, args: TagArgs) -> Result<i32> {
    engine
        .tag_image(TagImageRequest {
            source: args.source,
            target: args.target,
        })
        .await?;
    Ok(0)
}

/// `berth save`: to `-o FILE` (through a temp file renamed into place), else to STDOUT
/// unless it is a terminal.
pub async fn save(mut engine: Engine, args: SaveArgs) -> Result<i32> {
    let to_stdout = args
        .output
        .as_deref()
        .is_none_or(|o| o.is_empty() || o == "-");
    if to_stdout && nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
        anyhow::bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let mut stream = engine
        .save_images(SaveImagesRequest {
            references: args.images.clone(),
        })
        .await?
        .into_inner();
    if to_stdout {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.message().await? {
            out.write_all(&chunk.data)?;
        }
        out.flush()?;
        return Ok(0);
    }
    let dest = std::path::PathBuf::from(args.output.clone().unwrap_or_default());
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".berth-save-")
        .tempfile_in(&dir)
        .with_context(|| format!("failed to save image: create a file in {}", dir.display()))?;
    while let Some(chunk) = stream.message().await? {
        tmp.write_all(&chunk.data)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&dest)
        .with_context(|| format!("failed to save image: write {}", dest.display()))?;
    Ok(0)
}

/// The rows `berth history` prints (header first), Docker's columns and truncation.
pub fn history_rows(
    entries: &[HistoryEntry],
    args: &HistoryArgs,
    now: SystemTime,
) -> Vec<Vec<String>> {
    let id = |e: &HistoryEntry| {
        if e.id == "<missing>" || args.no_trunc {
            e.id.clone()
        } else {
            short_id(&e.id, false)
        }
    };
    if args.quiet {
        return entries.iter().map(|e| vec![id(e)]).collect();
    }
    let mut rows = vec![vec![
        "IMAGE".to_string(),
        "CREATED".into(),
        "CREATED BY".into(),
        "SIZE".into(),
        "COMMENT".into(),
    ]];
    for e in entries {
        let created = match time_of(&e.created) {
            Some(t) if args.human => format::ago(t, now),
            Some(_) => e.created.clone(),
            None => "N/A".into(),
        };
        let by = e.created_by.replace('\t', " ");
        let by = if args.no_trunc {
            by
        } else {
            format::ellipsis(&by, 45)
        };
        let size = if args.human {
            format::human_size(e.size)
        } else {
            e.size.to_string()
        };
        rows.push(vec![id(e), created, by, size, e.comment.clone()]);
    }
    rows
}

/// `berth history`.
pub async fn history(mut engine: Engine, args: HistoryArgs) -> Result<i32> {
    let resp = engine
        .image_history(GetImageRequest {
            reference: args.image.clone(),
        })
        .await?
        .into_inner();
    let rows = history_rows(&resp.entries, &args, SystemTime::now());
    let out = if args.quiet {
        rows.iter().map(|r| format!("{}\n", r[0])).collect()
    } else {
        format::table(&rows)
    };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(0)
}

/// `berth image prune`.
pub async fn prune(mut engine: Engine, args: ImagePruneArgs) -> Result<i32> {
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !args.force && !crate::container::confirm(warning)? {
        return Ok(0);
    }
    let resp = engine
        .prune_images(PruneImagesRequest { all: args.all })
        .await?
        .into_inner();
    let mut out = String::new();
    if !resp.untagged.is_empty() || !resp.deleted.is_empty() {
        out.push_str("Deleted Images:\n");
        for u in &resp.untagged {
            out.push_str(&format!("untagged: {u}\n"));
        }
        for d in &resp.deleted {
            out.push_str(&format!("deleted: {d}\n"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        format::human_size_prec(resp.space_reclaimed.max(0) as f64, 4)
    ));
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(0)
}

/// `berth commit`: prints the new image's ID.
pub async fn commit(mut engine: Engine, args: CommitArgs) -> Result<i32> {
    let image = engine
        .commit_container(CommitContainerRequest {
            container: args.container.clone(),
            reference: args.reference.clone().unwrap_or_default(),
            changes: args.change.clone(),
            message: args.message.clone().unwrap_or_default(),
            author: args.author.clone().unwrap_or_default(),
            pause: args.pause,
        })
        .await?
        .into_inner();
    println!("{}", image.id);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(
            split_tag("busybox:latest"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(split_tag("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            split_tag("reg:5000/a/b:t"),
            ("reg:5000/a/b".into(), "t".into())
        );
        assert_eq!(
            split_tag("reg:5000/a/b"),
            ("reg:5000/a/b".into(), "latest".into())
        );
        assert_eq!(split_tag("a@sha256:00"), ("a".into(), "<none>".into()));
    }

    #[test]
    fn rows() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let img = Image {
            id: "sha256:0123456789abcdef".into(),
            repo_tags: vec!["busybox:latest".into(), "bb:1".into()],
            created: "2023-11-14T22:10:20Z".into(),
            size: 4_261_234,
            ..Default::default()
        };
        let untagged = Image {
            id: "sha256:fedcba9876543210".into(),
            ..Default::default()
        };
        let rows = image_rows(&[img, untagged], false, now);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["Repository"], "busybox");
        assert_eq!(rows[0]["ID"], "0123456789ab");
        assert_eq!(rows[0]["Size"], "4.26MB");
        assert_eq!(rows[0]["CreatedSince"], "3 minutes ago");
        assert_eq!(rows[1]["Tag"], "1");
        assert_eq!(rows[2]["Repository"], "<none>");
        assert_eq!(rows[0]["Digest"], "<none>");
    }

    #[test]
    fn registry_names_and_digests() {
        assert_eq!(familiar_repo("docker.io/library/busybox"), "busybox");
        assert_eq!(familiar_repo("docker.io/me/app"), "me/app");
        assert_eq!(familiar_repo("127.0.0.1:5000/bb"), "127.0.0.1:5000/bb");
        let now = SystemTime::UNIX_EPOCH;
        let img = Image {
            id: "sha256:0123456789abcdef".into(),
            repo_tags: vec![
                "127.0.0.1:5000/bb:1".into(),
                "docker.io/library/busybox:latest".into(),
            ],
            repo_digests: vec![
                "127.0.0.1:5000/bb@sha256:aaa".into(),
                "127.0.0.1:5000/other@sha256:bbb".into(),
            ],
            ..Default::default()
        };
        let rows = image_rows(&[img], false, now);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["Repository"], "127.0.0.1:5000/bb");
        assert_eq!(rows[0]["Tag"], "1");
        assert_eq!(rows[0]["Digest"], "sha256:aaa");
        assert_eq!(rows[1]["Repository"], "busybox");
        assert_eq!(rows[1]["Digest"], "<none>");
        assert_eq!(rows[2]["Repository"], "127.0.0.1:5000/other");
        assert_eq!(rows[2]["Tag"], "<none>");
        assert_eq!(rows[2]["Digest"], "sha256:bbb");
    }

    #[test]
    fn full_reads() {
        let data = vec![7u8; 100_000];
        let mut r: &[u8] = &data;
        let mut buf = vec![0u8; CHUNK];
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), CHUNK);
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 100_000 - CHUNK);
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 0);
    }
}
