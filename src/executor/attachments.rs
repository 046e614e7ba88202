//! The images and files linked in an issue, fetched into the task's checkout for the agent
//! (`attachments.*` settings): into a folder git is told to ignore, so they are never
//! committed, and named in the prompt.

use std::fmt::Write as _;
use std::path::Path;

use secrecy::SecretString;

use crate::config::{AttachmentSettings, Settings};
use crate::forge::attachments::{AttachmentLinks, Attachments, Link, Skipped};

/// Where they go, relative to the checkout.
pub const DIR: &str = ".forgehand/attachments";

/// Fetches what `texts` (the body and comments) link on the forge `forge_name` into
/// `checkout` with `token` (the one git uses for the task's repository: a GitHub App's
/// installation token), and returns the prompt's account of it (empty when nothing is
/// linked). Nothing here fails the task: an attachment that cannot be fetched is named as
/// such.
pub async fn fetch_into(
    settings: &Settings,
    forge_name: &str,
    token: Option<SecretString>,
    texts: &[&str],
    checkout: &Path,
) -> String {
    let limits = &settings.attachments;
    let Some(forge) = settings.forge(forge_name).filter(|_| limits.enabled) else { return String::new() };
    let finder = AttachmentLinks::new(forge);
    let mut links: Vec<Link> = Vec::new();
    for link in texts.iter().flat_map(|text| finder.find(text)) {
        if !links.contains(&link) {
            links.push(link);
        }
    }
    if links.is_empty() {
        return String::new();
    }
    let token = token.unwrap_or_else(|| SecretString::from(""));
    let client = match Attachments::new(token, &finder) {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(error = %err, "cannot fetch attachments");
            return String::new();
        }
    };
    let mut report = Report::default();
    let mut budget = limits.max_task_bytes;
    for link in links {
        match link {
            Link::Foreign(url) => report.skipped.push(format!("{url}: not on the forge's own host")),
            Link::Own(url) if report.fetched.len() >= limits.max_files => {
                report.skipped.push(format!("{url}: more than attachments.max_files ({})", limits.max_files));
            }
            Link::Own(url) => fetch_one(&client, &url, limits, &mut budget, checkout, &mut report).await,
        }
    }
    if !report.fetched.is_empty()
        && let Err(err) = ignore_in_git(checkout)
    {
        tracing::warn!(error = %err, "cannot keep the attachments out of git");
    }
    report.text()
}

/// What was fetched (path, type, size, URL) and what was not (why).
#[derive(Default)]
struct Report {
    fetched: Vec<(String, String, usize, String)>,
    skipped: Vec<String>,
}

async fn fetch_one(
    client: &Attachments,
    url: &str,
    limits: &AttachmentSettings,
    budget: &mut u64,
    checkout: &Path,
    report: &mut Report,
) {
    let cap = limits.max_file_bytes.min(*budget);
    match client.fetch(url, cap).await {
        Ok(file) => {
            let name = file_name(report.fetched.len() + 1, url, &file.content_type);
            let relative = format!("{DIR}/{name}");
            let written = std::fs::create_dir_all(checkout.join(DIR))
                .and_then(|()| std::fs::write(checkout.join(&relative), &file.bytes));
            match written {
                Ok(()) => {
                    *budget -= file.bytes.len() as u64;
                    report.fetched.push((relative, file.content_type, file.bytes.len(), url.to_owned()));
                }
                Err(err) => report.skipped.push(format!("{url}: cannot write it ({err})")),
            }
        }
        Err(Skipped::TooLarge(_)) if cap < limits.max_file_bytes => {
            report.skipped.push(format!("{url}: over what is left of attachments.max_task_bytes"));
        }
        Err(why) => report.skipped.push(format!("{url}: {why}")),
    }
}

/// `NN-<last path segment>`, made safe for a file name, with an extension from the type
/// when it has none.
fn file_name(n: usize, url: &str, content_type: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let last = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("attachment");
    let mut name: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .take(60)
        .collect();
    name = name.trim_start_matches('.').to_owned();
    if name.is_empty() {
        name = "attachment".to_owned();
    }
    if !name.contains('.') {
        let extension = match content_type {
            "image/png" => ".png",
            "image/jpeg" => ".jpg",
            "image/gif" => ".gif",
            "image/webp" => ".webp",
            "image/svg+xml" => ".svg",
            "text/plain" => ".txt",
            "application/pdf" => ".pdf",
            "application/zip" => ".zip",
            _ => "",
        };
        name.push_str(extension);
    }
    format!("{n:02}-{name}")
}

/// Tells git in the checkout to ignore the attachments' folder (`.git/info/exclude`,
/// which is the checkout's own: never pushed).
fn ignore_in_git(checkout: &Path) -> std::io::Result<()> {
    let info = checkout.join(".git/info");
    std::fs::create_dir_all(&info)?;
    let exclude = info.join("exclude");
    let current = std::fs::read_to_string(&exclude).unwrap_or_default();
    if !current.lines().any(|line| line == "/.forgehand/attachments/") {
        let separator = if current.is_empty() || current.ends_with('\n') { "" } else { "\n" };
        std::fs::write(&exclude, format!("{current}{separator}/.forgehand/attachments/\n"))?;
    }
    Ok(())
}

impl Report {
    fn text(&self) -> String {
        let mut text = String::new();
        if !self.fetched.is_empty() {
            text.push_str(&format!(
                "Files attached to the issue, downloaded into {DIR}/ for you to open (they are not part of the repository; leave them there):\n"
            ));
            for (path, kind, size, url) in &self.fetched {
                let kind = if kind.is_empty() { String::new() } else { format!("{kind}, ") };
                let _ = writeln!(text, "- {path} ({kind}{size} bytes), from {url}");
            }
        }
        if !self.skipped.is_empty() {
            text.push_str("Linked in the issue but not downloaded:\n");
            for line in &self.skipped {
                let _ = writeln!(text, "- {line}");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_numbered_safe_and_typed() {
        assert_eq!(file_name(1, "https://h/user-attachments/assets/1f2e-9a", "image/png"), "01-1f2e-9a.png");
        assert_eq!(file_name(2, "https://h/a/..%2F..%2Fetc%2Fpasswd?x=1", ""), "02-_2F.._2Fetc_2Fpasswd");
        assert_eq!(file_name(3, "https://h/x/..", "image/gif"), "03-attachment.gif");
        assert_eq!(file_name(12, "https://h/files/7/build log.txt", "text/plain"), "12-build_log.txt");
    }

    #[test]
    fn the_folder_is_ignored_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git/info")).unwrap();
        std::fs::write(dir.path().join(".git/info/exclude"), "# local\n*.swp").unwrap();
        ignore_in_git(dir.path()).unwrap();
        ignore_in_git(dir.path()).unwrap();
        let exclude = std::fs::read_to_string(dir.path().join(".git/info/exclude")).unwrap();
        assert_eq!(exclude, "# local\n*.swp\n/.forgehand/attachments/\n");
    }
}
