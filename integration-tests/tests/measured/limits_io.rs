//! Block I/O throttling (issue 8), measured: an O_DIRECT `dd` in a container runs at the
//! rate `--device-write-bps`, `--device-read-bps` or `--device-write-iops` sets, ± 20%.
//!
//! The throttled device is a loop device over a temp file (`losetup`), with an ext4
//! filesystem mounted on the host and bind-mounted into the container (berth has no
//! `--device`): the container's direct I/O to that file is I/O to the loop device, which
//! the container's blkio cgroup throttles. The loop device, its mount and the file are
//! removed by a guard on failure too.
use std::{path::PathBuf, process::Command};

use berth_integration_tests::{stderr, stdout, unique, Engine};

/// A 64 MiB ext4 filesystem on a loop device, mounted in a temp dir; on drop: unmounted,
/// detached, deleted.
struct LoopFs {
    dev: String,
    mnt: PathBuf,
    mounted: bool,
    _dir: tempfile::TempDir,
}

impl LoopFs {
    fn new() -> LoopFs {
        let dir = tempfile::Builder::new()
            .prefix("blim")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let img = dir.path().join("img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(64 << 20))
            .expect("loop backing file");
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .expect("run losetup");
        assert!(out.status.success(), "losetup: {}", stderr(&out));
        let mut fs = LoopFs {
            dev: stdout(&out).trim().to_string(),
            mnt: dir.path().join("mnt"),
            mounted: false,
            _dir: dir,
        };
        run(Command::new("mkfs.ext4").args(["-q", "-F", &fs.dev]));
        std::fs::create_dir(&fs.mnt).unwrap();
        run(Command::new("mount").arg(&fs.dev).arg(&fs.mnt));
        fs.mounted = true;
        fs
    }

    /// Writes `len` bytes to `name` on the filesystem and flushes them to the device.
    fn file(&self, name: &str, len: usize) -> PathBuf {
        use std::io::Write;
        let path = self.mnt.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![7u8; len]).unwrap();
        f.sync_all().unwrap();
        path
    }

    fn volume(&self) -> String {
        format!("{}:/data", self.mnt.display())
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        // Detaches at once, or when its last user (a lazy mount) goes.
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
}

const MIB: f64 = 1048576.0;

/// Runs `dd_args` in a container with `flags`, timed inside it from /proc/uptime (10 ms
/// steps); returns the seconds it took.
fn timed_dd(engine: &Engine, name: &str, fs: &LoopFs, flags: &[&str], dd: &str) -> f64 {
    let script = format!(
        "a=$(cut -d' ' -f1 /proc/uptime); dd {dd} 2>/dev/null || echo dd failed >&2; \
         b=$(cut -d' ' -f1 /proc/uptime); echo $a $b"
    );
    let volume = fs.volume();
    let mut args = vec!["run", "--name", name, "-v", &volume];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    let out = engine.ok(&args);
    let times: Vec<f64> = out
        .split_whitespace()
        .map(|t| t.parse().expect("uptime"))
        .collect();
    assert_eq!(times.len(), 2, "{out:?}");
    times[1] - times[0]
}

/// The limit `inspect` shows for `field` (BlkioDeviceWriteBps ...): (Path, Rate).
fn throttle(engine: &Engine, name: &str, field: &str) -> (String, u64) {
    let json = engine.inspect(name, &format!("{{{{json .HostConfig.{field}}}}}"));
    let v: serde_json::Value = serde_json::from_str(&json).expect("inspect JSON");
    let first = &v[0];
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{field}: {json}");
    (
        first["Path"].as_str().unwrap_or_default().to_string(),
        first["Rate"].as_u64().unwrap_or_default(),
    )
}

fn assert_rate(what: &str, amount: f64, seconds: f64, want: f64) {
    let rate = amount / seconds;
    eprintln!("{what}: {rate:.3} per second ({amount} in {seconds:.2} s)");
    assert!(
        (want * 0.8..=want * 1.2).contains(&rate),
        "{what}: {rate:.3} per second ({amount} in {seconds:.2} s), wanted {want} ± 20%"
    );
}

#[test]
fn device_write_bps_limits_direct_writes() {
    let fs = LoopFs::new();
    let engine = Engine::with_busybox();
    fs.file("f", 3 << 20);
    // 3 MiB in place (no allocation on the filesystem), 64 KiB direct writes.
    let dd = "if=/dev/zero of=/data/f bs=64k count=48 oflag=direct conv=notrunc";

    // Unthrottled, the same dd takes a fraction of the throttled time.
    let free = timed_dd(&engine, &unique("wfree"), &fs, &[], dd);
    eprintln!("unthrottled: {free:.2} s");
    assert!(free < 1.0, "unthrottled dd took {free:.2} s");

    let name = unique("wbps");
    let limit = format!("{}:1mb", fs.dev);
    let took = timed_dd(&engine, &name, &fs, &["--device-write-bps", &limit], dd);
    assert_rate("--device-write-bps 1mb", 3.0 * MIB, took, MIB);
    assert_eq!(
        throttle(&engine, &name, "BlkioDeviceWriteBps"),
        (fs.dev.clone(), 1048576)
    );
}

#[test]
fn device_read_bps_limits_direct_reads() {
    let fs = LoopFs::new();
    let engine = Engine::with_busybox();
    fs.file("f", 3 << 20);
    let name = unique("rbps");
    let limit = format!("{}:1mb", fs.dev);
    let took = timed_dd(
        &engine,
        &name,
        &fs,
        &["--device-read-bps", &limit],
        "if=/data/f of=/dev/null bs=64k iflag=direct",
    );
    assert_rate("--device-read-bps 1mb", 3.0 * MIB, took, MIB);
    assert_eq!(
        throttle(&engine, &name, "BlkioDeviceReadBps"),
        (fs.dev.clone(), 1048576)
    );
}

#[test]
fn device_write_iops_limits_direct_writes() {
    let fs = LoopFs::new();
    let engine = Engine::with_busybox();
    fs.file("f", 300 * 4096);
    let name = unique("wiops");
    let limit = format!("{}:100", fs.dev);
    // 300 writes of 4 KiB: 1.2 MB, far under any byte limit; 3 s at 100 per second.
    let took = timed_dd(
        &engine,
        &name,
        &fs,
        &["--device-write-iops", &limit],
        "if=/dev/zero of=/data/f bs=4k count=300 oflag=direct conv=notrunc",
    );
    assert_rate("--device-write-iops 100", 300.0, took, 100.0);
    assert_eq!(
        throttle(&engine, &name, "BlkioDeviceWriteIOps"),
        (fs.dev.clone(), 100)
    );
}

#[test]
fn device_read_iops_limits_direct_reads() {
    let fs = LoopFs::new();
    let engine = Engine::with_busybox();
    fs.file("f", 300 * 4096);
    let name = unique("riops");
    let limit = format!("{}:100", fs.dev);
    let took = timed_dd(
        &engine,
        &name,
        &fs,
        &["--device-read-iops", &limit],
        "if=/data/f of=/dev/null bs=4k iflag=direct",
    );
    assert_rate("--device-read-iops 100", 300.0, took, 100.0);
    assert_eq!(
        throttle(&engine, &name, "BlkioDeviceReadIOps"),
        (fs.dev.clone(), 100)
    );
}
