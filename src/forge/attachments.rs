//! Images and files people attach to issues (GitHub's user-attachments, Gitea's
//! attachments), found in the text and fetched with the forge's token (a GitHub
//! App's: the installation token of the task's repository) — from the forge's own hosts
//! only, size-capped, the token never sent anywhere else.

use std::time::Duration;

use anyhow::Context;
use reqwest::redirect::Policy;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ForgeKind, ForgeSettings};

/// What a link in the text is to forgehand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// An attachment on the forge's own host: fetched.
    Own(String),
    /// An image elsewhere: named in the prompt as not fetched.
    Foreign(String),
}

/// Why an attachment was not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skipped {
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    #[error("the forge answered {0}")]
    Refused(u16),
    #[error("it redirects to a host that is not the forge's")]
    ForeignRedirect,
    #[error("cannot fetch it: {0}")]
    Unreachable(String),
}

/// A fetched attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// `image/png`, ...; empty when the forge does not say.
    pub content_type: String,
}

/// Finds a forge's attachments in text: no client needed, so an issue without links costs
/// nothing more.
#[derive(Debug, Clone)]
pub struct AttachmentLinks {
    kind: ForgeKind,
    /// `host[:port]` of the forge's web pages and attachment storage.
    hosts: Vec<String>,
}

/// Fetches a forge's attachments.
pub struct Attachments {
    http: reqwest::Client,
    token: SecretString,
}

/// Most redirects followed (GitHub sends private images through one).
const MAX_REDIRECTS: usize = 3;

impl AttachmentLinks {
    /// For the forge `settings` describes.
    pub fn new(settings: &ForgeSettings) -> AttachmentLinks {
        AttachmentLinks { kind: settings.kind, hosts: own_hosts(settings.kind, &settings.api_url) }
    }

    /// The attachments and foreign images linked in `text`, in order, each once.
    pub fn find(&self, text: &str) -> Vec<Link> {
        let mut found: Vec<Link> = Vec::new();
        for (url, image) in urls(text) {
            let link = if self.is_attachment(&url) {
                Link::Own(url)
            } else if image {
                Link::Foreign(url)
            } else {
                continue;
            };
            if !found.contains(&link) {
                found.push(link);
            }
        }
        found
    }

    fn is_attachment(&self, url: &str) -> bool {
        if !self.hosts.contains(&host_of(url)) {
            return false;
        }
        let path = path_of(url);
        match self.kind {
            ForgeKind::Github => {
                path.starts_with("/user-attachments/")
                    || path.split('/').nth(3) == Some("assets")
                    || host_of(url).ends_with("githubusercontent.com")
            }
            ForgeKind::Gitea => path.contains("/attachments/"),
        }
    }
}

impl Attachments {
    /// A client that sends `token` (empty: none) to the hosts `links` accepts, and follows
    /// redirects only among them.
    pub fn new(token: SecretString, links: &AttachmentLinks) -> anyhow::Result<Attachments> {
        let allowed = links.hosts.clone();
        // Only to the forge's own hosts; reqwest drops the token on a change of host.
        let policy = Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS
                || !allowed.contains(&host_of(attempt.url().as_str()))
            {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(policy)
            .user_agent(concat!("forgehand/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the attachment client")?;
        Ok(Attachments { http, token })
    }

    /// Fetches `url` (one [`Attachments::links`] found as its own), at most `max_bytes`.
    pub async fn fetch(&self, url: &str, max_bytes: u64) -> Result<Fetched, Skipped> {
        let mut request = self.http.get(url);
        let token = self.token.expose_secret();
        if !token.is_empty() {
            request = request.header("authorization", format!("token {token}"));
        }
        let unreachable = |e: reqwest::Error| Skipped::Unreachable(e.without_url().to_string());
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(Skipped::ForeignRedirect);
        }
        if !status.is_success() {
            return Err(Skipped::Refused(status.as_u16()));
        }
        if response.content_length().is_some_and(|length| length > max_bytes) {
            return Err(Skipped::TooLarge(max_bytes));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if bytes.len() as u64 + chunk.len() as u64 > max_bytes {
                return Err(Skipped::TooLarge(max_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched { bytes, content_type })
    }
}

/// Where a forge keeps attachments: github.com and GitHub's image hosts for api.github.com,
/// else the API's own host (GitHub Enterprise Server, Gitea, Forgejo).
fn own_hosts(kind: ForgeKind, api_url: &str) -> Vec<String> {
    let api = host_of(api_url);
    match kind {
        ForgeKind::Github if api == "api.github.com" => {
            ["github.com", "user-images.githubusercontent.com", "private-user-images.githubusercontent.com"]
                .map(str::to_owned)
                .to_vec()
        }
        _ => vec![api],
    }
}

/// `host[:port]` of an http(s) URL, lowercased; empty for anything else.
fn host_of(url: &str) -> String {
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // user:password@ before the host is not a host.
    authority.rsplit('@').next().unwrap_or("").to_ascii_lowercase()
}

fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("")
}

/// Every http(s) URL in `text`, and whether it is shown as an image (`![…](url)`, `<img
/// src="url">`).
fn urls(text: &str) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("http") {
        let candidate = &rest[start..];
        if !(candidate.starts_with("https://") || candidate.starts_with("http://")) {
            rest = &rest[start + 4..];
            continue;
        }
        let end = candidate
            .find(|c: char| c.is_whitespace() || "()<>\"'[]`".contains(c))
            .unwrap_or(candidate.len());
        let before = &rest[..start];
        let image = before.ends_with("](") && before.rfind("![").is_some_and(|i| !before[i..].contains('\n'))
            || before.trim_end_matches(['"', '\'']).ends_with("src=");
        found.push((candidate[..end].trim_end_matches(['.', ',', ';']).to_owned(), image));
        rest = &candidate[end..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachments(kind: ForgeKind, api_url: &str) -> AttachmentLinks {
        let settings = ForgeSettings {
            name: "f".into(),
            kind,
            api_url: api_url.into(),
            token: "t".to_owned().into(),
            webhook_secret: Default::default(),
            bot_login: String::new(),
            app_id: None,
            private_key: String::new().into(),
        };
        AttachmentLinks::new(&settings)
    }

    #[test]
    fn only_the_forges_own_attachments_are_fetched_and_foreign_images_named() {
        let github = attachments(ForgeKind::Github, "https://api.github.com");
        let text = "See ![shot](https://github.com/user-attachments/assets/1f2e) and \
                    <img src=\"https://private-user-images.githubusercontent.com/9/x.png?jwt=a\">, \
                    ![remote](https://evil.example/pixel.png), [docs](https://example.com/guide), \
                    https://github.com/user-attachments/files/7/log.txt. Again: ![same](https://github.com/user-attachments/assets/1f2e)";
        assert_eq!(
            github.find(text),
            [
                Link::Own("https://github.com/user-attachments/assets/1f2e".into()),
                Link::Own("https://private-user-images.githubusercontent.com/9/x.png?jwt=a".into()),
                Link::Foreign("https://evil.example/pixel.png".into()),
                Link::Own("https://github.com/user-attachments/files/7/log.txt".into()),
            ]
        );
        // An issue link on github.com is no attachment.
        assert!(github.find("https://github.com/o/r/issues/1").is_empty());
        let gitea = attachments(ForgeKind::Gitea, "https://git.example.org:3000/api/v1");
        assert_eq!(
            gitea.find("![a](https://git.example.org:3000/attachments/abc-123) ![b](https://git.example.org/attachments/x)"),
            [
                Link::Own("https://git.example.org:3000/attachments/abc-123".into()),
                // Another port is another host.
                Link::Foreign("https://git.example.org/attachments/x".into()),
            ]
        );
        let ghes = attachments(ForgeKind::Github, "https://ghe.corp/api/v3");
        assert_eq!(ghes.find("![a](https://ghe.corp/user-attachments/assets/9)").len(), 1);
        assert_eq!(host_of("https://user:pw@Evil.example:8/x"), "evil.example:8");
    }
}
