//! forgehand as a GitHub App: JWTs the fake GitHub checks against the App's public key,
//! one installation token per installation, renewed before it expires and when refused,
//! and a whole task run through the App.

use forgehand::config::{ForgeKind, ForgeSettings};
use forgehand::forge::client::{ErrorKind, Forge, connect};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::executor::{BRANCH, Setup, World};
use crate::fake_forge::{Dialect, FakeForge, app::app_key};
use crate::harness::{Delivery, edited};

const ONE: &str = "octo-org/one";
const TWO: &str = "octo-org/two";

/// A fake GitHub where App 4242 is installed on `one` (installation 1) and `two` (2), and
/// a client connected to it as the App with `pem` (the App's own key when `None`).
async fn installed(pem: Option<String>) -> (FakeForge, std::sync::Arc<dyn Forge>) {
    let forge = FakeForge::github().await;
    forge.enable_app(4242, "forgehand-app", &[(ONE, 1), (TWO, 2)]);
    for repo in [ONE, TWO, "octo-org/elsewhere"] {
        forge.add_repo(repo, "file:///nowhere", "main");
        forge.add_issue(repo, 1, "An issue", "", &[], "alice");
    }
    let pem = pem.unwrap_or_else(|| forge.with_app(|app| app.private_key_pem.clone()));
    let settings = ForgeSettings {
        name: "github".into(),
        kind: ForgeKind::Github,
        api_url: forge.base_url().into(),
        token: String::new().into(),
        webhook_secret: Default::default(),
        bot_login: String::new(),
        app_id: Some(4242),
        private_key: pem.into(),
    };
    let client = connect(&settings).unwrap();
    (forge, client)
}

fn installation_calls(forge: &FakeForge) -> Vec<(String, String)> {
    forge.with_app(|app| app.calls.iter().filter(|(_, by)| by != "jwt").cloned().collect())
}

#[tokio::test]
async fn each_repository_is_called_with_its_installations_token() {
    let (forge, client) = installed(None).await;
    assert_eq!(client.current_login().await.unwrap(), "forgehand-app[bot]");
    client.issue(&ONE.into(), 1.into()).await.unwrap();
    client.issue(&TWO.into(), 1.into()).await.unwrap();
    client.issue(&ONE.into(), 1.into()).await.unwrap();

    assert_eq!(
        installation_calls(&forge),
        [
            ("/repos/octo-org/one/issues/1".to_owned(), "installation 1".to_owned()),
            ("/repos/octo-org/two/issues/1".into(), "installation 2".into()),
            ("/repos/octo-org/one/issues/1".into(), "installation 1".into()),
        ]
    );
    let issued = forge.with_app(|app| app.issued.clone());
    assert_eq!(issued.len(), 2, "one token per installation, kept while it lives: {issued:?}");
    let push_token = client.git_token(&TWO.into()).await.unwrap().expect("an App pushes with its token");
    assert_eq!(push_token.expose_secret(), issued[1].token, "git pushes to two with installation 2's token");
    let jwt_calls = forge.with_app(|app| app.calls.iter().filter(|(_, by)| by == "jwt").count());
    assert_eq!(jwt_calls, 5, "/app, two installation look-ups, two tokens: each with a JWT");
}

#[tokio::test]
async fn an_enterprise_server_api_url_with_a_path_serves_the_app_too() {
    let forge = FakeForge::github_enterprise().await;
    forge.enable_app(4242, "forgehand-app", &[(ONE, 1)]);
    forge.add_repo(ONE, "file:///nowhere", "main");
    forge.add_issue(ONE, 1, "An issue", "", &[], "alice");
    assert!(forge.base_url().ends_with("/api/v3"));
    let settings = ForgeSettings {
        name: "ghe".into(),
        kind: ForgeKind::Github,
        api_url: forge.base_url().into(),
        token: String::new().into(),
        webhook_secret: Default::default(),
        bot_login: String::new(),
        app_id: Some(4242),
        private_key: forge.with_app(|app| app.private_key_pem.clone()).into(),
    };
    let client = connect(&settings).unwrap();
    assert_eq!(client.current_login().await.unwrap(), "forgehand-app[bot]");
    client.issue(&ONE.into(), 1.into()).await.unwrap();
    assert!(client.git_token(&ONE.into()).await.unwrap().is_some());
    assert_eq!(client.installed_repos().await.unwrap().unwrap(), [forgehand::config::RepoName::from(ONE)]);
    assert!(forge.unexpected().is_empty(), "calls outside /api/v3: {:?}", forge.unexpected());
    assert!(
        installation_calls(&forge)
            .contains(&("/repos/octo-org/one/issues/1".to_owned(), "installation 1".to_owned()))
    );
}

#[tokio::test]
async fn a_key_that_is_not_the_apps_gets_no_token() {
    let (other_key, _) = app_key();
    let (forge, client) = installed(Some(other_key)).await;
    let err = client.issue(&ONE.into(), 1.into()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    assert!(
        err.to_string().contains("GitHub refused the App's JWT (401); check app_id and that private_key"),
        "{err}"
    );
    assert!(forge.with_app(|app| app.issued.is_empty()));
}

#[tokio::test]
async fn a_repository_the_app_is_not_installed_on_says_so() {
    let (_forge, client) = installed(None).await;
    let err = client.issue(&"octo-org/elsewhere".into(), 1.into()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(
        err.to_string().contains("the GitHub App is not installed on octo-org/elsewhere; install it"),
        "{err}"
    );
}

#[tokio::test]
async fn a_token_refused_mid_task_is_replaced_and_the_call_goes_through() {
    let (forge, client) = installed(None).await;
    client.issue(&ONE.into(), 1.into()).await.unwrap();
    forge.with_app(|app| app.revoke_all());
    client.issue(&ONE.into(), 1.into()).await.expect("renewed after the 401");
    let issued = forge.with_app(|app| app.issued.clone());
    assert_eq!(issued.len(), 2, "{issued:?}");
    let calls = installation_calls(&forge);
    assert_eq!(calls.len(), 3, "the refused call, then the same call with the new token: {calls:?}");
}

#[tokio::test]
async fn a_token_about_to_expire_is_renewed_before_it_is_used() {
    let (forge, client) = installed(None).await;
    // Less than the five minutes forgehand wants left: never reused.
    forge.with_app(|app| app.token_ttl = chrono::Duration::minutes(4));
    client.issue(&ONE.into(), 1.into()).await.unwrap();
    client.issue(&ONE.into(), 1.into()).await.unwrap();
    assert_eq!(forge.with_app(|app| app.issued.len()), 2);
    forge.with_app(|app| app.token_ttl = chrono::Duration::hours(1));
    client.issue(&ONE.into(), 1.into()).await.unwrap();
    client.issue(&ONE.into(), 1.into()).await.unwrap();
    assert_eq!(forge.with_app(|app| app.issued.len()), 3, "a token with an hour left is kept");
}

#[tokio::test]
async fn a_labelled_issue_becomes_a_pull_request_through_the_app() {
    let mut setup = Setup::new(Dialect::Github);
    (setup.app, setup.git_http) = (true, true);
    let world = World::start(setup).await;
    let id = world.deliver_label().await;
    let task = world.finished(id).await;
    assert_eq!(task.status, "done", "{task:?}");
    assert_eq!(world.forge.pulls(world.repo).len(), 1);
    assert!(
        crate::executor::remote_file(&world.remote, crate::executor::BRANCH, "FORGEHAND_DEMO.md").is_some()
    );

    // The fetch and the push went with installation 77's tokens, as GitHub's git expects.
    let issued = world.forge.with_app(|app| app.issued.clone());
    let used = world.git_http.as_ref().unwrap().credentials();
    assert!(!used.is_empty());
    for (user, password) in &used {
        assert_eq!(user, "x-access-token");
        assert!(
            issued.iter().any(|t| &t.token == password && t.installation == 77),
            "{password} was not issued"
        );
    }
    // No token was written anywhere under data_dir (checkouts' git config, the database, logs).
    let data = world.app.config_path().parent().unwrap().join("data");
    for token in &issued {
        assert_eq!(files_containing(&data, token.token.as_bytes()), Vec::<std::path::PathBuf>::new());
    }
    let calls = installation_calls(&world.forge);
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|(_, by)| by == "installation 77"), "{calls:?}");
    assert!(world.forge.unexpected().is_empty(), "{:?}", world.forge.unexpected());

    // The App's bot account is forgehand's own: its label changes start nothing.
    let own = edited("github/issues_labeled.json", "/sender/login", json!("forgehand-app[bot]"));
    let answer = world.deliver(Delivery::github("issues", own)).await;
    assert!(answer.json["reason"].as_str().unwrap_or_default().contains("own account"), "{}", answer.text);

    // The App's installation events come through the same webhook and are recorded.
    let added = json!({
        "action": "added",
        "installation": { "id": 77, "account": { "login": "octo-org", "id": 1, "type": "Organization" } },
        "repository_selection": "selected",
        "repositories_added": [{ "id": 2, "name": "two", "full_name": "octo-org/two", "private": false }],
        "repositories_removed": [],
        "sender": { "login": "alice", "id": 583231, "type": "User" },
    });
    let delivery = Delivery::github("installation_repositories", serde_json::to_vec(&added).unwrap());
    let answer = world.deliver(delivery).await;
    assert_eq!(answer.outcome(), "ignored", "{}", answer.text);
    assert!(
        answer.json["reason"].as_str().unwrap_or_default().contains("the GitHub App's installations changed"),
        "{}",
        answer.text
    );
    let deliveries = world.app.deliveries().await;
    assert!(deliveries.iter().any(|d| d.event == "installation_repositories"), "{deliveries:?}");
}

#[tokio::test]
async fn a_token_that_runs_out_during_the_agents_run_is_renewed_before_the_push() {
    let mut setup = Setup::new(Dialect::Github);
    (setup.app, setup.git_http, setup.hold_ms) = (true, true, 4000);
    let world = World::start(setup).await;
    // Fresh enough for forgehand (more than five minutes left) for three seconds only:
    // the token the fetch used is too old by the time the agent is done.
    world.forge.with_app(|app| app.token_ttl = chrono::Duration::seconds(5 * 60 + 3));
    let id = world.deliver_label().await;
    assert_eq!(world.finished(id).await.status, "done");

    let used = world.git_http.as_ref().unwrap().credentials();
    let (first, last) = (&used.first().unwrap().1, &used.last().unwrap().1);
    assert_ne!(first, last, "the push asked for a new token: {used:?}");
    let issued = world.forge.with_app(|app| app.issued.clone());
    for token in [first, last] {
        assert!(issued.iter().any(|t| &t.token == token && t.installation == 77), "{token} was not issued");
    }
    assert!(
        crate::executor::remote_file(&world.remote, crate::executor::BRANCH, "FORGEHAND_DEMO.md").is_some()
    );
}

#[tokio::test]
async fn attachments_are_fetched_with_the_installation_token_of_the_tasks_repository() {
    let mut setup = Setup::new(Dialect::Github);
    setup.app = true;
    let world = World::start(setup).await;
    let path = "/user-attachments/assets/5c1e-shot";
    let shot = world.forge.add_attachment(path, &[7u8; 100], "image/png");
    world.forge.set_issue_body(world.repo, 42, &format!("The CLI needs --verbose.\n\n![screenshot]({shot})"));
    let id = world.deliver_label().await;
    assert_eq!(world.finished(id).await.status, "done");

    let fetched: Vec<u16> =
        world.forge.requests().iter().filter(|r| r.path == path).map(|r| r.status).collect();
    assert_eq!(fetched, [200], "the fake serves it only with a live installation token");
    let by =
        world.forge.with_app(|app| app.calls.iter().filter(|(p, _)| p == path).cloned().collect::<Vec<_>>());
    assert_eq!(by, [(path.to_owned(), "installation 77".to_owned())]);
}

#[tokio::test]
async fn installation_events_move_a_repository_to_its_new_installation_at_once() {
    let mut setup = Setup::new(Dialect::Github);
    setup.app = true;
    let world = World::start(setup).await;
    let id = world.deliver_label().await;
    assert_eq!(world.finished(id).await.status, "done");
    assert!(world.forge.with_app(|app| app.issued.iter().all(|t| t.installation == 77)));

    // The App is uninstalled (GitHub revokes installation 77's tokens) and installed again
    // as installation 78. forgehand still holds a token of 77 and knows the repository as
    // 77's: only the events tell it otherwise.
    let repo = world.repo;
    world.forge.with_app(|app| {
        app.installations.insert(repo.to_owned(), 78);
        app.revoke_all();
    });
    let seen = world.forge.with_app(|app| app.calls.len());
    let installation = |action: &str, id: u64| {
        let body = json!({
            "action": action,
            "installation": { "id": id, "account": { "login": "octo-org", "id": 1, "type": "Organization" } },
            "repositories": [{ "id": 2, "name": "hello-world", "full_name": repo, "private": false }],
            "sender": { "login": "alice", "id": 583231, "type": "User" },
        });
        Delivery::github("installation", serde_json::to_vec(&body).unwrap())
    };
    for (action, id) in [("deleted", 77), ("created", 78)] {
        let answer = world.deliver(installation(action, id)).await;
        assert_eq!(answer.outcome(), "ignored", "{}", answer.text);
        let reason = answer.json["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("forgehand updated which installation holds which repository"), "{reason}");
    }

    world.forge.add_issue(repo, 43, "Another one", "More.", &["forgehand"], "alice");
    let labeled = edited("github/issues_labeled.json", "/issue/number", json!(43));
    let answer = world.deliver(Delivery::github("issues", labeled)).await;
    let second = answer.json["task_id"].as_i64().unwrap_or_else(|| panic!("{}", answer.text));
    let task = world.finished(second).await;
    assert_eq!(task.status, "done", "{task:?}");
    let after: Vec<(String, String)> = world.forge.with_app(|app| app.calls[seen..].to_vec());
    let by_token: Vec<&(String, String)> = after.iter().filter(|(_, by)| by != "jwt").collect();
    assert!(!by_token.is_empty());
    assert!(by_token.iter().all(|(_, by)| by == "installation 78"), "a stale token was tried: {after:?}");
    assert!(
        after.iter().all(|(path, _)| path != "/app/installations/77/access_tokens"),
        "the deleted installation was asked for a token: {after:?}"
    );
}

#[tokio::test]
async fn the_sweep_covers_every_installed_repository_when_trigger_repos_is_empty() {
    use forgehand::executor::{Executor, sweep};
    let forge = FakeForge::github().await;
    forge.enable_app(4242, "forgehand-app", &[(ONE, 1), (TWO, 2)]);
    for repo in [ONE, TWO, "octo-org/elsewhere"] {
        forge.add_repo(repo, "file:///nowhere", "main");
        forge.add_issue(repo, 1, "Missed", "", &["forgehand"], "bob");
    }
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"{}\"\n{}\n[server]\nlisten = \"127.0.0.1:0\"\n[auth]\nadmin_token = \"{}\"\n\
         [executor]\nenabled = false\n{}",
        dir.path().join("data").display(),
        crate::harness::database_section().await,
        crate::harness::ADMIN_TOKEN,
        forge.config_toml("github")
    );
    let path = dir.path().join("sweep.toml");
    std::fs::write(&path, &text).unwrap();
    let settings = forgehand::config::Settings::load_with_env(Some(&path), Default::default()).unwrap();
    let app = crate::harness::TestApp::spawn_config(tempfile::tempdir().unwrap(), &text).await;
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let executor = Executor::new(settings, app.db.clone(), notify).unwrap();

    // No delivery ever named a repository: only the installations say where to look.
    assert_eq!(sweep::sweep_once(executor.context()).await, 2);
    let mut swept: Vec<String> = app.tasks().await.into_iter().map(|t| t.repo).collect();
    swept.sort();
    assert_eq!(swept, [ONE, TWO], "the repository the App is not installed on is left alone");
}

#[tokio::test]
async fn app_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("forgehand.toml");
    let text = crate::harness::config_text(&dir.path().join("data"), "").await;
    let pem_file = dir.path().join("app.pem");
    std::fs::write(&pem_file, app_key().0).unwrap();
    let app = |extra: &str| {
        format!(
            "{text}\n[[forges]]\nname = \"app\"\nkind = \"github\"\napi_url = \"https://api.github.com\"\n{extra}\n"
        )
    };
    let load = |toml: String| {
        std::fs::write(&config, toml).unwrap();
        forgehand::config::Settings::load_with_env(Some(&config), Default::default())
    };
    let settings = load(app(&format!("app_id = 1\nprivate_key = \"{}\"", pem_file.display()))).unwrap();
    assert!(
        settings.forge("app").unwrap().app_private_key().unwrap().expose_secret().contains("PRIVATE KEY")
    );
    for (extra, said) in [
        (
            "app_id = 1\nprivate_key = \"/no/such.pem\"",
            "private_key: cannot read the private key file /no/such.pem",
        ),
        ("app_id = 1\nprivate_key = \"-----BEGIN oops\"", "not a PEM private key"),
        (
            "app_id = 1\ntoken = \"t\"\nprivate_key = \"x\"",
            "set either token or app_id and private_key, not both",
        ),
        ("private_key = \"x\"", "set app_id too"),
    ] {
        let err = load(app(extra)).unwrap_err().to_string();
        assert!(err.contains(said), "{extra}: {err}");
        assert!(!err.contains("oops"), "a key is never echoed: {err}");
    }
}

#[tokio::test]
async fn doctor_checks_the_jwt_the_installations_and_a_token_for_the_repository() {
    let (forge, _client) = installed(None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("forgehand.toml");
    let text = format!(
        "data_dir = \"{}\"\n{}\n[agent]\ncommand = \"true\"\n{}",
        dir.path().join("data").display(),
        crate::harness::database_section().await,
        forge.config_toml("github")
    );
    std::fs::write(&config, text).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_forgehand"))
        .args(["--config", config.to_str().unwrap(), "doctor", "--skip-agent-run"])
        .args(["--repo", ONE, "--repo", "octo-org/elsewhere"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let api = forge.base_url();
    for expected in [
        format!("OK   forge github ({api}): the App's JWT works; its account is forgehand-app[bot]"),
        "OK   forge github: the App is installed on 2 repositories (octo-org/one, octo-org/two)".into(),
        "OK   forge github: an installation token for octo-org/one was issued (contents: write, issues: write, \
         metadata: read, pull_requests: write)"
            .into(),
        "FAIL forge github: no installation token for octo-org/elsewhere: The App forgehand-app[bot] is installed \
         (2 installations) but not on octo-org/elsewhere"
            .into(),
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(&expected)), "no {expected:?} in\n{stdout}");
    }
    let issued = forge.with_app(|app| app.issued.clone());
    assert!(issued.iter().all(|t| !stdout.contains(&t.token)), "a token was printed:\n{stdout}");
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)) {
            found.push(path);
        }
    }
    found
}

/// What the agent does in the API commit tests: modifies, deletes, adds a file, an
/// executable, a link and a nested file (and, through FAKE_CLAUDE_BLOB_KB, binary blob.bin).
const CHANGES: &str = ", FAKE_CLAUDE_BLOB_KB = '300', FAKE_CLAUDE_SHELL = 'printf \"changed\\n\" > README.md && rm -f OLD.txt && printf \"#!/bin/sh\\necho hi\\n\" > run.sh && chmod +x run.sh && ln -sf README.md link && mkdir -p src/deep && echo x > src/deep/new.rs'";

/// A world whose remote's `main` also holds OLD.txt, for the agent to delete.
async fn api_world(git_extra: &str) -> World {
    api_world_with(git_extra, CHANGES).await
}

async fn api_world_with(git_extra: &str, agent_env: &str) -> World {
    let mut setup = Setup::new(Dialect::Github);
    (setup.app, setup.git_http) = (true, true);
    setup.agent_env = agent_env.into();
    setup.git_extra = git_extra.into();
    setup.seed = Some(|remote| {
        let repo = git2::Repository::open_bare(remote).unwrap();
        let main = repo.find_reference("refs/heads/main").unwrap().peel_to_commit().unwrap();
        let mut tree = repo.treebuilder(Some(&main.tree().unwrap())).unwrap();
        tree.insert("OLD.txt", repo.blob(b"old\n").unwrap(), 0o100644).unwrap();
        let tree = repo.find_tree(tree.write().unwrap()).unwrap();
        let sig = git2::Signature::now("upstream", "upstream@test").unwrap();
        repo.commit(Some("refs/heads/main"), &sig, &sig, "add OLD.txt", &tree, &[&main]).unwrap();
    });
    World::start(setup).await
}

fn branch_commit<'r>(repo: &'r git2::Repository, branch: &str) -> git2::Commit<'r> {
    repo.find_reference(&format!("refs/heads/{branch}")).unwrap().peel_to_commit().unwrap()
}

#[tokio::test]
async fn an_apps_commits_are_made_through_the_api_so_that_github_signs_them() {
    let world = api_world("").await;
    let id = world.deliver_label().await;
    let task = world.finished(id).await;
    assert_eq!(task.status, "done", "{task:?}");
    assert_eq!(world.forge.pulls(world.repo).len(), 1);

    let repo = git2::Repository::open_bare(&world.remote).unwrap();
    let (head, main) = (branch_commit(&repo, BRANCH), branch_commit(&repo, "main"));
    let signed = world.forge.signed_commits(world.repo);
    assert!(signed.contains(&head.id().to_string()), "{} not made through the API: {signed:?}", head.id());
    assert_eq!(head.parent_ids().collect::<Vec<_>>(), vec![main.id()], "one commit, on the base");
    assert_eq!(head.author().name().ok(), Some("forgehand-app[bot]"), "GitHub's account, not [git]'s");
    let message = head.message().unwrap();
    assert!(message.contains(&format!("forgehand-task: {id}")), "{message}");
    assert!(message.contains("Co-authored-by: alice"), "{message}");
    assert_eq!(task.pushed_sha.as_deref(), Some(head.id().to_string().as_str()));

    // The tree is what the agent left.
    let tree = head.tree().unwrap();
    let file = |path: &str| tree.get_path(std::path::Path::new(path)).ok();
    let content = |path: &str| repo.find_blob(file(path).unwrap().id()).unwrap().content().to_vec();
    assert_eq!(content("README.md"), b"changed\n");
    assert!(file("OLD.txt").is_none(), "deleted");
    assert_eq!(file("run.sh").unwrap().filemode(), 0o100755);
    assert_eq!(content("run.sh"), b"#!/bin/sh\necho hi\n");
    assert_eq!(file("link").unwrap().filemode(), 0o120000);
    assert_eq!(content("link"), b"README.md");
    assert_eq!(content("src/deep/new.rs"), b"x\n");
    assert_eq!(content("blob.bin").len(), 300 * 1024, "a binary file, base64 on the way");
    assert!(file("FORGEHAND_DEMO.md").is_some());
    let uploads = world.forge.requests().into_iter().filter(|r| r.path.ends_with("/git/blobs")).count();
    assert_eq!(uploads, 1, "only the binary file is uploaded; text goes inside the tree request");
    assert!(world.forge.unexpected().is_empty(), "{:?}", world.forge.unexpected());

    // A review's follow-up builds on the commit the API made, and is made the same way.
    let pull = world.forge.pulls(world.repo).remove(0);
    let mut review: serde_json::Value =
        serde_json::from_slice(&crate::harness::fixture("github/pull_request_review.json")).unwrap();
    review["pull_request"]["number"] = json!(pull.number);
    review["pull_request"]["head"]["ref"] = json!(BRANCH);
    let answer =
        world.deliver(Delivery::github("pull_request_review", serde_json::to_vec(&review).unwrap())).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let follow_up = world.finished(answer.json["task_id"].as_i64().unwrap()).await;
    assert_eq!(follow_up.status, "done", "{follow_up:?}");
    let second = branch_commit(&repo, BRANCH);
    assert_ne!(second.id(), head.id());
    assert_eq!(second.parent_ids().collect::<Vec<_>>(), vec![head.id()], "on the API's commit");
    assert!(world.forge.signed_commits(world.repo).contains(&second.id().to_string()));
}

#[tokio::test]
async fn commit_via_api_never_keeps_the_git_push() {
    let world = api_world("commit_via_api = \"never\"").await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!(task.status, "done", "{task:?}");
    let repo = git2::Repository::open_bare(&world.remote).unwrap();
    let head = branch_commit(&repo, BRANCH);
    assert_eq!(head.author().name().ok(), Some("forgehand-test"), "pushed as [git] says");
    assert!(world.forge.signed_commits(world.repo).is_empty());
    assert!(!world.forge.requests().iter().any(|r| r.path.contains("/git/")));
}

#[tokio::test]
async fn the_agents_own_commits_are_made_again_in_order_through_the_api() {
    let shell = ", FAKE_CLAUDE_SHELL = 'git add -A && git commit -qm \"agent: first step\" && printf \"more\\n\" > more.txt'";
    let world = api_world_with("", shell).await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!(task.status, "done", "{task:?}");
    let repo = git2::Repository::open_bare(&world.remote).unwrap();
    let (head, main) = (branch_commit(&repo, BRANCH), branch_commit(&repo, "main"));
    let first = head.parent(0).unwrap();
    assert_eq!(first.message().ok().map(str::trim_end), Some("agent: first step"));
    assert_eq!(first.parent_ids().collect::<Vec<_>>(), vec![main.id()]);
    assert!(first.tree().unwrap().get_name("FORGEHAND_DEMO.md").is_some());
    assert!(first.tree().unwrap().get_name("more.txt").is_none());
    assert!(head.message().unwrap().contains(&format!("forgehand-task: {}", task.id)));
    assert!(head.tree().unwrap().get_name("more.txt").is_some());
    let signed = world.forge.signed_commits(world.repo);
    assert!(
        signed.contains(&head.id().to_string()) && signed.contains(&first.id().to_string()),
        "{signed:?}"
    );
}

#[tokio::test]
async fn a_refused_upload_fails_the_task_naming_the_file_and_what_github_said() {
    let world = api_world("").await;
    world.forge.fail_next("POST", &format!("/repos/{}/git/blobs", world.repo), 422, &[], 1);
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!(task.status, "failed", "{task:?}");
    let error = task.error.unwrap_or_default();
    assert!(error.contains("uploading blob.bin (307200 bytes)") && error.contains("422"), "{error}");
    let repo = git2::Repository::open_bare(&world.remote).unwrap();
    assert!(repo.find_reference(&format!("refs/heads/{BRANCH}")).is_err(), "nothing published");
    for token in world.forge.with_app(|app| app.issued.clone()) {
        assert!(!error.contains(&token.token));
    }
}
