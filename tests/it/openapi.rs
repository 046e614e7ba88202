//! The fake forge tells the truth: every route it serves is one the forge documents (GitHub's
//! OpenAPI description, npm `@octokit/openapi`; Gitea's swagger as the npm `gitea-js`
//! carries it, in TypeScript generated from it: both pinned in tests/octokit), and every
//! field forgehand reads from an answer is in that route's documented answer. The routes
//! come from the fake forge's own table (`fake_forge::ENDPOINTS`), the fields from
//! forgehand's models themselves (`fields::fields_of`); only which model reads which route
//! is written here, after src/forge/rest.rs. Beyond what forgehand reads, every field the
//! fake answers with must be documented too, so the fake shows no shape the forge never
//! sends.

mod description;
mod fields;

use forgehand::forge::models::{
    CheckRuns, Comment, GitObject, GiteaReviewComment, GithubReviewComment, Id, Issue, Label, Login,
    PermissionAnswer, Pull, Repository, Review, User,
};
use serde_json::json;

use crate::fake_forge::Dialect;
use crate::fake_forge::routes::ENDPOINTS;
use description::Description;
use fields::{Field, fields_of};

/// A route as `(method, path template)`.
type RouteOf<'a> = (&'a str, &'a str);

/// The fake forge's routes for `dialect`, each under the method its forge documents.
fn fake_routes(dialect: Dialect) -> Vec<RouteOf<'static>> {
    ENDPOINTS.iter().filter_map(|e| Some((e.stands_for.unwrap_or(e.method), e.template(dialect)?))).collect()
}

/// The routes `description` does not document, with why.
fn undocumented(routes: &[RouteOf<'_>], description: &Description) -> Vec<String> {
    routes.iter().filter_map(|(method, template)| description.operation(method, template).err()).collect()
}

/// An answer forgehand reads into one of its models.
struct Read {
    method: &'static str,
    github: Option<&'static str>,
    gitea: Option<&'static str>,
    fields: Vec<Field>,
}

impl Read {
    fn both<T: serde::de::DeserializeOwned>(
        method: &'static str,
        github: &'static str,
        gitea: &'static str,
    ) -> Read {
        Read { method, github: Some(github), gitea: Some(gitea), fields: fields_of::<T>() }
    }

    fn template(&self, dialect: Dialect) -> Option<&'static str> {
        match dialect {
            Dialect::Github => self.github,
            Dialect::Gitea => self.gitea,
        }
    }
}

/// Every answer forgehand reads (src/forge/rest.rs), per forge where the route differs or
/// only one forge's client asks it.
fn reads() -> Vec<Read> {
    vec![
        Read::both::<Login>("GET", "/user", "/user"),
        Read::both::<User>("GET", "/users/{username}", "/users/{username}"),
        Read::both::<Repository>("GET", "/repos/{owner}/{repo}", "/repos/{owner}/{repo}"),
        Read::both::<PermissionAnswer>(
            "GET",
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            "/repos/{owner}/{repo}/collaborators/{collaborator}/permission",
        ),
        Read::both::<Issue>(
            "GET",
            "/repos/{owner}/{repo}/issues/{issue_number}",
            "/repos/{owner}/{repo}/issues/{index}",
        ),
        Read::both::<Vec<Issue>>("GET", "/repos/{owner}/{repo}/issues", "/repos/{owner}/{repo}/issues"),
        Read::both::<Vec<Comment>>(
            "GET",
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            "/repos/{owner}/{repo}/issues/{index}/comments",
        ),
        Read::both::<Id>(
            "POST",
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            "/repos/{owner}/{repo}/issues/{index}/comments",
        ),
        Read::both::<Pull>(
            "GET",
            "/repos/{owner}/{repo}/pulls/{pull_number}",
            "/repos/{owner}/{repo}/pulls/{index}",
        ),
        Read::both::<Pull>("POST", "/repos/{owner}/{repo}/pulls", "/repos/{owner}/{repo}/pulls"),
        // GitHub finds a head's pull request by listing, and addresses labels by name.
        Read { github: None, ..Read::both::<Vec<Label>>("GET", "", "/repos/{owner}/{repo}/labels") },
        Read { github: None, ..Read::both::<Id>("POST", "", "/repos/{owner}/{repo}/labels") },
        Read { gitea: None, ..Read::both::<Vec<Pull>>("GET", "/repos/{owner}/{repo}/pulls", "") },
        Read { github: None, ..Read::both::<Pull>("GET", "", "/repos/{owner}/{repo}/pulls/{base}/{head}") },
        Read {
            gitea: None,
            ..Read::both::<Vec<GithubReviewComment>>(
                "GET",
                "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments",
                "",
            )
        },
        Read {
            github: None,
            ..Read::both::<Vec<GiteaReviewComment>>(
                "GET",
                "",
                "/repos/{owner}/{repo}/pulls/{index}/reviews/{id}/comments",
            )
        },
        Read::both::<Vec<Review>>(
            "GET",
            "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
            "/repos/{owner}/{repo}/pulls/{index}/reviews",
        ),
        // Check runs are GitHub's; commit statuses are read by hand (the state is `state` on
        // GitHub, `status` on Gitea), checked through the fake's answers above.
        Read {
            gitea: None,
            ..Read::both::<CheckRuns>("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", "")
        },
        // The Git database API, through which a GitHub App's commits are made (and signed).
        Read { gitea: None, ..Read::both::<GitObject>("POST", "/repos/{owner}/{repo}/git/blobs", "") },
        Read { gitea: None, ..Read::both::<GitObject>("POST", "/repos/{owner}/{repo}/git/trees", "") },
        Read { gitea: None, ..Read::both::<GitObject>("POST", "/repos/{owner}/{repo}/git/commits", "") },
    ]
}

/// Every field of `reads` that `description` does not document in the route's answer, and
/// every route read that the fake forge does not serve.
fn unread_lies(reads: &[Read], dialect: Dialect, description: &Description) -> Vec<String> {
    let served = fake_routes(dialect);
    let mut lies = Vec::new();
    for read in reads {
        let Some(template) = read.template(dialect) else { continue };
        if !served.contains(&(read.method, template)) {
            lies.push(format!(
                "the fake forge does not serve {} {template}, which forgehand reads",
                read.method
            ));
        }
        match description.success_schema(read.method, template) {
            Err(why) => lies.push(why),
            Ok(None) => lies.push(format!(
                "{} documents no answer body for {} {template}",
                description.name, read.method
            )),
            Ok(Some(schema)) => {
                lies.extend(description.missing_fields(schema, &read.fields, "").into_iter().map(|field| {
                    format!("{} {template}: {} has no field {field}", read.method, description.name)
                }))
            }
        }
    }
    lies
}

#[test]
fn every_route_the_fake_github_serves_is_in_githubs_openapi_description() {
    let routes = fake_routes(Dialect::Github);
    assert!(routes.len() >= 20, "{routes:?}");
    let lies = undocumented(&routes, Description::github());
    assert!(lies.is_empty(), "the fake GitHub serves undocumented routes:\n{}", lies.join("\n"));
}

#[test]
fn every_field_forgehand_reads_from_github_is_in_the_documented_answer() {
    let lies = unread_lies(&reads(), Dialect::Github, Description::github());
    assert!(lies.is_empty(), "{}", lies.join("\n"));
}

#[test]
fn every_route_the_fake_gitea_serves_is_in_giteas_swagger() {
    let routes = fake_routes(Dialect::Gitea);
    assert!(routes.len() >= 20, "{routes:?}");
    let lies = undocumented(&routes, Description::gitea());
    assert!(lies.is_empty(), "the fake Gitea serves undocumented routes:\n{}", lies.join("\n"));
}

#[test]
fn every_field_forgehand_reads_from_gitea_is_in_the_documented_answer() {
    let lies = unread_lies(&reads(), Dialect::Gitea, Description::gitea());
    assert!(lies.is_empty(), "{}", lies.join("\n"));
}

#[test]
fn the_route_check_refuses_made_up_routes_methods_and_parameter_names() {
    let github = Description::github();
    let made_up = [
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/frobnications"),
        ("PUT", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
        ("GET", "/repos/{owner}/{repo}/issues/{number}"),
        // What the fake takes for PATCH, were it not marked as standing for PATCH.
        ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ];
    let lies = undocumented(&made_up, github);
    assert_eq!(lies.len(), made_up.len(), "{lies:#?}");
    assert!(
        lies[2].contains("/repos/{owner}/{repo}/issues/{issue_number}"),
        "suggests the right one: {}",
        lies[2]
    );
    assert!(undocumented(&[("GET", "/repos/{owner}/{repo}/issues/{issue_number}")], github).is_empty());
    let gitea = Description::gitea();
    assert_eq!(undocumented(&[("GET", "/repos/{owner}/{repo}/labels/{name}")], gitea).len(), 1);
    assert!(undocumented(&[("GET", "/repos/{owner}/{repo}/labels/{id}")], gitea).is_empty());
}

#[test]
fn the_field_check_refuses_fields_the_answer_does_not_have() {
    let made_up = |fields| Read {
        method: "GET",
        github: Some("/repos/{owner}/{repo}/pulls/{pull_number}"),
        gitea: Some("/repos/{owner}/{repo}/pulls/{index}"),
        fields,
    };
    let head =
        |inner| vec![Field::new("number", vec![]), Field::new("head", vec![Field::new(inner, vec![])])];
    for (dialect, description) in
        [(Dialect::Github, Description::github()), (Dialect::Gitea, Description::gitea())]
    {
        assert!(unread_lies(&[made_up(head("ref"))], dialect, description).is_empty());
        let lies = unread_lies(&[made_up(head("reff"))], dialect, description);
        assert_eq!(lies.len(), 1, "{lies:?}");
        assert!(lies[0].ends_with("has no field head.reff"), "{lies:?}");
        let lies = unread_lies(&[made_up(vec![Field::new("pull_number", vec![])])], dialect, description);
        assert!(lies[0].ends_with("has no field pull_number"), "{lies:?}");
    }
}

#[test]
fn the_field_check_follows_refs_lists_and_combined_schemas() {
    let doc = json!({
        "paths": {},
        "components": { "schemas": {
            "user": { "properties": { "login": {}, "id": {} } },
            "bot": { "allOf": [{ "$ref": "#/components/schemas/user" }, { "properties": { "app": {} } }] },
            "either": { "oneOf": [{ "$ref": "#/components/schemas/user" }, { "$ref": "#/components/schemas/bot" }, { "type": "null" }] },
        } },
    });
    let description = Description::new("made-up", doc);
    let schema = json!({ "type": "array", "items": { "properties": { "by": { "$ref": "#/components/schemas/either" } } } });
    let read = |names: &[&str]| vec![Field::new("by", names.iter().map(|n| Field::new(n, vec![])).collect())];
    assert!(description.missing_fields(&schema, &read(&["login", "id"]), "").is_empty());
    // Only one variant of the `oneOf` has it: an answer of the other would lack it.
    assert_eq!(description.missing_fields(&schema, &read(&["login", "app"]), ""), ["by.app"]);
    assert_eq!(description.missing_fields(&schema, &[Field::new("to", vec![])], ""), ["to"]);
}

#[test]
fn the_probe_finds_every_field_a_model_reads_renames_and_nesting_included() {
    let names = |fields: &[Field]| fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    let pull = fields_of::<Pull>();
    assert_eq!(names(&pull), ["number", "html_url", "state", "head"]);
    assert_eq!(names(&pull[3].fields), ["ref", "sha", "repo"]);
    let issue = fields_of::<Vec<Issue>>();
    assert_eq!(names(&issue), ["number", "title", "body", "state", "labels", "pull_request", "user"]);
    assert_eq!(names(&issue[4].fields), ["id", "name"]);
    assert_eq!(names(&issue[6].fields), ["login"]);
}

/// The fields of a JSON answer, the items of a list merged.
fn fields_in(value: &serde_json::Value) -> Vec<Field> {
    match value {
        serde_json::Value::Object(object) => {
            object.iter().map(|(k, v)| Field::new(k, fields_in(v))).collect()
        }
        serde_json::Value::Array(items) => {
            let mut merged: Vec<Field> = Vec::new();
            for field in items.iter().flat_map(fields_in) {
                match merged.iter_mut().find(|m| m.name == field.name) {
                    Some(known) => known.fields.extend(field.fields),
                    None => merged.push(field),
                }
            }
            merged
        }
        _ => Vec::new(),
    }
}

/// The ids of what `answers_of` made: a failed Actions job, a review with an inline comment.
struct Ids {
    job: String,
    review: String,
}

/// The commit `answers_of` finishes a check on.
const CHECKED: &str = "9c2f4e1b7a3d5f60e8b1c2d3a4f5e6b7c8d9e0f1";

/// `template` with its parameters filled in for the state `answers_of` sets up: issue 1,
/// pull request 2 from `feature` into `main`, label `bug`, collaborator alice, a failed
/// check `job` (an Actions job with a log) on [`CHECKED`].
fn filled(template: &str, ids: &Ids) -> String {
    let number = if template.contains("/pulls/") { "2" } else { "1" };
    let value = |param: &str| match param {
        "owner" => "acme",
        "repo" => "widgets",
        "username" | "collaborator" => "alice",
        "issue_number" | "pull_number" | "index" => number,
        "name" => "bug",
        "base" => "main",
        "head" => "feature",
        "ref" => CHECKED,
        "job_id" => &ids.job,
        "review_id" | "id" => &ids.review,
        other => panic!("no value for {{{other}}} in {template}: add one here"),
    };
    let segments = template.split('/').map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(param) => value(param),
        None => s,
    });
    segments.collect::<Vec<_>>().join("/")
}

/// Every GET route of the fake forge, and the POSTs forgehand reads the answer of, with
/// the fake's answer to each.
async fn answers_of(dialect: Dialect) -> Vec<(&'static str, &'static str, serde_json::Value)> {
    use crate::fake_forge::{FakeForge, TOKEN};
    let forge = if dialect == Dialect::Github { FakeForge::github().await } else { FakeForge::gitea().await };
    forge.add_repo("acme/widgets", "file:///nonexistent", "main");
    forge.add_issue("acme/widgets", 1, "Add a flag", "Please.", &["bug"], "alice");
    forge.add_pull("acme/widgets", 2, "Add a flag", "feature", "main");
    forge.set_permission("acme/widgets", "alice", "write");
    // Gitea shows others' permission to a repository admin only.
    forge.set_permission("acme/widgets", &forge.bot_login(), "admin");
    forge.finish_check("acme/widgets", CHECKED, "ci / test", "failure", "test failed\n");
    forge.review_with_comments("acme/widgets", 2, "alice", "commented", "", &[("README.md", 1, "Typo")]);
    let ids = forge.with_state(|s| {
        let repo = &s.repos["acme/widgets"];
        let review = repo.issues[&2].pull.as_ref().unwrap().reviews[0].id;
        Ids { job: repo.checks[0].id.to_string(), review: review.to_string() }
    });
    let client = reqwest::Client::new();
    let comments = match dialect {
        Dialect::Github => "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        Dialect::Gitea => "/repos/{owner}/{repo}/issues/{index}/comments",
    };
    let posts = [
        ("POST", comments, json!({ "body": "On it" })),
        ("POST", "/repos/{owner}/{repo}/labels", json!({ "name": "wip", "color": "#fbca04" })),
    ];
    let gets = ENDPOINTS
        .iter()
        .filter(|e| e.method == "GET")
        // A job's log is plain text, not JSON.
        .filter_map(|e| Some(("GET", e.template(dialect)?, json!(null))))
        .filter(|(_, template, _)| !template.ends_with("/logs"))
        // Refs live in a bare repository this state has none of: github_app's API commit
        // tests read them.
        .filter(|(_, template, _)| !template.contains("/git/"));
    let mut answers = Vec::new();
    for (method, template, body) in posts.into_iter().chain(gets) {
        let url = format!("{}{}", forge.base_url(), filled(template, &ids));
        let mut request =
            client.request(method.parse().unwrap(), url).header("authorization", format!("token {TOKEN}"));
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{method} {template}: {}", response.status());
        answers.push((method, template, response.json().await.unwrap()));
    }
    answers
}

/// Fields real Gitea sends that gitea-js's description lacks, with where that is seen. The
/// fake keeps them because forgehand must cope with them; none is read.
const GITEA_BEYOND_ITS_SWAGGER: &[(&str, &str)] = &[
    // `User.MarshalJSON` in Gitea's modules/structs/user.go adds it for Gogs compatibility.
    ("username", "every user object"),
    // Gitea 1.24 added it to `Issue`; gitea-js 1.23.0, the latest, predates it.
    ("time_estimate", "issues"),
];

/// What `description` does not document of the fake forge's answers, less `known` fields.
async fn undocumented_answer_fields(
    dialect: Dialect,
    description: &Description,
    known: &[(&str, &str)],
) -> Vec<String> {
    let mut lies = Vec::new();
    for (method, template, answer) in answers_of(dialect).await {
        let schema = description.success_schema(method, template).unwrap().expect("an answer body");
        for field in description.missing_fields(schema, &fields_in(&answer), "") {
            let name = field.rsplit('.').next().unwrap_or(&field);
            if !known.iter().any(|(k, _)| *k == name) {
                lies.push(format!("{method} {template}: {field}"));
            }
        }
    }
    lies
}

#[tokio::test]
async fn every_field_the_fake_github_answers_with_is_documented() {
    let lies = undocumented_answer_fields(Dialect::Github, Description::github(), &[]).await;
    assert!(
        lies.is_empty(),
        "the fake GitHub answers with fields GitHub does not document:\n{}",
        lies.join("\n")
    );
}

#[tokio::test]
async fn every_field_the_fake_gitea_answers_with_is_documented() {
    let lies =
        undocumented_answer_fields(Dialect::Gitea, Description::gitea(), GITEA_BEYOND_ITS_SWAGGER).await;
    assert!(
        lies.is_empty(),
        "the fake Gitea answers with fields Gitea does not document:\n{}",
        lies.join("\n")
    );
}
