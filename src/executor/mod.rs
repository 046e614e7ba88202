//! The executor: claims queued tasks, prepares a git workspace, runs the agent, pushes,
//! opens the pull request and reports on the issue.
//!
//! At most `executor.max_concurrent` tasks run at once (a semaphore). A claim is one
//! database statement; a running task holds a lease that a heartbeat extends, and every
//! outward step checks that the lease is still ours (fencing). Intake wakes the executor
//! at once; a slow poll is the fallback and also requeues tasks whose lease expired.

pub mod agent;
pub mod attachments;
pub mod breaker;
pub mod budget;
pub mod checklist;
pub mod checks;
pub mod cleanup;
pub mod finish;
pub mod guard;
pub mod launch;
pub mod mcp;
pub mod notify;
pub mod outcome;
pub mod pipeline;
pub mod prompt;
pub mod questions;
pub mod report;
pub mod sandbox;
pub mod shipper;
pub mod sweep;
pub mod waiting;
pub mod workspace;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::Settings;
use crate::db::{Db, DbError, Lease, TaskStatus, entities::tasks};
use crate::forge::client::{self, Forge};
use guard::Guard;
use workspace::Workspaces;

/// What every task run shares.
pub struct Context {
    pub settings: Settings,
    pub db: Db,
    pub forges: HashMap<String, Arc<dyn Forge>>,
    pub workspaces: Arc<Workspaces>,
    /// This process's lease owner: `<instance>/<random>`.
    pub owner: String,
    /// This instance across restarts (host and data_dir), the prefix of `owner`.
    pub instance: String,
    /// Wakes the claim loop (intake, and follow-ups queued here).
    pub wake: Arc<Notify>,
}

/// The executor, ready to run.
pub struct Executor {
    ctx: Arc<Context>,
    wake: Arc<Notify>,
    /// New settings from the setup wizard, taken at the next claim.
    updates: Option<watch::Receiver<Arc<Settings>>>,
}

impl Context {
    /// This process's lease on task `task_id`: the only way the executor changes a task.
    pub fn lease(&self, task_id: i64) -> Lease<'_> {
        self.db.lease(task_id, &self.owner, self.lease_length())
    }

    /// How long a claim holds without a heartbeat.
    fn lease_length(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.settings.executor.lease_secs as i64)
    }

    /// This context with `settings` in force: new forge clients, the same database,
    /// workspaces and lease owner. Tasks already running keep the context they started with.
    fn reconfigured(&self, settings: &Settings) -> anyhow::Result<Context> {
        Ok(Context {
            settings: settings.clone(),
            db: self.db.clone(),
            forges: connect_forges(settings)?,
            workspaces: self.workspaces.clone(),
            owner: self.owner.clone(),
            instance: self.instance.clone(),
            wake: self.wake.clone(),
        })
    }
}

fn connect_forges(settings: &Settings) -> anyhow::Result<HashMap<String, Arc<dyn Forge>>> {
    let mut forges = HashMap::new();
    for forge in &settings.forges {
        forges.insert(forge.name.clone(), client::connect(forge)?);
    }
    Ok(forges)
}

impl Executor {
    /// Builds the forge clients; nothing runs until [`Executor::run`].
    pub fn new(settings: Settings, db: Db, wake: Arc<Notify>) -> anyhow::Result<Executor> {
        let forges = connect_forges(&settings)?;
        if settings.agent.sandbox == crate::config::Sandbox::Bubblewrap {
            sandbox::check_bubblewrap().map_err(anyhow::Error::msg)?;
        }
        let instance = instance_name(&settings);
        let owner = format!("{instance}/{}", crate::token::generate_token()?.get(..12).unwrap_or("0"));
        let workspaces = Arc::new(Workspaces::new(settings.data_dir.join("workspaces")));
        std::fs::create_dir_all(settings.data_dir.join("transcripts"))
            .context("cannot create data_dir/transcripts")?;
        let ctx = Context { settings, db, forges, workspaces, owner, instance, wake: wake.clone() };
        Ok(Executor { ctx: Arc::new(ctx), wake, updates: None })
    }

    /// Takes the settings each `updates` announces from the next claim on: forges, trigger,
    /// agent and executor limits (`max_concurrent` resizes the pool). `executor.enabled`
    /// and `data_dir` need a restart.
    pub fn follow_settings(mut self, updates: watch::Receiver<Arc<Settings>>) -> Executor {
        self.updates = Some(updates);
        self
    }

    /// The shared context, for tests.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Runs until `stop` turns true, then lets running tasks finish for
    /// `executor.shutdown_grace_secs`, stops the rest and puts them back in the queue.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut ctx = self.ctx;
        let mut updates = self.updates;
        let prefix = format!("{}/", ctx.instance);
        match ctx.db.requeue_abandoned(Some(&prefix), ctx.settings.executor.max_attempts).await {
            Ok((requeued, failed)) if !(requeued.is_empty() && failed.is_empty()) => {
                tracing::info!(?requeued, ?failed, "tasks interrupted by the last stop were requeued");
            }
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "cannot requeue interrupted tasks"),
        }
        let listener = tokio::spawn({
            let (db, wake, stop) = (ctx.db.clone(), self.wake.clone(), stop.clone());
            async move { db.listen_for_tasks(wake, stop).await }
        });
        let mut sweeper = tokio::spawn(sweep::run(ctx.clone(), stop.clone()));
        let mut waiting = tokio::spawn(waiting::run(ctx.clone(), stop.clone()));
        let semaphore = Arc::new(Semaphore::new(ctx.settings.executor.max_concurrent));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut running = JoinSet::new();
        loop {
            while running.try_join_next().is_some() {}
            if let Some(new) = take_settings(&mut updates)
                && let Some(next) = reconfigure(&ctx, &new, &semaphore)
            {
                ctx = next;
                sweeper.abort();
                sweeper = tokio::spawn(sweep::run(ctx.clone(), stop.clone()));
                waiting.abort();
                waiting = tokio::spawn(waiting::run(ctx.clone(), stop.clone()));
            }
            let poll = Duration::from_secs(ctx.settings.executor.poll_interval_secs);
            let permit = tokio::select! {
                permit = semaphore.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = updates_pending(&updates) => continue,
                _ = stop.changed() => break,
            };
            // Settings saved before a task was queued must be in force when it is claimed.
            if updates_waiting(&updates) {
                continue;
            }
            match claim(&ctx).await {
                Ok(Some(task)) => {
                    let ctx = ctx.clone();
                    let shutdown = shutdown_rx.clone();
                    running.spawn(async move {
                        run_task(ctx, task, shutdown).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(poll) => requeue_expired(&ctx).await,
                        // The loop's next turn takes them.
                        _ = updates_pending(&updates) => {}
                        _ = stop.changed() => break,
                    }
                }
                Err(err) => {
                    drop(permit);
                    tracing::error!(error = %err, "cannot claim a task; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
        }
        sweeper.abort();
        waiting.abort();
        listener.abort();
        shut_down(&ctx, running, shutdown_tx).await;
    }
}

/// The settings `updates` announced since they were last taken, if any.
fn take_settings(updates: &mut Option<watch::Receiver<Arc<Settings>>>) -> Option<Arc<Settings>> {
    let receiver = updates.as_mut()?;
    receiver.has_changed().unwrap_or(false).then(|| receiver.borrow_and_update().clone())
}

/// Whether `updates` holds settings not yet taken.
fn updates_waiting(updates: &Option<watch::Receiver<Arc<Settings>>>) -> bool {
    updates.as_ref().is_some_and(|receiver| receiver.has_changed().unwrap_or(false))
}

/// Completes when `updates` holds settings not yet taken.
async fn updates_pending(updates: &Option<watch::Receiver<Arc<Settings>>>) {
    match updates {
        Some(receiver) => {
            let mut receiver = receiver.clone();
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// The context for `settings`, with the pool resized to their `max_concurrent`; `None`
/// (logged) when they cannot be used, and the old ones stay in force.
fn reconfigure(ctx: &Context, settings: &Settings, pool: &Arc<Semaphore>) -> Option<Arc<Context>> {
    let next = match ctx.reconfigured(settings) {
        Ok(next) => next,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "the executor cannot use the new settings; it keeps the old ones");
            return None;
        }
    };
    let (old, new) = (ctx.settings.executor.max_concurrent, settings.executor.max_concurrent);
    if new > old {
        pool.add_permits(new - old);
    } else if new < old {
        // Free permits go at once; the rest as the tasks holding them end.
        let owed = (old - new) - pool.forget_permits(old - new);
        if owed > 0 {
            let pool = pool.clone();
            tokio::spawn(async move {
                if let Ok(permits) = pool.acquire_many_owned(owed as u32).await {
                    permits.forget();
                }
            });
        }
    }
    tracing::info!(
        max_concurrent = new,
        forges = settings.forges.len(),
        "the executor took the new settings"
    );
    Some(Arc::new(next))
}

async fn claim(ctx: &Context) -> Result<Option<tasks::Model>, DbError> {
    let claimed = claim_within_limits(ctx).await;
    ctx.db.count_claim_pass();
    claimed
}

async fn claim_within_limits(ctx: &Context) -> Result<Option<tasks::Model>, DbError> {
    let stops = budget::check(ctx).await?;
    if stops.all {
        return Ok(None);
    }
    let limits = crate::db::queries::ClaimLimits { capped_repos: stops.repos, ..claim_limits(&ctx.settings) };
    breaker::claim(ctx, limits).await
}

/// The profile and repository limits the claim enforces, from `settings`.
fn claim_limits(settings: &Settings) -> crate::db::queries::ClaimLimits {
    let profiles = settings
        .profile_names()
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), settings.profile(name)?.max_concurrent?)))
        .collect();
    let repos = settings
        .repos
        .iter()
        .filter_map(|entry| Some((entry.name.to_ascii_lowercase(), entry.max_running?)))
        .collect();
    crate::db::queries::ClaimLimits { profiles, repos, ..Default::default() }
}

async fn requeue_expired(ctx: &Context) {
    match ctx.db.requeue_abandoned(None, ctx.settings.executor.max_attempts).await {
        Ok((requeued, failed)) if !(requeued.is_empty() && failed.is_empty()) => {
            tracing::warn!(?requeued, ?failed, "tasks whose lease expired were requeued");
        }
        Ok(_) => {}
        Err(err) => tracing::error!(error = %err, "cannot requeue tasks whose lease expired"),
    }
}

async fn run_task(ctx: Arc<Context>, task: tasks::Model, shutdown: watch::Receiver<bool>) {
    let span = tracing::info_span!("task", id = task.id, repo = %task.repo, number = task.number, attempt = task.attempt);
    let _ = tracing::Instrument::instrument(
        async {
            tracing::info!("task started");
            let note = format!("attempt {} started by {}", task.attempt, ctx.owner);
            if let Err(err) = ctx.lease(task.id).add_event(TaskStatus::Running, &note).await {
                tracing::warn!(error = %err, "cannot record the start");
            }
            let guard = Guard::start(ctx.clone(), task.id, shutdown);
            let (ctx, task) = match with_profile(&ctx, task).await {
                Ok(routed) => routed,
                Err((task, failure)) => {
                    let stop = guard.stop_reason();
                    guard.finish().await;
                    finish::record(&ctx, &task, Err(failure), stop).await;
                    return;
                }
            };
            let result = pipeline::execute(&ctx, &task, &guard).await;
            let stop = guard.stop_reason();
            guard.finish().await;
            finish::record(&ctx, &task, result, stop).await;
        },
        span,
    )
    .await;
}

/// The context `task` runs in: its agent profile's settings in place of `[agent]`, the
/// profile and model recorded on the task. Fails when no profile has the task's name.
async fn with_profile(
    ctx: &Arc<Context>,
    mut task: tasks::Model,
) -> Result<(Arc<Context>, tasks::Model), (tasks::Model, outcome::Failure)> {
    let name = task.agent_profile.clone().unwrap_or_else(|| crate::config::DEFAULT_PROFILE.to_owned());
    let Some(agent) = ctx.settings.profile(&name) else {
        let reason = format!(
            "no agent profile is named {name:?} any more; the profiles are {}",
            ctx.settings.profile_names().join(", ")
        );
        return Err((task, outcome::Failure::Permanent { reason, partial_branch: None }));
    };
    if let Err(err) = ctx.lease(task.id).record_agent(&name, &agent.model).await {
        tracing::warn!(error = %err, "cannot record the agent profile");
    }
    task.agent_profile = Some(name);
    task.agent_model = Some(agent.model.clone());
    let mut settings = ctx.settings.clone();
    settings.agent = agent;
    let routed = Context {
        settings,
        db: ctx.db.clone(),
        forges: ctx.forges.clone(),
        workspaces: ctx.workspaces.clone(),
        owner: ctx.owner.clone(),
        instance: ctx.instance.clone(),
        wake: ctx.wake.clone(),
    };
    Ok((Arc::new(routed), task))
}

async fn shut_down(ctx: &Context, mut running: JoinSet<()>, shutdown: watch::Sender<bool>) {
    if running.is_empty() {
        return;
    }
    let grace = Duration::from_secs(ctx.settings.executor.shutdown_grace_secs);
    tracing::info!(running = running.len(), "waiting for running tasks to finish");
    let all_done = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_ok() {
        return;
    }
    tracing::warn!(running = running.len(), "stopping the tasks still running; they will run again");
    let _ = shutdown.send(true);
    let stopped = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(15), stopped).await.is_err() {
        running.abort_all();
    }
    if let Err(err) = ctx.db.release_all(&ctx.owner).await {
        tracing::error!(error = %err, "cannot requeue the stopped tasks; they will be requeued at the next start");
    }
}

/// Names this instance so that its next life can requeue what this one left running.
pub(crate) fn instance_name(settings: &Settings) -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let dir = std::fs::canonicalize(&settings.data_dir).unwrap_or_else(|_| settings.data_dir.clone());
    let digest = <sha2::Sha256 as sha2::Digest>::digest(dir.to_string_lossy().as_bytes());
    format!("{}:{}", if host.is_empty() { "localhost" } else { &host }, &hex::encode(digest)[..8])
}
