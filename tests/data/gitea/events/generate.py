#!/usr/bin/env python3
"""Writes one payload per event a Gitea/Forgejo repository webhook sends, and index.json.

Shapes follow Gitea's `modules/structs/hook.go` (the *Payload structs) and the structs
they embed (`structs.Issue`, `PullRequest`, `Comment`, `Release`, `Repository`, `User`,
`PayloadCommit`, `CommitStatus`, `Package`, `ActionWorkflowRun`/`Job`), written from
knowledge of that source (no copy of it is at hand): see tests/data/README.md. The
user, repository, issue and pull request objects are the hand-checked ones of the
fixtures one level up, so every file shares them. Each file is what Gitea marshals
(`json.MarshalIndent(p, "", "  ")`, no trailing newline).

Header values (`X-Gitea-Event` and `X-Gitea-Event-Type`) come from Gitea's
`HookEventType` and its `Event()` method: index.json lists them per file.

Run from anywhere: python3 tests/data/gitea/events/generate.py
"""

import copy
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
UP = os.path.dirname(HERE)


def load(name):
    with open(os.path.join(UP, name), encoding="utf-8") as f:
        return json.load(f)


LABELED = load("issues_label_updated.json")
REVIEW = load("pull_request_rejected.json")
PUSH = load("push.json")
COMMENT_PR = load("issue_comment_pr.json")

REPO = LABELED["repository"]
ALICE = LABELED["sender"]
ISSUE = LABELED["issue"]
PULL = REVIEW["pull_request"]
COMMIT = PUSH["head_commit"]
SHA = PULL["head"]["sha"]
WEB = "https://gitea.example.com"
API = WEB + "/api/v1"
BUG = ISSUE["labels"][0]
MILESTONE = {
    "id": 2, "title": "v1.1", "description": "", "state": "open", "open_issues": 3,
    "closed_issues": 1, "created_at": "2024-04-01T09:00:00Z", "updated_at": "2024-05-02T10:00:00Z",
    "closed_at": None, "due_on": None,
}
ISSUE_COMMENT = {
    "id": 1207, "html_url": WEB + "/acme/widgets/issues/42#issuecomment-1207", "pull_request_url": "",
    "issue_url": WEB + "/acme/widgets/issues/42", "user": ALICE, "original_author": "",
    "original_author_id": 0, "body": "Any progress on this?", "assets": [],
    "created_at": "2024-05-02T10:00:00Z", "updated_at": "2024-05-02T10:00:00Z",
}


def issue(**changes):
    out = copy.deepcopy(ISSUE)
    out.update(changes)
    return out


def pull(**changes):
    out = copy.deepcopy(PULL)
    out.update(changes)
    return out


def issue_payload(action, **extra):
    # IssuePayload: action, number, changes (omitempty), issue, repository, sender, commit_id
    body = {"action": action, "number": 42, "issue": issue(), "repository": REPO, "sender": ALICE,
            "commit_id": ""}
    body.update(extra)
    return body


def pull_payload(action, **extra):
    # PullRequestPayload: action, number, changes, pull_request, requested_reviewer,
    # repository, sender, commit_id, review (omitempty)
    body = {"action": action, "number": 43, "pull_request": pull(), "requested_reviewer": None,
            "repository": REPO, "sender": ALICE, "commit_id": ""}
    body.update(extra)
    return body


def comment_payload(action, on_pull, **extra):
    # IssueCommentPayload: action, issue, pull_request (omitempty), comment, changes
    # (omitempty), repository, sender, is_pull
    if on_pull:
        body = copy.deepcopy(COMMENT_PR)
        body["action"] = action
    else:
        body = {"action": action, "issue": issue(), "comment": ISSUE_COMMENT, "repository": REPO,
                "sender": ALICE, "is_pull": False}
    body.update(extra)
    return body


def review_payload(kind, content):
    body = copy.deepcopy(REVIEW)
    body["review"] = {"type": kind, "content": content}
    return body


RELEASE = {
    "id": 14, "tag_name": "v1.1.0", "target_commitish": "main", "name": "v1.1.0",
    "body": "The verbose release.", "url": API + "/repos/acme/widgets/releases/14",
    "html_url": WEB + "/acme/widgets/releases/tag/v1.1.0",
    "tarball_url": WEB + "/acme/widgets/archive/v1.1.0.tar.gz",
    "zipball_url": WEB + "/acme/widgets/archive/v1.1.0.zip", "upload_url": API + "/repos/acme/widgets/releases/14/assets",
    "draft": False, "prerelease": False, "created_at": "2024-05-03T10:00:00Z",
    "published_at": "2024-05-03T10:00:00Z", "author": ALICE, "assets": [],
}
ORG = {"id": 7, "name": "acme", "full_name": "Acme", "email": "", "avatar_url": WEB + "/avatars/7",
       "description": "", "website": "", "location": "", "visibility": "public",
       "repo_admin_change_team_access": False, "username": "acme"}
STATUS = {
    "id": 88, "status": "success", "target_url": WEB + "/acme/widgets/actions/runs/5",
    "description": "Successful in 42s", "url": API + "/repos/acme/widgets/statuses/" + SHA,
    "context": "ci / test (push)", "creator": ALICE, "created_at": "2024-05-02T10:00:00Z",
    "updated_at": "2024-05-02T10:00:42Z",
}
PACKAGE = {
    "id": 3, "owner": ALICE, "repository": REPO, "creator": ALICE, "type": "generic",
    "name": "widgets", "version": "1.1.0", "html_url": WEB + "/alice/-/packages/generic/widgets/1.1.0",
    "created_at": "2024-05-03T10:00:00Z",
}
WORKFLOW_RUN = {
    "id": 5, "url": API + "/repos/acme/widgets/actions/runs/5", "html_url": WEB + "/acme/widgets/actions/runs/5",
    "display_title": "Add a --verbose flag", "path": "ci.yml@refs/heads/main", "event": "push",
    "run_attempt": 1, "run_number": 5, "repository_id": REPO["id"], "head_sha": SHA, "head_branch": "main",
    "status": "completed", "actor": ALICE, "trigger_actor": ALICE, "repository": REPO,
    "head_repository": REPO, "conclusion": "success", "started_at": "2024-05-02T10:00:00Z",
    "completed_at": "2024-05-02T10:00:42Z",
}
WORKFLOW_JOB = {
    "id": 9, "url": API + "/repos/acme/widgets/actions/jobs/9", "html_url": WEB + "/acme/widgets/actions/runs/5/jobs/0",
    "run_id": 5, "run_url": WORKFLOW_RUN["url"], "name": "test", "labels": ["ubuntu-latest"],
    "run_attempt": 1, "head_sha": SHA, "head_branch": "main", "status": "completed",
    "conclusion": "success", "runner_id": 1, "runner_name": "runner-1", "steps": [],
    "created_at": "2024-05-02T10:00:00Z", "started_at": "2024-05-02T10:00:01Z",
    "completed_at": "2024-05-02T10:00:42Z",
}
WORKFLOW = {"id": "ci.yml", "name": "ci", "path": ".gitea/workflows/ci.yml", "state": "active",
            "created_at": "2024-04-01T09:00:00Z", "updated_at": "2024-04-01T09:00:00Z",
            "url": API + "/repos/acme/widgets/actions/workflows/ci.yml",
            "html_url": WEB + "/acme/widgets/actions?workflow=ci.yml", "badge_url": ""}

# (event header, event type header, file name, body)
EVENTS = [
    ("create", "create", "create_branch.json",
     {"sha": SHA, "ref": "forgehand/issue-42-add-a-verbose-flag-to-the-cli", "ref_type": "branch",
      "repository": REPO, "sender": ALICE}),
    ("create", "create", "create_tag.json",
     {"sha": SHA, "ref": "v1.1.0", "ref_type": "tag", "repository": REPO, "sender": ALICE}),
    ("delete", "delete", "delete_branch.json",
     {"ref": "forgehand/issue-42-add-a-verbose-flag-to-the-cli", "ref_type": "branch", "pusher_type": "user",
      "repository": REPO, "sender": ALICE}),
    ("fork", "fork", "fork.json",
     {"forkee": REPO, "repository": dict(REPO, full_name="alice/widgets", name="widgets", fork=True),
      "sender": ALICE}),
    ("push", "push", "push_commits.json",
     dict(PUSH, before="1" * 40, after=SHA, commits=[dict(COMMIT, id=SHA, message="Add --verbose\n")],
          head_commit=dict(COMMIT, id=SHA, message="Add --verbose\n"))),
    ("issues", "issues", "issues_opened.json", issue_payload("opened")),
    ("issues", "issues", "issues_edited.json",
     issue_payload("edited", changes={"title": {"from": "Add a verbose flag"}})),
    ("issues", "issues", "issues_reopened.json", issue_payload("reopened")),
    ("issues", "issues", "issues_deleted.json", issue_payload("deleted")),
    ("issues", "issue_assign", "issue_assign_assigned.json",
     issue_payload("assigned", issue=issue(assignee=ALICE, assignees=[ALICE]))),
    ("issues", "issue_assign", "issue_assign_unassigned.json", issue_payload("unassigned")),
    ("issues", "issue_label", "issue_label_updated.json", LABELED),
    ("issues", "issue_label", "issue_label_cleared.json", issue_payload("label_cleared", issue=issue(labels=[]))),
    ("issues", "issue_milestone", "issue_milestone_milestoned.json",
     issue_payload("milestoned", issue=issue(milestone=MILESTONE))),
    ("issues", "issue_milestone", "issue_milestone_demilestoned.json", issue_payload("demilestoned")),
    ("issue_comment", "issue_comment", "issue_comment_created.json", comment_payload("created", False)),
    ("issue_comment", "issue_comment", "issue_comment_edited.json",
     comment_payload("edited", False, changes={"body": {"from": "Any news?"}})),
    ("issue_comment", "issue_comment", "issue_comment_deleted.json", comment_payload("deleted", False)),
    ("issue_comment", "pull_request_comment", "pull_request_comment_created.json", comment_payload("created", True)),
    ("pull_request", "pull_request", "pull_request_opened.json", pull_payload("opened")),
    ("pull_request", "pull_request", "pull_request_edited.json",
     pull_payload("edited", changes={"body": {"from": ""}})),
    ("pull_request", "pull_request", "pull_request_closed.json",
     pull_payload("closed", pull_request=pull(state="closed", merged=True, merged_at="2024-05-03T10:00:00Z",
                                               merged_by=ALICE, merge_commit_sha=SHA))),
    ("pull_request", "pull_request", "pull_request_reopened.json", pull_payload("reopened")),
    ("pull_request", "pull_request_assign", "pull_request_assign_assigned.json",
     pull_payload("assigned", pull_request=pull(assignee=ALICE, assignees=[ALICE]))),
    ("pull_request", "pull_request_label", "pull_request_label_updated.json",
     pull_payload("label_updated", pull_request=pull(labels=[BUG]))),
    ("pull_request", "pull_request_label", "pull_request_label_cleared.json",
     pull_payload("label_cleared", pull_request=pull(labels=[]))),
    ("pull_request", "pull_request_milestone", "pull_request_milestone_milestoned.json",
     pull_payload("milestoned", pull_request=pull(milestone=MILESTONE))),
    ("pull_request", "pull_request_sync", "pull_request_sync.json", pull_payload("synchronized")),
    ("pull_request", "pull_request_review_request", "pull_request_review_requested.json",
     pull_payload("review_requested", requested_reviewer=ALICE)),
    ("pull_request", "pull_request_review_request", "pull_request_review_request_removed.json",
     pull_payload("review_request_removed", requested_reviewer=ALICE)),
    ("pull_request_approved", "pull_request_review_approved", "pull_request_review_approved.json",
     review_payload("pull_request_review_approved", "Looks good.")),
    ("pull_request_rejected", "pull_request_review_rejected", "pull_request_review_rejected.json", REVIEW),
    ("pull_request_comment", "pull_request_review_comment", "pull_request_review_comment.json",
     review_payload("pull_request_review_comment", "Why stderr?")),
    ("wiki", "wiki", "wiki_created.json",
     {"action": "created", "repository": REPO, "sender": ALICE, "page": "Home", "comment": "Add Home"}),
    ("wiki", "wiki", "wiki_edited.json",
     {"action": "edited", "repository": REPO, "sender": ALICE, "page": "Home", "comment": "Update Home"}),
    ("repository", "repository", "repository_created.json",
     {"action": "created", "repository": REPO, "organization": ORG, "sender": ALICE}),
    ("repository", "repository", "repository_deleted.json",
     {"action": "deleted", "repository": REPO, "organization": ORG, "sender": ALICE}),
    ("release", "release", "release_published.json",
     {"action": "published", "release": RELEASE, "repository": REPO, "sender": ALICE}),
    ("release", "release", "release_updated.json",
     {"action": "updated", "release": RELEASE, "repository": REPO, "sender": ALICE}),
    ("release", "release", "release_deleted.json",
     {"action": "deleted", "release": RELEASE, "repository": REPO, "sender": ALICE}),
    ("package", "package", "package_created.json",
     {"action": "created", "repository": REPO, "package": PACKAGE, "organization": None, "sender": ALICE}),
    ("status", "status", "status.json",
     {"commit": {"id": SHA, "message": "Add --verbose\n", "url": COMMIT["url"], "author": COMMIT["author"],
                 "committer": COMMIT["committer"], "verification": None, "timestamp": "2024-05-02T10:00:00Z",
                 "added": None, "removed": None, "modified": None},
      "context": STATUS["context"], "created_at": STATUS["created_at"], "description": STATUS["description"],
      "id": REPO["id"], "repository": REPO, "sender": ALICE, "sha": SHA, "state": "success",
      "target_url": STATUS["target_url"], "updated_at": STATUS["updated_at"]}),
    ("workflow_run", "workflow_run", "workflow_run_completed.json",
     {"action": "completed", "workflow": WORKFLOW, "workflow_run": WORKFLOW_RUN, "pull_request": None,
      "organization": ORG, "repository": REPO, "sender": ALICE}),
    ("workflow_job", "workflow_job", "workflow_job_completed.json",
     {"action": "completed", "workflow_job": WORKFLOW_JOB, "pull_request": None, "organization": ORG,
      "repository": REPO, "sender": ALICE}),
    ("workflow_dispatch", "workflow_dispatch", "workflow_dispatch.json",
     {"workflow": WORKFLOW, "ref": "refs/heads/main", "inputs": {}, "repository": REPO, "sender": ALICE}),
]


def main():
    index = []
    for event, event_type, name, body in EVENTS:
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            f.write(json.dumps(body, indent=2, ensure_ascii=False))
        index.append({"event": event, "event_type": event_type, "file": name})
    with open(os.path.join(HERE, "index.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
