//! The reconciliation sweep: forges do not redeliver a webhook that failed (forgehand
//! down, network trouble), so a labelled issue could wait forever. At startup and every
//! `executor.sweep_interval_secs`, the sweep lists the open issues carrying the trigger
//! label and queues an `implement` task for each issue that never had a task.
//!
//! An issue that had a task before, in any status, is left alone: its fate was decided
//! (done, failed, cancelled) and a person relabels it to try again. The issue's author
//! counts as the requester; the executor checks their permission before anything runs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Context;
use crate::config::{ForgeSettings, RepoName};
use crate::db::entities::tasks;
use crate::db::{DbError, IssueKey, TaskFilter};
use crate::forge::IssueNumber;
use crate::forge::client::{Forge, ForgeResult, IssueInfo};
use crate::trigger::{TaskKind, TaskRequest, TriggerKind};

/// How many recent tasks and deliveries name the repositories to sweep when
/// `trigger.repos` is empty.
const RECENT: u64 = 1000;

/// Sweeps at once, then every `executor.sweep_interval_secs` until `stop`; 0 disables.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let interval = ctx.settings.executor.sweep_interval_secs;
    if interval == 0 {
        tracing::info!("sweep disabled (executor.sweep_interval_secs = 0): a missed webhook needs a relabel");
        return;
    }
    loop {
        let queued = sweep_once(&ctx).await;
        if queued > 0 {
            tracing::info!(queued, "the sweep queued tasks for labelled issues whose webhook was missed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(interval)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One pass over every forge and repository; returns how many tasks it queued. Failures
/// are logged and skipped: the next pass tries again.
pub async fn sweep_once(ctx: &Context) -> usize {
    let mut queued = 0;
    for settings in &ctx.settings.forges {
        let Some(forge) = ctx.forges.get(&settings.name) else { continue };
        for repo in repos_to_sweep(ctx, settings).await {
            match sweep_repo(ctx, settings, forge.as_ref(), &repo).await {
                Ok(n) => queued += n,
                Err(err) => {
                    tracing::warn!(forge = %settings.name, %repo, error = %err, "sweep skipped a repository")
                }
            }
        }
    }
    queued
}

/// `trigger.repos`, or else the repositories recent tasks and deliveries came from.
async fn repos_to_sweep(ctx: &Context, forge: &ForgeSettings) -> BTreeSet<RepoName> {
    if !ctx.settings.trigger.repos.is_empty() {
        return ctx.settings.trigger.repos.iter().cloned().collect();
    }
    let mut repos = BTreeSet::new();
    // A GitHub App knows exactly which repositories it is installed on.
    if let Some(client) = ctx.forges.get(&forge.name) {
        match client.installed_repos().await {
            Ok(installed) => repos.extend(installed.unwrap_or_default()),
            Err(err) => {
                tracing::warn!(forge = %forge.name, error = %err, "sweep cannot list the App's repositories")
            }
        }
    }
    let filter = TaskFilter { forge: Some(forge.name.clone()), limit: RECENT, ..Default::default() };
    match ctx.db.list_tasks(&filter).await {
        Ok(tasks) => repos.extend(tasks.iter().map(tasks::Model::repo_name)),
        Err(err) => tracing::warn!(error = %err, "sweep cannot read recent tasks"),
    }
    match ctx.db.recent_deliveries(RECENT).await {
        Ok(deliveries) => repos.extend(
            deliveries
                .into_iter()
                .filter(|d| d.forge == forge.name)
                .filter_map(|d| d.repo)
                .map(RepoName::from),
        ),
        Err(err) => tracing::warn!(error = %err, "sweep cannot read recent deliveries"),
    }
    repos
}

async fn sweep_repo(
    ctx: &Context,
    settings: &ForgeSettings,
    forge: &dyn Forge,
    repo: &RepoName,
) -> anyhow::Result<usize> {
    let label = &ctx.settings.trigger.label;
    let issues = forge.open_issues_with_label(repo, label).await?;
    let mut queued = 0;
    let mut clone_url = None;
    for issue in issues {
        if had_task(ctx, &settings.name, repo, issue.number).await? {
            continue;
        }
        if clone_url.is_none() {
            clone_url = Some(repository_clone_url(forge, repo).await?);
        }
        let url = clone_url.clone().unwrap_or_default();
        if queue(ctx, &settings.name, repo, &url, &issue).await? {
            queued += 1;
        }
    }
    Ok(queued)
}

async fn repository_clone_url(forge: &dyn Forge, repo: &RepoName) -> ForgeResult<String> {
    Ok(forge.repository(repo).await?.clone_url)
}

/// Whether the issue ever had a task, in any status.
async fn had_task(ctx: &Context, forge: &str, repo: &RepoName, number: IssueNumber) -> Result<bool, DbError> {
    let key = IssueKey { forge: forge.to_owned(), repo: repo.clone(), number };
    ctx.db.had_task(&key).await
}

/// Queues the task and wakes the executor; false when another task won the race.
async fn queue(
    ctx: &Context,
    forge: &str,
    repo: &RepoName,
    clone_url: &str,
    issue: &IssueInfo,
) -> anyhow::Result<bool> {
    let request = TaskRequest {
        kind: TaskKind::Implement,
        trigger: TriggerKind::Sweep,
        repo: repo.clone(),
        clone_url: clone_url.to_owned(),
        number: issue.number,
        title: issue.title.clone(),
        requested_by: issue.author.clone(),
        instructions: String::new(),
        branch: None,
        routing: crate::trigger::Routing::from_labels(&issue.labels, &ctx.settings.trigger.label),
        feedback_ref: None,
    };
    let crate::trigger::Decision::Create(request) =
        crate::trigger::route(crate::trigger::Decision::Create(request), &ctx.settings)
    else {
        tracing::warn!(number = issue.number.get(), "the sweep found a label naming no agent profile");
        return Ok(false);
    };
    let message = format!(
        "queued by the sweep: #{} carries the label {:?} but no webhook for it was received",
        issue.number, ctx.settings.trigger.label
    );
    let Some(id) = ctx.db.queue_task(forge, &request, &message).await? else { return Ok(false) };
    tracing::info!(
        task = id,
        forge,
        repo = repo.as_str(),
        number = issue.number.get(),
        "sweep queued a task"
    );
    ctx.wake.notify_one();
    Ok(true)
}
