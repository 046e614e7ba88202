//! Webhook payloads, reusing the REST shapes: both forges embed the same objects.

use super::*;

fn webhook(ctx: &Ctx, event: &str, event_type: Option<&str>, payload: Value) -> Webhook {
    Webhook { dialect: ctx.dialect, event: event.into(), event_type: event_type.map(Into::into), payload }
}

/// An issue (or pull request) event; `label` is the one added or removed.
pub(super) fn issue(
    ctx: &Ctx,
    repo: &FakeRepo,
    issue: &FakeIssue,
    action: &str,
    label: Option<&str>,
    sender: &str,
) -> Webhook {
    let pull = issue.pull.is_some();
    let (event, key, object) = if pull {
        ("pull_request", "pull_request", ctx.pull(repo, issue))
    } else {
        ("issues", "issue", ctx.issue(repo, issue))
    };
    let mut payload = json!({ "action": action, "number": issue.number });
    payload[key] = object;
    payload["repository"] = ctx.repo(repo);
    payload["sender"] = ctx.user(sender);
    match ctx.dialect {
        Dialect::Github => {
            if let Some(label) = label {
                let fallback = FakeLabel {
                    id: 0,
                    name: label.into(),
                    color: "ededed".into(),
                    description: String::new(),
                };
                payload["label"] = ctx.label(repo, repo.label(label).unwrap_or(&fallback));
            }
            if !pull {
                payload.as_object_mut().unwrap().remove("number");
            }
            webhook(ctx, event, None, payload)
        }
        Dialect::Gitea => {
            // Gitea sends no `label`: only the set after the change.
            if label.is_some() {
                payload["action"] =
                    if issue.labels.is_empty() { "label_cleared" } else { "label_updated" }.into();
            }
            payload["commit_id"] = "".into();
            let event_type = match (pull, label.is_some()) {
                (false, false) => "issues",
                (false, true) => "issue_label",
                (true, false) => "pull_request",
                (true, true) => "pull_request_label",
            };
            webhook(ctx, event, Some(event_type), payload)
        }
    }
}

pub(super) fn comment(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue, comment: &FakeComment) -> Webhook {
    let mut payload = json!({
        "action": "created",
        "issue": ctx.issue(repo, issue),
        "comment": ctx.comment(repo, issue, comment),
        "repository": ctx.repo(repo),
        "sender": ctx.user(&comment.user),
    });
    match ctx.dialect {
        Dialect::Github => webhook(ctx, "issue_comment", None, payload),
        Dialect::Gitea => {
            let pull = issue.pull.is_some();
            payload["is_pull"] = pull.into();
            let event_type = if pull { "pull_request_comment" } else { "issue_comment" };
            webhook(ctx, "issue_comment", Some(event_type), payload)
        }
    }
}

pub(super) fn review(ctx: &Ctx, repo: &FakeRepo, issue: &FakeIssue, review: &FakeReview) -> Webhook {
    match ctx.dialect {
        Dialect::Github => {
            let html = format!("{}#pullrequestreview-{}", ctx.html_url(repo, issue), review.id);
            let pull_url = format!("{}/pulls/{}", ctx.repo_api(repo), issue.number);
            let review_json = json!({
                "id": review.id,
                "node_id": format!("PRR_kwDO{}", review.id),
                "user": ctx.user(&review.user),
                "body": review.body,
                "commit_id": review.commit_id,
                "submitted_at": time(&review.submitted_at),
                "state": review.state,
                "html_url": html,
                "pull_request_url": pull_url,
                "author_association": github::association(repo, &review.user),
                "_links": { "html": { "href": html }, "pull_request": { "href": pull_url } },
            });
            let payload = json!({
                "action": "submitted",
                "review": review_json,
                "pull_request": ctx.pull(repo, issue),
                "repository": ctx.repo(repo),
                "sender": ctx.user(&review.user),
            });
            webhook(ctx, "pull_request_review", None, payload)
        }
        Dialect::Gitea => {
            let kind = match review.state.as_str() {
                "approved" => "approved",
                "changes_requested" => "rejected",
                _ => "comment",
            };
            let event_type = format!("pull_request_review_{kind}");
            let payload = json!({
                "action": "reviewed",
                "number": issue.number,
                "pull_request": ctx.pull(repo, issue),
                "requested_reviewer": null,
                "repository": ctx.repo(repo),
                "sender": ctx.user(&review.user),
                // Empty in Gitea's review deliveries too.
                "commit_id": "",
                "review": { "type": event_type, "content": review.body },
            });
            webhook(ctx, &format!("pull_request_{kind}"), Some(&event_type), payload)
        }
    }
}

/// A check that finished: GitHub's `check_run` completed, Gitea's `status`.
pub(super) fn check(ctx: &Ctx, repo: &FakeRepo, check: &FakeCheck) -> Webhook {
    match ctx.dialect {
        Dialect::Github => {
            let payload = json!({
                "action": "completed",
                "check_run": github::check_run(ctx, repo, check),
                "repository": ctx.repo(repo),
                "sender": ctx.user("github-actions[bot]"),
            });
            webhook(ctx, "check_run", None, payload)
        }
        Dialect::Gitea => {
            let payload = json!({
                "id": check.id,
                "sha": check.sha,
                "context": check.name,
                "state": check.conclusion,
                "description": check.summary,
                "target_url": format!("{}/actions/runs/{}", ctx.repo_html(repo), check.id),
                "created_at": "2026-12-01T10:00:00Z",
                "updated_at": "2026-12-01T10:01:00Z",
                "commit": null,
                "repository": ctx.repo(repo),
                "sender": ctx.user("gitea-actions"),
            });
            webhook(ctx, "status", Some("status"), payload)
        }
    }
}
