//! `agent.sandbox = "bubblewrap"`: the agent runs inside `bwrap`, confined to its worktree.
//!
//! What the agent sees: the system's programs and libraries read-only (`/usr`, `/bin`,
//! `/lib*`, a short list of `/etc` files, its own program's directory and
//! `agent.sandbox_read_only`), its worktree read-write, the mirror objects the worktree
//! borrows through `objects/info/alternates` read-only (git needs them), a private HOME
//! (`<data_dir>/agent-home`, mounted at `/home/agent`), an empty `/tmp`, and the network.
//! Not the rest of `data_dir` (config, database, other mirrors and tasks, transcripts),
//! not the config file, not any home directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::agent::AgentSpec;
use crate::config::Sandbox;

/// The program that confines.
const BWRAP: &str = "bwrap";
/// Where the agent's private HOME appears inside the sandbox.
pub const AGENT_HOME: &str = "/home/agent";
/// System directories bound read-only when they exist.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt"];
/// The `/etc` entries programs need to run, resolve names and verify certificates; the
/// rest of `/etc` (where a config file may live) stays out.
const ETC_ENTRIES: &[&str] = &[
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "gai.conf",
    "gitconfig",
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
];

/// Where one agent run is confined.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// The worktree: read-write, the working directory.
    pub worktree: PathBuf,
    /// The private HOME on the host (created if missing), seen as [`AGENT_HOME`].
    pub home: PathBuf,
    /// More paths the agent may read (e.g. where its CLI is installed).
    pub read_only: Vec<PathBuf>,
    /// More directories the agent may write (where its question goes), at the same path.
    pub writable: Vec<PathBuf>,
}

/// Rewrites `program args...` into `bwrap <confinement> -- program args...`.
pub fn wrap(
    program: &str,
    args: &[String],
    confinement: &Confinement,
) -> std::io::Result<(String, Vec<String>)> {
    std::fs::create_dir_all(&confinement.home)?;
    // bwrap runs in the worktree: relative paths (a relative data_dir) would miss.
    let home = std::fs::canonicalize(&confinement.home)?;
    let worktree = std::fs::canonicalize(&confinement.worktree)?;
    let mut bwrap = Vec::new();
    let mut push = |items: &[&str]| bwrap.extend(items.iter().map(|s| (*s).to_owned()));
    push(&["--unshare-all", "--share-net", "--die-with-parent"]);
    push(&["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run"]);
    for dir in SYSTEM_DIRS {
        push(&["--ro-bind-try", dir, dir]);
    }
    for entry in ETC_ENTRIES {
        let path = format!("/etc/{entry}");
        push(&["--ro-bind-try", &path, &path]);
    }
    // A systemd-resolved stub: /etc/resolv.conf points here.
    push(&["--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]);
    let mut read_only = confinement.read_only.clone();
    read_only.extend(program_dir(program));
    read_only.extend(borrowed_objects(&worktree));
    for path in &read_only {
        let path = path.to_string_lossy();
        push(&["--ro-bind-try", &path, &path]);
    }
    for dir in &confinement.writable {
        std::fs::create_dir_all(dir)?;
        let dir = std::fs::canonicalize(dir)?;
        let dir = dir.to_string_lossy();
        push(&["--bind", &dir, &dir]);
    }
    let (home, worktree) = (home.to_string_lossy(), worktree.to_string_lossy());
    push(&["--bind", &home, AGENT_HOME, "--setenv", "HOME", AGENT_HOME, "--setenv", "TMPDIR", "/tmp"]);
    push(&["--bind", &worktree, &worktree, "--chdir", &worktree, "--", program]);
    bwrap.extend(args.iter().cloned());
    Ok((BWRAP.to_owned(), bwrap))
}

/// `spec` as configured: unchanged without a sandbox, else run through `bwrap` with a
/// private HOME under `<data_dir>/agent-home`.
pub fn apply(settings: &crate::config::Settings, mut spec: AgentSpec) -> Result<AgentSpec, String> {
    if settings.agent.sandbox == Sandbox::None {
        return Ok(spec);
    }
    let mut confinement = confinement(settings, &spec.cwd);
    if !spec.writable.is_empty() {
        // The question server (`forgehand mcp`) is started from inside.
        confinement.read_only.extend(super::questions::server_program(settings).map(PathBuf::from));
        confinement.writable = spec.writable.clone();
    }
    (spec.program, spec.args) = wrap(&spec.program, &spec.args, &confinement)
        .map_err(|err| format!("cannot prepare the agent's sandbox: {err}"))?;
    Ok(spec)
}

fn confinement(settings: &crate::config::Settings, cwd: &Path) -> Confinement {
    Confinement {
        worktree: cwd.to_path_buf(),
        home: settings.data_dir.join("agent-home"),
        read_only: settings.agent.sandbox_read_only.clone(),
        writable: Vec::new(),
    }
}

/// `program args...` to run in `cwd` as the agent would be: unchanged without a sandbox,
/// else inside the agent's confinement (the same private HOME). Setup and check commands
/// run this way too.
pub fn confine(
    settings: &crate::config::Settings,
    cwd: &Path,
    program: &str,
    args: &[String],
) -> Result<(String, Vec<String>), String> {
    if settings.agent.sandbox == Sandbox::None {
        return Ok((program.to_owned(), args.to_vec()));
    }
    wrap(program, args, &confinement(settings, cwd))
        .map_err(|err| format!("cannot prepare the agent's sandbox: {err}"))
}

/// The directory of `program` when it is a path outside the system directories (a CLI
/// installed under /home or next to forgehand).
fn program_dir(program: &str) -> Option<PathBuf> {
    if !program.contains('/') {
        return None;
    }
    let real = std::fs::canonicalize(program).ok()?;
    let dir = real.parent()?.to_path_buf();
    (!SYSTEM_DIRS.iter().any(|system| dir.starts_with(system))).then_some(dir)
}

/// The object directories `worktree`'s repository borrows (its `alternates`), resolved.
fn borrowed_objects(worktree: &Path) -> Vec<PathBuf> {
    let objects = worktree.join(".git/objects");
    let Ok(text) = std::fs::read_to_string(objects.join("info/alternates")) else { return Vec::new() };
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| std::fs::canonicalize(objects.join(line)).ok())
        .collect()
}

/// Checks at startup that bubblewrap is installed and may create its namespaces here.
pub fn check_bubblewrap() -> Result<(), String> {
    let probe = std::process::Command::new(BWRAP)
        .args(["--unshare-all", "--share-net", "--die-with-parent", "--ro-bind", "/", "/"])
        .args(["--proc", "/proc", "--dev", "/dev", "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let output = match probe {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "agent.sandbox = \"bubblewrap\" but {BWRAP} is not installed: install it \
                 (Debian/Ubuntu: apt install bubblewrap) or set agent.sandbox = \"none\""
            ));
        }
        Err(err) => return Err(format!("agent.sandbox = \"bubblewrap\" but {BWRAP} cannot start: {err}")),
    };
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "agent.sandbox = \"bubblewrap\" but {BWRAP} cannot create its namespaces here ({}): allow \
         unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 or \
         user.max_user_namespaces > 0; in a container, a seccomp profile that permits them), \
         or set agent.sandbox = \"none\"",
        said.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_binds_the_worktree_and_the_borrowed_objects_only() {
        let dir = tempfile::tempdir().unwrap();
        let (worktree, mirror) = (dir.path().join("tasks/task-1"), dir.path().join("mirrors/r.git/objects"));
        std::fs::create_dir_all(worktree.join(".git/objects/info")).unwrap();
        std::fs::create_dir_all(&mirror).unwrap();
        std::fs::write(worktree.join(".git/objects/info/alternates"), "../../../../mirrors/r.git/objects\n")
            .unwrap();
        let confinement = Confinement {
            worktree: worktree.clone(),
            home: dir.path().join("home"),
            read_only: Vec::new(),
            writable: Vec::new(),
        };
        let (program, args) = wrap("claude", &["-p".to_owned(), "hi".to_owned()], &confinement).unwrap();
        assert_eq!(program, "bwrap");
        let line = args.join(" ");
        let mirror = std::fs::canonicalize(&mirror).unwrap();
        assert!(line.contains(&format!("--ro-bind-try {0} {0}", mirror.display())), "{line}");
        assert!(line.contains(&format!("--bind {0} {0} --chdir {0} -- claude -p hi", worktree.display())));
        assert!(!line.contains(&format!("{} ", dir.path().join("mirrors").display())), "{line}");
        assert!(!line.contains("/etc /etc") && line.contains("--ro-bind-try /etc/passwd /etc/passwd"));
        assert!(dir.path().join("home").is_dir());
    }
}
