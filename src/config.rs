//! Typed settings, read from layered sources.
//!
//! Later sources win: the built-in `config/default.toml` (embedded), the file given by
//! `--config PATH` or `FORGEHAND_CONFIG`, then environment variables
//! `FORGEHAND__SECTION__KEY`. Forge entries live in an array, so their keys are set from the
//! environment by name instead: `FORGEHAND__FORGES__<NAME>__<KEY>`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

mod agents;
mod changes;
mod describe;
pub mod notify;
mod repo;
mod repo_name;
pub mod storage;

pub use agents::{AgentProfileSettings, DEFAULT_PROFILE, is_profile_name};
pub use changes::changed_keys;
pub use repo::{
    FileAgent, OnFailingChecks, OnFailingSetup, REPO_FILE, REPO_KEYS, RepoConfigSettings, RepoSettings,
    Verification,
};
pub use repo_name::{RepoName, check_repo_name};

/// The built-in defaults, embedded so that `forgehand serve` works with no file at all.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// The file in `data_dir` read when no `--config` is given, and the one the setup wizard
/// writes then.
pub const DATA_DIR_CONFIG: &str = "forgehand.toml";

const ENV_PREFIX: &str = "FORGEHAND__";
const FORGE_ENV_PREFIX: &str = "FORGEHAND__FORGES__";
/// Environment variables holding comma-separated lists, and their keys.
const LIST_ENV_KEYS: &[(&str, &str)] = &[
    ("FORGEHAND__TRIGGER__REPOS", "trigger.repos"),
    ("FORGEHAND__AGENT__ARGS", "agent.args"),
    ("FORGEHAND__AGENT__ALLOWED_TOOLS", "agent.allowed_tools"),
    ("FORGEHAND__AGENT__SANDBOX_READ_ONLY", "agent.sandbox_read_only"),
    ("FORGEHAND__SERVER__TRUSTED_PROXIES", "server.trusted_proxies"),
];

/// Everything forgehand can be configured with. See `docs/configuration.md`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the database, the admin token, workspaces and transcripts live.
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    #[serde(default)]
    pub forges: Vec<ForgeSettings>,
    pub trigger: TriggerSettings,
    pub executor: ExecutorSettings,
    pub agent: AgentSettings,
    /// `[[agents]]`: more agent profiles; `[agent]` is the one named `default`.
    #[serde(default)]
    pub agents: Vec<AgentProfileSettings>,
    /// `[breaker]`: when provider failures take a profile out of use (see `db::breakers`).
    #[serde(default)]
    pub breaker: BreakerSettings,
    /// `[budget]`: spend caps over all repositories.
    #[serde(default)]
    pub budget: BudgetSettings,
    pub git: GitSettings,
    pub labels: LabelSettings,
    pub pr: PrSettings,
    /// `[[repos]]`: per-repository setup, checks and instructions (see `config::repo`).
    #[serde(default)]
    pub repos: Vec<RepoSettings>,
    /// `[repo_config]`: defaults for every repository and what its `.forgehand.toml` may set.
    #[serde(default)]
    pub repo_config: RepoConfigSettings,
    /// `[ci]`: fixing failing checks on forgehand's own pull requests.
    #[serde(default)]
    pub ci: CiSettings,
    /// `[attachments]`: images and files linked in an issue, fetched for the agent.
    #[serde(default)]
    pub attachments: AttachmentSettings,
    /// `[notify]`: notification sinks and the outbox (see `config::notify`).
    #[serde(default)]
    pub notify: notify::NotifySettings,
    /// `[storage]`: retention and cleanup (see `config::storage`).
    #[serde(default)]
    pub storage: storage::StorageSettings,
    /// The file these settings were read from, if any (not a key of the file).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub public_url: String,
    pub max_body_bytes: usize,
    /// Seconds a client may take to send a request's headers before the connection is closed.
    pub header_timeout_secs: u64,
    /// Seconds a client may take to send a webhook body; slower deliveries get 408.
    pub body_timeout_secs: u64,
    /// Most connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed (for the login rate limit).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// `[database]`: empty `url` means an SQLite file in `data_dir`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    #[serde(serialize_with = "serialize_database_url")]
    pub url: SecretString,
    pub max_connections: u32,
}

/// `[auth]`: the admin token for the dashboard and the API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    #[serde(serialize_with = "serialize_secret")]
    pub admin_token: SecretString,
}

/// Which API and webhook dialect a forge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    Github,
    /// Gitea and Forgejo.
    #[serde(alias = "forgejo")]
    Gitea,
}

/// One `[[forges]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForgeSettings {
    pub name: String,
    pub kind: ForgeKind,
    pub api_url: String,
    #[serde(default = "empty_secret", serialize_with = "serialize_secret")]
    pub token: SecretString,
    #[serde(default, serialize_with = "serialize_secrets")]
    pub webhook_secret: WebhookSecrets,
    /// Login of the bot account; events it causes are ignored.
    #[serde(default)]
    pub bot_login: String,
    /// GitHub only: the GitHub App's id, when forgehand connects as an App instead of
    /// with `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    /// The App's private key: the PEM itself, or the path of the `.pem` file.
    #[serde(default = "empty_secret", serialize_with = "serialize_secret")]
    pub private_key: SecretString,
}

impl ForgeSettings {
    /// The App's private key as PEM: `private_key` itself, or the file it names.
    pub fn app_private_key(&self) -> Result<SecretString, String> {
        let value = self.private_key.expose_secret().trim();
        if value.contains("PRIVATE KEY-----") {
            return Ok(SecretString::from(value.to_owned()));
        }
        if value.is_empty() {
            return Err("private_key is empty; paste the App's .pem or give its path".into());
        }
        // Never echo what might be a mangled key.
        if value.contains('\n') || value.contains("-----") {
            return Err(
                "not a PEM private key; paste the whole .pem the App's settings page generated".into()
            );
        }
        let pem = std::fs::read_to_string(value)
            .map_err(|err| format!("cannot read the private key file {value}: {err}"))?;
        if !pem.contains("PRIVATE KEY-----") {
            return Err(format!(
                "{value} is not a PEM private key; use the .pem the App's settings page generated"
            ));
        }
        Ok(SecretString::from(pem))
    }
}

/// One webhook secret, or several while rotating; empty strings count as absent.
#[derive(Debug, Clone, Default)]
pub struct WebhookSecrets(pub Vec<SecretString>);

impl WebhookSecrets {
    /// True when no usable secret is configured: such a forge refuses every delivery.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for WebhookSecrets {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let all = match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        };
        Ok(WebhookSecrets::from_strings(all))
    }
}

impl WebhookSecrets {
    fn from_strings(all: impl IntoIterator<Item = String>) -> Self {
        WebhookSecrets(all.into_iter().filter(|secret| !secret.is_empty()).map(SecretString::from).collect())
    }
}

/// The least permission a person needs on a repository to trigger forgehand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    None,
    Read,
    Write,
    Admin,
}

/// `[trigger]`: what starts a task.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSettings {
    pub label: String,
    pub command: String,
    pub repos: Vec<RepoName>,
    pub min_permission: Permission,
}

/// `[ci]`: what forgehand does when checks fail on its own pull requests.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CiSettings {
    /// A failing check on the head forgehand pushed queues a follow-up that fixes it.
    pub follow_failures: bool,
    /// Most such automatic follow-ups per pull request.
    pub fix_rounds: u32,
}

impl Default for CiSettings {
    fn default() -> CiSettings {
        CiSettings { follow_failures: true, fix_rounds: 2 }
    }
}

/// `[attachments]`: images and files linked in an issue and its comments, downloaded for
/// the agent from the forge's own hosts only.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentSettings {
    /// Fetch them at all.
    pub enabled: bool,
    /// Larger files are skipped (and the prompt says so).
    pub max_file_bytes: u64,
    /// Most bytes fetched for one task.
    pub max_task_bytes: u64,
    /// Most files fetched for one task.
    pub max_files: usize,
}

impl Default for AttachmentSettings {
    fn default() -> AttachmentSettings {
        AttachmentSettings {
            enabled: true,
            max_file_bytes: 10 << 20,
            max_task_bytes: 25 << 20,
            max_files: 20,
        }
    }
}

/// `[breaker]`: each agent profile's circuit breaker.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Provider failures within `window_secs` that open a profile's breaker.
    pub failures: u32,
    pub window_secs: u64,
    /// Seconds an open breaker waits before letting one trial task through.
    pub cooldown_secs: u64,
}

impl Default for BreakerSettings {
    fn default() -> BreakerSettings {
        BreakerSettings { failures: 3, window_secs: 600, cooldown_secs: 300 }
    }
}

/// `[budget]`: what all tasks together may spend, in US dollars, per UTC day and month
/// (`None`: no cap). `[[repos]]` entries cap one repository the same way.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSettings {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
}

/// `[executor]`: how tasks run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSettings {
    pub enabled: bool,
    pub max_concurrent: usize,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    pub lease_secs: u64,
    pub shutdown_grace_secs: u64,
    pub poll_interval_secs: u64,
    pub retry_base_secs: u64,
    pub keep_failed_workspaces: usize,
    /// Whether a fully committed checkout waits in `workspaces/spares` for the next task on
    /// its repository (at most `max_concurrent` per repository).
    #[serde(default = "recycle_by_default")]
    pub recycle_checkouts: bool,
    /// Seconds between sweeps for labelled issues whose webhook was missed; 0 disables.
    pub sweep_interval_secs: u64,
    /// Hours a question waits for an answer before its task ends `expired`.
    pub question_timeout_hours: u64,
}

fn recycle_by_default() -> bool {
    true
}

/// `[agent]`: the coding agent CLI and how it is run (see docs/agents.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// Which CLI `command` is: how its arguments are built and its output is read.
    pub kind: AgentKind,
    pub command: String,
    pub args: Vec<String>,
    pub model: String,
    pub max_turns: u32,
    /// Extra variables for the agent's environment; values may be keys, so they are masked.
    #[serde(serialize_with = "serialize_env")]
    pub env: std::collections::BTreeMap<String, String>,
    /// Tools the agent may use without asking (Claude Code: `--allowedTools`).
    pub allowed_tools: Vec<String>,
    /// How a `kind = "command"` program gets the prompt.
    pub prompt_via: PromptVia,
    /// `none` or `bubblewrap` (see `executor::sandbox`).
    #[serde(default)]
    pub sandbox: Sandbox,
    /// More paths a sandboxed agent may read.
    #[serde(default)]
    pub sandbox_read_only: Vec<PathBuf>,
    /// Most tasks of this profile running at once over all instances (inside
    /// `executor.max_concurrent`); none: only that limit.
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    /// Most a task may spend on one run, in US dollars.
    #[serde(default)]
    pub max_budget_usd: Option<f64>,
    /// The profile tasks go to while this one's provider fails.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Claude Code's own `--fallback-model`.
    #[serde(default)]
    pub fallback_model: Option<String>,
    /// Whether the agent gets the `ask_question` tool; unset: yes for Claude Code, no for
    /// the other kinds (see [`AgentSettings::asks_questions`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions: Option<bool>,
    /// Most questions the agent may ask in one task.
    pub max_questions: u32,
    /// The forgehand program the agent's CLI starts for `ask_question` (`forgehand mcp`);
    /// empty: the program running now.
    #[serde(default)]
    pub forgehand_command: String,
}

impl AgentSettings {
    /// Whether the agent is given the `ask_question` tool: `questions`, or by default only
    /// Claude Code and Codex (a command program would not expect the `--mcp-config` argument).
    pub fn asks_questions(&self) -> bool {
        self.questions.unwrap_or(matches!(self.kind, AgentKind::Claude | AgentKind::Codex))
    }
}

/// The agent CLIs forgehand knows how to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// Claude Code: `claude -p … --output-format stream-json`.
    Claude,
    /// OpenAI Codex CLI: `codex exec --json …`.
    Codex,
    /// Any program: the prompt on stdin or as the last argument, plain text out.
    Command,
}

/// How the agent process is confined (the code that confines is `executor::sandbox`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sandbox {
    /// Runs as forgehand's user, in its worktree, with a cleared environment.
    #[default]
    None,
    /// Runs inside bubblewrap (`bwrap`): see `executor::sandbox`.
    Bubblewrap,
}

/// Where a `kind = "command"` program reads the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptVia {
    Stdin,
    /// As the last argument, after `agent.args`.
    Arg,
}

/// `[labels]`: the status labels forgehand sets on issues.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSettings {
    pub working: String,
    pub done: String,
    pub failed: String,
    /// On the issue while the agent's question waits for an answer.
    pub question: String,
}

/// `[pr]`: how pull requests are opened.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrSettings {
    pub draft: bool,
}

/// `[git]`: commits and branches.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitSettings {
    pub author_name: String,
    pub author_email: String,
    pub branch_prefix: String,
    /// An SSH private key that signs every commit forgehand makes (`ssh-keygen -Y sign`);
    /// unset, commits are not signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// Whether commits reach a GitHub repository through the REST API (so that GitHub
    /// signs them as the App) rather than by a git push.
    #[serde(default)]
    pub commit_via_api: CommitViaApi,
}

/// `git.commit_via_api`: when forgehand's commits are made on GitHub through the REST
/// API (signed by GitHub) instead of pushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitViaApi {
    /// On a GitHub forge connected as an App, when `git.signing_key` is not set.
    #[default]
    Auto,
    /// On every GitHub forge connected as an App, even with `git.signing_key`.
    Always,
    /// Never: always a git push.
    Never,
}

impl GitSettings {
    /// Whether commits to `forge` go through GitHub's REST API. Only a GitHub App's
    /// commits are signed by GitHub, so token mode and Gitea always push.
    pub fn commits_via_api(&self, forge: &ForgeSettings) -> bool {
        let app = forge.kind == ForgeKind::Github && forge.app_id.is_some();
        match self.commit_via_api {
            CommitViaApi::Auto => app && self.signing_key.is_none(),
            CommitViaApi::Always => app,
            CommitViaApi::Never => false,
        }
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration: {0}")]
    Load(String),
    #[error("the configuration is invalid:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

impl Settings {
    /// Loads the layered configuration from the real environment and validates it.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, std::env::vars().collect())
    }

    /// Loads the layered configuration with the given environment, then validates it.
    pub fn load_with_env(file: Option<&Path>, env: HashMap<String, String>) -> Result<Settings, ConfigError> {
        let sources = describe::Sources {
            file,
            env: env.keys().filter(|key| key.starts_with(ENV_PREFIX)).cloned().collect(),
        };
        let (mut section_env, forge_env): (HashMap<_, _>, HashMap<_, _>) = env
            .into_iter()
            .filter(|(key, _)| key.starts_with(ENV_PREFIX))
            .partition(|(key, _)| !key.starts_with(FORGE_ENV_PREFIX));
        let (sink_env, mut section_env): (HashMap<_, _>, HashMap<_, _>) =
            section_env.drain().partition(|(key, _)| key.starts_with(notify::SINK_ENV_PREFIX));
        // Values stay strings (no type guessing: a token of digits must stay as written);
        // only the list keys are split, on commas.
        let mut list_overrides = Vec::new();
        for (var, key) in LIST_ENV_KEYS {
            if let Some(value) = section_env.remove(*var) {
                let items: Vec<String> =
                    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
                list_overrides.push((*key, items));
            }
        }
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULT_CONFIG, config::FileFormat::Toml));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist or is not a file; check --config or FORGEHAND_CONFIG",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let environment = config::Environment::with_prefix("FORGEHAND")
            .prefix_separator("__")
            .separator("__")
            .source(Some(section_env.into_iter().collect()));
        builder = builder.add_source(environment);
        for (key, items) in list_overrides {
            builder = builder.set_override(key, items).map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        let built = builder.build().map_err(|e| ConfigError::Load(describe::describe(e, None, &sources)))?;
        let mut settings: Settings = built
            .clone()
            .try_deserialize()
            .map_err(|e| ConfigError::Load(describe::describe(e, Some(&built), &sources)))?;
        settings.apply_forge_env(forge_env)?;
        notify::apply_env(&mut settings.notify.sinks, sink_env)?;
        settings.validate()?;
        settings.config_file = file.map(Path::to_path_buf);
        Ok(settings)
    }

    /// Loads `file`; without one, `<data_dir>/forgehand.toml` when it exists (`data_dir`
    /// from the defaults and the environment), so that what the setup wizard wrote there
    /// is read at the next start.
    pub fn load_or_discover(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_or_discover_with_env(file, std::env::vars().collect())
    }

    /// [`Settings::load_or_discover`] with the given environment.
    pub fn load_or_discover_with_env(
        file: Option<&Path>,
        env: HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        if file.is_some() {
            return Self::load_with_env(file, env);
        }
        let defaults = Self::load_with_env(None, env.clone())?;
        let found = defaults.data_dir.join(DATA_DIR_CONFIG);
        if !found.is_file() {
            return Ok(defaults);
        }
        let settings = Self::load_with_env(Some(&found), env)?;
        if settings.data_dir != defaults.data_dir {
            return Err(ConfigError::Invalid(vec![format!(
                "data_dir: {} sets data_dir = {:?}, but it was found in {:?}; move the file and start with --config PATH",
                found.display(),
                settings.data_dir,
                defaults.data_dir
            )]));
        }
        Ok(settings)
    }

    /// The file the setup wizard writes: the one these settings came from, else
    /// `<data_dir>/forgehand.toml`.
    pub fn config_target(&self) -> PathBuf {
        self.config_file.clone().unwrap_or_else(|| self.data_dir.join(DATA_DIR_CONFIG))
    }

    /// Applies `FORGEHAND__FORGES__<NAME>__<KEY>` variables to the forge named NAME.
    fn apply_forge_env(&mut self, vars: HashMap<String, String>) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        for (var, value) in vars {
            let rest = &var[FORGE_ENV_PREFIX.len()..];
            let Some(forge) =
                self.forges.iter_mut().find(|f| rest.starts_with(&format!("{}__", env_name(&f.name))))
            else {
                problems.push(format!(
                    "{var}: no configured forge matches; the part after FORGEHAND__FORGES__ must be a forge name in capitals (- becomes _)"
                ));
                continue;
            };
            let key = &rest[env_name(&forge.name).len() + 2..];
            match key {
                "TOKEN" => forge.token = SecretString::from(value),
                "WEBHOOK_SECRET" => {
                    forge.webhook_secret = WebhookSecrets::from_strings(value.split(',').map(str::to_owned))
                }
                "API_URL" => forge.api_url = value,
                "BOT_LOGIN" => forge.bot_login = value,
                "APP_ID" => match value.trim().parse() {
                    Ok(id) => forge.app_id = Some(id),
                    Err(_) => problems.push(format!("{var}: {value:?} is not an App id (a number)")),
                },
                "PRIVATE_KEY" => forge.private_key = SecretString::from(value),
                _ => problems.push(format!(
                    "{var}: unknown forge key {key}; use TOKEN, WEBHOOK_SECRET, API_URL, BOT_LOGIN, APP_ID or PRIVATE_KEY"
                )),
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// Checks what serde cannot: values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.validate_server(&mut problems);
        self.validate_forges(&mut problems);
        self.validate_trigger(&mut problems);
        self.validate_limits(&mut problems);
        problems.extend(repo::problems(&self.repo_config, &self.repos));
        for (key, cap) in
            [("budget.daily_usd", self.budget.daily_usd), ("budget.monthly_usd", self.budget.monthly_usd)]
        {
            if cap.is_some_and(|usd| !(usd > 0.0 && usd.is_finite())) {
                problems.push(format!("{key}: must be more than 0; leave it out for no cap"));
            }
        }
        if self.breaker.failures == 0 {
            problems.push(
                "breaker.failures: must be at least 1 (provider failures that open a profile's breaker)"
                    .into(),
            );
        }
        if self.breaker.window_secs == 0 {
            problems.push(
                "breaker.window_secs: must be at least 1 (the seconds failures are counted over)".into(),
            );
        }
        problems.extend(notify::problems(&self.notify));
        problems.extend(self.signing_key_problem());
        let url = self.database.url.expose_secret();
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if !(url.is_empty() || known.iter().any(|scheme| url.starts_with(scheme))) {
            problems.push(
                "database.url: must be empty (SQLite in data_dir), sqlite://PATH or postgres://USER:PASSWORD@HOST/DB".into(),
            );
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }

    fn validate_server(&self, problems: &mut Vec<String>) {
        if !is_http_url(&self.server.public_url) {
            problems.push(format!(
                "server.public_url: {:?} is not an http(s) URL; set the address people reach forgehand at, e.g. https://forgehand.example.com",
                self.server.public_url
            ));
        }
        if self.server.max_body_bytes < 1024 {
            problems.push(
                "server.max_body_bytes: must be at least 1024; GitHub sends up to 26214400 (25 MiB)".into(),
            );
        }
        for (key, value) in [
            ("server.header_timeout_secs", self.server.header_timeout_secs),
            ("server.body_timeout_secs", self.server.body_timeout_secs),
            ("server.max_connections", self.server.max_connections as u64),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be at least 1"));
            }
        }
    }

    fn validate_forges(&self, problems: &mut Vec<String>) {
        let mut seen = std::collections::HashSet::new();
        for (i, forge) in self.forges.iter().enumerate() {
            let key = format!("forges[{i}]");
            if !is_forge_name(&forge.name) {
                problems.push(format!(
                    "{key}.name: {:?} must be 1-64 characters of a-z, 0-9, - or _ (it is the webhook path /webhooks/<name>)",
                    forge.name
                ));
            }
            if !seen.insert(forge.name.as_str()) {
                problems.push(format!(
                    "{key}.name: {:?} is used by two forges; names must be unique",
                    forge.name
                ));
            }
            problems.extend(app_problem(&key, forge));
            if !is_http_url(&forge.api_url) {
                problems.push(format!(
                    "{key}.api_url: {:?} is not an http(s) URL; use https://api.github.com for GitHub or https://HOST/api/v1 for Gitea/Forgejo",
                    forge.api_url
                ));
            }
        }
    }

    fn validate_trigger(&self, problems: &mut Vec<String>) {
        let trigger = &self.trigger;
        if trigger.label.trim().is_empty() {
            problems.push("trigger.label: must not be empty; the default is \"forgehand\"".into());
        }
        if trigger.command.is_empty() || trigger.command.chars().any(char::is_whitespace) {
            problems.push(format!(
                "trigger.command: {:?} must be one word without spaces, e.g. \"/forgehand\"",
                trigger.command
            ));
        }
        for repo in &trigger.repos {
            if !is_repo_name(repo.as_str()) {
                problems.push(format!("trigger.repos: {repo:?} is not of the form \"owner/name\""));
            }
        }
        if !is_branch_prefix(&self.git.branch_prefix) {
            problems.push(format!(
                "git.branch_prefix: {:?} is not usable in a branch name; use letters, digits, '-', '_', '.' and '/', e.g. \"forgehand/\"",
                self.git.branch_prefix
            ));
        }
    }

    fn signing_key_problem(&self) -> Option<String> {
        let key = self.git.signing_key.as_ref()?;
        let text = match std::fs::read_to_string(key) {
            Ok(text) => text,
            Err(err) => {
                return Some(format!(
                    "git.signing_key: cannot read {}: {err}; give the path of an SSH private key (make one with `ssh-keygen -t ed25519 -N '' -f PATH`)",
                    key.display()
                ));
            }
        };
        (!text.contains("PRIVATE KEY-----")).then(|| {
            format!(
                "git.signing_key: {} is not an SSH private key; give the private key file, not the .pub",
                key.display()
            )
        })
    }

    fn validate_limits(&self, problems: &mut Vec<String>) {
        let positive = [
            ("executor.max_concurrent", self.executor.max_concurrent as u64),
            ("executor.timeout_secs", self.executor.timeout_secs),
            ("executor.max_attempts", u64::from(self.executor.max_attempts)),
            ("database.max_connections", u64::from(self.database.max_connections)),
            ("executor.lease_secs", self.executor.lease_secs),
            ("executor.poll_interval_secs", self.executor.poll_interval_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                problems.push(format!("{key}: must be at least 1"));
            }
        }
        problems.extend(agents::problems(&self.agent, &self.agents));
        let profiles = self.profile_names();
        for (i, entry) in self.repos.iter().enumerate() {
            if let Some(agent) = entry.agent.as_deref().filter(|agent| !profiles.contains(agent)) {
                problems.push(format!(
                    "repos[{i}].agent: no agent profile is named {agent:?}; the profiles are {}",
                    profiles.join(", ")
                ));
            }
        }
        let choosable = std::iter::once(("repo_config.agents".to_owned(), &self.repo_config.agents)).chain(
            self.repos
                .iter()
                .enumerate()
                .filter_map(|(i, e)| Some((format!("repos[{i}].agents"), e.agents.as_ref()?))),
        );
        for (key, names) in choosable {
            for name in names.iter().filter(|name| !profiles.contains(&name.as_str())) {
                problems.push(format!(
                    "{key}: no agent profile is named {name:?}; the profiles are {}",
                    profiles.join(", ")
                ));
            }
        }
    }

    /// What tasks on `repo` run around the agent, from the operator's settings alone.
    pub fn verification(&self, repo: &str) -> Verification {
        Verification::for_repo(&self.repo_config, &self.repos, repo)
    }

    /// The settings of agent profile `name` (`default` is `[agent]`), if there is one.
    pub fn profile(&self, name: &str) -> Option<AgentSettings> {
        agents::profile(&self.agent, &self.agents, name)
    }

    /// Every agent profile's name, `default` first.
    pub fn profile_names(&self) -> Vec<&str> {
        agents::names(&self.agents)
    }

    /// The forge with this name, if configured.
    pub fn forge(&self, name: &str) -> Option<&ForgeSettings> {
        self.forges.iter().find(|f| f.name == name)
    }

    /// The effective configuration as TOML, with every secret masked.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

impl ForgeKind {
    /// Every kind, in the order the setup wizard offers them.
    pub const ALL: [ForgeKind; 2] = [ForgeKind::Github, ForgeKind::Gitea];
}

impl std::str::FromStr for ForgeKind {
    type Err = serde::de::value::Error;

    /// The kind as the configuration file names it (`github`, `gitea`, `forgejo`).
    fn from_str(name: &str) -> Result<ForgeKind, Self::Err> {
        ForgeKind::deserialize(serde::de::value::StrDeserializer::new(name))
    }
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitea => "gitea",
        })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::None => "none",
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        })
    }
}

fn env_name(forge_name: &str) -> String {
    forge_name.to_ascii_uppercase().replace('-', "_")
}

/// What is wrong with a forge's GitHub App settings, if anything.
fn app_problem(key: &str, forge: &ForgeSettings) -> Option<String> {
    let pem = forge.private_key.expose_secret();
    match forge.app_id {
        None if !pem.is_empty() => {
            Some(format!("{key}.private_key: set app_id too (the GitHub App's id, on its settings page)"))
        }
        None => None,
        Some(_) if forge.kind != ForgeKind::Github => Some(format!(
            "{key}.app_id: only a GitHub forge connects as a GitHub App; use token for {}",
            forge.kind
        )),
        Some(_) if !forge.token.expose_secret().is_empty() => {
            Some(format!("{key}: set either token or app_id and private_key, not both"))
        }
        Some(_) => forge.app_private_key().err().map(|err| format!("{key}.private_key: {err}")),
    }
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
}

fn is_forge_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn is_repo_name(repo: &str) -> bool {
    check_repo_name(repo).is_ok()
}

fn is_branch_prefix(prefix: &str) -> bool {
    prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        && !prefix.starts_with('/')
        && !prefix.starts_with('-')
        && !prefix.contains("..")
        && !prefix.contains("//")
}

/// The text printed in place of a configured secret.
pub const MASK: &str = "********";

fn mask(secret: &SecretString) -> &'static str {
    if secret.expose_secret().is_empty() { "" } else { MASK }
}

fn serialize_secret<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mask(secret))
}

fn serialize_secrets<S: Serializer>(secrets: &WebhookSecrets, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(secrets.0.iter().map(mask))
}

fn serialize_env<S: Serializer>(
    env: &std::collections::BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(env.keys().map(|key| (key, MASK)))
}

fn serialize_database_url<S: Serializer>(url: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url_password(url.expose_secret()))
}

/// Masks the password of `scheme://user:password@host/...?password=...` wherever it is.
pub fn mask_url_password(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut masked = match base.split_once("://").and_then(|(s, rest)| Some((s, rest.rsplit_once('@')?))) {
        Some((scheme, (credentials, host))) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:{MASK}@{host}")
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}={MASK}"),
                _ => param.to_owned(),
            })
            .collect();
        masked = format!("{masked}?{}", params.join("&"));
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file_text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forgehand.toml");
        std::fs::write(&path, file_text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::load_with_env(Some(&path), env)
    }

    const TWO_FORGES: &str = r#"
        [[forges]]
        name = "github"
        kind = "github"
        api_url = "https://api.github.com"
        webhook_secret = "s1"
        [[forges]]
        name = "my-gitea"
        kind = "forgejo"
        api_url = "https://gitea.example.com/api/v1"
        webhook_secret = ["new", "old", ""]
    "#;

    #[test]
    fn only_a_github_apps_commits_go_through_the_api() {
        let settings = load(TWO_FORGES, &[]).unwrap();
        let (github, gitea) = (&settings.forges[0], &settings.forges[1]);
        let app = ForgeSettings { app_id: Some(7), ..github.clone() };
        let gitea_app = ForgeSettings { app_id: Some(7), ..gitea.clone() };
        let mut git = settings.git.clone();
        assert_eq!(git.commit_via_api, CommitViaApi::Auto, "the default");
        assert!(git.commits_via_api(&app));
        assert!(!git.commits_via_api(github), "a token pushes");
        assert!(!git.commits_via_api(&gitea_app), "Gitea pushes");
        git.signing_key = Some("/etc/key".into());
        assert!(!git.commits_via_api(&app), "auto: the SSH key signs, the push carries it");
        git.commit_via_api = CommitViaApi::Always;
        assert!(git.commits_via_api(&app));
        assert!(!git.commits_via_api(github));
        git.commit_via_api = CommitViaApi::Never;
        assert!(!git.commits_via_api(&app));
        let never = load("[git]\ncommit_via_api = \"never\"\n", &[]).unwrap();
        assert_eq!(never.git.commit_via_api, CommitViaApi::Never);
        assert!(load("[git]\ncommit_via_api = \"sometimes\"\n", &[]).is_err());
    }

    #[test]
    fn defaults_alone_are_valid() {
        let settings = Settings::load_with_env(None, HashMap::new()).unwrap();
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.trigger.label, "forgehand");
        assert_eq!(settings.trigger.min_permission, Permission::Write);
        assert!(settings.forges.is_empty());
    }

    #[test]
    fn file_and_environment_layer_over_defaults() {
        let settings = load(
            TWO_FORGES,
            &[
                ("FORGEHAND__SERVER__LISTEN", "127.0.0.1:9999"),
                ("FORGEHAND__EXECUTOR__MAX_CONCURRENT", "5"),
                ("FORGEHAND__TRIGGER__REPOS", "a/b,c/d"),
                ("FORGEHAND__FORGES__MY_GITEA__TOKEN", "tok"),
                ("FORGEHAND_CONFIG", "/ignored/because/single/underscore"),
                ("FORGEHAND__AUTH__ADMIN_TOKEN", "0123456789"),
            ],
        )
        .unwrap();
        assert_eq!(settings.server.listen.port(), 9999);
        assert_eq!(settings.executor.max_concurrent, 5);
        assert_eq!(settings.trigger.repos, ["a/b", "c/d"]);
        let gitea = settings.forge("my-gitea").unwrap();
        assert_eq!(gitea.kind, ForgeKind::Gitea);
        assert_eq!(gitea.token.expose_secret(), "tok");
        assert_eq!(gitea.webhook_secret.0.len(), 2, "empty secrets are dropped");
        assert_eq!(settings.auth.admin_token.expose_secret(), "0123456789", "digits stay as written");
    }

    #[test]
    fn storage_keeps_a_month_of_deliveries_by_default_and_takes_the_environment() {
        let settings =
            load("[storage]\nmirror_days = 0\n", &[("FORGEHAND__STORAGE__DELIVERY_DAYS", "7")]).unwrap();
        let storage = &settings.storage;
        assert_eq!((storage.delivery_days, storage.task_detail_days, storage.mirror_days), (7, 90, 0));
        assert_eq!((storage.spare_checkouts_mb, storage.cleanup_interval_secs), (2048, 3600));
        assert!(settings.executor.recycle_checkouts);
        let defaults = Settings::load_with_env(None, HashMap::new()).unwrap();
        assert_eq!(defaults.storage, storage::StorageSettings::default());
        let err = load("[storage]\ndelivery_day = 3\n", &[]).unwrap_err().to_string();
        assert!(err.contains("delivery_day"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load("[server]\nlisen = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = load("", &[("FORGEHAND__AGENT__MODLE", "x")]).unwrap_err().to_string();
        assert!(err.contains("modle"), "{err}");
        let err = load(TWO_FORGES, &[("FORGEHAND__FORGES__NOPE__TOKEN", "x")]).unwrap_err().to_string();
        assert!(err.contains("FORGEHAND__FORGES__NOPE__TOKEN"), "{err}");
    }

    #[test]
    fn errors_speak_the_files_language_and_name_the_file() {
        let err = load("[[forges]]\nname = \"g\"\nkind = \"githb\"\napi_url = \"https://x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains(r#"forges[0].kind: "githb" is not one of github, gitea (in "#), "{err}");
        assert!(err.contains("forgehand.toml)") && !err.contains("variant constructor"), "{err}");
        let err = load("[server]\nlisen = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("server.lisen: no such key; [server] takes listen,"), "{err}");
        assert!(err.contains("forgehand.toml)"), "the file is named: {err}");
        let err = load("", &[("FORGEHAND__AGENT__MODLE", "x")]).unwrap_err().to_string();
        assert!(err.contains("(in the environment variable FORGEHAND__AGENT__MODLE)"), "{err}");
        let err = load("[[forges]]\nname = \"g\"\nkind = \"github\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("forges[0].api_url: not set"), "{err}");
    }

    #[test]
    fn invalid_values_name_key_and_fix() {
        let err = load(
            "[trigger]\ncommand = \"/forge hand\"\nrepos = [\"nope\"]\n[executor]\nmax_concurrent = 0\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for expected in ["trigger.command", "trigger.repos", "executor.max_concurrent: must be at least 1"] {
            assert!(err.contains(expected), "{expected} missing in {err}");
        }
        let err = load("[server]\nlisten = \"localhost\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("server.listen"), "{err}");
        let err = load("[[forges]]\nname = \"x\"\nkind = \"gitlab\"\napi_url = \"https://x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("gitlab"), "{err}");
    }

    #[test]
    fn agent_profiles_and_allowed_tools() {
        let settings = load("", &[]).unwrap();
        assert_eq!((settings.agent.kind, settings.agent.prompt_via), (AgentKind::Claude, PromptVia::Stdin));
        let tools = [("FORGEHAND__AGENT__ALLOWED_TOOLS", "Edit,Bash(cargo:*)")];
        assert_eq!(load("", &tools).unwrap().agent.allowed_tools, ["Edit", "Bash(cargo:*)"]);
        let command =
            load("[agent]\nkind = \"command\"\ncommand = \"aider\"\nprompt_via = \"arg\"\n", &[]).unwrap();
        assert_eq!((command.agent.kind, command.agent.prompt_via), (AgentKind::Command, PromptVia::Arg));
        let err =
            load("[agent]\nkind = \"codex\"\nallowed_tools = [\"Bash\"]\n", &[]).unwrap_err().to_string();
        assert!(err.contains("agent.allowed_tools: only kind = \"claude\" supports it"), "{err}");
        let err = load("[agent]\nkind = \"gemini\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("gemini") && err.contains("agent.kind"), "{err}");
    }

    #[test]
    fn agent_env_keeps_the_case_of_its_names() {
        let settings = load("[agent]\nenv = { ANTHROPIC_BASE_URL = \"http://127.0.0.1:9\" }\n", &[]).unwrap();
        assert_eq!(settings.agent.env["ANTHROPIC_BASE_URL"], "http://127.0.0.1:9");
        assert!(!settings.to_masked_toml().contains("127.0.0.1:9"));
    }

    #[test]
    fn masked_output_hides_every_secret() {
        let settings = load(
            &format!("{TWO_FORGES}\n[auth]\nadmin_token = \"admintok\"\n[database]\nurl = \"postgres://u:pw@db/x\"\n"),
            &[("FORGEHAND__FORGES__GITHUB__TOKEN", "ghp_secret")],
        )
        .unwrap();
        let shown = settings.to_masked_toml();
        for secret in ["admintok", "pw@", "ghp_secret", "s1", "\"new\"", "\"old\""] {
            assert!(!shown.contains(secret), "{secret} leaked in\n{shown}");
        }
        assert!(shown.contains("postgres://u:********@db/x"), "{shown}");
        assert_eq!(
            mask_url_password("postgres://db/fh?user=a&password=hunter2"),
            "postgres://db/fh?user=a&password=********"
        );
        assert_eq!(mask_url_password("postgres://u@db/fh"), "postgres://u@db/fh");
        assert!(!format!("{settings:?}").contains("ghp_secret"));
    }

    const SINKS: &str = r#"
[[notify.sinks]]
name = "team-chat"
kind = "slack"
events = ["task_done"]
url = "https://hooks.example.com/services/T0/B0/filetoken"
[[notify.sinks]]
name = "hook"
kind = "webhook"
events = ["task_failed", "breaker_opened"]
repos = ["octo-org/hello-world"]
url = "https://receiver.example.com/in"
secret = "hooksecret"
"#;

    #[test]
    fn sink_secrets_are_env_overridable_and_masked_everywhere() {
        let settings = load(
            SINKS,
            &[
                (
                    "FORGEHAND__NOTIFY__SINKS__TEAM_CHAT__URL",
                    "https://hooks.example.com/services/T1/B1/envtoken",
                ),
                ("FORGEHAND__NOTIFY__SINKS__HOOK__SECRET", "envsecret"),
            ],
        )
        .unwrap();
        let chat = &settings.notify.sinks[0];
        assert_eq!(chat.url.expose_secret(), "https://hooks.example.com/services/T1/B1/envtoken");
        assert_eq!(settings.notify.sinks[1].secret.expose_secret(), "envsecret");
        assert!(settings.notify.sinks[1].wants("task_failed", Some("Octo-Org/hello-world")));
        assert!(!settings.notify.sinks[1].wants("task_failed", Some("someone/else")));
        assert!(!settings.notify.sinks[1].wants("task_done", Some("octo-org/hello-world")));
        let shown = format!("{}{settings:?}", settings.to_masked_toml());
        for secret in ["envtoken", "envsecret", "filetoken", "hooksecret", "receiver.example.com/in"] {
            assert!(!shown.contains(secret), "{secret} leaked in\n{shown}");
        }
        let err = load(SINKS, &[("FORGEHAND__NOTIFY__SINKS__NOPE__URL", "x")]).unwrap_err().to_string();
        assert!(err.contains("no [[notify.sinks]] entry matches"), "{err}");
    }

    #[test]
    fn a_bad_sink_is_refused_with_what_to_fix() {
        let text = "[[notify.sinks]]\nname = \"h\"\nkind = \"webhook\"\nevents = [\"task_dun\"]\nurl = \"ftp://x\"\n";
        let err = load(text, &[]).unwrap_err().to_string();
        assert!(err.contains("unknown event \"task_dun\""), "{err}");
        assert!(err.contains("url must be an http(s) URL"), "{err}");
        assert!(err.contains("a webhook sink needs a secret"), "{err}");
    }

    #[test]
    fn changed_keys_name_keys_and_say_only_whether_a_secret_changed() {
        let old = load(SINKS, &[]).unwrap();
        let new = load(
            &format!("{SINKS}\n[executor]\nmax_concurrent = 7\n"),
            &[
                ("FORGEHAND__NOTIFY__SINKS__HOOK__SECRET", "rotated"),
                ("FORGEHAND__AUTH__ADMIN_TOKEN", "newadmin"),
            ],
        )
        .unwrap();
        let keys = changed_keys(&old, &new);
        assert!(keys.contains(&"executor.max_concurrent".to_owned()), "{keys:?}");
        assert!(keys.contains(&"notify.sinks[hook].secret: changed".to_owned()), "{keys:?}");
        assert!(keys.contains(&"auth.admin_token: set".to_owned()), "{keys:?}");
        let all = keys.join(" ");
        for secret in ["rotated", "newadmin", "hooksecret", "7"] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
    }

    #[test]
    fn without_a_config_file_the_one_in_data_dir_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let env: HashMap<String, String> =
            [("FORGEHAND__DATA_DIR".to_owned(), dir.path().display().to_string())].into();
        let none = Settings::load_or_discover_with_env(None, env.clone()).unwrap();
        assert_eq!((none.config_file.as_deref(), none.trigger.label.as_str()), (None, "forgehand"));
        assert_eq!(none.config_target(), dir.path().join(DATA_DIR_CONFIG));

        let written = dir.path().join(DATA_DIR_CONFIG);
        std::fs::write(&written, "[trigger]\nlabel = \"robot\"\n").unwrap();
        let found = Settings::load_or_discover_with_env(None, env.clone()).unwrap();
        assert_eq!(
            (found.config_file.as_deref(), found.trigger.label.as_str()),
            (Some(written.as_path()), "robot")
        );

        // FORGEHAND__DATA_DIR still wins over the file, so the file stays where it is read.
        std::fs::write(&written, "data_dir = \"/elsewhere\"\n").unwrap();
        let moved = Settings::load_or_discover_with_env(None, env).unwrap();
        assert_eq!(moved.data_dir, dir.path());
    }
}
