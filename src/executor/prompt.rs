//! The agent's prompt, rendered from `templates/prompt.txt`.

use askama::Template;

use crate::forge::IssueNumber;
use crate::forge::client::IssueComment;

/// Everything the prompt says about the task.
#[derive(Template)]
#[template(path = "prompt.txt", escape = "none")]
pub struct Prompt<'a> {
    pub repo: &'a str,
    pub branch: &'a str,
    pub number: IssueNumber,
    pub title: &'a str,
    pub body: &'a str,
    pub requested_by: &'a str,
    pub instructions: &'a str,
    pub follow_up: bool,
    /// The repository's `instructions` (`.forgehand.toml` or `[[repos]]`).
    pub repo_instructions: &'a str,
    /// The repository's check commands, run after the agent.
    pub checks: &'a [String],
    /// Questions the agent may still ask with `ask_question` (0: the tool is not offered).
    pub questions_left: u32,
    /// An earlier question and its answers, for a run that cannot resume its session.
    pub answered: &'a str,
    /// People's comments on the issue, rendered by [`thread`] (empty: none).
    pub comments: &'a str,
    /// What a follow-up answers beyond its instructions: failed checks, inline review
    /// comments (empty: none).
    pub feedback: &'a str,
    /// The issue's attachments fetched into the checkout, and those that were not
    /// (`executor::attachments`; empty: none linked).
    pub attachments: &'a str,
}

/// How much of an issue's comment thread the prompt carries, in characters: the newest
/// comments are kept.
pub const THREAD_CHARS: usize = 16_000;
/// How much of one comment the prompt carries.
const COMMENT_CHARS: usize = 4_000;
/// What marks forgehand's own comments (the status comment, replies).
pub const OWN_MARKER: &str = "<!-- forgehand:";

/// The comments people wrote on the issue, oldest first, as the prompt shows them:
/// forgehand's own comments (by `bot_login`, or carrying its marker) left out, each cut
/// to a few thousand characters, and only the newest that fit in [`THREAD_CHARS`].
pub fn thread(comments: &[IssueComment], bot_login: &str) -> String {
    let own = |c: &IssueComment| {
        (!bot_login.is_empty() && c.author.eq_ignore_ascii_case(bot_login)) || c.body.contains(OWN_MARKER)
    };
    let mut kept = Vec::new();
    let mut used = 0;
    let people: Vec<&IssueComment> =
        comments.iter().filter(|c| !own(c) && !c.body.trim().is_empty()).collect();
    for comment in people.iter().rev() {
        let mut body: String = comment.body.trim().chars().take(COMMENT_CHARS).collect();
        if comment.body.trim().chars().count() > COMMENT_CHARS {
            body.push_str(" […]");
        }
        let author = if comment.author.is_empty() { "someone" } else { &comment.author };
        let entry = format!("@{author} wrote:\n{body}");
        used += entry.chars().count();
        if used > THREAD_CHARS && !kept.is_empty() {
            break;
        }
        kept.push(entry);
    }
    let left_out = people.len() - kept.len();
    kept.reverse();
    let mut text = kept.join("\n\n");
    if left_out > 0 {
        text.insert_str(0, &format!("({left_out} older comments left out)\n\n"));
    }
    text
}

impl Prompt<'_> {
    /// The prompt text.
    pub fn text(&self) -> String {
        // Rendering a template of plain strings cannot fail.
        self.render().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(follow_up: bool, instructions: &str) -> String {
        Prompt {
            repo: "o/r",
            branch: "forgehand/issue-7-x",
            number: 7.into(),
            title: "Add a flag",
            body: "The CLI needs --verbose.",
            requested_by: "alice",
            instructions,
            follow_up,
            repo_instructions: "Use the existing logger.",
            checks: &["cargo test".to_owned()],
            comments: "@bob wrote:\nPlease keep -v too.",
            feedback: "",
            attachments: "Files attached to the issue, downloaded into .forgehand/attachments/ …\n- .forgehand/attachments/01-shot.png",
            questions_left: 2,
            answered: "",
        }
        .text()
    }

    fn comment(author: &str, body: &str) -> IssueComment {
        IssueComment { author: author.to_owned(), body: body.to_owned() }
    }

    #[test]
    fn the_thread_leaves_out_forgehands_own_comments_and_keeps_the_newest() {
        let comments = [
            comment("alice", "first"),
            comment("bot", "working on it"),
            comment("carol", "🤖 status\n\n<!-- forgehand:task:3 -->"),
            comment("bob", "second"),
        ];
        assert_eq!(thread(&comments, "BOT"), "@alice wrote:\nfirst\n\n@bob wrote:\nsecond");
        let long: Vec<IssueComment> =
            (0..10).map(|i| comment("x", &format!("{i}{}", "y".repeat(3000)))).collect();
        let text = thread(&long, "");
        assert!(text.starts_with("(5 older comments left out)"), "{}", &text[..40]);
        assert!(text.contains("@x wrote:\n9y") && !text.contains("@x wrote:\n4y"));
        assert!(text.chars().count() <= THREAD_CHARS + 100);
        let huge = thread(&[comment("x", &"z".repeat(9000))], "");
        assert!(huge.ends_with(" […]") && huge.chars().count() < COMMENT_CHARS + 40);
    }

    #[test]
    fn implement_prompt_names_issue_body_and_rules() {
        let text = prompt(false, "");
        for expected in [
            "o/r",
            "forgehand/issue-7-x",
            "issue #7: Add a flag",
            "The CLI needs --verbose.",
            "Never write secrets",
        ] {
            assert!(text.contains(expected), "{expected} missing in {text}");
        }
        assert!(!text.contains("Further instructions"));
        assert!(text.contains("`ask_question` tool (at most 2 more in this task)"), "{text}");
        assert!(text.contains("Instructions for this repository:\n\nUse the existing logger."), "{text}");
        assert!(text.contains("forgehand runs these checks after you finish:\n- `cargo test`"), "{text}");
        assert!(
            text.contains("Comments on the issue, oldest first:")
                && text.contains("\nFiles attached to the issue"),
            "{text}"
        );
        assert!(!prompt(true, "x").contains("01-shot.png"), "follow-ups carry no attachments");
        assert!(prompt(false, "also docs").contains("Further instructions from @alice:\n\nalso docs"));
        assert!(
            text.contains("Comments on the issue, oldest first:\n\n@bob wrote:\nPlease keep -v too."),
            "{text}"
        );
    }

    #[test]
    fn follow_up_prompt_carries_the_review() {
        let text = prompt(true, "rename it");
        assert!(text.contains("Pull request #7") && text.contains("rename it"), "{text}");
        assert!(!text.contains("The CLI needs --verbose."));
    }
}
