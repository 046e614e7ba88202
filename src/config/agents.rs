//! Agent profiles: `[[agents]]` entries, each a named variant of `[agent]`.
//!
//! `[agent]` is the profile named `default`. An `[[agents]]` entry sets only the keys it
//! changes; the others come from `[agent]`. An entry named `default` changes `[agent]`
//! itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

use super::{AgentKind, AgentSettings, MASK, PromptVia, Sandbox};

/// The profile `[agent]` is, and the one tasks run with unless routed elsewhere.
pub const DEFAULT_PROFILE: &str = "default";

/// One `[[agents]]` entry: a name, and the keys of `[agent]` it sets differently.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentProfileSettings {
    pub name: String,
    pub kind: Option<AgentKind>,
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub model: Option<String>,
    pub max_turns: Option<u32>,
    #[serde(default, serialize_with = "serialize_env")]
    pub env: Option<BTreeMap<String, String>>,
    pub allowed_tools: Option<Vec<String>>,
    pub prompt_via: Option<PromptVia>,
    pub sandbox: Option<Sandbox>,
    pub sandbox_read_only: Option<Vec<PathBuf>>,
    pub max_concurrent: Option<usize>,
    pub max_budget_usd: Option<f64>,
    pub fallback: Option<String>,
    pub fallback_model: Option<String>,
    pub questions: Option<bool>,
    pub max_questions: Option<u32>,
}

impl AgentProfileSettings {
    /// The settings of this profile: its keys over `base` (`[agent]`).
    pub fn over(&self, base: &AgentSettings) -> AgentSettings {
        let pick =
            |own: &Option<String>, inherited: &Option<String>| own.clone().or_else(|| inherited.clone());
        AgentSettings {
            kind: self.kind.unwrap_or(base.kind),
            command: self.command.clone().unwrap_or_else(|| base.command.clone()),
            args: self.args.clone().unwrap_or_else(|| base.args.clone()),
            model: self.model.clone().unwrap_or_else(|| base.model.clone()),
            max_turns: self.max_turns.unwrap_or(base.max_turns),
            env: self.env.clone().unwrap_or_else(|| base.env.clone()),
            allowed_tools: self.allowed_tools.clone().unwrap_or_else(|| base.allowed_tools.clone()),
            prompt_via: self.prompt_via.unwrap_or(base.prompt_via),
            sandbox: self.sandbox.unwrap_or(base.sandbox),
            sandbox_read_only: self
                .sandbox_read_only
                .clone()
                .unwrap_or_else(|| base.sandbox_read_only.clone()),
            max_concurrent: self.max_concurrent.or(base.max_concurrent),
            max_budget_usd: self.max_budget_usd.or(base.max_budget_usd),
            // A fallback names another profile: inherited, it would point a profile at
            // itself or loop back to `[agent]`.
            fallback: self.fallback.clone(),
            fallback_model: pick(&self.fallback_model, &base.fallback_model),
            questions: self.questions.or(base.questions),
            max_questions: self.max_questions.unwrap_or(base.max_questions),
            // The program that serves `ask_question` is forgehand's, not a profile's.
            forgehand_command: base.forgehand_command.clone(),
        }
    }
}

/// The settings of profile `name`, if there is one.
pub fn profile(base: &AgentSettings, entries: &[AgentProfileSettings], name: &str) -> Option<AgentSettings> {
    match entries.iter().find(|entry| entry.name == name) {
        Some(entry) => Some(entry.over(base)),
        None => (name == DEFAULT_PROFILE).then(|| base.clone()),
    }
}

/// Every profile's name, `default` first.
pub fn names(entries: &[AgentProfileSettings]) -> Vec<&str> {
    let mut names = vec![DEFAULT_PROFILE];
    for entry in entries {
        // A name given twice is refused by `problems`; listed once meanwhile.
        if !names.contains(&entry.name.as_str()) {
            names.push(&entry.name);
        }
    }
    names
}

/// A profile name as written in comments and labels: 1-64 of a-z, 0-9, `-`, `_`, `.`.
pub fn is_profile_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// What is wrong with the profiles, each problem naming its key and the fix.
pub fn problems(base: &AgentSettings, entries: &[AgentProfileSettings]) -> Vec<String> {
    let mut problems = Vec::new();
    let known = names(entries);
    let mut seen = std::collections::HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let key = format!("agents[{i}]");
        if !is_profile_name(&entry.name) {
            problems.push(format!(
                "{key}.name: {:?} must be 1-64 characters of a-z, 0-9, '-', '_' or '.' (it is written in comments and labels)",
                entry.name
            ));
        }
        if !seen.insert(entry.name.as_str()) {
            problems.push(format!("{key}.name: {:?} names two profiles; names must be unique", entry.name));
        }
        if entry.kind.is_some_and(|kind| kind != base.kind) && entry.command.is_none() {
            problems.push(format!(
                "{key}.command: not set, and kind differs from [agent]'s; name this profile's program"
            ));
        }
        problems.extend(settings_problems(&key, &entry.over(base), &known));
    }
    problems.extend(settings_problems("agent", base, &known));
    problems.extend(fallback_loops(base, entries));
    problems
}

/// What is wrong with one profile's effective settings (`key`: where it is written).
fn settings_problems(key: &str, agent: &AgentSettings, known: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if agent.command.trim().is_empty() {
        problems.push(format!("{key}.command: must name the agent program, e.g. \"claude\""));
    }
    if agent.max_turns == 0 {
        problems.push(format!("{key}.max_turns: must be at least 1"));
    }
    if agent.max_concurrent == Some(0) {
        problems
            .push(format!("{key}.max_concurrent: must be at least 1; leave it out for no limit of its own"));
    }
    if agent.max_budget_usd.is_some_and(|usd| !(usd > 0.0 && usd.is_finite())) {
        problems.push(format!("{key}.max_budget_usd: must be more than 0; leave it out for no cap"));
    }
    if agent.kind != AgentKind::Claude && !agent.allowed_tools.is_empty() {
        problems.push(format!(
            "{key}.allowed_tools: only kind = \"claude\" supports it, not {:?}; grant permissions in {key}.args",
            agent.kind
        ));
    }
    if agent.kind != AgentKind::Claude && agent.fallback_model.is_some() {
        problems.push(format!(
            "{key}.fallback_model: only kind = \"claude\" supports it; use fallback = \"<profile>\" instead"
        ));
    }
    if let Some(fallback) = &agent.fallback
        && !known.contains(&fallback.as_str())
    {
        problems.push(format!(
            "{key}.fallback: no profile is named {fallback:?}; the profiles are {}",
            known.join(", ")
        ));
    }
    problems
}

/// Profiles whose `fallback` chain comes back to them.
fn fallback_loops(base: &AgentSettings, entries: &[AgentProfileSettings]) -> Vec<String> {
    let next = |name: &str| profile(base, entries, name).and_then(|p| p.fallback);
    for start in names(entries) {
        let mut chain = vec![start.to_owned()];
        while let Some(following) = next(chain.last().expect("never empty")) {
            let looped = chain.contains(&following);
            chain.push(following);
            if looped {
                // One report is enough: every profile on the loop would repeat it.
                return vec![format!(
                    "agents: the fallback chain {} loops; end it at a profile without fallback",
                    chain.join(" -> ")
                )];
            }
        }
    }
    Vec::new()
}

fn serialize_env<S: Serializer>(env: &Option<BTreeMap<String, String>>, s: S) -> Result<S::Ok, S::Error> {
    match env {
        Some(env) => s.collect_map(env.keys().map(|key| (key, MASK))),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> AgentSettings {
        crate::config::Settings::load_with_env(None, Default::default()).unwrap().agent
    }

    fn entry(name: &str) -> AgentProfileSettings {
        AgentProfileSettings { name: name.into(), ..Default::default() }
    }

    #[test]
    fn entries_inherit_what_they_do_not_set() {
        let opus =
            AgentProfileSettings { model: Some("opus".into()), max_concurrent: Some(2), ..entry("opus") };
        let entries = [opus];
        let merged = profile(&base(), &entries, "opus").unwrap();
        assert_eq!((merged.model.as_str(), merged.command.as_str()), ("opus", "claude"));
        assert_eq!(merged.max_concurrent, Some(2));
        assert_eq!(profile(&base(), &entries, "default").unwrap().model, base().model);
        assert!(profile(&base(), &entries, "nope").is_none());
        assert_eq!(names(&entries), ["default", "opus"]);
    }

    #[test]
    fn fallbacks_must_exist_and_not_loop() {
        let a = AgentProfileSettings { fallback: Some("b".into()), ..entry("a") };
        let b = AgentProfileSettings { fallback: Some("a".into()), ..entry("b") };
        let found = problems(&base(), &[a.clone(), b]).join("\n");
        assert!(found.contains("loops"), "{found}");
        let missing = problems(&base(), &[a]).join("\n");
        assert!(missing.contains("agents[0].fallback: no profile is named \"b\""), "{missing}");
        let bad = AgentProfileSettings { max_concurrent: Some(0), ..entry("Big Model") };
        let found = problems(&base(), &[bad]).join("\n");
        assert!(found.contains("agents[0].name") && found.contains("agents[0].max_concurrent"), "{found}");
    }
}
