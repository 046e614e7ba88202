//! The bare mirrors under `mirrors/`: one per repository, cloned once and then fetched,
//! pruned, so that its branches are the remote's branches.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use git2::{
    AutotagOption, Cred, CredentialType, Direction, ErrorClass, ErrorCode, FetchOptions, FetchPrune,
    RemoteCallbacks, RemoteHead, Repository,
};
use secrecy::ExposeSecret;

use super::errors::{Context as _, Scrub};
use super::{GitCredentials, WorkspaceError, Workspaces, remove_dir_if_present};

const MIRROR_REFSPEC: &str = "+refs/heads/*:refs/heads/*";
/// Leaves room for the `.git.partial` suffix within the usual 255-byte file name limit.
const MIRROR_NAME_MAX: usize = 240;

impl Workspaces {
    /// Ensures the bare mirror for `repo_key` (e.g. `github/octo-org/hello-world`) exists
    /// under `root/mirrors/`: cloned the first time, fetched incrementally (pruning
    /// deleted branches) afterwards. Returns the mirror's path.
    ///
    /// When every branch in `needed` (e.g. a task's base and its own branch) is already
    /// where the remote has it — absent where the remote has no such branch — nothing is
    /// downloaded: the other branches (other tasks' pushes, people's) wait for the next
    /// fetch a task needs. Fetching one new branch made libgit2 mark the whole tree of
    /// the branches the mirror has as known, 150–170 ms on 100,000 files
    /// (docs/benchmarks.md); listing the remote's branches is the first step of a fetch
    /// anyway, and the fetch that follows reuses that connection. An empty `needed`
    /// always fetches.
    pub fn sync_mirror(
        &self,
        repo_key: &str,
        clone_url: &str,
        creds: Option<&GitCredentials>,
        needed: &[&str],
    ) -> Result<PathBuf, WorkspaceError> {
        let scrub = Scrub::new(&self.root, creds);
        check_url(clone_url)?;
        let path = self.mirror_path(repo_key)?;
        let lock = self.mirror_lock(&path);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        match Repository::open_bare(&path) {
            Ok(mirror) => fetch_mirror(&mirror, clone_url, creds, needed, scrub)?,
            // Only what is certainly not a repository is replaced: running tasks read
            // the mirror's objects.
            Err(error) if error.code() == ErrorCode::NotFound => {
                clone_mirror(&path, repo_key, clone_url, creds, scrub)?
            }
            Err(error) => Err(error).context(scrub, || format!("opening the mirror of {repo_key}"))?,
        }
        super::storage::touch_used(&path);
        Ok(path)
    }

    /// The message of the commit at the head of `branch` in the mirror, if the branch exists.
    pub fn mirror_head_message(
        &self,
        repo_key: &str,
        branch: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        let path = self.mirror_path(repo_key)?;
        let Ok(mirror) = Repository::open_bare(&path) else { return Ok(None) };
        let Ok(reference) = mirror.find_reference(&format!("refs/heads/{branch}")) else { return Ok(None) };
        Ok(reference.peel_to_commit().ok().and_then(|c| c.message().ok().map(str::to_owned)))
    }

    /// The content of the file `path` at the head of `branch` in the mirror; `None` when
    /// the branch or the file does not exist.
    pub fn mirror_file(
        &self,
        repo_key: &str,
        branch: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, WorkspaceError> {
        let mirror = self.mirror_path(repo_key)?;
        let Ok(repo) = Repository::open_bare(&mirror) else { return Ok(None) };
        let Ok(reference) = repo.find_reference(&format!("refs/heads/{branch}")) else { return Ok(None) };
        let Ok(tree) = reference.peel_to_tree() else { return Ok(None) };
        let Ok(entry) = tree.get_path(Path::new(path)) else { return Ok(None) };
        Ok(repo.find_blob(entry.id()).ok().map(|blob| blob.content().to_vec()))
    }

    fn mirror_path(&self, repo_key: &str) -> Result<PathBuf, WorkspaceError> {
        Ok(self.root.join("mirrors").join(mirror_dir_name(repo_key)?))
    }

    pub(super) fn mirror_lock(&self, path: &Path) -> Arc<Mutex<()>> {
        let mut locks = super::MIRROR_LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(path.to_path_buf()).or_default().clone()
    }
}

/// The commit at the head of `branch` in the mirror.
pub(super) fn mirror_head(
    mirror: &Path,
    branch: &str,
    scrub: Scrub<'_>,
) -> Result<git2::Oid, WorkspaceError> {
    let repo = Repository::open_bare(mirror).context(scrub, || "opening the mirror".to_owned())?;
    let reference = repo.find_reference(&format!("refs/heads/{branch}"));
    match reference.ok().and_then(|r| r.target()) {
        Some(oid) => Ok(oid),
        None => Err(WorkspaceError::MissingBranch(branch.to_owned())),
    }
}

/// Clones into a sibling `.partial` directory renamed at the end, so a crash mid-clone
/// never leaves something that looks like a mirror.
fn clone_mirror(
    path: &Path,
    repo_key: &str,
    clone_url: &str,
    creds: Option<&GitCredentials>,
    scrub: Scrub<'_>,
) -> Result<(), WorkspaceError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    remove_dir_if_present(path, scrub, || format!("removing the broken mirror of {repo_key}"))?;
    remove_dir_if_present(&partial, scrub, || format!("removing a partial mirror of {repo_key}"))?;
    let result = init_and_fetch(&partial, clone_url, creds, scrub);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result?;
    std::fs::rename(&partial, path).context(scrub, || format!("storing the mirror of {repo_key}"))?;
    tracing::info!(repo = repo_key, url = %display_url(clone_url), "cloned a mirror");
    Ok(())
}

fn init_and_fetch(
    path: &Path,
    clone_url: &str,
    creds: Option<&GitCredentials>,
    scrub: Scrub<'_>,
) -> Result<(), WorkspaceError> {
    let url = display_url(clone_url);
    let mirror = Repository::init_bare(path).context(scrub, || format!("creating a mirror of {url}"))?;
    mirror
        .remote_with_fetch("origin", clone_url, MIRROR_REFSPEC)
        .context(scrub, || format!("configuring the mirror of {url}"))?;
    match super::cli::git_program() {
        Some(git) => super::cli::fetch(git, path, clone_url, MIRROR_REFSPEC, creds)
            .context(scrub, || format!("fetching {url}")),
        None => fetch_mirror(&mirror, clone_url, creds, &[], scrub),
    }
}

fn fetch_mirror(
    mirror: &Repository,
    clone_url: &str,
    creds: Option<&GitCredentials>,
    needed: &[&str],
    scrub: Scrub<'_>,
) -> Result<(), WorkspaceError> {
    let url = display_url(clone_url);
    let mut remote =
        mirror.find_remote("origin").context(scrub, || format!("opening the mirror of {url}"))?;
    if remote.url().ok() != Some(clone_url) {
        // The forge's clone URL changed (a renamed repository, a new host name).
        mirror
            .remote_set_url("origin", clone_url)
            .context(scrub, || format!("updating the mirror's URL to {url}"))?;
        remote = mirror.find_remote("origin").context(scrub, || format!("opening the mirror of {url}"))?;
    }
    let mut connection = remote
        .connect_auth(Direction::Fetch, Some(callbacks(creds)), None)
        .context(scrub, || format!("fetching {url}"))?;
    let advertised = connection.list().context(scrub, || format!("fetching {url}"))?;
    if !needed.is_empty() && needed.iter().all(|branch| same_head(mirror, advertised, branch)) {
        return Ok(());
    }
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(creds)).prune(FetchPrune::On).download_tags(AutotagOption::None);
    connection
        .remote()
        .fetch(&[MIRROR_REFSPEC], Some(&mut options), Some("forgehand: sync"))
        .context(scrub, || format!("fetching {url}"))
}

/// Whether the mirror's `branch` points where the remote's does, or both lack it.
fn same_head(mirror: &Repository, advertised: &[RemoteHead<'_>], branch: &str) -> bool {
    let name = format!("refs/heads/{branch}");
    let remote = advertised.iter().find(|head| head.name() == name).map(RemoteHead::oid);
    remote == mirror.refname_to_id(&name).ok()
}

/// Callbacks that answer a credential request once; a second request means the forge
/// refused the token, and asking again would only repeat the refusal.
pub(super) fn callbacks(creds: Option<&GitCredentials>) -> RemoteCallbacks<'_> {
    let mut callbacks = RemoteCallbacks::new();
    let Some(creds) = creds else {
        return callbacks;
    };
    let mut offered = false;
    callbacks.credentials(move |_url, _username, allowed| {
        if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return Err(auth_error("the remote wants credentials other than a token"));
        }
        if offered {
            return Err(auth_error("the remote refused the credentials"));
        }
        offered = true;
        Cred::userpass_plaintext(&creds.username, creds.token.expose_secret())
    });
    callbacks
}

fn auth_error(message: &str) -> git2::Error {
    git2::Error::new(ErrorCode::Auth, ErrorClass::Http, message)
}

/// Refuses what git2 cannot use here (ssh, unknown schemes) and URLs carrying a password,
/// which would end up in the mirror's config.
pub(super) fn check_url(url: &str) -> Result<(), WorkspaceError> {
    let refuse = |reason| Err(WorkspaceError::InvalidUrl { url: display_url(url), reason });
    let Some((scheme, rest)) = url.split_once("://") else {
        let scp_like = url.find(':').is_some_and(|c| url.find('/').is_none_or(|s| c < s));
        return match () {
            () if url.is_empty() => refuse("it is empty"),
            () if scp_like => refuse("ssh is not supported; use an https URL"),
            () => Ok(()),
        };
    };
    if !["https", "http", "file", "git"].contains(&scheme.to_ascii_lowercase().as_str()) {
        return refuse("only https, http, git and file URLs are supported");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            refuse("it carries credentials; configure a token instead")
        }
        _ => Ok(()),
    }
}

/// The URL without any user information, for messages and logs.
pub(super) fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

/// One directory name per key, injectively: `/` becomes `+`, anything outside
/// `[A-Za-z0-9._-]` (and a leading `.`) becomes `%XX`, so no key can climb out of
/// `mirrors/` or collide with another.
pub(super) fn mirror_dir_name(repo_key: &str) -> Result<String, WorkspaceError> {
    let mut name = String::with_capacity(repo_key.len() + 4);
    for (i, byte) in repo_key.bytes().enumerate() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => name.push(byte.into()),
            b'.' if i > 0 => name.push('.'),
            b'/' => name.push('+'),
            _ => write!(name, "%{byte:02X}").expect("writing to a String"),
        }
    }
    if name.is_empty() || name.len() > MIRROR_NAME_MAX {
        return Err(WorkspaceError::InvalidRepoKey(repo_key.to_owned()));
    }
    name.push_str(".git");
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "github/octo-org/hello-world";

    #[test]
    fn repo_keys_stay_inside_mirrors_and_never_collide() {
        let names: Vec<_> = ["a/b-c", "a-b/c", "a+b/c", "../../etc", "..", ".hidden/x"]
            .iter()
            .map(|key| mirror_dir_name(key).unwrap())
            .collect();
        for name in &names {
            assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(mirror_dir_name(KEY).unwrap(), "github+octo-org+hello-world.git");
        assert!(mirror_dir_name("").is_err());
        assert!(mirror_dir_name(&"x".repeat(300)).is_err());
    }
}
