//! A test delivery: an `issues`/`labeled` webhook signed with a forge's own secret and sent
//! to forgehand's own endpoint, as the forge would send it. Its label is not the trigger
//! label, so it is recorded (`ignored`) and starts no task. The setup page's *Send a test
//! delivery* button and `forgehand send-test` use it.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::config::ForgeSettings;

/// The label a test delivery carries.
pub const TEST_LABEL: &str = "forgehand-test-delivery";

/// What sending a test delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub url: String,
    pub status: u16,
    /// The `outcome` and `reason` of forgehand's answer, or its error message.
    pub outcome: String,
    pub reason: String,
}

impl Sent {
    /// Whether forgehand accepted the delivery (any 2xx).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// What happened, in lines for a page or a terminal.
    pub fn lines(&self) -> Vec<String> {
        let answer = format!("{} answered {}: {}", self.url, self.status, self.outcome);
        let mut lines = vec![answer];
        if !self.reason.is_empty() {
            lines.push(self.reason.clone());
        }
        lines.push(match self.accepted() {
            true => "The endpoint and the webhook secret work: the delivery is on the deliveries page. \
                     A test delivery starts no task."
                .to_owned(),
            false => "forgehand refused it: the deliveries page lists it with the reason.".to_owned(),
        });
        lines
    }
}

/// The JSON body: label `label` added to issue #1 of `forgehand/test-delivery`.
pub fn payload(label: &str) -> Vec<u8> {
    serde_json::json!({
        "action": "labeled",
        "label": { "name": label },
        "issue": { "number": 1, "title": "forgehand test delivery", "state": "open", "labels": [{ "name": label }] },
        "repository": {
            "full_name": "forgehand/test-delivery",
            "clone_url": "https://forgehand.invalid/forgehand/test-delivery.git"
        },
        "sender": { "login": "forgehand-test", "type": "User" }
    })
    .to_string()
    .into_bytes()
}

/// The headers the forge of `forge.kind` sends with `body`, signed with its first secret;
/// `None` when it has no secret.
pub fn headers(forge: &ForgeSettings, body: &[u8], delivery_id: &str) -> Option<Vec<(&'static str, String)>> {
    let secret = forge.webhook_secret.0.first()?;
    let names = &crate::forge::dialect(forge.kind).headers;
    let digest = crate::forge::signature::sign(secret.expose_secret().as_bytes(), body);
    // GitHub's header carries a `sha256=` prefix; Gitea's and Forgejo's are bare hex.
    let signature = match names.signature[0] {
        "x-hub-signature-256" => format!("sha256={digest}"),
        _ => digest,
    };
    Some(vec![
        ("content-type", "application/json".to_owned()),
        (names.event[0], "issues".to_owned()),
        (names.delivery[0], delivery_id.to_owned()),
        (names.signature[0], signature),
    ])
}

/// The base URL that reaches a server listening on `addr` from this machine.
pub fn local_base(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Signs a test delivery for `forge` and posts it to `<base>/webhooks/<name>`.
pub async fn send(forge: &ForgeSettings, base: &str) -> Result<Sent, String> {
    let body = payload(TEST_LABEL);
    let id = format!("test-{}", &crate::token::generate_token().map_err(|e| e.to_string())?[..16]);
    let headers = headers(forge, &body, &id).ok_or_else(|| {
        format!(
            "forges: {:?} has no webhook_secret, so forgehand refuses every delivery to it; set one first",
            forge.name
        )
    })?;
    let url = format!("{}/webhooks/{}", base.trim_end_matches('/'), forge.name);
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    let mut request = client.post(&url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|err| unreachable(&url, &err))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let field = |name: &str| answer[name].as_str().unwrap_or_default().to_owned();
    let outcome = match field("outcome") {
        outcome if !outcome.is_empty() => outcome,
        _ if !field("error").is_empty() => field("error"),
        _ => text.chars().take(300).collect(),
    };
    Ok(Sent { url, status, outcome, reason: field("reason") })
}

/// The URL and the OS error, e.g. "cannot reach http://127.0.0.1:8080/webhooks/github:
/// Connection refused (os error 111)".
fn unreachable(url: &str, err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("cannot reach {url}: {cause}; is forgehand running and listening there?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_delivery_parses_as_a_label_event_for_both_forges() {
        for kind in crate::config::ForgeKind::ALL {
            let event = crate::forge::payload::parse(kind, "issues", &payload(TEST_LABEL)).unwrap();
            assert!(format!("{event:?}").contains(TEST_LABEL), "{kind}: {event:?}");
        }
    }

    #[test]
    fn local_base_reaches_a_wildcard_listener_on_loopback() {
        assert_eq!(local_base("0.0.0.0:8080".parse().unwrap()), "http://127.0.0.1:8080");
        assert_eq!(local_base("[::]:80".parse().unwrap()), "http://[::1]:80");
        assert_eq!(local_base("10.1.2.3:9".parse().unwrap()), "http://10.1.2.3:9");
    }
}
