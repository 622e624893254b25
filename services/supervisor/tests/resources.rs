//! Resource limits in the real cgroup hierarchy: written at create/start, read back,
//! updated live and after a supervisor restart, and sampled by ContainerStats. Needs
//! root (skipped without); the container test also needs the shim.
use std::{
    os::unix::fs::MetadataExt,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use berth_proto::supervisor::v1::{ContainerStatus, Resources, ThrottleDevice};
use berth_supervisor::{
    cgroup::{self, Layout},
    limits, stats, Error,
};
use tonic::Code;

mod common;
use common::*;

const M: i64 = 1024 * 1024;
const WEIGHT_WARNING: &str =
    "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.";

static N: AtomicUsize = AtomicUsize::new(0);

/// Removes the test's cgroups (`<instance>/<id>`, then `<instance>`) in every hierarchy,
/// whether the test passed or not.
struct CgroupGuard {
    layout: Layout,
    instance: String,
    id: String,
}

impl CgroupGuard {
    fn new(layout: &Layout) -> CgroupGuard {
        CgroupGuard {
            layout: layout.clone(),
            instance: format!(
                "berth-limtest-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ),
            id: "c1".into(),
        }
    }

    fn rel(&self) -> String {
        cgroup::path(&self.instance, &self.id)
    }

    fn read(&self, controller: &str, file: &str) -> String {
        let dir = self.layout.dir(controller, &self.rel()).unwrap();
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("read {file}: {e}"))
            .trim()
            .to_string()
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        // Every hierarchy the cgroup was created in (devices and name=systemd too).
        for rel in [self.rel(), self.instance.clone()] {
            let cg = cgroups_rs::fs::Cgroup::load(cgroups_rs::fs::hierarchies::auto(), rel);
            if cg.exists() {
                let _ = cg.delete();
            }
        }
    }
}

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("SKIP: needs root");
        false
    }
}

/// The host's first disk's major:minor (254:0, /dev/vda, here).
fn a_block_device() -> Option<(String, u32, u32)> {
    for path in ["/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda"] {
        if let Ok(md) = std::fs::metadata(path) {
            let rdev = md.rdev();
            return Some((
                path.to_string(),
                nix::sys::stat::major(rdev) as u32,
                nix::sys::stat::minor(rdev) as u32,
            ));
        }
    }
    None
}

fn throttle(dev: &(String, u32, u32), rate: u64) -> Vec<ThrottleDevice> {
    vec![ThrottleDevice {
        path: dev.0.clone(),
        major: dev.1,
        minor: dev.2,
        rate,
    }]
}

#[test]
fn limits_are_written_into_a_real_cgroup_and_updated() {
    if !root() {
        return;
    }
    let layout = Layout::detect();
    if layout.is_v2() {
        eprintln!("SKIP: the file checks below are the v1 ones");
        return;
    }
    let g = CgroupGuard::new(&layout);
    cgroup::create(&g.instance, &g.id).unwrap();
    let dev = a_block_device();
    let r = Resources {
        memory: 64 * M,
        memory_swap: 128 * M,
        memory_reservation: 32 * M,
        oom_kill_disable: true,
        memory_swappiness: Some(0),
        nano_cpus: 500_000_000,
        cpu_shares: 512,
        cpuset_cpus: "0".into(),
        cpuset_mems: "0".into(),
        blkio_weight: 300,
        device_write_bps: dev
            .as_ref()
            .map(|d| throttle(d, M as u64))
            .unwrap_or_default(),
        pids_limit: 64,
        ..Default::default()
    };
    limits::validate(&r).unwrap();
    let warnings = limits::apply(&layout, &g.rel(), &limits::v1_writes(&r)).unwrap();
    let weight_missing = !layout
        .dir("blkio", &g.rel())
        .unwrap()
        .join("blkio.weight")
        .exists();
    if weight_missing {
        assert_eq!(warnings, vec![WEIGHT_WARNING]);
        assert_eq!(
            limits::unsupported(&layout, &g.instance, &r),
            vec![WEIGHT_WARNING]
        );
    }
    assert_eq!(g.read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(g.read("memory", "memory.memsw.limit_in_bytes"), "134217728");
    assert_eq!(g.read("memory", "memory.soft_limit_in_bytes"), "33554432");
    assert!(g
        .read("memory", "memory.oom_control")
        .contains("oom_kill_disable 1"));
    assert_eq!(g.read("memory", "memory.swappiness"), "0");
    assert_eq!(g.read("cpu", "cpu.shares"), "512");
    assert_eq!(g.read("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(g.read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(g.read("cpuset", "cpuset.cpus"), "0");
    assert_eq!(g.read("cpuset", "cpuset.mems"), "0");
    assert_eq!(g.read("pids", "pids.max"), "64");
    if let Some(d) = &dev {
        assert_eq!(
            g.read("blkio", "blkio.throttle.write_bps_device"),
            format!("{}:{} 1048576", d.1, d.2)
        );
    }
    // The instance parent got cpus and mems too (v1 needs them before a task joins).
    assert!(!std::fs::read_to_string(
        layout
            .dir("cpuset", &g.instance)
            .unwrap()
            .join("cpuset.cpus")
    )
    .unwrap()
    .trim()
    .is_empty());

    // Raising memory above the current memsw: written in the other order on EINVAL.
    let update = Resources {
        memory: 256 * M,
        memory_swap: 512 * M,
        nano_cpus: 1_500_000_000,
        device_write_bps: dev.as_ref().map(|d| throttle(d, 0)).unwrap_or_default(),
        ..Default::default()
    };
    let merged = limits::merge(&r, &update).unwrap();
    let before = limits::v1_writes(&r);
    let mut changed: Vec<_> = limits::v1_writes(&merged)
        .into_iter()
        .filter(|w| !before.contains(w))
        .collect();
    changed.extend(limits::removals(&update, false));
    limits::apply(&layout, &g.rel(), &changed).unwrap();
    assert_eq!(g.read("memory", "memory.limit_in_bytes"), "268435456");
    assert_eq!(g.read("memory", "memory.memsw.limit_in_bytes"), "536870912");
    assert_eq!(g.read("cpu", "cpu.cfs_quota_us"), "150000");
    if dev.is_some() {
        assert_eq!(g.read("blkio", "blkio.throttle.write_bps_device"), "");
    }
    // And back down: memory first.
    let down = limits::merge(
        &merged,
        &Resources {
            memory: 32 * M,
            memory_swap: 64 * M,
            ..Default::default()
        },
    )
    .unwrap();
    limits::apply(&layout, &g.rel(), &limits::v1_writes(&down)).unwrap();
    assert_eq!(g.read("memory", "memory.limit_in_bytes"), "33554432");
    assert_eq!(g.read("memory", "memory.memsw.limit_in_bytes"), "67108864");

    // A value the kernel refuses names the file and the value.
    let e = limits::apply(
        &layout,
        &g.rel(),
        &limits::v1_writes(&Resources {
            cpuset_cpus: "999".into(),
            ..Default::default()
        }),
    )
    .unwrap_err();
    assert!(matches!(e, Error::CgroupWrite { .. }), "{e:?}");
    let status: tonic::Status = e.into();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("\"999\"") && status.message().contains("cpuset.cpus"),
        "{}",
        status.message()
    );
}

async fn wait_status(sup: &berth_supervisor::Supervisor, id: &str, want: ContainerStatus) {
    for _ in 0..100 {
        let c = sup.get(id).unwrap();
        if c.state.unwrap().status == want as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("container {id} never became {want:?}");
}

fn container_file(env: &Env, controller: &str, id: &str, file: &str) -> String {
    let layout = Layout::detect();
    let dir = layout
        .dir(controller, &cgroup::path(&env.config.instance, id))
        .unwrap();
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {file}: {e}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_runs_within_its_limits_updates_them_and_reports_stats() {
    let Some(mut env) = Env::new("a_container_runs_within_its_limits") else {
        return;
    };
    if Layout::detect().is_v2() {
        eprintln!("SKIP: the file checks below are the v1 ones");
        return;
    }
    let mut spec = env.spec(&["sleep", "60"]);
    spec.resources = Some(Resources {
        memory: 64 * M,
        nano_cpus: 500_000_000,
        cpuset_cpus: "0".into(),
        blkio_weight: 300,
        pids_limit: 32,
        ..Default::default()
    });
    // Refused values: nothing is created.
    let mut bad = spec.clone();
    bad.resources.as_mut().unwrap().memory = M;
    let e = env.sup().create("", "bad", Some(bad)).await.unwrap_err();
    assert_eq!(e.to_string(), "Minimum memory limit allowed is 6MB");
    assert!(env.sup().get("bad").is_err());

    let c = env.sup().create("", "lim", Some(spec)).await.unwrap();
    let weight_missing = !std::path::Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists();
    if weight_missing {
        assert_eq!(c.warnings, vec![WEIGHT_WARNING]);
    }
    let id = c.id.clone();
    let started = env.sup().start(&id).await.unwrap();
    assert!(started.warnings.is_empty());
    assert_eq!(
        container_file(&env, "memory", &id, "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(
        container_file(&env, "memory", &id, "memory.memsw.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(
        container_file(&env, "cpu", &id, "cpu.cfs_quota_us"),
        "50000"
    );
    assert_eq!(container_file(&env, "pids", &id, "pids.max"), "32");
    // The process is in the cgroup, on CPU 0 only.
    let pid = started.state.as_ref().unwrap().pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains("Cpus_allowed_list:\t0\n"),
        "{}",
        status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list"))
            .unwrap_or("")
    );

    // Live update by name: memory above the 2× default swap moves the swap with it.
    let updated = env
        .sup()
        .update_resources(
            "lim",
            Some(Resources {
                memory: 256 * M,
                nano_cpus: 1_000_000_000,
                pids_limit: -1,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let res = updated.spec.unwrap().resources.unwrap();
    assert_eq!(
        (
            res.memory,
            res.nano_cpus,
            res.pids_limit,
            res.cpuset_cpus.as_str()
        ),
        (256 * M, 1_000_000_000, -1, "0")
    );
    assert_eq!(
        container_file(&env, "memory", &id, "memory.limit_in_bytes"),
        "268435456"
    );
    assert_eq!(
        container_file(&env, "memory", &id, "memory.memsw.limit_in_bytes"),
        "536870912"
    );
    assert_eq!(
        container_file(&env, "cpu", &id, "cpu.cfs_quota_us"),
        "100000"
    );
    assert_eq!(container_file(&env, "pids", &id, "pids.max"), "max");
    // Docker's conflicts, with their words and codes.
    let e = env
        .sup()
        .update_resources(
            &id[..12],
            Some(Resources {
                cpu_quota: 20_000,
                ..Default::default()
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(tonic::Status::from(e).code(), Code::FailedPrecondition);
    let e = env
        .sup()
        .update_resources("nope", Some(Resources::default()))
        .await
        .unwrap_err();
    assert_eq!(tonic::Status::from(e).code(), Code::NotFound);

    // Stats: one round for the named container.
    let mut rx = stats::stats(env.sup(), &["lim".to_string()], false)
        .await
        .unwrap();
    let s = rx.recv().await.unwrap().unwrap();
    assert!(rx.recv().await.is_none(), "one round only");
    assert_eq!(
        (s.id.as_str(), s.name.as_str(), s.gone),
        (id.as_str(), "lim", false)
    );
    assert_eq!(s.memory_limit, 256 * M as u64);
    assert!(s.memory_usage > 0 && s.memory_usage < 256 * M as u64);
    assert_eq!(s.online_cpus, 1);
    assert!(s.pids >= 1, "{s:?}");
    assert!(s.system_cpu_nanos > 0);

    // The limits are in the store: a supervisor restart keeps them, and a new run of the
    // container gets them again.
    env.restart().await;
    let c = env.sup().get(&id).unwrap();
    assert_eq!(c.spec.unwrap().resources.unwrap().memory, 256 * M);
    env.sup().stop(&id, Some(0), "").await.unwrap();
    wait_status(env.sup(), &id, ContainerStatus::Exited).await;
    // Stopped: the update is stored, applied at the next start.
    env.sup()
        .update_resources(
            &id,
            Some(Resources {
                memory: 128 * M,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    // A streamed round over every running container: this one, then gone when stopped.
    env.sup().start(&id).await.unwrap();
    assert_eq!(
        container_file(&env, "memory", &id, "memory.limit_in_bytes"),
        "134217728"
    );
    let mut rx = stats::stats(env.sup(), &[], true).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((first.id.as_str(), first.gone), (id.as_str(), false));
    env.sup().kill(&id, "KILL").await.unwrap();
    wait_status(env.sup(), &id, ContainerStatus::Exited).await;
    let gone = loop {
        let s = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a gone sample")
            .unwrap()
            .unwrap();
        if s.gone {
            break s;
        }
    };
    assert_eq!(gone.id, id);
    drop(rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_allocating_past_its_memory_limit_is_oom_killed() {
    let Some(env) = Env::new("a_process_allocating_past_its_memory_limit") else {
        return;
    };
    let mut spec = env.spec(&[
        "sh",
        "-c",
        "a=0123456789abcdef; while :; do a=\"$a$a\"; done",
    ]);
    spec.resources = Some(Resources {
        memory: 32 * M,
        memory_swap: 32 * M,
        ..Default::default()
    });
    let c = env.sup().create("", "hog", Some(spec)).await.unwrap();
    env.sup().start(&c.id).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), env.sup().wait(&c.id))
        .await
        .expect("the container ends")
        .unwrap();
    assert_eq!((exit.exit_code, exit.oom_killed), (137, true));
}
