//! Everything that speaks a forge's language. Each forge is one folder (`github/`,
//! `gitea/`) holding its [`Dialect`] (webhook headers, own events, git user name, setup
//! facts), its REST API's table ([`rest::Api`]) and its HTTP transport. Shared here: the
//! [`client::Forge`] trait and its errors, the one REST implementation (`rest.rs`) with its
//! answer models (`models.rs`), the payloads every forge sends alike (`payload.rs`),
//! signatures and forgehand's normalized events.
//!
//! Adding a forge: a folder with its `DIALECT` (and, if its REST API has GitHub's shape,
//! an `Api` table; otherwise its own `Forge` implementation behind `DIALECT.connect`), a
//! `ForgeKind` variant (with its name in `ForgeKind::ALL` and `Display`), and its arm in
//! [`dialect`].

pub mod client;
mod dialect;
pub mod event;
mod gitea;
mod github;
mod models;
pub mod payload;
mod rest;
pub mod signature;

pub use dialect::{Dialect, GitUser, Hosted, SetupFacts, WebhookHeaders};

use crate::config::ForgeKind;

/// The facts of a forge kind.
pub fn dialect(kind: ForgeKind) -> &'static Dialect {
    match kind {
        ForgeKind::Github => &github::DIALECT,
        ForgeKind::Gitea => &gitea::DIALECT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_user_names() {
        assert_eq!(dialect(ForgeKind::Github).git_user.name("bot"), "x-access-token");
        assert_eq!(dialect(ForgeKind::Gitea).git_user.name("bot"), "bot");
        assert_eq!(dialect(ForgeKind::Gitea).git_user.name(""), "forgehand");
    }

    #[test]
    fn only_the_hosted_api_has_a_separate_web_host() {
        let github = dialect(ForgeKind::Github);
        assert_eq!(github.hosted_web("https://api.github.com"), Some("https://github.com"));
        assert_eq!(github.hosted_web("https://ghe.example.com/api/v3"), None);
        assert_eq!(dialect(ForgeKind::Gitea).hosted_web("https://api.github.com"), None);
    }

    #[test]
    fn every_kind_has_its_own_name() {
        let names: Vec<&str> = ForgeKind::ALL.iter().map(|kind| dialect(*kind).name).collect();
        assert_eq!(names, ["GitHub", "Gitea / Forgejo"]);
        assert_eq!("forgejo".parse::<ForgeKind>().ok(), Some(ForgeKind::Gitea));
        assert!("gitlab".parse::<ForgeKind>().is_err());
    }
}
