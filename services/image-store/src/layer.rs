//! Turning a writable snapshot's overlay upper dir into an OCI layer tar (for commit):
//! overlay whiteouts (0:0 character devices) become `.wh.<name>` entries and opaque dirs
//! (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry. Entries are written in sorted
//! order so the same upper dir always gives the same tar (and diff ID).
use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

use tar::{EntryType, Header};

use crate::{
    error::{Error, Result},
    unpack::get_xattr,
};

/// Writes the layer tar for `upper` to `out`.
pub fn write_layer<W: io::Write>(upper: &Path, out: W) -> Result<W> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk(upper, Path::new(""), &mut b, &mut links)?;
    b.into_inner().map_err(Error::io("write layer", upper))
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|x| matches!(get_xattr(path, x), Ok(Some(v)) if v == b"y"))
}

fn header(meta: &fs::Metadata, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h.set_size(0);
    h
}

fn walk<W: io::Write>(
    root: &Path,
    rel: &Path,
    b: &mut tar::Builder<W>,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(Error::io("read dir", &dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(Error::io("read dir", &dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel_path = rel.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(Error::io("stat", &path))?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            let mut wh_name = std::ffi::OsString::from(".wh.");
            wh_name.push(&name);
            let mut h = header(&meta, EntryType::Regular);
            h.set_mode(0o644);
            b.append_data(&mut h, rel.join(wh_name), io::empty())
                .map_err(Error::io("write layer entry", &path))?;
        } else if ft.is_dir() {
            let mut h = header(&meta, EntryType::Directory);
            b.append_data(&mut h, &rel_path, io::empty())
                .map_err(Error::io("write layer entry", &path))?;
            if is_opaque(&path) {
                let mut h = header(&meta, EntryType::Regular);
                h.set_mode(0o644);
                b.append_data(&mut h, rel_path.join(".wh..wh..opq"), io::empty())
                    .map_err(Error::io("write layer entry", &path))?;
            }
            walk(root, &rel_path, b, links)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(Error::io("read link", &path))?;
            let mut h = header(&meta, EntryType::Symlink);
            b.append_link(&mut h, &rel_path, &target)
                .map_err(Error::io("write layer entry", &path))?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = links.get(&key) {
                    let mut h = header(&meta, EntryType::Link);
                    b.append_link(&mut h, &rel_path, first)
                        .map_err(Error::io("write layer entry", &path))?;
                    continue;
                }
                links.insert(key, rel_path.clone());
            }
            let mut h = header(&meta, EntryType::Regular);
            h.set_size(meta.len());
            let f = fs::File::open(&path).map_err(Error::io("open", &path))?;
            // Exactly the size in the header, even if the file changes meanwhile (commit
            // without pause): cut, or padded with zeros.
            let len = meta.len();
            let data = io::Read::chain(io::Read::take(f, len), io::repeat(0));
            b.append_data(&mut h, &rel_path, io::Read::take(data, len))
                .map_err(Error::io("write layer entry", &path))?;
        } else {
            let kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else if ft.is_fifo() {
                EntryType::Fifo
            } else {
                continue; // sockets cannot be archived
            };
            let mut h = header(&meta, kind);
            let rdev = meta.rdev();
            h.set_device_major(libc::major(rdev))
                .map_err(Error::io("write layer entry", &path))?;
            h.set_device_minor(libc::minor(rdev))
                .map_err(Error::io("write layer entry", &path))?;
            b.append_data(&mut h, &rel_path, io::empty())
                .map_err(Error::io("write layer entry", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::set_xattr;

    fn entries(upper: &Path) -> Vec<(String, EntryType, Option<String>)> {
        let bytes = write_layer(upper, Vec::new()).unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                    e.link_name().unwrap().map(|l| l.display().to_string()),
                )
            })
            .collect()
    }

    fn mknod_whiteout(p: &Path) -> bool {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) == 0 }
    }

    #[test]
    fn files_links_and_order() {
        let d = tempfile::tempdir().unwrap();
        let u = d.path();
        fs::create_dir(u.join("etc")).unwrap();
        fs::write(u.join("etc/new"), b"hello").unwrap();
        fs::write(u.join("a"), b"x").unwrap();
        fs::hard_link(u.join("a"), u.join("b")).unwrap();
        std::os::unix::fs::symlink("etc/new", u.join("c")).unwrap();
        let e = entries(u);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "etc", "etc/new"]);
        assert_eq!(e[1].1, EntryType::Link);
        assert_eq!(e[1].2.as_deref(), Some("a"));
        assert_eq!(e[2].1, EntryType::Symlink);
        assert_eq!(e[2].2.as_deref(), Some("etc/new"));
        // Deterministic.
        assert_eq!(
            write_layer(u, Vec::new()).unwrap(),
            write_layer(u, Vec::new()).unwrap()
        );
    }

    #[test]
    fn empty_upper_gives_an_empty_layer() {
        let d = tempfile::tempdir().unwrap();
        assert!(entries(d.path()).is_empty());
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let d = tempfile::tempdir().unwrap();
        let u = d.path();
        fs::create_dir(u.join("etc")).unwrap();
        if !mknod_whiteout(&u.join("etc/passwd")) {
            eprintln!("skipping: mknod needs CAP_MKNOD");
            return;
        }
        fs::create_dir(u.join("opq")).unwrap();
        let opaque = set_xattr(&u.join("opq"), "trusted.overlay.opaque", b"y").is_ok();
        let e = entries(u);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        let mut want = vec!["etc", "etc/.wh.passwd", "opq"];
        if opaque {
            want.push("opq/.wh..wh..opq");
        }
        assert_eq!(names, want);
        assert_eq!(e[1].1, EntryType::Regular);
        // The layer unpacks back into an overlay whiteout.
        let bytes = write_layer(u, Vec::new()).unwrap();
        let out = tempfile::tempdir().unwrap();
        crate::unpack::unpack_layer(&bytes[..], out.path()).unwrap();
        let m = fs::symlink_metadata(out.path().join("etc/passwd")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        if opaque {
            assert!(is_opaque(&out.path().join("opq")));
        }
    }
}
