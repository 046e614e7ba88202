//! GitHub's REST API through octocrab. Calls go through octocrab's raw request methods so
//! that status and rate-limit headers reach our error classification intact.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use axum::http::Method;
use http_body_util::BodyExt;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::rest::{Id, Issue, Login, PermissionAnswer, Pull, Repository};

use super::client::{
    Answer, Forge, ForgeError, ForgeResult, IssueInfo, MAX_PAGES, NewPull, PullInfo, RepoInfo, repo_path,
    segment,
};
use crate::config::{ForgeKind, ForgeSettings, Permission};

/// A GitHub (or GitHub Enterprise) API client.
pub struct GithubClient {
    client: octocrab::Octocrab,
    /// Labels known to exist, so each is created at most once per process.
    known_labels: Mutex<HashSet<String>>,
}

impl GithubClient {
    /// A client for `settings.api_url` authenticated with `settings.token`.
    pub fn new(settings: &ForgeSettings) -> anyhow::Result<GithubClient> {
        let mut builder = octocrab::Octocrab::builder()
            .base_uri(settings.api_url.as_str())
            .with_context(|| format!("forges: api_url {:?} is not a valid URL", settings.api_url))?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)));
        let token = settings.token.expose_secret();
        if !token.is_empty() {
            builder = builder.personal_token(token.to_owned());
        }
        let client = builder.build().context("cannot build the GitHub client")?;
        Ok(GithubClient { client, known_labels: Mutex::new(HashSet::new()) })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        operation: &str,
    ) -> ForgeResult<Answer> {
        let response = match method {
            Method::GET => self.client._get(path).await,
            Method::POST => self.client._post(path, body).await,
            Method::PATCH => self.client._patch(path, body).await,
            Method::DELETE => self.client._delete(path, body).await,
            _ => unreachable!("only GET, POST, PATCH and DELETE are used"),
        }
        .map_err(|e| ForgeError::transport(operation, e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| ForgeError::transport(operation, e))?.to_bytes();
        Ok(Answer { status: parts.status, headers: parts.headers, body: body.to_vec() })
    }

    async fn ensure_label(&self, repo: &str, label: &str) -> ForgeResult<()> {
        let key = format!("{repo}#{label}");
        if self.known_labels.lock().map(|known| known.contains(&key)).unwrap_or(false) {
            return Ok(());
        }
        let operation = format!("creating the label {label:?} in {repo}");
        let body = json!({ "name": label, "color": label_color(label) });
        let answer = self
            .send(Method::POST, &format!("/repos/{}/labels", repo_path(repo)), Some(&body), &operation)
            .await?;
        // 422: it exists already.
        if !answer.status.is_success() && answer.status.as_u16() != 422 {
            return Err(answer.error(&operation));
        }
        if let Ok(mut known) = self.known_labels.lock() {
            known.insert(key);
        }
        Ok(())
    }
}

/// forgehand's status labels get colours that say what they mean.
pub(crate) fn label_color(label: &str) -> &'static str {
    if label.ends_with("failed") {
        "d73a4a"
    } else if label.ends_with("done") {
        "0e8a16"
    } else {
        "fbca04"
    }
}

/// GitHub's roles mapped onto forgehand's three levels.
fn github_permission(permission: &str) -> Permission {
    match permission {
        "admin" => Permission::Admin,
        "write" | "maintain" => Permission::Write,
        "read" | "triage" => Permission::Read,
        _ => Permission::None,
    }
}

#[async_trait]
impl Forge for GithubClient {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Github
    }

    async fn current_login(&self) -> ForgeResult<String> {
        let operation = "reading the bot account";
        Ok(self.send(Method::GET, "/user", None, operation).await?.json::<Login>(operation)?.login)
    }

    async fn repository(&self, repo: &str) -> ForgeResult<RepoInfo> {
        let operation = format!("reading the repository {repo}");
        let answer = self.send(Method::GET, &format!("/repos/{}", repo_path(repo)), None, &operation).await?;
        Ok(answer.json::<Repository>(&operation)?.into())
    }

    async fn permission(&self, repo: &str, login: &str) -> ForgeResult<Permission> {
        let operation = format!("reading {login}'s permission on {repo}");
        let path = format!("/repos/{}/collaborators/{}/permission", repo_path(repo), segment(login));
        let answer: PermissionAnswer =
            self.send(Method::GET, &path, None, &operation).await?.json(&operation)?;
        Ok(github_permission(&answer.permission))
    }

    async fn issue(&self, repo: &str, number: u32) -> ForgeResult<IssueInfo> {
        let operation = format!("reading {repo}#{number}");
        let path = format!("/repos/{}/issues/{number}", repo_path(repo));
        Ok(self.send(Method::GET, &path, None, &operation).await?.json::<Issue>(&operation)?.into())
    }

    async fn create_comment(&self, repo: &str, number: u32, body: &str) -> ForgeResult<u64> {
        let operation = format!("commenting on {repo}#{number}");
        let path = format!("/repos/{}/issues/{number}/comments", repo_path(repo));
        let answer = self.send(Method::POST, &path, Some(&json!({ "body": body })), &operation).await?;
        Ok(answer.json::<Id>(&operation)?.id)
    }

    async fn edit_comment(&self, repo: &str, comment_id: u64, body: &str) -> ForgeResult<()> {
        let operation = format!("editing comment {comment_id} in {repo}");
        let path = format!("/repos/{}/issues/comments/{comment_id}", repo_path(repo));
        self.send(Method::PATCH, &path, Some(&json!({ "body": body })), &operation).await?.ok(&operation)?;
        Ok(())
    }

    async fn add_label(&self, repo: &str, number: u32, label: &str) -> ForgeResult<()> {
        self.ensure_label(repo, label).await?;
        let operation = format!("labelling {repo}#{number} {label:?}");
        let path = format!("/repos/{}/issues/{number}/labels", repo_path(repo));
        self.send(Method::POST, &path, Some(&json!({ "labels": [label] })), &operation)
            .await?
            .ok(&operation)?;
        Ok(())
    }

    async fn remove_label(&self, repo: &str, number: u32, label: &str) -> ForgeResult<()> {
        let operation = format!("removing the label {label:?} from {repo}#{number}");
        let path = format!("/repos/{}/issues/{number}/labels/{}", repo_path(repo), segment(label));
        let answer = self.send(Method::DELETE, &path, None, &operation).await?;
        if answer.status.is_success() || answer.status.as_u16() == 404 {
            Ok(())
        } else {
            Err(answer.error(&operation))
        }
    }

    async fn react(&self, repo: &str, number: u32, content: &str) -> ForgeResult<()> {
        let operation = format!("reacting to {repo}#{number}");
        let path = format!("/repos/{}/issues/{number}/reactions", repo_path(repo));
        self.send(Method::POST, &path, Some(&json!({ "content": content })), &operation)
            .await?
            .ok(&operation)?;
        Ok(())
    }

    async fn find_pull(&self, repo: &str, head: &str, base: &str) -> ForgeResult<Option<PullInfo>> {
        let operation = format!("looking for the pull request of {head} in {repo}");
        let owner = repo.split('/').next().unwrap_or_default();
        let path = format!(
            "/repos/{}/pulls?state=open&head={}:{}&base={}",
            repo_path(repo),
            segment(owner),
            segment(head),
            segment(base)
        );
        let pulls: Vec<Pull> = self.send(Method::GET, &path, None, &operation).await?.json(&operation)?;
        Ok(pulls.into_iter().next().map(PullInfo::from))
    }

    async fn create_pull(&self, repo: &str, pull: &NewPull<'_>) -> ForgeResult<PullInfo> {
        let operation = format!("opening the pull request of {} in {repo}", pull.head);
        let body = json!({ "title": pull.title, "head": pull.head, "base": pull.base, "body": pull.body, "draft": pull.draft });
        let answer = self
            .send(Method::POST, &format!("/repos/{}/pulls", repo_path(repo)), Some(&body), &operation)
            .await?;
        // GitHub refuses a second pull request for the same head: reuse the first.
        if answer.status.as_u16() == 422
            && let Some(existing) = self.find_pull(repo, pull.head, pull.base).await?
        {
            return Ok(existing);
        }
        Ok(answer.json::<Pull>(&operation)?.into())
    }

    async fn pull(&self, repo: &str, number: u32) -> ForgeResult<PullInfo> {
        let operation = format!("reading the pull request {repo}#{number}");
        let path = format!("/repos/{}/pulls/{number}", repo_path(repo));
        Ok(self.send(Method::GET, &path, None, &operation).await?.json::<Pull>(&operation)?.into())
    }

    async fn open_issues_with_label(&self, repo: &str, label: &str) -> ForgeResult<Vec<IssueInfo>> {
        let operation = format!("listing the open issues labelled {label:?} in {repo}");
        let mut found = Vec::new();
        for page in 1..=MAX_PAGES {
            let path = format!(
                "/repos/{}/issues?state=open&labels={}&per_page=100&page={page}",
                repo_path(repo),
                segment(label)
            );
            let issues: Vec<Issue> =
                self.send(Method::GET, &path, None, &operation).await?.json(&operation)?;
            let last = issues.len() < 100;
            found.extend(issues.into_iter().map(IssueInfo::from).filter(|issue| !issue.is_pull_request));
            if last {
                break;
            }
        }
        Ok(found)
    }
}
