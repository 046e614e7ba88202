//! The fake forge tested on its own: every endpoint of both dialects through plain HTTP,
//! and GitHub's answers read back with octocrab's models and client.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_forge::{Dialect, FakeForge, IssueState, TOKEN};

const REPO: &str = "acme/widgets";

/// A bare repository with `main`, `feature` (one commit ahead), `same` (= main) and
/// `forgehand/issue-1` (= feature).
struct Git {
    _dir: tempfile::TempDir,
    url: String,
}

fn bare_repo() -> Git {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("widgets.git");
    let git = git2::Repository::init_bare(&path).unwrap();
    let who = git2::Signature::now("Test", "test@example.com").unwrap();
    let tree = git.find_tree(git.treebuilder(None).unwrap().write().unwrap()).unwrap();
    let main = git.commit(Some("refs/heads/main"), &who, &who, "init", &tree, &[]).unwrap();
    let main = git.find_commit(main).unwrap();
    let feature = git.commit(Some("refs/heads/feature"), &who, &who, "work", &tree, &[&main]).unwrap();
    git.branch("same", &main, false).unwrap();
    git.reference("refs/heads/forgehand/issue-1", feature, false, "test").unwrap();
    Git { _dir: dir, url: format!("file://{}", path.display()) }
}

/// A forge with `acme/widgets` (backed by `git`), issue 1 labelled `bug` by alice.
async fn forge(dialect: Dialect, git: &Git) -> FakeForge {
    let forge = match dialect {
        Dialect::Github => FakeForge::github().await,
        Dialect::Gitea => FakeForge::gitea().await,
    };
    forge.add_repo(REPO, &git.url, "main");
    forge.add_issue(REPO, 1, "Add a --verbose flag", "Please.", &["bug"], "alice");
    forge
}

/// A client speaking to `forge` with the right token.
struct Api {
    client: reqwest::Client,
    base: String,
    auth: String,
}

impl Api {
    fn new(forge: &FakeForge) -> Api {
        let scheme = if forge.dialect() == Dialect::Github { "Bearer" } else { "token" };
        Api {
            client: reqwest::Client::new(),
            base: forge.base_url().into(),
            auth: format!("{scheme} {TOKEN}"),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).header("authorization", &self.auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = response.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, _, json) = self.send(method, path, body).await;
        (status, json)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }
}

fn names(labels: &Value) -> Vec<&str> {
    labels.as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect()
}

fn model<T: serde::de::DeserializeOwned>(json: Value) -> T {
    let text = json.to_string();
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
        .unwrap_or_else(|e| panic!("{} at {}: {text}", std::any::type_name::<T>(), e.path()))
}

#[tokio::test]
async fn github_answers_read_into_octocrab_models() {
    use octocrab::models::{Author, Label, Repository, issues, pulls, reactions};
    let git = bare_repo();
    let forge = forge(Dialect::Github, &git).await;
    forge.add_pull(REPO, 2, "Verbose flag", "feature", "main");
    let api = Api::new(&forge);

    let user: Author = model(api.get("/user").await.1);
    assert_eq!(user.login, "forgehand-bot");
    let repo: Repository = model(api.get("/repos/acme/widgets").await.1);
    assert_eq!(
        (repo.default_branch.as_deref(), repo.clone_url.unwrap().as_str()),
        (Some("main"), git.url.as_str())
    );
    let issue: issues::Issue = model(api.get("/repos/acme/widgets/issues/1").await.1);
    assert_eq!((issue.number, issue.user.login.as_str(), issue.pull_request.is_none()), (1, "alice", true));
    let label: Label = model(issue_label(&api, "bug").await);
    assert_eq!(label.name, "bug");
    let pr_issue: issues::Issue = model(api.get("/repos/acme/widgets/issues/2").await.1);
    assert!(pr_issue.pull_request.is_some());
    let pull: pulls::PullRequest = model(api.get("/repos/acme/widgets/pulls/2").await.1);
    assert_eq!((pull.head.ref_field.as_str(), pull.base.ref_field.as_str()), ("feature", "main"));
    assert_eq!(pull.head.sha.len(), 40);

    let (status, comment) =
        api.call("POST", "/repos/acme/widgets/issues/1/comments", Some(json!({"body": "hi"}))).await;
    assert_eq!(status, 201);
    let comment: issues::Comment = model(comment);
    let listed: Vec<issues::Comment> = model(api.get("/repos/acme/widgets/issues/1/comments").await.1);
    assert_eq!(listed[0].id, comment.id);
    let reaction =
        api.call("POST", "/repos/acme/widgets/issues/1/reactions", Some(json!({"content": "eyes"}))).await;
    let reaction: reactions::Reaction = model(reaction.1);
    assert_eq!(reaction.content, reactions::ReactionContent::Eyes);
}

async fn issue_label(api: &Api, name: &str) -> Value {
    api.get(&format!("/repos/acme/widgets/labels/{name}")).await.1
}

#[tokio::test]
async fn octocrab_itself_works_against_the_fake() {
    let git = bare_repo();
    let forge = forge(Dialect::Github, &git).await;
    let octocrab = octocrab::Octocrab::builder()
        .base_uri(forge.base_url())
        .unwrap()
        .personal_token(TOKEN.to_string())
        .build()
        .unwrap();
    let issues = octocrab.issues("acme", "widgets");

    assert_eq!(issues.get(1).await.unwrap().title, "Add a --verbose flag");
    let comment = issues.create_comment(1, "Working on it").await.unwrap();
    issues.update_comment(comment.id, "Done").await.unwrap();
    assert_eq!(forge.comments(REPO, 1)[0].body, "Done");
    let labels = issues.add_labels(1, &["forgehand".to_string()]).await.unwrap();
    assert_eq!(labels.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["bug", "forgehand"]);
    issues.remove_label(1, "bug").await.unwrap();
    assert_eq!(forge.labels(REPO, 1), ["forgehand"]);

    let pulls = octocrab.pulls("acme", "widgets");
    let pull = pulls.create("Verbose", "feature", "main").body("Closes #1").send().await.unwrap();
    assert_eq!(pull.number, 2);
    let found = pulls.list().head("acme:feature").state(octocrab::params::State::Open).send().await.unwrap();
    assert_eq!(found.items.len(), 1);
    let again = pulls.create("Verbose", "feature", "main").send().await.unwrap_err();
    assert!(format!("{again:?}").contains("A pull request already exists for acme:feature."), "{again:?}");
    assert_eq!(forge.pulls(REPO)[0].body, "Closes #1");
}

#[tokio::test]
async fn octocrab_cannot_read_github_permissions_with_its_own_model() {
    let git = bare_repo();
    let forge = forge(Dialect::Github, &git).await;
    forge.set_permission(REPO, "alice", "write");
    let answer = Api::new(&forge).get("/repos/acme/widgets/collaborators/alice/permission").await.1;
    // octocrab 0.54's `RepoPermission` only knows pull/push/admin/maintain/triage, while
    // GitHub answers admin/write/read/none: forgehand must read this endpoint itself.
    let typed = serde_json::from_value::<octocrab::models::repos::RepoPermission>(answer.clone());
    assert!(typed.is_err());
    assert_eq!(answer["permission"], "write");
}

#[tokio::test]
async fn github_permissions() {
    let git = bare_repo();
    let forge = forge(Dialect::Github, &git).await;
    forge.set_permission(REPO, "alice", "write");
    forge.set_permission(REPO, "carol", "triage");
    let api = Api::new(&forge);
    let permission = |user: &str| format!("/repos/acme/widgets/collaborators/{user}/permission");

    let (status, alice) = api.get(&permission("alice")).await;
    assert_eq!(
        (status, &alice["permission"], &alice["user"]["login"]),
        (200, &json!("write"), &json!("alice"))
    );
    let carol = api.get(&permission("carol")).await.1;
    assert_eq!((&carol["permission"], &carol["role_name"]), (&json!("read"), &json!("triage")));
    // Anyone may read a public repository: GitHub says `read`, not `none`.
    assert_eq!(api.get(&permission("mallory")).await.1["permission"], "read");
    assert_eq!(api.get(&permission("acme")).await.1["permission"], "admin");

    forge.set_permission(REPO, "forgehand-bot", "read");
    let (status, refusal) = api.get(&permission("alice")).await;
    assert_eq!(
        (status, refusal["message"].as_str()),
        (403, Some("Must have push access to view collaborator permission."))
    );
}

#[tokio::test]
async fn github_labels() {
    let git = bare_repo();
    let forge = forge(Dialect::Github, &git).await;
    let api = Api::new(&forge);
    let labels = "/repos/acme/widgets/labels";

    assert_eq!(api.get(&format!("{labels}/bug")).await.0, 200);
    assert_eq!(api.get(&format!("{labels}/forgehand")).await.0, 404);
    let create = json!({"name": "forgehand", "color": "5319e7", "description": "Let forgehand work"});
    let (status, label) = api.call("POST", labels, Some(create.clone())).await;
    assert_eq!((status, &label["color"]), (201, &json!("5319e7")));
    let (status, refusal) = api.call("POST", labels, Some(create)).await;
    assert_eq!((status, &refusal["errors"][0]["code"]), (422, &json!("already_exists")));
    assert_eq!(api.get(&format!("{labels}/good%20first%20issue")).await.0, 404);

    let on_issue = "/repos/acme/widgets/issues/1/labels";
    let (status, now) =
        api.call("POST", on_issue, Some(json!({"labels": ["forgehand", "good first issue"]}))).await;
    assert_eq!((status, names(&now)), (200, vec!["bug", "forgehand", "good first issue"]));
    assert_eq!(api.get(&format!("{labels}/good%20first%20issue")).await.0, 200, "created on the fly");
    let (status, left) = api.call("DELETE", &format!("{on_issue}/good%20first%20issue"), None).await;
    assert_eq!((status, names(&left)), (200, vec!["bug", "forgehand"]));
    let (status, refusal) = api.call("DELETE", &format!("{on_issue}/wontfix"), None).await;
    assert_eq!((status, &refusal["message"]), (404, &json!("Label does not exist")));
    assert_eq!(forge.labels(REPO, 1), ["bug", "forgehand"]);
}

#[tokio::test]
async fn github_comments_and_reactions() {
    let git = bare_repo();
    let forge = forge(Dialect::Github, &git).await;
    let api = Api::new(&forge);

    let (status, comment) =
        api.call("POST", "/repos/acme/widgets/issues/1/comments", Some(json!({"body": "On it"}))).await;
    assert_eq!((status, &comment["user"]["login"]), (201, &json!("forgehand-bot")));
    let id = comment["id"].as_u64().unwrap();
    let edit = format!("/repos/acme/widgets/issues/comments/{id}");
    let (status, edited) = api.call("PATCH", &edit, Some(json!({"body": "Done"}))).await;
    assert_eq!((status, &edited["body"]), (200, &json!("Done")));
    assert_eq!(
        api.call("PATCH", "/repos/acme/widgets/issues/comments/1", Some(json!({"body": "x"}))).await.0,
        404
    );
    assert_eq!(api.call("POST", "/repos/acme/widgets/issues/1/comments", Some(json!({}))).await.0, 422);
    assert_eq!(
        api.call("POST", "/repos/acme/widgets/issues/9/comments", Some(json!({"body": "x"}))).await.0,
        404
    );
    assert_eq!(forge.comments(REPO, 1).iter().map(|c| c.body.as_str()).collect::<Vec<_>>(), ["Done"]);

    let react = "/repos/acme/widgets/issues/1/reactions";
    assert_eq!(api.call("POST", react, Some(json!({"content": "rocket"}))).await.0, 201);
    assert_eq!(api.call("POST", react, Some(json!({"content": "rocket"}))).await.0, 200, "already there");
    assert_eq!(api.call("POST", react, Some(json!({"content": "party"}))).await.0, 422);
    let on_comment = format!("{edit}/reactions");
    assert_eq!(api.call("POST", &on_comment, Some(json!({"content": "+1"}))).await.0, 201);
    assert_eq!(forge.reactions(REPO, 1).len(), 1);
    assert_eq!(forge.comments(REPO, 1)[0].reactions[0].content, "+1");
}

#[tokio::test]
async fn github_pull_requests() {
    let git = bare_repo();
    let forge = forge(Dialect::Github, &git).await;
    let api = Api::new(&forge);
    let create = |head: &str, base: &str| json!({"title": "Verbose", "head": head, "base": base, "body": "Closes #1", "draft": true});

    let (status, pull) =
        api.call("POST", "/repos/acme/widgets/pulls", Some(create("forgehand/issue-1", "main"))).await;
    assert_eq!((status, &pull["number"], &pull["draft"]), (201, &json!(2), &json!(true)));
    let (status, again) =
        api.call("POST", "/repos/acme/widgets/pulls", Some(create("acme:forgehand/issue-1", "main"))).await;
    assert_eq!(status, 422);
    assert_eq!(again["errors"][0]["message"], "A pull request already exists for acme:forgehand/issue-1.");
    let (status, missing) = api.call("POST", "/repos/acme/widgets/pulls", Some(create("nope", "main"))).await;
    assert_eq!((status, &missing["errors"][0]["field"]), (422, &json!("head")));
    let (status, empty) = api.call("POST", "/repos/acme/widgets/pulls", Some(create("same", "main"))).await;
    assert_eq!((status, &empty["errors"][0]["message"]), (422, &json!("No commits between main and same")));
    assert_eq!(api.call("POST", "/repos/acme/widgets/pulls", Some(json!({"head": "feature"}))).await.0, 422);

    let list = |query: &str| format!("/repos/acme/widgets/pulls?{query}");
    assert_eq!(api.get(&list("head=acme:forgehand/issue-1")).await.1.as_array().unwrap().len(), 1);
    assert_eq!(api.get(&list("head=acme:feature")).await.1.as_array().unwrap().len(), 0);
    forge.add_pull(REPO, 3, "Other", "feature", "main");
    // Without `owner:` GitHub ignores the filter and lists every open pull request.
    assert_eq!(api.get(&list("head=feature")).await.1.as_array().unwrap().len(), 2);

    let (status, edited) = api
        .call("PATCH", "/repos/acme/widgets/pulls/2", Some(json!({"body": "Updated", "state": "closed"})))
        .await;
    assert_eq!((status, &edited["body"], &edited["state"]), (200, &json!("Updated"), &json!("closed")));
    assert_eq!(api.get(&list("head=acme:forgehand/issue-1")).await.1.as_array().unwrap().len(), 0);
    assert_eq!(api.get(&list("head=acme:forgehand/issue-1&state=all")).await.1.as_array().unwrap().len(), 1);
    assert_eq!(api.get("/repos/acme/widgets/pulls/2").await.1["state"], "closed");
    assert_eq!(api.get("/repos/acme/widgets/pulls/1").await.0, 404, "an issue is no pull request");
    let (status, _) =
        api.call("POST", "/repos/acme/widgets/pulls", Some(create("forgehand/issue-1", "main"))).await;
    assert_eq!(status, 201, "the old one is closed");
    let pulls = forge.pulls(REPO);
    assert_eq!(
        pulls.iter().map(|p| (p.number, p.state)).collect::<Vec<_>>(),
        [(2, IssueState::Closed), (3, IssueState::Open), (4, IssueState::Open)]
    );
    assert!(pulls[0].html_url.ends_with("/acme/widgets/pull/2"));
}

#[tokio::test]
async fn pull_requests_need_the_head_branch_in_the_bare_repository() {
    let git = bare_repo();
    for dialect in [Dialect::Github, Dialect::Gitea] {
        let forge = forge(dialect, &git).await;
        let api = Api::new(&forge);
        let body = json!({"title": "T", "head": "forgehand/issue-2", "base": "main"});
        let (status, _) = api.call("POST", "/repos/acme/widgets/pulls", Some(body.clone())).await;
        assert_eq!(status, if dialect == Dialect::Github { 422 } else { 404 }, "{dialect:?}");

        let repo = git2::Repository::open_bare(git.url.trim_start_matches("file://")).unwrap();
        let feature = repo.refname_to_id("refs/heads/feature").unwrap();
        repo.reference("refs/heads/forgehand/issue-2", feature, true, "push").unwrap();
        assert_eq!(api.call("POST", "/repos/acme/widgets/pulls", Some(body)).await.0, 201, "{dialect:?}");
        repo.find_reference("refs/heads/forgehand/issue-2").unwrap().delete().unwrap();
    }
}

#[tokio::test]
async fn gitea_endpoints() {
    let git = bare_repo();
    let forge = forge(Dialect::Gitea, &git).await;
    let api = Api::new(&forge);
    assert!(forge.base_url().ends_with("/api/v1"));

    let (status, user) = api.get("/user").await;
    assert_eq!(
        (status, &user["login"], &user["username"]),
        (200, &json!("forgehand-bot"), &json!("forgehand-bot"))
    );
    let repo = api.get("/repos/acme/widgets").await.1;
    assert_eq!((&repo["clone_url"], &repo["permissions"]["push"]), (&json!(git.url), &json!(true)));
    let issue = api.get("/repos/acme/widgets/issues/1").await.1;
    assert_eq!((&issue["pull_request"], names(&issue["labels"])), (&Value::Null, vec!["bug"]));

    let (status, comment) =
        api.call("POST", "/repos/acme/widgets/issues/1/comments", Some(json!({"body": "On it"}))).await;
    assert_eq!((status, &comment["issue_url"]), (201, &issue["html_url"]));
    let edit = format!("/repos/acme/widgets/issues/comments/{}", comment["id"]);
    assert_eq!(
        api.call("PATCH", &edit, Some(json!({"body": "Done"}))).await,
        (200, api.get("/repos/acme/widgets/issues/1/comments").await.1[0].clone())
    );
    assert_eq!(forge.comments(REPO, 1)[0].body, "Done");

    let react = "/repos/acme/widgets/issues/1/reactions";
    let (status, reaction) = api.call("POST", react, Some(json!({"content": "eyes"}))).await;
    assert_eq!(
        (status, &reaction["content"], &reaction["user"]["login"]),
        (201, &json!("eyes"), &json!("forgehand-bot"))
    );
    assert_eq!(api.call("POST", react, Some(json!({"content": "eyes"}))).await.0, 200);
    assert_eq!(api.call("POST", react, Some(json!({"content": "party"}))).await.0, 403);
}

#[tokio::test]
async fn gitea_labels() {
    let git = bare_repo();
    let forge = forge(Dialect::Gitea, &git).await;
    let api = Api::new(&forge);
    let labels = "/repos/acme/widgets/labels";

    let create = json!({"name": "forgehand", "color": "#5319E7", "description": "Let forgehand work"});
    let (status, label) = api.call("POST", labels, Some(create.clone())).await;
    assert_eq!((status, &label["color"]), (201, &json!("5319e7")));
    let forgehand = label["id"].as_u64().unwrap();
    // Gitea does not keep label names unique.
    assert_eq!(api.call("POST", labels, Some(create)).await.0, 201);
    assert_eq!(api.call("POST", labels, Some(json!({"name": "x", "color": "nope"}))).await.0, 422);
    let listed = api.get(labels).await.1;
    assert_eq!(names(&listed), ["bug", "forgehand", "forgehand"]);
    let bug = listed[0]["id"].as_u64().unwrap();

    let on_issue = "/repos/acme/widgets/issues/1/labels";
    let (status, now) = api.call("POST", on_issue, Some(json!({"labels": [forgehand, 424242]}))).await;
    assert_eq!((status, names(&now)), (200, vec!["bug", "forgehand"]), "unknown ids are skipped");
    assert_eq!(api.call("POST", on_issue, Some(json!({"labels": ["bug", forgehand]}))).await.0, 400);
    assert_eq!(api.call("DELETE", &format!("{on_issue}/{bug}"), None).await.0, 204);
    assert_eq!(api.call("DELETE", &format!("{on_issue}/{bug}"), None).await.0, 204, "not on the issue: fine");
    assert_eq!(api.call("DELETE", &format!("{on_issue}/424242"), None).await.0, 422);
    assert_eq!(
        api.call("POST", on_issue, Some(json!({"labels": ["bug"]}))).await.1.as_array().unwrap().len(),
        2
    );
    assert_eq!(forge.labels(REPO, 1), ["forgehand", "bug"]);
}

#[tokio::test]
async fn gitea_pull_requests() {
    let git = bare_repo();
    let forge = forge(Dialect::Gitea, &git).await;
    let api = Api::new(&forge);
    let create = |head: &str| json!({"title": "Verbose", "head": head, "base": "main", "body": "Closes #1"});

    let (status, pull) =
        api.call("POST", "/repos/acme/widgets/pulls", Some(create("forgehand/issue-1"))).await;
    assert_eq!(
        (status, &pull["number"], &pull["head"]["ref"]),
        (201, &json!(2), &json!("forgehand/issue-1"))
    );
    let (status, conflict) =
        api.call("POST", "/repos/acme/widgets/pulls", Some(create("forgehand/issue-1"))).await;
    assert_eq!(status, 409);
    assert!(
        conflict["message"].as_str().unwrap().starts_with("pull request already exists for these targets")
    );
    assert_eq!(api.call("POST", "/repos/acme/widgets/pulls", Some(create("main"))).await.0, 422);

    let (status, found) = api.get("/repos/acme/widgets/pulls/main/forgehand/issue-1").await;
    assert_eq!((status, &found["number"]), (200, &json!(2)));
    assert_eq!(api.get("/repos/acme/widgets/pulls/main/forgehand%2Fissue-1").await.1["number"], 2);
    assert_eq!(api.get("/repos/acme/widgets/pulls/main/feature").await.0, 404);
    let issue = api.get("/repos/acme/widgets/issues/2").await.1;
    assert_eq!(issue["pull_request"]["merged"], false);

    let (status, edited) =
        api.call("PATCH", "/repos/acme/widgets/pulls/2", Some(json!({"title": "Louder"}))).await;
    assert_eq!((status, &edited["title"]), (201, &json!("Louder")), "Gitea answers edits with 201");
    assert_eq!(api.get("/repos/acme/widgets/pulls?state=all").await.1.as_array().unwrap().len(), 1);
    assert_eq!(forge.pulls(REPO)[0].title, "Louder");
}

#[tokio::test]
async fn gitea_permissions_need_an_admin_bot() {
    let git = bare_repo();
    let forge = forge(Dialect::Gitea, &git).await;
    forge.set_permission(REPO, "alice", "write");
    let api = Api::new(&forge);
    let permission = |user: &str| format!("/repos/acme/widgets/collaborators/{user}/permission");

    let (status, refusal) = api.get(&permission("alice")).await;
    assert_eq!(status, 403);
    assert!(refusal["message"].as_str().unwrap().starts_with("Only admins can query all permissions"));
    let (status, own) = api.get(&permission("forgehand-bot")).await;
    assert_eq!((status, &own["permission"]), (200, &json!("write")), "its own: allowed");

    forge.set_permission(REPO, "forgehand-bot", "admin");
    let (status, alice) = api.get(&permission("alice")).await;
    assert_eq!(
        (status, &alice["permission"], &alice["role_name"], &alice["user"]["login"]),
        (200, &json!("write"), &json!("write"), &json!("alice"))
    );
    forge.set_permission(REPO, "forgehand-bot", "write");
    forge.set_site_admin(true);
    assert_eq!(api.get(&permission("alice")).await.0, 200, "site admins may ask too");
}

#[tokio::test]
async fn wrong_or_missing_tokens_are_refused() {
    let git = bare_repo();
    for dialect in [Dialect::Github, Dialect::Gitea] {
        let forge = forge(dialect, &git).await;
        let url = format!("{}/repos/acme/widgets/issues/1", forge.base_url());
        let client = reqwest::Client::new();
        let missing = client.get(&url).send().await.unwrap();
        assert_eq!(missing.status(), 401);
        let wrong = client.get(&url).header("authorization", "token nope").send().await.unwrap();
        assert_eq!(wrong.status(), 401);
        if dialect == Dialect::Github {
            assert_eq!(wrong.json::<Value>().await.unwrap()["message"], "Bad credentials");
        }
        for scheme in ["token", "Bearer"] {
            let ok =
                client.get(&url).header("authorization", format!("{scheme} {TOKEN}")).send().await.unwrap();
            assert_eq!(ok.status(), 200, "{dialect:?} {scheme}");
        }
        assert!(forge.unexpected().is_empty());
    }
}

#[tokio::test]
async fn unknown_routes_are_logged_and_fail_the_test_unless_looked_at() {
    let git = bare_repo();
    let forge = forge(Dialect::Gitea, &git).await;
    let api = Api::new(&forge);
    let (status, body) = api.get("/repos/acme/widgets/branches").await;
    assert_eq!((status, body), (404, json!({"message": "Not Found"})));
    assert_eq!(api.get("/repos/acme/nothing/issues/1").await.0, 404, "a known route: not unexpected");
    let outside =
        reqwest::get(format!("{}/repos/acme/widgets", forge.base_url().trim_end_matches("/api/v1"))).await;
    assert_eq!(outside.unwrap().status(), 404);

    let unexpected: Vec<_> = forge.unexpected().into_iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(
        unexpected,
        [
            ("GET".to_string(), "/repos/acme/widgets/branches".to_string()),
            ("GET".into(), "/repos/acme/widgets".into())
        ]
    );
    drop(forge);

    let forge = self::forge(Dialect::Github, &git).await;
    Api::new(&forge).call("PUT", "/repos/acme/widgets/issues/1/lock", None).await;
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(forge)));
    let message = *dropped.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("PUT /repos/acme/widgets/issues/1/lock"), "{message}");
}

#[tokio::test]
async fn the_request_log_keeps_method_path_body_and_status() {
    let git = bare_repo();
    let forge = forge(Dialect::Github, &git).await;
    Api::new(&forge)
        .call("POST", "/repos/acme/widgets/issues/1/comments?x=1", Some(json!({"body": "hi"})))
        .await;
    let logged = forge.requests().pop().unwrap();
    assert_eq!(
        (logged.method.as_str(), logged.path.as_str(), logged.query.as_str()),
        ("POST", "/repos/acme/widgets/issues/1/comments", "x=1")
    );
    assert_eq!(
        (logged.body, logged.status, logged.unexpected, logged.injected),
        (json!({"body": "hi"}), 201, false, false)
    );
}

#[tokio::test]
async fn lists_are_paged_like_the_forges_do() {
    let git = bare_repo();
    for dialect in [Dialect::Github, Dialect::Gitea] {
        let forge = forge(dialect, &git).await;
        let api = Api::new(&forge);
        for i in 0..35 {
            api.call("POST", "/repos/acme/widgets/issues/1/comments", Some(json!({"body": i.to_string()})))
                .await;
        }
        let (_, headers, first) = api.send("GET", "/repos/acme/widgets/issues/1/comments", None).await;
        assert_eq!(first.as_array().unwrap().len(), 30, "{dialect:?}");
        let link = headers["link"].to_str().unwrap();
        let next = link.split(';').next().unwrap().trim_matches(['<', '>']);
        let next = next.strip_prefix(forge.base_url()).unwrap();
        let second = api.get(next).await.1;
        assert_eq!(
            second.as_array().unwrap().iter().map(|c| c["body"].as_str().unwrap()).collect::<Vec<_>>(),
            ["30", "31", "32", "33", "34"]
        );
        if dialect == Dialect::Gitea {
            assert_eq!(headers["x-total-count"], "35");
        }
    }
}

#[tokio::test]
async fn injected_failures_come_first_then_the_real_answer() {
    let git = bare_repo();
    let forge = forge(Dialect::Github, &git).await;
    let api = Api::new(&forge);
    forge.fail_next("POST", "/repos/acme/widgets/pulls", 502, &[], 2);
    forge.fail_next(
        "*",
        "/repos/acme/widgets/issues",
        403,
        &[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "1700000000")],
        1,
    );
    forge.fail_next("GET", "/user", 429, &[("Retry-After", "7")], 1);

    let body = json!({"title": "T", "head": "feature", "base": "main"});
    assert_eq!(api.call("POST", "/repos/acme/widgets/pulls", Some(body.clone())).await.0, 502);
    assert_eq!(api.call("POST", "/repos/acme/widgets/pulls", Some(body.clone())).await.0, 502);
    assert!(forge.pulls(REPO).is_empty(), "a failed request changes nothing");
    assert_eq!(api.call("POST", "/repos/acme/widgets/pulls", Some(body)).await.0, 201);

    let (status, headers, limited) = api.send("GET", "/repos/acme/widgets/issues/1", None).await;
    assert_eq!(
        (status, &headers["x-ratelimit-remaining"], &headers["x-ratelimit-reset"]),
        (403, &"0".parse().unwrap(), &"1700000000".parse().unwrap())
    );
    assert!(limited["message"].as_str().unwrap().starts_with("API rate limit exceeded"));
    assert_eq!(api.get("/repos/acme/widgets/issues/1").await.0, 200);
    let (status, headers, _) = api.send("GET", "/user", None).await;
    assert_eq!((status, &headers["retry-after"]), (429, &"7".parse().unwrap()));
    assert_eq!(api.get("/user").await.0, 200);
    assert_eq!(forge.requests().iter().filter(|r| r.injected).count(), 4);
}

#[tokio::test]
async fn delays_hold_the_answer_back() {
    let git = bare_repo();
    let forge = forge(Dialect::Gitea, &git).await;
    let api = Api::new(&forge);
    forge.delay_next("GET", "/repos", Duration::from_millis(200), 1);
    let started = Instant::now();
    assert_eq!(api.get("/repos/acme/widgets").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let started = Instant::now();
    api.get("/repos/acme/widgets").await;
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn wait_until_wakes_on_each_change_without_sleeping() {
    let git = bare_repo();
    let forge = forge(Dialect::Github, &git).await;
    let api = Api::new(&forge);
    let waiter = forge.wait_until(|s| s.comments_of(REPO, 1).len() == 2, Duration::from_secs(10));
    let writer = async {
        for body in ["one", "two"] {
            api.call("POST", "/repos/acme/widgets/issues/1/comments", Some(json!({"body": body}))).await;
        }
    };
    let started = Instant::now();
    let (reached, ()) = tokio::join!(waiter, writer);
    assert!(reached && started.elapsed() < Duration::from_secs(5));
    forge.wait_for(|s| s.pulls_of(REPO).is_empty()).await;

    let started = Instant::now();
    assert!(!forge.wait_until(|s| s.comments_of(REPO, 1).len() == 3, Duration::from_millis(100)).await);
    assert!(started.elapsed() >= Duration::from_millis(100));
}

/// The paths of `fixture`'s object keys that `generated` lacks (arrays: first elements).
fn missing_keys(fixture: &Value, generated: &Value, path: &str, missing: &mut Vec<String>) {
    match (fixture, generated) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                match have.get(key) {
                    None => missing.push(format!("{path}.{key}")),
                    Some(found) => missing_keys(value, found, &format!("{path}.{key}"), missing),
                }
            }
        }
        (Value::Array(want), Value::Array(have)) if !want.is_empty() && !have.is_empty() => {
            missing_keys(&want[0], &have[0], &format!("{path}[0]"), missing);
        }
        _ => {}
    }
}

fn assert_like_fixture(path: &str, hook: &crate::fake_forge::Webhook) {
    let fixture: Value = serde_json::from_slice(&crate::harness::fixture(path)).unwrap();
    let mut missing = Vec::new();
    missing_keys(&fixture, &hook.payload, "", &mut missing);
    // Only organisations' repositories carry `organization`.
    missing.retain(|m| m != ".organization");
    assert!(missing.is_empty(), "{path}: generated payload lacks {missing:?}");
}

/// A forge with pull request 2 (by the bot) next to issue 1.
async fn forge_with_pull(dialect: Dialect, git: &Git) -> FakeForge {
    let forge = forge(dialect, git).await;
    forge.add_pull(REPO, 2, "forgehand: Add a --verbose flag (#1)", "forgehand/issue-1", "main");
    forge
}

#[tokio::test]
async fn webhooks_have_every_field_the_recorded_deliveries_have() {
    let git = bare_repo();
    let github = forge_with_pull(Dialect::Github, &git).await;
    assert_like_fixture("github/issues_labeled.json", &github.label_issue(REPO, 1, "forgehand", "alice"));
    assert_like_fixture("github/issues_unlabeled.json", &github.unlabel_issue(REPO, 1, "forgehand", "alice"));
    assert_like_fixture("github/issues_closed.json", &github.close_issue(REPO, 1, "alice"));
    assert_like_fixture(
        "github/issue_comment_issue.json",
        &github.comment_as(REPO, 1, "alice", "/forgehand go"),
    );
    assert_like_fixture(
        "github/issue_comment_pr.json",
        &github.comment_as(REPO, 2, "alice", "/forgehand more"),
    );
    let review = github.review_as(REPO, 2, "alice", "changes_requested", "Add a test");
    assert_like_fixture("github/pull_request_review.json", &review);

    let gitea = forge_with_pull(Dialect::Gitea, &git).await;
    assert_like_fixture("gitea/issues_label_updated.json", &gitea.label_issue(REPO, 1, "forgehand", "alice"));
    gitea.unlabel_issue(REPO, 1, "forgehand", "alice");
    assert_like_fixture("gitea/issues_label_cleared.json", &gitea.unlabel_issue(REPO, 1, "bug", "alice"));
    assert_like_fixture("gitea/issues_closed.json", &gitea.close_issue(REPO, 1, "alice"));
    assert_like_fixture(
        "gitea/issue_comment_issue.json",
        &gitea.comment_as(REPO, 1, "alice", "/forgehand go"),
    );
    assert_like_fixture(
        "gitea/issue_comment_pr.json",
        &gitea.comment_as(REPO, 2, "alice", "/forgehand more"),
    );
    let review = gitea.review_as(REPO, 2, "alice", "changes_requested", "Add a test");
    assert_like_fixture("gitea/pull_request_rejected.json", &review);
}

#[tokio::test]
async fn webhooks_read_back_through_forgehands_parser() {
    use forgehand::config::ForgeKind;
    use forgehand::forge::event::{ForgeEvent, IssueChange, ReviewVerdict};
    use forgehand::forge::payload::parse;

    let git = bare_repo();
    for (dialect, kind) in [(Dialect::Github, ForgeKind::Github), (Dialect::Gitea, ForgeKind::Gitea)] {
        let forge = forge_with_pull(dialect, &git).await;
        let read = |hook: crate::fake_forge::Webhook| parse(kind, &hook.event, &hook.body()).unwrap();

        let labeled = read(forge.label_issue(REPO, 1, "forgehand", "alice"));
        assert_eq!(labeled.label_present_after("forgehand"), Some(true), "{dialect:?}");
        let ForgeEvent::Issue { change, issue, repo, sender, .. } = labeled else { panic!("{dialect:?}") };
        let expected = if dialect == Dialect::Github {
            IssueChange::Labeled("forgehand".into())
        } else {
            IssueChange::LabelsUpdated
        };
        assert_eq!(
            (change, issue.number.get(), issue.labels),
            (expected, 1, vec!["bug".into(), "forgehand".into()])
        );
        assert_eq!(
            (repo.full_name.as_str(), repo.clone_url.as_str(), sender.login.as_str()),
            (REPO, git.url.as_str(), "alice")
        );

        let unlabeled = read(forge.unlabel_issue(REPO, 1, "forgehand", "alice"));
        assert_eq!(unlabeled.label_present_after("forgehand"), Some(false), "{dialect:?}");

        let ForgeEvent::Comment { issue, body, comment_id, .. } =
            read(forge.comment_as(REPO, 2, "alice", "/forgehand louder"))
        else {
            panic!("{dialect:?}")
        };
        assert!(issue.is_pull_request && body == "/forgehand louder" && comment_id.is_some(), "{dialect:?}");
        assert_eq!(forge.comments(REPO, 2)[0].id, comment_id.unwrap());

        for (state, verdict) in [
            ("approved", ReviewVerdict::Approved),
            ("changes_requested", ReviewVerdict::ChangesRequested),
            ("commented", ReviewVerdict::Commented),
        ] {
            let ForgeEvent::Review { verdict: got, head_ref, pr_number, action, .. } =
                read(forge.review_as(REPO, 2, "alice", state, "Hm"))
            else {
                panic!("{dialect:?} {state}")
            };
            assert_eq!(
                (got, head_ref.as_str(), pr_number.get(), action.as_str()),
                (verdict, "forgehand/issue-1", 2, "submitted")
            );
        }
        let ForgeEvent::Issue { change, issue, .. } = read(forge.close_issue(REPO, 1, "alice")) else {
            panic!()
        };
        assert_eq!((change, issue.is_open), (IssueChange::Closed, false));
        let ForgeEvent::Issue { change, issue, .. } =
            read(forge.open_issue(REPO, 7, "New", "", &["forgehand"], "bob"))
        else {
            panic!()
        };
        assert_eq!((change, issue.labels), (IssueChange::Opened, vec!["forgehand".to_string()]));
    }
}

#[tokio::test]
async fn webhooks_are_accepted_by_the_real_router() {
    use crate::harness::TestApp;
    let git = bare_repo();
    let (github, gitea) = (forge(Dialect::Github, &git).await, forge(Dialect::Gitea, &git).await);
    let app = TestApp::spawn_with(&(github.config_toml("fakehub") + &gitea.config_toml("fakegitea"))).await;
    for (forge, name) in [(&github, "fakehub"), (&gitea, "fakegitea")] {
        let answer = app.deliver(name, forge.label_issue(REPO, 1, "forgehand", "alice").delivery()).await;
        assert_eq!(answer.status, 202, "{name}: {}", answer.text);
        let ignored =
            app.deliver(name, forge.comment_as(REPO, 1, "forgehand-bot", "/forgehand hi").delivery()).await;
        assert_eq!((ignored.status, ignored.outcome()), (200, "ignored"), "{name}: the bot's own comment");
    }
    let tasks = app.tasks().await;
    let mut forges: Vec<_> =
        tasks.iter().filter(|t| t.repo == REPO && t.number == 1).map(|t| t.forge.as_str()).collect();
    forges.sort();
    assert_eq!(forges, ["fakegitea", "fakehub"]);
}

#[tokio::test]
async fn gitea_has_no_post_alias_for_patch() {
    let git = bare_repo();
    let forge = forge(Dialect::Gitea, &git).await;
    let api = Api::new(&forge);
    let comment =
        api.call("POST", "/repos/acme/widgets/issues/1/comments", Some(json!({"body": "x"}))).await.1;
    let path = format!("/repos/acme/widgets/issues/comments/{}", comment["id"]);
    assert_eq!(api.call("POST", &path, Some(json!({"body": "y"}))).await.0, 404);
    assert_eq!(forge.unexpected().len(), 1);
    assert_eq!(forge.comments(REPO, 1)[0].body, "x");
}
