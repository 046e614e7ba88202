//! GitHub App authentication: a JWT signed with the App's private key (RS256) finds the
//! installation that holds each repository and asks for that installation's access token;
//! every API call and push then uses the token, held only in memory and renewed before
//! it expires (and once more when GitHub refuses it mid-task).
//!
//! The JWT is signed with the `openssl` crate that native-tls already builds, rather than
//! octocrab's `jwt` feature: that feature pulls `jsonwebtoken` with a crypto backend of its
//! own (RustCrypto's `rsa` or aws-lc), a second RSA implementation for one signature.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use axum::http::{HeaderValue, Method, Request, header};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config::{ForgeSettings, RepoName};
use crate::forge::client::{Answer, ErrorKind, ForgeError, ForgeResult, MAX_PAGES, repo_path};
use crate::forge::rest::Transport;

/// A token is renewed when less than this is left of it, so that no call or push starts
/// with a token about to lapse.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// GitHub refuses JWTs that live longer than 10 minutes; the issue time is set back a
/// minute for clocks that differ.
const JWT_LIFETIME_SECS: i64 = 9 * 60;

/// Sends GitHub API requests as a GitHub App's installations.
pub struct AppTransport {
    client: octocrab::Octocrab,
    base: String,
    app_id: u64,
    key: PKey<Private>,
    tokens: Arc<Mutex<Tokens>>,
}

/// What this process knows of each App, by API URL, App id and key: every client of one App
/// (the executor's, the sweep's, the identity check's) shares it, so that an installation
/// event the webhook receives reaches them all.
static KNOWN: LazyLock<std::sync::Mutex<HashMap<AppKey, Arc<Mutex<Tokens>>>>> =
    LazyLock::new(Default::default);

/// An App: its API URL (lower case, no trailing slash), its id, and the SHA-256 of its
/// public key (a new key may be a new registration of the App).
type AppKey = (String, u64, [u8; 32]);

/// The shared knowledge of App `app_id` at `api_url` with `key`.
fn known(api_url: &str, app_id: u64, key: &PKey<Private>) -> Arc<Mutex<Tokens>> {
    let fingerprint = key.public_key_to_der().map(|der| openssl::sha::sha256(&der)).unwrap_or_default();
    let key = (api_url.trim_end_matches('/').to_lowercase(), app_id, fingerprint);
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    known.entry(key).or_default().clone()
}

/// What forgehand knows of the App's installations.
#[derive(Default)]
struct Tokens {
    /// `owner/name` (lower case) → installation id.
    installations: HashMap<String, u64>,
    /// Installation id → its current access token.
    tokens: HashMap<u64, Token>,
}

struct Token {
    secret: SecretString,
    expires_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct InstalledRepos {
    repositories: Vec<FullName>,
}

#[derive(Deserialize)]
struct FullName {
    full_name: String,
}

#[derive(Deserialize)]
struct App {
    slug: String,
}

impl AppTransport {
    /// A transport for the App of `settings` (`app_id`, `private_key`) at `api_url`.
    pub fn new(settings: &ForgeSettings) -> anyhow::Result<AppTransport> {
        let app_id = settings.app_id.context("forges: app_id is not set")?;
        let key = private_key(settings)?;
        let client = octocrab::Octocrab::builder()
            .base_uri(settings.api_url.as_str())
            .with_context(|| format!("forges: api_url {:?} is not a valid URL", settings.api_url))?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()
            .context("cannot build the GitHub client")?;
        let tokens = known(&settings.api_url, app_id, &key);
        Ok(AppTransport { client, base: settings.api_url.clone(), app_id, key, tokens })
    }

    /// A JWT that authenticates as the App itself, valid for nine minutes.
    pub fn jwt(&self) -> ForgeResult<String> {
        let now = Utc::now().timestamp();
        let header = base64url(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = json!({ "iat": now - 60, "exp": now + JWT_LIFETIME_SECS, "iss": self.app_id });
        let signed = format!("{header}.{}", base64url(claims.to_string().as_bytes()));
        let signature = Signer::new(MessageDigest::sha256(), &self.key)
            .and_then(|mut signer| signer.sign_oneshot_to_vec(signed.as_bytes()))
            .map_err(|err| ForgeError {
                operation: "signing the GitHub App's JWT".into(),
                kind: ErrorKind::Rejected,
                message: format!("the private key cannot sign: {err}"),
            })?;
        Ok(format!("{signed}.{}", base64url(&signature)))
    }

    /// One request with `authorization` as its `Authorization` header.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        authorization: &str,
        operation: &str,
    ) -> ForgeResult<Answer> {
        let mut auth = HeaderValue::from_str(authorization).map_err(|_| {
            ForgeError::invalid_answer(operation, "a token GitHub sent is not a header value")
        })?;
        auth.set_sensitive(true);
        let builder = Request::builder().method(method).uri(path).header(header::AUTHORIZATION, auth);
        let request =
            self.client.build_request(builder, body).map_err(|e| ForgeError::invalid_answer(operation, e))?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| ForgeError::unreachable(operation, &self.base, &e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| ForgeError::unreachable(operation, &self.base, &e))?;
        Ok(Answer { status: parts.status, headers: parts.headers, body: body.to_bytes().to_vec() })
    }

    /// A request as the App itself (JWT).
    async fn as_app(&self, method: Method, path: &str, operation: &str) -> ForgeResult<Answer> {
        let jwt = self.jwt()?;
        let answer = self.request(method, path, None, &format!("Bearer {jwt}"), operation).await?;
        if answer.status.as_u16() == 401 {
            return Err(ForgeError {
                operation: operation.into(),
                kind: ErrorKind::Unauthorized,
                message: "GitHub refused the App's JWT (401); check app_id and that private_key is a key of that App"
                    .into(),
            });
        }
        Ok(answer)
    }

    /// The installation that holds `repo`.
    async fn installation_of(&self, repo: &str) -> ForgeResult<u64> {
        let key = repo.to_lowercase();
        if let Some(id) = self.tokens.lock().await.installations.get(&key) {
            return Ok(*id);
        }
        let operation = format!("finding the GitHub App's installation on {repo}");
        let path = format!("/repos/{}/installation", repo_path(&RepoName::from(repo)));
        let answer = self.as_app(Method::GET, &path, &operation).await?;
        if answer.status.as_u16() == 404 {
            let message = format!(
                "the GitHub App is not installed on {repo}; install it there (the App's page → Install App)"
            );
            return Err(ForgeError { operation, kind: ErrorKind::NotFound, message });
        }
        let id = answer.json::<Installation>(&operation)?.id;
        self.tokens.lock().await.installations.insert(key, id);
        Ok(id)
    }

    /// Every installation of the App.
    async fn installations(&self) -> ForgeResult<Vec<u64>> {
        let operation = "listing the GitHub App's installations";
        let answer = self.as_app(Method::GET, "/app/installations?per_page=100", operation).await?;
        Ok(answer.json::<Vec<Installation>>(operation)?.into_iter().map(|i| i.id).collect())
    }

    /// The repositories installation `id` holds (at most `MAX_PAGES` pages), remembered as
    /// its own.
    async fn repos_of(&self, installation: u64) -> ForgeResult<Vec<RepoName>> {
        let operation = format!("listing the repositories of the GitHub App's installation {installation}");
        let mut repos = Vec::new();
        for page in 1..=MAX_PAGES {
            let token = self.token(installation).await?;
            let path = format!("/installation/repositories?per_page=100&page={page}");
            let answer = self
                .request(Method::GET, &path, None, &format!("Bearer {}", token.expose_secret()), &operation)
                .await?;
            let listed = answer.json::<InstalledRepos>(&operation)?.repositories;
            let done = listed.len() < 100;
            repos.extend(listed.into_iter().map(|r| r.full_name));
            if done {
                break;
            }
        }
        let mut known = self.tokens.lock().await;
        // What GitHub lists now replaces what was known of this installation.
        known.installations.retain(|_, id| *id != installation);
        known.installations.extend(repos.iter().map(|r| (r.to_lowercase(), installation)));
        Ok(repos.into_iter().map(RepoName::from).collect())
    }

    /// Any installation: for calls that name no repository.
    async fn any_installation(&self) -> ForgeResult<u64> {
        if let Some(id) = self.tokens.lock().await.installations.values().next() {
            return Ok(*id);
        }
        let operation = "listing the GitHub App's installations";
        let installations =
            self.as_app(Method::GET, "/app/installations", operation)
                .await?
                .json::<Vec<Installation>>(operation)?;
        installations.first().map(|i| i.id).ok_or_else(|| ForgeError {
            operation: operation.into(),
            kind: ErrorKind::NotFound,
            message: "the GitHub App is installed nowhere; install it on the repositories forgehand serves"
                .into(),
        })
    }

    /// The installation's access token, asked for again when less than [`RENEW_BEFORE`]
    /// is left of it.
    async fn token(&self, installation: u64) -> ForgeResult<SecretString> {
        let fresh = |t: &Token| t.expires_at - Utc::now() > chrono::Duration::from_std(RENEW_BEFORE).unwrap();
        if let Some(token) = self.tokens.lock().await.tokens.get(&installation).filter(|t| fresh(t)) {
            return Ok(token.secret.clone());
        }
        let operation = format!("asking for an access token of the GitHub App's installation {installation}");
        let path = format!("/app/installations/{installation}/access_tokens");
        let answer = self.as_app(Method::POST, &path, &operation).await?;
        if answer.status.as_u16() == 404 {
            // Uninstalled: look the repositories up again next time.
            self.tokens.lock().await.installations.retain(|_, id| *id != installation);
        }
        let access = answer.json::<AccessToken>(&operation)?;
        let secret = SecretString::from(access.token);
        let token = Token { secret: secret.clone(), expires_at: access.expires_at };
        self.tokens.lock().await.tokens.insert(installation, token);
        Ok(secret)
    }

    async fn forget_token(&self, installation: u64) {
        self.tokens.lock().await.tokens.remove(&installation);
    }

    /// `GET /user` means "who am I": for an App, its bot account `<slug>[bot]`.
    async fn bot_account(&self, operation: &str) -> ForgeResult<Answer> {
        let mut answer = self.as_app(Method::GET, "/app", operation).await?;
        if answer.status.is_success() {
            let app = serde_json::from_slice::<App>(&answer.body)
                .map_err(|e| ForgeError::invalid_answer(operation, e))?;
            answer.body = json!({ "login": format!("{}[bot]", app.slug) }).to_string().into_bytes();
        }
        Ok(answer)
    }
}

/// The App's private key of `settings`.
fn private_key(settings: &ForgeSettings) -> anyhow::Result<PKey<Private>> {
    let pem = settings.app_private_key().map_err(|err| anyhow::anyhow!("forges: private_key: {err}"))?;
    PKey::private_key_from_pem(pem.expose_secret().as_bytes())
        .map_err(|_| anyhow::anyhow!("forges: private_key is not an RSA private key in PEM form"))
}

/// `owner/name` when `path` is under `/repos/{owner}/{name}`.
fn repo_of(path: &str) -> Option<String> {
    let mut parts = path.strip_prefix("/repos/")?.split(['/', '?']);
    let (owner, name) = (parts.next()?, parts.next()?);
    Some(format!("{owner}/{name}"))
}

#[async_trait]
impl Transport for AppTransport {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        operation: &str,
    ) -> ForgeResult<Answer> {
        if path == "/user" {
            return self.bot_account(operation).await;
        }
        let installation = match repo_of(path) {
            Some(repo) => self.installation_of(&repo).await?,
            None => self.any_installation().await?,
        };
        let token = self.token(installation).await?;
        let auth = format!("Bearer {}", token.expose_secret());
        let answer = self.request(method.clone(), path, body, &auth, operation).await?;
        if answer.status.as_u16() != 401 {
            return Ok(answer);
        }
        // Revoked, or expired early: one more try with a new token.
        self.forget_token(installation).await;
        let token = self.token(installation).await?;
        let auth = format!("Bearer {}", token.expose_secret());
        self.request(method, path, body, &auth, operation).await
    }

    async fn installed_repos(&self) -> ForgeResult<Option<Vec<RepoName>>> {
        let mut repos = Vec::new();
        for installation in self.installations().await? {
            repos.extend(self.repos_of(installation).await?);
        }
        Ok(Some(repos))
    }

    async fn git_token(&self, repo: &RepoName) -> ForgeResult<Option<SecretString>> {
        let installation = self.installation_of(&repo.to_string()).await?;
        Ok(Some(self.token(installation).await?))
    }
}

/// What an `installation` or `installation_repositories` event says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationChange {
    pub installation: u64,
    /// The installation is gone (deleted) or may not be used (suspended).
    pub gone: bool,
    /// `owner/name` of repositories it holds now (created, or added).
    pub added: Vec<String>,
    /// `owner/name` of repositories it no longer holds.
    pub removed: Vec<String>,
}

#[derive(Deserialize)]
struct InstallationEvent {
    action: String,
    installation: Installation,
    #[serde(default)]
    repositories: Vec<FullName>,
    #[serde(default)]
    repositories_added: Vec<FullName>,
    #[serde(default)]
    repositories_removed: Vec<FullName>,
}

/// Reads an `installation` or `installation_repositories` payload; `None` for any other
/// event, or a payload without an installation id.
pub fn installation_change(event: &str, json: &[u8]) -> Option<InstallationChange> {
    if event != "installation" && event != "installation_repositories" {
        return None;
    }
    let payload = serde_json::from_slice::<InstallationEvent>(json).ok()?;
    let names = |repos: Vec<FullName>| repos.into_iter().map(|r| r.full_name).collect::<Vec<_>>();
    let gone = event == "installation" && matches!(payload.action.as_str(), "deleted" | "suspend");
    let mut added = names(payload.repositories_added);
    if event == "installation" && !gone {
        added.extend(names(payload.repositories));
    }
    Some(InstallationChange {
        installation: payload.installation.id,
        gone,
        added,
        removed: names(payload.repositories_removed),
    })
}

impl Tokens {
    /// Applies `change`: repositories move to or from the installation, and its token is
    /// dropped, since one issued before the change may not cover what it holds now (and
    /// one of a deleted or suspended installation is refused).
    fn apply(&mut self, change: &InstallationChange) {
        let id = change.installation;
        self.tokens.remove(&id);
        if change.gone {
            self.installations.retain(|_, holder| *holder != id);
        }
        for repo in &change.removed {
            self.installations.remove(&repo.to_lowercase());
        }
        for repo in &change.added {
            self.installations.insert(repo.to_lowercase(), id);
        }
    }
}

/// Brings what this process knows of the App of `settings` up to date with `change`.
pub async fn apply_installation_change(settings: &ForgeSettings, change: &InstallationChange) {
    let (Some(app_id), Ok(key)) = (settings.app_id, private_key(settings)) else { return };
    known(&settings.api_url, app_id, &key).lock().await.apply(change);
    tracing::info!(
        forge = %settings.name,
        installation = change.installation,
        gone = change.gone,
        added = change.added.len(),
        removed = change.removed.len(),
        "the GitHub App's installations changed"
    );
}

/// What a live check of an App's settings found.
#[derive(Debug, Clone)]
pub struct AppCheck {
    /// The App's bot account, `<slug>[bot]`.
    pub login: String,
    /// How many installations the App has.
    pub installations: usize,
    /// The installation holding the repository checked.
    pub installation: u64,
    /// The permissions of the token issued for it, `(name, level)`.
    pub permissions: Vec<(String, String)>,
}

/// Where an App's webhook is set, for the setup pages.
pub const WEBHOOK_STEPS: &str = "On the App's settings page: under General → Webhook, tick Active and set the Webhook URL and secret below; under Permissions & events → Subscribe to events, tick:";

/// The events an App subscribes to, as its settings page names them (its installation
/// events come without being ticked).
pub const EVENTS: &[&str] = &["Issues", "Issue comment", "Pull request review", "Check run"];

/// The repository permissions forgehand needs, and at what level.
pub const NEEDED_PERMISSIONS: &[(&str, &str, &str)] = &[
    ("contents", "write", "Contents"),
    ("issues", "write", "Issues"),
    ("pull_requests", "write", "Pull requests"),
];

#[derive(Deserialize)]
struct IssuedToken {
    #[serde(default)]
    permissions: HashMap<String, String>,
}

/// Checks an App's settings live, one step after the other, each failure saying what to
/// fix: the JWT (the App's account), its installations, the installation holding `repo`,
/// and a token for it with the permissions forgehand needs. Uses nothing cached: a key
/// typed in the setup wizard is tried itself. The first step's failure reads the same
/// whether GitHub refused the JWT or the address is no GitHub (the log has the details).
pub async fn check(settings: &ForgeSettings, repo: &RepoName) -> Result<AppCheck, String> {
    let transport = AppTransport::new(settings).map_err(|e| format!("{e:#}"))?;
    let transport = AppTransport { tokens: Arc::default(), ..transport };
    let app_id = transport.app_id;
    let refused = |why: String| {
        tracing::info!(api_url = %settings.api_url, error = %why, "GitHub App check: the JWT did not work");
        jwt_not_accepted(&settings.api_url, app_id)
    };
    let operation = "reading the GitHub App";
    let answer = transport.bot_account(operation).await.map_err(|e| refused(e.to_string()))?;
    if !answer.status.is_success() {
        return Err(refused(format!("{} answered {}", settings.api_url, answer.status)));
    }
    let login = answer.json::<FullLogin>(operation).map_err(|e| refused(e.to_string()))?.login;
    let installations = transport.installations().await.map_err(|e| e.to_string())?;
    if installations.is_empty() {
        return Err(format!(
            "The App {login} works but is installed nowhere: install it on {repo} (the App's page → Install App)."
        ));
    }
    let installation = transport.installation_of(&repo.to_string()).await.map_err(|e| match e.kind {
        ErrorKind::NotFound => format!(
            "The App {login} is installed ({} installations) but not on {repo}: add {repo} to its installation \
             (the App's page → Install App → Configure → Repository access).",
            installations.len()
        ),
        _ => e.to_string(),
    })?;
    let operation = format!("asking for an access token of the GitHub App's installation {installation}");
    let path = format!("/app/installations/{installation}/access_tokens");
    let answer = transport.as_app(Method::POST, &path, &operation).await.map_err(|e| e.to_string())?;
    if !answer.status.is_success() {
        return Err(format!(
            "GitHub issued no token for the installation on {repo}: it answered {}.",
            answer.status
        ));
    }
    let mut permissions: Vec<(String, String)> =
        answer.json::<IssuedToken>(&operation).map_err(|e| e.to_string())?.permissions.into_iter().collect();
    permissions.sort();
    let missing = missing_permissions(&permissions);
    if !missing.is_empty() {
        return Err(format!(
            "The App's installation on {repo} lacks {}: give the App these repository permissions (the App's \
             page → Permissions & events), then accept the new permissions on the installation.",
            missing.join(", ")
        ));
    }
    Ok(AppCheck { login, installations: installations.len(), installation, permissions })
}

/// What the first step of [`check`] says when it fails, whatever the reason: the same
/// words whether GitHub refused the JWT, the address is no GitHub, or it did not answer.
pub fn jwt_not_accepted(api_url: &str, app_id: u64) -> String {
    format!(
        "GitHub did not accept the App's JWT at {api_url}: either the App id {app_id} and the private key do not \
         belong together (a key of another App, or one deleted on the App's page), or this is not the API \
         address of GitHub. Check the App id (the App's settings page, App ID) and the key; forgehand's log \
         says what the address answered."
    )
}

#[derive(Deserialize)]
struct FullLogin {
    login: String,
}

/// The needed permissions `granted` lacks, as the App's settings page names them.
fn missing_permissions(granted: &[(String, String)]) -> Vec<String> {
    NEEDED_PERMISSIONS
        .iter()
        .filter(|(name, level, _)| !granted.iter().any(|(n, l)| n == name && l == level))
        .map(|(name, level, shown)| {
            let has = granted.iter().find(|(n, _)| n == name).map(|(_, l)| l.as_str()).unwrap_or("none");
            format!("{shown}: {level} (it has {has})")
        })
        .collect()
}

/// Base64url without padding, as JWTs are written.
fn base64url(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes)
        .chars()
        .filter(|c| *c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_has_no_padding_nor_url_unsafe_characters() {
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(base64url(br#"{"alg":"RS256","typ":"JWT"}"#), "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9");
    }

    #[test]
    fn installation_events_move_repositories_and_drop_tokens() {
        let token = || Token { secret: SecretString::from("t"), expires_at: Utc::now() };
        let mut known = Tokens::default();
        known.installations.extend([("o/a".to_owned(), 1), ("o/b".to_owned(), 1), ("o/c".to_owned(), 2)]);
        known.tokens.extend([(1, token()), (2, token())]);
        let removed = br#"{"action":"removed","installation":{"id":1},"repositories_added":[],
            "repositories_removed":[{"full_name":"o/A"}]}"#;
        let change = installation_change("installation_repositories", removed).unwrap();
        known.apply(&change);
        assert!(!known.installations.contains_key("o/a") && !known.tokens.contains_key(&1));
        assert_eq!(known.installations.get("o/b"), Some(&1));
        let created = br#"{"action":"created","installation":{"id":3},"repositories":[{"full_name":"o/A"}]}"#;
        known.apply(&installation_change("installation", created).unwrap());
        assert_eq!(known.installations.get("o/a"), Some(&3));
        let deleted = br#"{"action":"deleted","installation":{"id":2},"repositories":[{"full_name":"o/c"}]}"#;
        let change = installation_change("installation", deleted).unwrap();
        assert!(change.gone && change.added.is_empty());
        known.apply(&change);
        assert!(!known.installations.contains_key("o/c") && !known.tokens.contains_key(&2));
        assert_eq!(installation_change("issues", removed), None);
    }

    #[test]
    fn missing_permissions_are_named_with_what_the_app_has() {
        let granted = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter().map(|(n, l)| ((*n).to_owned(), (*l).to_owned())).collect()
        };
        let all = granted(&[("contents", "write"), ("issues", "write"), ("pull_requests", "write")]);
        assert!(missing_permissions(&all).is_empty());
        let some = granted(&[("contents", "read"), ("issues", "write"), ("metadata", "read")]);
        assert_eq!(
            missing_permissions(&some),
            ["Contents: write (it has read)", "Pull requests: write (it has none)"]
        );
    }

    #[test]
    fn repository_paths_name_their_repository() {
        assert_eq!(repo_of("/repos/o/r/issues/1").as_deref(), Some("o/r"));
        assert_eq!(repo_of("/repos/o/r?x=1").as_deref(), Some("o/r"));
        assert_eq!(repo_of("/users/alice"), None);
    }
}
