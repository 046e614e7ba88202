//! The answers to a task's question, as `tasks.answers` stores them (a JSON list).

/// One answer, as intake stored it (`tasks.answers` is a JSON list of them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    /// The login of the person who wrote it.
    pub by: String,
    pub text: String,
}

/// The answers stored on a task; none when the column is empty or unreadable.
pub fn parse_answers(stored: Option<&str>) -> Vec<Answer> {
    stored.and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default()
}

/// `answers` with `new` appended, as stored.
pub fn append_answer(stored: Option<&str>, new: Answer) -> String {
    let mut answers = parse_answers(stored);
    answers.push(new);
    serde_json::to_string(&answers).unwrap_or_default()
}
