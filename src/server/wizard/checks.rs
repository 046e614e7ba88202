//! Live checks the wizard runs: a forge token against the forge's API, and the agent
//! command with `--version`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ForgeSettings, Permission, RepoName};

/// How long a live check (token or agent) may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// What a token check found.
#[derive(Debug, Clone)]
pub struct TokenReport {
    /// The account the token authenticates as.
    pub login: String,
    /// The repository asked about and the account's permission on it.
    pub permission: Option<(String, Permission)>,
    /// For a GitHub App: what its check found, as sentences (in place of the token's).
    pub app: Vec<String>,
}

impl TokenReport {
    /// The report as sentences.
    pub fn lines(&self) -> Vec<String> {
        if !self.app.is_empty() {
            return self.app.clone();
        }
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

/// Tries `forge`'s token: the account it authenticates as and, when `repo` is given, that
/// account's permission there. The error says whether the token works, never the token,
/// and not what the address answered: the same words whether nothing listens there, it
/// is no forge, or it refused the token (the log has the details), so that the check
/// tells nothing about addresses that are not a forge.
pub async fn check_token(forge: &ForgeSettings, repo: Option<&RepoName>) -> Result<TokenReport, String> {
    let check = async {
        let client =
            crate::forge::client::connect(forge).map_err(|e| format!("Cannot build the API client: {e}"))?;
        let login = client.current_login().await.map_err(|err| {
            tracing::info!(api_url = %forge.api_url, error = %err, "token check: the token did not work");
            token_does_not_work(forge)
        })?;
        let permission = match repo {
            Some(repo) => match client.permission(repo, &login).await {
                Ok(permission) => Some((repo.to_string(), permission)),
                Err(err) => {
                    return Err(format!(
                        "The token authenticates as {login}, but reading its permission on {repo} failed: {err}"
                    ));
                }
            },
            None => None,
        };
        Ok(TokenReport { login, permission, app: Vec::new() })
    };
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(result) => result,
        Err(_) => {
            tracing::info!(api_url = %forge.api_url, "token check: no answer within {} s", CHECK_TIMEOUT.as_secs());
            Err(token_does_not_work(forge))
        }
    }
}

/// Tries a GitHub App's settings live on `repo` (`forge::github_app::check`): each failing
/// step says what to fix; the key is never part of a message.
pub async fn check_app(forge: &ForgeSettings, repo: &RepoName) -> Result<TokenReport, String> {
    let checked = tokio::time::timeout(CHECK_TIMEOUT, crate::forge::github_app::check(forge, repo)).await;
    let found = match checked {
        Ok(result) => result?,
        Err(_) => {
            tracing::info!(api_url = %forge.api_url, "GitHub App check: no answer within {} s", CHECK_TIMEOUT.as_secs());
            return Err(crate::forge::github_app::jwt_not_accepted(
                &forge.api_url,
                forge.app_id.unwrap_or_default(),
            ));
        }
    };
    let granted: Vec<String> =
        found.permissions.iter().map(|(name, level)| format!("{name}: {level}")).collect();
    let app = vec![
        format!("The App's JWT works: the App is {}.", found.login),
        format!(
            "It has {} installation(s); {repo} is in installation {}.",
            found.installations, found.installation
        ),
        format!(
            "An installation token for {repo} was issued with {}: enough to push branches, comment and open pull requests.",
            granted.join(", ")
        ),
    ];
    Ok(TokenReport { login: found.login, permission: Some((repo.to_string(), Permission::Write)), app })
}

fn token_does_not_work(forge: &ForgeSettings) -> String {
    let dialect = crate::forge::dialect(forge.kind);
    format!(
        "The token does not work at {}: either the token is wrong or expired, or this is not the API address of a {} forge. \
         Check both; forgehand's log says what the address answered.",
        forge.api_url, dialect.name
    )
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

/// The program `command` names: a path to an executable file, or the first executable of
/// that name on `PATH`.
pub fn find_program(command: &str) -> Option<PathBuf> {
    let executable =
        |path: &Path| path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if command.contains('/') {
        let path = PathBuf::from(command);
        return executable(&path).then_some(path);
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs).map(|dir| dir.join(command)).find(|path| executable(path))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
