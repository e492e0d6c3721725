//! How a run's process is started: inside bubblewrap (read-only system, only the run
//! folder writable, private /tmp, no network unless the manifest asks, dies with the
//! server) or, when the operator says so or bubblewrap is missing, as a plain process
//! group. Either way the whole tree can be killed at once.
//!
//! The walls every run gets, sandboxed or not (docs/runs.md, "What a run can see"):
//! - an empty environment plus the run contract: bubblewrap itself is started with that
//!   environment alone (its `/proc/1/environ` is visible inside the sandbox), and secret
//!   values travel in the environment, never as arguments (`ps` shows every argument);
//! - a bound on processes (`RLIMIT_NPROC`), on address space, and a lower CPU priority;
//! - when the server runs as root, the run does not: each concurrent run gets its own
//!   unprivileged uid, which is what makes the process bound exact (root is exempt from
//!   `RLIMIT_NPROC`) and keeps a run out of root-owned files and processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::config::SandboxMode;

/// Where the run folder appears inside the sandbox (upstream's working directory).
pub const SANDBOX_WORKDIR: &str = "/home/user/worker";
/// Where the `python` shim appears inside the sandbox.
const SANDBOX_SHIMS: &str = "/run/floom/bin";
const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The uids given to runs when the server is root, one per run executing. High, so that
/// they belong to no account and to no subordinate-uid range in use.
const RUN_UIDS: std::ops::Range<u32> = 2_000_000_000..2_000_065_536;
/// Runs execute at this nice level, so that a busy worker leaves the server its CPU.
const RUN_NICE: i32 = 10;

/// The parts of `/etc` programs need (TLS roots, name resolution, users, time zones,
/// the dynamic linker); the rest (shadow files, the host's secrets) stays outside.
const ETC_ENTRIES: &[&str] = &[
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
];

/// How this server isolates runs, decided once at start.
#[derive(Debug)]
pub struct Isolation {
    kind: Kind,
    /// A folder holding `python` → `python3`, when the system has no `python`.
    shims: Option<PathBuf>,
    /// Where run folders are made: outside the data folder, which is private to the
    /// server's user (mode 700) while runs may execute as other uids.
    runs_root: PathBuf,
    /// The server is root and runs are sandboxed: each run executes as a uid of its own.
    /// (Without the sandbox a run keeps the server's user: a root-installed toolchain
    /// under `/root` would be out of an unprivileged uid's reach.)
    own_uids: bool,
}

#[derive(Debug)]
enum Kind {
    Bubblewrap(PathBuf),
    /// Why there is no sandbox, for each run's log.
    Process(String),
}

/// What a run needs from its process.
pub struct Launch<'a> {
    pub run_dir: &'a Path,
    pub command: &'a str,
    /// The run contract's variables (secrets included), beside PATH, HOME and locale.
    pub env: Vec<(String, String)>,
    pub egress: bool,
    pub memory_mb: Option<u64>,
    pub max_processes: u64,
    /// The uid to run as (see [`Isolation::lease_uid`]); `None`: the server's own.
    pub uid: Option<u32>,
}

impl Isolation {
    /// Decide how to run workers: probe bubblewrap (it may be installed but unable to
    /// create namespaces here, in particular as an unprivileged run uid), and make a
    /// `python` shim if the system lacks one.
    pub fn detect(mode: SandboxMode) -> anyhow::Result<Self> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let runs_root = make_runs_root(root)?;
        let bwrap = match mode {
            SandboxMode::Off => None,
            _ => find_in_path("bwrap"),
        };
        let try_bwrap = |as_uid: Option<u32>| {
            let b = bwrap.as_ref()?;
            let mut cmd = std::process::Command::new(b);
            cmd.args([
                "--ro-bind",
                "/",
                "/",
                "--unshare-all",
                "--die-with-parent",
                "true",
            ])
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            if let Some(uid) = as_uid {
                use std::os::unix::process::CommandExt;
                // SAFETY: only async-signal-safe calls between fork and exec.
                unsafe { cmd.pre_exec(move || drop_to(uid)) };
            }
            Some(cmd.output())
        };
        let works = |p: &Option<std::io::Result<std::process::Output>>| matches!(p, Some(Ok(out)) if out.status.success());
        // As root, runs get uids of their own, so bubblewrap must work unprivileged; where
        // it does not (user namespaces closed to other users), it still runs as root,
        // without the exact process bound (said at start).
        let as_run_uid = if root {
            try_bwrap(Some(RUN_UIDS.start))
        } else {
            None
        };
        let own_uids = works(&as_run_uid);
        let (probe, unprivileged) = if own_uids {
            (as_run_uid, None)
        } else {
            (try_bwrap(None), as_run_uid)
        };
        if root && !own_uids && works(&probe) {
            tracing::warn!(
                reason = %probe_error(unprivileged),
                "bubblewrap cannot run as an unprivileged uid here: runs are sandboxed but execute as root, and their process bound is not enforced"
            );
        }
        let kind = match (mode, bwrap.clone(), probe) {
            (_, Some(bwrap), Some(Ok(out))) if out.status.success() => Kind::Bubblewrap(bwrap),
            (SandboxMode::On, None, _) => {
                bail!("FLOOM_SANDBOX=on but bubblewrap (bwrap) is not installed")
            }
            (SandboxMode::On, Some(_), probe) => bail!(
                "FLOOM_SANDBOX=on but bubblewrap cannot create a sandbox here: {}",
                probe_error(probe)
            ),
            (mode, bwrap, probe) => Kind::Process(match (mode, bwrap) {
                (SandboxMode::Off, _) => "FLOOM_SANDBOX=off".to_string(),
                (_, None) => "bubblewrap (bwrap) is not installed".to_string(),
                (_, Some(_)) => format!(
                    "bubblewrap cannot create a sandbox here ({})",
                    probe_error(probe)
                ),
            }),
        };
        let shims = match &kind {
            Kind::Bubblewrap(_) => {
                python_shim(&runs_root, &["/usr/local/bin", "/usr/bin", "/bin"])?
            }
            Kind::Process(_) => {
                let path = std::env::var("PATH").unwrap_or_default();
                let dirs: Vec<&str> = path.split(':').filter(|d| !d.is_empty()).collect();
                python_shim(&runs_root, &dirs)?
            }
        };
        let own_uids = own_uids && matches!(kind, Kind::Bubblewrap(_));
        Ok(Isolation {
            kind,
            shims,
            runs_root,
            own_uids,
        })
    }

    pub fn is_sandboxed(&self) -> bool {
        matches!(self.kind, Kind::Bubblewrap(_))
    }

    /// The folder run folders are made in.
    pub fn runs_root(&self) -> &Path {
        &self.runs_root
    }

    /// The first line of every run's log: how it is isolated.
    pub fn describe(&self, egress: bool) -> String {
        match &self.kind {
            Kind::Bubblewrap(_) => format!(
                "sandbox: bubblewrap (read-only system, private /tmp, network {})",
                if egress { "on" } else { "off" }
            ),
            Kind::Process(reason) => format!(
                "sandbox: off ({reason}): the worker sees this machine's files and the network"
            ),
        }
    }

    /// A uid of its own for one run, when the server is root: held until the run's
    /// processes are gone. `None` when runs execute as the server's user.
    pub fn lease_uid(&self) -> anyhow::Result<Option<UidLease>> {
        self.own_uids.then(UidLease::acquire).transpose()
    }

    /// The command for a run, its own process group, output piped.
    pub fn command(&self, l: &Launch<'_>) -> anyhow::Result<Command> {
        let mut cmd = match &self.kind {
            Kind::Bubblewrap(bwrap) => {
                let mut c = Command::new(bwrap);
                c.args(["--ro-bind", "/usr", "/usr"]);
                for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
                    let p = Path::new(top);
                    match std::fs::read_link(p) {
                        Ok(target) => {
                            c.arg("--symlink").arg(target).arg(top);
                        }
                        Err(_) if p.is_dir() => {
                            c.args(["--ro-bind", top, top]);
                        }
                        Err(_) => {}
                    }
                }
                for e in ETC_ENTRIES {
                    let p = format!("/etc/{e}");
                    c.args(["--ro-bind-try", &p, &p]);
                }
                c.arg("--bind").arg(l.run_dir).arg(SANDBOX_WORKDIR);
                c.args([
                    "--chdir",
                    SANDBOX_WORKDIR,
                    "--tmpfs",
                    "/tmp",
                    "--proc",
                    "/proc",
                ]);
                c.args(["--dev", "/dev", "--unshare-all", "--hostname", "floom-run"]);
                if l.egress {
                    c.arg("--share-net");
                }
                let mut path = SANDBOX_PATH.to_string();
                if let Some(s) = &self.shims {
                    c.arg("--ro-bind").arg(s).arg(SANDBOX_SHIMS);
                    path = format!("{SANDBOX_SHIMS}:{path}");
                }
                c.args(["--die-with-parent", "--new-session"]);
                c.args(["--", "/bin/sh", "-c", l.command]);
                // bubblewrap's own environment is the run's: the sandbox's PID 1 is a copy
                // of it, and its environ is readable inside. Nothing else is passed in.
                c.env_clear().envs(base_env(&path, "/tmp"));
                c
            }
            Kind::Process(_) => {
                let host = std::env::var("PATH").unwrap_or_else(|_| SANDBOX_PATH.into());
                let path = match &self.shims {
                    Some(s) => format!("{}:{host}", s.display()),
                    None => host,
                };
                let mut c = Command::new("/bin/sh");
                c.args(["-c", l.command]).current_dir(l.run_dir).env_clear();
                let home = l.run_dir.display().to_string();
                c.envs(base_env(&path, &home));
                c
            }
        };
        cmd.envs(l.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let memory = l.memory_mb;
        let uid = l.uid;
        // Same user as the server: RLIMIT_NPROC counts every task of the user, so the
        // bound is what the user has now plus the run's allowance.
        let max_tasks = match uid {
            Some(_) => l.max_processes,
            // SAFETY: getuid has no preconditions.
            None => tasks_of_uid(unsafe { libc::getuid() })? + l.max_processes,
        };
        // SAFETY: only async-signal-safe calls (setpriority, setrlimit, setgroups,
        // setgid, setuid, prctl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setpriority(libc::PRIO_PROCESS, 0, RUN_NICE);
                set_limit(libc::RLIMIT_NPROC, max_tasks)?;
                if let Some(mb) = memory {
                    set_limit(libc::RLIMIT_AS, mb.saturating_mul(1024 * 1024))?;
                }
                if let Some(uid) = uid {
                    drop_to(uid)?;
                }
                // Die with the server, whatever happens to it (set after the uid change,
                // which clears it).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(cmd)
    }
}

/// One run's uid, held through an exclusive lock on `<temp>/floom-run-uids/<uid>`, so
/// that no other run (of this server or another on the machine) shares it while it is
/// held; the lock dies with its holder. Dropping it kills whatever the uid still runs (a
/// process that left the run's group) and gives the uid back.
pub struct UidLease {
    pub uid: u32,
    _lock: std::fs::File,
    /// Its processes were killed after the run ended; dropping it need not again.
    cleared: bool,
}

impl UidLease {
    fn acquire() -> anyhow::Result<Self> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join("floom-run-uids");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        for uid in RUN_UIDS {
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(uid.to_string()))?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                // A holder that died may have left processes behind.
                kill_uid(uid);
                return Ok(UidLease {
                    uid,
                    _lock: lock,
                    cleared: false,
                });
            }
        }
        bail!("every run uid is in use")
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        if !self.cleared {
            kill_uid(self.uid);
        }
    }
}

impl UidLease {
    /// Kill what the run's uid still runs, now that the run's process has ended.
    pub async fn clear(&mut self) {
        let uid = self.uid;
        let _ = tokio::task::spawn_blocking(move || kill_uid(uid)).await;
        self.cleared = true;
    }
}

/// Kill every process of `uid`: `kill(-1, SIGKILL)` sent as the uid reaches exactly
/// its own processes.
fn kill_uid(uid: u32) {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", "kill -9 -1"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec. The uid is checked
    // once more: `kill -9 -1` as root would reach every process of the machine.
    unsafe {
        cmd.pre_exec(move || {
            drop_to(uid)?;
            if libc::getuid() != uid || libc::geteuid() != uid {
                return Err(std::io::Error::other("uid not dropped"));
            }
            Ok(())
        })
    };
    if let Err(e) = cmd.status() {
        tracing::warn!(uid, error = %e, "could not clean up a run uid's processes");
    }
}

/// Become `uid` (group `uid` too, no supplementary groups). Called between fork and exec.
fn drop_to(uid: u32) -> std::io::Result<()> {
    // SAFETY: plain system calls on the calling process.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(uid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Tasks (threads included, as `RLIMIT_NPROC` counts them) whose real uid is `uid`.
fn tasks_of_uid(uid: u32) -> anyhow::Result<u64> {
    let mut tasks = 0;
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        if !entry.file_name().as_encoded_bytes()[0].is_ascii_digit() {
            continue;
        }
        // A process may end while it is read; it then counts for nothing.
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if field("Uid:") == Some(u64::from(uid)) {
            tasks += field("Threads:").unwrap_or(1);
        }
    }
    Ok(tasks)
}

/// Give a folder the server wrote to a run's uid.
pub fn chown_tree(dir: &Path, uid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid))
        .with_context(|| format!("giving {} to the run's uid", dir.display()))?;
    if std::fs::symlink_metadata(dir)?.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

/// The contract's fixed part: PATH, HOME and locale, and Python's unbuffered output.
fn base_env(path: &str, home: &str) -> Vec<(String, String)> {
    [
        ("PATH", path),
        ("HOME", home),
        ("LANG", "C.UTF-8"),
        ("PYTHONUNBUFFERED", "1"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Kill a run's whole process group.
pub fn kill_group(pid: u32) {
    // A pid of 0 would make this kill(0, …): the server's own group.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill(2) on our own child's process group.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// A fresh folder for run folders under the system's temporary folder: mode 711 when
/// runs execute as other uids (they reach their own folder, list nothing), else 700.
fn make_runs_root(other_uids: bool) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let root = std::env::temp_dir().join(format!("floom-runs-{}", crate::ids::hex(&suffix)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&root)
        .with_context(|| format!("creating {}", root.display()))?;
    if other_uids {
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(root)
}

fn probe_error(probe: Option<std::io::Result<std::process::Output>>) -> String {
    match probe {
        Some(Ok(out)) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Some(Err(e)) => e.to_string(),
        None => "not found".into(),
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Upstream's workers say `python run.py`; where `dirs` hold `python3` but no `python`,
/// a shim folder (`<runs root>/bin`, readable by run uids) with `python` → `python3`
/// makes that work.
fn python_shim(runs_root: &Path, dirs: &[&str]) -> anyhow::Result<Option<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let has = |name: &str| dirs.iter().any(|d| Path::new(d).join(name).is_file());
    if has("python") {
        return Ok(None);
    }
    let Some(python3) = dirs
        .iter()
        .map(|d| Path::new(d).join("python3"))
        .find(|p| p.is_file())
    else {
        return Ok(None);
    };
    let shim_dir = runs_root.join("bin");
    std::fs::create_dir_all(&shim_dir)?;
    std::fs::set_permissions(&shim_dir, std::fs::Permissions::from_mode(0o755))?;
    std::os::unix::fs::symlink(&python3, shim_dir.join("python"))?;
    Ok(Some(shim_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_own_tasks() {
        // SAFETY: getuid has no preconditions.
        let n = tasks_of_uid(unsafe { libc::getuid() }).unwrap();
        assert!(n >= 1, "this test's own process counts");
    }

    #[test]
    fn uid_leases_are_exclusive_and_given_back() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // only a root server gives runs uids of their own
        }
        let a = UidLease::acquire().unwrap();
        let b = UidLease::acquire().unwrap();
        assert_ne!(a.uid, b.uid);
        assert!(RUN_UIDS.contains(&a.uid) && RUN_UIDS.contains(&b.uid));
        drop(a);
        let c = UidLease::acquire().unwrap();
        assert_ne!(c.uid, b.uid, "a held uid is never handed out twice");
    }
}
