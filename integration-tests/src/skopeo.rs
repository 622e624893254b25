//! Test images pushed into a harness [`Registry`] by a real `skopeo` (Debian's), from the
//! project's own busybox OCI layout ([`busybox_image`]): as an OCI manifest, as Docker v2
//! schema 2, with zstd layers, and as a two-platform OCI image index.
//!
//! Every helper works in temp dirs of its own (removed on drop, on failure too) and starts
//! no process that outlives it: `skopeo` runs to completion.
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use sha2::{Digest, Sha256};

use crate::{busybox_image, stderr, stdout, Registry};

/// `application/vnd.oci.image.manifest.v1+json`
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.docker.distribution.manifest.v2+json`
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The manifest format skopeo writes into the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI image manifest, gzip layers (skopeo compresses the uncompressed base layer).
    Oci,
    /// Docker v2 schema 2 (`--format v2s2`).
    V2s2,
    /// OCI image manifest with zstd layers (`--dest-compress-format zstd`). Push these into a
    /// registry that has not seen the gzip variant: skopeo's blob-info cache would otherwise
    /// substitute the gzip blobs it already pushed there ([`push_busybox`] checks).
    OciZstd,
}

/// What skopeo pushed: the reference and what the registry now serves for it.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `127.0.0.1:PORT/repo:tag`
    pub reference: String,
    /// `127.0.0.1:PORT/repo`
    pub repo: String,
    /// Digest of the manifest (or index) the tag points at, as the registry serves it.
    pub digest: String,
    /// That manifest (or index) as the registry serves it.
    pub manifest: serde_json::Value,
}

impl Pushed {
    /// `repo@sha256:…`
    pub fn by_digest(&self) -> String {
        format!("{}@{}", self.repo, self.digest)
    }

    /// The layer descriptors of a single-platform manifest.
    pub fn layers(&self) -> Vec<serde_json::Value> {
        self.manifest["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// An index pushed with `skopeo copy --all`: linux/amd64 (the busybox image as built) and
/// linux/arm64 (the same layers under a config whose `architecture` is arm64).
#[derive(Debug, Clone)]
pub struct PushedIndex {
    /// The index itself.
    pub index: Pushed,
    /// Digest of the linux/amd64 manifest, as listed in the served index.
    pub amd64: String,
    /// Digest of the linux/arm64 manifest, as listed in the served index.
    pub arm64: String,
}

/// `user:password` for skopeo's `--creds` / `--dest-creds`.
fn creds_arg(creds: Option<(&str, &str)>) -> Option<String> {
    creds.map(|(u, p)| format!("{u}:{p}"))
}

fn skopeo(args: &[String]) -> Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo (apt-get install skopeo; deploy/install-deps.sh installs it)")
}

fn skopeo_ok(args: &[String]) -> String {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The manifest (or index) the registry serves for `reference` (`addr/repo:tag` or
/// `addr/repo@digest`), raw, with its digest.
pub fn inspect_raw(reference: &str, creds: Option<(&str, &str)>) -> (Vec<u8>, String) {
    let mut args = vec![
        "inspect".to_string(),
        "--raw".to_string(),
        "--tls-verify=false".to_string(),
    ];
    if let Some(c) = creds_arg(creds) {
        args.push("--creds".into());
        args.push(c);
    }
    args.push(format!("docker://{reference}"));
    let out = skopeo(&args);
    assert!(
        out.status.success(),
        "skopeo inspect --raw {reference} failed: {}",
        stderr(&out)
    );
    let digest = sha256_digest(&out.stdout);
    (out.stdout, digest)
}

/// `skopeo copy [extra…] <src> docker://<dest>`; returns the pushed manifest's digest.
fn copy_to_registry(src: &str, dest: &str, extra: &[&str], creds: Option<(&str, &str)>) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let digest_file = dir.path().join("digest");
    let mut args: Vec<String> = vec![
        "copy".into(),
        "--quiet".into(),
        "--dest-tls-verify=false".into(),
        "--digestfile".into(),
        digest_file.to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    if let Some(c) = creds_arg(creds) {
        args.push("--dest-creds".into());
        args.push(c);
    }
    args.push(src.to_string());
    args.push(format!("docker://{dest}"));
    skopeo_ok(&args);
    std::fs::read_to_string(&digest_file)
        .expect("skopeo --digestfile")
        .trim()
        .to_string()
}

fn pushed(reference: &str, digest: String, creds: Option<(&str, &str)>) -> Pushed {
    let (raw, served) = inspect_raw(reference, creds);
    assert_eq!(
        served, digest,
        "the registry serves another manifest for {reference} than skopeo pushed"
    );
    let manifest: serde_json::Value = serde_json::from_slice(&raw).expect("manifest JSON");
    let repo = reference
        .rsplit_once(':')
        .filter(|(repo, _)| repo.contains('/'))
        .map(|(repo, _)| repo.to_string())
        .expect("reference with a tag");
    Pushed {
        reference: reference.to_string(),
        repo,
        digest,
        manifest,
    }
}

/// Pushes the busybox test image to `registry` as `<addr>/<repo_tag>` in `format`, with
/// `creds` when the registry wants them, and checks the registry serves what was asked.
pub fn push_busybox(
    registry: &Registry,
    repo_tag: &str,
    format: Format,
    creds: Option<(&str, &str)>,
) -> Pushed {
    let reference = format!("{}/{repo_tag}", registry.addr);
    let src = format!("oci-archive:{}:busybox:latest", busybox_image().display());
    let extra: &[&str] = match format {
        Format::Oci => &["--format", "oci"],
        Format::V2s2 => &["--format", "v2s2"],
        Format::OciZstd => &["--format", "oci", "--dest-compress-format", "zstd"],
    };
    let digest = copy_to_registry(&src, &reference, extra, creds);
    let p = pushed(&reference, digest, creds);
    let (want_type, want_layer) = match format {
        Format::Oci => (MT_OCI_MANIFEST, "+gzip"),
        Format::V2s2 => (MT_DOCKER_MANIFEST, ".tar.gzip"),
        Format::OciZstd => (MT_OCI_MANIFEST, "+zstd"),
    };
    assert_eq!(p.manifest["mediaType"], want_type, "{}", p.manifest);
    let layers = p.layers();
    assert_eq!(layers.len(), 2, "{}", p.manifest);
    for l in &layers {
        let mt = l["mediaType"].as_str().unwrap_or_default();
        assert!(
            mt.ends_with(want_layer),
            "skopeo pushed a {mt} layer for {format:?} (a blob reused from its cache?): {}",
            p.manifest
        );
    }
    p
}

/// The busybox OCI layout, unpacked into a temp dir.
pub struct Layout {
    pub dir: tempfile::TempDir,
}

impl Layout {
    pub fn busybox() -> Layout {
        let dir = tempfile::Builder::new()
            .prefix("bskl")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let file = std::fs::File::open(busybox_image()).expect("open busybox image");
        tar::Archive::new(file)
            .unpack(dir.path())
            .expect("unpack busybox image");
        Layout { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn read_json(&self, name: &str) -> serde_json::Value {
        let bytes = std::fs::read(self.path().join(name)).expect("read layout file");
        serde_json::from_slice(&bytes).expect("layout JSON")
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        std::fs::read(self.path().join("blobs/sha256").join(hex)).expect("read blob")
    }

    /// Writes `bytes` as a blob; returns its descriptor fields (digest, size).
    pub fn put_blob(&self, bytes: &[u8]) -> (String, usize) {
        let digest = sha256_digest(bytes);
        let hex = digest.strip_prefix("sha256:").unwrap();
        std::fs::write(self.path().join("blobs/sha256").join(hex), bytes).expect("write blob");
        (digest, bytes.len())
    }
}

/// Pushes a two-platform image index as `<addr>/<repo_tag>` with `skopeo copy --all`: the
/// layout's index.json names (as `busybox:multi`) an index blob listing the busybox manifest
/// as linux/amd64 and a linux/arm64 manifest over the same layers whose config says arm64.
pub fn push_busybox_index(
    registry: &Registry,
    repo_tag: &str,
    creds: Option<(&str, &str)>,
) -> PushedIndex {
    let layout = Layout::busybox();
    let index = layout.read_json("index.json");
    let amd64_desc = index["manifests"][0].clone();
    let amd64_digest = amd64_desc["digest"].as_str().expect("manifest digest");
    let amd64_manifest: serde_json::Value =
        serde_json::from_slice(&layout.blob(amd64_digest)).expect("manifest JSON");
    let config_digest = amd64_manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let mut config: serde_json::Value =
        serde_json::from_slice(&layout.blob(config_digest)).expect("config JSON");
    config["architecture"] = "arm64".into();
    config["variant"] = "v8".into();
    let (arm_config, arm_config_size) = layout.put_blob(&serde_json::to_vec(&config).unwrap());
    let mut arm_manifest = amd64_manifest.clone();
    arm_manifest["config"]["digest"] = arm_config.into();
    arm_manifest["config"]["size"] = arm_config_size.into();
    let (arm_digest, arm_size) = layout.put_blob(&serde_json::to_vec(&arm_manifest).unwrap());

    let entry = |digest: &str, size: serde_json::Value, arch: &str, variant: Option<&str>| {
        let mut platform = serde_json::json!({ "architecture": arch, "os": "linux" });
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        serde_json::json!({
            "mediaType": MT_OCI_MANIFEST,
            "digest": digest,
            "size": size,
            "platform": platform,
        })
    };
    let image_index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [
            entry(amd64_digest, amd64_desc["size"].clone(), "amd64", None),
            entry(&arm_digest, arm_size.into(), "arm64", Some("v8")),
        ],
    });
    let (index_digest, index_size) = layout.put_blob(&serde_json::to_vec(&image_index).unwrap());
    let top = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [{
            "mediaType": MT_OCI_INDEX,
            "digest": index_digest,
            "size": index_size,
            "annotations": { "org.opencontainers.image.ref.name": "busybox:multi" },
        }],
    });
    std::fs::write(
        layout.path().join("index.json"),
        serde_json::to_vec(&top).unwrap(),
    )
    .unwrap();
    // The docker-archive manifest.json beside the layout describes only the amd64 image.
    let _ = std::fs::remove_file(layout.path().join("manifest.json"));

    let reference = format!("{}/{repo_tag}", registry.addr);
    let src = format!("oci:{}:busybox:multi", layout.path().display());
    let digest = copy_to_registry(&src, &reference, &["--all", "--format", "oci"], creds);
    let p = pushed(&reference, digest, creds);
    assert_eq!(p.manifest["mediaType"], MT_OCI_INDEX, "{}", p.manifest);
    let find = |arch: &str| {
        p.manifest["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["platform"]["architecture"] == arch)
            .and_then(|m| m["digest"].as_str())
            .unwrap_or_else(|| panic!("no {arch} entry in the pushed index: {}", p.manifest))
            .to_string()
    };
    let (amd64, arm64) = (find("amd64"), find("arm64"));
    assert_ne!(amd64, arm64);
    PushedIndex {
        index: p,
        amd64,
        arm64,
    }
}

/// The storage root (`rootdirectory`) of a harness registry. The harness keeps it private, so
/// it is read from the config of the registry process this test process started (our child,
/// `docker-registry serve <config>`, listening on the registry's address).
pub fn registry_storage(registry: &Registry) -> PathBuf {
    let me = std::process::id().to_string();
    let listen = format!("addr: {}\n", registry.addr);
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !(args.len() >= 3 && args[0].ends_with("docker-registry") && args[1] == "serve") {
            continue;
        }
        let parent = std::fs::read_to_string(path.join("status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PPid:").map(|p| p.trim().to_string()));
        if parent.as_deref() != Some(me.as_str()) {
            continue;
        }
        let Ok(config) = std::fs::read_to_string(&args[2]) else {
            continue;
        };
        if !config.contains(&listen) {
            continue;
        }
        if let Some(root) = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("rootdirectory:"))
        {
            return PathBuf::from(root.trim());
        }
    }
    panic!("no registry process of ours listens on {}", registry.addr);
}

/// Where the registry's filesystem driver keeps blob `digest`.
pub fn blob_file(registry: &Registry, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let path = registry_storage(registry)
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    assert!(path.is_file(), "{} is not in the registry", path.display());
    path
}

/// Flips every byte of blob `digest` in the registry's storage (same size, wrong content).
pub fn corrupt_blob(registry: &Registry, digest: &str) {
    let path = blob_file(registry, digest);
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .expect("read blob");
    for b in &mut bytes {
        *b = !*b;
    }
    std::fs::write(&path, &bytes).expect("overwrite blob");
}

/// Cuts blob `digest` in the registry's storage to half its size.
pub fn truncate_blob(registry: &Registry, digest: &str) {
    let path = blob_file(registry, digest);
    let len = std::fs::metadata(&path).expect("stat blob").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate blob");
}
