//! GitHub's JSON, with every field octocrab's models require.

use super::*;

pub(super) fn user(ctx: &Ctx, login: &str) -> Value {
    let id = user_id(login);
    let url = format!("{}/users/{login}", ctx.api);
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_kgDO{id}"),
        "avatar_url": format!("{}/avatars/u/{id}?v=4", ctx.web),
        "gravatar_id": "",
        "url": url,
        "html_url": format!("{}/{login}", ctx.web),
        "followers_url": format!("{url}/followers"),
        "following_url": format!("{url}/following{{/other_user}}"),
        "gists_url": format!("{url}/gists{{/gist_id}}"),
        "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{url}/subscriptions"),
        "organizations_url": format!("{url}/orgs"),
        "repos_url": format!("{url}/repos"),
        "events_url": format!("{url}/events{{/privacy}}"),
        "received_events_url": format!("{url}/received_events"),
        "type": if is_bot(login) { "Bot" } else { "User" },
        "user_view_type": "public",
        "site_admin": false,
    })
}

pub(super) fn current_user(ctx: &Ctx) -> Value {
    let profile = json!({
        "name": ctx.bot, "company": null, "blog": "", "location": null, "email": null,
        "hireable": null, "bio": null, "twitter_username": null, "public_repos": 0,
        "public_gists": 0, "followers": 0, "following": 0,
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
    });
    merge(user(ctx, &ctx.bot), profile)
}

pub(super) fn repo(ctx: &Ctx, repo: &FakeRepo) -> Value {
    let url = ctx.repo_api(repo);
    let html = ctx.repo_html(repo);
    let host = ctx.web.trim_start_matches("http://");
    let bot = legacy_permission(&repo.role_of(&ctx.bot)).unwrap_or("none");
    let open = repo.issues.values().filter(|i| i.state == IssueState::Open).count();
    let json = json!({
        "id": repo.id,
        "node_id": format!("R_kgDO{}", repo.id),
        "name": repo.name,
        "full_name": repo.full_name(),
        "private": repo.private,
        "owner": user(ctx, &repo.owner),
        "html_url": html,
        "description": null,
        "fork": false,
        "url": url,
        "clone_url": repo.served_clone_url.as_ref().unwrap_or(&repo.clone_url),
        "default_branch": repo.default_branch,
        "permissions": permissions(bot),
        "visibility": if repo.private { "private" } else { "public" },
        "open_issues_count": open,
        "open_issues": open,
    });
    // Split in two: one `json!` this size exceeds the macro recursion limit.
    let urls = json!({
        "archive_url": format!("{url}/{{archive_format}}{{/ref}}"),
        "branches_url": format!("{url}/branches{{/branch}}"),
        "collaborators_url": format!("{url}/collaborators{{/collaborator}}"),
        "comments_url": format!("{url}/comments{{/number}}"),
        "commits_url": format!("{url}/commits{{/sha}}"),
        "events_url": format!("{url}/events"),
        "hooks_url": format!("{url}/hooks"),
        "issue_comment_url": format!("{url}/issues/comments{{/number}}"),
        "issues_url": format!("{url}/issues{{/number}}"),
        "labels_url": format!("{url}/labels{{/name}}"),
        "pulls_url": format!("{url}/pulls{{/number}}"),
        "git_url": format!("git://{host}/{}.git", repo.full_name()),
        "ssh_url": format!("git@{host}:{}.git", repo.full_name()),
        "svn_url": html,
        "homepage": null,
        "size": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": null,
        "has_issues": true,
        "has_projects": false,
        "has_downloads": true,
        "has_wiki": false,
        "has_pages": false,
        "forks_count": 0,
        "archived": false,
        "disabled": false,
        "license": null,
        "allow_forking": true,
        "is_template": false,
        "topics": [],
        "forks": 0,
        "watchers": 0,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "pushed_at": "2024-01-01T00:00:00Z",
    });
    merge(json, urls)
}

fn permissions(permission: &str) -> Value {
    let at_least = |level: usize| {
        ["none", "read", "write", "admin"].iter().position(|p| *p == permission) >= Some(level)
    };
    json!({
        "admin": at_least(3), "maintain": at_least(3), "push": at_least(2),
        "triage": at_least(2), "pull": at_least(1),
    })
}

pub(super) fn label(ctx: &Ctx, repo: &FakeRepo, label: &FakeLabel) -> Value {
    json!({
        "id": label.id,
        "node_id": format!("LA_kwDO{}", label.id),
        "url": format!("{}/labels/{}", ctx.repo_api(repo), percent_encode(&label.name)),
        "name": label.name,
        "color": label.color,
        "default": false,
        "description": (!label.description.is_empty()).then_some(&label.description),
    })
}

pub(super) fn issue(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue) -> Value {
    let url = format!("{}/issues/{}", ctx.repo_api(repo), issue.number);
    let html = ctx.html_url(repo, issue);
    let mut json = json!({
        "url": url,
        "repository_url": ctx.repo_api(repo),
        "labels_url": format!("{url}/labels{{/name}}"),
        "comments_url": format!("{url}/comments"),
        "events_url": format!("{url}/events"),
        "html_url": html,
        "id": issue.id,
        "node_id": format!("I_kwDO{}", issue.id),
        "number": issue.number,
        "title": issue.title,
        "user": user(ctx, &issue.user),
        "labels": ctx.labels(repo, issue),
        "state": state(issue),
        "locked": false,
        "assignee": null,
        "assignees": [],
        "milestone": null,
        "comments": issue.comments.len(),
        "created_at": time(&issue.created_at),
        "updated_at": time(&issue.updated_at),
        "closed_at": issue.closed_at.as_ref().map(time),
        "author_association": association(repo, &issue.user),
        "active_lock_reason": null,
        "body": issue.body,
        "reactions": reaction_summary(&format!("{url}/reactions"), &issue.reactions),
        "timeline_url": format!("{url}/timeline"),
        "performed_via_github_app": null,
        "state_reason": issue.closed_at.map(|_| "completed"),
    });
    if let Some(pull) = &issue.pull {
        json["draft"] = pull.draft.into();
        json["pull_request"] = json!({
            "url": format!("{}/pulls/{}", ctx.repo_api(repo), issue.number),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "merged_at": null,
        });
    }
    json
}

pub(super) fn comment(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue, comment: &FakeComment) -> Value {
    let url = format!("{}/issues/comments/{}", ctx.repo_api(repo), comment.id);
    json!({
        "url": url,
        "html_url": format!("{}#issuecomment-{}", ctx.html_url(repo, issue), comment.id),
        "issue_url": format!("{}/issues/{}", ctx.repo_api(repo), issue.number),
        "id": comment.id,
        "node_id": format!("IC_kwDO{}", comment.id),
        "user": user(ctx, &comment.user),
        "created_at": time(&comment.created_at),
        "updated_at": time(&comment.updated_at),
        "author_association": association(repo, &comment.user),
        "body": comment.body,
        "reactions": reaction_summary(&format!("{url}/reactions"), &comment.reactions),
        "performed_via_github_app": null,
    })
}

/// A pull request as `GET /pulls/{n}` answers: the listed form and what only that route adds.
pub(super) fn pull(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue) -> Value {
    let details = json!({
        "merged": false,
        "mergeable": null,
        "rebaseable": null,
        "mergeable_state": "unknown",
        "merged_by": null,
        "comments": issue.comments.len(),
        "review_comments": 0,
        "maintainer_can_modify": false,
        "commits": 1,
        "additions": 0,
        "deletions": 0,
        "changed_files": 0,
    });
    merge(listed_pull(ctx, repo, issue), details)
}

/// A pull request as `GET /pulls` lists it (GitHub's `pull-request-simple`).
pub(super) fn listed_pull(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue) -> Value {
    let part = issue.pull.as_ref().expect("a pull request");
    let api = ctx.repo_api(repo);
    let url = format!("{api}/pulls/{}", issue.number);
    let issue_url = format!("{api}/issues/{}", issue.number);
    let html = ctx.html_url(repo, issue);
    let head_sha = shown_sha(repo, &part.head, &part.head_sha);
    let href = |href: String| json!({ "href": href });
    let json = json!({
        "url": url,
        "id": part.id,
        "node_id": format!("PR_kwDO{}", part.id),
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "issue_url": issue_url,
        "commits_url": format!("{url}/commits"),
        "review_comments_url": format!("{url}/comments"),
        "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
        "comments_url": format!("{issue_url}/comments"),
        "statuses_url": format!("{api}/statuses/{head_sha}"),
        "number": issue.number,
        "state": state(issue),
        "locked": false,
        "title": issue.title,
        "user": user(ctx, &issue.user),
        "body": issue.body,
        "labels": ctx.labels(repo, issue),
        "milestone": null,
        "active_lock_reason": null,
        "created_at": time(&issue.created_at),
        "updated_at": time(&issue.updated_at),
        "closed_at": issue.closed_at.as_ref().map(time),
        "merged_at": null,
        "merge_commit_sha": null,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "draft": part.draft,
    });
    let more = json!({
        "head": with_head_repo(git_ref(ctx, repo, &part.head, &head_sha), part),
        "base": git_ref(ctx, repo, &part.base, &shown_sha(repo, &part.base, &part.base_sha)),
        "_links": {
            "self": href(url.clone()),
            "html": href(html.clone()),
            "issue": href(issue_url.clone()),
            "comments": href(format!("{issue_url}/comments")),
            "review_comments": href(format!("{url}/comments")),
            "review_comment": href(format!("{api}/pulls/comments{{/number}}")),
            "commits": href(format!("{url}/commits")),
            "statuses": href(format!("{api}/statuses/{head_sha}")),
        },
        "author_association": association(repo, &issue.user),
        "auto_merge": null,
    });
    merge(json, more)
}

fn git_ref(ctx: &Ctx, repo: &FakeRepo, branch: &str, sha: &str) -> Value {
    json!({
        "label": format!("{}:{branch}", repo.owner),
        "ref": branch,
        "sha": sha,
        "user": user(ctx, &repo.owner),
        "repo": self::repo(ctx, repo),
    })
}

pub(super) fn reaction(ctx: &Ctx, reaction: &FakeReaction) -> Value {
    json!({
        "id": reaction.id,
        "node_id": format!("REA_lADO{}", reaction.id),
        "user": user(ctx, &reaction.user),
        "content": reaction.content,
        "created_at": time(&reaction.created_at),
    })
}

fn reaction_summary(url: &str, reactions: &[FakeReaction]) -> Value {
    let mut summary = json!({ "url": url, "total_count": reactions.len() });
    for content in REACTIONS {
        summary[content] = reactions.iter().filter(|r| r.content == content).count().into();
    }
    summary
}

pub(super) fn permission(ctx: &Ctx, login: &str, role: &str, permission: &str) -> Value {
    let extra = json!({ "permissions": permissions(permission), "role_name": role });
    json!({ "permission": permission, "role_name": role, "user": merge(user(ctx, login), extra) })
}

/// Never trust it for authorization; it is here because GitHub sends it.
pub(super) fn association(repo: &FakeRepo, login: &str) -> &'static str {
    if login.eq_ignore_ascii_case(&repo.owner) {
        "OWNER"
    } else if repo.permissions.keys().any(|l| l.eq_ignore_ascii_case(login)) {
        "COLLABORATOR"
    } else {
        "NONE"
    }
}

fn state(issue: &FakeIssue) -> &'static str {
    match issue.state {
        IssueState::Open => "open",
        IssueState::Closed => "closed",
    }
}

/// `GET /commits/{ref}/check-runs`: the check runs on `sha`.
pub(super) fn check_runs(ctx: &Ctx, repo: &FakeRepo, sha: &str) -> Value {
    let runs: Vec<Value> = repo
        .checks
        .iter()
        .filter(|c| c.sha == sha && !c.status_only)
        .map(|c| check_run(ctx, repo, c))
        .collect();
    json!({ "total_count": runs.len(), "check_runs": runs })
}

/// A check run as GitHub shows it; an Actions job when it has a log.
pub(super) fn check_run(ctx: &Ctx, repo: &FakeRepo, check: &FakeCheck) -> Value {
    let api = ctx.repo_api(repo);
    let html = format!("{}/runs/{}", ctx.repo_html(repo), check.id);
    let (slug, app_name) =
        if check.log.is_some() { ("github-actions", "GitHub Actions") } else { ("ci", "CI") };
    json!({
        "id": check.id,
        "head_sha": check.sha,
        "node_id": format!("CR_kwDO{}", check.id),
        "external_id": "",
        "url": format!("{api}/check-runs/{}", check.id),
        "html_url": html,
        "details_url": html,
        "status": "completed",
        "conclusion": check.conclusion,
        "started_at": "2026-12-01T10:00:00Z",
        "completed_at": "2026-12-01T10:01:00Z",
        "output": {
            "title": check.summary,
            "summary": check.summary,
            "text": check.text,
            "annotations_count": 0,
            "annotations_url": format!("{api}/check-runs/{}/annotations", check.id),
        },
        "name": check.name,
        "check_suite": { "id": check.id + 1 },
        "app": { "id": 15368, "slug": slug, "name": app_name },
        "pull_requests": [],
    })
}

/// A review as `GET /pulls/{n}/reviews` lists it.
pub(super) fn review(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue, review: &FakeReview) -> Value {
    let html = format!("{}#pullrequestreview-{}", ctx.html_url(repo, issue), review.id);
    let pull_url = format!("{}/pulls/{}", ctx.repo_api(repo), issue.number);
    json!({
        "id": review.id,
        "node_id": format!("PRR_kwDO{}", review.id),
        "user": ctx.user(&review.user),
        "body": review.body,
        "state": review.state.to_ascii_uppercase(),
        "html_url": html,
        "pull_request_url": pull_url,
        "_links": { "html": { "href": html }, "pull_request": { "href": pull_url } },
        "submitted_at": time(&review.submitted_at),
        "commit_id": review.commit_id,
        "author_association": association(repo, &review.user),
    })
}

/// An inline review comment (or a reply in its thread).
pub(super) fn review_comment(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue, c: &FakeReviewComment) -> Value {
    let api = ctx.repo_api(repo);
    let url = format!("{api}/pulls/comments/{}", c.id);
    let html = format!("{}#discussion_r{}", ctx.html_url(repo, issue), c.id);
    let pull_url = format!("{api}/pulls/{}", issue.number);
    let mut json = json!({
        "url": url,
        "pull_request_review_id": c.review_id,
        "id": c.id,
        "node_id": format!("PRRC_kwDO{}", c.id),
        "diff_hunk": c.diff_hunk,
        "path": c.path,
        "position": c.line,
        "original_position": c.line,
        "commit_id": c.commit_id,
        "original_commit_id": c.commit_id,
        "user": ctx.user(&c.user),
        "body": c.body,
        "created_at": "2026-12-01T10:00:00Z",
        "updated_at": "2026-12-01T10:00:00Z",
        "html_url": html,
        "pull_request_url": pull_url,
        "author_association": association(repo, &c.user),
        "_links": { "self": { "href": url }, "html": { "href": html }, "pull_request": { "href": pull_url } },
        "start_line": null,
        "original_start_line": null,
        "start_side": null,
        "line": c.line,
        "original_line": c.line,
        "side": "RIGHT",
        "subject_type": "line",
    });
    if let Some(parent) = c.in_reply_to {
        json["in_reply_to_id"] = json!(parent);
    }
    json
}
