//! The wizard's answers collected step by step ([`Draft`]), each step checked with the
//! loader's rules before the next one opens.

use secrecy::{ExposeSecret, SecretString};

use super::checks::{AgentCheck, TokenReport, check_agent, check_app, check_token};
use crate::config::{ForgeKind, ForgeSettings, RepoName, Settings, WebhookSecrets};

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
            Step::Token => "API access",
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

/// How the forge's API is reached: a bot account's token, or (GitHub) a GitHub App.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Token,
    App,
}

/// The credentials step's answers.
#[derive(Debug, Clone, Default)]
pub struct CredentialAnswers {
    /// `token` or `app`.
    pub auth: String,
    pub token: String,
    pub app_id: String,
    /// The App's PEM, pasted, or the path of its `.pem` file.
    pub private_key: String,
    pub repo: String,
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
    /// A token or a GitHub App.
    pub auth: Auth,
    /// A token typed in the wizard, replacing the configured one.
    pub new_token: Option<SecretString>,
    /// A GitHub App's id typed in the wizard (once its check passed).
    pub new_app_id: Option<u64>,
    /// The App id last typed, shown again when its check failed (not a secret).
    pub typed_app_id: String,
    /// A GitHub App's private key (PEM or path) typed in the wizard.
    pub new_private_key: Option<SecretString>,
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
            auth: if existing.is_some_and(|f| f.app_id.is_some()) { Auth::App } else { Auth::Token },
            new_token: None,
            new_app_id: None,
            typed_app_id: String::new(),
            new_private_key: None,
            checked: None,
            repo: current.trigger.repos.first().map(RepoName::to_string).unwrap_or_default(),
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
    /// in force, as long as the answers keep the API they were stored for.
    pub fn forge(&self, current: &Settings) -> ForgeSettings {
        let existing = self.editing.as_deref().and_then(|name| current.forge(name));
        let stored = self.stored_secrets(current);
        let token = match (&self.new_token, stored) {
            (Some(token), _) => token.clone(),
            (None, Some(f)) => f.token.clone(),
            (None, None) => SecretString::from(""),
        };
        let webhook_secret = match (&self.new_secret, stored) {
            (Some(secret), _) => WebhookSecrets(vec![secret.clone()]),
            (None, Some(f)) => f.webhook_secret.clone(),
            (None, None) => WebhookSecrets::default(),
        };
        let (token, app_id, private_key) = match self.auth {
            Auth::Token => (token, None, SecretString::from("")),
            Auth::App => {
                let key = match (&self.new_private_key, stored) {
                    (Some(key), _) => key.clone(),
                    (None, Some(f)) => f.private_key.clone(),
                    (None, None) => SecretString::from(""),
                };
                (SecretString::from(""), self.new_app_id.or(existing.and_then(|f| f.app_id)), key)
            }
        };
        ForgeSettings {
            name: self.name.clone(),
            kind: self.kind,
            api_url: self.api_url.clone(),
            token,
            webhook_secret,
            bot_login: self.bot_login(existing),
            app_id,
            private_key,
        }
    }

    /// The configured forge being edited, when the answers still name its kind and API
    /// URL. Only then are its stored secrets used: a stored token is never sent to, nor
    /// saved with, another address (whoever holds a dashboard session could otherwise
    /// point the live check at a listener of theirs and receive the token).
    fn stored_secrets<'s>(&self, current: &'s Settings) -> Option<&'s ForgeSettings> {
        let existing = self.editing.as_deref().and_then(|name| current.forge(name))?;
        let same_api = existing.api_url.trim_end_matches('/') == self.api_url;
        (existing.kind == self.kind && same_api).then_some(existing)
    }

    /// Whether a configured forge has a token that these answers no longer use because
    /// they changed its API URL or kind.
    fn token_left_behind(&self, current: &Settings) -> bool {
        let existing = self.editing.as_deref().and_then(|name| current.forge(name));
        existing.is_some_and(|f| !f.token.expose_secret().is_empty())
            && self.stored_secrets(current).is_none()
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

    /// Whether the forge has a GitHub App's private key, typed here or configured.
    pub fn private_key_set(&self, current: &Settings) -> bool {
        !self.forge(current).private_key.expose_secret().is_empty()
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

    pub(super) fn validated(&self, current: &Settings) -> Result<(), Problems> {
        match self.candidate(current).validate() {
            Ok(()) => Ok(()),
            Err(crate::config::ConfigError::Invalid(problems)) => {
                Err(problems.into_iter().map(in_field_words).collect())
            }
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
        if self.kind != ForgeKind::Github {
            // Only GitHub has Apps.
            self.auth = Auth::Token;
        }
        if (self.kind, &self.api_url) != (before.0, &before.1) {
            // Secrets typed or generated for the old address stay with it.
            self.checked = None;
            self.new_token = None;
            self.new_private_key = None;
            self.new_secret = None;
            self.secret_shown = false;
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

    /// Step 2: a token or (GitHub) an App, tested live.
    pub async fn set_credentials(
        &mut self,
        current: &Settings,
        answers: CredentialAnswers,
    ) -> Result<(), Problems> {
        if answers.auth == "app" && self.kind == ForgeKind::Github {
            self.set_app(current, &answers).await
        } else {
            if self.auth == Auth::App {
                // From an App to a token: the App's check no longer stands.
                self.checked = None;
            }
            self.auth = Auth::Token;
            self.set_token(current, &answers.token, &answers.repo).await
        }
    }

    /// Step 2 as a GitHub App: its id and private key (typed, or the ones in force), tried
    /// live: JWT → installations → the installation of `repo` → a token with the
    /// permissions forgehand needs. A typed key is kept only once it passed, and never
    /// shown again.
    async fn set_app(&mut self, current: &Settings, answers: &CredentialAnswers) -> Result<(), Problems> {
        if self.auth != Auth::App {
            self.checked = None;
        }
        self.auth = Auth::App;
        let repo = answers.repo.trim();
        self.repo = repo.to_owned();
        let mut forge = self.forge(current);
        let mut problems = Vec::new();
        self.typed_app_id = answers.app_id.trim().to_owned();
        match answers.app_id.trim() {
            "" if forge.app_id.is_some() => {}
            "" => problems.push("Enter the App's id (the App's settings page, App ID).".to_owned()),
            typed => match typed.parse::<u64>() {
                Ok(id) if id > 0 => forge.app_id = Some(id),
                _ => problems
                    .push("App ID: not a number; copy it from the App's settings page (App ID).".to_owned()),
            },
        }
        // A key pasted in a browser comes with CRLF line ends.
        let typed_key = answers.private_key.trim().replace("\r\n", "\n");
        if !typed_key.is_empty() {
            forge.private_key = SecretString::from(typed_key.clone());
        }
        if forge.private_key.expose_secret().is_empty() {
            problems.push(if self.editing.is_some() && self.stored_secrets(current).is_none() {
                format!(
                    "The API URL or kind changed, so the stored private key is not used with {}: paste the key again.",
                    self.api_url
                )
            } else {
                "Paste the App's private key (the .pem its settings page generated) or give the path of the file."
                    .to_owned()
            });
        } else if let Err(problem) = forge.app_private_key() {
            problems.push(format!("Private key: {problem}"));
        }
        let parsed = RepoName::parse(repo);
        if let Err(problem) = &parsed {
            problems.push(problem.clone());
        }
        let (Ok(repo), true) = (parsed, problems.is_empty()) else { return Err(problems) };
        let report = check_app(&forge, &repo).await.map_err(|message| vec![message])?;
        self.new_app_id = forge.app_id;
        if !typed_key.is_empty() {
            self.new_private_key = Some(forge.private_key);
        }
        self.checked = Some(report);
        self.advance(Step::Token);
        Ok(())
    }

    /// Step 2 with a token: tests it (a new one, or the one in force) live against the
    /// forge: who it is and its permission on `repo`.
    pub async fn set_token(&mut self, current: &Settings, token: &str, repo: &str) -> Result<(), Problems> {
        let repo = repo.trim();
        let mut forge = self.forge(current);
        if !token.trim().is_empty() {
            forge.token = SecretString::from(token.trim().to_owned());
        }
        let mut problems = Vec::new();
        if forge.token.expose_secret().is_empty() && self.token_left_behind(current) {
            problems.push(format!(
                "The API URL or kind changed, so the stored token is not sent to {}: enter the token for this address.",
                self.api_url
            ));
        } else if forge.token.expose_secret().is_empty() {
            problems.push("Enter the bot account's API token.".to_owned());
        }
        let parsed = RepoName::parse(repo);
        if let Err(problem) = &parsed {
            problems.push(problem.clone());
        }
        self.repo = repo.to_owned();
        let (Ok(repo), true) = (parsed, problems.is_empty()) else { return Err(problems) };
        let report = check_token(&forge, Some(&repo)).await.map_err(|message| vec![message])?;
        if !token.trim().is_empty() {
            self.new_token = Some(forge.token);
        }
        self.checked = Some(report);
        self.advance(Step::Token);
        Ok(())
    }

    /// Step 3: a new webhook secret, shown once by the next page.
    pub fn generate_secret(&mut self) -> std::io::Result<()> {
        self.new_secret = Some(SecretString::from(crate::token::generate_token()?));
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

/// The wizard's fields, by the config key (or the end of it) each one sets.
const FIELDS: &[(&str, &str)] = &[
    ("server.public_url", "forgehand's public URL"),
    ("].name", "Name"),
    ("].api_url", "API URL"),
    ("].token", "Token"),
    ("].app_id", "App ID"),
    ("].private_key", "Private key"),
    ("trigger.label", "Trigger label"),
    ("trigger.command", "Trigger command"),
    ("agent.command", "Claude Code command"),
    ("executor.max_concurrent", "Agents running at once"),
    ("executor.timeout_secs", "Timeout of one run"),
];

/// `forges[1].api_url: …` as the page names that field: `API URL: …`. Problems with keys
/// the wizard does not ask for keep their config key, which is where they are fixed.
fn in_field_words(problem: String) -> String {
    let Some((key, rest)) = problem.split_once(": ") else { return problem };
    match FIELDS.iter().find(|(end, _)| key.ends_with(end)) {
        Some((_, field)) => format!("{field}: {rest}"),
        None => problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::wizard::fixtures::{base, settings_from};

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
            problems.iter().any(|p| p.starts_with("Name: "))
                && problems.iter().any(|p| p.starts_with("API URL: ")),
            "the fields are named as on the page: {problems:?}"
        );
        assert!(!problems.iter().any(|p| p.contains("forges[")), "{problems:?}");
        let taken = draft.set_forge(&current, answers("gitea", "https://api.github.com")).unwrap_err();
        assert!(taken[0].contains("configured already"), "{taken:?}");
        assert_eq!(draft.reached, Step::Forge);
        let problems = draft.set_trigger(&current, "", "two words").unwrap_err();
        assert!(problems.iter().any(|p| p.starts_with("Trigger label: ")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("Trigger command: ")), "{problems:?}");
        assert_eq!(draft.command, "two words", "a refused answer stays, to be corrected");
        assert_eq!(draft.reached, Step::Forge, "and the steps after it stay closed");
    }
}
