//! Which keys differ between two configurations, for the audit log: names only, never
//! values, and a secret only as "set", "changed" or "removed".

use secrecy::ExposeSecret;
use serde_json::Value;

use super::Settings;

/// The keys whose value differs between `old` and `new` (`forges[github].api_url`), then
/// each secret that differs, with what happened to it (`forges[github].token: changed`).
pub fn changed_keys(old: &Settings, new: &Settings) -> Vec<String> {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    flatten("", &serde_json::to_value(old).unwrap_or(Value::Null), &mut before);
    flatten("", &serde_json::to_value(new).unwrap_or(Value::Null), &mut after);
    let mut keys: Vec<String> = after
        .iter()
        .filter(|(key, value)| !before.iter().any(|(k, v)| k == key && v == value))
        .map(|(key, _)| key.clone())
        .chain(before.iter().filter(|(key, _)| !after.iter().any(|(k, _)| k == key)).map(|(k, _)| k.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let mut secrets = Vec::new();
    for (key, old_secret, new_secret) in secret_pairs(old, new) {
        let what = match (old_secret.is_empty(), new_secret.is_empty()) {
            (true, false) => "set",
            (false, true) => "removed",
            _ if old_secret != new_secret => "changed",
            _ => continue,
        };
        secrets.push(format!("{key}: {what}"));
    }
    // A masked secret shows as "********" on both sides: its own line says what happened.
    keys.retain(|key| !secrets.iter().any(|s| s.starts_with(&format!("{key}:"))));
    keys.extend(secrets);
    keys
}

fn secret_pairs(old: &Settings, new: &Settings) -> Vec<(String, String, String)> {
    let mut pairs = vec![
        (
            "auth.admin_token".to_owned(),
            old.auth.admin_token.expose_secret().to_owned(),
            new.auth.admin_token.expose_secret().to_owned(),
        ),
        (
            "database.url".to_owned(),
            old.database.url.expose_secret().to_owned(),
            new.database.url.expose_secret().to_owned(),
        ),
    ];
    let forge_names = old.forges.iter().chain(&new.forges).map(|f| f.name.clone());
    for name in forge_names.collect::<std::collections::BTreeSet<_>>() {
        let find = |s: &Settings| s.forges.iter().find(|f| f.name == name).cloned();
        let (o, n) = (find(old), find(new));
        let token = |f: &Option<super::ForgeSettings>| {
            f.as_ref().map(|f| f.token.expose_secret().to_owned()).unwrap_or_default()
        };
        let secret = |f: &Option<super::ForgeSettings>| {
            f.as_ref()
                .map(|f| {
                    f.webhook_secret
                        .0
                        .iter()
                        .map(|s| s.expose_secret().to_owned())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        };
        pairs.push((format!("forges[{name}].token"), token(&o), token(&n)));
        let key = |f: &Option<super::ForgeSettings>| {
            f.as_ref().map(|f| f.private_key.expose_secret().to_owned()).unwrap_or_default()
        };
        pairs.push((format!("forges[{name}].private_key"), key(&o), key(&n)));
        pairs.push((format!("forges[{name}].webhook_secret"), secret(&o), secret(&n)));
    }
    let sink_names = old.notify.sinks.iter().chain(&new.notify.sinks).map(|s| s.name.clone());
    for name in sink_names.collect::<std::collections::BTreeSet<_>>() {
        let find = |s: &Settings| s.notify.sinks.iter().find(|k| k.name == name).cloned();
        let (o, n) = (find(old), find(new));
        for key in ["url", "secret", "smtp_password"] {
            let get = |s: &Option<super::notify::SinkSettings>| {
                s.as_ref()
                    .map(|s| match key {
                        "url" => s.url.expose_secret().to_owned(),
                        "secret" => s.secret.expose_secret().to_owned(),
                        _ => s.smtp_password.expose_secret().to_owned(),
                    })
                    .unwrap_or_default()
            };
            pairs.push((format!("notify.sinks[{name}].{key}"), get(&o), get(&n)));
        }
    }
    pairs
}

/// `a.b`, `forges[github].token`, `agent.env.KEY` for every leaf of `value`.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, value, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| i.get("name").is_some()) && !items.is_empty() => {
            for item in items {
                let name = item["name"].as_str().unwrap_or_default();
                flatten(&format!("{prefix}[{name}]"), item, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}
