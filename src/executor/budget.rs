//! Budget caps (`[budget]`, `[[repos]]` `budget_*_usd`): before each claim the spend of the
//! UTC day and month is compared with the caps; a spent cap keeps the tasks it covers
//! `queued`, with the reason on their page and said once on their issue.

use chrono::Utc;

use super::Context;
use super::finish::task_url;
use super::report::{Status, status_comment};
use crate::config::Settings;
use crate::db::entities::tasks;
use crate::db::{DbError, SpendReport};
use crate::forge::client::Forge;

/// A spent cap: the repository it covers (`None`: all of them) and why tasks wait.
#[derive(Debug, Clone, PartialEq)]
pub struct CapReached {
    pub repo: Option<String>,
    pub reason: String,
}

/// What the claim must leave alone: everything, or the tasks of these repositories.
#[derive(Debug, Default, PartialEq)]
pub struct Stops {
    pub all: bool,
    pub repos: Vec<String>,
}

/// True when any budget cap is configured (else the spend is never read).
pub fn any_cap(settings: &Settings) -> bool {
    let global = settings.budget.daily_usd.is_some() || settings.budget.monthly_usd.is_some();
    global || settings.repos.iter().any(|r| r.budget_daily_usd.is_some() || r.budget_monthly_usd.is_some())
}

/// The caps `spend` has reached. A reason names the cap and its key, not the amount spent,
/// so that it stays the same while more is spent (it is said once per task).
pub fn caps_reached(settings: &Settings, spend: &SpendReport) -> Vec<CapReached> {
    let mut reached = Vec::new();
    let check = |repo: Option<&str>, daily: Option<f64>, monthly: Option<f64>, spent: crate::db::Spend| {
        let (what, key) = match repo {
            Some(repo) => (format!("the budget of {repo}"), "budget_*_usd of its [[repos]] entry".to_owned()),
            None => ("the budget".to_owned(), "budget.daily_usd / budget.monthly_usd".to_owned()),
        };
        if let Some(cap) = daily
            && spent.day >= cap
        {
            return Some(format!(
                "{what} for today (${cap:.2} a day) is spent; it starts after midnight UTC or when {key} is raised"
            ));
        }
        if let Some(cap) = monthly
            && spent.month >= cap
        {
            return Some(format!(
                "{what} for this month (${cap:.2} a month) is spent; it starts on the 1st (UTC) or when {key} is raised"
            ));
        }
        None
    };
    if let Some(reason) = check(None, settings.budget.daily_usd, settings.budget.monthly_usd, spend.total) {
        reached.push(CapReached { repo: None, reason });
    }
    for entry in &settings.repos {
        let spent = spend.repo(&entry.name);
        if let Some(reason) =
            check(Some(&entry.name), entry.budget_daily_usd, entry.budget_monthly_usd, spent)
        {
            reached.push(CapReached { repo: Some(entry.name.to_ascii_lowercase()), reason });
        }
    }
    reached
}

/// Compares the spend with the caps before a claim, and tells the tasks a spent cap
/// keeps waiting.
pub async fn check(ctx: &Context) -> Result<Stops, DbError> {
    if !any_cap(&ctx.settings) {
        return Ok(Stops::default());
    }
    let spend = ctx.db.spend(Utc::now()).await?;
    let mut stops = Stops::default();
    for cap in caps_reached(&ctx.settings, &spend) {
        reached(ctx, &cap).await;
        match cap.repo {
            None => stops.all = true,
            Some(repo) => stops.repos.push(repo),
        }
    }
    Ok(stops)
}

/// A cap keeps tasks waiting: the tasks not told yet get the reason on their page and
/// in their status comment. The one place a spent budget is reported (a log line now;
/// notifications hook in here).
async fn reached(ctx: &Context, cap: &CapReached) {
    let ids = match ctx.db.mark_budget_wait(cap.repo.as_deref(), &cap.reason).await {
        Ok(ids) => ids,
        Err(err) => return tracing::warn!(error = %err, "cannot mark the tasks a budget keeps waiting"),
    };
    if ids.is_empty() {
        return;
    }
    tracing::info!(repo = cap.repo.as_deref().unwrap_or("*"), tasks = ?ids, reason = %cap.reason, "budget reached: tasks wait");
    for id in ids {
        let Ok(Some((task, _))) = ctx.db.task(id).await else { continue };
        if let Some(forge) = ctx.forges.get(&task.forge) {
            tell(ctx, forge.as_ref(), &task, &cap.reason).await;
        }
    }
}

/// Posts (or edits) the waiting task's status comment. Not `finish::post_status`: that
/// one records a new comment under the lease, and a waiting task has none.
async fn tell(ctx: &Context, forge: &dyn Forge, task: &tasks::Model, reason: &str) {
    let body = status_comment(task.id, &task_url(ctx, task.id), &Status::Waiting { reason }, "");
    let result = match task.status_comment_id {
        Some(id) => forge.edit_comment(&task.repo_name(), id as u64, &body).await,
        None => match forge.create_comment(&task.repo_name(), task.issue_number(), &body).await {
            Ok(id) => {
                if let Err(err) = ctx.db.record_waiting_comment(task.id, id).await {
                    tracing::warn!(error = %err, "cannot remember the status comment");
                }
                Ok(())
            }
            Err(err) => Err(err),
        },
    };
    if let Err(err) = result {
        tracing::warn!(task = task.id, error = %err, "cannot say on the issue that the task waits");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Spend;

    #[test]
    fn caps_name_what_is_spent_and_until_when() {
        let mut settings = Settings::load_with_env(None, Default::default()).unwrap();
        assert!(!any_cap(&settings));
        settings.budget.daily_usd = Some(5.0);
        settings.repos.push(crate::config::RepoSettings {
            name: "Acme/Web".into(),
            budget_monthly_usd: Some(20.0),
            ..Default::default()
        });
        assert!(any_cap(&settings));
        let under = SpendReport { total: Spend { day: 4.99, month: 30.0 }, by_repo: vec![] };
        assert_eq!(caps_reached(&settings, &under), []);
        let spend = SpendReport {
            total: Spend { day: 5.0, month: 30.0 },
            by_repo: vec![("acme/web".into(), Spend { day: 1.0, month: 20.5 })],
        };
        let reached = caps_reached(&settings, &spend);
        assert_eq!(reached.len(), 2, "{reached:?}");
        assert_eq!(reached[0].repo, None);
        assert!(reached[0].reason.starts_with("the budget for today ($5.00 a day) is spent"), "{reached:?}");
        assert_eq!(reached[1].repo.as_deref(), Some("acme/web"));
        assert!(reached[1].reason.contains("the budget of Acme/Web for this month ($20.00 a month)"));
    }
}
