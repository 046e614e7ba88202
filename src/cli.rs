//! The command line: `serve` (the default), `check-config`, `doctor`, `migrate`,
//! `send-test`, `tasks list`, `cleanup`.
//!
//! The read-only commands (`check-config`, `tasks list`) never create `data_dir` or a
//! database: they say which configuration and database they read, and fail when there is
//! none. `doctor` tries everything a task needs, so it creates both, as `serve` would.

mod check;
mod doctor;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::app::{self, App};
use crate::config::{Settings, mask_url_password};
use crate::db::{TaskFilter, TaskStatus, entities::tasks};
use crate::telemetry::{self, LogFormat};

/// forgehand turns labelled forge issues into pull requests written by Claude Code.
#[derive(Debug, Parser)]
#[command(name = "forgehand", version, about)]
pub struct Cli {
    /// Configuration file (TOML), layered over the built-in defaults.
    #[arg(long, global = true, env = "FORGEHAND_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Serve,
    /// Validate the configuration and print it, every secret masked.
    CheckConfig,
    /// Check that the configuration can run tasks: forge tokens and permissions, webhook
    /// secrets, the agent (with a dry run), the database and data_dir. Exit code 1 when
    /// something would stop tasks.
    Doctor {
        /// Check the token's permission on this repository (owner/name) instead of
        /// trigger.repos; may be repeated.
        #[arg(long = "repo", value_name = "OWNER/NAME", value_parser = crate::config::RepoName::parse)]
        repos: Vec<crate::config::RepoName>,
        /// Do not run the agent in a scratch repository (the dry run costs a model call).
        #[arg(long)]
        skip_agent_run: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Sign a test delivery with a forge's webhook secret, send it to the running daemon's
    /// webhook endpoint and show its answer (it starts no task).
    SendTest {
        /// The forge (its `name`); the first one configured when not given.
        #[arg(long)]
        forge: Option<String>,
        /// Where the daemon is reached, e.g. your public_url to go through its proxy;
        /// by default the address it listens on (server.listen).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Inspect tasks.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// The MCP server (stdio) that gives a task's agent the `ask_question` tool. The
    /// agent's CLI starts it; it reads no configuration.
    Mcp {
        /// Where the question is written for the executor.
        #[arg(long, value_name = "PATH")]
        question_file: PathBuf,
        /// Questions the agent may still ask in its task.
        #[arg(long, default_value_t = 1)]
        remaining: u32,
    },
    /// Hold the queue of one repository (owner/name) or, without one, all of it: queued
    /// tasks wait (running ones go on) until `forgehand release`.
    Hold {
        #[arg(value_name = "OWNER/NAME", value_parser = crate::config::RepoName::parse)]
        repo: Option<crate::config::RepoName>,
    },
    /// End a hold made by `forgehand hold`.
    Release {
        #[arg(value_name = "OWNER/NAME", value_parser = crate::config::RepoName::parse)]
        repo: Option<crate::config::RepoName>,
    },
    /// The audit log of operator actions.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Remove what `[storage]` no longer keeps (old deliveries, finished tasks' detail,
    /// transcripts, unused mirrors, spare checkouts beyond their budget) once, and print
    /// what was removed.
    Cleanup {
        /// Only count what would be removed; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `forgehand audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Re-check the hash chain; exit code 1 and the first bad entry when it is broken.
    Verify,
    /// Print entries, newest first.
    List {
        /// Only entries with this action (e.g. login_failed, task_cancel, config_save).
        #[arg(long)]
        action: Option<String>,
        /// Only entries of this actor (e.g. admin, cli:alice).
        #[arg(long)]
        actor: Option<String>,
        /// How many entries to show.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

/// `forgehand tasks ...`
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks, newest first.
    List {
        /// Only tasks with this status (queued, running, needs_input, done, no_changes, failed,
        /// cancelled, rejected, expired).
        #[arg(long, value_parser = clap::builder::ValueParser::new(str::parse::<TaskStatus>))]
        status: Option<TaskStatus>,
        /// Only tasks of this repository (owner/name).
        #[arg(long)]
        repo: Option<String>,
        /// How many tasks to show.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

fn serve_mcp(question_file: PathBuf, remaining: u32) -> ExitCode {
    let server = crate::executor::mcp::Server { question_file, remaining };
    match server.serve(std::io::stdin().lock(), std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("forgehand mcp: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    // Before logging and configuration: stdout is the protocol, and the agent's sandbox
    // holds no configuration.
    if let Some(Command::Mcp { question_file, remaining }) = cli.command {
        return serve_mcp(question_file, remaining);
    }
    app::keep_new_files_private();
    telemetry::init(cli.log_format);
    let settings = match Settings::load_or_discover(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("forgehand: {err}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::CheckConfig => check_config(&settings),
        Command::Doctor { repos, skip_agent_run } => {
            return run_doctor(&settings, doctor::Options { repos, skip_agent_run }).await;
        }
        Command::Migrate => migrate(&settings).await,
        Command::SendTest { forge, url } => send_test(&settings, forge.as_deref(), url.as_deref()).await,
        Command::Tasks(TasksCommand::List { status, repo, limit }) => {
            list_tasks(&settings, TaskFilter { status, repo, limit, ..TaskFilter::default() }).await
        }
        Command::Mcp { .. } => unreachable!("served above"),
        Command::Hold { repo } => hold(&settings, repo.as_ref(), true).await,
        Command::Release { repo } => hold(&settings, repo.as_ref(), false).await,
        Command::Audit(AuditCommand::Verify) => return audit_verify(&settings).await,
        Command::Cleanup { dry_run } => cleanup(&settings, dry_run).await,
        Command::Audit(AuditCommand::List { action, actor, limit }) => {
            audit_list(&settings, crate::db::audit::AuditFilter { action, actor, before: None, limit }).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("forgehand: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    App::build(settings).await?.releasing_start_up_pages().run_until_stopped(app::shutdown_signal()).await
}

async fn run_doctor(settings: &Settings, options: doctor::Options) -> ExitCode {
    println!("{}", configuration_source(settings));
    let findings = doctor::run(settings, &options).await;
    println!("{}", doctor::summary(&findings));
    if doctor::blocks_tasks(&findings) { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Holds (or releases) the queue of `repo`, or all of it, and says what changed.
async fn hold(settings: &Settings, repo: Option<&crate::config::RepoName>, on: bool) -> anyhow::Result<()> {
    let db = app::open_database(settings).await?;
    let scope = repo.map_or(crate::db::queries::HOLD_ALL, |r| r.as_str());
    let what = repo.map_or_else(|| "the whole queue".to_owned(), |r| format!("the queue of {r}"));
    let by = std::env::var("USER").unwrap_or_else(|_| "the command line".into());
    let changed = if on { db.hold(scope, &by).await? } else { db.release_hold(scope).await? };
    if changed {
        let entry = crate::db::audit::NewAuditEntry {
            actor: &format!("cli:{by}"),
            action: if on { "hold" } else { "release" },
            target: scope,
            ..Default::default()
        };
        db.audit(entry).await?;
    }
    match (on, changed) {
        (true, true) => println!("held {what}: queued tasks wait until `forgehand release`"),
        (true, false) => println!("{what} was already held"),
        (false, true) => println!("released {what}"),
        (false, false) => println!("{what} was not held"),
    }
    Ok(())
}

/// `forgehand audit verify`: says whether the chain holds, and names the first bad entry.
async fn audit_verify(settings: &Settings) -> ExitCode {
    let checked = match app::open_database(settings).await {
        Ok(db) => db.audit_verify().await.map_err(anyhow::Error::from),
        Err(err) => Err(err),
    };
    match checked {
        Ok(crate::db::audit::ChainCheck::Intact { entries }) => {
            println!("audit log intact: {entries} entries, every hash checks out");
            ExitCode::SUCCESS
        }
        Ok(crate::db::audit::ChainCheck::Broken { id: 0, reason }) => {
            println!("audit log BROKEN after its last entry: {reason}");
            ExitCode::FAILURE
        }
        Ok(crate::db::audit::ChainCheck::Broken { id, reason }) => {
            println!("audit log BROKEN at entry {id}: {reason}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("forgehand: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `forgehand audit list`: one line per entry, newest first.
async fn audit_list(settings: &Settings, filter: crate::db::audit::AuditFilter) -> anyhow::Result<()> {
    let db = app::open_database(settings).await?;
    for e in db.audit_list(&filter).await? {
        let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let peer = if e.peer.is_empty() { String::new() } else { format!(" from {}", e.peer) };
        let detail = if e.detail.is_empty() { String::new() } else { format!(" ({})", e.detail) };
        println!(
            "{:>6} {at} {} {} {}{detail}{peer} {}",
            e.id,
            e.actor,
            e.action,
            e.target,
            &e.hash[..12.min(e.hash.len())]
        );
    }
    Ok(())
}

/// `forgehand cleanup [--dry-run]`: one cleanup, one line per kind.
async fn cleanup(settings: &Settings, dry_run: bool) -> anyhow::Result<()> {
    use crate::executor::cleanup::{self, files};
    let db = app::open_database(settings).await?;
    let report = cleanup::run_once(settings, &db, dry_run).await;
    let verb = if dry_run { "would remove" } else { "removed" };
    let d = &report.detail;
    println!("{verb}:");
    println!("  deliveries: {}", report.deliveries);
    println!("  refused deliveries: {}", report.refusals);
    println!(
        "  finished tasks' detail: {} tasks (timeline rows {}, steps {}, transcript chunks {})",
        d.tasks, d.events, d.steps, d.transcript_chunks
    );
    println!("  transcript files: {}", files(report.transcript_files));
    println!("  mirrors: {}", files(report.mirrors));
    println!("  spare checkouts: {}", files(report.spares));
    Ok(())
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    app::create_data_dir(&settings.data_dir)?;
    app::open_database(settings).await?;
    eprintln!("database is up to date");
    Ok(())
}

/// Prints the effective configuration (secrets masked) on stdout; where it came from, the
/// errors and the warnings on stderr. Fails when there is an error.
fn check_config(settings: &Settings) -> anyhow::Result<()> {
    eprintln!("{}", configuration_source(settings));
    eprintln!("{}", Database::of(settings));
    print!("{}", settings.to_masked_toml());
    let findings = check::findings(settings);
    for finding in &findings {
        eprintln!("{finding}");
    }
    let errors = findings.iter().filter(|f| f.severity == check::Severity::Error).count();
    if errors > 0 {
        bail!("{errors} error{} above: forgehand cannot work with this configuration", plural(errors));
    }
    let warnings = findings.len();
    match warnings {
        0 => eprintln!("configuration is valid"),
        n => eprintln!("configuration is valid, with {n} warning{} above", plural(n)),
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

async fn send_test(settings: &Settings, forge: Option<&str>, url: Option<&str>) -> anyhow::Result<()> {
    use crate::server::test_delivery;
    eprintln!("{}", configuration_source(settings));
    let chosen = match forge {
        Some(name) => settings.forge(name),
        None => settings.forges.first(),
    };
    let Some(forge) = chosen else {
        let names: Vec<&str> = settings.forges.iter().map(|f| f.name.as_str()).collect();
        bail!(
            "no forge {}in this configuration (configured: {}); add one, or pass the daemon's --config",
            forge.map(|n| format!("named {n:?} ")).unwrap_or_default(),
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        );
    };
    let base = url.map_or_else(|| test_delivery::local_base(settings.server.listen), str::to_owned);
    let sent = test_delivery::send(forge, &base).await.map_err(anyhow::Error::msg)?;
    for line in sent.lines() {
        println!("{line}");
    }
    if !sent.accepted() {
        bail!("the test delivery was refused ({})", sent.status);
    }
    Ok(())
}

/// Which file the settings were read from, in words.
fn configuration_source(settings: &Settings) -> String {
    match &settings.config_file {
        Some(file) => format!("configuration: {}", file.display()),
        None => format!(
            "configuration: no file, only the built-in defaults and FORGEHAND__ variables \
             (give one with --config PATH; without it {} is read when it exists)",
            settings.config_target().display()
        ),
    }
}

/// The database the settings point at.
enum Database {
    /// An SQLite file (the default: `forgehand.db` in `data_dir`).
    Sqlite(PathBuf),
    /// A database server, its URL with the password masked.
    Server(String),
}

impl Database {
    fn of(settings: &Settings) -> Database {
        let url = settings.database.url.expose_secret();
        if url.is_empty() {
            return Database::Sqlite(settings.data_dir.join(crate::db::SQLITE_FILE));
        }
        match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Some(rest) => Database::Sqlite(PathBuf::from(rest.split('?').next().unwrap_or(rest))),
            None => Database::Server(mask_url_password(url)),
        }
    }

    /// Fails, saying where it looked, when the SQLite file does not exist.
    fn existing(self, settings: &Settings) -> anyhow::Result<Database> {
        if let Database::Sqlite(path) = &self
            && !is_file(path)
        {
            bail!(
                "there is no database at {} (data_dir = {:?}): forgehand has not run with this configuration yet; \
                 start it once, or give the daemon's own configuration with --config PATH",
                path.display(),
                settings.data_dir
            );
        }
        Ok(self)
    }
}

fn is_file(path: &Path) -> bool {
    path.as_os_str() == ":memory:" || path.is_file()
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) if is_file(path) => write!(f, "database: SQLite, {}", path.display()),
            Database::Sqlite(path) => write!(f, "database: SQLite, {} (not created yet)", path.display()),
            Database::Server(url) => write!(f, "database: {url}"),
        }
    }
}

async fn list_tasks(settings: &Settings, filter: TaskFilter) -> anyhow::Result<()> {
    eprintln!("{}", configuration_source(settings));
    let database = Database::of(settings).existing(settings)?;
    eprintln!("{database}");
    let db = crate::db::Db::connect(settings).await.context("cannot open the database (database.url)")?;
    let tasks = db.list_tasks(&filter).await.context(
        "cannot read the tasks; if the database is from an older forgehand, run `forgehand migrate` first",
    )?;
    print!("{}", task_table(&tasks));
    Ok(())
}

/// Renders tasks as an aligned text table.
pub fn task_table(tasks: &[tasks::Model]) -> String {
    let mut rows =
        vec![["ID", "STATUS", "FORGE", "REPO", "#", "KIND", "BY", "AGE", "TITLE"].map(String::from).to_vec()];
    let now = Utc::now();
    for task in tasks {
        rows.push(vec![
            task.id.to_string(),
            task.status.to_string(),
            task.forge.clone(),
            task.repo.clone(),
            task.issue_number().to_string(),
            task.kind.clone(),
            task.requested_by.clone(),
            age((now - task.created_at).num_seconds()),
            task.title.chars().take(60).map(|c| if c.is_control() { ' ' } else { c }).collect(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|col| rows.iter().map(|row| row[col].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if tasks.is_empty() {
        out.push_str("(no tasks)\n");
    }
    out
}

fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
