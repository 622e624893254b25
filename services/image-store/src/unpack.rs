//! Unpacking one layer tarball into a snapshot directory, the way containerd's overlay
//! snapshotter lays it out: OCI whiteouts become overlayfs whiteouts (`.wh.<name>` → a 0:0
//! character device `<name>`, `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory).
//!
//! Entries are created by hand (never through the `tar` crate's unpacker) so that nothing
//! escapes the root: `..` components, absolute paths, hardlinks whose target escapes, and
//! entries under a symlink already extracted are refused, naming the entry. Symlinks are
//! never followed.
use std::{
    ffi::{CString, OsStr},
    fs,
    io::{self, BufRead, BufReader, Read},
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::error::{Error, Result};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What unpacking a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// "sha256:<hex>" of the uncompressed tar stream.
    pub diff_id: String,
    /// Bytes of regular file content.
    pub size: u64,
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest of the stream and returns ("sha256:<hex>", bytes read).
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// How a layer blob is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The first bytes of the file at `path`.
    pub fn of_file(path: &Path) -> Result<Compression> {
        let mut head = [0u8; 4];
        let mut f = fs::File::open(path).map_err(Error::io("open", path))?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]).map_err(Error::io("read", path))? {
                0 => break,
                r => n += r,
            }
        }
        Ok(Compression::detect(&head[..n]))
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The uncompressed stream of a layer blob (gzip or zstd detected by its magic, as
/// containerd does; plain otherwise).
pub fn decompressed<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let head = reader
        .fill_buf()
        .map_err(|e| Error::InvalidArchive(format!("read layer: {e}")))?;
    match Compression::detect(head) {
        Compression::Gzip => Ok(Box::new(flate2::read::MultiGzDecoder::new(reader))),
        Compression::Zstd => Ok(Box::new(ZstdReader::new(reader))),
        Compression::None => Ok(Box::new(reader)),
    }
}

/// Decodes every zstd frame of a stream in turn (ruzstd's `StreamingDecoder` stops after
/// one; parallel compressors write several), skipping skippable frames and checking each
/// frame's content checksum when it has one.
pub struct ZstdReader<R: BufRead> {
    source: R,
    decoder: ruzstd::decoding::FrameDecoder,
    /// A frame is being decoded (its header was read).
    in_frame: bool,
}

impl<R: BufRead> ZstdReader<R> {
    pub fn new(source: R) -> Self {
        ZstdReader {
            source,
            decoder: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }
    }

    /// Starts the next frame; false at the end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.source).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(zstd_error("truncated skippable frame"));
                    }
                }
                Err(e) => return Err(zstd_error(e)),
            }
        }
    }
}

fn zstd_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let want = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(
                        &mut self.source,
                        ruzstd::decoding::BlockDecodingStrategy::UptoBytes(want),
                    )
                    .map_err(zstd_error)?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() {
                if let (Some(stored), Some(computed)) = (
                    self.decoder.get_checksum_from_data(),
                    self.decoder.get_calculated_checksum(),
                ) {
                    if stored != computed {
                        return Err(zstd_error("frame checksum mismatch"));
                    }
                }
                self.in_frame = false;
            }
        }
    }
}

/// Unpacks the layer blob `reader` (gzip or plain tar) into `dest`, which must exist.
pub fn unpack_layer<R: Read>(reader: R, dest: &Path) -> Result<Unpacked> {
    let stream = HashingReader::new(decompressed(reader)?);
    let mut archive = tar::Archive::new(stream);
    let mut size = 0u64;
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| Error::InvalidArchive(format!("read layer: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::InvalidArchive(format!("read layer: {e}")))?;
        size += unpack_entry(&mut entry, dest, &mut dirs)?;
    }
    // Directory mtimes last: creating their children changed them.
    for (dir, mtime) in dirs.iter().rev() {
        set_mtime(dir, *mtime).map_err(Error::io("set mtime of", dir))?;
    }
    let (diff_id, _) = archive
        .into_inner()
        .finish()
        .map_err(|e| Error::InvalidArchive(format!("read layer: {e}")))?;
    Ok(Unpacked { diff_id, size })
}

/// Files at least this big have their writeback started once written (see
/// [`start_writeback`]).
const WRITEBACK_MIN: u64 = 1 << 20;

/// Copies a tar entry's content into `file` in large writes (io::copy's 8 KiB buffer
/// costs a syscall per 8 KiB) and starts the writeback of a big file.
fn copy_file_data<R: Read>(entry: &mut tar::Entry<'_, R>, file: &mut fs::File) -> io::Result<u64> {
    let size = entry.header().size().unwrap_or(0);
    if size < 64 * 1024 {
        return io::copy(entry, file);
    }
    let mut buf = vec![0u8; size.min(1 << 20) as usize];
    let mut written = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        io::Write::write_all(file, &buf[..n])?;
        written += n as u64;
    }
    if written >= WRITEBACK_MIN {
        start_writeback(file, 0, 0);
    }
    Ok(written)
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` (0: to the end)
/// to disk now, without waiting. Not a durability point (the store's commit flushes the
/// filesystem once); it only leaves that flush less to wait for, the disk working while
/// the download goes on.
pub fn start_writeback(file: &fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open file descriptor; the call only schedules I/O.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// The components of an archive path relative to the root, refusing absolute paths and `..`.
pub fn safe_components(name: &[u8]) -> std::result::Result<Vec<&OsStr>, &'static str> {
    if name.starts_with(b"/") {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path contains \"..\""),
            _ => out.push(OsStr::from_bytes(part)),
        }
    }
    Ok(out)
}

/// Walks `components` under `root` without following symlinks: each must be a directory
/// (missing ones are created with mode 0755 when `create`).
fn walk_dirs(root: &Path, components: &[&OsStr], create: bool, entry: &str) -> Result<PathBuf> {
    let mut cur = root.to_path_buf();
    for c in components {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::unsafe_entry(
                    entry,
                    format!("path component {:?} is a symlink", rel_display(root, &cur)),
                ))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::unsafe_entry(
                    entry,
                    format!(
                        "path component {:?} is not a directory",
                        rel_display(root, &cur)
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&cur)
                    .map_err(Error::io("create directory", &cur))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::unsafe_entry(
                    entry,
                    format!("{:?} does not exist in the layer", rel_display(root, &cur)),
                ))
            }
            Err(e) => return Err(Error::io("stat", &cur)(e)),
        }
    }
    Ok(cur)
}

fn rel_display(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Extracts one entry; returns the regular-file bytes written.
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    dirs: &mut Vec<(PathBuf, u64)>,
) -> Result<u64> {
    let kind = entry.header().entry_type();
    if matches!(
        kind,
        EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
    ) {
        return Ok(0);
    }
    let raw_name = entry.path_bytes().into_owned();
    let name = String::from_utf8_lossy(&raw_name).into_owned();
    let comps = safe_components(&raw_name).map_err(|why| Error::unsafe_entry(&name, why))?;
    let meta = EntryMeta::read(entry, &name)?;

    let Some((base, parents)) = comps.split_last() else {
        // The root itself ("./"): take its metadata.
        if kind != EntryType::Directory {
            return Err(Error::unsafe_entry(
                &name,
                "the layer root must be a directory",
            ));
        }
        meta.apply(dest, false)?;
        dirs.push((dest.to_path_buf(), meta.mtime));
        return Ok(0);
    };
    let parent = walk_dirs(dest, parents, true, &name)?;
    let base_bytes = base.as_bytes();

    // Whiteouts.
    if base_bytes == OPAQUE_WHITEOUT.as_bytes() {
        set_xattr(&parent, OPAQUE_XATTR, b"y").map_err(Error::io("mark opaque", &parent))?;
        return Ok(0);
    }
    if base_bytes.starts_with(b".wh..wh.") {
        return Ok(0); // AUFS metadata (.wh..wh.plnk etc.) has no overlay meaning
    }
    if let Some(hidden) = base_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(Error::unsafe_entry(&name, "invalid whiteout name"));
        }
        let path = parent.join(OsStr::from_bytes(hidden));
        remove_existing(&path)?;
        make_node(&path, libc::S_IFCHR, 0, 0).map_err(Error::io("create whiteout", &path))?;
        std::os::unix::fs::lchown(&path, Some(0), Some(0)).map_err(Error::io("chown", &path))?;
        return Ok(0);
    }

    let path = parent.join(base);
    let existing = fs::symlink_metadata(&path).ok();
    if let Some(existing) = &existing {
        if !(kind == EntryType::Directory && existing.is_dir()) {
            remove_existing(&path)?;
        }
    }

    let mut written = 0;
    match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(Error::io("create", &path))?;
            written = copy_file_data(entry, &mut file)
                .map_err(|e| Error::InvalidArchive(format!("read entry {name:?}: {e}")))?;
            meta.apply(&path, false)?;
        }
        EntryType::Directory => {
            if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&path)
                    .map_err(Error::io("create directory", &path))?;
            }
            meta.apply(&path, false)?;
            dirs.push((path, meta.mtime));
            return Ok(0);
        }
        EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| Error::unsafe_entry(&name, "symlink without a target"))?;
            std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                .map_err(Error::io("create symlink", &path))?;
            meta.apply(&path, true)?;
        }
        EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| Error::unsafe_entry(&name, "hardlink without a target"))?;
            let target_str = String::from_utf8_lossy(&target).into_owned();
            let tcomps = safe_components(&target).map_err(|why| {
                Error::unsafe_entry(&name, format!("hardlink target {target_str:?}: {why}"))
            })?;
            let Some((tbase, tparents)) = tcomps.split_last() else {
                return Err(Error::unsafe_entry(&name, "hardlink to the layer root"));
            };
            let tparent = walk_dirs(dest, tparents, false, &name)?;
            let tpath = tparent.join(tbase);
            match fs::symlink_metadata(&tpath) {
                Ok(m) if m.is_dir() => {
                    return Err(Error::unsafe_entry(
                        &name,
                        format!("hardlink target {target_str:?} is a directory"),
                    ))
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(Error::unsafe_entry(
                        &name,
                        format!("hardlink target {target_str:?} not found in the layer"),
                    ))
                }
            }
            fs::hard_link(&tpath, &path).map_err(Error::io("create hardlink", &path))?;
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let (fmt, dev) = match kind {
                EntryType::Char => (libc::S_IFCHR, meta.dev),
                EntryType::Block => (libc::S_IFBLK, meta.dev),
                _ => (libc::S_IFIFO, 0),
            };
            make_node(&path, fmt, meta.mode & 0o7777, dev)
                .map_err(Error::io("create node", &path))?;
            meta.apply(&path, false)?;
        }
        other => {
            return Err(Error::unsafe_entry(
                &name,
                format!("unsupported entry type {other:?}"),
            ));
        }
    }
    Ok(written)
}

/// Metadata of an entry: header fields with PAX overrides.
struct EntryMeta {
    name: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    dev: libc::dev_t,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryMeta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<EntryMeta> {
        let bad = |what: &str, e: io::Error| Error::unsafe_entry(name, format!("bad {what}: {e}"));
        let h = entry.header();
        let mut meta = EntryMeta {
            name: name.to_string(),
            mode: h.mode().map_err(|e| bad("mode", e))?,
            uid: u32::try_from(h.uid().map_err(|e| bad("uid", e))?).unwrap_or(u32::MAX),
            gid: u32::try_from(h.gid().map_err(|e| bad("gid", e))?).unwrap_or(u32::MAX),
            mtime: h.mtime().unwrap_or(0),
            dev: 0,
            xattrs: Vec::new(),
        };
        if matches!(h.entry_type(), EntryType::Char | EntryType::Block) {
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            meta.dev = libc::makedev(major, minor);
        }
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                };
                match key {
                    "uid" => {
                        meta.uid = num()
                            .and_then(|v| u32::try_from(v).ok())
                            .unwrap_or(meta.uid)
                    }
                    "gid" => {
                        meta.gid = num()
                            .and_then(|v| u32::try_from(v).ok())
                            .unwrap_or(meta.gid)
                    }
                    "mtime" => {
                        if let Some(secs) = std::str::from_utf8(value)
                            .ok()
                            .and_then(|v| v.split('.').next())
                            .and_then(|v| v.parse::<u64>().ok())
                        {
                            meta.mtime = secs;
                        }
                    }
                    _ => {
                        if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                            meta.xattrs.push((attr.to_string(), value.to_vec()));
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    /// Owner, mode (after chown, which clears set-id bits), xattrs, mtime.
    fn apply(&self, path: &Path, is_symlink: bool) -> Result<()> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .map_err(Error::io("chown", path))?;
        if !is_symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(self.mode & 0o7777))
                .map_err(Error::io("chmod", path))?;
        }
        for (attr, value) in &self.xattrs {
            if let Err(e) = set_xattr(path, attr, value) {
                // Like containerd: xattrs the filesystem cannot hold are skipped, not fatal.
                tracing::warn!(entry = %self.name, xattr = %attr, error = %e, "xattr not applied");
            }
        }
        set_mtime(path, self.mtime).map_err(Error::io("set mtime of", path))?;
        Ok(())
    }
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn make_node(path: &Path, fmt: libc::mode_t, perm: u32, dev: libc::dev_t) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), fmt | perm as libc::mode_t, dev) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets an extended attribute on `path` itself (not a symlink's target).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c = cpath(path)?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an extended attribute of `path` itself; `None` when absent.
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let c = cpath(path)?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODATA) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    buf.truncate(rc as usize);
    Ok(Some(buf))
}

fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let c = cpath(path)?;
    let secs = libc::time_t::try_from(mtime).unwrap_or(libc::time_t::MAX);
    let times = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid C string and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => fs::remove_file(path).map_err(Error::io("remove", path)),
        Err(_) => Ok(()),
    }
}

/// Removes a directory tree without following symlinks; works on trees owned by anyone
/// (directories without write or search permission are opened up first). Missing: Ok.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    make_writable(path);
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path)(e)),
    }
}

fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(rd) = fs::read_dir(path) {
        for child in rd.flatten() {
            make_writable(&child.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    pub(crate) fn raw_entry(
        b: &mut tar::Builder<Vec<u8>>,
        kind: EntryType,
        name: &str,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            old.linkname = [0; 100];
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn layer(entries: &[(EntryType, &str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (kind, name, link, data) in entries {
            let mode = if *kind == EntryType::Directory {
                0o755
            } else {
                0o644
            };
            raw_entry(&mut b, *kind, name, *link, data, mode);
        }
        b.into_inner().unwrap()
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<Unpacked>) {
        let dir = tempfile::tempdir().unwrap();
        let r = unpack_layer(bytes, dir.path());
        (dir, r)
    }

    #[test]
    fn safe_components_refuses_escapes() {
        assert!(safe_components(b"/abs").is_err());
        assert!(safe_components(b"../evil").is_err());
        assert!(safe_components(b"a/../../evil").is_err());
        assert!(safe_components(b"a/..").is_err());
        assert_eq!(safe_components(b"./a//b/./c").unwrap(), vec!["a", "b", "c"]);
        assert!(safe_components(b"./").unwrap().is_empty());
        assert_eq!(safe_components(b"a..b/..c").unwrap(), vec!["a..b", "..c"]);
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let bytes = layer(&[
            (EntryType::Directory, "etc/", None, b""),
            (EntryType::Regular, "etc/.wh.gone", None, b""),
            (EntryType::Directory, "opaque/", None, b""),
            (EntryType::Regular, "opaque/.wh..wh..opq", None, b""),
            (EntryType::Regular, "opaque/kept", None, b"k"),
            (EntryType::Regular, "deep/.wh.x", None, b""),
            (EntryType::Regular, ".wh..wh.plnk", None, b""),
        ]);
        let (dir, r) = unpack(&bytes);
        r.unwrap();
        let wh = dir.path().join("etc/gone");
        let m = fs::symlink_metadata(&wh).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        assert_eq!((m.uid(), m.gid()), (0, 0));
        assert!(!dir.path().join("etc/.wh.gone").exists());
        assert!(fs::symlink_metadata(dir.path().join("deep/x"))
            .unwrap()
            .file_type()
            .is_char_device());
        let opq = get_xattr(&dir.path().join("opaque"), OPAQUE_XATTR).unwrap();
        assert_eq!(opq.as_deref(), Some(&b"y"[..]));
        assert!(!dir.path().join("opaque/.wh..wh..opq").exists());
        assert!(dir.path().join("opaque/kept").exists());
        assert!(!dir.path().join(".wh..wh.plnk").exists());
    }

    #[test]
    fn preserves_metadata_links_and_nodes() {
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, EntryType::Directory, "d/", None, b"", 0o1777);
        raw_entry(&mut b, EntryType::Regular, "d/f", None, b"hello", 0o4755);
        raw_entry(&mut b, EntryType::Symlink, "d/rel", Some("f"), b"", 0o777);
        raw_entry(
            &mut b,
            EntryType::Symlink,
            "d/abs",
            Some("/etc/passwd"),
            b"",
            0o777,
        );
        raw_entry(&mut b, EntryType::Link, "d/hard", Some("d/f"), b"", 0o644);
        raw_entry(&mut b, EntryType::Fifo, "d/fifo", None, b"", 0o600);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Char);
        h.set_path("d/null").unwrap();
        h.set_mode(0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let (dir, r) = unpack(&bytes);
        let u = r.unwrap();
        assert_eq!(u.size, 5);
        assert_eq!(
            u.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
        );
        let p = dir.path();
        let d = fs::metadata(p.join("d")).unwrap();
        assert_eq!(d.mode() & 0o7777, 0o1777);
        assert_eq!(d.mtime(), 1_000_000);
        let f = fs::metadata(p.join("d/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o4755);
        assert_eq!(f.mtime(), 1_000_000);
        assert_eq!(f.nlink(), 2);
        assert_eq!(fs::read_link(p.join("d/rel")).unwrap(), Path::new("f"));
        assert_eq!(
            fs::read_link(p.join("d/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(fs::metadata(p.join("d/hard")).unwrap().ino(), f.ino());
        assert!(fs::symlink_metadata(p.join("d/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        let n = fs::symlink_metadata(p.join("d/null")).unwrap();
        assert!(n.file_type().is_char_device());
        assert_eq!(n.rdev(), libc::makedev(1, 3));
        assert_eq!((n.uid(), n.gid()), (1000, 1001));
    }

    fn refused(entries: &[(EntryType, &str, Option<&str>, &[u8])], entry: &str, why: &str) {
        let (dir, r) = unpack(&layer(entries));
        let err = r.expect_err("should be refused");
        assert!(matches!(err, Error::UnsafeEntry { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(entry) && msg.contains(why), "{msg}");
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn refuses_unsafe_entries() {
        refused(
            &[(EntryType::Regular, "../evil", None, b"x")],
            "../evil",
            "..",
        );
        refused(
            &[(EntryType::Regular, "/abs", None, b"x")],
            "/abs",
            "absolute",
        );
        refused(
            &[(EntryType::Link, "passwd", Some("../../etc/passwd"), b"")],
            "passwd",
            "../../etc/passwd",
        );
        refused(
            &[(EntryType::Link, "x", Some("/etc/passwd"), b"")],
            "x",
            "absolute",
        );
        refused(
            &[
                (EntryType::Symlink, "link", Some("/etc"), b""),
                (EntryType::Regular, "link/passwd", None, b"x"),
            ],
            "link/passwd",
            "symlink",
        );
        refused(
            &[
                (EntryType::Symlink, "link", Some("."), b""),
                (EntryType::Link, "h", Some("link/f"), b""),
            ],
            "h",
            "symlink",
        );
        refused(
            &[(EntryType::Regular, "a/.wh..", None, b"")],
            "a/.wh..",
            "whiteout",
        );
    }

    #[test]
    fn later_entries_replace_earlier_ones_without_following_links() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("t");
        fs::write(&target, "outside").unwrap();
        let t = target.to_str().unwrap();
        let bytes = layer(&[
            (EntryType::Symlink, "f", Some(t), b""),
            (EntryType::Regular, "f", None, b"inside"),
        ]);
        let (dir, r) = unpack(&bytes);
        r.unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "outside");
        assert_eq!(fs::read_to_string(dir.path().join("f")).unwrap(), "inside");
    }

    #[test]
    fn gzip_layers_hash_the_uncompressed_stream() {
        let bytes = layer(&[(EntryType::Regular, "a", None, b"abc")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        io::Write::write_all(&mut gz, &bytes).unwrap();
        let gz = gz.finish().unwrap();
        let (dir, r) = unpack(&gz);
        assert_eq!(
            r.unwrap().diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
        );
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "abc");
    }

    #[test]
    fn remove_tree_handles_locked_directories() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        fs::create_dir_all(t.join("a/b")).unwrap();
        fs::write(t.join("a/b/f"), "x").unwrap();
        fs::set_permissions(t.join("a/b"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(t.join("a"), fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        remove_tree(&t).unwrap();
    }
}
