//! Builds the container's file system inside its own mount namespace: overlay rootfs,
//! the spec's mounts, /dev, pivot_root, masked and read-only paths.
use std::collections::HashMap;
use std::os::unix::fs::{symlink, DirBuilderExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::securejoin::secure_join;
use crate::error::{Context, Error, Result};
use crate::sys::mount;

pub const ANN_LOWER: &str = "io.berth.rootfs.lowerdirs";
pub const ANN_UPPER: &str = "io.berth.rootfs.upperdir";
pub const ANN_WORK: &str = "io.berth.rootfs.workdir";

/// Mount options split into flags, propagation flags and the data string.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountOpts {
    pub flags: libc::c_ulong,
    pub propagation: libc::c_ulong,
    pub data: String,
    pub bind: bool,
    pub recursive: bool,
}

pub fn parse_options(options: &[String]) -> MountOpts {
    let mut o = MountOpts::default();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "relatime" => (libc::MS_RELATIME, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" | "defaults" => (0, 0),
            "bind" => {
                o.bind = true;
                (0, 0)
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                (0, 0)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let rec = if opt.starts_with('r') && opt != "rw" {
                    libc::MS_REC
                } else {
                    0
                };
                o.propagation |= rec
                    | match opt.trim_start_matches('r') {
                        "private" => libc::MS_PRIVATE,
                        "shared" => libc::MS_SHARED,
                        "slave" => libc::MS_SLAVE,
                        _ => libc::MS_UNBINDABLE,
                    };
                (0, 0)
            }
            other => {
                data.push(other.to_string());
                (0, 0)
            }
        };
        o.flags = (o.flags | set) & !clear;
    }
    o.data = data.join(",");
    o
}

/// Mounts the overlay (or binds the rootfs onto itself, so it is a mount point for
/// pivot_root) and every mount of the spec below it.
pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<()> {
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .ctx(|| "make / rprivate".into())?;
    let ann = spec.annotations().clone().unwrap_or_default();
    mount_rootfs(&ann, rootfs)?;
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let typ = m.typ().as_deref().unwrap_or("");
        let opts = parse_options(m.options().as_deref().unwrap_or_default());
        let source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned());
        let dest = secure_join(rootfs, m.destination())
            .ctx(|| format!("resolve mount destination {}", m.destination().display()))?;
        if opts.bind || typ == "bind" {
            let source = source.ok_or_else(|| {
                Error::Spec(format!(
                    "bind mount {} has no source",
                    m.destination().display()
                ))
            })?;
            bind(&source, &dest, &opts)?;
        } else {
            mkdir_all(&dest)?;
            // A tmpfs /dev needs exec-capable device nodes; mode comes from the options.
            mount(
                source.as_deref().or(Some(typ)),
                &dest,
                Some(typ),
                opts.flags,
                Some(&opts.data),
            )
            .or_else(|e| {
                // sysfs cannot be mounted when the network namespace is not ours:
                // fall back to a read-only bind of the host's, like runc.
                if typ == "sysfs" && e.raw_os_error() == Some(libc::EPERM) {
                    bind(
                        "/sys",
                        &dest,
                        &MountOpts {
                            flags: opts.flags | libc::MS_RDONLY,
                            recursive: true,
                            bind: true,
                            ..Default::default()
                        },
                    )
                    .map_err(|_| e)
                } else {
                    Err(e)
                }
            })
            .ctx(|| format!("mount {typ} on {}", m.destination().display()))?;
            if m.destination() == Path::new("/dev") {
                populate_dev(&dest)?;
            }
        }
        if opts.propagation != 0 {
            mount(None, &dest, None, opts.propagation, None)
                .ctx(|| format!("set propagation of {}", dest.display()))?;
        }
    }
    Ok(())
}

fn mount_rootfs(ann: &HashMap<String, String>, rootfs: &Path) -> Result<()> {
    match (ann.get(ANN_LOWER), ann.get(ANN_UPPER), ann.get(ANN_WORK)) {
        (Some(lower), Some(upper), Some(work)) => {
            let data = format!("lowerdir={lower},upperdir={upper},workdir={work}");
            mount(Some("overlay"), rootfs, Some("overlay"), 0, Some(&data))
                .ctx(|| format!("mount overlay on {}", rootfs.display()))
        }
        (Some(lower), None, None) if !lower.contains(':') => bind(
            lower,
            rootfs,
            &MountOpts {
                bind: true,
                recursive: true,
                ..Default::default()
            },
        ),
        (None, None, None) => mount(
            Some(&rootfs.to_string_lossy()),
            rootfs,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .ctx(|| format!("bind rootfs {} onto itself", rootfs.display())),
        _ => Err(Error::Spec(format!(
            "annotations {ANN_LOWER}, {ANN_UPPER}, {ANN_WORK} must be set together"
        ))),
    }
}

fn bind(source: &str, dest: &Path, opts: &MountOpts) -> Result<()> {
    let meta = std::fs::metadata(source).ctx(|| format!("stat bind source {source}"))?;
    if meta.is_dir() {
        mkdir_all(dest)?;
    } else {
        if let Some(parent) = dest.parent() {
            mkdir_all(parent)?;
        }
        if std::fs::symlink_metadata(dest).is_err() {
            std::fs::File::create(dest).ctx(|| format!("create mount point {}", dest.display()))?;
        }
    }
    let rec = if opts.recursive { libc::MS_REC } else { 0 };
    mount(Some(source), dest, None, libc::MS_BIND | rec, None)
        .ctx(|| format!("bind {source} on {}", dest.display()))?;
    let extra = opts.flags & (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    if extra != 0 {
        // Bind mounts ignore flags on the first call; they take effect on a remount.
        mount(
            None,
            dest,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | extra | locked_flags(dest),
            None,
        )
        .ctx(|| format!("remount {} with options", dest.display()))?;
    }
    Ok(())
}

/// Flags the kernel keeps on a mount and refuses to drop in a remount.
fn locked_flags(p: &Path) -> libc::c_ulong {
    let Ok(c) = crate::sys::cstr(p) else { return 0 };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let mut f = 0;
    for (st_flag, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
    ] {
        if st.f_flag & st_flag != 0 {
            f |= ms;
        }
    }
    f
}

pub fn mkdir_all(p: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .ctx(|| format!("mkdir {}", p.display()))
}

/// The device nodes every container gets, and the usual /dev symlinks.
fn populate_dev(dev: &Path) -> Result<()> {
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = dev.join(name);
        let c = crate::sys::cstr(&path).ctx(|| format!("path {}", path.display()))?;
        let rc = unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        };
        if rc != 0 {
            // Without CAP_MKNOD, bind the host's node instead.
            std::fs::File::create(&path).ctx(|| format!("create {}", path.display()))?;
            let host = format!("/dev/{name}");
            mount(Some(&host), &path, None, libc::MS_BIND, None).ctx(|| format!("bind {host}"))?;
        } else {
            // mknod is subject to the umask.
            unsafe { libc::chmod(c.as_ptr(), 0o666) };
        }
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        let path = dev.join(link);
        if std::fs::symlink_metadata(&path).is_err() {
            symlink(target, &path).ctx(|| format!("symlink {}", path.display()))?;
        }
    }
    Ok(())
}

/// Makes `rootfs` the root: pivot_root(".", ".") stacks the old root on top, and a lazy
/// unmount removes it.
pub fn pivot(rootfs: &Path) -> Result<()> {
    std::env::set_current_dir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    let dot = crate::sys::cstr(".").ctx(|| "path .".into())?;
    if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } != 0 {
        return Err(Error::io(
            format!("pivot_root {}", rootfs.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // The old root is still shared with the host through propagation unless made slave.
    mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .ctx(|| "make old root rslave".into())?;
    if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(Error::io(
            "unmount old root",
            std::io::Error::last_os_error(),
        ));
    }
    std::env::set_current_dir("/").ctx(|| "chdir /".into())
}

/// Hides paths: /dev/null over files, an empty read-only tmpfs over directories.
pub fn mask(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let r = if meta.is_dir() {
            mount(Some("tmpfs"), path, Some("tmpfs"), libc::MS_RDONLY, None)
        } else {
            mount(Some("/dev/null"), path, None, libc::MS_BIND, None)
        };
        r.ctx(|| format!("mask {p}"))?;
    }
    Ok(())
}

pub fn readonly(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        mount(Some(p), path, None, libc::MS_BIND | libc::MS_REC, None)
            .ctx(|| format!("bind {p} for read-only"))?;
        mount(
            None,
            path,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked_flags(path),
            None,
        )
        .ctx(|| format!("remount {p} read-only"))?;
    }
    Ok(())
}

pub fn root_readonly() -> Result<()> {
    let root = Path::new("/");
    mount(
        None,
        root,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked_flags(root),
        None,
    )
    .ctx(|| "remount / read-only".into())
}

/// The rootfs mount point: `root.path`, relative to the bundle unless absolute.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> PathBuf {
    let p = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    bundle.join(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let o = parse_options(&[
            "nosuid".into(),
            "strictatime".into(),
            "mode=755".into(),
            "size=65536k".into(),
        ]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = parse_options(&["rbind".into(), "ro".into(), "rprivate".into()]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, libc::MS_RDONLY);
        assert_eq!(o.propagation, libc::MS_REC | libc::MS_PRIVATE);
        assert_eq!(parse_options(&["ro".into(), "rw".into()]).flags, 0);
    }
}
