//! Circuit breakers, one per agent profile, in the `breakers` table so that every instance
//! on the same database sees the same state.
//!
//! The state machine is plain functions ([`after_run`], [`take_trial`], [`blocks`]); the
//! database applies a new state only over the version it was computed from (compare and
//! set), so two instances never both count from the same state, and exactly one of them
//! wins a half-open breaker's trial.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::entities::breakers::{self, Column, Entity, Model};
use super::limits::{self, clean};
use super::{Db, DbError};
use crate::config::BreakerSettings;

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Tasks run on the profile.
    Closed,
    /// Too many provider failures: tasks go to the fallback profile or wait.
    Open,
    /// The cool-down passed and one trial task was let through; its end decides.
    HalfOpen,
}

impl BreakerState {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The state stored as `word`; anything unknown reads as closed.
    pub fn parse(word: &str) -> BreakerState {
        match word {
            "open" => BreakerState::Open,
            "half_open" => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// A breaker's state changed: the one place a change is logged, and where a notification
/// can be hooked in.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerChange {
    pub profile: String,
    pub from: BreakerState,
    pub to: BreakerState,
    pub last_error: Option<String>,
}

/// A closed breaker of `profile`, as one that has no row yet.
pub fn closed(profile: &str, now: DateTime<Utc>) -> Model {
    Model {
        profile: profile.to_owned(),
        state: BreakerState::Closed.as_str().to_owned(),
        failures: 0,
        window_started_at: None,
        opened_at: None,
        trial_at: None,
        last_error: None,
        version: 0,
        updated_at: now,
    }
}

/// The breaker after a run on its profile ended: `provider_error` is the reason of a
/// provider failure, `None` a run the provider answered. A failure opens a closed breaker
/// once it is the `rules.failures`-th in `rules.window_secs`, and opens a half-open one
/// again; an answered run closes it.
pub fn after_run(
    old: &Model,
    provider_error: Option<&str>,
    rules: &BreakerSettings,
    now: DateTime<Utc>,
) -> Model {
    let mut new = old.clone();
    new.updated_at = now;
    let Some(error) = provider_error else {
        new.state = BreakerState::Closed.as_str().to_owned();
        new.failures = 0;
        new.window_started_at = None;
        new.trial_at = None;
        return new;
    };
    new.last_error = Some(clean(error, limits::ERROR));
    let window = Duration::seconds(rules.window_secs as i64);
    let in_window = old.window_started_at.is_some_and(|start| now - start <= window);
    (new.failures, new.window_started_at) =
        if in_window { (old.failures + 1, old.window_started_at) } else { (1, Some(now)) };
    let open = match BreakerState::parse(&old.state) {
        BreakerState::Closed => new.failures >= rules.failures as i32,
        BreakerState::HalfOpen => true,
        // Runs that started before it opened: it stays open from when it opened.
        BreakerState::Open => false,
    };
    if open {
        new.state = BreakerState::Open.as_str().to_owned();
        new.opened_at = Some(now);
        new.trial_at = None;
    }
    new
}

/// The breaker with its one trial taken, when it lets one through now: open for
/// `rules.cooldown_secs`, or half-open with a trial that went unanswered as long (its
/// task ended before the agent ran, or its instance died).
pub fn take_trial(old: &Model, rules: &BreakerSettings, now: DateTime<Utc>) -> Option<Model> {
    let cooldown = Duration::seconds(rules.cooldown_secs as i64);
    let since = match BreakerState::parse(&old.state) {
        BreakerState::Closed => return None,
        BreakerState::Open => old.opened_at,
        BreakerState::HalfOpen => old.trial_at,
    };
    if since.is_some_and(|since| now - since < cooldown) {
        return None;
    }
    let mut new = old.clone();
    new.state = BreakerState::HalfOpen.as_str().to_owned();
    new.trial_at = Some(now);
    new.updated_at = now;
    Some(new)
}

/// The breaker after an unused trial is given back: open, its cool-down already over, so
/// the next claim may take the trial again.
pub fn give_back_trial(old: &Model, now: DateTime<Utc>) -> Option<Model> {
    if BreakerState::parse(&old.state) != BreakerState::HalfOpen {
        return None;
    }
    let mut new = old.clone();
    new.state = BreakerState::Open.as_str().to_owned();
    new.trial_at = None;
    new.updated_at = now;
    Some(new)
}

/// True when the breaker keeps tasks off its profile now (open, or half-open with its
/// trial under way).
pub fn blocks(breaker: &Model) -> bool {
    BreakerState::parse(&breaker.state) != BreakerState::Closed
}

/// Where a task routed to `profile` runs while the breakers named in `blocking` keep
/// tasks off their profiles: the first profile along the `fallback` chain whose breaker
/// lets it, or `None` when none does (the task waits). Stops at a profile seen before,
/// so a chain that loops (refused in the configuration) cannot hang it.
pub fn route(
    profile: &str,
    fallback_of: impl Fn(&str) -> Option<String>,
    blocking: &[&str],
) -> Option<String> {
    let mut seen = vec![profile.to_owned()];
    let mut at = profile.to_owned();
    while blocking.contains(&at.as_str()) {
        at = fallback_of(&at)?;
        if seen.contains(&at) {
            return None;
        }
        seen.push(at.clone());
    }
    Some(at)
}

impl Db {
    /// Every breaker that has a row, by profile name.
    pub async fn breakers(&self) -> Result<Vec<Model>, DbError> {
        Ok(Entity::find().order_by_asc(Column::Profile).all(&self.conn).await?)
    }

    /// Counts a run on `profile` that ended: a provider failure with its reason, or
    /// `None` for a run the provider answered. The change of state, if any.
    pub async fn record_breaker_run(
        &self,
        profile: &str,
        provider_error: Option<&str>,
        rules: &BreakerSettings,
    ) -> Result<Option<BreakerChange>, DbError> {
        let change = self
            .change_breaker(profile, |old, now| {
                let new = after_run(old, provider_error, rules, now);
                // A closed breaker meeting a success has nothing to write.
                (new.state != old.state || new.failures != old.failures || provider_error.is_some())
                    .then_some(new)
            })
            .await?;
        if let Some(change) = change.as_ref().filter(|c| c.from != c.to) {
            let event = match change.to {
                BreakerState::Open => Some(super::notify::NotifyEvent::BreakerOpened),
                BreakerState::Closed => Some(super::notify::NotifyEvent::BreakerClosed),
                BreakerState::HalfOpen => None,
            };
            if let Some(event) = event {
                // Right after the change that won the compare-and-set: one instance says it.
                let payload = serde_json::json!({
                    "profile": change.profile,
                    "last_error": change.last_error,
                });
                super::notify::enqueue(&self.conn, event, None, None, payload).await?;
            }
        }
        Ok(change)
    }

    /// Takes the one trial of `profile`'s breaker if it lets one through now; true when
    /// this caller has it (see [`take_trial`]).
    pub async fn take_breaker_trial(&self, profile: &str, rules: &BreakerSettings) -> Result<bool, DbError> {
        let change = self.change_breaker(profile, |old, now| take_trial(old, rules, now)).await?;
        Ok(change.is_some())
    }

    /// Gives back a trial no task used (see [`give_back_trial`]).
    pub async fn give_back_breaker_trial(&self, profile: &str) -> Result<(), DbError> {
        self.change_breaker(profile, give_back_trial).await?;
        Ok(())
    }

    /// Applies `change` to the breaker as stored, retrying when another writer came first.
    /// `Some` when `change` applied (with the states before and after).
    async fn change_breaker(
        &self,
        profile: &str,
        change: impl Fn(&Model, DateTime<Utc>) -> Option<Model>,
    ) -> Result<Option<BreakerChange>, DbError> {
        let start = insert_row(closed(profile, Utc::now()));
        let on_conflict = OnConflict::column(Column::Profile).do_nothing().to_owned();
        Entity::insert(start).on_conflict(on_conflict).try_insert().exec(&self.conn).await?;
        loop {
            let Some(old) = Entity::find_by_id(profile).one(&self.conn).await? else { return Ok(None) };
            let Some(new) = change(&old, Utc::now()) else { return Ok(None) };
            let written = Entity::update_many()
                .col_expr(Column::State, Expr::value(new.state.clone()))
                .col_expr(Column::Failures, Expr::value(new.failures))
                .col_expr(Column::WindowStartedAt, Expr::value(new.window_started_at))
                .col_expr(Column::OpenedAt, Expr::value(new.opened_at))
                .col_expr(Column::TrialAt, Expr::value(new.trial_at))
                .col_expr(Column::LastError, Expr::value(new.last_error.clone()))
                .col_expr(Column::UpdatedAt, Expr::value(new.updated_at))
                .col_expr(Column::Version, Expr::value(old.version + 1))
                .filter(Column::Profile.eq(profile))
                .filter(Column::Version.eq(old.version))
                .exec(&self.conn)
                .await?;
            if written.rows_affected == 1 {
                return Ok(Some(BreakerChange {
                    profile: profile.to_owned(),
                    from: BreakerState::parse(&old.state),
                    to: BreakerState::parse(&new.state),
                    last_error: new.last_error,
                }));
            }
        }
    }
}

/// `model` as a row to insert, every column set.
fn insert_row(model: Model) -> breakers::ActiveModel {
    breakers::ActiveModel {
        profile: Set(model.profile),
        state: Set(model.state),
        failures: Set(model.failures),
        window_started_at: Set(model.window_started_at),
        opened_at: Set(model.opened_at),
        trial_at: Set(model.trial_at),
        last_error: Set(model.last_error),
        version: Set(model.version),
        updated_at: Set(model.updated_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> BreakerSettings {
        BreakerSettings { failures: 2, window_secs: 60, cooldown_secs: 30 }
    }

    fn state(b: &Model) -> BreakerState {
        BreakerState::parse(&b.state)
    }

    #[test]
    fn failures_in_the_window_open_it_and_a_success_closes_it() {
        let t0 = Utc::now();
        let b = closed("opus", t0);
        let once = after_run(&b, Some("HTTP 529"), &rules(), t0);
        assert_eq!((state(&once), once.failures), (BreakerState::Closed, 1));
        // The window passed: counting starts again.
        let later = after_run(&once, Some("HTTP 529"), &rules(), t0 + Duration::seconds(61));
        assert_eq!((state(&later), later.failures), (BreakerState::Closed, 1));
        let twice = after_run(&later, Some("HTTP 529"), &rules(), t0 + Duration::seconds(70));
        assert_eq!(state(&twice), BreakerState::Open);
        assert_eq!(twice.opened_at, Some(t0 + Duration::seconds(70)));
        assert_eq!(twice.last_error.as_deref(), Some("HTTP 529"));
        assert!(blocks(&twice));
        let ok = after_run(&twice, None, &rules(), t0 + Duration::seconds(80));
        assert_eq!((state(&ok), ok.failures), (BreakerState::Closed, 0));
        assert!(!blocks(&ok));
    }

    #[test]
    fn routes_follow_the_fallbacks_past_open_breakers() {
        let fallback_of = |name: &str| match name {
            "opus" => Some("sonnet".to_owned()),
            "sonnet" => Some("haiku".to_owned()),
            "a" => Some("b".to_owned()),
            "b" => Some("a".to_owned()),
            _ => None,
        };
        assert_eq!(route("opus", fallback_of, &[]).as_deref(), Some("opus"));
        assert_eq!(route("opus", fallback_of, &["opus"]).as_deref(), Some("sonnet"));
        assert_eq!(route("opus", fallback_of, &["opus", "sonnet"]).as_deref(), Some("haiku"));
        assert_eq!(route("opus", fallback_of, &["opus", "sonnet", "haiku"]), None);
        assert_eq!(route("default", fallback_of, &["default"]), None);
        assert_eq!(route("a", fallback_of, &["a", "b"]), None);
    }

    #[test]
    fn one_trial_after_the_cooldown_and_its_failure_opens_it_again() {
        let t0 = Utc::now();
        let open = after_run(&after_run(&closed("p", t0), Some("x"), &rules(), t0), Some("x"), &rules(), t0);
        assert_eq!(state(&open), BreakerState::Open);
        assert!(take_trial(&open, &rules(), t0 + Duration::seconds(29)).is_none());
        let trial = take_trial(&open, &rules(), t0 + Duration::seconds(30)).expect("cooled down");
        assert_eq!(state(&trial), BreakerState::HalfOpen);
        // The trial is under way: no second one until it is as old as a cool-down.
        assert!(take_trial(&trial, &rules(), t0 + Duration::seconds(31)).is_none());
        assert!(take_trial(&trial, &rules(), t0 + Duration::seconds(60)).is_some());
        let failed = after_run(&trial, Some("HTTP 503"), &rules(), t0 + Duration::seconds(40));
        assert_eq!(
            (state(&failed), failed.opened_at),
            (BreakerState::Open, Some(t0 + Duration::seconds(40)))
        );
        let back = give_back_trial(&trial, t0 + Duration::seconds(31)).unwrap();
        assert_eq!(state(&back), BreakerState::Open);
        assert!(take_trial(&back, &rules(), t0 + Duration::seconds(31)).is_some());
        assert!(take_trial(&closed("p", t0), &rules(), t0).is_none());
    }
}
