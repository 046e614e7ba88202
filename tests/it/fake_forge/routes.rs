//! The fake forge's route table: every endpoint it serves, written in each forge's own path
//! templates (the words of GitHub's OpenAPI description and of Gitea's swagger), so that
//! tests/it/openapi.rs can check the table against those descriptions and the router
//! below serves exactly what the table says.

use super::{Dialect, percent_decode};

/// One endpoint the fake forge serves.
pub struct Endpoint {
    pub method: &'static str,
    /// Its path template in GitHub's OpenAPI description; `None` where GitHub has no such route.
    pub github: Option<&'static str>,
    /// Its path template in Gitea's swagger; `None` where Gitea has no such route.
    pub gitea: Option<&'static str>,
    /// The documented method this one stands in for. GitHub has always taken POST where it
    /// documents PATCH (for clients that cannot send PATCH), and octocrab's
    /// `update_comment` relies on it; the description lists only PATCH.
    pub stands_for: Option<&'static str>,
    /// The last parameter takes the rest of the path: Gitea routes `pulls/{base}/*`, so a
    /// head with slashes spans several segments.
    rest_of_path: bool,
    /// Builds the route from the template's parameters, in order (owner and repo first).
    route: fn(&[String]) -> Route,
}

impl Endpoint {
    const fn both(
        method: &'static str,
        github: &'static str,
        gitea: &'static str,
        route: fn(&[String]) -> Route,
    ) -> Endpoint {
        Endpoint {
            method,
            github: Some(github),
            gitea: Some(gitea),
            stands_for: None,
            rest_of_path: false,
            route,
        }
    }

    const fn github(method: &'static str, github: &'static str, route: fn(&[String]) -> Route) -> Endpoint {
        Endpoint { method, github: Some(github), gitea: None, stands_for: None, rest_of_path: false, route }
    }

    const fn gitea(method: &'static str, gitea: &'static str, route: fn(&[String]) -> Route) -> Endpoint {
        Endpoint { method, github: None, gitea: Some(gitea), stands_for: None, rest_of_path: false, route }
    }

    /// The path template `dialect` documents this endpoint under, if it serves it.
    pub fn template(&self, dialect: Dialect) -> Option<&'static str> {
        match dialect {
            Dialect::Github => self.github,
            Dialect::Gitea => self.gitea,
        }
    }

    /// The parameters of `segments` (decoded) if they fit `template`.
    fn capture(&self, template: &str, segments: &[String]) -> Option<Vec<String>> {
        let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
        let fits = segments.len() == parts.len() || (self.rest_of_path && segments.len() > parts.len());
        if !fits {
            return None;
        }
        let mut params = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let is_param = part.starts_with('{') && part.ends_with('}');
            match (is_param, segments[i].as_str()) {
                (true, "") => return None,
                (true, _) if self.rest_of_path && i == parts.len() - 1 => {
                    params.push(segments[i..].join("/"))
                }
                (true, value) => params.push(value.to_owned()),
                (false, value) if value == *part => {}
                (false, _) => return None,
            }
        }
        Some(params)
    }
}

/// Every endpoint the fake forge serves. Literal segments come before parameters where
/// both could fit.
pub static ENDPOINTS: &[Endpoint] = &[
    Endpoint::both("GET", "/user", "/user", |_| Route::CurrentUser),
    Endpoint::both("GET", "/users/{username}", "/users/{username}", |p| Route::User(p[0].clone())),
    Endpoint::both("GET", "/repos/{owner}/{repo}", "/repos/{owner}/{repo}", |_| Route::Repo),
    Endpoint::both(
        "GET",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
        "/repos/{owner}/{repo}/collaborators/{collaborator}/permission",
        |p| Route::Permission(p[2].clone()),
    ),
    Endpoint::both("GET", "/repos/{owner}/{repo}/issues", "/repos/{owner}/{repo}/issues", |_| {
        Route::ListIssues
    }),
    Endpoint::both(
        "PATCH",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        "/repos/{owner}/{repo}/issues/comments/{id}",
        |p| Route::EditComment(p[2].clone()),
    ),
    Endpoint {
        stands_for: Some("PATCH"),
        ..Endpoint::github("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}", |p| {
            Route::EditComment(p[2].clone())
        })
    },
    Endpoint::both(
        "POST",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
        "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
        |p| Route::CommentReaction(p[2].clone()),
    ),
    Endpoint::both(
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}",
        "/repos/{owner}/{repo}/issues/{index}",
        |p| Route::Issue(p[2].clone()),
    ),
    Endpoint::both(
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        "/repos/{owner}/{repo}/issues/{index}/comments",
        |p| Route::Comments(p[2].clone()),
    ),
    Endpoint::both(
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        "/repos/{owner}/{repo}/issues/{index}/comments",
        |p| Route::PostComment(p[2].clone()),
    ),
    Endpoint::both(
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}/labels",
        "/repos/{owner}/{repo}/issues/{index}/labels",
        |p| Route::IssueLabels(p[2].clone()),
    ),
    Endpoint::both(
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/labels",
        "/repos/{owner}/{repo}/issues/{index}/labels",
        |p| Route::AddLabels(p[2].clone()),
    ),
    Endpoint::both(
        "DELETE",
        "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}",
        "/repos/{owner}/{repo}/issues/{index}/labels/{id}",
        |p| Route::RemoveLabel(p[2].clone(), p[3].clone()),
    ),
    Endpoint::both(
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/reactions",
        "/repos/{owner}/{repo}/issues/{index}/reactions",
        |p| Route::IssueReaction(p[2].clone()),
    ),
    Endpoint::both("GET", "/repos/{owner}/{repo}/labels", "/repos/{owner}/{repo}/labels", |_| {
        Route::RepoLabels
    }),
    Endpoint::both("POST", "/repos/{owner}/{repo}/labels", "/repos/{owner}/{repo}/labels", |_| {
        Route::CreateLabel
    }),
    Endpoint::github("GET", "/repos/{owner}/{repo}/labels/{name}", |p| Route::Label(p[2].clone())),
    Endpoint::both("GET", "/repos/{owner}/{repo}/pulls", "/repos/{owner}/{repo}/pulls", |_| Route::ListPulls),
    Endpoint::both(
        "GET",
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
        "/repos/{owner}/{repo}/pulls/{index}/reviews",
        |p| Route::Reviews(p[2].clone()),
    ),
    Endpoint::both(
        "GET",
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments",
        "/repos/{owner}/{repo}/pulls/{index}/reviews/{id}/comments",
        |p| Route::ReviewComments(p[2].clone(), p[3].clone()),
    ),
    Endpoint::github(
        "POST",
        "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
        |p| Route::ReplyToReviewComment(p[2].clone(), p[3].clone()),
    ),
    Endpoint::github("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", |p| {
        Route::CheckRuns(p[2].clone())
    }),
    Endpoint::both(
        "GET",
        "/repos/{owner}/{repo}/commits/{ref}/status",
        "/repos/{owner}/{repo}/commits/{ref}/status",
        |p| Route::CombinedStatus(p[2].clone()),
    ),
    Endpoint::github("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs", |p| {
        Route::JobLog(p[2].clone())
    }),
    Endpoint::both("POST", "/repos/{owner}/{repo}/pulls", "/repos/{owner}/{repo}/pulls", |_| {
        Route::CreatePull
    }),
    Endpoint::both(
        "GET",
        "/repos/{owner}/{repo}/pulls/{pull_number}",
        "/repos/{owner}/{repo}/pulls/{index}",
        |p| Route::Pull(p[2].clone()),
    ),
    Endpoint::both(
        "PATCH",
        "/repos/{owner}/{repo}/pulls/{pull_number}",
        "/repos/{owner}/{repo}/pulls/{index}",
        |p| Route::EditPull(p[2].clone()),
    ),
    Endpoint::github("POST", "/repos/{owner}/{repo}/git/blobs", |_| Route::CreateBlob),
    Endpoint::github("POST", "/repos/{owner}/{repo}/git/trees", |_| Route::CreateTree),
    Endpoint::github("POST", "/repos/{owner}/{repo}/git/commits", |_| Route::CreateCommit),
    Endpoint {
        rest_of_path: true,
        ..Endpoint::github("GET", "/repos/{owner}/{repo}/git/ref/{ref}", |p| Route::GitRef(p[2].clone()))
    },
    Endpoint::github("POST", "/repos/{owner}/{repo}/git/refs", |_| Route::CreateRef),
    Endpoint {
        rest_of_path: true,
        ..Endpoint::github("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}", |p| {
            Route::UpdateRef(p[2].clone())
        })
    },
    Endpoint {
        rest_of_path: true,
        ..Endpoint::gitea("GET", "/repos/{owner}/{repo}/pulls/{base}/{head}", |p| {
            Route::PullByBaseHead(p[2].clone(), p[3].clone())
        })
    },
];

/// One endpoint of either dialect, with its parameters.
#[derive(Debug)]
pub(super) enum Route {
    CurrentUser,
    User(String),
    Repo,
    Permission(String),
    Issue(String),
    Comments(String),
    PostComment(String),
    EditComment(String),
    CommentReaction(String),
    RepoLabels,
    Label(String),
    CreateLabel,
    IssueLabels(String),
    AddLabels(String),
    RemoveLabel(String, String),
    IssueReaction(String),
    ListPulls,
    CreatePull,
    ListIssues,
    Pull(String),
    EditPull(String),
    PullByBaseHead(String, String),
    Reviews(String),
    ReviewComments(String, String),
    ReplyToReviewComment(String, String),
    CheckRuns(String),
    CombinedStatus(String),
    JobLog(String),
    CreateBlob,
    CreateTree,
    CreateCommit,
    GitRef(String),
    CreateRef,
    UpdateRef(String),
}

/// The repository (`owner/name`, if any) and endpoint `method path` addresses.
pub(super) fn route(dialect: Dialect, method: &str, path: &str) -> Option<(Option<String>, Route)> {
    let segments: Vec<String> = path.trim_matches('/').split('/').map(percent_decode).collect();
    ENDPOINTS.iter().filter(|e| e.method == method).find_map(|endpoint| {
        let template = endpoint.template(dialect)?;
        let params = endpoint.capture(template, &segments)?;
        let repo =
            template.starts_with("/repos/{owner}/{repo}").then(|| format!("{}/{}", params[0], params[1]));
        Some((repo, (endpoint.route)(&params)))
    })
}
