//! Helpers shared by the image store's integration tests: tarballs built in memory,
//! docker-archive and OCI layouts, and the busybox test image from deploy/images.
#![allow(dead_code)]
pub mod registry;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use sha2::{Digest, Sha256};
use tar::EntryType;

/// One tar entry; names and link targets are written raw (no sanitizing), so tests can
/// build malicious archives.
#[derive(Clone)]
pub struct E {
    pub kind: EntryType,
    pub name: String,
    pub link: Option<String>,
    pub data: Vec<u8>,
    pub mode: u32,
}

pub fn dir(name: &str) -> E {
    E {
        kind: EntryType::Directory,
        name: name.into(),
        link: None,
        data: vec![],
        mode: 0o755,
    }
}
pub fn file(name: &str, data: &str) -> E {
    E {
        kind: EntryType::Regular,
        name: name.into(),
        link: None,
        data: data.as_bytes().to_vec(),
        mode: 0o644,
    }
}
pub fn symlink(name: &str, target: &str) -> E {
    E {
        kind: EntryType::Symlink,
        name: name.into(),
        link: Some(target.into()),
        data: vec![],
        mode: 0o777,
    }
}
pub fn hardlink(name: &str, target: &str) -> E {
    E {
        kind: EntryType::Link,
        name: name.into(),
        link: Some(target.into()),
        data: vec![],
        mode: 0o644,
    }
}

pub fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(e.data.len() as u64);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        if let Some(link) = &e.link {
            old.linkname = [0; 100];
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

pub fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// An image config naming the given layers' diff IDs.
pub fn config_for(layers: &[&[u8]], cmd: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2020-01-01T00:00:00Z",
        "config": {"Cmd": [cmd], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// A docker-archive (`docker save` v1 layout): `<hex>.json` configs, `<n>/layer.tar`
/// layers, manifest.json. `images` = (repo tags, uncompressed layers, cmd).
/// (repo tags, uncompressed layers, cmd) of one image in a docker-archive.
pub type ArchiveImage<'a> = (&'a [&'a str], Vec<Vec<u8>>, &'a str);

pub fn docker_archive(images: &[ArchiveImage<'_>]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut manifest = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (tags, layers, cmd) in images {
        let refs: Vec<&[u8]> = layers.iter().map(|l| &l[..]).collect();
        let config = config_for(&refs, cmd);
        let config_name = format!("{}.json", hex_of(&sha(&config)));
        entries.push(E {
            kind: EntryType::Regular,
            name: config_name.clone(),
            link: None,
            data: config,
            mode: 0o644,
        });
        let mut layer_names = Vec::new();
        for l in layers {
            let digest = sha(l);
            let id = &hex_of(&digest)[..16];
            let name = format!("{id}/layer.tar");
            if seen.insert(name.clone()) {
                entries.push(dir(&format!("{id}/")));
                entries.push(E {
                    kind: EntryType::Regular,
                    name: name.clone(),
                    link: None,
                    data: l.clone(),
                    mode: 0o644,
                });
            }
            layer_names.push(name);
        }
        manifest.push(
            serde_json::json!({"Config": config_name, "RepoTags": tags, "Layers": layer_names}),
        );
    }
    entries.push(E {
        kind: EntryType::Regular,
        name: "manifest.json".into(),
        link: None,
        data: serde_json::to_vec(&manifest).unwrap(),
        mode: 0o644,
    });
    tar_of(&entries)
}

/// An OCI image layout with one image; `layers` are blobs as stored (maybe gzip) with
/// their uncompressed form. `bad_layer_digest` replaces the first layer's digest.
pub fn oci_layout(
    ref_name: &str,
    layers: &[(Vec<u8>, Vec<u8>)],
    bad_layer_digest: Option<&str>,
) -> Vec<u8> {
    let raw: Vec<&[u8]> = layers.iter().map(|(_, u)| &u[..]).collect();
    let config = config_for(&raw, "sh");
    let mut entries = vec![file("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#)];
    fn blob_in(entries: &mut Vec<E>, bytes: &[u8]) -> String {
        entries.push(E {
            kind: EntryType::Regular,
            name: format!("blobs/sha256/{}", hex_of(&sha(bytes))),
            link: None,
            data: bytes.to_vec(),
            mode: 0o644,
        });
        sha(bytes)
    }
    let config_digest = blob_in(&mut entries, &config);
    let mut descs = Vec::new();
    for (i, (stored, _)) in layers.iter().enumerate() {
        let d = match bad_layer_digest {
            // The blob stored under a name that is not its digest.
            Some(bad) if i == 0 => {
                entries.push(E {
                    kind: EntryType::Regular,
                    name: format!("blobs/sha256/{}", hex_of(bad)),
                    link: None,
                    data: stored.clone(),
                    mode: 0o644,
                });
                bad.to_string()
            }
            _ => blob_in(&mut entries, stored),
        };
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": stored.len()}));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let manifest_digest = blob_in(&mut entries, &manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                       "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": ref_name}}],
    }))
    .unwrap();
    entries.push(E {
        kind: EntryType::Regular,
        name: "index.json".into(),
        link: None,
        data: index,
        mode: 0o644,
    });
    tar_of(&entries)
}

pub fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// Runs deploy/images/build-busybox-image.sh into `dir` and returns the tarball.
pub fn busybox_image(dir: &Path) -> PathBuf {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/images/build-busybox-image.sh");
    let out = dir.join("busybox.tar");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .expect("run build-busybox-image.sh");
    assert!(
        output.status.success(),
        "build-busybox-image.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        out.display().to_string()
    );
    out
}

/// Names in a directory (sorted).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Asserts the store holds nothing on disk (no blob, snapshot dir or temp file).
pub fn assert_empty_store(root: &Path) {
    for d in [
        "blobs/sha256",
        "snapshots/committed",
        "snapshots/active",
        "tmp",
    ] {
        assert_eq!(
            names(&root.join(d)),
            Vec::<String>::new(),
            "{d} should be empty"
        );
    }
}

/// Unmounts (lazily) when dropped, so a failed assertion leaves no mount behind.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}
