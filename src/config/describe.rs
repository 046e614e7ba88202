//! Configuration errors in the words of the file: the key as it is written
//! (`forges[0].kind`), the value found, what it may be, and where it came from — instead of
//! the `config` crate's serde wording ("enum ForgeKind does not have variant constructor").

use std::path::Path;

use config::{Config, ConfigError, Value};

/// Where the values came from, to say where a bad one was found.
pub(super) struct Sources<'a> {
    /// The configuration file, if one was read.
    pub file: Option<&'a Path>,
    /// The names of the `FORGEHAND__…` variables that were read.
    pub env: Vec<String>,
}

impl Sources<'_> {
    /// The environment variable that sets `key`, else the file (the defaults hold no
    /// mistakes).
    fn of(&self, key: &str) -> Option<String> {
        let var = format!("FORGEHAND__{}", key.replace('.', "__")).to_ascii_uppercase();
        if self.env.iter().any(|name| name.eq_ignore_ascii_case(&var)) {
            return Some(format!("the environment variable {var}"));
        }
        self.file.map(|file| file.display().to_string())
    }
}

/// The values each enumerated key accepts, keyed by the end of its path.
const ENUMS: &[(&str, &[&str])] = &[
    ("].kind", &["github", "gitea"]),
    ("agent.kind", &["claude", "codex", "command"]),
    ("trigger.min_permission", &["none", "read", "write", "admin"]),
    ("agent.sandbox", &["none", "bubblewrap"]),
    ("agent.prompt_via", &["stdin", "arg"]),
];

/// Fixes for the values serde refuses, keyed by the end of the config key.
const HINTS: &[(&str, &str)] = &[
    ("server.listen", "write IP:PORT, e.g. \"127.0.0.1:8080\""),
    ("server.trusted_proxies", "write a list of IP addresses, e.g. [\"127.0.0.1\"]"),
    ("trigger.min_permission", "\"write\" is the default"),
    ("].kind", "Forgejo is \"gitea\""),
    ("webhook_secret", "use a string, or a list of strings while rotating"),
];

const KEYS_DOC: &str = "every key is described in docs/configuration.md";

/// Says what is wrong with the configuration `built` was merged into. `built` is `None`
/// when the sources could not even be read (a file that is not TOML).
pub(super) fn describe(err: ConfigError, built: Option<&Config>, sources: &Sources) -> String {
    let origin_of = |key: &str| sources.of(key);
    match err {
        ConfigError::FileParse { uri, cause } => match uri {
            Some(uri) => format!("{uri} is not valid TOML: {cause}"),
            None => format!("the configuration is not valid TOML: {cause}"),
        },
        ConfigError::Type { origin: found_in, unexpected, expected, key } => {
            let key = key.map(|k| dotted(&k)).unwrap_or_default();
            let place = origin_of(&key).or(found_in);
            finish(&key, format!("expected {expected}, found {unexpected}"), place)
        }
        ConfigError::At { error, origin: found_in, key } => {
            let key = key.map(|k| dotted(&k)).unwrap_or_default();
            match *error {
                ConfigError::Message(message) => at(&key, &message, found_in, &origin_of, built),
                inner => finish(&key, inner.to_string(), origin_of(&key).or(found_in)),
            }
        }
        ConfigError::NotFound(key) => {
            let key = dotted(&key);
            let parent = key.rsplit_once('.').map(|(parent, _)| parent).unwrap_or_default();
            finish(&key, "not set, and it has no default".into(), origin_of(parent))
        }
        ConfigError::Message(message) => at("", &message, None, &origin_of, built),
        other => format!("{other}; {KEYS_DOC}"),
    }
}

/// A serde message about `key` (empty: the top level).
fn at(
    key: &str,
    message: &str,
    found_in: Option<String>,
    origin_of: &dyn Fn(&str) -> Option<String>,
    built: Option<&Config>,
) -> String {
    if let Some(field) = between(message, "unknown field `", "`") {
        let full = join(key, field);
        let takes = message
            .split_once(", expected one of ")
            .map(|(_, list)| list.replace('`', ""))
            .unwrap_or_default();
        let table =
            if key.is_empty() { "the top level".to_owned() } else { format!("[{}]", table_name(key)) };
        let problem = format!("no such key; {table} takes {takes}");
        return finish(&full, problem, origin_of(&full).or(found_in));
    }
    let place = origin_of(key).or(found_in);
    let value = built
        .filter(|_| !message.starts_with("invalid type"))
        .and_then(|c| c.get::<Value>(key).ok())
        .map(|v| format!("{:?}", v.to_string()));
    if let Some((_, found)) = message.split_once("does not have variant constructor ") {
        let problem = match ENUMS.iter().find(|(end, _)| key.ends_with(end)) {
            Some((_, values)) => format!("{found:?} is not one of {}", values.join(", ")),
            None => format!("{found:?} is not a value it takes"),
        };
        return finish(key, problem, place);
    }
    let problem = match value {
        Some(value) => format!("{value} is not valid: {message}"),
        None => message.to_owned(),
    };
    finish(key, problem, place)
}

/// `key: problem (in place); hint`.
fn finish(key: &str, problem: String, place: Option<String>) -> String {
    let place = place.map(|p| format!(" (in {p})")).unwrap_or_default();
    let hint = HINTS.iter().find(|(end, _)| key.ends_with(end)).map_or(KEYS_DOC, |(_, hint)| hint);
    if key.is_empty() {
        format!("{problem}{place}; {hint}")
    } else {
        format!("{key}: {problem}{place}; {hint}")
    }
}

/// `forges[0]kind` (the `config` crate's spelling) as it is written: `forges[0].kind`.
fn dotted(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    let mut after_index = false;
    for c in key.chars() {
        if after_index && c != '.' && c != '[' {
            out.push('.');
        }
        after_index = c == ']';
        out.push(c);
    }
    out
}

/// `[[forges]]` for `forges[0]`, `server` for `server`.
fn table_name(key: &str) -> String {
    match key.split_once('[') {
        Some((array, _)) if !key.contains('.') => format!("[{array}]"),
        _ => key.to_owned(),
    }
}

fn join(key: &str, field: &str) -> String {
    if key.is_empty() { field.to_owned() } else { format!("{key}.{field}") }
}

/// The text between `start` and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_as_in_the_file() {
        assert_eq!(dotted("forges[0]kind"), "forges[0].kind");
        assert_eq!(dotted("forges[0].kind"), "forges[0].kind");
        assert_eq!(dotted("server.listen"), "server.listen");
        assert_eq!(table_name("forges[1]"), "[forges]");
        assert_eq!(table_name("agent"), "agent");
    }

    #[test]
    fn every_listed_enum_value_is_accepted() {
        use serde::Deserialize;
        use serde::de::value::{Error, StrDeserializer};
        let parses = |key: &str, value: &str| {
            let d = StrDeserializer::<Error>::new(value);
            match key {
                "].kind" => super::super::ForgeKind::deserialize(d).is_ok(),
                "agent.kind" => super::super::AgentKind::deserialize(d).is_ok(),
                "trigger.min_permission" => super::super::Permission::deserialize(d).is_ok(),
                "agent.sandbox" => super::super::Sandbox::deserialize(d).is_ok(),
                "agent.prompt_via" => super::super::PromptVia::deserialize(d).is_ok(),
                _ => false,
            }
        };
        for (key, values) in ENUMS {
            for value in *values {
                assert!(parses(key, value), "{key} = {value:?} is listed but refused");
            }
        }
    }
}
