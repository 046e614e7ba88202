//! `forgehand check-config`: what the loader cannot refuse but forgehand cannot work with
//! (errors), and what works but is risky (warnings).

use std::fmt;

use secrecy::ExposeSecret;

use crate::config::{Permission, Settings};
use crate::server::wizard::checks::find_program;

/// Values of `config/example.toml` that stand for the user's own: copied as they are, they
/// cannot work.
pub const PLACEHOLDERS: &[&str] = &[
    "github_pat_...",
    "...",
    "output of: openssl rand -hex 32",
    "new secret",
    "old secret",
    "my-forgehand-bot",
    "acme/widgets",
    "octo-org/hello-world",
];

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// forgehand cannot work like this.
    Error,
    /// It works, but probably not as meant, or less safely than it could.
    Warning,
}

/// One thing `check-config` says about the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The config key, as the file writes it.
    pub key: String,
    pub text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{label}: {}: {}", self.key, self.text)
    }
}

/// Everything worth saying about `settings`, errors first.
pub fn findings(settings: &Settings) -> Vec<Finding> {
    let mut found = Vec::new();
    forges(settings, &mut found);
    placeholders(settings, &mut found);
    agent(settings, &mut found);
    risks(settings, &mut found);
    found.sort_by_key(|finding| finding.severity != Severity::Error);
    found
}

fn error(key: impl Into<String>, text: impl Into<String>) -> Finding {
    Finding { severity: Severity::Error, key: key.into(), text: text.into() }
}

fn warning(key: impl Into<String>, text: impl Into<String>) -> Finding {
    Finding { severity: Severity::Warning, key: key.into(), text: text.into() }
}

fn forges(settings: &Settings, found: &mut Vec<Finding>) {
    if settings.forges.is_empty() {
        found.push(warning(
            "forges",
            format!(
                "no forge is configured, so no task can start; add a [[forges]] entry or use the wizard at {}/setup/wizard",
                settings.server.public_url
            ),
        ));
    }
    for (i, forge) in settings.forges.iter().enumerate() {
        if forge.webhook_secret.is_empty() {
            found.push(error(
                format!("forges[{i}].webhook_secret"),
                format!(
                    "not set, so every delivery to /webhooks/{} is refused (403); make one with `openssl rand -hex 32` and give the forge the same",
                    forge.name
                ),
            ));
        }
        if forge.token.expose_secret().is_empty() {
            found.push(error(
                format!("forges[{i}].token"),
                "not set, so forgehand cannot comment, push or open pull requests; use the bot account's API token (README: Tokens)",
            ));
        }
    }
}

fn placeholders(settings: &Settings, found: &mut Vec<Finding>) {
    let copied = |value: &str| PLACEHOLDERS.contains(&value) || host_of(value).is_some_and(is_example_host);
    let mut values: Vec<(String, &str)> = vec![("server.public_url".into(), &settings.server.public_url)];
    for (i, forge) in settings.forges.iter().enumerate() {
        values.push((format!("forges[{i}].api_url"), &forge.api_url));
        values.push((format!("forges[{i}].token"), forge.token.expose_secret()));
        values.push((format!("forges[{i}].bot_login"), &forge.bot_login));
        for secret in &forge.webhook_secret.0 {
            values.push((format!("forges[{i}].webhook_secret"), secret.expose_secret()));
        }
    }
    for repo in &settings.trigger.repos {
        values.push(("trigger.repos".into(), repo.as_str()));
    }
    for (key, value) in values {
        if copied(value) {
            // A secret's value is never shown, even a placeholder: say which key only.
            let shown = if key.ends_with("token") || key.ends_with("webhook_secret") {
                "the example's value".to_owned()
            } else {
                format!("{value:?}")
            };
            found.push(error(
                key,
                format!("{shown} is a placeholder from config/example.toml; put your own here"),
            ));
        }
    }
}

fn agent(settings: &Settings, found: &mut Vec<Finding>) {
    if !settings.executor.enabled {
        return;
    }
    // Each profile's program, once: entries that inherit `[agent]`'s are covered by it.
    let mut programs = vec![("agent.command".to_owned(), settings.agent.command.clone())];
    for (i, entry) in settings.agents.iter().enumerate() {
        if let Some(command) = &entry.command {
            // An entry named `default` replaces `[agent]`'s program.
            if entry.name == crate::config::DEFAULT_PROFILE {
                programs.remove(0);
            }
            programs.push((format!("agents[{i}].command"), command.clone()));
        }
    }
    for (key, command) in programs {
        if find_program(&command).is_none() {
            let searched = std::env::var("PATH").unwrap_or_default();
            let text = if command.contains('/') {
                format!("{command:?} is not an executable file")
            } else {
                format!("{command:?} is not found on PATH ({searched}); install it or give its full path")
            };
            found.push(error(key, text));
        }
    }
    profile_limits(settings, found);
}

/// Profile limits that cannot bind as written.
fn profile_limits(settings: &Settings, found: &mut Vec<Finding>) {
    let per_instance = settings.executor.max_concurrent;
    for (i, entry) in settings.agents.iter().enumerate() {
        if let Some(limit) = entry.max_concurrent.filter(|limit| *limit > per_instance) {
            found.push(warning(
                format!("agents[{i}].max_concurrent"),
                format!(
                    "{limit} is more than executor.max_concurrent ({per_instance}): one instance runs at most {per_instance} tasks of any profile, so profile {:?} reaches {limit} only over several instances; lower it or raise executor.max_concurrent",
                    entry.name
                ),
            ));
        }
    }
}

fn risks(settings: &Settings, found: &mut Vec<Finding>) {
    if settings.trigger.min_permission < Permission::Write {
        found.push(warning(
            "trigger.min_permission",
            format!(
                "{:?}: people who cannot push to a repository can start agent runs on it",
                settings.trigger.min_permission.to_string()
            ),
        ));
    }
    if settings.trigger.repos.is_empty() && !settings.forges.is_empty() {
        found.push(warning(
            "trigger.repos",
            "empty: every repository that sends forgehand webhooks can start tasks; list the ones you mean",
        ));
    }
    let public = &settings.server.public_url;
    if public.starts_with("http://") && host_of(public).is_some_and(|host| !is_loopback(host)) {
        found.push(warning(
            "server.public_url",
            format!("{public:?} is plain HTTP on the network: the admin token and logins travel unencrypted; put forgehand behind HTTPS"),
        ));
    }
}

/// The host of an `http(s)://host[:port]/…` URL.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    Some(host.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(host, |(h, _)| h))
}

fn is_example_host(host: &str) -> bool {
    ["example.com", "example.org", "example.net"]
        .iter()
        .any(|domain| host == *domain || host.strip_suffix(domain).is_some_and(|sub| sub.ends_with('.')))
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/example.toml");

    #[test]
    fn every_placeholder_is_in_the_example() {
        for placeholder in PLACEHOLDERS {
            assert!(
                EXAMPLE.contains(&format!("{placeholder:?}")),
                "{placeholder} is not in config/example.toml"
            );
        }
    }

    #[test]
    fn the_example_as_it_is_cannot_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let settings = Settings::load_with_env(Some(&path), Default::default()).unwrap();
        let errors: Vec<String> = findings(&settings)
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.to_string())
            .collect();
        for key in [
            "server.public_url",
            "forges[0].token",
            "forges[0].webhook_secret",
            "forges[0].bot_login",
            "forges[1].api_url",
            "trigger.repos",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(&format!("error: {key}: "))),
                "{key} not in {errors:#?}"
            );
        }
        assert!(!errors.iter().any(|e| e.contains("openssl rand -hex 32\"")), "a secret shown: {errors:#?}");
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://gitea.example.com/api/v1"), Some("gitea.example.com"));
        assert_eq!(host_of("http://127.0.0.1:8080"), Some("127.0.0.1"));
        assert!(is_example_host("forgehand.example.com") && !is_example_host("notexample.com"));
        assert!(is_loopback("127.0.0.1") && is_loopback("localhost") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn profiles_are_checked_by_name_program_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forgehand.toml");
        let text = "[executor]\nmax_concurrent = 2\n[agent]\ncommand = \"sh\"\n\
                    [[agents]]\nname = \"opus\"\nmax_concurrent = 5\n\
                    [[agents]]\nname = \"other\"\nkind = \"command\"\ncommand = \"no-such-agent-program\"\n";
        std::fs::write(&path, text).unwrap();
        let settings = Settings::load_with_env(Some(&path), Default::default()).unwrap();
        let said: Vec<String> = findings(&settings).iter().map(ToString::to_string).collect();
        let said = said.join("\n");
        assert!(
            said.contains("error: agents[1].command: \"no-such-agent-program\" is not found on PATH"),
            "{said}"
        );
        assert!(
            said.contains("warning: agents[0].max_concurrent: 5 is more than executor.max_concurrent (2)"),
            "{said}"
        );
        assert!(!said.contains("agent.command"), "[agent]'s sh is found: {said}");
        let broken = "[[agents]]\nname = \"a\"\nfallback = \"b\"\n[[agents]]\nname = \"b\"\nfallback = \"a\"\n\
                      [[agents]]\nname = \"a\"\n[[agents]]\nname = \"c\"\nfallback = \"nope\"\n\
                      [[repos]]\nname = \"o/r\"\nagent = \"gone\"\nagents = [\"gone2\"]\n[repo_config]\nagents = [\"x\"]\n";
        std::fs::write(&path, broken).unwrap();
        let err = Settings::load_with_env(Some(&path), Default::default()).unwrap_err().to_string();
        for expected in [
            "agents[2].name: \"a\" names two profiles; names must be unique",
            "agents[3].fallback: no profile is named \"nope\"; the profiles are default, a, b, c",
            "agents: the fallback chain",
            "repos[0].agent: no agent profile is named \"gone\"",
            "repos[0].agents: no agent profile is named \"gone2\"",
            "repo_config.agents: no agent profile is named \"x\"",
        ] {
            assert!(err.contains(expected), "{expected:?} not in {err}");
        }
    }
}
