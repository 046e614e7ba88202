//! Branch names: one per issue, readable, and a valid ref whatever the title holds.

use super::WorkspaceError;
use crate::forge::IssueNumber;

const SLUG_MAX: usize = 40;

/// `<prefix>issue-<n>-<slug>`, the slug made of the title's ASCII letters and digits
/// (lowercased), other runs becoming one `-`, at most 40 characters; no slug part when
/// the title has no such characters. A valid ref name for any title whenever
/// `<prefix>issue-1` is one.
pub fn branch_name(prefix: &str, number: IssueNumber, title: &str) -> String {
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

/// Refuses a name git cannot use as a branch.
pub(super) fn check_branch(branch: &str) -> Result<(), WorkspaceError> {
    if git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        Ok(())
    } else {
        Err(WorkspaceError::InvalidBranch(branch.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                let name = branch_name(prefix, 7.into(), title);
                let full = format!("refs/heads/{name}");
                assert!(git2::Reference::is_valid_name(&full), "{title:?} -> {name}");
                assert_eq!(name, branch_name(prefix, 7.into(), title), "not deterministic");
                let limit = format!("{prefix}issue-7").len() + 1 + SLUG_MAX;
                assert!(name.len() <= limit, "{name}");
                assert!(!name.ends_with('-'), "{name}");
            }
        }
    }

    #[test]
    fn branch_name_examples() {
        let name = |title| branch_name("forgehand/", 12.into(), title);
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
