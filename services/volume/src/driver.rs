//! The local driver's options (`--opt type=tmpfs --opt device=tmpfs --opt o=size=32m`):
//! the filesystem is mounted on the volume's `_data` when the volume is created, stays
//! mounted while the volume exists (remounted at service start if it is not), and is
//! unmounted before the volume is removed. See docs/adr/0010-volumes.md.
use std::{collections::BTreeMap, fs, io, path::Path};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Whether a volume with these options is mounted at all.
pub fn has_mount(options: &BTreeMap<String, String>) -> bool {
    options.contains_key("type")
}

/// Splits `o=` into mount flags and the data string the filesystem gets.
fn flags_and_data(o: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Mounts the options' filesystem on `target`.
pub fn mount_options(options: &BTreeMap<String, String>, target: &Path) -> io::Result<()> {
    let typ = options.get("type").map(String::as_str).unwrap_or("");
    let device = options.get("device").map(String::as_str).unwrap_or("");
    let (mut flags, data) = flags_and_data(options.get("o").map(String::as_str).unwrap_or(""));
    // Docker's local driver: type "none" with o=bind binds `device`.
    let fstype = if typ == "none" { None } else { Some(typ) };
    if typ == "none" {
        flags |= MsFlags::MS_BIND;
    }
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(Some(device), target, fstype, flags, data)?;
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        // A bind ignores MS_RDONLY until remounted.
        mount(
            None::<&str>,
            target,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )?;
    }
    Ok(())
}

/// Unmounts `target` if it is a mount point; an error leaves it mounted.
pub fn unmount(target: &Path) -> io::Result<()> {
    while is_mountpoint(target)? {
        umount2(target, MntFlags::MNT_DETACH)?;
    }
    Ok(())
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// True when something is mounted exactly on `path` in this mount namespace.
pub fn is_mountpoint(path: &Path) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let want = path.as_os_str().as_bytes();
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o_splits_into_flags_and_data() {
        let (f, d) = flags_and_data("size=32m,ro,uid=1000,noexec");
        assert_eq!(f, MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC);
        assert_eq!(d, "size=32m,uid=1000");
        assert_eq!(unescape("/a\\040b"), b"/a b");
        assert!(is_mountpoint(Path::new("/proc")).unwrap());
        assert!(!has_mount(&BTreeMap::new()));
    }
}
