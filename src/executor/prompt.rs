//! The agent's prompt, rendered from `templates/prompt.txt`.

use askama::Template;

use crate::forge::IssueNumber;

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
            questions_left: 2,
            answered: "",
        }
        .text()
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
        assert!(prompt(false, "also docs").contains("Further instructions from @alice:\n\nalso docs"));
    }

    #[test]
    fn follow_up_prompt_carries_the_review() {
        let text = prompt(true, "rename it");
        assert!(text.contains("Pull request #7") && text.contains("rename it"), "{text}");
        assert!(!text.contains("The CLI needs --verbose."));
    }
}
