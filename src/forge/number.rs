//! [`IssueNumber`]: the number a forge gives an issue or pull request.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An issue's or pull request's number within its repository (both share one sequence).
/// Made where a number enters — a webhook payload, a forge's answer, a stored task — and
/// taken by the [`Forge`](super::client::Forge) trait, the trigger and the task facade.
/// It prints as the bare number, and reads and writes JSON as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(transparent)]
pub struct IssueNumber(u32);

impl IssueNumber {
    /// The number `n`.
    pub const fn new(n: u32) -> IssueNumber {
        IssueNumber(n)
    }

    /// The number itself.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for IssueNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u32> for IssueNumber {
    fn from(n: u32) -> IssueNumber {
        IssueNumber(n)
    }
}

/// How the number is stored (`tasks.number`, `deliveries.number`, `label_states.number`).
impl From<IssueNumber> for i64 {
    fn from(n: IssueNumber) -> i64 {
        i64::from(n.0)
    }
}

impl TryFrom<i64> for IssueNumber {
    type Error = std::num::TryFromIntError;

    fn try_from(n: i64) -> Result<IssueNumber, Self::Error> {
        u32::try_from(n).map(IssueNumber)
    }
}

impl PartialEq<u32> for IssueNumber {
    fn eq(&self, other: &u32) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_reads_as_the_bare_number() {
        let number = IssueNumber::new(42);
        assert_eq!(format!("#{number} {number:>4}"), "#42   42");
        assert_eq!(serde_json::to_string(&number).unwrap(), "42");
        assert_eq!(serde_json::from_str::<IssueNumber>("42").unwrap(), number);
        let negative = serde_json::from_str::<IssueNumber>("-1").unwrap_err().to_string();
        assert!(negative.contains("expected u32"), "{negative}");
    }

    #[test]
    fn stored_numbers_convert_back_when_they_fit() {
        assert_eq!(i64::from(IssueNumber::new(u32::MAX)), 4_294_967_295);
        assert_eq!(IssueNumber::try_from(7_i64).ok(), Some(IssueNumber::new(7)));
        assert!(IssueNumber::try_from(-1_i64).is_err());
        assert!(IssueNumber::try_from(i64::from(u32::MAX) + 1).is_err());
    }
}
