//! The first fetch of a repository, and the first checkout of a task's directory, through
//! the `git` program when it is installed: git's own pack indexing and checkout are
//! multi-threaded and several times faster than libgit2's on a large history or tree
//! (docs/benchmarks.md). Every later fetch (skipped when the branches a task needs have
//! not moved: `Workspaces::sync_mirror`), and all other work, stays with git2.
//!
//! The token reaches git only through its environment (`GIT_CONFIG_*`, readable by this
//! user alone), as an `Authorization` header scoped to the remote's own scheme and host:
//! never in its arguments, a URL or a file. git runs with no system or user configuration.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use git2::{ErrorClass, ErrorCode};
use secrecy::ExposeSecret;

use super::GitCredentials;

/// The `git` program, when one that answers `--version` is on `PATH`.
pub(super) fn git_program() -> Option<&'static Path> {
    static GIT: OnceLock<Option<PathBuf>> = OnceLock::new();
    GIT.get_or_init(|| {
        if std::env::var_os("FORGEHAND_NO_GIT_CLI").is_some() {
            return None;
        }
        let path = std::env::var_os("PATH")?;
        let git = std::env::split_paths(&path).map(|dir| dir.join("git")).find(|p| p.is_file())?;
        let works = Command::new(&git).arg("--version").output().is_ok_and(|o| o.status.success());
        works.then_some(git)
    })
    .as_deref()
}

/// `git fetch` of `refspec` from the remote `origin` of the bare repository `git_dir`.
/// Errors come back as git2 errors, classed like libgit2's own so that retries and
/// messages treat them alike.
pub(super) fn fetch(
    git: &Path,
    git_dir: &Path,
    url: &str,
    refspec: &str,
    creds: Option<&GitCredentials>,
) -> Result<(), git2::Error> {
    let mut command = bare_git(git, git_dir);
    command.arg("--git-dir").arg(git_dir).args([
        "fetch",
        "--quiet",
        "--no-tags",
        "--prune",
        "origin",
        refspec,
    ]);
    if let (Some(creds), Some(scope)) = (creds, url_scope(url)) {
        let pair = format!("{}:{}", creds.username, creds.token.expose_secret());
        command
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", format!("http.{scope}.extraHeader"))
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {}", base64(pair.as_bytes())));
    }
    run(command, classify)
}

/// Writes the files of the branch HEAD names into the working directory of the repository
/// at `path`, with as many checkout workers as cores: all of them into a new task's empty
/// directory, only those that differ over a recycled one (the index the last task left
/// lets git compare the rest by a parallel stat: 216 ms on 100,000 files where libgit2's
/// forced checkout took 449, docs/benchmarks.md, issue 20).
///
/// `index.skipHash` (git 2.40 and later; older ones ignore it): the index is written
/// without the SHA-1 of its content, which on 100,000 files (an 8 MB index) was a third
/// of the checkout's time. The libgit2 forgehand builds with (1.9), which commits in this
/// index later, reads such an index (`git_index_read` accepts a zero checksum).
pub(super) fn check_out(git: &Path, path: &Path, branch: &str) -> Result<(), git2::Error> {
    let mut command = bare_git(git, path);
    command.arg("-C").arg(path).args([
        "-c",
        "checkout.workers=0",
        "-c",
        "index.skipHash=true",
        "checkout",
        "--force",
        "--quiet",
        branch,
    ]);
    run(command, checkout_error)
}

/// Removes every untracked and ignored file and nested repository a recycled checkout
/// kept of the last task. The `.git` around it is forgehand's own (`recycle`): no hook
/// and no configuration of the agent's runs here.
pub(super) fn clean(git: &Path, path: &Path) -> Result<(), git2::Error> {
    let mut command = bare_git(git, path);
    command.arg("-C").arg(path).args(["clean", "-ffdxq"]);
    run(command, checkout_error)
}

fn checkout_error(said: &str) -> git2::Error {
    let message = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("git checkout failed");
    git2::Error::new(ErrorCode::GenericError, ErrorClass::Checkout, message.trim_start_matches("fatal: "))
}

/// git with no system or user configuration and no environment but its path and `home`.
fn bare_git(git: &Path, home: &Path) -> Command {
    let mut command = Command::new(git);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", home);
    command
}

fn run(mut command: Command, classify: impl Fn(&str) -> git2::Error) -> Result<(), git2::Error> {
    let output = command.output().map_err(|err| {
        git2::Error::new(ErrorCode::GenericError, ErrorClass::Os, format!("cannot run git: {err}"))
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(classify(String::from_utf8_lossy(&output.stderr).trim()))
}

/// `scheme://host[:port]/` of an http(s) URL: where the header may go, and nowhere else
/// (not to a host a redirect points at).
fn url_scope(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let host = rest.split('/').next()?;
    Some(format!("{scheme}://{host}/"))
}

/// git's complaint as the git2 error libgit2 would have given.
fn classify(said: &str) -> git2::Error {
    let lower = said.to_ascii_lowercase();
    let (code, class) = if ["authentication failed", "could not read username", "401", "403"]
        .iter()
        .any(|s| lower.contains(s))
    {
        (ErrorCode::Auth, ErrorClass::Http)
    } else if lower.contains("not found") || lower.contains("does not appear to be a git repository") {
        (ErrorCode::NotFound, ErrorClass::Repository)
    } else {
        // Unreachable hosts, resets, 5xx: worth another attempt later.
        (ErrorCode::GenericError, ErrorClass::Net)
    };
    let message = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("git fetch failed");
    git2::Error::new(code, class, message.trim_start_matches("fatal: "))
}

/// Standard base64 with padding, for a Basic `Authorization` header.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            let c = if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] } else { b'=' };
            out.push(c.into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_scoped_to_the_remotes_host() {
        assert_eq!(url_scope("https://github.com/o/r.git").as_deref(), Some("https://github.com/"));
        assert_eq!(url_scope("http://127.0.0.1:3000/o/r.git").as_deref(), Some("http://127.0.0.1:3000/"));
        assert_eq!(url_scope("file:///srv/r.git"), None);
        assert_eq!(base64(b"x-access-token:t"), "eC1hY2Nlc3MtdG9rZW46dA==");
    }

    #[test]
    fn gits_complaints_are_classed_like_libgit2s() {
        let refused = classify("fatal: could not read Username for 'https://h': terminal prompts disabled");
        assert_eq!((refused.code(), refused.class()), (ErrorCode::Auth, ErrorClass::Http));
        let down = classify("fatal: unable to access 'https://h/': Could not resolve host: h");
        assert_eq!(down.class(), ErrorClass::Net);
        assert_eq!(down.message(), "unable to access 'https://h/': Could not resolve host: h");
        let gone = classify("remote: Repository not found.\nfatal: repository 'https://h/o/r/' not found");
        assert_eq!(gone.code(), ErrorCode::NotFound);
    }
}
