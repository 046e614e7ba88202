//! [`RepoName`]: a repository's full name, `owner/name`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A repository's full name, `owner/name`, as the forge spells it. Made where a name
/// enters — a webhook payload, `trigger.repos`, a stored task — and taken by the forge
/// client, the trigger and the task facade; it prints as the plain text.
///
/// Two ways in: [`RepoName::parse`] checks a name a person typed (and `Settings::check`
/// checks `trigger.repos` the same way); `From<String>` takes a name as a forge sent it or
/// the database kept it, unchecked: forgehand acts on the repository the forge names, and
/// every API path encodes each segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(transparent)]
pub struct RepoName(String);

impl RepoName {
    /// A name a person typed, checked by [`check_repo_name`].
    pub fn parse(text: &str) -> Result<RepoName, String> {
        check_repo_name(text).map(|()| RepoName(text.to_owned()))
    }

    /// The full name, `owner/name`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The account or organization: the text before the first `/` (all of it when none).
    pub fn owner(&self) -> &str {
        self.0.split_once('/').map_or(self.as_str(), |(owner, _)| owner)
    }

    /// The repository's own name: the text after the first `/` (empty when none).
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, name)| name)
    }

    /// The `/`-separated parts, each to be encoded as one URL path segment.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Whether both name the same repository: forges compare names without case.
    pub fn same_as(&self, other: &RepoName) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for RepoName {
    fn from(name: String) -> RepoName {
        RepoName(name)
    }
}

impl From<&str> for RepoName {
    fn from(name: &str) -> RepoName {
        RepoName(name.to_owned())
    }
}

impl PartialEq<str> for RepoName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RepoName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Checks a repository name typed by a person: `owner/name`, each part letters, digits,
/// `-`, `_` and `.` (as GitHub and Gitea allow), neither `.` nor `..`. It becomes part
/// of API paths, so nothing else gets through. The error says what to type.
pub fn check_repo_name(repo: &str) -> Result<(), String> {
    let part_ok = |part: &str| {
        (1..=100).contains(&part.len())
            && part != "."
            && part != ".."
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match repo.split_once('/') {
        Some((owner, name)) if part_ok(owner) && part_ok(name) => Ok(()),
        _ => Err(format!(
            "Name the repository as owner/name, e.g. octo-org/hello-world: two parts of letters, digits, '-', '_' and '.', \
             not '.' or '..' (got {:?}).",
            repo.chars().take(100).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_name() {
        let repo = RepoName::parse("octo-org/hello.world").unwrap();
        assert_eq!(
            (repo.owner(), repo.name(), repo.to_string().as_str()),
            ("octo-org", "hello.world", "octo-org/hello.world")
        );
        assert_eq!(serde_json::to_string(&repo).unwrap(), "\"octo-org/hello.world\"");
        assert!(repo.same_as(&"Octo-Org/Hello.World".into()));
        assert!(!repo.same_as(&"octo-org/hello".into()));
    }

    #[test]
    fn people_must_type_owner_slash_name() {
        for bad in ["nope", "a/b/c", "../x", "a/..", "/b", "a/", "a b/c"] {
            let problem = RepoName::parse(bad).unwrap_err();
            assert!(problem.starts_with("Name the repository as owner/name"), "{bad}: {problem}");
        }
    }

    #[test]
    fn a_forges_name_is_taken_as_sent() {
        let odd = RepoName::from("a/b/c".to_owned());
        assert_eq!((odd.owner(), odd.name()), ("a", "b/c"));
        assert_eq!(odd.segments().collect::<Vec<_>>(), ["a", "b", "c"]);
        let bare = RepoName::from("solo");
        assert_eq!((bare.owner(), bare.name()), ("solo", ""));
    }
}
