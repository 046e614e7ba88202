//! The agent's environment: only what it needs from forgehand's, then `agent.env`.

use super::profile;
use crate::config::AgentKind;

/// Variables passed to the agent by exact name.
const PASS_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "DISABLE_TELEMETRY",
    "DISABLE_AUTOUPDATER",
    "IS_SANDBOX",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];
/// Prefixes of a model provider's variables: passed whole to a CLI that takes them, even
/// with `SECRET` in the name.
const PROVIDER_PREFIXES: &[&str] = &["ANTHROPIC_", "OPENAI_"];

/// The agent's whole environment: the allowed variables of `parent_env` (locale, paths,
/// proxies, and the CLI's own prefixes, e.g. `ANTHROPIC_*` and `CLAUDE_*` for Claude
/// Code), then `extra` (config `agent.env`), which wins. Forge tokens, `FORGEHAND_*` and
/// names containing `SECRET` or `PASSWORD` (outside `ANTHROPIC_*` / `OPENAI_*`) are never
/// passed on from the parent.
pub fn agent_env(
    kind: AgentKind,
    parent_env: impl IntoIterator<Item = (String, String)>,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        parent_env.into_iter().filter(|(name, _)| passes_to_agent(kind, name)).collect();
    for (name, value) in extra {
        env.retain(|(existing, _)| existing != name);
        env.push((name.clone(), value.clone()));
    }
    env
}

fn passes_to_agent(kind: AgentKind, name: &str) -> bool {
    let prefixes = profile::env_prefixes(kind);
    let under = |prefix: &&str| name.starts_with(prefix);
    if prefixes.iter().filter(|p| PROVIDER_PREFIXES.contains(p)).any(under) {
        return true;
    }
    let upper = name.to_ascii_uppercase();
    let sensitive = upper.contains("SECRET") || upper.contains("PASSWORD");
    let allowed = PASS_NAMES.contains(&name) || prefixes.iter().any(under);
    allowed && !sensitive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_sees_only_its_own_provider() {
        let parent =
            [("PATH", "/usr/bin"), ("ANTHROPIC_API_KEY", "a"), ("OPENAI_API_KEY", "o"), ("CODEX_HOME", "/c")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let names = |kind| -> Vec<String> {
            agent_env(kind, parent.clone(), &[]).into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(names(AgentKind::Claude), ["PATH", "ANTHROPIC_API_KEY"]);
        assert_eq!(names(AgentKind::Codex), ["PATH", "OPENAI_API_KEY", "CODEX_HOME"]);
        assert_eq!(names(AgentKind::Command), ["PATH"]);
    }

    #[test]
    fn agent_env_keeps_only_what_the_agent_needs() {
        let parent = [
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("https_proxy", "http://proxy"),
            ("ANTHROPIC_API_KEY", "sk"),
            ("ANTHROPIC_SECRET_THING", "kept"),
            ("CLAUDE_CODE_USE_BEDROCK", "1"),
            ("CLAUDE_PASSWORD", "dropped"),
            ("GITHUB_TOKEN", "ghp"),
            ("GH_TOKEN", "ghp"),
            ("GITEA_TOKEN", "g"),
            ("FORGEHAND_WEBHOOK_SECRET", "s"),
            ("AWS_SECRET_ACCESS_KEY", "a"),
            ("RUST_LOG", "debug"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let extra =
            [("PATH".to_owned(), "/opt/bin".to_owned()), ("FAKE_CLAUDE_MODE".to_owned(), "edit".to_owned())];
        let env = agent_env(AgentKind::Claude, parent, &extra);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        let expected = [
            "HOME",
            "https_proxy",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_SECRET_THING",
            "CLAUDE_CODE_USE_BEDROCK",
            "PATH",
            "FAKE_CLAUDE_MODE",
        ];
        assert_eq!(names, expected);
        assert!(env.contains(&("PATH".to_owned(), "/opt/bin".to_owned())));
    }
}
