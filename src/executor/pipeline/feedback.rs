//! What a follow-up answers, gathered from the forge when it starts — the checks that failed
//! on the head forgehand pushed (a `checks` task), a review's inline comments (a `review`
//! task) — for the prompt; and, once pushed, the replies in the review's threads.

use super::{Failure, Step};
use crate::db::entities::tasks;
use crate::forge::client::{ErrorKind, FailedCheck, Forge, PullInfo, ReviewComment, ReviewRef};
use crate::forge::event::short_sha;

/// What a follow-up answers.
#[derive(Debug, Default)]
pub(super) struct Feedback {
    /// As the prompt shows it; empty when the instructions say it all.
    pub text: String,
    /// The review's inline comments, replied to after the push.
    pub threads: Vec<ReviewComment>,
}

/// The account of what the follow-up `task` answers on `pull`. A `checks` task whose
/// commit is no longer the head, or whose failures also fail on `base`, ends here, as does
/// a review with neither text nor inline comments.
pub(super) async fn gather(
    forge: &dyn Forge,
    task: &tasks::Model,
    pull: &PullInfo,
    base: &str,
    bot_login: &str,
) -> Step<Feedback> {
    match (task.trigger.as_str(), task.feedback_ref.as_deref()) {
        ("checks", Some(sha)) => {
            Ok(Feedback { text: failed_checks(forge, task, pull, sha, base).await?, threads: Vec::new() })
        }
        ("review", Some(reference)) => review(forge, task, pull, reference, bot_login).await,
        _ => Ok(Feedback::default()),
    }
}

/// The inline comments of the review `reference` names (GitHub: its id; Gitea, whose
/// webhooks carry none: the newest review by the task's requester).
async fn review(
    forge: &dyn Forge,
    task: &tasks::Model,
    pull: &PullInfo,
    reference: &str,
    bot_login: &str,
) -> Step<Feedback> {
    let which = match reference.parse::<u64>() {
        Ok(id) => ReviewRef::Id(id),
        Err(_) => ReviewRef::NewestBy(&task.requested_by),
    };
    let own = |c: &ReviewComment| !bot_login.is_empty() && c.author.eq_ignore_ascii_case(bot_login);
    let comments = match forge.review_comments(&task.repo_name(), pull.number, which).await {
        // A review deleted or dismissed since: its text, if any, is still in the instructions.
        Err(err) if err.kind == ErrorKind::NotFound => {
            tracing::info!(error = %err, "the review's inline comments are gone");
            Vec::new()
        }
        read => read?,
    };
    let threads: Vec<ReviewComment> =
        comments.into_iter().filter(|c| !own(c) && !c.body.trim().is_empty()).collect();
    if threads.is_empty() && task.instructions.trim().is_empty() {
        return Err(Failure::Cancelled {
            reason: format!("the review of #{} has neither text nor inline comments to act on", pull.number),
        });
    }
    Ok(Feedback { text: render_threads(&threads), threads })
}

/// How much of a comment's diff hunk the prompt shows: its last lines, which end at the
/// commented line.
const HUNK_LINES: usize = 12;

/// The review's inline comments as the prompt shows them.
pub(super) fn render_threads(threads: &[ReviewComment]) -> String {
    if threads.is_empty() {
        return String::new();
    }
    let mut text = String::from("The review left these comments on lines of the diff; address each one:\n");
    for (n, comment) in threads.iter().enumerate() {
        let author = if comment.author.is_empty() { "someone" } else { &comment.author };
        text.push_str(&format!("\n{}. `{}`{}, @{author}:\n", n + 1, comment.path, lines(comment)));
        let hunk: Vec<&str> = comment.diff_hunk.lines().collect();
        if !hunk.is_empty() {
            let shown = &hunk[hunk.len().saturating_sub(HUNK_LINES)..];
            text.push_str(&format!("```diff\n{}\n```\n", shown.join("\n")));
        }
        for line in comment.body.trim().lines() {
            text.push_str(&format!("> {line}\n"));
        }
    }
    text
}

fn lines(comment: &ReviewComment) -> String {
    match (comment.start_line, comment.line) {
        (Some(start), Some(end)) if start < end => format!(" lines {start}–{end}"),
        (_, Some(line)) => format!(" line {line}"),
        _ => String::new(),
    }
}

/// After the push (or finding nothing to change): a reply in each thread the review
/// opened — where the forge takes replies — saying whether commit `head` touched the
/// commented file; where it does not (Gitea), one comment on the pull request listing
/// them. Failures are logged, never fatal: the work is pushed.
pub(super) async fn reply(
    forge: &dyn Forge,
    task: &tasks::Model,
    threads: &[ReviewComment],
    head: Option<&str>,
    changed: &[String],
    summary: &str,
) {
    if threads.is_empty() {
        return;
    }
    let said = summary.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let mut listed = Vec::new();
    for comment in threads {
        let text = thread_reply(comment, head, changed, said);
        match forge.reply_to_review_comment(&task.repo_name(), task.issue_number(), comment.id, &text).await {
            Ok(true) => {}
            Ok(false) => listed.push(format!("- `{}`{}: {text}", comment.path, lines(comment))),
            Err(err) => {
                tracing::warn!(error = %err, comment = comment.id, "cannot reply in the review thread")
            }
        }
    }
    if !listed.is_empty() {
        let body = format!("On the review's comments:\n\n{}", listed.join("\n"));
        if let Err(err) = forge.create_comment(&task.repo_name(), task.issue_number(), &body).await {
            tracing::warn!(error = %err, "cannot comment on the review's threads");
        }
    }
}

/// What forgehand says in one review thread.
pub(super) fn thread_reply(
    comment: &ReviewComment,
    head: Option<&str>,
    changed: &[String],
    said: &str,
) -> String {
    let detail = if said.is_empty() { String::new() } else { format!(" {said}") };
    match head {
        Some(head) if changed.contains(&comment.path) => {
            format!("Addressed in `{}`.{detail}", short_sha(head))
        }
        Some(head) => format!(
            "Not changed in `{}`: that commit does not touch `{}`; please check whether this still needs doing.{detail}",
            short_sha(head),
            comment.path
        ),
        None => format!("forgehand changed nothing for this.{detail}"),
    }
}

async fn failed_checks(
    forge: &dyn Forge,
    task: &tasks::Model,
    pull: &PullInfo,
    sha: &str,
    base: &str,
) -> Step<String> {
    let short = short_sha(sha);
    let number = pull.number;
    if !pull.head_sha.is_empty() && pull.head_sha != sha {
        return Err(Failure::Cancelled {
            reason: format!(
                "#{number}'s head moved on from {short} (a newer push): its checks are not fixed"
            ),
        });
    }
    let failing = forge.failing_checks(&task.repo_name(), sha).await?;
    if failing.is_empty() {
        return Err(Failure::Cancelled { reason: format!("no check fails on {short} any more") });
    }
    let on_base = forge.failing_checks(&task.repo_name(), base).await?;
    let (inherited, ours): (Vec<_>, Vec<_>) =
        failing.into_iter().partition(|check| on_base.iter().any(|b| b.name == check.name));
    if ours.is_empty() {
        let names: Vec<_> = inherited.iter().map(|c| format!("{:?}", c.name)).collect();
        return Err(Failure::Cancelled {
            reason: format!(
                "the failing checks ({}) fail on {base} too: they are not the pull request's to fix",
                names.join(", ")
            ),
        });
    }
    Ok(render(short, base, &ours, &inherited))
}

/// The failed checks as the prompt shows them.
pub(super) fn render(short: &str, base: &str, ours: &[FailedCheck], inherited: &[FailedCheck]) -> String {
    let mut text = format!(
        "These checks fail on the pull request's head commit {short}. Find the cause and fix the code so that they pass; do not disable, skip or weaken them.\n"
    );
    for check in ours {
        text.push_str(&format!("\n### {} ({})\n", check.name, check.conclusion));
        if !check.url.is_empty() {
            text.push_str(&format!("Details: {}\n", check.url));
        }
        if !check.summary.trim().is_empty() {
            text.push_str(&format!("{}\n", check.summary.trim()));
        }
        if !check.log_tail.trim().is_empty() {
            text.push_str(&format!("The end of its log:\n```\n{}\n```\n", check.log_tail.trim_end()));
        }
    }
    if !inherited.is_empty() {
        let names: Vec<_> = inherited.iter().map(|c| c.name.as_str()).collect();
        text.push_str(&format!(
            "\nThese fail on {base} too, so they are not yours to fix: {}.\n",
            names.join(", ")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(path: &str, start: Option<u32>, line: Option<u32>) -> ReviewComment {
        ReviewComment {
            id: 7,
            author: "bob".into(),
            path: path.into(),
            line,
            start_line: start,
            diff_hunk: (1..=20).map(|n| format!("+line {n}")).collect::<Vec<_>>().join("\n"),
            body: "Use a constant here.\nAnd name it.".into(),
        }
    }

    #[test]
    fn inline_comments_show_file_lines_hunk_and_text() {
        let text =
            render_threads(&[inline("src/main.rs", Some(3), Some(5)), inline("README.md", None, Some(2))]);
        assert!(text.contains("1. `src/main.rs` lines 3–5, @bob:\n```diff\n+line 9\n"), "{text}");
        assert!(!text.contains("+line 8\n"), "only the hunk's last lines: {text}");
        assert!(text.contains("> Use a constant here.\n> And name it.\n"), "{text}");
        assert!(text.contains("2. `README.md` line 2, @bob:"), "{text}");
        assert_eq!(render_threads(&[]), "");
    }

    #[test]
    fn a_reply_says_whether_the_commit_touched_the_file() {
        let comment = inline("src/main.rs", None, Some(5));
        let changed = ["src/main.rs".to_owned()];
        assert_eq!(
            thread_reply(&comment, Some("abcdef123"), &changed, "Added MAX."),
            "Addressed in `abcdef1`. Added MAX."
        );
        let other = thread_reply(&comment, Some("abcdef123"), &["x".to_owned()], "");
        assert!(
            other.starts_with("Not changed in `abcdef1`: that commit does not touch `src/main.rs`"),
            "{other}"
        );
        assert_eq!(
            thread_reply(&comment, None, &[], "Nothing to do."),
            "forgehand changed nothing for this. Nothing to do."
        );
    }

    fn check(name: &str, log: &str) -> FailedCheck {
        FailedCheck {
            name: name.into(),
            conclusion: "failure".into(),
            summary: "1 test failed".into(),
            url: "https://ci/1".into(),
            log_tail: log.into(),
        }
    }

    #[test]
    fn the_prompt_names_each_failed_check_with_its_log_and_what_base_breaks_too() {
        let text = render("abc1234", "main", &[check("ci / test", "assert 2 == 3\n")], &[check("lint", "")]);
        assert!(text.contains("head commit abc1234"), "{text}");
        assert!(text.contains("### ci / test (failure)\nDetails: https://ci/1\n1 test failed\n"), "{text}");
        assert!(text.contains("```\nassert 2 == 3\n```"), "{text}");
        assert!(text.contains("fail on main too, so they are not yours to fix: lint."), "{text}");
    }
}
