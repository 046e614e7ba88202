//! How much of each text forgehand stores, in characters, and [`clean`], which applies
//! them. Forges send what their users typed; nothing gains from keeping a 25 MB title.

/// A webhook delivery's id.
pub const DELIVERY_ID: usize = 200;
/// A webhook's event name (`issues`, `pull_request_review`, …).
pub const EVENT_NAME: usize = 100;
/// A webhook's action (`labeled`, `created`, …).
pub const ACTION: usize = 100;
/// A repository's `owner/name` on a delivery.
pub const REPO: usize = 300;
/// A forge login (sender, requester).
pub const LOGIN: usize = 200;
/// An issue's title.
pub const TITLE: usize = 1000;
/// A task's instructions, and those kept for its follow-up (64 KiB).
pub const INSTRUCTIONS: usize = 65_536;
/// A repository's clone URL.
pub const CLONE_URL: usize = 2000;
/// A git branch name.
pub const BRANCH: usize = 255;
/// Why a delivery led where it did (`deliveries.reason`).
pub const REASON: usize = 2000;
/// Why a task failed, was cancelled or waits (`tasks.error`, `tasks.wait_reason`).
pub const ERROR: usize = 2000;
/// A line of a task's timeline.
pub const TIMELINE_MESSAGE: usize = 4000;
/// A line the dashboard adds to a timeline (a retry), before the timeline's own limit.
pub const DASHBOARD_NOTE: usize = 500;
/// The agent's final text.
pub const RESULT_TEXT: usize = 65_536;
/// The tail of a setup or check command's output kept for the task page (16 KiB).
pub const STEP_OUTPUT: usize = 16_384;
/// A setup or check command line, or an agent run's outcome.
pub const STEP_TEXT: usize = 2000;
/// An agent's question.
pub const QUESTION: usize = 4000;
/// One answer to a question.
pub const ANSWER: usize = 16_384;

/// Makes forge-supplied text safe to store on every backend: PostgreSQL refuses NUL
/// characters, and the text is cut to `max_chars`.
pub fn clean(text: &str, max_chars: usize) -> String {
    // The common case, copied whole: a char is at least one byte, so a text of at most
    // `max_chars` bytes without NUL is already clean (issue bodies pass here per delivery).
    if text.len() <= max_chars && !text.as_bytes().contains(&0) {
        return text.to_owned();
    }
    text.chars().filter(|&c| c != '\0').take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn clean_drops_nul_and_cuts_at_characters_not_bytes() {
        assert_eq!(clean("plain text", 100), "plain text");
        assert_eq!(clean("a\0b\0c", 100), "abc");
        assert_eq!(clean("héllo wörld", 4), "héll");
        // Eight bytes but five characters: within a limit of 5 characters, kept whole.
        assert_eq!(clean("ééé12", 5), "ééé12");
        assert_eq!(clean("abcdef", 3), "abc");
    }
}
