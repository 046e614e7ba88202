//! Each forge: the token works and whom it belongs to, its permission on the repositories,
//! the webhook secret, and whether the forge can reach `server.public_url`.

use std::future::Future;
use std::time::Duration;

use reqwest::Url;

use super::Finding;
use crate::config::{ForgeSettings, Permission, RepoName, Settings};
use crate::forge::client::{ErrorKind, Forge, ForgeError};

/// How long one call to a forge may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Every configured forge, each against `repos`.
pub async fn check_forges(settings: &Settings, repos: &[RepoName]) -> Vec<Finding> {
    if settings.forges.is_empty() {
        return vec![Finding::fail(
            "no forge configured: nothing can trigger a task; add a [[forges]] entry to the config \
             file (docs/configuration.md) or open /setup/wizard",
        )];
    }
    let several = settings.forges.len() > 1;
    let mut findings = Vec::new();
    for forge in &settings.forges {
        findings.extend(check_token(forge, repos, several).await);
        findings.push(check_secret(forge));
        findings.extend(check_reachability(forge, &settings.server.public_url));
    }
    findings
}

/// The token's account, then its permission on each of `repos`. When `several` forges
/// are configured, a repository missing from this one may live on another: a warning.
async fn check_token(forge: &ForgeSettings, repos: &[RepoName], several: bool) -> Vec<Finding> {
    let name = format!("forge {} ({})", forge.name, forge.api_url);
    let client = match crate::forge::client::connect(forge) {
        Ok(client) => client,
        Err(err) => return vec![Finding::fail(format!("{name}: cannot build its API client: {err:#}"))],
    };
    if forge.app_id.is_some() {
        return check_app(forge, client.as_ref(), repos).await;
    }
    let login = match call(forge, client.current_login()).await {
        Ok(login) => login,
        Err(err) => {
            let mut found = vec![Finding::fail(format!("{name}: the token does not work: {err}"))];
            if !repos.is_empty() {
                found.push(Finding::skip(format!(
                    "forge {}: permissions not checked: no working token",
                    forge.name
                )));
            }
            return found;
        }
    };
    let mut found = vec![Finding::ok(format!("{name}: the token works; it belongs to {login}"))];
    found.extend(bot_login_mismatch(forge, &login));
    if repos.is_empty() {
        found.push(Finding::warn(format!(
            "forge {}: trigger.repos is empty (every repository the webhooks come from), so no permission \
             was checked; run forgehand doctor --repo owner/name",
            forge.name
        )));
    }
    for repo in repos {
        found.push(check_permission(forge, client.as_ref(), repo, &login, several).await);
    }
    found
}

/// A GitHub App: its JWT (the App's account), its installations, and an installation
/// token for each of `repos`.
async fn check_app(forge: &ForgeSettings, client: &dyn Forge, repos: &[RepoName]) -> Vec<Finding> {
    let name = format!("forge {} ({})", forge.name, forge.api_url);
    let login = match call(forge, client.current_login()).await {
        Ok(login) => login,
        Err(err) => {
            return vec![Finding::fail(format!("{name}: the App's JWT does not work: {err}"))];
        }
    };
    let mut found = vec![Finding::ok(format!("{name}: the App's JWT works; its account is {login}"))];
    found.extend(bot_login_mismatch(forge, &login));
    match call(forge, client.installed_repos()).await {
        Ok(Some(installed)) if installed.is_empty() => found.push(Finding::fail(format!(
            "forge {}: the App is installed on no repository; install it (the App's page → Install App)",
            forge.name
        ))),
        Ok(installed) => {
            let installed = installed.unwrap_or_default();
            let shown: Vec<String> = installed.iter().take(5).map(ToString::to_string).collect();
            let more = if installed.len() > 5 { ", ..." } else { "" };
            found.push(Finding::ok(format!(
                "forge {}: the App is installed on {} repositories ({}{more})",
                forge.name,
                installed.len(),
                shown.join(", ")
            )));
        }
        Err(err) => found
            .push(Finding::fail(format!("forge {}: cannot list the App's installations: {err}", forge.name))),
    }
    // The same steps as the setup wizard's check, permissions included.
    for repo in repos {
        let checked = tokio::time::timeout(CALL_TIMEOUT, crate::forge::github_app::check(forge, repo)).await;
        found.push(match checked {
            Ok(Ok(app)) => {
                let granted: Vec<String> = app.permissions.iter().map(|(n, l)| format!("{n}: {l}")).collect();
                Finding::ok(format!(
                    "forge {}: an installation token for {repo} was issued ({})",
                    forge.name,
                    granted.join(", ")
                ))
            }
            Ok(Err(err)) => {
                Finding::fail(format!("forge {}: no installation token for {repo}: {err}", forge.name))
            }
            Err(_) => Finding::fail(format!(
                "forge {}: no installation token for {repo}: {} did not answer within {} s",
                forge.name,
                forge.api_url,
                CALL_TIMEOUT.as_secs()
            )),
        });
    }
    found
}

fn bot_login_mismatch(forge: &ForgeSettings, login: &str) -> Option<Finding> {
    let configured = &forge.bot_login;
    (!configured.is_empty() && !configured.eq_ignore_ascii_case(login)).then(|| {
        Finding::warn(format!(
            "forge {}: forges[].bot_login is {configured} but the token belongs to {login}: events from \
             {login} may start tasks; set bot_login to {login} or leave it empty",
            forge.name
        ))
    })
}

async fn check_permission(
    forge: &ForgeSettings,
    client: &dyn Forge,
    repo: &RepoName,
    login: &str,
    several: bool,
) -> Finding {
    let name = &forge.name;
    match call(forge, client.permission(repo, login)).await {
        Ok(permission) if permission >= Permission::Write => {
            Finding::ok(format!("forge {name}: {login} has {permission} permission on {repo}"))
        }
        Ok(permission) => Finding::fail(format!(
            "forge {name}: {login} has {permission} permission on {repo}; forgehand needs write to push \
             branches and open pull requests: give {login} write access to {repo}"
        )),
        Err(err) if err.kind == Some(ErrorKind::NotFound) && several => Finding::warn(format!(
            "forge {name}: {repo} not found (fine if it lives on another configured forge): {err}"
        )),
        Err(err) if err.kind == Some(ErrorKind::NotFound) => Finding::fail(format!(
            "forge {name}: {repo} not found, or the token cannot see it: {err}; check the name and the token's access"
        )),
        Err(err) => Finding::fail(format!("forge {name}: cannot read {login}'s permission on {repo}: {err}")),
    }
}

/// A failed forge call: its kind (none on a timeout) and what to print.
struct CallError {
    kind: Option<ErrorKind>,
    message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A forge call bounded by [`CALL_TIMEOUT`]; a transport failure is completed with what
/// connecting to the API's host says (the OS error).
async fn call<T>(
    forge: &ForgeSettings,
    request: impl Future<Output = Result<T, ForgeError>>,
) -> Result<T, CallError> {
    let err = match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(err)) => err,
        Err(_) => {
            let message = format!("{} did not answer within {} s", forge.api_url, CALL_TIMEOUT.as_secs());
            return Err(CallError { kind: None, message });
        }
    };
    let mut message = err.to_string();
    if err.is_transient() && err.retry_after().is_none() {
        let (address, said) = connect_probe(&forge.api_url).await;
        // Only when the transport's message does not already say it.
        if !message.contains(&said) {
            message = format!("{message} (connecting to {address}: {said})");
        }
    }
    Err(CallError { kind: Some(err.kind), message })
}

/// Where a plain TCP connection to `api_url`'s host and port goes, and what it says.
async fn connect_probe(api_url: &str) -> (String, String) {
    let Some((host, port)) = Url::parse(api_url)
        .ok()
        .and_then(|url| Some((url.host_str()?.to_owned(), url.port_or_known_default()?)))
    else {
        return (api_url.to_owned(), "not a URL with a host".to_owned());
    };
    let address = format!("{host}:{port}");
    let said =
        match tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&address)).await {
            Ok(Ok(_)) => "it accepts connections; the HTTP request itself failed".to_owned(),
            Ok(Err(err)) => err.to_string(),
            Err(_) => "no answer within 10 s".to_owned(),
        };
    (address, said)
}

fn check_secret(forge: &ForgeSettings) -> Finding {
    let name = &forge.name;
    if forge.webhook_secret.is_empty() {
        Finding::fail(format!(
            "forge {name}: no webhook_secret: every delivery to /webhooks/{name} is refused (403); set \
             forges[].webhook_secret and the same secret on the forge's webhook"
        ))
    } else {
        Finding::ok(format!("forge {name}: a webhook secret is set"))
    }
}

/// A remote forge cannot deliver to a loopback `public_url`.
fn check_reachability(forge: &ForgeSettings, public_url: &str) -> Option<Finding> {
    let name = &forge.name;
    let public_local = is_loopback(public_url)?;
    let forge_local = is_loopback(&forge.api_url)?;
    let line = match (public_local, forge_local) {
        (true, false) => Finding::warn(format!(
            "forge {name}: server.public_url {public_url} is a loopback address but the forge ({}) is not: \
             it cannot deliver webhooks there; set server.public_url to the address the forge reaches \
             (a reverse proxy or a tunnel in front of forgehand)",
            forge.api_url
        )),
        (true, true) => Finding::ok(format!(
            "forge {name}: server.public_url {public_url} and the forge are both on this machine"
        )),
        (false, _) => {
            Finding::ok(format!("forge {name}: server.public_url {public_url} is not a loopback address"))
        }
    };
    Some(line)
}

/// Whether `url`'s host is a loopback name or address; `None` when it is no URL.
pub fn is_loopback(url: &str) -> Option<bool> {
    let url = Url::parse(url).ok()?;
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']');
    Some(match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for url in ["http://127.0.0.1:8080", "http://localhost/x", "http://[::1]:9", "http://127.8.0.1"] {
            assert_eq!(is_loopback(url), Some(true), "{url}");
        }
        for url in ["https://api.github.com", "http://10.0.0.2", "https://forgehand.example.com"] {
            assert_eq!(is_loopback(url), Some(false), "{url}");
        }
        assert_eq!(is_loopback("not a url"), None);
    }

    #[test]
    fn a_remote_forge_cannot_reach_a_loopback_public_url() {
        let forge = |api_url: &str| ForgeSettings {
            name: "github".into(),
            kind: crate::config::ForgeKind::Github,
            api_url: api_url.into(),
            token: secrecy::SecretString::from(""),
            webhook_secret: Default::default(),
            bot_login: String::new(),
            app_id: None,
            private_key: String::new().into(),
        };
        let remote = check_reachability(&forge("https://api.github.com"), "http://127.0.0.1:8080").unwrap();
        assert_eq!(remote.level, super::super::Level::Warn);
        assert!(remote.text.starts_with(
            "forge github: server.public_url http://127.0.0.1:8080 is a loopback address but the forge \
             (https://api.github.com) is not: it cannot deliver webhooks there"
        ));
        let local =
            check_reachability(&forge("http://localhost:3000/api/v1"), "http://127.0.0.1:8080").unwrap();
        assert_eq!(local.level, super::super::Level::Ok);
        let public =
            check_reachability(&forge("https://api.github.com"), "https://forgehand.example.com").unwrap();
        assert_eq!(public.level, super::super::Level::Ok);
    }
}
