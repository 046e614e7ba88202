//! Gitea's JSON, shaped like its `modules/structs`.

use super::*;

pub(super) fn user(ctx: &Ctx, login: &str) -> Value {
    let id = user_id(login);
    json!({
        "id": id,
        "login": login,
        "login_name": "",
        "source_id": 0,
        "full_name": "",
        "email": format!("{login}@noreply.localhost"),
        "avatar_url": format!("{}/avatars/{id}", ctx.web),
        "html_url": format!("{}/{login}", ctx.web),
        "language": "",
        "is_admin": ctx.site_admin && login.eq_ignore_ascii_case(&ctx.bot),
        "last_login": "0001-01-01T00:00:00Z",
        "created": "2024-01-01T00:00:00Z",
        "restricted": false,
        "active": false,
        "prohibit_login": false,
        "location": "",
        "website": "",
        "description": "",
        "visibility": "public",
        "followers_count": 0,
        "following_count": 0,
        "starred_repos_count": 0,
        "username": login,
    })
}

pub(super) fn repo(ctx: &Ctx, repo: &FakeRepo) -> Value {
    let host = ctx.web.trim_start_matches("http://");
    let bot = legacy_permission(&repo.role_of(&ctx.bot)).unwrap_or("none");
    let open = |pulls: bool| {
        repo.issues.values().filter(|i| i.state == IssueState::Open && i.pull.is_some() == pulls).count()
    };
    let json = json!({
        "id": repo.id,
        "owner": user(ctx, &repo.owner),
        "name": repo.name,
        "full_name": repo.full_name(),
        "description": "",
        "empty": false,
        "private": repo.private,
        "fork": false,
        "template": false,
        "parent": null,
        "mirror": false,
        "size": 0,
        "language": "",
        "html_url": ctx.repo_html(repo),
        "url": ctx.repo_api(repo),
        "link": "",
        "ssh_url": format!("git@{host}:{}.git", repo.full_name()),
        "clone_url": repo.served_clone_url.as_ref().unwrap_or(&repo.clone_url),
        "original_url": "",
        "website": "",
        "stars_count": 0,
        "forks_count": 0,
        "watchers_count": 0,
        "open_issues_count": open(false),
        "open_pr_counter": open(true),
        "release_counter": 0,
    });
    let more = json!({
        "default_branch": repo.default_branch,
        "archived": false,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "permissions": { "admin": bot == "admin", "push": matches!(bot, "admin" | "write"), "pull": bot != "none" },
        "has_issues": true,
        "has_wiki": false,
        "has_pull_requests": true,
        "has_projects": false,
        "has_releases": true,
        "has_actions": false,
        "default_merge_style": "merge",
        "avatar_url": "",
        "internal": false,
        "object_format_name": "sha1",
        "topics": [],
    });
    merge(json, more)
}

pub(super) fn label(ctx: &Ctx, repo: &FakeRepo, label: &FakeLabel) -> Value {
    json!({
        "id": label.id,
        "name": label.name,
        "exclusive": false,
        "is_archived": false,
        "color": label.color,
        "description": label.description,
        "url": format!("{}/labels/{}", ctx.repo_api(repo), label.id),
    })
}

pub(super) fn issue(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue) -> Value {
    let html = ctx.html_url(repo, issue);
    let pull_request = issue
        .pull
        .as_ref()
        .map(|p| json!({ "merged": false, "merged_at": null, "draft": p.draft, "html_url": html }));
    json!({
        "id": issue.id,
        "url": format!("{}/issues/{}", ctx.repo_api(repo), issue.number),
        "html_url": html,
        "number": issue.number,
        "user": user(ctx, &issue.user),
        "original_author": "",
        "original_author_id": 0,
        "title": issue.title,
        "body": issue.body,
        "ref": "",
        "assets": [],
        "labels": ctx.labels(repo, issue),
        "milestone": null,
        "assignee": null,
        "assignees": null,
        "state": state(issue),
        "is_locked": false,
        "comments": issue.comments.len(),
        "created_at": time(&issue.created_at),
        "updated_at": time(&issue.updated_at),
        "closed_at": issue.closed_at.as_ref().map(time),
        "due_date": null,
        "time_estimate": 0,
        "pull_request": pull_request,
        "repository": { "id": repo.id, "name": repo.name, "owner": repo.owner, "full_name": repo.full_name() },
        "pin_order": 0,
    })
}

pub(super) fn comment(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue, comment: &FakeComment) -> Value {
    let html = ctx.html_url(repo, issue);
    // On a pull request Gitea fills `pull_request_url` and leaves `issue_url` empty.
    let (pull_url, issue_url) = if issue.pull.is_some() { (html.as_str(), "") } else { ("", html.as_str()) };
    json!({
        "id": comment.id,
        "html_url": format!("{html}#issuecomment-{}", comment.id),
        "pull_request_url": pull_url,
        "issue_url": issue_url,
        "user": user(ctx, &comment.user),
        "original_author": "",
        "original_author_id": 0,
        "body": comment.body,
        "assets": [],
        "created_at": time(&comment.created_at),
        "updated_at": time(&comment.updated_at),
    })
}

pub(super) fn pull(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue) -> Value {
    let part = issue.pull.as_ref().expect("a pull request");
    let html = ctx.html_url(repo, issue);
    let base_sha = shown_sha(repo, &part.base, &part.base_sha);
    let git_ref = |branch: &str, sha: &str| json!({ "label": branch, "ref": branch, "sha": sha, "repo_id": repo.id, "repo": self::repo(ctx, repo) });
    json!({
        "id": part.id,
        "url": html,
        "number": issue.number,
        "user": user(ctx, &issue.user),
        "title": issue.title,
        "body": issue.body,
        "labels": ctx.labels(repo, issue),
        "milestone": null,
        "assignee": null,
        "assignees": null,
        "requested_reviewers": null,
        "requested_reviewers_teams": null,
        "state": state(issue),
        "draft": part.draft,
        "is_locked": false,
        "comments": issue.comments.len(),
        "review_comments": 0,
        "additions": 0,
        "deletions": 0,
        "changed_files": 0,
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "mergeable": true,
        "merged": false,
        "merged_at": null,
        "merge_commit_sha": null,
        "merged_by": null,
        "allow_maintainer_edit": false,
        "base": git_ref(&part.base, &base_sha),
        "head": with_head_repo(git_ref(&part.head, &shown_sha(repo, &part.head, &part.head_sha)), part),
        "merge_base": base_sha,
        "due_date": null,
        "created_at": time(&issue.created_at),
        "updated_at": time(&issue.updated_at),
        "closed_at": issue.closed_at.as_ref().map(time),
        "pin_order": 0,
    })
}

pub(super) fn reaction(ctx: &Ctx, reaction: &FakeReaction) -> Value {
    json!({
        "user": user(ctx, &reaction.user),
        "content": reaction.content,
        "created_at": time(&reaction.created_at),
    })
}

fn state(issue: &FakeIssue) -> &'static str {
    match issue.state {
        IssueState::Open => "open",
        IssueState::Closed => "closed",
    }
}

/// A review as `GET /pulls/{n}/reviews` lists it (Gitea's `PullReview`).
pub(super) fn review(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue, review: &FakeReview) -> Value {
    let state = match review.state.as_str() {
        "approved" => "APPROVED",
        "changes_requested" => "REQUEST_CHANGES",
        _ => "COMMENT",
    };
    let part = issue.pull.as_ref().expect("a pull request");
    let comments = part.review_comments.iter().filter(|c| c.review_id == review.id).count();
    json!({
        "id": review.id,
        "user": user(ctx, &review.user),
        "team": null,
        "state": state,
        "body": review.body,
        "commit_id": review.commit_id,
        "stale": false,
        "official": false,
        "dismissed": false,
        "comments_count": comments,
        "submitted_at": time(&review.submitted_at),
        "updated_at": time(&review.submitted_at),
        "html_url": format!("{}#issuecomment-{}", ctx.html_url(repo, issue), review.id),
        "pull_request_url": ctx.html_url(repo, issue),
    })
}

/// An inline review comment (Gitea's `PullReviewComment`): the line is its `position`.
pub(super) fn review_comment(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue, c: &FakeReviewComment) -> Value {
    json!({
        "id": c.id,
        "body": c.body,
        "user": user(ctx, &c.user),
        "resolver": null,
        "pull_request_review_id": c.review_id,
        "created_at": "2026-12-01T10:00:00Z",
        "updated_at": "2026-12-01T10:00:00Z",
        "path": c.path,
        "commit_id": c.commit_id,
        "original_commit_id": c.commit_id,
        "diff_hunk": c.diff_hunk,
        "position": c.line,
        "original_position": 0,
        "html_url": format!("{}#issuecomment-{}", ctx.html_url(repo, issue), c.id),
        "pull_request_url": ctx.html_url(repo, issue),
    })
}
