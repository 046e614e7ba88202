//! What can go wrong in a workspace, and the one way errors are made: through a
//! [`Scrub`], which takes the token and the workspaces root out of every message as the
//! error is built, so no caller can forget to.

use std::fs;
use std::path::Path;

use git2::{ErrorClass, ErrorCode};
use secrecy::ExposeSecret;

use super::GitCredentials;

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
    /// The commit could not be signed with `git.signing_key`.
    #[error("signing the commit with git.signing_key failed: {0}")]
    Signing(String),
    /// The commits cannot be made again through the forge's API (too many, too big).
    #[error("the commits cannot be made through the API: {0}")]
    NotForApi(String),
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

/// Makes the errors that can carry a secret (git2's and the system's messages, a remote's
/// refusal), scrubbing the token and the workspaces root out of them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scrub<'a> {
    root: &'a Path,
    token: Option<&'a str>,
}

impl<'a> Scrub<'a> {
    /// Scrubs paths under `root` and, when given, the token of `creds`.
    pub(super) fn new(root: &'a Path, creds: Option<&'a GitCredentials>) -> Self {
        let token = creds.map(|c| c.token.expose_secret()).filter(|t| !t.is_empty());
        Scrub { root, token }
    }

    /// The same root, with the token of `creds` too.
    pub(super) fn with(self, creds: Option<&'a GitCredentials>) -> Self {
        Scrub::new(self.root, creds)
    }

    /// A failed git operation.
    pub(super) fn git(&self, action: String, error: &git2::Error) -> WorkspaceError {
        WorkspaceError::Git {
            action: self.clean(action),
            message: self.clean(error.message().to_owned()),
            class: error.class(),
            code: error.code(),
        }
    }

    /// A failed file system operation.
    pub(super) fn io(&self, action: String, message: String) -> WorkspaceError {
        WorkspaceError::Io { action: self.clean(action), message: self.clean(message) }
    }

    /// A push the remote refused.
    pub(super) fn push_rejected(&self, branch: &str, message: &str) -> WorkspaceError {
        WorkspaceError::PushRejected { branch: branch.to_owned(), message: self.clean(message.to_owned()) }
    }

    fn clean(&self, mut text: String) -> String {
        if let Some(token) = self.token {
            text = text.replace(token, "<token>");
        }
        for root in self.roots() {
            text = text.replace(root.as_str(), "<workspaces>");
        }
        text
    }

    /// The root as written and as resolved, the longer first so that a prefix never
    /// leaves half a path behind.
    fn roots(&self) -> Vec<String> {
        let root = self.root;
        let mut roots: Vec<String> = [fs::canonicalize(root).ok(), std::path::absolute(root).ok()]
            .into_iter()
            .flatten()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.len() > 1)
            .collect();
        roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
        roots.dedup();
        roots
    }
}

/// Adds "what we were doing" to git2 and I/O errors, scrubbed.
pub(super) trait Context<T> {
    fn context(self, scrub: Scrub<'_>, action: impl FnOnce() -> String) -> Result<T, WorkspaceError>;
}

impl<T> Context<T> for Result<T, git2::Error> {
    fn context(self, scrub: Scrub<'_>, action: impl FnOnce() -> String) -> Result<T, WorkspaceError> {
        self.map_err(|error| scrub.git(action(), &error))
    }
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn context(self, scrub: Scrub<'_>, action: impl FnOnce() -> String) -> Result<T, WorkspaceError> {
        self.map_err(|error| scrub.io(action(), error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

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
        let tmp = tempfile::TempDir::new().unwrap();
        let workspaces = tmp.path().join("data/workspaces");
        let creds =
            GitCredentials { username: "x-access-token".into(), token: SecretString::from("ghp_SECRET") };
        let root = std::path::absolute(&workspaces).unwrap();
        let error = git2::Error::new(
            ErrorCode::GenericError,
            ErrorClass::Net,
            format!("token ghp_SECRET at {}/mirrors/x", root.display()),
        );
        let err =
            Scrub::new(&workspaces, Some(&creds)).git("fetching https://github.com/o/r.git".into(), &error);
        let text = err.to_string();
        assert_eq!(text, "fetching https://github.com/o/r.git: token <token> at <workspaces>/mirrors/x");
    }
}
