//! Git workspaces (git2): one bare mirror per repository, one checkout per task.
//!
//! Layout under `<data_dir>/workspaces`:
//! - `mirrors/<repo key>.git`: a bare mirror, fetched with `+refs/heads/*:refs/heads/*`
//!   and pruned, so its branches are the remote's branches;
//! - `tasks/task-<id>`: an ordinary repository with a working tree that borrows the
//!   mirror's objects through a relative `objects/info/alternates` entry (what
//!   `git clone --shared` does). Preparing a task costs one checkout, whatever the depth
//!   of history, and its `origin` is the real remote.
//!
//! Nothing here ever deletes objects from a mirror: task repositories depend on them.
//! Everything blocks; callers run it inside `tokio::task::spawn_blocking`. Credentials
//! reach git2 only through the credential callback, never a URL or a config file.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use git2::{
    AutotagOption, Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, FetchPrune, RemoteCallbacks,
    Repository,
};
use secrecy::{ExposeSecret, SecretString};

const MIRROR_REFSPEC: &str = "+refs/heads/*:refs/heads/*";
const SLUG_MAX: usize = 40;
/// Leaves room for the `.git.partial` suffix within the usual 255-byte file name limit.
const MIRROR_NAME_MAX: usize = 240;

/// Credentials for the forge's git remote: username + token, handed to git2 only through
/// the credential callback (`Cred::userpass_plaintext`), never written into a URL, a
/// config file or the remote's URL on disk.
#[derive(Debug, Clone)]
pub struct GitCredentials {
    /// The user name the forge expects with a token (e.g. `x-access-token` on GitHub).
    pub username: String,
    /// The token; `Debug` never shows it.
    pub token: SecretString,
}

/// Author/committer identity for commits forgehand makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Display name, e.g. `forgehand[bot]`.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

/// What went wrong in a workspace. Messages never carry a token or the local path of the
/// data directory (it reads `<workspaces>` instead).
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A git operation failed.
    #[error("{action}: {message}")]
    Git {
        /// What forgehand was doing, e.g. `fetching https://github.com/o/r.git`.
        action: String,
        /// git2's message.
        message: String,
        /// git2's error class, kept to tell transient failures apart.
        class: ErrorClass,
        /// git2's error code.
        code: ErrorCode,
    },
    /// A file system operation failed.
    #[error("{action}: {message}")]
    Io {
        /// What forgehand was doing.
        action: String,
        /// The operating system's message.
        message: String,
    },
    /// The branch to start from is not in the mirror.
    #[error("the branch {0} does not exist on the remote")]
    MissingBranch(String),
    /// The name cannot be a git branch.
    #[error("{0:?} is not a valid branch name")]
    InvalidBranch(String),
    /// The repository key cannot become a directory name.
    #[error("the repository key {0:?} cannot name a mirror")]
    InvalidRepoKey(String),
    /// The clone URL is unusable (unsupported scheme, or credentials inside it).
    #[error("the clone URL {url} is not usable: {reason}")]
    InvalidUrl {
        /// The URL without any credentials.
        url: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The remote (or git2, for a non-fast-forward update) refused the push.
    #[error("the remote refused the push of {branch}: {message}")]
    PushRejected {
        /// The branch pushed.
        branch: String,
        /// The remote's status message.
        message: String,
    },
}

impl WorkspaceError {
    /// True for failures worth retrying later (network, I/O, server errors); false for
    /// authentication failures, missing branches, bad URLs and refused pushes.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Git { class, code, message, .. } => git_error_is_transient(*class, *code, message),
            Self::Io { .. } => true,
            _ => false,
        }
    }

    fn redacted(self, redactor: &Redactor<'_>) -> Self {
        let clean = |text: String| redactor.clean(text);
        match self {
            Self::Git { action, message, class, code } => {
                Self::Git { action: clean(action), message: clean(message), class, code }
            }
            Self::Io { action, message } => Self::Io { action: clean(action), message: clean(message) },
            Self::PushRejected { branch, message } => Self::PushRejected { branch, message: clean(message) },
            other => other,
        }
    }
}

fn git_error_is_transient(class: ErrorClass, code: ErrorCode, message: &str) -> bool {
    use ErrorCode as C;
    if matches!(code, C::Auth | C::Certificate | C::NotFound | C::InvalidSpec | C::NotFastForward) {
        return false;
    }
    match class {
        ErrorClass::Http => {
            http_status(message).is_none_or(|status| status >= 500 || status == 408 || status == 429)
        }
        ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssl | ErrorClass::Zlib => true,
        _ => false,
    }
}

/// The status in libgit2's "unexpected http status code: 403".
fn http_status(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// Adds "what we were doing" to git2 and I/O errors.
trait Context<T> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, WorkspaceError>;
}

impl<T> Context<T> for Result<T, git2::Error> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, WorkspaceError> {
        self.map_err(|error| WorkspaceError::Git {
            action: action(),
            message: error.message().to_owned(),
            class: error.class(),
            code: error.code(),
        })
    }
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, WorkspaceError> {
        self.map_err(|error| WorkspaceError::Io { action: action(), message: error.to_string() })
    }
}

/// Scrubs the token and the workspaces root out of error messages.
struct Redactor<'a> {
    token: Option<&'a str>,
    roots: Vec<String>,
}

impl<'a> Redactor<'a> {
    fn new(root: &Path, creds: Option<&'a GitCredentials>) -> Self {
        let token = creds.map(|c| c.token.expose_secret()).filter(|t| !t.is_empty());
        let mut roots: Vec<String> = [fs::canonicalize(root).ok(), std::path::absolute(root).ok()]
            .into_iter()
            .flatten()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.len() > 1)
            .collect();
        // The longer form first, so a prefix never leaves half a path behind.
        roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
        roots.dedup();
        Redactor { token, roots }
    }

    fn clean(&self, mut text: String) -> String {
        if let Some(token) = self.token {
            text = text.replace(token, "<token>");
        }
        for root in &self.roots {
            text = text.replace(root.as_str(), "<workspaces>");
        }
        text
    }
}

/// The git workspaces under `<data_dir>/workspaces`.
#[derive(Debug)]
pub struct Workspaces {
    root: PathBuf,
    /// One lock per mirror, so two tasks on one repository never fetch into it at once.
    mirror_locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

impl Workspaces {
    /// Workspaces rooted at `root` (normally `<data_dir>/workspaces`); nothing is created
    /// until it is needed.
    pub fn new(root: PathBuf) -> Workspaces {
        Workspaces { root, mirror_locks: Mutex::default() }
    }

    /// Ensures the bare mirror for `repo_key` (e.g. `github/octo-org/hello-world`) exists
    /// under `root/mirrors/`: cloned the first time, fetched incrementally (pruning
    /// deleted branches) afterwards. Returns the mirror's path.
    pub fn sync_mirror(
        &self,
        repo_key: &str,
        clone_url: &str,
        creds: Option<&GitCredentials>,
    ) -> Result<PathBuf, WorkspaceError> {
        self.sync(repo_key, clone_url, creds).map_err(|e| e.redacted(&Redactor::new(&self.root, creds)))
    }

    fn sync(
        &self,
        repo_key: &str,
        clone_url: &str,
        creds: Option<&GitCredentials>,
    ) -> Result<PathBuf, WorkspaceError> {
        check_url(clone_url)?;
        let path = self.mirror_path(repo_key)?;
        let lock = self.mirror_lock(&path);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        match Repository::open_bare(&path) {
            Ok(mirror) => fetch_mirror(&mirror, clone_url, creds)?,
            Err(_) => clone_mirror(&path, repo_key, clone_url, creds)?,
        }
        Ok(path)
    }

    fn mirror_path(&self, repo_key: &str) -> Result<PathBuf, WorkspaceError> {
        Ok(self.root.join("mirrors").join(mirror_dir_name(repo_key)?))
    }

    fn mirror_lock(&self, path: &Path) -> Arc<Mutex<()>> {
        let mut locks = self.mirror_locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(path.to_path_buf()).or_default().clone()
    }
}

/// Clones into a sibling `.partial` directory renamed at the end, so a crash mid-clone
/// never leaves something that looks like a mirror.
fn clone_mirror(
    path: &Path,
    repo_key: &str,
    clone_url: &str,
    creds: Option<&GitCredentials>,
) -> Result<(), WorkspaceError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    remove_dir_if_present(path, || format!("removing the broken mirror of {repo_key}"))?;
    remove_dir_if_present(&partial, || format!("removing a partial mirror of {repo_key}"))?;
    let result = init_and_fetch(&partial, clone_url, creds);
    if result.is_err() {
        let _ = fs::remove_dir_all(&partial);
    }
    result?;
    fs::rename(&partial, path).context(|| format!("storing the mirror of {repo_key}"))?;
    tracing::info!(repo = repo_key, url = %display_url(clone_url), "cloned a mirror");
    Ok(())
}

fn init_and_fetch(
    path: &Path,
    clone_url: &str,
    creds: Option<&GitCredentials>,
) -> Result<(), WorkspaceError> {
    let url = display_url(clone_url);
    let mirror = Repository::init_bare(path).context(|| format!("creating a mirror of {url}"))?;
    mirror
        .remote_with_fetch("origin", clone_url, MIRROR_REFSPEC)
        .context(|| format!("configuring the mirror of {url}"))?;
    fetch_mirror(&mirror, clone_url, creds)
}

fn fetch_mirror(
    mirror: &Repository,
    clone_url: &str,
    creds: Option<&GitCredentials>,
) -> Result<(), WorkspaceError> {
    let url = display_url(clone_url);
    let mut remote = mirror.find_remote("origin").context(|| format!("opening the mirror of {url}"))?;
    if remote.url().ok() != Some(clone_url) {
        // The forge's clone URL changed (a renamed repository, a new host name).
        mirror
            .remote_set_url("origin", clone_url)
            .context(|| format!("updating the mirror's URL to {url}"))?;
        remote = mirror.find_remote("origin").context(|| format!("opening the mirror of {url}"))?;
    }
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(creds)).prune(FetchPrune::On).download_tags(AutotagOption::None);
    remote
        .fetch(&[MIRROR_REFSPEC], Some(&mut options), Some("forgehand: sync"))
        .context(|| format!("fetching {url}"))
}

/// Callbacks that answer a credential request once; a second request means the forge
/// refused the token, and asking again would only repeat the refusal.
fn callbacks(creds: Option<&GitCredentials>) -> RemoteCallbacks<'_> {
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

fn remove_dir_if_present(path: &Path, action: impl FnOnce() -> String) -> Result<bool, WorkspaceError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).context(action),
    }
}

/// Refuses what git2 cannot use here (ssh, unknown schemes) and URLs carrying a password,
/// which would end up in the mirror's config.
fn check_url(url: &str) -> Result<(), WorkspaceError> {
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
fn display_url(url: &str) -> String {
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
fn mirror_dir_name(repo_key: &str) -> Result<String, WorkspaceError> {
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

/// `<prefix>issue-<n>-<slug>`, the slug made of the title's ASCII letters and digits
/// (lowercased), other runs becoming one `-`, at most 40 characters; no slug part when
/// the title has no such characters. A valid ref name for any title whenever
/// `<prefix>issue-1` is one.
pub fn branch_name(prefix: &str, number: u32, title: &str) -> String {
    let slug = slug(title);
    if slug.is_empty() { format!("{prefix}issue-{number}") } else { format!("{prefix}issue-{number}-{slug}") }
}

fn slug(title: &str) -> String {
    let mut slug = String::new();
    let mut gap = false;
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !slug.is_empty() {
                slug.push('-');
            }
            gap = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    truncate_slug(slug)
}

/// Cuts to `SLUG_MAX` characters, at the last `-` when there is one, so words stay whole.
fn truncate_slug(mut slug: String) -> String {
    if slug.len() <= SLUG_MAX {
        return slug;
    }
    let whole_word = slug.as_bytes()[SLUG_MAX] == b'-';
    slug.truncate(SLUG_MAX);
    if !whole_word && let Some(dash) = slug.rfind('-') {
        slug.truncate(dash);
    }
    slug.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::build::TreeUpdateBuilder;
    use git2::{FileMode, Oid, Signature};
    use std::os::unix::fs::MetadataExt;
    use tempfile::TempDir;

    /// An upstream bare repository with one commit on `main`, and workspaces beside it.
    struct Fixture {
        tmp: TempDir,
        upstream: PathBuf,
        url: String,
        workspaces: Workspaces,
    }

    fn fixture() -> Fixture {
        let tmp = TempDir::new().unwrap();
        let upstream = tmp.path().join("upstream.git");
        let repo = Repository::init_bare(&upstream).unwrap();
        repo.set_head("refs/heads/main").unwrap();
        let files = [("README.md", "hello\n"), ("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")];
        upstream_commit(&upstream, "main", &files, &[], "initial commit");
        let url = format!("file://{}", upstream.display());
        let workspaces = Workspaces::new(tmp.path().join("data/workspaces"));
        Fixture { tmp, upstream, url, workspaces }
    }

    /// Commits `files` (and deletes `removed`) on `branch` of a bare repository, as
    /// someone else pushing to the forge would.
    fn upstream_commit(
        repo: &Path,
        branch: &str,
        files: &[(&str, &str)],
        removed: &[&str],
        message: &str,
    ) -> Oid {
        let repo = Repository::open_bare(repo).unwrap();
        let refname = format!("refs/heads/{branch}");
        let parent = repo.find_reference(&refname).ok().map(|r| r.peel_to_commit().unwrap());
        let empty = repo.treebuilder(None).unwrap().write().unwrap();
        let baseline = match &parent {
            Some(commit) => commit.tree().unwrap(),
            None => repo.find_tree(empty).unwrap(),
        };
        let mut update = TreeUpdateBuilder::new();
        for (path, content) in files {
            let blob = repo.blob(content.as_bytes()).unwrap();
            update.upsert(*path, blob, FileMode::Blob);
        }
        for path in removed {
            update.remove(*path);
        }
        let tree = repo.find_tree(update.create_updated(&repo, &baseline).unwrap()).unwrap();
        let someone = Signature::now("Someone", "someone@example.com").unwrap();
        let parents: Vec<_> = parent.iter().collect();
        repo.commit(Some(&refname), &someone, &someone, message, &tree, &parents).unwrap()
    }

    fn branch_head(repo: &Path, branch: &str) -> Option<Oid> {
        let repo = Repository::open(repo).unwrap();
        let reference = repo.find_reference(&format!("refs/heads/{branch}")).ok()?;
        reference.target()
    }

    fn origin_url(repo: &Path) -> String {
        let repo = Repository::open(repo).unwrap();
        let remote = repo.find_remote("origin").unwrap();
        remote.url().unwrap().to_owned()
    }

    fn creds(token: &str) -> GitCredentials {
        GitCredentials { username: "x-access-token".into(), token: SecretString::from(token) }
    }

    const KEY: &str = "github/octo-org/hello-world";

    #[test]
    fn first_sync_clones_later_syncs_only_fetch() {
        let f = fixture();
        let mirror = f.workspaces.sync_mirror(KEY, &f.url, None).unwrap();
        assert!(Repository::open_bare(&mirror).unwrap().is_bare());
        assert_eq!(origin_url(&mirror), f.url);
        let main = branch_head(&f.upstream, "main");
        assert_eq!(branch_head(&mirror, "main"), main);
        let inode = fs::metadata(&mirror).unwrap().ino();
        fs::write(mirror.join("marker"), "still the first clone").unwrap();

        let newer = upstream_commit(&f.upstream, "main", &[("a.txt", "a")], &[], "more");
        let feature = upstream_commit(&f.upstream, "feature", &[("b", "b")], &[], "b");
        assert_eq!(f.workspaces.sync_mirror(KEY, &f.url, None).unwrap(), mirror);

        assert_eq!(fs::metadata(&mirror).unwrap().ino(), inode);
        assert!(mirror.join("marker").exists(), "the second sync cloned again");
        assert_eq!(branch_head(&mirror, "main"), Some(newer));
        assert_eq!(branch_head(&mirror, "feature"), Some(feature));
    }

    #[test]
    fn sync_prunes_deleted_branches_and_follows_a_new_url() {
        let f = fixture();
        upstream_commit(&f.upstream, "gone", &[("g", "g")], &[], "g");
        let mirror = f.workspaces.sync_mirror(KEY, &f.url, None).unwrap();
        assert!(branch_head(&mirror, "gone").is_some());
        let upstream = Repository::open_bare(&f.upstream).unwrap();
        upstream.find_reference("refs/heads/gone").unwrap().delete().unwrap();

        // A plain path works as well, and the stored URL follows the one given.
        let path_url = f.upstream.to_str().unwrap();
        f.workspaces.sync_mirror(KEY, path_url, None).unwrap();
        assert_eq!(branch_head(&mirror, "gone"), None);
        assert_eq!(origin_url(&mirror), path_url);
    }

    #[test]
    fn a_failed_first_sync_leaves_nothing_behind() {
        let f = fixture();
        let missing = format!("file://{}", f.tmp.path().join("nope.git").display());
        let err = f.workspaces.sync_mirror(KEY, &missing, None).unwrap_err();
        assert!(err.to_string().starts_with("fetching file://"), "{err}");
        let mirrors = fs::read_dir(f.workspaces.root.join("mirrors")).unwrap();
        assert_eq!(mirrors.count(), 0);
    }

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

    #[test]
    fn urls_with_passwords_or_ssh_are_refused() {
        let f = fixture();
        let with_token = "https://x-access-token:ghp_SECRET@github.com/o/r.git";
        let err = f.workspaces.sync_mirror(KEY, with_token, None).unwrap_err();
        assert!(matches!(err, WorkspaceError::InvalidUrl { .. }));
        assert!(!format!("{err} {err:?}").contains("ghp_SECRET"));
        assert!(!err.is_transient());
        for url in ["git@github.com:o/r.git", "ssh://git@github.com/o/r.git", ""] {
            let err = f.workspaces.sync_mirror(KEY, url, None).unwrap_err();
            assert!(matches!(err, WorkspaceError::InvalidUrl { .. }), "{url}");
        }
        assert!(check_url("https://github.com/o/r.git").is_ok());
        assert!(check_url("https://user@github.com/o/r.git").is_ok());
        assert!(check_url("/srv/git/r.git").is_ok());
    }

    #[test]
    fn transient_classification() {
        use ErrorClass as K;
        use ErrorCode as C;
        let cases = [
            (K::Net, C::GenericError, "failed to connect", true),
            (K::Os, C::GenericError, "connection reset by peer", true),
            (K::Http, C::GenericError, "unexpected http status code: 502", true),
            (K::Http, C::GenericError, "unexpected http status code: 429", true),
            (K::Http, C::GenericError, "unexpected http status code: 403", false),
            (K::Http, C::GenericError, "unexpected http status code: 401", false),
            (K::Http, C::GenericError, "unexpected http status code: 404", false),
            (K::Http, C::Auth, "authentication required", false),
            (K::Reference, C::NotFastForward, "non-fastforwardable", false),
            (K::Repository, C::NotFound, "could not find repository", false),
        ];
        for (class, code, message, transient) in cases {
            assert_eq!(git_error_is_transient(class, code, message), transient, "{message}");
        }
        assert!(!WorkspaceError::MissingBranch("main".into()).is_transient());
    }

    #[test]
    fn messages_lose_the_token_and_the_data_dir() {
        let f = fixture();
        let creds = creds("ghp_SECRET");
        let root = std::path::absolute(&f.workspaces.root).unwrap();
        let err = WorkspaceError::Git {
            action: "fetching https://github.com/o/r.git".into(),
            message: format!("token ghp_SECRET at {}/mirrors/x", root.display()),
            class: ErrorClass::Net,
            code: ErrorCode::GenericError,
        };
        let text = err.redacted(&Redactor::new(&f.workspaces.root, Some(&creds))).to_string();
        assert_eq!(text, "fetching https://github.com/o/r.git: token <token> at <workspaces>/mirrors/x");
    }

    const NASTY_TITLES: &[&str] = &[
        "",
        " ",
        "../../etc/passwd",
        "Ünïcödé 🚀",
        "🚀🚀🚀",
        "tab\tnew\nline\u{7f}\u{0}bell\u{7}",
        "refs/heads/@{-1}",
        "@{",
        "@",
        "branch.lock",
        "x.lock",
        "..",
        "a..b",
        "trailing.",
        "trailing/",
        "/leading",
        "--dashes--",
        "back\\slash",
        "star*question?bracket[colon:caret^tilde~",
        "HEAD",
        "Fix: the `login` page (again) — v2.0!",
    ];

    #[test]
    fn branch_names_are_valid_refs_for_any_title() {
        let long = "word ".repeat(60) + &"x".repeat(300);
        let titles = NASTY_TITLES.iter().copied().chain([long.as_str()]);
        for title in titles {
            for prefix in ["forgehand/", "", "bot-"] {
                let name = branch_name(prefix, 7, title);
                let full = format!("refs/heads/{name}");
                assert!(git2::Reference::is_valid_name(&full), "{title:?} -> {name}");
                assert_eq!(name, branch_name(prefix, 7, title), "not deterministic");
                let limit = format!("{prefix}issue-7").len() + 1 + SLUG_MAX;
                assert!(name.len() <= limit, "{name}");
                assert!(!name.ends_with('-'), "{name}");
            }
        }
    }

    #[test]
    fn branch_name_examples() {
        let name = |title| branch_name("forgehand/", 12, title);
        assert_eq!(name("Fix the login bug"), "forgehand/issue-12-fix-the-login-bug");
        assert_eq!(name("  Crash on `--help`!! "), "forgehand/issue-12-crash-on-help");
        assert_eq!(name("Ünïcödé 🚀"), "forgehand/issue-12-n-c-d");
        assert_eq!(name("🚀"), "forgehand/issue-12");
        assert_eq!(name(""), "forgehand/issue-12");
        let long = "Support configuring the webhook secret through environment variables";
        assert_eq!(name(long), "forgehand/issue-12-support-configuring-the-webhook-secret");
        let exact = "a".repeat(SLUG_MAX) + " tail";
        assert_eq!(slug(&exact), "a".repeat(SLUG_MAX));
        assert_eq!(slug(&"b".repeat(100)), "b".repeat(SLUG_MAX));
    }
}
