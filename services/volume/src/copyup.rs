//! Copy-up: an empty volume is filled from the image's content at its mount point, as
//! Docker does, keeping ownership, modes, symlinks, device nodes, hard links, xattrs and
//! times. The image is seen through a read-only overlay of its layers, so whiteouts and
//! opaque directories hide what they hide without the service interpreting them.
use std::{
    collections::HashMap,
    ffi::{CString, OsStr},
    fs, io,
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt, FileTypeExt, MetadataExt},
    },
    path::{Component, Path, PathBuf},
};

use nix::{
    fcntl::{AtFlags, AT_FDCWD},
    mount::{mount, umount2, MntFlags, MsFlags},
    sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags},
    sys::time::TimeSpec,
    unistd::{fchownat, Gid, Uid},
};

use crate::error::{Error, Result};

/// The image's merged view, mounted on first use and unmounted when dropped.
pub struct ImageView {
    lower_dirs: Vec<PathBuf>,
    scratch: PathBuf,
    root: Option<PathBuf>,
    mounted: bool,
}

impl ImageView {
    /// `lower_dirs` topmost first; `scratch` is a directory this view may create and remove.
    pub fn new(lower_dirs: Vec<PathBuf>, scratch: PathBuf) -> ImageView {
        ImageView {
            lower_dirs,
            scratch,
            root: None,
            mounted: false,
        }
    }

    /// The merged root, or `None` when no image layers were given.
    pub fn root(&mut self) -> Result<Option<&Path>> {
        if self.root.is_none() {
            match self.lower_dirs.as_slice() {
                [] => return Ok(None),
                // One layer needs no overlay (and overlay wants two lowers without an upper).
                [only] => self.root = Some(only.clone()),
                dirs => {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&self.scratch)
                        .map_err(|e| Error::io(format!("create {}", self.scratch.display()), e))?;
                    let lower = dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":");
                    mount(
                        Some("overlay"),
                        &self.scratch,
                        Some("overlay"),
                        MsFlags::MS_RDONLY,
                        Some(format!("lowerdir={lower}").as_str()),
                    )
                    .map_err(|e| Error::io("mount the image's layers for copy-up", e.into()))?;
                    self.mounted = true;
                    self.root = Some(self.scratch.clone());
                }
            }
        }
        Ok(self.root.as_deref())
    }

    /// What the image has at `dest` (absolute, clean): `None` when nothing is there or a
    /// component on the way is a symlink (followed inside the image by the runtime; not
    /// resolved here, so copy-up and the type check skip it rather than guess).
    pub fn lookup(&mut self, dest: &str) -> Result<Option<(PathBuf, fs::Metadata)>> {
        let Some(root) = self.root()? else {
            return Ok(None);
        };
        let mut path = root.to_path_buf();
        let mut meta = None;
        for part in Path::new(dest).components() {
            let Component::Normal(name) = part else {
                continue;
            };
            if meta.as_ref().is_some_and(|m: &fs::Metadata| !m.is_dir()) {
                return Ok(None);
            }
            path.push(name);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => return Ok(None),
                Ok(m) => meta = Some(m),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io(format!("look up {dest} in the image"), e)),
            }
        }
        Ok(meta.map(|m| (path, m)))
    }
}

impl Drop for ImageView {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = umount2(&self.scratch, MntFlags::MNT_DETACH) {
                tracing::warn!(path = %self.scratch.display(), error = %e, "unmount copy-up view");
            }
        }
        let _ = fs::remove_dir(&self.scratch);
    }
}

/// True when `dir` has no entries.
pub fn is_empty_dir(dir: &Path) -> Result<bool> {
    let mut entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
    Ok(entries.next().is_none())
}

/// Copies the directory `src` into the existing, empty directory `dst`: its entries, and
/// `src`'s own owner, mode, xattrs and times onto `dst`.
pub fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    let mut links = HashMap::new();
    let ctx = |e: io::Error| Error::io(format!("copy {} to the volume", src.display()), e);
    copy_entries(src, dst, &mut links).map_err(ctx)?;
    let meta = fs::symlink_metadata(src).map_err(ctx)?;
    copy_meta(src, dst, &meta).map_err(ctx)
}

fn copy_entries(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if !ft.is_dir() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, &to)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        if ft.is_dir() {
            fs::DirBuilder::new().mode(0o700).create(&to)?;
            copy_entries(&from, &to, links)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            mknod(&to, kind, Mode::from_bits_truncate(0o600), meta.rdev())?;
        } else {
            // Sockets mean nothing without their process.
            continue;
        }
        copy_meta(&from, &to, &meta)?;
    }
    Ok(())
}

/// Owner first (chown clears set-id bits), then mode, xattrs, and times last.
fn copy_meta(from: &Path, to: &Path, meta: &fs::Metadata) -> io::Result<()> {
    fchownat(
        AT_FDCWD,
        to,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    let symlink = meta.file_type().is_symlink();
    if !symlink {
        fs::set_permissions(
            to,
            std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
        )?;
    }
    copy_xattrs(from, to)?;
    utimensat(
        AT_FDCWD,
        to,
        &TimeSpec::new(meta.atime(), meta.atime_nsec()),
        &TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Grows `buf` to what `call` reports it needs, then returns the bytes `call` wrote.
fn sized(mut call: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let need = call(&mut []);
        if need < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; need as usize];
        let got = call(&mut buf);
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        // Grew between the two calls: ask again.
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

fn copy_xattrs(from: &Path, to: &Path) -> io::Result<()> {
    let (src, dst) = (cpath(from)?, cpath(to)?);
    let names = match sized(|b| unsafe {
        // SAFETY: `src` is NUL-terminated; the buffer pointer and length agree.
        libc::llistxattr(src.as_ptr(), b.as_mut_ptr().cast(), b.len())
    }) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        // Overlay's own bookkeeping is not content.
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let value = sized(|b| unsafe {
            // SAFETY: as above.
            libc::lgetxattr(src.as_ptr(), cname.as_ptr(), b.as_mut_ptr().cast(), b.len())
        })?;
        // SAFETY: as above.
        let r = unsafe {
            libc::lsetxattr(
                dst.as_ptr(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            tracing::warn!(path = %to.display(), xattr = %OsStr::from_bytes(name).to_string_lossy(), error = %e, "xattr not copied");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn copy_keeps_modes_links_symlinks_owner_and_xattrs() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir(s.join("sub")).unwrap();
        fs::write(s.join("sub/f"), "data").unwrap();
        fs::set_permissions(s.join("sub/f"), fs::Permissions::from_mode(0o4751)).unwrap();
        fs::set_permissions(s.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::hard_link(s.join("sub/f"), s.join("hard")).unwrap();
        std::os::unix::fs::symlink("sub/f", s.join("link")).unwrap();
        fs::set_permissions(s, fs::Permissions::from_mode(0o1777)).unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root {
            fchownat(
                AT_FDCWD,
                &s.join("sub/f"),
                Some(Uid::from_raw(1234)),
                Some(Gid::from_raw(5678)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .unwrap();
            fs::set_permissions(s.join("sub/f"), fs::Permissions::from_mode(0o4751)).unwrap();
        }
        let xattr = xattr_set(&s.join("sub/f"), "user.berth", b"yes");

        copy_dir(s, dst.path()).unwrap();
        let d = dst.path();
        assert_eq!(fs::read_to_string(d.join("sub/f")).unwrap(), "data");
        let m = fs::metadata(d.join("sub/f")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4751);
        assert_eq!(fs::metadata(d.join("sub")).unwrap().mode() & 0o7777, 0o750);
        assert_eq!(fs::metadata(d).unwrap().mode() & 0o7777, 0o1777);
        assert_eq!(fs::read_link(d.join("link")).unwrap(), Path::new("sub/f"));
        assert_eq!(fs::metadata(d.join("hard")).unwrap().ino(), m.ino());
        if root {
            assert_eq!((m.uid(), m.gid()), (1234, 5678));
        }
        if xattr {
            assert_eq!(xattr_get(&d.join("sub/f"), "user.berth"), b"yes");
        }
        assert!(!is_empty_dir(d).unwrap());
    }

    fn xattr_set(p: &Path, name: &str, v: &[u8]) -> bool {
        let (p, n) = (cpath(p).unwrap(), CString::new(name).unwrap());
        // SAFETY: NUL-terminated strings, buffer and length agree.
        unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) == 0 }
    }

    fn xattr_get(p: &Path, name: &str) -> Vec<u8> {
        let (p, n) = (cpath(p).unwrap(), CString::new(name).unwrap());
        sized(|b| unsafe {
            libc::lgetxattr(p.as_ptr(), n.as_ptr(), b.as_mut_ptr().cast(), b.len())
        })
        .unwrap()
    }
}
