//! The fake GitHub as a GitHub App's home: it checks the App's JWTs against the App's
//! public key (RS256, issuer, lifetime), answers the installation endpoints, issues
//! installation tokens with an expiry, and accepts a token only before it expires, only
//! on its installation's repositories.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use serde_json::{Value, json};

use super::Reply;

/// A GitHub App registered on the fake GitHub.
pub struct FakeApp {
    pub id: u64,
    pub slug: String,
    public_key: PKey<Public>,
    /// The App's private key, for forgehand's configuration.
    pub private_key_pem: String,
    /// `owner/name` → the installation that holds it.
    pub installations: BTreeMap<String, u64>,
    /// Every token issued, oldest first.
    pub issued: Vec<IssuedToken>,
    /// How long a new token lives.
    pub token_ttl: Duration,
    /// What was called with which credential: `(path, "jwt" | "installation <id>")`.
    pub calls: Vec<(String, String)>,
    /// The repository permissions the installations granted (each token carries them).
    pub permissions: Value,
}

/// An installation access token the fake handed out.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub installation: u64,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
}

/// A fresh RSA key pair for an App: the private key's PEM, and the App's public half.
pub fn app_key() -> (String, PKey<Public>) {
    let rsa = Rsa::generate(2048).unwrap();
    let private: PKey<Private> = PKey::from_rsa(rsa.clone()).unwrap();
    let pem = String::from_utf8(private.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let public = PKey::public_key_from_pem(&rsa.public_key_to_pem().unwrap()).unwrap();
    (pem, public)
}

fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut standard: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !standard.len().is_multiple_of(4) {
        standard.push('=');
    }
    openssl::base64::decode_block(&standard).ok()
}

impl std::fmt::Debug for FakeApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApp").field("id", &self.id).field("installations", &self.installations).finish()
    }
}

impl FakeApp {
    pub fn new(id: u64, slug: &str, public_key: PKey<Public>) -> FakeApp {
        FakeApp {
            id,
            slug: slug.into(),
            public_key,
            private_key_pem: String::new(),
            installations: BTreeMap::new(),
            issued: Vec::new(),
            token_ttl: Duration::hours(1),
            calls: Vec::new(),
            permissions: json!({
                "contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read",
            }),
        }
    }

    /// Why `jwt` is not the App's, if it is not.
    fn check_jwt(&self, jwt: &str) -> Result<(), String> {
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, claims, signature] = parts[..] else { return Err("not a JWT".into()) };
        let header: Value =
            b64url_decode(header).and_then(|h| serde_json::from_slice(&h).ok()).ok_or("bad header")?;
        if header["alg"] != "RS256" {
            return Err(format!("alg {} is not RS256", header["alg"]));
        }
        let signature = b64url_decode(signature).ok_or("bad signature encoding")?;
        let mut verifier = Verifier::new(MessageDigest::sha256(), &self.public_key).unwrap();
        verifier.update(format!("{}.{claims}", parts[0]).as_bytes()).unwrap();
        if !verifier.verify(&signature).unwrap_or(false) {
            return Err("signature does not match the App's public key".into());
        }
        let claims: Value =
            b64url_decode(claims).and_then(|c| serde_json::from_slice(&c).ok()).ok_or("bad claims")?;
        let now = Utc::now().timestamp();
        let (iat, exp) = (claims["iat"].as_i64().unwrap_or(i64::MAX), claims["exp"].as_i64().unwrap_or(0));
        if claims["iss"] != json!(self.id) && claims["iss"] != json!(self.id.to_string()) {
            return Err(format!("iss {} is not the App's id", claims["iss"]));
        }
        if iat > now + 60 || exp <= now || exp - iat > 600 {
            return Err(format!(
                "iat {iat} / exp {exp} are not a lifetime of at most 10 minutes around now {now}"
            ));
        }
        Ok(())
    }

    /// The answer to an App endpoint (`/app...`, `/repos/{o}/{r}/installation`), or `None`
    /// when `path` is not one.
    pub(super) fn answer(&mut self, method: &str, path: &str, bearer: Option<&str>) -> Option<Reply> {
        if path.split('?').next() == Some("/installation/repositories") && method == "GET" {
            return Some(self.installed_repositories(path, bearer));
        }
        let installation_of_repo = path.strip_prefix("/repos/").and_then(|p| p.strip_suffix("/installation"));
        if !(path.starts_with("/app") || installation_of_repo.is_some()) {
            return None;
        }
        self.calls.push((path.into(), "jwt".into()));
        if let Err(why) = bearer.ok_or_else(|| "no JWT".to_owned()).and_then(|jwt| self.check_jwt(jwt)) {
            return Some(Reply::json(
                401,
                json!({ "message": format!("A JSON web token could not be decoded: {why}") }),
            ));
        }
        let not_found = || Reply::json(404, json!({ "message": "Not Found" }));
        Some(match (method, path) {
            ("GET", "/app") => Reply::ok(json!({ "id": self.id, "slug": self.slug, "name": self.slug })),
            ("GET", "/app/installations") => {
                let mut ids: Vec<u64> = self.installations.values().copied().collect();
                ids.sort_unstable();
                ids.dedup();
                Reply::ok(json!(
                    ids.iter().map(|id| json!({ "id": id, "app_id": self.id })).collect::<Vec<_>>()
                ))
            }
            ("GET", _) if installation_of_repo.is_some() => {
                match self.installations.get(installation_of_repo.unwrap()) {
                    Some(id) => Reply::ok(json!({ "id": id, "app_id": self.id })),
                    None => not_found(),
                }
            }
            ("POST", _) => {
                let id = path
                    .strip_prefix("/app/installations/")
                    .and_then(|p| p.strip_suffix("/access_tokens"))
                    .and_then(|id| id.parse::<u64>().ok());
                match id.filter(|id| self.installations.values().any(|i| i == id)) {
                    Some(id) => self.issue(id),
                    None => not_found(),
                }
            }
            _ => not_found(),
        })
    }

    /// `GET /installation/repositories` with an installation token: its repositories.
    fn installed_repositories(&mut self, path: &str, token: Option<&str>) -> Reply {
        let path = path.split('?').next().unwrap_or(path);
        if !self.accepts(path, token, None) {
            return Reply::json(401, json!({ "message": "Bad credentials" }));
        }
        let installation = self.issued.iter().find(|t| Some(t.token.as_str()) == token).unwrap().installation;
        let repos: Vec<Value> = (self.installations.iter())
            .filter(|(_, id)| **id == installation)
            .map(|(repo, _)| json!({ "full_name": repo, "name": repo.split('/').nth(1) }))
            .collect();
        Reply::ok(json!({ "total_count": repos.len(), "repositories": repos }))
    }

    fn issue(&mut self, installation: u64) -> Reply {
        let token = format!("ghs_fake{}x{installation}", self.issued.len() + 1);
        let expires_at = Utc::now() + self.token_ttl;
        self.issued.push(IssuedToken { token: token.clone(), installation, expires_at, revoked: false });
        let permissions = self.permissions.clone();
        Reply::json(
            201,
            json!({ "token": token, "expires_at": expires_at.to_rfc3339(), "permissions": permissions }),
        )
    }

    /// True when `token` is a live installation token for `repo` (any repository of its
    /// installation when `repo` is `None`); logs the call.
    pub(super) fn accepts(&mut self, path: &str, token: Option<&str>, repo: Option<&str>) -> bool {
        let Some(issued) = self.issued.iter().find(|t| Some(t.token.as_str()) == token).cloned() else {
            return false;
        };
        self.calls.push((path.into(), format!("installation {}", issued.installation)));
        let live = !issued.revoked && issued.expires_at > Utc::now();
        live && repo.is_none_or(|repo| self.installations.get(repo) == Some(&issued.installation))
    }

    /// Revokes every token issued so far (GitHub's answer to them is then 401).
    pub fn revoke_all(&mut self) {
        self.issued.iter_mut().for_each(|t| t.revoked = true);
    }
}
