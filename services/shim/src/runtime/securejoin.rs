//! Joins a container path onto the rootfs, resolving symlinks as if the rootfs were `/`,
//! so a hostile image cannot point a mount destination outside its rootfs.
use std::io;
use std::path::{Component, Path, PathBuf};

const MAX_LINKS: usize = 255;

pub fn secure_join(root: &Path, unsafe_path: &Path) -> io::Result<PathBuf> {
    let mut pending: Vec<PathBuf> = vec![unsafe_path.to_path_buf()];
    // `resolved` is relative to root and never contains `..` or symlinks.
    let mut resolved = PathBuf::new();
    let mut links = 0;
    // Components are processed from a stack so a symlink's target is expanded in place.
    let mut stack: Vec<std::ffi::OsString> = Vec::new();
    while let Some(p) = pending.pop() {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => stack.push(n.to_os_string()),
                Component::ParentDir => stack.push("..".into()),
                _ => {}
            }
        }
        while let Some(part) = stack.pop() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            let next = resolved.join(&part);
            let full = root.join(&next);
            match std::fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = std::fs::read_link(&full)?;
                    if target.is_absolute() {
                        resolved = PathBuf::new();
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(n) => stack.push(n.to_os_string()),
                            Component::ParentDir => stack.push("..".into()),
                            _ => {}
                        }
                    }
                }
                _ => resolved = next,
            }
        }
    }
    Ok(root.join(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("real/escape")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/abs/sub/x")).unwrap(),
            root.join("real/sub/x")
        );
        assert_eq!(
            secure_join(root, Path::new("/real/escape/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
    }
}
