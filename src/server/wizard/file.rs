//! The config file the wizard's answers become, and writing that file safely.
//!
//! The file written is the existing config file with the wizard's keys set: every other
//! key keeps its value, comments are not kept (the previous file is, as `<name>.bak`).
//! Before anything is replaced, the new text is loaded exactly as the daemon loads its
//! configuration (defaults, file, environment, validation); a file that would not start
//! forgehand is never written.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::draft::{Auth, Draft, Problems};
use crate::config::{MASK, Settings, mask_url_password};

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
    // The backup is only promised when there is a previous file to keep.
    let backup = match replaces {
        true => format!(
            "# The previous file is kept as {}.bak. ",
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ),
        false => "# ".to_owned(),
    };
    let header = format!(
        "# forgehand configuration, written by the setup wizard on {}.\n{backup}Every key: docs/configuration.md\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
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
    match draft.auth {
        Auth::Token => {
            // A forge that connected as an App connects with the token from now on.
            forge.remove("app_id");
            forge.remove("private_key");
            if let Some(token) = &draft.new_token {
                forge.insert("token".into(), Value::String(token.expose_secret().to_owned()));
            }
        }
        Auth::App => {
            forge.remove("token");
            if let Some(id) = draft.new_app_id {
                forge.insert("app_id".into(), Value::Integer(id as i64));
            }
            if let Some(key) = &draft.new_private_key {
                forge.insert("private_key".into(), Value::String(key.expose_secret().to_owned()));
            }
        }
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
            for key in ["token", "private_key"] {
                if let Some(secret) = forge.get_mut(key) {
                    *secret = masked(secret);
                }
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
    let unique = crate::token::generate_token().map_err(|e| io("name a temporary file", e))?;
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
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::server::wizard::fixtures::{base, github_draft, settings_from};

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
    fn a_first_file_promises_no_backup() {
        let dir = tempfile::tempdir().unwrap();
        let current = settings_from(dir.path(), &base(dir.path()));
        let fresh = dir.path().join("fresh.toml");
        let saved = save(&plan(&github_draft(&current), &current, &fresh).unwrap()).unwrap();
        assert_eq!(saved.backup, None);
        let text = std::fs::read_to_string(&fresh).unwrap();
        assert!(text.starts_with("# forgehand configuration") && !text.contains(".bak"), "{text}");
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
        assert!(std::fs::read_to_string(&path).unwrap().contains("kept as forgehand.toml.bak"));
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
