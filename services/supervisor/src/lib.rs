//! Container records, lifecycle and per-container shims.
//!
//! The gRPC layer ([`server`]) is thin; the work is in [`lifecycle`] (state machine and
//! reconciliation), [`store`] (SQLite records), [`spec`] (OCI bundle), [`cgroup`],
//! [`shim`] (spawning and its report), [`watch`] (pidfds, exit.json) and [`attach`].
//!
//! Decisions worth knowing:
//! - Names are stored and returned without the leading `/` (`web`); lookups accept both.
//! - The spec is stored as protobuf bytes in `meta.db`; the schema has ordered migrations
//!   tracked by `PRAGMA user_version`.
//! - An exit is recorded only after the cgroup is deleted, and an attach reports EXIT only
//!   once the record says `exited`, so `rm`/`inspect` right after see a settled state.
//! - The shim's stderr goes to `<bundle>/shim.log`: it outlives the supervisor.
//! - A `created` record that still has a cgroup at start-up was being started when the
//!   supervisor died: that start is rolled back (its shim and processes killed).
//! - On a cgroup v1 host no `/sys/fs/cgroup` mount is put in the spec (the built-in
//!   runtime cannot emulate runc's per-hierarchy cgroup mount); on v2 it is `cgroup2`, ro.
//! - `paused` counts as running (Docker's `State.Running`): listed without `all`, watched,
//!   signalled. Stop/kill/rm -f of a paused container signal first, then thaw it.
//! - Restart policies: the exit is recorded as `restarting` (not `exited`) in the same
//!   update when the policy wants a restart, so WaitContainer only returns for a final
//!   exit. Backoff delays are kept in memory (a supervisor restart starts again at
//!   100 ms); `restart_count` and `stopped_by_user` are persisted. A user start resets
//!   the count, the flag and the backoff. `unless-stopped` behaves as `always`: a
//!   supervisor restart is not a daemon boot.
//! - Exec files (`exec-<eid>.*` in the bundle, `<run>/shim/<eid>.sock`) are removed ~2 s
//!   after the exec's shim has gone, whether attached or detached.
//! - UpdateNetwork (network connect/disconnect) rewrites the bundle's `hosts` and
//!   `resolv.conf` in place (open, truncate, write): the shim bind-mounts them by inode,
//!   so a renamed file would not be seen by a running container. Mode and netns are fixed.
//! - A container's network exists only while it runs (ADR 7): before every spawn (start,
//!   restart, policy restart, attach-start) the supervisor calls the network service's
//!   ActivateContainer and writes the addresses, ports and link entries into the record,
//!   `hosts` and `resolv.conf`; a failed activation fails the start with the network's
//!   status code. When the exit is recorded it calls DeactivateContainer first (before a
//!   policy restart re-activates); an unreachable network service is retried in the
//!   background, and at start-up every container that is not running is deactivated.
//! - Resource limits ([`limits`]) are stored in the spec and written into the cgroup on
//!   every run (start, restart, policy restart, also after a supervisor restart) after
//!   it is created and before the shim moves the process in. A file this kernel lacks
//!   (v1 blkio.weight here) is skipped: CreateContainer and UpdateResources return
//!   Docker's warning in `Container.warnings`; StartContainer returns none. A write the
//!   kernel refuses fails the start (recorded as a start error, exit code 128) or the
//!   update, naming the file and the value. UpdateResources writes only the files whose
//!   value changed and stores the merged limits once the writes succeeded.
//! - ContainerStats ([`stats`]) reads every container in one blocking task per round
//!   (one per second when streaming), with one buffer and cached paths.
pub mod attach;
pub mod cgroup;
pub mod daemon;
pub mod error;
pub mod exec;
pub mod lifecycle;
pub mod limits;
pub mod names;
pub mod pause;
pub mod restart_policy;
pub mod server;
pub mod shim;
pub mod signal;
pub mod spec;
pub mod stats;
pub mod store;
pub mod top;
pub mod watch;

pub use error::{Error, Result};
pub use lifecycle::{Options, Supervisor};
