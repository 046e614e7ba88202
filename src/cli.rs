//! The command line: `serve` (the default), `check-config`, `doctor`, `migrate`,
//! `tasks list`.

mod doctor;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Parser, Subcommand};

use crate::app::{self, App};
use crate::config::Settings;
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
        #[arg(long = "repo", value_name = "OWNER/NAME")]
        repos: Vec<String>,
        /// Do not run the agent in a scratch repository (the dry run costs a model call).
        #[arg(long)]
        skip_agent_run: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Inspect tasks.
    #[command(subcommand)]
    Tasks(TasksCommand),
}

/// `forgehand tasks ...`
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks, newest first.
    List {
        /// Only tasks with this status (queued, running, done, no_changes, failed, cancelled, rejected).
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

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
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
        Command::CheckConfig => {
            print!("{}", settings.to_masked_toml());
            eprintln!("configuration is valid");
            Ok(())
        }
        Command::Doctor { repos, skip_agent_run } => {
            return run_doctor(&settings, doctor::Options { repos, skip_agent_run }).await;
        }
        Command::Migrate => migrate(&settings).await,
        Command::Tasks(TasksCommand::List { status, repo, limit }) => {
            list_tasks(&settings, TaskFilter { status, repo, limit, ..TaskFilter::default() }).await
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
    App::build(settings).await?.run_until_stopped(app::shutdown_signal()).await
}

async fn run_doctor(settings: &Settings, options: doctor::Options) -> ExitCode {
    let findings = doctor::run(settings, &options).await;
    println!("{}", doctor::summary(&findings));
    if doctor::blocks_tasks(&findings) { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)?;
    app::open_database(settings).await?;
    eprintln!("database is up to date");
    Ok(())
}

async fn list_tasks(settings: &Settings, filter: TaskFilter) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)?;
    let db = app::open_database(settings).await?;
    let tasks = db.list_tasks(&filter).await?;
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
            task.status.clone(),
            task.forge.clone(),
            task.repo.clone(),
            task.number.to_string(),
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
