//! Resource limits (issue 8), measured by their effect rather than by the cgroup files
//! berth writes: a process past `-m` is OOM-killed, a busy loop's CPU time (cpuacct) follows
//! `--cpus`, `--cpu-shares` and `--cpuset-cpus`, a fork loop stops at `--pids-limit`,
//! `update` changes a running container, `stats` reports what it uses, and every bad value
//! is refused with exit 125 and nothing created. Block I/O throttling: limits_io.rs.
//!
//! Cgroup files are read only to measure (cpuacct.usage, pids.current, memory.stat), from the
//! container's own cgroup `/sys/fs/cgroup/<controller>/<instance>/<full id>` (cgroup v1).
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use berth_integration_tests::{eventually, stderr, stdout, unique, Engine};

/// Tests that measure CPU time take turns: two busy containers from different tests on this
/// 2-core machine would skew each other's figures.
static CPU: Mutex<()> = Mutex::new(());

fn cpu_turn() -> MutexGuard<'static, ()> {
    CPU.lock().unwrap_or_else(|e| e.into_inner())
}

const BUSY: &str = "while :; do :; done";

/// The host's online CPUs, in the kernel's list form ("0-1"), and how many.
fn host_cpus() -> (String, usize) {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .expect("online CPUs")
        .trim()
        .to_string();
    let n = list
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum();
    (list, n)
}

/// The container's cgroup directory in a v1 hierarchy.
fn cgroup(engine: &Engine, controller: &str, name: &str) -> PathBuf {
    let id = engine.inspect(name, "{{.Id}}");
    PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join(&engine.instance)
        .join(id)
}

fn read_u64(path: &Path) -> u64 {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
}

/// A field of a cgroup v1 `memory.stat`.
fn memory_stat(dir: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join("memory.stat"))
        .ok()?
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
}

/// CPUs used by each cgroup over `window`: Δ cpuacct.usage / Δ wall time, all read together.
fn cpu_rates(dirs: &[&Path], window: Duration) -> Vec<f64> {
    let rates = measure(dirs, window);
    eprintln!("CPUs used over {window:?}: {rates:.3?}");
    rates
}

fn measure(dirs: &[&Path], window: Duration) -> Vec<f64> {
    let usage = |d: &Path| read_u64(&d.join("cpuacct.usage"));
    let before: Vec<u64> = dirs.iter().map(|d| usage(d)).collect();
    let t0 = Instant::now();
    thread::sleep(window);
    let after: Vec<u64> = dirs.iter().map(|d| usage(d)).collect();
    let wall = t0.elapsed().as_nanos() as f64;
    before
        .iter()
        .zip(after)
        .map(|(b, a)| (a - b) as f64 / wall)
        .collect()
}

fn cpu_rate(dir: &Path, window: Duration) -> f64 {
    cpu_rates(&[dir], window)[0]
}

/// Starts a detached busy loop with `flags` and waits until it runs.
fn busy(engine: &Engine, name: &str, flags: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", BUSY]);
    engine.ok(&args);
    engine.wait_status(name, "running");
}

#[test]
fn memory_limit_oom_kills_a_process_past_it() {
    let engine = Engine::with_busybox();
    let name = unique("oom");
    // `tail /dev/zero` keeps the one endless "line" it reads: it grows until killed.
    let started = Instant::now();
    let out = engine.berth(&[
        "run",
        "--name",
        &name,
        "-m",
        "32m",
        "busybox",
        "tail",
        "/dev/zero",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "stdout: {}\nstderr: {}\n{}",
        stdout(&out),
        stderr(&out),
        engine.service_logs()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "OOM kill took {:?}",
        started.elapsed()
    );
    assert_eq!(engine.inspect(&name, "{{.State.OOMKilled}}"), "true");
    assert_eq!(engine.inspect(&name, "{{.State.ExitCode}}"), "137");
    assert_eq!(engine.inspect(&name, "{{.HostConfig.Memory}}"), "33554432");

    // The host is fine: the engine answers and runs the next container; one that stays
    // under its limit is not OOM-killed.
    let fine = unique("fine");
    engine.ok(&[
        "run",
        "--name",
        &fine,
        "-m",
        "32m",
        "busybox",
        "sh",
        "-c",
        "head -c 8000000 /dev/zero | tail -c 1 >/dev/null",
    ]);
    assert_eq!(engine.inspect(&fine, "{{.State.OOMKilled}}"), "false");
    assert_eq!(engine.inspect(&name, "{{.State.OOMKilled}}"), "true");
}

#[test]
fn memory_swap_equal_to_memory_uses_no_swap() {
    let engine = Engine::with_busybox();
    let name = unique("noswap");
    // A child grows past the limit and is killed; PID 1 reports it and stays up.
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-m",
        "32m",
        "--memory-swap",
        "32m",
        "busybox",
        "sh",
        "-c",
        "tail /dev/zero; echo tail=$?; exec sleep 1000",
    ]);
    assert!(
        eventually(Duration::from_secs(20), || engine
            .ok(&["logs", &name])
            .contains("tail=137")),
        "the allocating child was not killed: {}",
        engine.ok(&["logs", &name])
    );
    assert_eq!(engine.inspect(&name, "{{.HostConfig.Memory}}"), "33554432");
    assert_eq!(
        engine.inspect(&name, "{{.HostConfig.MemorySwap}}"),
        "33554432"
    );
    let dir = cgroup(&engine, "memory", &name);
    // Memory + swap never went past the limit, and no page of it is in swap.
    let peak = read_u64(&dir.join("memory.memsw.max_usage_in_bytes"));
    assert!(peak <= 32 << 20, "memory+swap peaked at {peak}");
    assert!(
        peak >= 24 << 20,
        "the child never came near the limit: {peak}"
    );
    assert_eq!(memory_stat(&dir, "swap"), Some(0));
    engine.ok(&["rm", "-f", &name]);
}

#[test]
fn oom_kill_disable_keeps_the_process_alive_past_the_limit() {
    let engine = Engine::with_busybox();
    let name = unique("nooomkill");
    // Past the limit with the OOM killer off, the kernel refuses the memory (tail's read
    // fails) instead of killing: the process lives to report it.
    let out = engine.berth(&[
        "run",
        "--name",
        &name,
        "-m",
        "32m",
        "--oom-kill-disable",
        "busybox",
        "sh",
        "-c",
        "tail /dev/zero; echo tail=$?",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("tail=") && !said.contains("tail=137"),
        "{said:?} {}",
        stderr(&out)
    );
    assert_eq!(
        engine.inspect(&name, "{{.HostConfig.OomKillDisable}}"),
        "true"
    );
    assert_eq!(engine.inspect(&name, "{{.State.OOMKilled}}"), "false");
}

#[test]
fn cpus_half_gets_half_a_cpu() {
    let _turn = cpu_turn();
    let engine = Engine::with_busybox();
    let name = unique("cpus");
    busy(&engine, &name, &["--cpus", "0.5"]);
    assert_eq!(
        engine.inspect(&name, "{{.HostConfig.NanoCpus}}"),
        "500000000"
    );
    let dir = cgroup(&engine, "cpuacct", &name);
    thread::sleep(Duration::from_millis(200));
    let rate = cpu_rate(&dir, Duration::from_secs(3));
    assert!((0.4..=0.6).contains(&rate), "--cpus 0.5 got {rate:.3} CPU");
    engine.ok(&["rm", "-f", &name]);

    // The same through the CFS period and quota: 30 ms of every 100 ms.
    let name = unique("quota");
    busy(
        &engine,
        &name,
        &["--cpu-period", "100000", "--cpu-quota", "30000"],
    );
    assert_eq!(engine.inspect(&name, "{{.HostConfig.CpuPeriod}}"), "100000");
    assert_eq!(engine.inspect(&name, "{{.HostConfig.CpuQuota}}"), "30000");
    let dir = cgroup(&engine, "cpuacct", &name);
    thread::sleep(Duration::from_millis(200));
    let rate = cpu_rate(&dir, Duration::from_secs(2));
    assert!(
        (0.2..=0.4).contains(&rate),
        "--cpu-quota 30000 of 100000 got {rate:.3} CPU"
    );
    engine.ok(&["rm", "-f", &name]);
}

#[test]
fn cpu_shares_split_one_cpu_two_to_one() {
    let _turn = cpu_turn();
    let engine = Engine::with_busybox();
    let big = unique("shares1024");
    let small = unique("shares512");
    busy(
        &engine,
        &big,
        &["--cpuset-cpus", "0", "--cpu-shares", "1024"],
    );
    busy(&engine, &small, &["--cpuset-cpus", "0", "-c", "512"]);
    assert_eq!(engine.inspect(&big, "{{.HostConfig.CpuShares}}"), "1024");
    assert_eq!(engine.inspect(&small, "{{.HostConfig.CpuShares}}"), "512");
    assert_eq!(engine.inspect(&small, "{{.HostConfig.CpusetCpus}}"), "0");
    let (b, s) = (
        cgroup(&engine, "cpuacct", &big),
        cgroup(&engine, "cpuacct", &small),
    );
    thread::sleep(Duration::from_millis(200));
    let rates = cpu_rates(&[&b, &s], Duration::from_secs(3));
    let ratio = rates[0] / rates[1];
    assert!(
        (1.5..=2.7).contains(&ratio),
        "shares 1024:512 split CPU 0 as {:.3}:{:.3} (ratio {ratio:.2})",
        rates[0],
        rates[1]
    );
    // Both on CPU 0: together they never get more than that one CPU.
    assert!(
        rates[0] + rates[1] < 1.1,
        "pinned to one CPU, yet used {:.3}",
        rates[0] + rates[1]
    );
    engine.ok(&["rm", "-f", &big, &small]);
}

#[test]
fn cpuset_cpus_is_what_the_container_sees() {
    let engine = Engine::with_busybox();
    let (online, n) = host_cpus();
    for cpus in ["0", "1"].into_iter().take(n) {
        let name = unique("cpuset");
        let out = engine.ok(&[
            "run",
            "--name",
            &name,
            "--cpuset-cpus",
            cpus,
            "busybox",
            "grep",
            "Cpus_allowed_list",
            "/proc/self/status",
        ]);
        assert_eq!(out.trim(), format!("Cpus_allowed_list:\t{cpus}"), "{out:?}");
        assert_eq!(engine.inspect(&name, "{{.HostConfig.CpusetCpus}}"), cpus);
    }
    let out = engine.ok(&[
        "run",
        "--rm",
        "--cpuset-mems",
        "0",
        "busybox",
        "grep",
        "Mems_allowed_list",
        "/proc/self/status",
    ]);
    assert_eq!(out.trim(), "Mems_allowed_list:\t0", "{out:?}");
    // Without the flag: every CPU of the host.
    let out = engine.ok(&[
        "run",
        "--rm",
        "busybox",
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ]);
    assert_eq!(
        out.trim(),
        format!("Cpus_allowed_list:\t{online}"),
        "{out:?}"
    );
}

#[test]
fn pids_limit_stops_a_fork_loop_and_the_container_still_stops() {
    let engine = Engine::with_busybox();
    let name = unique("pids");
    // The forks run in a subshell, so PID 1 survives their failure and `exec`s (no fork).
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--pids-limit",
        "16",
        "busybox",
        "sh",
        "-c",
        "(for i in $(seq 100); do sleep 30 & done; wait); exec sleep 1000",
    ]);
    assert_eq!(engine.inspect(&name, "{{.HostConfig.PidsLimit}}"), "16");
    let dir = cgroup(&engine, "pids", &name);
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let now = read_u64(&dir.join("pids.current"));
        peak = peak.max(now);
        thread::sleep(Duration::from_millis(20));
    }
    assert!(peak <= 16, "{peak} processes under --pids-limit 16");
    assert!(peak >= 12, "the fork loop only reached {peak} processes");
    let events = std::fs::read_to_string(dir.join("pids.events")).unwrap_or_default();
    assert!(
        events
            .trim()
            .strip_prefix("max ")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        "no fork was refused: {events:?}"
    );
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "running");

    // Still stoppable, at once after the timeout, and removable.
    let started = Instant::now();
    engine.ok(&["stop", "-t", "1", &name]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "exited");
    let started = Instant::now();
    engine.ok(&["rm", "-f", &name]);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(engine.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn update_raises_the_cpu_rate_and_changes_memory() {
    let _turn = cpu_turn();
    let engine = Engine::with_busybox();
    let name = unique("upd");
    busy(&engine, &name, &["--cpus", "0.2"]);
    let dir = cgroup(&engine, "cpuacct", &name);
    thread::sleep(Duration::from_millis(200));
    let before = cpu_rate(&dir, Duration::from_millis(1500));
    assert!(
        (0.1..=0.3).contains(&before),
        "--cpus 0.2 got {before:.3} CPU"
    );

    let out = engine.ok(&["update", "--cpus", "1", &name]);
    assert_eq!(out.trim(), name, "update prints the name it was given");
    assert_eq!(
        engine.inspect(&name, "{{.HostConfig.NanoCpus}}"),
        "1000000000"
    );
    thread::sleep(Duration::from_millis(100));
    let after = cpu_rate(&dir, Duration::from_millis(1500));
    assert!(
        after >= 0.7,
        "after update --cpus 1: {after:.3} CPU (before {before:.3})"
    );

    engine.ok(&["update", "-m", "64m", &name]);
    assert_eq!(engine.inspect(&name, "{{.HostConfig.Memory}}"), "67108864");
    assert_eq!(
        engine.inspect(&name, "{{.HostConfig.NanoCpus}}"),
        "1000000000",
        "update -m left --cpus alone"
    );
    // The new limit holds: a process growing past it inside the container is killed.
    let out = engine.berth(&["exec", &name, "tail", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "running");

    // An updated limit outlives a restart.
    engine.ok(&["update", "--cpus", "0.3", &name]);
    engine.ok(&["stop", "-t", "0", &name]);
    engine.ok(&["start", &name]);
    engine.wait_status(&name, "running");
    thread::sleep(Duration::from_millis(200));
    let restarted = cpu_rate(&dir, Duration::from_millis(1500));
    assert!(
        (0.2..=0.4).contains(&restarted),
        "--cpus 0.3 by update, after a restart: {restarted:.3} CPU"
    );
    assert_eq!(engine.inspect(&name, "{{.HostConfig.Memory}}"), "67108864");
    engine.ok(&["rm", "-f", &name]);
}

/// Parses a `docker stats` percentage such as "99.87%".
fn percent(value: &serde_json::Value) -> f64 {
    let s = value.as_str().unwrap_or_default();
    s.strip_suffix('%')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a percentage: {value}"))
}

#[test]
fn stats_reports_a_busy_container() {
    let _turn = cpu_turn();
    let engine = Engine::with_busybox();
    let name = unique("stats");
    busy(&engine, &name, &["-m", "64m"]);
    let id = engine.inspect(&name, "{{.Id}}");
    thread::sleep(Duration::from_millis(300));

    let out = engine.ok(&["stats", "--no-stream", "--format", "json", &name]);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{out}");
    let s: serde_json::Value = serde_json::from_str(lines[0]).expect("stats JSON");
    for key in [
        "BlockIO",
        "CPUPerc",
        "Container",
        "ID",
        "MemPerc",
        "MemUsage",
        "Name",
        "NetIO",
        "PIDs",
    ] {
        assert!(s.get(key).is_some(), "no {key} in {s}");
    }
    assert_eq!(s["Name"], name.as_str(), "{s}");
    let short = s["ID"].as_str().unwrap();
    assert!(short.len() >= 12 && id.starts_with(short), "{s}");
    let cpu = percent(&s["CPUPerc"]);
    assert!(cpu > 20.0 && cpu <= 210.0, "busy loop at {cpu}% CPU: {s}");
    let mem = s["MemUsage"].as_str().unwrap();
    let (used, limit) = mem.split_once(" / ").expect("MemUsage is used / limit");
    assert_eq!(limit, "64MiB", "{s}");
    assert!(used.ends_with("B"), "{s}");
    let mem_perc = percent(&s["MemPerc"]);
    assert!((0.0..100.0).contains(&mem_perc), "{s}");
    assert_eq!(s["PIDs"], "1", "{s}");

    // The table: Docker's columns, a row for the container.
    let table = engine.ok(&["stats", "--no-stream"]);
    let header = table.lines().next().unwrap_or_default();
    let mut at = 0;
    for column in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        let found = header[at..]
            .find(column)
            .unwrap_or_else(|| panic!("no {column:?} (in order) in {header:?}"));
        at += found + column.len();
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id[..12]) && l.contains(&name)),
        "{table}"
    );

    // Streaming: a new sample for the container about every second until stopped.
    let mut child = engine
        .berth_cmd(&["stats", "--format", "json", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let reader = thread::spawn({
        let stdout = child.stdout.take().unwrap();
        move || std::io::read_to_string(stdout).unwrap_or_default()
    });
    thread::sleep(Duration::from_millis(3500));
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = child.wait();
    let streamed = reader.join().unwrap();
    let samples = streamed
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["Name"] == name.as_str())
        .count();
    assert!(
        (2..=6).contains(&samples),
        "{samples} samples in 3.5 s:\n{streamed}"
    );
    engine.ok(&["rm", "-f", &name]);
}

/// `berth run --name NAME FLAGS busybox true` must fail with 125 and a message that
/// contains every one of `expect` (case-insensitive).
fn refused(engine: &Engine, flags: &[&str], expect: &[&str]) -> Result<(), String> {
    let name = unique("bad");
    let mut args = vec!["run", "--name", &name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "true"]);
    let out = engine.berth(&args);
    let err = stderr(&out);
    if out.status.code() != Some(125) {
        return Err(format!(
            "{flags:?}: exit {:?}, wanted 125; stderr: {err}",
            out.status.code()
        ));
    }
    let lower = err.to_lowercase();
    if let Some(missing) = expect.iter().find(|e| !lower.contains(&e.to_lowercase())) {
        return Err(format!("{flags:?}: no {missing:?} in the message: {err}"));
    }
    Ok(())
}

#[test]
fn bad_values_are_refused_and_create_nothing() {
    let engine = Engine::with_busybox();
    let (online, n) = host_cpus();
    let range = format!("Range of CPUs is from 0.01 to {n}.00");
    let missing_cpu = if n <= 7 { 7 } else { n + 1 }.to_string();
    let not_there =
        format!("Requested CPUs are not available - requested {missing_cpu}, available: {online}");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["-m", "4m"],
            &["Minimum memory limit allowed is 6MB", "4MiB"],
        ),
        (&["-m", "12x"], &["invalid size", "12x"]),
        (
            &["--memory-swap", "64m"],
            &["You should always set the Memory limit when using Memoryswap limit"],
        ),
        (
            &["-m", "32m", "--memory-swap", "16m"],
            &[
                "Minimum memoryswap limit should be larger than memory limit",
                "16MiB",
            ],
        ),
        (
            &["--memory-reservation", "64m", "-m", "32m"],
            &["can not be less than memory reservation limit", "64MiB"],
        ),
        (
            &["--memory-reservation", "1m"],
            &["Minimum memory reservation", "1MiB"],
        ),
        (
            &["--memory-swappiness", "101"],
            &["valid memory swappiness range is 0-100", "101"],
        ),
        (&["--cpus", "99"], &[&range, "99"]),
        (
            &["--cpus", "0.001"],
            &["Range of CPUs is from 0.01", "0.001"],
        ),
        (&["--cpus", "0"], &["Range of CPUs", "\"0\""]),
        (&["--cpus", "abc"], &["abc"]),
        (
            &["--cpus", "0.5", "--cpu-quota", "50000"],
            &["Conflicting options: Nano CPUs and CPU Quota cannot both be set"],
        ),
        (
            &["--cpus", "0.5", "--cpu-period", "50000"],
            &["Conflicting options: Nano CPUs and CPU Period cannot both be set"],
        ),
        (&["--cpu-period", "500"], &["CPU cfs period", "500"]),
        (&["--cpu-quota", "500"], &["CPU cfs quota", "500"]),
        (&["--cpu-shares", "1"], &["CPU shares", "1"]),
        (&["--cpuset-cpus", &missing_cpu], &[&not_there]),
        (&["--cpuset-cpus", "0-x"], &["0-x"]),
        (
            &["--cpuset-mems", "5"],
            &["Requested memory nodes are not available", "5"],
        ),
        // Docker's CLI takes only paths under /dev/.
        (
            &["--device-write-bps", "/nonexistent:1mb"],
            &["/nonexistent"],
        ),
        (
            &["--device-write-bps", "/dev/nonexistent:1mb"],
            &["/dev/nonexistent", "no such file"],
        ),
        (
            &["--device-write-bps", "/dev/null:1mb"],
            &["/dev/null", "not a block device"],
        ),
        (
            &["--device-read-iops", "/dev/null:1"],
            &["/dev/null", "not a block device"],
        ),
        (
            &["--device-read-bps", "/dev/null"],
            &["bad format", "/dev/null"],
        ),
        (&["--device-write-bps", "/dev/null:1zb"], &["1zb"]),
        (
            &["--device-write-iops", "/dev/null:abc"],
            &["invalid rate", "abc"],
        ),
        // Refused although this kernel has no blkio weight (Docker would warn and discard).
        (
            &["--blkio-weight", "5"],
            &["Range of blkio weight is from 10 to 1000", "5"],
        ),
        (&["--pids-limit", "x"], &["\"x\""]),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(flags, expect)| refused(&engine, flags, expect).err())
        .collect();
    let all = engine.ok(&["ps", "-a"]);
    assert!(
        failures.is_empty(),
        "{} of {} bad values were not refused as they should be:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        all.lines().count(),
        1,
        "a refused run left a container:\n{all}"
    );
    assert!(
        engine.cgroup_dirs().is_empty(),
        "a refused run left cgroups: {:?}",
        engine.cgroup_dirs()
    );
}

#[test]
fn blkio_weight_warns_when_the_kernel_lacks_it_and_runs() {
    let engine = Engine::with_busybox();
    if Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists() {
        eprintln!("this kernel has blkio.weight: nothing to warn about");
        return;
    }
    let name = unique("weight");
    let out = engine.berth(&[
        "run",
        "--name",
        &name,
        "--blkio-weight",
        "300",
        "busybox",
        "echo",
        "ran",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ran\n");
    assert!(
        stderr(&out).contains(
            "WARNING: Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
        ),
        "{}",
        stderr(&out)
    );
}
