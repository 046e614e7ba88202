//! Pre-signed GitHub `issues`/`labeled` deliveries, built from the recorded payload in
//! tests/data/github/issues_labeled.json.

use anyhow::Context;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The trigger label forgehand's defaults use; the other half of the deliveries add `bug`.
const TRIGGER_LABEL: &str = "forgehand";

/// One delivery, signed before the clock starts.
#[derive(Clone)]
pub struct Delivery {
    pub id: String,
    pub signature: String,
    pub body: Bytes,
}

/// A payload shape: the recorded 3 KB one, or the same padded to about 200 KB.
pub struct Template {
    pub name: &'static str,
    value: Value,
}

impl Template {
    /// The recorded payload as GitHub sent it.
    pub fn small(recorded: &[u8]) -> anyhow::Result<Template> {
        let value = serde_json::from_slice(recorded).context("the recorded payload is not JSON")?;
        Ok(Template { name: "3 KB", value })
    }

    /// The recorded payload with its issue body padded so that the whole is `size` bytes.
    pub fn padded(recorded: &[u8], size: usize) -> anyhow::Result<Template> {
        let mut value: Value =
            serde_json::from_slice(recorded).context("the recorded payload is not JSON")?;
        // No characters that JSON escapes: the body grows by exactly the padding.
        let line = "Steps to reproduce: run the CLI with --verbose and watch the output scroll by. ";
        let pad = line.repeat(size.saturating_sub(recorded.len()) / line.len() + 1);
        value["issue"]["body"] = Value::String(pad[..size.saturating_sub(recorded.len())].to_owned());
        Ok(Template { name: "200 KB", value })
    }

    /// Delivery `serial`: a unique delivery id and issue number; even serials add the
    /// trigger label (a task each), odd ones another label (recorded, ignored).
    pub fn delivery(&self, secret: &[u8], serial: u64) -> Delivery {
        let mut value = self.value.clone();
        value["issue"]["number"] = Value::from(100_000 + serial);
        let label = if serial.is_multiple_of(2) { TRIGGER_LABEL } else { "bug" };
        value["label"]["name"] = Value::from(label);
        let body = serde_json::to_vec(&value).expect("a JSON value serialises");
        Delivery {
            id: format!("bench-{serial:012}"),
            signature: format!("sha256={}", sign(secret, &body)),
            body: body.into(),
        }
    }
}

/// Lowercase hex HMAC-SHA256, as GitHub puts it in X-Hub-Signature-256.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC of `body`, compared in constant time.
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(Ok(expected)) = signature.strip_prefix("sha256=").map(hex::decode) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDED: &[u8] = include_bytes!("../../tests/data/github/issues_labeled.json");

    #[test]
    fn deliveries_are_signed_unique_and_half_triggers() {
        let template = Template::small(RECORDED).unwrap();
        let a = template.delivery(b"s", 0);
        let b = template.delivery(b"s", 1);
        assert!(verify(b"s", &a.body, &a.signature));
        assert!(!verify(b"other", &a.body, &a.signature));
        assert_ne!(a.id, b.id);
        let a: Value = serde_json::from_slice(&a.body).unwrap();
        let b: Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(a["label"]["name"], "forgehand");
        assert_eq!(b["label"]["name"], "bug");
        assert_ne!(a["issue"]["number"], b["issue"]["number"]);
    }

    #[test]
    fn the_padded_payload_is_about_the_asked_size() {
        let delivery = Template::padded(RECORDED, 200_000).unwrap().delivery(b"s", 7);
        assert!((199_000..202_000).contains(&delivery.body.len()), "{} bytes", delivery.body.len());
    }
}
