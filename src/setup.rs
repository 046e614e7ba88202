//! The setup wizard's work, apart from HTTP: the answers collected step by step
//! ([`Draft`]), live checks of a forge token and of the agent command, the config file the
//! answers become, and writing that file safely.
//!
//! The file written is the existing config file with the wizard's keys set: every other
//! key keeps its value, comments are not kept (the previous file is, as `<name>.bak`).
//! Before anything is replaced, the new text is loaded exactly as the daemon loads its
//! configuration (defaults, file, environment, validation); a file that would not start
//! forgehand is never written.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::config::{
    ForgeKind, ForgeSettings, MASK, Permission, Settings, WebhookSecrets, mask_url_password,
};

/// How long a live check (token or agent) may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// The wizard's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Forge,
    Token,
    Webhook,
    Trigger,
    Agent,
    Review,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 6] =
        [Step::Forge, Step::Token, Step::Webhook, Step::Trigger, Step::Agent, Step::Review];

    /// The step's path segment: `/setup/wizard/<slug>`.
    pub fn slug(self) -> &'static str {
        match self {
            Step::Forge => "forge",
            Step::Token => "token",
            Step::Webhook => "webhook",
            Step::Trigger => "trigger",
            Step::Agent => "agent",
            Step::Review => "review",
        }
    }

    /// The step's heading.
    pub fn title(self) -> &'static str {
        match self {
            Step::Forge => "Forge",
            Step::Token => "API token",
            Step::Webhook => "Webhook",
            Step::Trigger => "Trigger",
            Step::Agent => "Agent",
            Step::Review => "Review and save",
        }
    }

    /// The step named `slug`.
    pub fn from_slug(slug: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.slug() == slug)
    }

    fn next(self) -> Step {
        Step::ALL.into_iter().find(|s| *s > self).unwrap_or(Step::Review)
    }
}

/// What a token check found.
#[derive(Debug, Clone)]
pub struct TokenReport {
    /// The account the token authenticates as.
    pub login: String,
    /// The repository asked about and the account's permission on it.
    pub permission: Option<(String, Permission)>,
}

impl TokenReport {
    /// The report as sentences.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("The token authenticates as {}.", self.login)];
        if let Some((repo, permission)) = &self.permission {
            lines.push(format!("{} has {permission} permission on {repo}.", self.login));
            if *permission < Permission::Write {
                lines.push(format!(
                    "forgehand needs write permission to push branches and open pull requests: give {} write access to {repo}.",
                    self.login
                ));
            }
        }
        lines
    }
}

/// What checking the agent command found.
#[derive(Debug, Clone)]
pub struct AgentCheck {
    /// Where the program is.
    pub path: PathBuf,
    /// The first line `--version` printed.
    pub version: String,
}

/// The wizard's answers so far. Secrets typed or generated here live only in this draft
/// (server-side, per session) until they are written to the file; pages only say
/// whether one is set.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The name of the configured forge being edited; `None` adds a forge.
    pub editing: Option<String>,
    pub public_url: String,
    pub name: String,
    pub kind: ForgeKind,
    pub api_url: String,
    /// A token typed in the wizard, replacing the configured one.
    pub new_token: Option<SecretString>,
    /// The last successful token check.
    pub checked: Option<TokenReport>,
    pub repo: String,
    /// A webhook secret generated in the wizard, replacing the configured one.
    pub new_secret: Option<SecretString>,
    /// Whether the generated secret was shown (it is shown once).
    pub secret_shown: bool,
    pub label: String,
    pub command: String,
    pub agent_command: String,
    pub agent: Option<AgentCheck>,
    pub max_concurrent: usize,
    pub timeout_secs: u64,
    /// The furthest step the answers allow.
    pub reached: Step,
}

/// The first step's answers.
#[derive(Debug, Clone, Default)]
pub struct ForgeAnswers {
    pub public_url: String,
    pub name: String,
    pub kind: String,
    pub api_url: String,
}

/// The agent step's answers.
#[derive(Debug, Clone, Default)]
pub struct AgentAnswers {
    pub command: String,
    pub max_concurrent: String,
    pub timeout_secs: String,
}

/// Problems with the answers, each a sentence saying what to change.
pub type Problems = Vec<String>;

impl Draft {
    /// A draft editing the forge named `forge`, or adding one when it is not configured.
    pub fn new(current: &Settings, forge: Option<&str>) -> Draft {
        let existing = forge.and_then(|name| current.forge(name));
        let (name, kind, api_url) = match existing {
            Some(f) => (f.name.clone(), f.kind, f.api_url.clone()),
            None => {
                let kind = ForgeKind::Github;
                let api_url = crate::forge::dialect(kind).setup.default_api_url.to_owned();
                (free_name(current, &kind.to_string()), kind, api_url)
            }
        };
        Draft {
            editing: existing.map(|f| f.name.clone()),
            public_url: current.server.public_url.clone(),
            name,
            kind,
            api_url,
            new_token: None,
            checked: None,
            repo: current.trigger.repos.first().cloned().unwrap_or_default(),
            new_secret: None,
            secret_shown: false,
            label: current.trigger.label.clone(),
            command: current.trigger.command.clone(),
            agent_command: current.agent.command.clone(),
            agent: None,
            max_concurrent: current.executor.max_concurrent,
            timeout_secs: current.executor.timeout_secs,
            reached: Step::Forge,
        }
    }

    /// The forge as these answers configure it; secrets not replaced here are the ones
    /// in force.
    pub fn forge(&self, current: &Settings) -> ForgeSettings {
        let existing = self.editing.as_deref().and_then(|name| current.forge(name));
        let token = match (&self.new_token, existing) {
            (Some(token), _) => token.clone(),
            (None, Some(f)) => f.token.clone(),
            (None, None) => SecretString::from(""),
        };
        let webhook_secret = match (&self.new_secret, existing) {
            (Some(secret), _) => WebhookSecrets(vec![secret.clone()]),
            (None, Some(f)) => f.webhook_secret.clone(),
            (None, None) => WebhookSecrets::default(),
        };
        ForgeSettings {
            name: self.name.clone(),
            kind: self.kind,
            api_url: self.api_url.clone(),
            token,
            webhook_secret,
            bot_login: self.bot_login(existing),
        }
    }

    fn bot_login(&self, existing: Option<&ForgeSettings>) -> String {
        match (&self.checked, existing) {
            (Some(report), _) => report.login.clone(),
            (None, Some(f)) => f.bot_login.clone(),
            (None, None) => String::new(),
        }
    }

    /// Whether the forge has an API token, typed here or configured.
    pub fn token_set(&self, current: &Settings) -> bool {
        !self.forge(current).token.expose_secret().is_empty()
    }

    /// Whether the forge has a webhook secret, generated here or configured.
    pub fn secret_set(&self, current: &Settings) -> bool {
        !self.forge(current).webhook_secret.is_empty()
    }

    /// The settings in force with these answers applied, for validation.
    pub fn candidate(&self, current: &Settings) -> Settings {
        let mut settings = current.clone();
        settings.server.public_url.clone_from(&self.public_url);
        let forge = self.forge(current);
        match settings.forges.iter_mut().find(|f| Some(&f.name) == self.editing.as_ref()) {
            Some(slot) => *slot = forge,
            None => settings.forges.push(forge),
        }
        settings.trigger.label.clone_from(&self.label);
        settings.trigger.command.clone_from(&self.command);
        settings.agent.command.clone_from(&self.agent_command);
        settings.executor.max_concurrent = self.max_concurrent;
        settings.executor.timeout_secs = self.timeout_secs;
        settings
    }

    fn validated(&self, current: &Settings) -> Result<(), Problems> {
        match self.candidate(current).validate() {
            Ok(()) => Ok(()),
            Err(crate::config::ConfigError::Invalid(problems)) => Err(problems),
            Err(other) => Err(vec![other.to_string()]),
        }
    }

    fn advance(&mut self, done: Step) {
        self.reached = self.reached.max(done.next());
    }

    /// Step 1: where forgehand is reached, and the forge's name, kind and API URL.
    pub fn set_forge(&mut self, current: &Settings, answers: ForgeAnswers) -> Result<(), Problems> {
        let before = (self.kind, self.api_url.clone());
        self.public_url = answers.public_url.trim().trim_end_matches('/').to_owned();
        if self.editing.is_none() {
            self.name = answers.name.trim().to_owned();
        }
        self.api_url = answers.api_url.trim().trim_end_matches('/').to_owned();
        let kind = answers.kind.parse::<ForgeKind>().map_err(|_| {
            let known: Vec<&str> =
                ForgeKind::ALL.iter().map(|kind| crate::forge::dialect(*kind).name).collect();
            format!("Forge kind {:?} is not known: pick {}.", answers.kind, known.join(" or "))
        });
        if let Ok(kind) = kind {
            self.kind = kind;
        }
        if (self.kind, &self.api_url) != (before.0, &before.1) {
            self.checked = None;
        }
        let mut problems: Problems = kind.err().into_iter().collect();
        if self.editing.is_none() && current.forge(&self.name).is_some() {
            problems.push(format!(
                "A forge named {:?} is configured already: pick another name, or change it from the setup page.",
                self.name
            ));
        }
        self.finish(Step::Forge, current, problems)
    }

    /// Records the outcome of `step`: with problems, the answers stay (to be corrected)
    /// and the wizard holds at this step; without, the next step opens.
    fn finish(&mut self, step: Step, current: &Settings, mut problems: Problems) -> Result<(), Problems> {
        if problems.is_empty()
            && let Err(more) = self.validated(current)
        {
            problems = more;
        }
        if !problems.is_empty() {
            self.reached = self.reached.min(step);
            return Err(problems);
        }
        self.advance(step);
        if self.checked.is_none() {
            // A new API URL or kind: the token is tested again before going further.
            self.reached = self.reached.min(Step::Token);
        }
        Ok(())
    }

    /// Step 2: tests the token (a new one, or the one in force) live against the forge:
    /// who it is and its permission on `repo`.
    pub async fn set_token(&mut self, current: &Settings, token: &str, repo: &str) -> Result<(), Problems> {
        let repo = repo.trim();
        let mut forge = self.forge(current);
        if !token.trim().is_empty() {
            forge.token = SecretString::from(token.trim().to_owned());
        }
        let mut problems = Vec::new();
        if forge.token.expose_secret().is_empty() {
            problems.push("Enter the bot account's API token.".to_owned());
        }
        if !is_repo(repo) {
            problems.push(format!(
                "Name a repository the bot should work on as owner/name (got {:?}).",
                repo.chars().take(100).collect::<String>()
            ));
        }
        self.repo = repo.to_owned();
        if !problems.is_empty() {
            return Err(problems);
        }
        let report = check_token(&forge, Some(repo)).await.map_err(|message| vec![message])?;
        if !token.trim().is_empty() {
            self.new_token = Some(forge.token);
        }
        self.checked = Some(report);
        self.advance(Step::Token);
        Ok(())
    }

    /// Step 3: a new webhook secret, shown once by the next page.
    pub fn generate_secret(&mut self) -> std::io::Result<()> {
        self.new_secret = Some(SecretString::from(crate::server::auth::generate_token()?));
        self.secret_shown = false;
        Ok(())
    }

    /// Step 3 done: a secret must be set.
    pub fn confirm_webhook(&mut self, current: &Settings) -> Result<(), Problems> {
        if !self.secret_set(current) {
            return Err(vec![
                "Generate a webhook secret first: without one every delivery is refused.".into(),
            ]);
        }
        self.advance(Step::Webhook);
        Ok(())
    }

    /// Step 4: the trigger label and command.
    pub fn set_trigger(&mut self, current: &Settings, label: &str, command: &str) -> Result<(), Problems> {
        self.label = label.trim().to_owned();
        self.command = command.trim().to_owned();
        self.finish(Step::Trigger, current, Vec::new())
    }

    /// Step 5: the agent command (found and answering `--version`), concurrency and timeout.
    pub async fn set_agent(&mut self, current: &Settings, answers: AgentAnswers) -> Result<(), Problems> {
        let mut problems = Vec::new();
        self.agent_command = answers.command.trim().to_owned();
        self.agent = None;
        match answers.max_concurrent.trim().parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => self.max_concurrent = n,
            _ => problems.push("Concurrent agents must be a whole number from 1 to 64.".to_owned()),
        }
        match answers.timeout_secs.trim().parse::<u64>() {
            Ok(s) if (60..=86_400).contains(&s) => self.timeout_secs = s,
            _ => problems
                .push("The timeout must be a whole number of seconds from 60 to 86400 (a day).".to_owned()),
        }
        if problems.is_empty() && !self.agent_command.is_empty() {
            match check_agent(&self.agent_command).await {
                Ok(found) => self.agent = Some(found),
                Err(message) => problems.push(message),
            }
        }
        self.finish(Step::Agent, current, problems)
    }
}

fn free_name(current: &Settings, base: &str) -> String {
    if current.forge(base).is_none() {
        return base.to_owned();
    }
    (2..).map(|n| format!("{base}-{n}")).find(|name| current.forge(name).is_none()).unwrap_or_default()
}

fn is_repo(repo: &str) -> bool {
    let mut parts = repo.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(o), Some(n), None)
        if !o.is_empty() && !n.is_empty() && !repo.contains(char::is_whitespace))
}

/// Tries `forge`'s token: the account it authenticates as and, when `repo` is given, that
/// account's permission there. The error says what failed, never the token.
pub async fn check_token(forge: &ForgeSettings, repo: Option<&str>) -> Result<TokenReport, String> {
    let check = async {
        let client =
            crate::forge::client::connect(forge).map_err(|e| format!("Cannot build the API client: {e}"))?;
        let login = client.current_login().await.map_err(|e| format!("The token does not work: {e}"))?;
        let permission = match repo {
            Some(repo) => match client.permission(repo, &login).await {
                Ok(permission) => Some((repo.to_owned(), permission)),
                Err(err) => {
                    return Err(format!(
                        "The token authenticates as {login}, but reading its permission on {repo} failed: {err}"
                    ));
                }
            },
            None => None,
        };
        Ok(TokenReport { login, permission })
    };
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(result) => result,
        Err(_) => Err(format!("{} did not answer within {} s.", forge.api_url, CHECK_TIMEOUT.as_secs())),
    }
}

/// Finds the agent program (a path, or a name on forgehand's `PATH`) and runs it with
/// `--version`, with an environment of only `PATH` and `HOME`.
pub async fn check_agent(command: &str) -> Result<AgentCheck, String> {
    let path = find_program(command).ok_or_else(|| {
        let searched = std::env::var("PATH").unwrap_or_default();
        if command.contains('/') {
            format!("{command:?} is not an executable file. Give the full path of the Claude Code CLI.")
        } else {
            format!(
                "{command:?} is not on forgehand's PATH ({searched}). Install Claude Code \
                 (npm install -g @anthropic-ai/claude-code) or give the program's full path."
            )
        }
    })?;
    let mut run = tokio::process::Command::new(&path);
    run.arg("--version").env_clear().stdin(std::process::Stdio::null()).kill_on_drop(true);
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            run.env(name, value);
        }
    }
    let shown = path.display();
    let output = match tokio::time::timeout(CHECK_TIMEOUT, run.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => return Err(format!("Cannot run {shown} --version: {err}.")),
        Err(_) => {
            return Err(format!("{shown} --version did not finish within {} s.", CHECK_TIMEOUT.as_secs()));
        }
    };
    let first_line = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>()
    };
    if !output.status.success() {
        let said = first_line(&output.stderr);
        return Err(format!("{shown} --version failed ({}): {said}", output.status));
    }
    let version = first_line(&output.stdout);
    Ok(AgentCheck { path, version: if version.is_empty() { first_line(&output.stderr) } else { version } })
}

fn find_program(command: &str) -> Option<PathBuf> {
    let executable =
        |path: &Path| path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if command.contains('/') {
        let path = PathBuf::from(command);
        return executable(&path).then_some(path);
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs).map(|dir| dir.join(command)).find(|path| executable(path))
}

// ---------------------------------------------------------------- the file

/// The config file the answers make, and where it goes.
#[derive(Debug)]
pub struct Plan {
    pub path: PathBuf,
    /// Whether a file is there now (it becomes the backup).
    pub replaces: bool,
    /// The full text, secrets included: only ever written to the file.
    pub text: SecretString,
    /// The text with every secret replaced by `********`, for the page.
    pub masked: String,
}

/// Builds the file: the one at `path` (if any) with the draft's keys set.
pub fn plan(draft: &Draft, current: &Settings, path: &Path) -> Result<Plan, Problems> {
    draft.validated(current)?;
    let (mut table, replaces) = match std::fs::read_to_string(path) {
        Ok(text) => (
            text.parse::<toml::Table>().map_err(|e| {
                vec![format!(
                    "{} is not valid TOML ({e}); fix or move it, then run the wizard again.",
                    path.display()
                )]
            })?,
            true,
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => (toml::Table::new(), false),
        Err(err) => return Err(vec![format!("Cannot read {}: {err}.", path.display())]),
    };
    apply(&mut table, draft);
    let body =
        toml::to_string(&table).map_err(|e| vec![format!("Cannot write the settings as TOML: {e}")])?;
    let header = format!(
        "# forgehand configuration, written by the setup wizard on {}.\n\
         # The previous file is kept as {}.bak. Every key: docs/configuration.md\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    );
    mask_table(&mut table);
    let masked = format!("{header}{}", toml::to_string(&table).unwrap_or_default());
    Ok(Plan { path: path.to_owned(), replaces, text: SecretString::from(format!("{header}{body}")), masked })
}

/// Sets the wizard's keys in `table`; everything else stays as it is, where it is.
fn apply(table: &mut toml::Table, draft: &Draft) {
    use toml::Value;
    let set = |table: &mut toml::Table, section: &str, key: &str, value: Value| {
        let slot = table.entry(section).or_insert_with(|| Value::Table(toml::Table::new()));
        if !slot.is_table() {
            *slot = Value::Table(toml::Table::new());
        }
        if let Some(section) = slot.as_table_mut() {
            section.insert(key.to_owned(), value);
        }
    };
    set(table, "server", "public_url", Value::String(draft.public_url.clone()));
    set(table, "trigger", "label", Value::String(draft.label.clone()));
    set(table, "trigger", "command", Value::String(draft.command.clone()));
    set(table, "agent", "command", Value::String(draft.agent_command.clone()));
    set(table, "executor", "max_concurrent", Value::Integer(draft.max_concurrent as i64));
    set(table, "executor", "timeout_secs", Value::Integer(draft.timeout_secs as i64));
    apply_forge(table, draft);
}

fn apply_forge(table: &mut toml::Table, draft: &Draft) {
    use toml::Value;
    let slot = table.entry("forges").or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    let Some(forges) = slot.as_array_mut() else { return };
    let wanted = draft.editing.as_deref().unwrap_or(&draft.name);
    let found =
        forges.iter().position(|f| f.get("name").and_then(Value::as_str) == Some(wanted) && f.is_table());
    let index = found.unwrap_or_else(|| {
        forges.push(Value::Table(toml::Table::new()));
        forges.len() - 1
    });
    let Some(forge) = forges[index].as_table_mut() else { return };
    forge.insert("name".into(), Value::String(draft.name.clone()));
    forge.insert("kind".into(), Value::String(draft.kind.to_string()));
    forge.insert("api_url".into(), Value::String(draft.api_url.clone()));
    if let Some(report) = &draft.checked {
        forge.insert("bot_login".into(), Value::String(report.login.clone()));
    }
    if let Some(token) = &draft.new_token {
        forge.insert("token".into(), Value::String(token.expose_secret().to_owned()));
    }
    if let Some(secret) = &draft.new_secret {
        forge.insert("webhook_secret".into(), Value::String(secret.expose_secret().to_owned()));
    }
}

/// Replaces every secret a config table can hold by [`MASK`].
fn mask_table(table: &mut toml::Table) {
    use toml::Value;
    let masked = |v: &Value| match v {
        Value::String(s) if s.is_empty() => Value::String(String::new()),
        _ => Value::String(MASK.into()),
    };
    if let Some(Value::Array(forges)) = table.get_mut("forges") {
        for forge in forges.iter_mut().filter_map(Value::as_table_mut) {
            if let Some(token) = forge.get_mut("token") {
                *token = masked(token);
            }
            match forge.get_mut("webhook_secret") {
                Some(Value::Array(all)) => all.iter_mut().for_each(|s| *s = masked(s)),
                Some(one) => *one = masked(one),
                None => {}
            }
        }
    }
    if let Some(token) = table.get_mut("auth").and_then(|a| a.get_mut("admin_token")) {
        *token = masked(token);
    }
    if let Some(Value::String(url)) = table.get_mut("database").and_then(|d| d.get_mut("url")) {
        *url = mask_url_password(url);
    }
    if let Some(Value::Table(env)) = table.get_mut("agent").and_then(|a| a.get_mut("env")) {
        env.iter_mut().for_each(|(_, v)| *v = Value::String(MASK.into()));
    }
}

/// What writing the file did.
#[derive(Debug)]
pub struct Saved {
    /// The settings the new file gives, loaded as the daemon loads them.
    pub settings: Settings,
    /// Where the previous file went.
    pub backup: Option<PathBuf>,
}

/// Writes `plan` atomically: a temporary file (mode 0600) in the same directory, synced,
/// loaded and validated like the daemon's configuration; then the previous file is copied
/// to `<name>.bak` (0600) and the new one renamed over it, and the directory is synced.
/// Nothing is replaced when any of it fails.
pub fn save(plan: &Plan) -> Result<Saved, Problems> {
    let path = &plan.path;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name =
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "forgehand.toml".into());
    let io = |what: &str, err: std::io::Error| {
        vec![format!(
            "Cannot {what} in {}: {err}. forgehand needs write access to that directory (under systemd: ReadWritePaths=).",
            dir.display()
        )]
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create the directory", e))?;
    let unique = crate::server::auth::generate_token().map_err(|e| io("name a temporary file", e))?;
    let temp = dir.join(format!(".{name}.wizard-{}", &unique[..12]));
    write_new(&temp, plan.text.expose_secret().as_bytes()).map_err(|e| io("write a temporary file", e))?;
    let loaded = Settings::load(Some(&temp));
    let mut settings = match loaded {
        Ok(settings) => settings,
        Err(err) => {
            let _ = std::fs::remove_file(&temp);
            return Err(match err {
                crate::config::ConfigError::Invalid(problems) => problems,
                other => {
                    vec![other.to_string().replace(&temp.display().to_string(), &path.display().to_string())]
                }
            });
        }
    };
    settings.config_file = Some(path.clone());
    let backup = match std::fs::read(path) {
        Ok(previous) => {
            let backup = dir.join(format!("{name}.bak"));
            let staged = dir.join(format!(".{name}.bak-{}", &unique[..12]));
            let kept = write_new(&staged, &previous).and_then(|()| std::fs::rename(&staged, &backup));
            if let Err(err) = kept {
                let _ = std::fs::remove_file(&staged);
                let _ = std::fs::remove_file(&temp);
                return Err(io("keep the previous file as a backup", err));
            }
            Some(backup)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            let _ = std::fs::remove_file(&temp);
            return Err(io("read the previous file", err));
        }
    };
    if let Err(err) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(io("replace the config file", err));
    }
    std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| io("sync the directory", e))?;
    Ok(Saved { settings, backup })
}

/// Creates `path` (mode 0600, failing if it exists), writes `bytes` and syncs them.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The keys whose change only a restart applies, with their old and new values differing.
pub fn restart_needed(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let checks = [
        ("data_dir", old.data_dir != new.data_dir),
        ("server.listen", old.server.listen != new.server.listen),
        ("server.header_timeout_secs", old.server.header_timeout_secs != new.server.header_timeout_secs),
        ("server.max_connections", old.server.max_connections != new.server.max_connections),
        ("database.url", old.database.url.expose_secret() != new.database.url.expose_secret()),
        ("database.max_connections", old.database.max_connections != new.database.max_connections),
        ("auth.admin_token", old.auth.admin_token.expose_secret() != new.auth.admin_token.expose_secret()),
        ("executor.enabled", old.executor.enabled != new.executor.enabled),
    ];
    checks.into_iter().filter(|(_, changed)| *changed).map(|(key, _)| key).collect()
}

/// The wizard's answers the environment overrides (`FORGEHAND__…` wins over the file).
pub fn overridden(draft: &Draft, loaded: &Settings) -> Vec<&'static str> {
    let checks = [
        ("server.public_url", loaded.server.public_url != draft.public_url),
        ("trigger.label", loaded.trigger.label != draft.label),
        ("trigger.command", loaded.trigger.command != draft.command),
        ("agent.command", loaded.agent.command != draft.agent_command),
        ("executor.max_concurrent", loaded.executor.max_concurrent != draft.max_concurrent),
        ("executor.timeout_secs", loaded.executor.timeout_secs != draft.timeout_secs),
    ];
    checks.into_iter().filter(|(_, differs)| *differs).map(|(key, _)| key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_from(dir: &Path, text: &str) -> Settings {
        let path = dir.join("forgehand.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load_with_env(Some(&path), Default::default()).unwrap()
    }

    fn base(dir: &Path) -> String {
        format!(
            "# hand-written\ndata_dir = \"{}\"\n[auth]\nadmin_token = \"admintok\"\n[agent]\nenv = {{ ANTHROPIC_API_KEY = \"sk-key\" }}\n\
             [[forges]]\nname = \"gitea\"\nkind = \"gitea\"\napi_url = \"https://git.example.com/api/v1\"\ntoken = \"old-token\"\nwebhook_secret = [\"s1\", \"s2\"]\n",
            dir.join("data").display()
        )
    }

    fn github_draft(current: &Settings) -> Draft {
        let mut draft = Draft::new(current, None);
        let answers = ForgeAnswers {
            public_url: "https://fh.example.com/".into(),
            name: "github".into(),
            kind: "github".into(),
            api_url: "https://api.github.com".into(),
        };
        draft.set_forge(current, answers).unwrap();
        draft.new_token = Some(SecretString::from("ghp_new"));
        draft.checked = Some(TokenReport { login: "bot".into(), permission: None });
        draft.generate_secret().unwrap();
        draft
    }

    #[test]
    fn a_new_forge_is_added_and_other_keys_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let current = settings_from(dir.path(), &base(dir.path()));
        let draft = github_draft(&current);
        let plan = plan(&draft, &current, &current.config_target()).unwrap();
        assert!(plan.replaces);
        let saved = save(&plan).unwrap();
        let forges: Vec<_> = saved.settings.forges.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(forges, ["gitea", "github"]);
        let gitea = saved.settings.forge("gitea").unwrap();
        assert_eq!((gitea.token.expose_secret(), gitea.webhook_secret.0.len()), ("old-token", 2));
        let github = saved.settings.forge("github").unwrap();
        assert_eq!((github.token.expose_secret(), github.bot_login.as_str()), ("ghp_new", "bot"));
        assert_eq!(saved.settings.server.public_url, "https://fh.example.com");
        assert_eq!(saved.settings.agent.env["ANTHROPIC_API_KEY"], "sk-key");
        assert_eq!(saved.settings.config_file.as_deref(), Some(plan.path.as_path()));
    }

    #[test]
    fn the_file_is_0600_and_the_previous_one_is_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let original = base(dir.path());
        let current = settings_from(dir.path(), &original);
        let path = current.config_target();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let saved = save(&plan(&github_draft(&current), &current, &path).unwrap()).unwrap();
        let backup = saved.backup.unwrap();
        assert_eq!(backup, dir.path().join("forgehand.toml.bak"));
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
        for file in [&path, &backup] {
            assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{}", file.display());
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn the_preview_masks_every_secret() {
        let dir = tempfile::tempdir().unwrap();
        let current = settings_from(dir.path(), &base(dir.path()));
        let draft = github_draft(&current);
        let plan = plan(&draft, &current, &current.config_target()).unwrap();
        let secret = draft.new_secret.as_ref().unwrap().expose_secret().to_owned();
        for leaked in ["ghp_new", "old-token", "\"s1\"", "admintok", "sk-key", secret.as_str()] {
            assert!(!plan.masked.contains(leaked), "{leaked} in\n{}", plan.masked);
            assert!(!format!("{plan:?}").contains(leaked), "{leaked} in Debug");
        }
        assert!(plan.text.expose_secret().contains(&secret));
        assert!(plan.masked.contains("token = \"********\""), "{}", plan.masked);
    }

    #[test]
    fn a_file_that_would_not_load_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let original = base(dir.path());
        let current = settings_from(dir.path(), &original);
        let path = current.config_target();
        let text = format!("{original}\n[executor]\nmax_concurrent = 0\n");
        let bad = Plan {
            path: path.clone(),
            replaces: true,
            text: SecretString::from(text),
            masked: String::new(),
        };
        let problems = save(&bad).unwrap_err();
        assert!(problems.iter().any(|p| p.contains("executor.max_concurrent")), "{problems:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
        assert!(!dir.path().join("forgehand.toml.bak").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn answers_are_checked_with_the_loader_rules() {
        let dir = tempfile::tempdir().unwrap();
        let current = settings_from(dir.path(), &base(dir.path()));
        let mut draft = Draft::new(&current, None);
        let answers = |name: &str, url: &str| ForgeAnswers {
            public_url: "http://127.0.0.1:8080".into(),
            name: name.into(),
            kind: "github".into(),
            api_url: url.into(),
        };
        let problems = draft.set_forge(&current, answers("Bad Name", "ftp://x")).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains(".name")) && problems.iter().any(|p| p.contains(".api_url"))
        );
        let taken = draft.set_forge(&current, answers("gitea", "https://api.github.com")).unwrap_err();
        assert!(taken[0].contains("configured already"), "{taken:?}");
        assert_eq!(draft.reached, Step::Forge);
        let problems = draft.set_trigger(&current, "", "two words").unwrap_err();
        assert!(problems.iter().any(|p| p.starts_with("trigger.label")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("trigger.command")), "{problems:?}");
        assert_eq!(draft.command, "two words", "a refused answer stays, to be corrected");
        assert_eq!(draft.reached, Step::Forge, "and the steps after it stay closed");
    }

    #[tokio::test]
    async fn the_agent_check_finds_the_program_and_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("claude");
        std::fs::write(&program, "#!/bin/sh\necho '2.1.0 (Claude Code)'\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = check_agent(program.to_str().unwrap()).await.unwrap();
        assert_eq!((found.path, found.version.as_str()), (program.clone(), "2.1.0 (Claude Code)"));
        let missing = check_agent("no-such-agent-program").await.unwrap_err();
        assert!(missing.contains("is not on forgehand's PATH"), "{missing}");
        std::fs::write(&program, "#!/bin/sh\necho 'unknown option' >&2\nexit 3\n").unwrap();
        let failed = check_agent(program.to_str().unwrap()).await.unwrap_err();
        assert!(failed.contains("--version failed") && failed.contains("unknown option"), "{failed}");
    }

    #[test]
    fn keys_that_need_a_restart_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let old = settings_from(dir.path(), &base(dir.path()));
        let mut new = old.clone();
        new.trigger.label = "bot".into();
        assert!(restart_needed(&old, &new).is_empty());
        new.server.listen = "127.0.0.1:9999".parse().unwrap();
        new.database.url = SecretString::from("postgres://x@db/fh");
        assert_eq!(restart_needed(&old, &new), ["server.listen", "database.url"]);
    }
}
