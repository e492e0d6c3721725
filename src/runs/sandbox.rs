//! How a run's process is started: inside bubblewrap (read-only system, only the run
//! folder writable, private /tmp, no network unless the manifest asks, dies with the
//! server) or, when the operator says so or bubblewrap is missing, as a plain process
//! group. Either way the whole tree can be killed at once.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::bail;
use tokio::process::Command;

use crate::config::SandboxMode;

/// Where the run folder appears inside the sandbox (upstream's working directory).
pub const SANDBOX_WORKDIR: &str = "/home/user/worker";
/// Where the `python` shim appears inside the sandbox.
const SANDBOX_SHIMS: &str = "/run/floom/bin";
const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

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
#[derive(Debug, Clone)]
pub enum Isolation {
    Bubblewrap {
        bwrap: PathBuf,
        /// A folder holding `python` → `python3`, when the system has no `python`.
        shims: Option<PathBuf>,
    },
    Process {
        /// Why there is no sandbox, for each run's log.
        reason: String,
        shims: Option<PathBuf>,
    },
}

/// What a run needs from its process.
pub struct Launch<'a> {
    pub run_dir: &'a Path,
    pub command: &'a str,
    pub env: Vec<(String, String)>,
    pub egress: bool,
    pub memory_mb: Option<u64>,
}

impl Isolation {
    /// Decide how to run workers: probe bubblewrap (it may be installed but unable to
    /// create namespaces here), and make a `python` shim if the system lacks one.
    pub fn detect(mode: SandboxMode, data_dir: &Path) -> anyhow::Result<Self> {
        let shim_dir = data_dir.join("shims");
        let bwrap = match mode {
            SandboxMode::Off => None,
            _ => find_in_path("bwrap"),
        };
        let probe = bwrap.as_ref().map(|b| {
            std::process::Command::new(b)
                .args([
                    "--ro-bind",
                    "/",
                    "/",
                    "--unshare-all",
                    "--die-with-parent",
                    "true",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
        });
        match (mode, bwrap, probe) {
            (_, Some(bwrap), Some(Ok(out))) if out.status.success() => {
                let inside = ["/usr/local/bin", "/usr/bin", "/bin"];
                let shims = python_shim(&shim_dir, &inside)?;
                Ok(Isolation::Bubblewrap { bwrap, shims })
            }
            (SandboxMode::On, None, _) => {
                bail!("FLOOM_SANDBOX=on but bubblewrap (bwrap) is not installed")
            }
            (SandboxMode::On, Some(_), probe) => bail!(
                "FLOOM_SANDBOX=on but bubblewrap cannot create a sandbox here: {}",
                probe_error(probe)
            ),
            (mode, bwrap, probe) => {
                let reason = match (mode, bwrap) {
                    (SandboxMode::Off, _) => "FLOOM_SANDBOX=off".to_string(),
                    (_, None) => "bubblewrap (bwrap) is not installed".to_string(),
                    (_, Some(_)) => format!(
                        "bubblewrap cannot create a sandbox here ({})",
                        probe_error(probe)
                    ),
                };
                let path = std::env::var("PATH").unwrap_or_default();
                let dirs: Vec<&str> = path.split(':').filter(|d| !d.is_empty()).collect();
                let shims = python_shim(&shim_dir, &dirs)?;
                Ok(Isolation::Process { reason, shims })
            }
        }
    }

    pub fn is_sandboxed(&self) -> bool {
        matches!(self, Isolation::Bubblewrap { .. })
    }

    /// The first line of every run's log: how it is isolated.
    pub fn describe(&self, egress: bool) -> String {
        match self {
            Isolation::Bubblewrap { .. } => format!(
                "sandbox: bubblewrap (read-only system, private /tmp, network {})",
                if egress { "on" } else { "off" }
            ),
            Isolation::Process { reason, .. } => format!(
                "sandbox: off ({reason}): the worker runs as this server's user, sees its files and the network"
            ),
        }
    }

    /// The command for a run, its own process group, output piped.
    pub fn command(&self, l: &Launch<'_>) -> Command {
        let mut cmd = match self {
            Isolation::Bubblewrap { bwrap, shims } => {
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
                if let Some(s) = shims {
                    c.arg("--ro-bind").arg(s).arg(SANDBOX_SHIMS);
                    path = format!("{SANDBOX_SHIMS}:{path}");
                }
                c.args(["--die-with-parent", "--new-session", "--clearenv"]);
                for (k, v) in base_env(&path, "/tmp")
                    .into_iter()
                    .chain(l.env.iter().cloned())
                {
                    c.arg("--setenv").arg(k).arg(v);
                }
                c.args(["--", "/bin/sh", "-c", l.command]);
                c
            }
            Isolation::Process { shims, .. } => {
                let host = std::env::var("PATH").unwrap_or_else(|_| SANDBOX_PATH.into());
                let path = match shims {
                    Some(s) => format!("{}:{host}", s.display()),
                    None => host,
                };
                let mut c = Command::new("/bin/sh");
                c.args(["-c", l.command]).current_dir(l.run_dir).env_clear();
                let home = l.run_dir.display().to_string();
                c.envs(base_env(&path, &home)).envs(l.env.iter().cloned());
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let memory = l.memory_mb;
        // SAFETY: only async-signal-safe calls (prctl, setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Die with the server, whatever happens to it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(mb) = memory {
                    let bytes = mb.saturating_mul(1024 * 1024);
                    let lim = libc::rlimit {
                        rlim_cur: bytes,
                        rlim_max: bytes,
                    };
                    libc::setrlimit(libc::RLIMIT_AS, &lim);
                }
                Ok(())
            });
        }
        cmd
    }
}

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
    // SAFETY: kill(2) on our own child's process group.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
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
/// a shim folder with `python` → `python3` makes that work.
fn python_shim(shim_dir: &Path, dirs: &[&str]) -> anyhow::Result<Option<PathBuf>> {
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
    std::fs::create_dir_all(shim_dir)?;
    let link = shim_dir.join("python");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&python3, &link)?;
    Ok(Some(shim_dir.to_path_buf()))
}
