//! Gitea's and Forgejo's REST API (`/api/v1`) through reqwest.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::rest::{Id, Issue, Label, Login, PermissionAnswer, Pull, Repository};

use super::client::{
    Answer, ErrorKind, Forge, ForgeError, ForgeResult, IssueInfo, MAX_PAGES, NewPull, PullInfo, RepoInfo,
    repo_path, segment,
};
use super::github::label_color;
use crate::config::{ForgeKind, ForgeSettings, Permission};

/// A Gitea or Forgejo API client.
pub struct GiteaClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl GiteaClient {
    /// A client for `settings.api_url` (ending in `/api/v1`) authenticated with `settings.token`.
    pub fn new(settings: &ForgeSettings) -> anyhow::Result<GiteaClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("forgehand/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the Gitea client")?;
        Ok(GiteaClient {
            http,
            base: settings.api_url.trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        operation: &str,
    ) -> ForgeResult<Answer> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        let token = self.token.expose_secret();
        if !token.is_empty() {
            request = request.header("authorization", format!("token {token}"));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        // reqwest's errors carry the URL, which holds no secret; the token is in a header.
        let response = request.send().await.map_err(|e| ForgeError::transport(operation, e.without_url()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| ForgeError::transport(operation, e.without_url()))?;
        Ok(Answer { status, headers, body: body.to_vec() })
    }

    async fn labels(&self, repo: &str) -> ForgeResult<Vec<Label>> {
        let operation = format!("listing the labels of {repo}");
        let mut all = Vec::new();
        for page in 1..=20 {
            let path = format!("/repos/{}/labels?limit=50&page={page}", repo_path(repo));
            let batch: Vec<Label> =
                self.send(Method::GET, &path, None, &operation).await?.json(&operation)?;
            let last = batch.len() < 50;
            all.extend(batch);
            if last {
                break;
            }
        }
        Ok(all)
    }

    async fn label_id(&self, repo: &str, label: &str, create: bool) -> ForgeResult<Option<u64>> {
        if let Some(found) = self.labels(repo).await?.into_iter().find(|l| l.name == label) {
            return Ok(Some(found.id));
        }
        if !create {
            return Ok(None);
        }
        let operation = format!("creating the label {label:?} in {repo}");
        let body = json!({ "name": label, "color": format!("#{}", label_color(label)) });
        let path = format!("/repos/{}/labels", repo_path(repo));
        Ok(Some(self.send(Method::POST, &path, Some(&body), &operation).await?.json::<Id>(&operation)?.id))
    }
}

/// Gitea's access modes mapped onto forgehand's three levels.
fn gitea_permission(permission: &str) -> Permission {
    match permission {
        "owner" | "admin" => Permission::Admin,
        "write" => Permission::Write,
        "read" => Permission::Read,
        _ => Permission::None,
    }
}

#[async_trait]
impl Forge for GiteaClient {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Gitea
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
        let answer = self.send(Method::GET, &path, None, &operation).await?;
        if answer.status.as_u16() == 403 {
            // Gitea tells a collaborator's permission only to admins of the repository.
            return Err(ForgeError {
                operation,
                kind: ErrorKind::Forbidden,
                message: format!(
                    "Gitea shows permissions only to repository admins: make the bot account an admin of {repo}"
                ),
            });
        }
        Ok(gitea_permission(&answer.json::<PermissionAnswer>(&operation)?.permission))
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
        let Some(id) = self.label_id(repo, label, true).await? else { return Ok(()) };
        let operation = format!("labelling {repo}#{number} {label:?}");
        let path = format!("/repos/{}/issues/{number}/labels", repo_path(repo));
        self.send(Method::POST, &path, Some(&json!({ "labels": [id] })), &operation).await?.ok(&operation)?;
        Ok(())
    }

    async fn remove_label(&self, repo: &str, number: u32, label: &str) -> ForgeResult<()> {
        let Some(id) = self.label_id(repo, label, false).await? else { return Ok(()) };
        let operation = format!("removing the label {label:?} from {repo}#{number}");
        let path = format!("/repos/{}/issues/{number}/labels/{id}", repo_path(repo));
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
        let path = format!("/repos/{}/pulls/{}/{}", repo_path(repo), segment(base), segment(head));
        let answer = self.send(Method::GET, &path, None, &operation).await?;
        if answer.status.as_u16() == 404 {
            return Ok(None);
        }
        let pull: PullInfo = answer.json::<Pull>(&operation)?.into();
        Ok(pull.is_open.then_some(pull))
    }

    async fn create_pull(&self, repo: &str, pull: &NewPull<'_>) -> ForgeResult<PullInfo> {
        let operation = format!("opening the pull request of {} in {repo}", pull.head);
        // Gitea marks drafts by a "WIP:" title prefix.
        let title = if pull.draft { format!("WIP: {}", pull.title) } else { pull.title.to_owned() };
        let body = json!({ "title": title, "head": pull.head, "base": pull.base, "body": pull.body });
        let answer = self
            .send(Method::POST, &format!("/repos/{}/pulls", repo_path(repo)), Some(&body), &operation)
            .await?;
        if answer.status.as_u16() == 409
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
                "/repos/{}/issues?state=open&labels={}&type=issues&limit=50&page={page}",
                repo_path(repo),
                segment(label)
            );
            let issues: Vec<Issue> =
                self.send(Method::GET, &path, None, &operation).await?.json(&operation)?;
            let last = issues.len() < 50;
            found.extend(issues.into_iter().map(IssueInfo::from).filter(|issue| !issue.is_pull_request));
            if last {
                break;
            }
        }
        Ok(found)
    }
}
