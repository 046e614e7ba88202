//! A fake forge: a real HTTP server holding repositories, issues, comments, labels, pull
//! requests and permissions in memory, answering GitHub's or Gitea's REST API from that state.
//!
//! Tests arrange state (`add_repo`, `add_issue`, `set_permission`), point forgehand at
//! `base_url()` with `token()`, then assert on the state (`pulls`, `comments`, `labels`) or on
//! the request log. `wait_for` wakes on every change of state: nothing sleeps or polls.
//! A request no route answers gets a 404 and is logged as unexpected; dropping the forge
//! fails the test if one was never looked at through `unexpected()`.
//!
//! ```text
//! let forge = FakeForge::github().await;          // or FakeForge::gitea()
//! forge.add_repo("acme/widgets", &bare_repo_path, "main");
//! forge.add_issue("acme/widgets", 1, "Title", "Body", &["bug"], "alice");
//! forge.set_permission("acme/widgets", "alice", "write");
//! let app = TestApp::spawn_with(&forge.config_toml("fake")).await;
//! app.deliver("fake", forge.label_issue("acme/widgets", 1, "forgehand", "alice").delivery()).await;
//! forge.wait_for(|s| s.pulls_of("acme/widgets").len() == 1).await;
//! ```

// A toolkit: every test uses only some of it.
#![allow(dead_code)]

pub mod app;
mod git_data;
mod gitea;
mod github;
mod hooks;
pub mod routes;

use routes::{Route, route};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The token every fake forge accepts, as `Bearer <token>` or `token <token>`.
pub const TOKEN: &str = "fake-forge-token";

/// The bot's login unless a test sets another.
pub const BOT_LOGIN: &str = "forgehand-bot";

/// Which forge's REST API the fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Github,
    Gitea,
}

/// Whether an issue or pull request is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueState {
    Open,
    Closed,
}

/// A repository and everything in it.
#[derive(Debug, Clone)]
pub struct FakeRepo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    /// A `file://` URL of a bare repository on disk (a plain path is turned into one).
    pub clone_url: String,
    /// The clone URL the API shows instead, when git is served another way (over HTTP).
    pub served_clone_url: Option<String>,
    pub default_branch: String,
    pub private: bool,
    pub labels: Vec<FakeLabel>,
    /// Issues and pull requests share one number space, as on both forges.
    pub issues: BTreeMap<u64, FakeIssue>,
    /// Login → role: `admin`, `maintain`, `write`, `triage`, `read`, `none` (Gitea: `owner`).
    pub permissions: BTreeMap<String, String>,
    /// Check runs (GitHub) and commit statuses (both) on commits, newest last.
    pub checks: Vec<FakeCheck>,
    /// Commits made through the Git database API with no author, committer nor
    /// signature given: GitHub signs those as the token's account (verified).
    pub signed_commits: BTreeSet<String>,
}

/// A check run (GitHub) or commit status (`status_only`, and every check on Gitea).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCheck {
    pub id: u64,
    pub sha: String,
    pub name: String,
    /// `success`, `failure`, ...; a status's state.
    pub conclusion: String,
    pub summary: String,
    /// A check run's `output.text`.
    pub text: String,
    /// The Actions job log (GitHub check runs of `github-actions`).
    pub log: Option<String>,
    pub status_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLabel {
    pub id: u64,
    pub name: String,
    pub color: String,
    pub description: String,
}

/// An issue, or the issue half of a pull request.
#[derive(Debug, Clone)]
pub struct FakeIssue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: IssueState,
    /// Label names, in the order they were added.
    pub labels: Vec<String>,
    pub user: String,
    pub comments: Vec<FakeComment>,
    pub reactions: Vec<FakeReaction>,
    /// Present when this is a pull request.
    pub pull: Option<PullPart>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// What a pull request has beyond its issue.
#[derive(Debug, Clone)]
pub struct PullPart {
    pub id: u64,
    pub head: String,
    pub base: String,
    /// The head and base commits when the pull request was opened; answers re-read the
    /// bare repository so later pushes show.
    pub head_sha: String,
    pub base_sha: String,
    pub draft: bool,
    pub reviews: Vec<FakeReview>,
    /// `owner/name` of the fork the head branch lives in; `None`: the repository itself.
    pub fork: Option<String>,
    /// Inline review comments and the replies in their threads, oldest first.
    pub review_comments: Vec<FakeReviewComment>,
}

/// An inline comment of a review, or a reply in its thread (`in_reply_to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeReviewComment {
    pub id: u64,
    pub review_id: u64,
    pub in_reply_to: Option<u64>,
    pub user: String,
    pub path: String,
    pub line: u32,
    pub diff_hunk: String,
    pub body: String,
    pub commit_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeComment {
    pub id: u64,
    pub body: String,
    pub user: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub reactions: Vec<FakeReaction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeReaction {
    pub id: u64,
    pub content: String,
    pub user: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeReview {
    pub id: u64,
    pub user: String,
    /// `approved`, `changes_requested` or `commented`.
    pub state: String,
    pub body: String,
    pub commit_id: String,
    pub submitted_at: DateTime<Utc>,
}

/// A pull request as tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePull {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub state: IssueState,
    pub draft: bool,
    pub html_url: String,
    pub user: String,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    /// Relative to `base_url()` (`/repos/o/r/pulls`); in full when outside the API.
    pub path: String,
    pub query: String,
    /// The JSON body, `Null` when empty, a string when not JSON.
    pub body: Value,
    pub status: u16,
    /// No route answers it.
    pub unexpected: bool,
    /// Answered by `fail_next`.
    pub injected: bool,
}

/// Everything the fake knows; tests read it through `with_state` and `wait_until`.
#[derive(Debug)]
pub struct ForgeState {
    pub bot_login: String,
    /// Gitea: the bot is a site administrator, so it may read anyone's permission.
    pub bot_is_site_admin: bool,
    pub repos: BTreeMap<String, FakeRepo>,
    pub requests: Vec<LoggedRequest>,
    /// Files people attached, by URL path on the web host: bytes and content type.
    pub attachments: BTreeMap<String, (Vec<u8>, String)>,
    dialect: Dialect,
    api: String,
    web: String,
    faults: Vec<Fault>,
    unexpected_seen: usize,
    /// Set when forgehand connects to this fake GitHub as a GitHub App.
    pub app: Option<app::FakeApp>,
}

impl ForgeState {
    /// The pull requests of `repo`, lowest number first.
    pub fn pulls_of(&self, repo: &str) -> Vec<FakePull> {
        let Some(r) = self.repos.get(repo) else { return Vec::new() };
        r.issues.values().filter(|i| i.pull.is_some()).map(|i| fake_pull(&self.ctx(), r, i)).collect()
    }

    /// The comments on issue or pull request `n`.
    pub fn comments_of(&self, repo: &str, n: u64) -> Vec<FakeComment> {
        self.issue(repo, n).map(|i| i.comments.clone()).unwrap_or_default()
    }

    /// The label names on issue or pull request `n`.
    pub fn labels_of(&self, repo: &str, n: u64) -> Vec<String> {
        self.issue(repo, n).map(|i| i.labels.clone()).unwrap_or_default()
    }

    pub fn issue(&self, repo: &str, n: u64) -> Option<&FakeIssue> {
        self.repos.get(repo)?.issues.get(&n)
    }

    fn issue_mut(&mut self, repo: &str, n: u64) -> &mut FakeIssue {
        let issues = &mut self.repo_mut(repo).issues;
        issues.get_mut(&n).unwrap_or_else(|| panic!("no issue {n} in {repo}"))
    }

    fn repo_mut(&mut self, repo: &str) -> &mut FakeRepo {
        self.repos.get_mut(repo).unwrap_or_else(|| panic!("no repository {repo}"))
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            dialect: self.dialect,
            api: self.api.clone(),
            web: self.web.clone(),
            bot: self.bot_login.clone(),
            site_admin: self.bot_is_site_admin,
        }
    }
}

/// A running fake forge; the server stops when it is dropped.
pub struct FakeForge {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    base_url: String,
}

struct Shared {
    dialect: Dialect,
    /// Where the API lives under the web host: `` (github.com), `/api/v3` (Enterprise
    /// Server), `/api/v1` (Gitea).
    api_prefix: &'static str,
    state: Mutex<ForgeState>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ForgeState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the state and wakes every `wait_until`.
    fn mutate<T>(&self, change: impl FnOnce(&mut ForgeState) -> T) -> T {
        let result = change(&mut self.lock());
        self.changed.notify_waiters();
        result
    }
}

impl FakeForge {
    /// A fake GitHub at `http://127.0.0.1:PORT`.
    pub async fn github() -> FakeForge {
        FakeForge::start(Dialect::Github).await
    }

    /// A fake Gitea whose API lives at `http://127.0.0.1:PORT/api/v1`.
    pub async fn gitea() -> FakeForge {
        FakeForge::start(Dialect::Gitea).await
    }

    /// A fake GitHub Enterprise Server: its API lives at `http://127.0.0.1:PORT/api/v3`.
    pub async fn github_enterprise() -> FakeForge {
        FakeForge::start_at(Dialect::Github, "/api/v3").await
    }

    async fn start(dialect: Dialect) -> FakeForge {
        let prefix = match dialect {
            Dialect::Github => "",
            Dialect::Gitea => "/api/v1",
        };
        FakeForge::start_at(dialect, prefix).await
    }

    async fn start_at(dialect: Dialect, api_prefix: &'static str) -> FakeForge {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake forge");
        let web = format!("http://{}", listener.local_addr().unwrap());
        let api = format!("{web}{api_prefix}");
        let state = ForgeState {
            bot_login: BOT_LOGIN.into(),
            bot_is_site_admin: false,
            repos: BTreeMap::new(),
            requests: Vec::new(),
            attachments: BTreeMap::new(),
            dialect,
            api: api.clone(),
            web,
            faults: Vec::new(),
            unexpected_seen: 0,
            app: None,
        };
        let shared =
            Arc::new(Shared { dialect, api_prefix, state: Mutex::new(state), changed: Notify::new() });
        let router = axum::Router::new().fallback(serve).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeForge { shared, server, base_url: api }
    }

    pub fn dialect(&self) -> Dialect {
        self.shared.dialect
    }

    /// The API base forgehand is given as `api_url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn token(&self) -> &'static str {
        TOKEN
    }

    pub fn bot_login(&self) -> String {
        self.shared.lock().bot_login.clone()
    }

    /// Renames the bot; call it before `add_repo`, which gives the bot `write`.
    pub fn set_bot_login(&self, login: &str) {
        self.shared.mutate(|s| s.bot_login = login.into());
    }

    /// Gitea: makes the bot a site administrator (or not).
    pub fn set_site_admin(&self, admin: bool) {
        self.shared.mutate(|s| s.bot_is_site_admin = admin);
    }

    /// Makes this fake GitHub the home of GitHub App `id` (bot `<slug>[bot]`, which becomes
    /// the bot login) whose public key is `public_key`; `installations` maps repositories to
    /// the installation holding them. Forgehand must then use the App's tokens.
    /// The App's private key is made afresh (`FakeApp::private_key_pem`).
    pub fn enable_app(&self, id: u64, slug: &str, installations: &[(&str, u64)]) {
        let (pem, public_key) = app::app_key();
        let mut app = app::FakeApp::new(id, slug, public_key);
        app.private_key_pem = pem;
        app.installations = installations.iter().map(|(repo, id)| ((*repo).to_owned(), *id)).collect();
        self.shared.mutate(|s| {
            s.bot_login = format!("{slug}[bot]");
            s.app = Some(app);
        });
    }

    /// Reads (or changes) the App's side of the fake.
    pub fn with_app<T>(&self, look: impl FnOnce(&mut app::FakeApp) -> T) -> T {
        self.shared.mutate(|s| look(s.app.as_mut().expect("enable_app was called")))
    }

    /// A `[[forges]]` entry pointing forgehand at this fake, with the harness's webhook
    /// secret of the dialect, so `Webhook::delivery()` passes its signature check. With an
    /// App, its id and private key stand where the token would.
    pub fn config_toml(&self, name: &str) -> String {
        use crate::harness::{GITEA_SECRET, GITHUB_SECRET};
        let app = self.shared.lock().app.as_ref().map(|a| (a.id, a.private_key_pem.clone()));
        let credential = match app {
            Some((id, pem)) => format!("app_id = {id}\nprivate_key = '''\n{pem}'''"),
            None => format!("token = \"{TOKEN}\""),
        };
        let (kind, secret) = match self.dialect() {
            Dialect::Github => ("github", GITHUB_SECRET),
            Dialect::Gitea => ("gitea", GITEA_SECRET),
        };
        format!(
            "[[forges]]\nname = \"{name}\"\nkind = \"{kind}\"\napi_url = \"{}\"\n{credential}\n\
             webhook_secret = \"{secret}\"\nbot_login = \"{}\"\n",
            self.base_url,
            self.bot_login()
        )
    }

    /// Makes the API show `url` as `repo`'s clone URL (its git data stays where it is).
    pub fn serve_clone_url(&self, repo: &str, url: &str) {
        self.shared.mutate(|s| s.repo_mut(repo).served_clone_url = Some(url.into()));
    }

    /// Adds `owner/name`, public, whose git data lives at `clone_url` (a bare repository's
    /// path or `file://` URL). The bot gets `write` on it.
    pub fn add_repo(&self, full_name: &str, clone_url: &str, default_branch: &str) {
        let (owner, name) = full_name.split_once('/').expect("owner/name");
        let repo = FakeRepo {
            id: new_id(),
            owner: owner.into(),
            name: name.into(),
            clone_url: file_url(clone_url),
            served_clone_url: None,
            default_branch: default_branch.into(),
            private: false,
            labels: Vec::new(),
            issues: BTreeMap::new(),
            permissions: BTreeMap::new(),
            checks: Vec::new(),
            signed_commits: BTreeSet::new(),
        };
        self.shared.mutate(|s| {
            let mut repo = repo;
            repo.permissions.insert(s.bot_login.clone(), "write".into());
            s.repos.insert(full_name.into(), repo);
        });
    }

    /// Defines a label on `repo` and returns its id.
    pub fn add_label(&self, repo: &str, name: &str, color: &str, description: &str) -> u64 {
        self.shared.mutate(|s| {
            let label = FakeLabel {
                id: new_id(),
                name: name.into(),
                color: color.into(),
                description: description.into(),
            };
            let id = label.id;
            s.repo_mut(repo).labels.push(label);
            id
        })
    }

    /// Adds an open issue; labels it names that `repo` lacks are created.
    pub fn add_issue(&self, repo: &str, number: u64, title: &str, body: &str, labels: &[&str], author: &str) {
        self.shared.mutate(|s| {
            let r = s.repo_mut(repo);
            let mut issue = new_issue(number, title, body, author);
            for label in labels {
                issue.labels.push(r.ensure_label(label).name.clone());
            }
            r.issues.insert(number, issue);
        });
    }

    /// Adds an open pull request from `head` into `base`, opened by the bot.
    pub fn add_pull(&self, repo: &str, number: u64, title: &str, head: &str, base: &str) {
        self.shared.mutate(|s| {
            let bot = s.bot_login.clone();
            let r = s.repo_mut(repo);
            let mut issue = new_issue(number, title, "", &bot);
            issue.pull = Some(new_pull_part(r, head, base, false));
            r.issues.insert(number, issue);
        });
    }

    /// Opens pull request `number` from branch `head` of the fork `fork` (`owner/name`).
    pub fn add_fork_pull(&self, repo: &str, number: u64, head: &str, fork: &str) {
        self.add_pull(repo, number, "A contribution", head, "main");
        self.shared.mutate(|s| s.issue_mut(repo, number).pull.as_mut().unwrap().fork = Some(fork.into()));
    }

    /// Sets `login`'s role on `repo` (see [`FakeRepo::permissions`]).
    pub fn set_permission(&self, repo: &str, login: &str, role: &str) {
        assert!(legacy_permission(role).is_some(), "unknown role {role}");
        self.shared.mutate(|s| s.repo_mut(repo).permissions.insert(login.into(), role.into()));
    }

    /// Closes issue or pull request `n`.
    pub fn set_closed(&self, repo: &str, n: u64) {
        self.shared.mutate(|s| s.issue_mut(repo, n).close());
    }

    pub fn comments(&self, repo: &str, n: u64) -> Vec<FakeComment> {
        self.shared.lock().comments_of(repo, n)
    }

    pub fn labels(&self, repo: &str, n: u64) -> Vec<String> {
        self.shared.lock().labels_of(repo, n)
    }

    /// Reactions on issue or pull request `n` itself.
    pub fn reactions(&self, repo: &str, n: u64) -> Vec<FakeReaction> {
        self.shared.lock().issue(repo, n).map(|i| i.reactions.clone()).unwrap_or_default()
    }

    /// The commits GitHub signed in `repo`: those made through the Git database API.
    pub fn signed_commits(&self, repo: &str) -> BTreeSet<String> {
        self.shared.lock().repos.get(repo).map(|r| r.signed_commits.clone()).unwrap_or_default()
    }

    pub fn pulls(&self, repo: &str) -> Vec<FakePull> {
        self.shared.lock().pulls_of(repo)
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().requests.clone()
    }

    /// The requests no route answered; looking at them satisfies the check on drop.
    pub fn unexpected(&self) -> Vec<LoggedRequest> {
        let mut state = self.shared.lock();
        let unexpected: Vec<_> = state.requests.iter().filter(|r| r.unexpected).cloned().collect();
        state.unexpected_seen = unexpected.len();
        unexpected
    }

    /// Reads the state.
    pub fn with_state<T>(&self, read: impl FnOnce(&ForgeState) -> T) -> T {
        read(&self.shared.lock())
    }

    /// Waits until `condition` holds, re-checking on every change of state; false when
    /// `timeout` passes first.
    pub async fn wait_until(&self, condition: impl Fn(&ForgeState) -> bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            // Register before checking, so a change between the check and the wait wakes us.
            changed.as_mut().enable();
            if condition(&self.shared.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return condition(&self.shared.lock());
            }
        }
    }

    /// Waits up to 10 s for `condition`, failing the test with the request log otherwise.
    pub async fn wait_for(&self, condition: impl Fn(&ForgeState) -> bool) {
        if !self.wait_until(condition, Duration::from_secs(10)).await {
            let log: Vec<String> =
                self.requests().iter().map(|r| format!("{} {} -> {}", r.method, r.path, r.status)).collect();
            panic!("the fake forge never reached the awaited state; requests:\n{}", log.join("\n"));
        }
    }

    /// The next `times` requests whose method is `method` (`*`: any) and whose path (relative
    /// to `base_url()`) starts with `path_prefix` are answered `status` with `headers`,
    /// before anything else happens.
    pub fn fail_next(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        headers: &[(&str, &str)],
        times: usize,
    ) {
        let headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        self.push_fault(method, path_prefix, times, FaultAction::Fail { status, headers });
    }

    /// The next `times` matching requests (as in `fail_next`) are answered after `delay`.
    pub fn delay_next(&self, method: &str, path_prefix: &str, delay: Duration, times: usize) {
        self.push_fault(method, path_prefix, times, FaultAction::Delay(delay));
    }

    fn push_fault(&self, method: &str, prefix: &str, times: usize, action: FaultAction) {
        let fault = Fault { method: method.to_ascii_uppercase(), prefix: prefix.into(), times, action };
        self.shared.mutate(|s| s.faults.push(fault));
    }
}

impl Drop for FakeForge {
    fn drop(&mut self) {
        self.server.abort();
        if std::thread::panicking() {
            return;
        }
        let state = self.shared.lock();
        let unexpected: Vec<_> = state.requests.iter().filter(|r| r.unexpected).collect();
        if unexpected.len() > state.unexpected_seen {
            let list: Vec<String> = unexpected.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
            panic!("the fake forge has no route for: {}", list.join(", "));
        }
    }
}

impl FakeRepo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// The label named `name` (case-insensitively, as both forges match).
    pub fn label(&self, name: &str) -> Option<&FakeLabel> {
        self.labels.iter().find(|l| l.name.eq_ignore_ascii_case(name))
    }

    fn ensure_label(&mut self, name: &str) -> &FakeLabel {
        if let Some(index) = self.labels.iter().position(|l| l.name.eq_ignore_ascii_case(name)) {
            return &self.labels[index];
        }
        let label =
            FakeLabel { id: new_id(), name: name.into(), color: "ededed".into(), description: String::new() };
        self.labels.push(label);
        self.labels.last().unwrap()
    }

    /// `login`'s role: set explicitly, `admin` for the owner, else what anyone has on a
    /// public repository (`read`) or a private one (`none`).
    fn role_of(&self, login: &str) -> String {
        if let Some(role) = self.permissions.iter().find(|(l, _)| l.eq_ignore_ascii_case(login)) {
            return role.1.clone();
        }
        let role = if login.eq_ignore_ascii_case(&self.owner) {
            "admin"
        } else if self.private {
            "none"
        } else {
            "read"
        };
        role.into()
    }

    fn next_number(&self) -> u64 {
        self.issues.keys().next_back().map_or(1, |n| n + 1)
    }
}

impl FakeIssue {
    fn close(&mut self) {
        self.state = IssueState::Closed;
        self.closed_at = Some(Utc::now());
        self.updated_at = Utc::now();
    }
}

fn new_issue(number: u64, title: &str, body: &str, author: &str) -> FakeIssue {
    let now = Utc::now();
    FakeIssue {
        id: new_id(),
        number,
        title: title.into(),
        body: body.into(),
        state: IssueState::Open,
        labels: Vec::new(),
        user: author.into(),
        comments: Vec::new(),
        reactions: Vec::new(),
        pull: None,
        created_at: now,
        updated_at: now,
        closed_at: None,
    }
}

fn new_pull_part(repo: &FakeRepo, head: &str, base: &str, draft: bool) -> PullPart {
    let sha =
        |branch| branch_tip(&repo.clone_url, branch).map_or_else(|| ZERO_SHA.to_string(), |o| o.to_string());
    PullPart {
        id: new_id(),
        head: head.into(),
        base: base.into(),
        head_sha: sha(head),
        base_sha: sha(base),
        draft,
        reviews: Vec::new(),
        fork: None,
        review_comments: Vec::new(),
    }
}

fn fake_pull(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue) -> FakePull {
    let pull = issue.pull.as_ref().expect("a pull request");
    FakePull {
        number: issue.number,
        title: issue.title.clone(),
        body: issue.body.clone(),
        head: pull.head.clone(),
        base: pull.base.clone(),
        state: issue.state,
        draft: pull.draft,
        html_url: ctx.html_url(repo, issue),
        user: issue.user.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// Serving: log, inject faults, authenticate, route.
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Fault {
    method: String,
    prefix: String,
    times: usize,
    action: FaultAction,
}

#[derive(Debug)]
enum FaultAction {
    Fail { status: u16, headers: Vec<(String, String)> },
    Delay(Duration),
}

/// A request, reduced to what routing needs.
struct Incoming {
    method: String,
    /// Relative to the API base; `None` outside it.
    api_path: Option<String>,
    raw_path: String,
    query: Vec<(String, String)>,
    raw_query: String,
    token: Option<String>,
    body: Value,
}

impl Incoming {
    fn new(prefix: &str, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Incoming {
        let raw_query = uri.query().unwrap_or_default().to_owned();
        Incoming {
            method: method.as_str().to_owned(),
            api_path: uri.path().strip_prefix(prefix).filter(|p| p.starts_with('/')).map(str::to_owned),
            raw_path: uri.path().to_owned(),
            query: form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect(),
            raw_query,
            token: headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(token_of),
            body: if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(body).unwrap_or_else(|_| String::from_utf8_lossy(body).into())
            },
        }
    }

    fn path(&self) -> &str {
        self.api_path.as_deref().unwrap_or(&self.raw_path)
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A string field of the JSON body.
    fn field(&self, name: &str) -> Option<&str> {
        self.body.get(name).and_then(Value::as_str)
    }

    fn matches(&self, fault: &Fault) -> bool {
        (fault.method == "*" || fault.method == self.method) && self.path().starts_with(&fault.prefix)
    }
}

/// The token of an `Authorization` header: `Bearer <t>` or `token <t>`.
fn token_of(header: &str) -> Option<String> {
    let (scheme, token) = header.split_once(' ')?;
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
    known.then(|| token.trim().to_owned())
}

/// A response under construction.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(String, String)>,
    /// A plain-text body instead of JSON (a job log).
    text: Option<String>,
    /// A binary body (an attachment).
    bytes: Option<Vec<u8>>,
}

/// Handlers return `Err` for refusals so `?` can short-circuit.
type Answer = Result<Reply, Reply>;

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply { status, body: Some(body), headers: Vec::new(), text: None, bytes: None }
    }

    fn ok(body: Value) -> Reply {
        Reply::json(200, body)
    }

    fn empty(status: u16) -> Reply {
        Reply { status, body: None, headers: Vec::new(), text: None, bytes: None }
    }

    fn header(mut self, name: &str, value: impl ToString) -> Reply {
        self.headers.push((name.into(), value.to_string()));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match (self.body, self.text, self.bytes) {
            (_, _, Some(bytes)) => (status, bytes).into_response(),
            (_, Some(text), None) => (status, text).into_response(),
            (Some(body), None, None) => (status, axum::Json(body)).into_response(),
            (None, None, None) => status.into_response(),
        };
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                // A body's own content type is replaced, not repeated.
                if name == axum::http::header::CONTENT_TYPE {
                    response.headers_mut().insert(name, value);
                } else {
                    response.headers_mut().append(name, value);
                }
            }
        }
        response
    }
}

async fn serve(
    extract::State(shared): extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Incoming::new(shared.api_prefix, &method, &uri, &headers, &body);
    if let Some(delay) = shared.mutate(|s| s.take_fault(&request, true)).map(|f| f.delay) {
        tokio::time::sleep(delay).await;
    }
    shared.mutate(|s| s.answer(&request)).into_response()
}

/// A fault that fired: how long to wait, or what to answer.
struct Fired {
    delay: Duration,
    reply: Option<Reply>,
}

impl ForgeState {
    /// Consumes one use of the first fault of the wanted kind matching `request`.
    fn take_fault(&mut self, request: &Incoming, delay: bool) -> Option<Fired> {
        let index = self.faults.iter().position(|f| {
            request.matches(f) && f.times > 0 && matches!(f.action, FaultAction::Delay(_)) == delay
        })?;
        let fault = &mut self.faults[index];
        fault.times -= 1;
        let fired = match &fault.action {
            FaultAction::Delay(delay) => Fired { delay: *delay, reply: None },
            FaultAction::Fail { status, headers } => {
                Fired { delay: Duration::ZERO, reply: Some(failure(*status, headers)) }
            }
        };
        self.faults.retain(|f| f.times > 0);
        Some(fired)
    }

    fn answer(&mut self, request: &Incoming) -> Reply {
        let (reply, unexpected, injected) = self.reply_to(request);
        self.requests.push(LoggedRequest {
            method: request.method.clone(),
            path: request.path().to_owned(),
            query: request.raw_query.clone(),
            body: request.body.clone(),
            status: reply.status,
            unexpected,
            injected,
        });
        reply
    }

    /// The reply, whether no route knew the request, and whether a fault answered it.
    fn reply_to(&mut self, request: &Incoming) -> (Reply, bool, bool) {
        if let Some(reply) = self.take_fault(request, false).and_then(|f| f.reply) {
            return (reply, false, true);
        }
        if let Some((bytes, kind)) = self.attachments.get(&request.raw_path) {
            // Attachments of private repositories need the token, as on the forges; with an
            // App, a live installation token.
            let authorized = match self.app.as_mut() {
                Some(app) => app.accepts(&request.raw_path, request.token.as_deref(), None),
                None => request.token.as_deref() == Some(TOKEN),
            };
            if !authorized {
                return (self.ctx().not_found(), false, false);
            }
            let reply = Reply { text: None, ..Reply::empty(200) }.header("content-type", kind);
            return (Reply { bytes: Some(bytes.clone()), ..reply }, false, false);
        }
        if let (Some(app), Some(path)) = (self.app.as_mut(), request.api_path.as_deref())
            && let Some(reply) = app.answer(&request.method, path, request.token.as_deref())
        {
            return (reply, false, false);
        }
        let Some(target) = request.api_path.as_deref().and_then(|p| route(self.dialect, &request.method, p))
        else {
            return (Reply::json(404, json!({ "message": "Not Found" })), true, false);
        };
        let ctx = self.ctx();
        let authorized = match self.app.as_mut() {
            Some(app) => app.accepts(request.path(), request.token.as_deref(), target.0.as_deref()),
            None => request.token.as_deref() == Some(TOKEN),
        };
        if !authorized {
            return (ctx.unauthorized(request.token.is_some()), false, false);
        }
        (self.execute(&ctx, request, target), false, false)
    }

    fn execute(&mut self, ctx: &Ctx, request: &Incoming, (repo, route): (Option<String>, Route)) -> Reply {
        let Some(full_name) = repo else {
            return match route {
                Route::User(login) => Reply::ok(ctx.user(&login)),
                _ => Reply::ok(ctx.current_user()),
            };
        };
        let Some(repo) = self.repos.get_mut(&full_name) else { return ctx.not_found() };
        let exchange = Exchange { ctx, request };
        exchange.run(repo, route).unwrap_or_else(|refusal| refusal)
    }
}

/// The answer of an injected failure, shaped like the forge's own.
fn failure(status: u16, headers: &[(String, String)]) -> Reply {
    let rate_limited =
        headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("x-ratelimit-remaining") && v == "0");
    let message = match status {
        403 if rate_limited => "API rate limit exceeded for user ID 1.",
        429 => "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        _ => {
            StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Injected failure")
        }
    };
    let mut reply = Reply::json(status, json!({ "message": message }));
    reply.headers = headers.to_vec();
    reply
}

// ---------------------------------------------------------------------------------------
// Endpoints: one state change each, rendered in the forge's dialect.
// ---------------------------------------------------------------------------------------

/// One request being answered.
struct Exchange<'a> {
    ctx: &'a Ctx,
    request: &'a Incoming,
}

impl Exchange<'_> {
    fn run(&self, repo: &mut FakeRepo, route: Route) -> Answer {
        let ctx = self.ctx;
        match route {
            Route::CurrentUser => Ok(Reply::ok(ctx.current_user())),
            Route::User(login) => Ok(Reply::ok(ctx.user(&login))),
            Route::Repo => Ok(Reply::ok(ctx.repo(repo))),
            Route::Permission(login) => self.permission(repo, &login),
            Route::Issue(n) => Ok(Reply::ok(ctx.issue(repo, issue(ctx, repo, &n)?))),
            Route::ListIssues => self.list_issues(repo),
            Route::Comments(n) => self.comments(repo, &n),
            Route::PostComment(n) => self.post_comment(repo, &n),
            Route::EditComment(id) => self.edit_comment(repo, &id),
            Route::CommentReaction(id) => self.react_to_comment(repo, &id),
            Route::RepoLabels => {
                let labels = repo.labels.iter().map(|l| ctx.label(repo, l)).collect();
                Ok(self.page(labels))
            }
            Route::Label(name) => {
                let label = repo.label(&name).ok_or_else(|| ctx.not_found())?;
                Ok(Reply::ok(ctx.label(repo, label)))
            }
            Route::CreateLabel => self.create_label(repo),
            Route::IssueLabels(n) => Ok(Reply::ok(ctx.labels(repo, issue(ctx, repo, &n)?))),
            Route::AddLabels(n) => self.add_labels(repo, &n),
            Route::RemoveLabel(n, label) => self.remove_label(repo, &n, &label),
            Route::IssueReaction(n) => self.react_to_issue(repo, &n),
            Route::ListPulls => self.list_pulls(repo),
            Route::CreatePull => self.create_pull(repo),
            Route::CreateBlob => self.create_blob(repo),
            Route::CreateTree => self.create_tree(repo),
            Route::CreateCommit => self.create_commit(repo),
            Route::GitRef(name) => self.git_ref(repo, &name),
            Route::CreateRef => self.create_ref(repo),
            Route::UpdateRef(name) => self.update_ref(repo, &name),
            Route::Pull(n) => Ok(Reply::ok(ctx.pull(repo, pull(ctx, repo, &n)?))),
            Route::EditPull(n) => self.edit_pull(repo, &n),
            Route::PullByBaseHead(base, head) => self.pull_by_base_head(repo, &base, &head),
            Route::Reviews(n) => {
                let issue = pull(ctx, repo, &n)?;
                let part = issue.pull.as_ref().unwrap();
                let reviews = part.reviews.iter().map(|r| ctx.review(repo, issue, r)).collect();
                Ok(self.page(reviews))
            }
            Route::ReviewComments(n, id) => {
                let issue = pull(ctx, repo, &n)?;
                let part = issue.pull.as_ref().unwrap();
                if !part.reviews.iter().any(|r| r.id.to_string() == id) {
                    return Err(ctx.not_found());
                }
                let comments = part
                    .review_comments
                    .iter()
                    .filter(|c| c.review_id.to_string() == id)
                    .map(|c| ctx.review_comment(repo, issue, c))
                    .collect();
                Ok(self.page(comments))
            }
            Route::ReplyToReviewComment(n, id) => self.reply_to_review_comment(repo, &n, &id),
            Route::CheckRuns(git_ref) => {
                Ok(Reply::ok(github::check_runs(ctx, repo, &commit_of(repo, &git_ref))))
            }
            Route::CombinedStatus(git_ref) => {
                Ok(Reply::ok(ctx.combined_status(repo, &commit_of(repo, &git_ref))))
            }
            Route::JobLog(id) => {
                let log = repo.checks.iter().find(|c| c.id.to_string() == id).and_then(|c| c.log.clone());
                Ok(log.map_or_else(|| ctx.not_found(), |log| Reply { text: Some(log), ..Reply::empty(200) }))
            }
        }
    }

    fn reply_to_review_comment(&self, repo: &mut FakeRepo, n: &str, id: &str) -> Answer {
        let ctx = self.ctx;
        let body = self.required("body")?.to_owned();
        let pull = issue_mut(ctx, repo, n)?;
        let Some(part) = pull.pull.as_mut() else { return Err(ctx.not_found()) };
        let Some(parent) = part.review_comments.iter().find(|c| c.id.to_string() == id).cloned() else {
            return Err(ctx.not_found());
        };
        let reply = FakeReviewComment {
            id: new_id(),
            in_reply_to: Some(parent.id),
            user: ctx.bot.clone(),
            body,
            ..parent
        };
        part.review_comments.push(reply.clone());
        let issue = issue(ctx, repo, n)?;
        Ok(Reply::json(201, ctx.review_comment(repo, issue, &reply)))
    }

    fn permission(&self, repo: &FakeRepo, login: &str) -> Answer {
        let ctx = self.ctx;
        let bot_role = repo.role_of(&ctx.bot);
        let bot = legacy_permission(&bot_role).unwrap_or("none");
        match ctx.dialect {
            Dialect::Github if !matches!(bot, "admin" | "write") => {
                Err(ctx.error(403, "Must have push access to view collaborator permission."))
            }
            Dialect::Gitea if !(ctx.site_admin || login.eq_ignore_ascii_case(&ctx.bot) || bot == "admin") => {
                Err(ctx.error(
                    403,
                    "Only admins can query all permissions, repo admins can query all repo permissions, \
                     collaborators can query only their own",
                ))
            }
            _ => Ok(Reply::ok(ctx.permission(repo, login))),
        }
    }

    fn comments(&self, repo: &FakeRepo, n: &str) -> Answer {
        let issue = issue(self.ctx, repo, n)?;
        Ok(self.page(issue.comments.iter().map(|c| self.ctx.comment(repo, issue, c)).collect()))
    }

    fn post_comment(&self, repo: &mut FakeRepo, n: &str) -> Answer {
        let body = self.required("body")?.to_owned();
        let bot = self.ctx.bot.clone();
        let issue = issue_mut(self.ctx, repo, n)?;
        let now = Utc::now();
        let comment = FakeComment {
            id: new_id(),
            body,
            user: bot,
            created_at: now,
            updated_at: now,
            reactions: vec![],
        };
        issue.comments.push(comment);
        issue.updated_at = now;
        let issue = &repo.issues[&issue_number(n)];
        Ok(Reply::json(201, self.ctx.comment(repo, issue, issue.comments.last().unwrap())))
    }

    fn edit_comment(&self, repo: &mut FakeRepo, id: &str) -> Answer {
        let body = self.required("body")?.to_owned();
        let (number, index) = find_comment(repo, id).ok_or_else(|| self.ctx.not_found())?;
        let issue = repo.issues.get_mut(&number).unwrap();
        issue.comments[index].body = body;
        issue.comments[index].updated_at = Utc::now();
        let issue = &repo.issues[&number];
        Ok(Reply::ok(self.ctx.comment(repo, issue, &issue.comments[index])))
    }

    fn react_to_issue(&self, repo: &mut FakeRepo, n: &str) -> Answer {
        let content = self.reaction_content()?;
        let bot = self.ctx.bot.clone();
        let issue = issue_mut(self.ctx, repo, n)?;
        let (created, reaction) = add_reaction(&mut issue.reactions, &content, &bot);
        Ok(Reply::json(if created { 201 } else { 200 }, self.ctx.reaction(&reaction)))
    }

    fn react_to_comment(&self, repo: &mut FakeRepo, id: &str) -> Answer {
        let content = self.reaction_content()?;
        let (number, index) = find_comment(repo, id).ok_or_else(|| self.ctx.not_found())?;
        let comment = &mut repo.issues.get_mut(&number).unwrap().comments[index];
        let (created, reaction) = add_reaction(&mut comment.reactions, &content, &self.ctx.bot);
        Ok(Reply::json(if created { 201 } else { 200 }, self.ctx.reaction(&reaction)))
    }

    fn reaction_content(&self) -> Result<String, Reply> {
        let content = self.required("content")?;
        if REACTIONS.contains(&content) {
            return Ok(content.to_owned());
        }
        Err(match self.ctx.dialect {
            Dialect::Github => self
                .ctx
                .validation(json!([{ "resource": "Reaction", "field": "content", "code": "invalid" }])),
            Dialect::Gitea => self.ctx.error(403, &format!("'{content}' is not an allowed reaction")),
        })
    }

    fn create_label(&self, repo: &mut FakeRepo) -> Answer {
        let ctx = self.ctx;
        let name = self.required("name")?.to_owned();
        let color = self.request.field("color").unwrap_or_default();
        let color = normalize_color(color).ok_or_else(|| match ctx.dialect {
            Dialect::Github => {
                ctx.validation(json!([{ "resource": "Label", "field": "color", "code": "invalid" }]))
            }
            Dialect::Gitea => ctx.error(422, &format!("invalid color: {color}")),
        })?;
        // GitHub keeps names unique; Gitea happily creates a second label of the same name.
        if ctx.dialect == Dialect::Github && repo.label(&name).is_some() {
            return Err(
                ctx.validation(json!([{ "resource": "Label", "code": "already_exists", "field": "name" }]))
            );
        }
        let description = self.request.field("description").unwrap_or_default().to_owned();
        repo.labels.push(FakeLabel { id: new_id(), name, color, description });
        Ok(Reply::json(201, ctx.label(repo, repo.labels.last().unwrap())))
    }

    fn add_labels(&self, repo: &mut FakeRepo, n: &str) -> Answer {
        issue(self.ctx, repo, n)?;
        let names = match self.ctx.dialect {
            Dialect::Github => self.github_label_names(repo)?,
            Dialect::Gitea => self.gitea_label_names(repo)?,
        };
        let issue = repo.issues.get_mut(&issue_number(n)).unwrap();
        for name in names {
            if !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(&name)) {
                issue.labels.push(name);
            }
        }
        issue.updated_at = Utc::now();
        Ok(Reply::ok(self.ctx.labels(repo, &repo.issues[&issue_number(n)])))
    }

    /// GitHub: names (or `{name}` objects), as `{labels: [...]}` or a bare array; labels the
    /// repository lacks are created.
    fn github_label_names(&self, repo: &mut FakeRepo) -> Result<Vec<String>, Reply> {
        let list = self.request.body.get("labels").unwrap_or(&self.request.body);
        let names: Option<Vec<&str>> =
            list.as_array().map(|l| l.iter().filter_map(|v| v.as_str().or(v["name"].as_str())).collect());
        let names =
            names.ok_or_else(|| self.ctx.validation(json!([{ "resource": "Label", "code": "invalid" }])))?;
        Ok(names.into_iter().map(|name| repo.ensure_label(name).name.clone()).collect())
    }

    /// Gitea: ids or names, not both; unknown ones are silently skipped.
    fn gitea_label_names(&self, repo: &FakeRepo) -> Result<Vec<String>, Reply> {
        let list = self.request.body.get("labels").and_then(Value::as_array).cloned().unwrap_or_default();
        let ids: Vec<u64> = list.iter().filter_map(Value::as_u64).collect();
        let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        if ids.len() + names.len() != list.len() {
            return Err(self.ctx.error(400, "a label must be an integer or a string"));
        }
        if !ids.is_empty() && !names.is_empty() {
            return Err(self.ctx.error(400, "labels should be an array of strings or integers"));
        }
        let known = repo.labels.iter().filter(|l| ids.contains(&l.id) || names.contains(&l.name.as_str()));
        Ok(known.map(|l| l.name.clone()).collect())
    }

    fn remove_label(&self, repo: &mut FakeRepo, n: &str, label: &str) -> Answer {
        let ctx = self.ctx;
        issue(ctx, repo, n)?;
        let name = match ctx.dialect {
            Dialect::Github => label.to_owned(),
            Dialect::Gitea => {
                let found = repo.labels.iter().find(|l| label.parse() == Ok(l.id));
                let label =
                    found.ok_or_else(|| ctx.error(422, &format!("label does not exist [id: {label}]")))?;
                label.name.clone()
            }
        };
        let issue = repo.issues.get_mut(&issue_number(n)).unwrap();
        let position = issue.labels.iter().position(|l| l.eq_ignore_ascii_case(&name));
        match (ctx.dialect, position) {
            (Dialect::Github, None) => return Err(ctx.error(404, "Label does not exist")),
            (_, Some(index)) => {
                issue.labels.remove(index);
                issue.updated_at = Utc::now();
            }
            (Dialect::Gitea, None) => {}
        }
        Ok(match ctx.dialect {
            Dialect::Github => Reply::ok(ctx.labels(repo, &repo.issues[&issue_number(n)])),
            Dialect::Gitea => Reply::empty(204),
        })
    }

    /// `GET issues?state=&labels=a,b` (all labels must be there); GitHub lists pull requests
    /// too, Gitea only with `type=pulls` or without `type`.
    fn list_issues(&self, repo: &FakeRepo) -> Answer {
        let state = self.request.param("state").unwrap_or("open");
        let labels: Vec<&str> = self
            .request
            .param("labels")
            .map(|l| l.split(',').filter(|l| !l.is_empty()).collect())
            .unwrap_or_default();
        let kind = match self.ctx.dialect {
            Dialect::Github => None,
            Dialect::Gitea => self.request.param("type"),
        };
        let issues = repo.issues.values().rev().filter(|i| {
            let open = i.state == IssueState::Open;
            let state_ok = state == "all" || (state == "open") == open;
            let kind_ok = match kind {
                Some("issues") => i.pull.is_none(),
                Some("pulls") => i.pull.is_some(),
                _ => true,
            };
            state_ok && kind_ok && labels.iter().all(|l| i.labels.iter().any(|have| have == l))
        });
        Ok(self.page(issues.map(|i| self.ctx.issue(repo, i)).collect()))
    }

    fn list_pulls(&self, repo: &FakeRepo) -> Answer {
        let state = self.request.param("state").unwrap_or("open");
        // GitHub ignores a `head` filter without the `owner:` part: it filters nothing.
        let head = match self.ctx.dialect {
            Dialect::Github => self.request.param("head").and_then(|h| h.split_once(':')),
            Dialect::Gitea => None,
        };
        let base = self.request.param("base");
        let pulls = repo.issues.values().rev().filter(|i| {
            let Some(pull) = &i.pull else { return false };
            let open = i.state == IssueState::Open;
            let state_ok = state == "all" || (state == "open") == open;
            let head_ok = head
                .is_none_or(|(owner, branch)| owner.eq_ignore_ascii_case(&repo.owner) && branch == pull.head);
            state_ok && head_ok && base.is_none_or(|b| b == pull.base)
        });
        Ok(self.page(pulls.map(|i| self.ctx.listed_pull(repo, i)).collect()))
    }

    fn create_pull(&self, repo: &mut FakeRepo) -> Answer {
        let request = self.request;
        let title = self.required("title")?.to_owned();
        let head = self.required("head")?;
        let base = self.required("base")?;
        let branch = match head.split_once(':') {
            Some((owner, branch)) if owner == repo.owner => branch,
            Some(_) => "",
            None => head,
        };
        self.check_new_pull(repo, branch, base)?;
        let draft = match self.ctx.dialect {
            Dialect::Github => request.body.get("draft").and_then(Value::as_bool).unwrap_or(false),
            Dialect::Gitea => title.starts_with("WIP:") || title.starts_with("[WIP]"),
        };
        let number = repo.next_number();
        let mut issue = new_issue(number, &title, request.field("body").unwrap_or_default(), &self.ctx.bot);
        issue.pull = Some(new_pull_part(repo, branch, base, draft));
        repo.issues.insert(number, issue);
        Ok(Reply::json(201, self.ctx.pull(repo, &repo.issues[&number])))
    }

    /// Refuses a pull request the forge would refuse, with the forge's status and message.
    fn check_new_pull(&self, repo: &FakeRepo, head: &str, base: &str) -> Result<(), Reply> {
        let ctx = self.ctx;
        let invalid = |field: &str| json!([{ "resource": "PullRequest", "field": field, "code": "invalid" }]);
        if ctx.dialect == Dialect::Gitea && head == base {
            return Err(
                ctx.error(422, "Invalid PullRequest: There are no changes between the head and the base")
            );
        }
        let head_tip = branch_tip(&repo.clone_url, head);
        let base_tip = branch_tip(&repo.clone_url, base);
        match (ctx.dialect, head_tip, base_tip) {
            (Dialect::Github, None, _) => return Err(ctx.validation(invalid("head"))),
            (Dialect::Github, _, None) => return Err(ctx.validation(invalid("base"))),
            (Dialect::Gitea, None, _) | (Dialect::Gitea, _, None) => return Err(ctx.not_found()),
            _ => {}
        }
        if let Some(existing) = open_pull(repo, head, base) {
            return Err(match ctx.dialect {
                Dialect::Github => {
                    let message = format!("A pull request already exists for {}:{head}.", repo.owner);
                    ctx.validation(
                        json!([{ "resource": "PullRequest", "code": "custom", "message": message }]),
                    )
                }
                Dialect::Gitea => ctx.error(409, &already_exists_message(repo, existing)),
            });
        }
        if ctx.dialect == Dialect::Github && commits_ahead(&repo.clone_url, head, base) == Some(0) {
            let message = format!("No commits between {base} and {head}");
            return Err(
                ctx.validation(json!([{ "resource": "PullRequest", "code": "custom", "message": message }]))
            );
        }
        Ok(())
    }

    fn edit_pull(&self, repo: &mut FakeRepo, n: &str) -> Answer {
        let ctx = self.ctx;
        pull(ctx, repo, n)?;
        let issue = repo.issues.get_mut(&issue_number(n)).unwrap();
        if let Some(title) = self.request.field("title").filter(|t| !t.is_empty()) {
            issue.title = title.into();
        }
        if let Some(body) = self.request.field("body") {
            issue.body = body.into();
        }
        if let Some(base) = self.request.field("base") {
            issue.pull.as_mut().unwrap().base = base.into();
        }
        match self.request.field("state") {
            Some("closed") => issue.close(),
            Some("open") => {
                issue.state = IssueState::Open;
                issue.closed_at = None;
            }
            _ => {}
        }
        issue.updated_at = Utc::now();
        // Gitea answers an edit with 201 (a known quirk of its API).
        let status = if ctx.dialect == Dialect::Gitea { 201 } else { 200 };
        Ok(Reply::json(status, ctx.pull(repo, &repo.issues[&issue_number(n)])))
    }

    fn pull_by_base_head(&self, repo: &FakeRepo, base: &str, head: &str) -> Answer {
        let branch = head.split_once(':').map_or(head, |(_, branch)| branch);
        let matching = |i: &&FakeIssue| i.pull.as_ref().is_some_and(|p| p.base == base && p.head == branch);
        let candidates: Vec<&FakeIssue> = repo.issues.values().rev().filter(matching).collect();
        let found = candidates.iter().find(|i| i.state == IssueState::Open).or(candidates.first());
        let found = found.ok_or_else(|| self.ctx.not_found())?;
        Ok(Reply::ok(self.ctx.pull(repo, found)))
    }

    /// A required string field of the body, or the forge's refusal.
    fn required(&self, name: &str) -> Result<&str, Reply> {
        self.request.field(name).ok_or_else(|| match self.ctx.dialect {
            Dialect::Github => {
                self.ctx.error(422, &format!("Invalid request.\n\n\"{name}\" wasn't supplied."))
            }
            Dialect::Gitea => self.ctx.error(422, &format!("[{name}]: Required")),
        })
    }

    /// One page of `items`, with the forge's paging parameters and headers.
    fn page(&self, items: Vec<Value>) -> Reply {
        let (size_key, default, max) = match self.ctx.dialect {
            Dialect::Github => ("per_page", 30, 100),
            Dialect::Gitea => ("limit", 30, 50),
        };
        let number = |key: &str| self.request.param(key).and_then(|v| v.parse::<usize>().ok());
        let size = number(size_key).unwrap_or(default).clamp(1, max);
        let page = number("page").unwrap_or(1).max(1);
        let total = items.len();
        let last = total.div_ceil(size).max(1);
        let shown: Vec<Value> = items.into_iter().skip((page - 1) * size).take(size).collect();
        let mut links = Vec::new();
        let mut link = |page: usize, rel: &str| {
            links.push(format!("<{}>; rel=\"{rel}\"", self.page_url(size_key, size, page)))
        };
        if page < last {
            link(page + 1, "next");
            link(last, "last");
        }
        if page > 1 {
            link(1, "first");
            link(page - 1, "prev");
        }
        let mut reply = Reply::ok(Value::Array(shown));
        if !links.is_empty() {
            reply = reply.header("link", links.join(", "));
        }
        if self.ctx.dialect == Dialect::Gitea {
            reply = reply.header("x-total-count", total);
        }
        reply
    }

    fn page_url(&self, size_key: &str, size: usize, page: usize) -> String {
        let kept = self.request.query.iter().filter(|(k, _)| k != "page" && k != size_key);
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept)
            .append_pair(size_key, &size.to_string())
            .append_pair("page", &page.to_string())
            .finish();
        format!("{}{}?{query}", self.ctx.api, self.request.path())
    }
}

/// The reactions both forges allow by default.
const REACTIONS: [&str; 8] = ["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"];

fn issue_number(n: &str) -> u64 {
    n.parse().unwrap_or(0)
}

fn issue<'r>(ctx: &Ctx, repo: &'r FakeRepo, n: &str) -> Result<&'r FakeIssue, Reply> {
    repo.issues.get(&issue_number(n)).ok_or_else(|| ctx.not_found())
}

fn issue_mut<'r>(ctx: &Ctx, repo: &'r mut FakeRepo, n: &str) -> Result<&'r mut FakeIssue, Reply> {
    repo.issues.get_mut(&issue_number(n)).ok_or_else(|| ctx.not_found())
}

fn pull<'r>(ctx: &Ctx, repo: &'r FakeRepo, n: &str) -> Result<&'r FakeIssue, Reply> {
    issue(ctx, repo, n).ok().filter(|i| i.pull.is_some()).ok_or_else(|| ctx.not_found())
}

/// The issue number and index of comment `id`.
fn find_comment(repo: &FakeRepo, id: &str) -> Option<(u64, usize)> {
    let id: u64 = id.parse().ok()?;
    repo.issues
        .values()
        .find_map(|i| i.comments.iter().position(|c| c.id == id).map(|index| (i.number, index)))
}

/// Adds `user`'s reaction unless it is there already; true when added.
fn add_reaction(reactions: &mut Vec<FakeReaction>, content: &str, user: &str) -> (bool, FakeReaction) {
    if let Some(existing) = reactions.iter().find(|r| r.content == content && r.user == user) {
        return (false, existing.clone());
    }
    let reaction =
        FakeReaction { id: new_id(), content: content.into(), user: user.into(), created_at: Utc::now() };
    reactions.push(reaction.clone());
    (true, reaction)
}

fn open_pull<'r>(repo: &'r FakeRepo, head: &str, base: &str) -> Option<&'r FakeIssue> {
    repo.issues.values().find(|i| {
        i.state == IssueState::Open && i.pull.as_ref().is_some_and(|p| p.head == head && p.base == base)
    })
}

fn already_exists_message(repo: &FakeRepo, existing: &FakeIssue) -> String {
    let pull = existing.pull.as_ref().unwrap();
    format!(
        "pull request already exists for these targets [id: {}, issue_id: {}, head_repo_id: {}, \
         base_repo_id: {}, head_branch: {}, base_branch: {}]",
        pull.id, existing.number, repo.id, repo.id, pull.head, pull.base
    )
}

/// `rrggbb` from `#rrggbb`, `rrggbb`, `#rgb` or `rgb`, lowercase.
fn normalize_color(color: &str) -> Option<String> {
    let hex = color.trim_start_matches('#');
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        6 => Some(hex.to_ascii_lowercase()),
        3 => Some(hex.chars().flat_map(|c| [c, c]).collect::<String>().to_ascii_lowercase()),
        _ => None,
    }
}

/// The legacy permission of a role: maintain → write, triage → read, owner → admin.
fn legacy_permission(role: &str) -> Option<&'static str> {
    Some(match role {
        "owner" | "admin" => "admin",
        "maintain" | "write" => "write",
        "triage" | "read" => "read",
        "none" => "none",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// Git: the bare repository behind a fake repository.
// ---------------------------------------------------------------------------------------

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

fn open_git(clone_url: &str) -> Option<git2::Repository> {
    let path = clone_url.strip_prefix("file://").unwrap_or(clone_url);
    git2::Repository::open_bare(path).or_else(|_| git2::Repository::open(path)).ok()
}

/// The commit branch `branch` points at, if the repository and the branch exist.
fn branch_tip(clone_url: &str, branch: &str) -> Option<git2::Oid> {
    let git = open_git(clone_url)?;
    let reference = git.find_reference(&format!("refs/heads/{branch}")).ok()?;
    reference.peel_to_commit().ok().map(|c| c.id())
}

/// How many commits `head` has that `base` lacks.
fn commits_ahead(clone_url: &str, head: &str, base: &str) -> Option<usize> {
    let git = open_git(clone_url)?;
    let (head, base) = (branch_tip(clone_url, head)?, branch_tip(clone_url, base)?);
    git.graph_ahead_behind(head, base).ok().map(|(ahead, _)| ahead)
}

/// The commit `git_ref` (a sha, or a branch of `repo`) names.
fn commit_of(repo: &FakeRepo, git_ref: &str) -> String {
    if git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
        return git_ref.to_owned();
    }
    branch_tip(&repo.clone_url, git_ref).map(|oid| oid.to_string()).unwrap_or_default()
}

/// A pull request's `head` with its repository: the base repository's, or its fork's.
fn with_head_repo(mut head: Value, part: &PullPart) -> Value {
    let Some(fork) = &part.fork else { return head };
    let (owner, name) = fork.split_once('/').expect("owner/name");
    let repo = &mut head["repo"];
    repo["full_name"] = json!(fork);
    repo["name"] = json!(name);
    repo["owner"]["login"] = json!(owner);
    repo["fork"] = json!(true);
    head
}

/// The sha a pull request shows for `branch`: the branch's tip now, else when opened.
fn shown_sha(repo: &FakeRepo, branch: &str, recorded: &str) -> String {
    branch_tip(&repo.clone_url, branch).map_or_else(|| recorded.to_owned(), |oid| oid.to_string())
}

/// A `file://` URL for a path; URLs pass through.
fn file_url(location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let path = std::path::absolute(location).unwrap_or_else(|_| location.into());
    format!("file://{}", path.display())
}

// ---------------------------------------------------------------------------------------
// Rendering: state as each forge's JSON.
// ---------------------------------------------------------------------------------------

/// What rendering needs besides the objects themselves.
#[derive(Debug, Clone)]
struct Ctx {
    dialect: Dialect,
    /// API base: `http://host:port` (GitHub) or `http://host:port/api/v1` (Gitea).
    api: String,
    /// Web origin, for `html_url`s.
    web: String,
    bot: String,
    site_admin: bool,
}

impl Ctx {
    fn repo_api(&self, repo: &FakeRepo) -> String {
        format!("{}/repos/{}", self.api, repo.full_name())
    }

    fn repo_html(&self, repo: &FakeRepo) -> String {
        format!("{}/{}", self.web, repo.full_name())
    }

    fn html_url(&self, repo: &FakeRepo, issue: &FakeIssue) -> String {
        let kind = match (self.dialect, issue.pull.is_some()) {
            (_, false) => "issues",
            (Dialect::Github, true) => "pull",
            (Dialect::Gitea, true) => "pulls",
        };
        format!("{}/{kind}/{}", self.repo_html(repo), issue.number)
    }

    fn error(&self, status: u16, message: &str) -> Reply {
        Reply::json(
            status,
            match self.dialect {
                Dialect::Github => {
                    json!({ "message": message, "documentation_url": "https://docs.github.com/rest" })
                }
                Dialect::Gitea => json!({ "message": message, "url": format!("{}/api/swagger", self.web) }),
            },
        )
    }

    fn not_found(&self) -> Reply {
        match self.dialect {
            Dialect::Github => self.error(404, "Not Found"),
            Dialect::Gitea => self.error(404, "The target couldn't be found."),
        }
    }

    fn unauthorized(&self, had_token: bool) -> Reply {
        match (self.dialect, had_token) {
            (Dialect::Github, _) => self.error(401, "Bad credentials"),
            (Dialect::Gitea, true) => self.error(401, "user does not exist [uid: 0, name: ]"),
            (Dialect::Gitea, false) => self.error(401, "token is required"),
        }
    }

    /// GitHub's 422 with a list of errors.
    fn validation(&self, errors: Value) -> Reply {
        let body = json!({
            "message": "Validation Failed",
            "errors": errors,
            "documentation_url": "https://docs.github.com/rest",
            "status": "422",
        });
        Reply::json(422, body)
    }

    fn current_user(&self) -> Value {
        match self.dialect {
            Dialect::Github => github::current_user(self),
            Dialect::Gitea => gitea::user(self, &self.bot),
        }
    }

    fn user(&self, login: &str) -> Value {
        match self.dialect {
            Dialect::Github => github::user(self, login),
            Dialect::Gitea => gitea::user(self, login),
        }
    }

    fn repo(&self, repo: &FakeRepo) -> Value {
        match self.dialect {
            Dialect::Github => github::repo(self, repo),
            Dialect::Gitea => gitea::repo(self, repo),
        }
    }

    fn label(&self, repo: &FakeRepo, label: &FakeLabel) -> Value {
        match self.dialect {
            Dialect::Github => github::label(self, repo, label),
            Dialect::Gitea => gitea::label(self, repo, label),
        }
    }

    /// The labels on `issue`.
    fn labels(&self, repo: &FakeRepo, issue: &FakeIssue) -> Value {
        issue_labels(repo, issue).iter().map(|l| self.label(repo, l)).collect()
    }

    fn issue(&self, repo: &FakeRepo, issue: &FakeIssue) -> Value {
        match self.dialect {
            Dialect::Github => github::issue(self, repo, issue),
            Dialect::Gitea => gitea::issue(self, repo, issue),
        }
    }

    fn comment(&self, repo: &FakeRepo, issue: &FakeIssue, comment: &FakeComment) -> Value {
        match self.dialect {
            Dialect::Github => github::comment(self, repo, issue, comment),
            Dialect::Gitea => gitea::comment(self, repo, issue, comment),
        }
    }

    fn pull(&self, repo: &FakeRepo, issue: &FakeIssue) -> Value {
        match self.dialect {
            Dialect::Github => github::pull(self, repo, issue),
            Dialect::Gitea => gitea::pull(self, repo, issue),
        }
    }

    fn review(&self, repo: &FakeRepo, issue: &FakeIssue, review: &FakeReview) -> Value {
        match self.dialect {
            Dialect::Github => github::review(self, repo, issue, review),
            Dialect::Gitea => gitea::review(self, repo, issue, review),
        }
    }

    fn review_comment(&self, repo: &FakeRepo, issue: &FakeIssue, comment: &FakeReviewComment) -> Value {
        match self.dialect {
            Dialect::Github => github::review_comment(self, repo, issue, comment),
            Dialect::Gitea => gitea::review_comment(self, repo, issue, comment),
        }
    }

    /// `GET /commits/{ref}/status`: the commit statuses on `sha` (GitHub names a state
    /// `state`, Gitea `status`).
    fn combined_status(&self, repo: &FakeRepo, sha: &str) -> Value {
        let key = if self.dialect == Dialect::Github { "state" } else { "status" };
        let statuses: Vec<Value> = repo
            .checks
            .iter()
            .filter(|c| c.sha == sha && c.status_only)
            .map(|c| {
                let mut status = json!({
                    "id": c.id,
                    "url": format!("{}/statuses/{sha}", self.repo_api(repo)),
                    "description": c.summary,
                    "target_url": format!("{}/actions/runs/{}", self.repo_html(repo), c.id),
                    "context": c.name,
                    "created_at": "2026-12-01T10:00:00Z",
                    "updated_at": "2026-12-01T10:01:00Z",
                });
                status[key] = json!(c.conclusion);
                status
            })
            .collect();
        let failed = statuses.iter().any(|s| s[key] == "failure" || s[key] == "error");
        json!({
            "state": if failed { "failure" } else { "success" },
            "sha": sha,
            "total_count": statuses.len(),
            "statuses": statuses,
            "commit_url": format!("{}/commits/{sha}", self.repo_api(repo)),
            "url": format!("{}/commits/{sha}/status", self.repo_api(repo)),
        })
    }

    /// A pull request as the forge's listing shows it: GitHub leaves out what only
    /// `GET /pulls/{n}` computes (mergeability, counts); Gitea lists the whole.
    fn listed_pull(&self, repo: &FakeRepo, issue: &FakeIssue) -> Value {
        match self.dialect {
            Dialect::Github => github::listed_pull(self, repo, issue),
            Dialect::Gitea => gitea::pull(self, repo, issue),
        }
    }

    fn reaction(&self, reaction: &FakeReaction) -> Value {
        match self.dialect {
            Dialect::Github => github::reaction(self, reaction),
            Dialect::Gitea => gitea::reaction(self, reaction),
        }
    }

    fn permission(&self, repo: &FakeRepo, login: &str) -> Value {
        let role = repo.role_of(login);
        let permission = legacy_permission(&role).unwrap_or("none");
        match self.dialect {
            Dialect::Github => github::permission(self, login, &role, permission),
            Dialect::Gitea => {
                json!({ "permission": role, "role_name": role, "user": gitea::user(self, login) })
            }
        }
    }
}

/// The labels on `issue`, as the repository defines them.
fn issue_labels<'r>(repo: &'r FakeRepo, issue: &FakeIssue) -> Vec<&'r FakeLabel> {
    issue.labels.iter().filter_map(|name| repo.label(name)).collect()
}

// ---------------------------------------------------------------------------------------
// Webhooks: what the forge would send, generated from the state.
// ---------------------------------------------------------------------------------------

/// A webhook delivery the forge would send.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub dialect: Dialect,
    /// `X-GitHub-Event` / `X-Gitea-Event`.
    pub event: String,
    /// Gitea's `X-Gitea-Event-Type`; `None` on GitHub.
    pub event_type: Option<String>,
    pub payload: Value,
}

impl Webhook {
    /// The body as the forge sends it: compact (GitHub) or indented by two spaces (Gitea).
    pub fn body(&self) -> Vec<u8> {
        match self.dialect {
            Dialect::Github => serde_json::to_vec(&self.payload).unwrap(),
            Dialect::Gitea => serde_json::to_vec_pretty(&self.payload).unwrap(),
        }
    }

    /// The delivery, signed with the harness's secret of the dialect.
    pub fn delivery(&self) -> crate::harness::Delivery {
        use crate::harness::Delivery;
        match &self.event_type {
            None => Delivery::github(&self.event, self.body()),
            Some(event_type) => Delivery::gitea(&self.event, event_type, self.body()),
        }
    }
}

/// What people do on the forge: each changes the state and returns the webhook it causes.
impl FakeForge {
    /// Opens issue `n` (see `add_issue`): `issues`/`opened`.
    pub fn open_issue(
        &self,
        repo: &str,
        n: u64,
        title: &str,
        body: &str,
        labels: &[&str],
        author: &str,
    ) -> Webhook {
        self.add_issue(repo, n, title, body, labels, author);
        self.webhook_issue(repo, n, "opened", author)
    }

    /// `sender` adds `label` (created if missing): GitHub `labeled`, Gitea `label_updated`.
    pub fn label_issue(&self, repo: &str, n: u64, label: &str, sender: &str) -> Webhook {
        self.shared.mutate(|s| {
            let name = s.repo_mut(repo).ensure_label(label).name.clone();
            let issue = s.issue_mut(repo, n);
            if !issue.labels.contains(&name) {
                issue.labels.push(name);
                issue.updated_at = Utc::now();
            }
        });
        self.webhook_issue_labeled(repo, n, label, sender)
    }

    /// `sender` removes `label`: GitHub `unlabeled`, Gitea `label_updated` or `label_cleared`.
    pub fn unlabel_issue(&self, repo: &str, n: u64, label: &str, sender: &str) -> Webhook {
        self.shared.mutate(|s| {
            let issue = s.issue_mut(repo, n);
            issue.labels.retain(|l| !l.eq_ignore_ascii_case(label));
            issue.updated_at = Utc::now();
        });
        self.webhook_issue_unlabeled(repo, n, label, sender)
    }

    /// `sender` closes issue or pull request `n`.
    pub fn close_issue(&self, repo: &str, n: u64, sender: &str) -> Webhook {
        self.set_closed(repo, n);
        self.webhook_issue(repo, n, "closed", sender)
    }

    /// `author` comments on issue or pull request `n`: `issue_comment`/`created`.
    pub fn comment_as(&self, repo: &str, n: u64, author: &str, body: &str) -> Webhook {
        let id = self.shared.mutate(|s| {
            let now = Utc::now();
            let comment = FakeComment {
                id: new_id(),
                body: body.into(),
                user: author.into(),
                created_at: now,
                updated_at: now,
                reactions: vec![],
            };
            let issue = s.issue_mut(repo, n);
            issue.comments.push(comment);
            issue.updated_at = now;
            issue.comments.last().unwrap().id
        });
        self.webhook_comment_created(repo, n, id)
    }

    /// `reviewer` submits a review of pull request `n`; `state` is `approved`,
    /// `changes_requested` or `commented`.
    pub fn review_as(&self, repo: &str, n: u64, reviewer: &str, state: &str, body: &str) -> Webhook {
        assert!(
            matches!(state, "approved" | "changes_requested" | "commented"),
            "unknown review state {state}"
        );
        let id = self.shared.mutate(|s| {
            let r = s.repo_mut(repo);
            let issue = r.issues.get(&n).unwrap_or_else(|| panic!("no pull request {n}"));
            let part = issue.pull.as_ref().unwrap_or_else(|| panic!("{n} is no pull request"));
            let review = FakeReview {
                id: new_id(),
                user: reviewer.into(),
                state: state.into(),
                body: body.into(),
                commit_id: shown_sha(r, &part.head, &part.head_sha),
                submitted_at: Utc::now(),
            };
            let id = review.id;
            r.issues.get_mut(&n).unwrap().pull.as_mut().unwrap().reviews.push(review);
            id
        });
        self.webhook_review_submitted(repo, n, id)
    }

    /// An `issues` (or, on a pull request, `pull_request`) event with `action`, from the
    /// state as it is.
    pub fn webhook_issue(&self, repo: &str, n: u64, action: &str, sender: &str) -> Webhook {
        self.hook(repo, n, |ctx, r, issue| hooks::issue(ctx, r, issue, action, None, sender))
    }

    /// `sender` labelled `n` with `label` (already on it in the state).
    pub fn webhook_issue_labeled(&self, repo: &str, n: u64, label: &str, sender: &str) -> Webhook {
        self.hook(repo, n, |ctx, r, issue| hooks::issue(ctx, r, issue, "labeled", Some(label), sender))
    }

    /// `sender` took `label` off `n` (already gone in the state).
    pub fn webhook_issue_unlabeled(&self, repo: &str, n: u64, label: &str, sender: &str) -> Webhook {
        self.hook(repo, n, |ctx, r, issue| hooks::issue(ctx, r, issue, "unlabeled", Some(label), sender))
    }

    /// Comment `comment_id` on `n` was created.
    pub fn webhook_comment_created(&self, repo: &str, n: u64, comment_id: u64) -> Webhook {
        self.hook(repo, n, |ctx, r, issue| {
            let comment = issue.comments.iter().find(|c| c.id == comment_id).expect("no such comment");
            hooks::comment(ctx, r, issue, comment)
        })
    }

    /// Check `name` ended `conclusion` on `sha` (a check run on GitHub, a commit status on
    /// Gitea, where `failure` is the state), with `log` as its Actions job log; returns the
    /// event GitHub (`check_run` completed) or Gitea (`status`) sends.
    pub fn finish_check(&self, repo: &str, sha: &str, name: &str, conclusion: &str, log: &str) -> Webhook {
        let check = FakeCheck {
            id: new_id(),
            sha: sha.into(),
            name: name.into(),
            conclusion: conclusion.into(),
            // A commit status has only its description to say why.
            summary: if self.dialect() == Dialect::Gitea {
                log.trim().to_owned()
            } else {
                format!("{name}: {conclusion}")
            },
            text: String::new(),
            log: (!log.is_empty()).then(|| log.to_owned()),
            status_only: self.dialect() == Dialect::Gitea,
        };
        let state = self.shared.lock();
        let r = state.repos.get(repo).unwrap_or_else(|| panic!("no repository {repo}"));
        let hook = hooks::check(&state.ctx(), r, &check);
        drop(state);
        self.shared.mutate(|s| s.repo_mut(repo).checks.push(check));
        hook
    }

    /// Replaces the text of issue `n`.
    pub fn set_issue_body(&self, repo: &str, n: u64, body: &str) {
        self.shared.mutate(|s| s.issue_mut(repo, n).body = body.into());
    }

    /// A file someone attached, served at `path` on the forge's web host (GitHub:
    /// `/user-attachments/assets/<id>`, Gitea: `/attachments/<uuid>`); returns its URL.
    pub fn add_attachment(&self, path: &str, bytes: &[u8], content_type: &str) -> String {
        self.shared.mutate(|s| {
            s.attachments.insert(path.into(), (bytes.to_vec(), content_type.into()));
            format!("{}{path}", s.web)
        })
    }

    /// The commit branch `branch` of `repo` points at now.
    pub fn branch_sha(&self, repo: &str, branch: &str) -> String {
        let url = self.with_state(|s| s.repos[repo].clone_url.clone());
        branch_tip(&url, branch).map(|oid| oid.to_string()).unwrap_or_default()
    }

    /// `reviewer` submits a review of pull request `n` with inline `comments` (path, line,
    /// text) beside its `body` (which may be empty).
    pub fn review_with_comments(
        &self,
        repo: &str,
        n: u64,
        reviewer: &str,
        state: &str,
        body: &str,
        comments: &[(&str, u32, &str)],
    ) -> Webhook {
        let hook = self.review_as(repo, n, reviewer, state, body);
        self.shared.mutate(|s| {
            let part = s.issue_mut(repo, n).pull.as_mut().unwrap();
            let review = part.reviews.last().unwrap().clone();
            for (path, line, text) in comments {
                part.review_comments.push(FakeReviewComment {
                    id: new_id(),
                    review_id: review.id,
                    in_reply_to: None,
                    user: reviewer.into(),
                    path: (*path).into(),
                    line: *line,
                    diff_hunk: format!("@@ -0,0 +1,{line} @@\n+{path} line {line}"),
                    body: (*text).into(),
                    commit_id: review.commit_id.clone(),
                });
            }
        });
        hook
    }

    /// The inline review comments and thread replies on pull request `n`.
    pub fn review_comments(&self, repo: &str, n: u64) -> Vec<FakeReviewComment> {
        self.with_state(|s| s.issue(repo, n).and_then(|i| i.pull.as_ref()).map(|p| p.review_comments.clone()))
            .unwrap_or_default()
    }

    /// Review `review_id` of pull request `n` was submitted.
    pub fn webhook_review_submitted(&self, repo: &str, n: u64, review_id: u64) -> Webhook {
        self.hook(repo, n, |ctx, r, issue| {
            let reviews = &issue.pull.as_ref().expect("a pull request").reviews;
            hooks::review(ctx, r, issue, reviews.iter().find(|v| v.id == review_id).expect("no such review"))
        })
    }

    fn hook(
        &self,
        repo: &str,
        n: u64,
        build: impl FnOnce(&Ctx, &FakeRepo, &FakeIssue) -> Webhook,
    ) -> Webhook {
        let state = self.shared.lock();
        let r = state.repos.get(repo).unwrap_or_else(|| panic!("no repository {repo}"));
        build(&state.ctx(), r, r.issues.get(&n).unwrap_or_else(|| panic!("no issue {n} in {repo}")))
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------------------

/// Ids for every object: unique across all fakes of the process.
fn new_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A stable id per login, so the same user looks the same everywhere.
/// The id the fake forge gives account `login`.
pub fn user_id(login: &str) -> u64 {
    let hash = login
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    hash % 90_000_000 + 10_000_000
}

fn is_bot(login: &str) -> bool {
    login.ends_with("[bot]")
}

fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `base` with the fields of `extra` added.
fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (bytes[i], hex) {
            (b'%', Some(hex)) => {
                out.push(u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap());
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
