//! HMAC-SHA256 webhook signatures, checked in constant time against every configured secret.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. The messages are safe to send back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is not hexadecimal HMAC-SHA256: expected sha256= and 64 hex digits")]
    Malformed,
    #[error("the signature matches none of the webhook secrets configured for this forge")]
    Mismatch,
}

/// Computes the lowercase hex HMAC-SHA256 of `body` with `secret`, as forges send it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Verifies a hex signature (with or without the `sha256=` prefix) over the raw `body`.
/// Any of `secrets` may match, so a secret can be rotated without losing deliveries.
pub fn verify(secrets: &[SecretString], body: &[u8], signature: &str) -> Result<(), SignatureError> {
    let hex_digest = signature.strip_prefix("sha256=").unwrap_or(signature);
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let matched = secrets.iter().any(|secret| {
        let Ok(mut mac) = HmacSha256::new_from_slice(secret.expose_secret().as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    });
    if matched { Ok(()) } else { Err(SignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn secrets(all: &[&str]) -> Vec<SecretString> {
        all.iter().map(|s| SecretString::from(*s)).collect()
    }

    #[test]
    fn githubs_documented_example() {
        assert_eq!(format!("sha256={}", sign(GITHUB_SECRET.as_bytes(), b"Hello, World!")), GITHUB_SIGNATURE);
        assert_eq!(verify(&secrets(&[GITHUB_SECRET]), b"Hello, World!", GITHUB_SIGNATURE), Ok(()));
    }

    #[test]
    fn bare_hex_as_gitea_sends_it() {
        let bare = GITHUB_SIGNATURE.trim_start_matches("sha256=");
        assert_eq!(verify(&secrets(&[GITHUB_SECRET]), b"Hello, World!", bare), Ok(()));
        let upper = bare.to_uppercase();
        assert_eq!(verify(&secrets(&[GITHUB_SECRET]), b"Hello, World!", &upper), Ok(()));
    }

    #[test]
    fn any_rotated_secret_matches() {
        let both = secrets(&["new secret", GITHUB_SECRET]);
        assert_eq!(verify(&both, b"Hello, World!", GITHUB_SIGNATURE), Ok(()));
    }

    #[test]
    fn refusals() {
        let one = secrets(&[GITHUB_SECRET]);
        assert_eq!(verify(&one, b"Hello, World?", GITHUB_SIGNATURE), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(&secrets(&["other"]), b"Hello, World!", GITHUB_SIGNATURE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&[], b"Hello, World!", GITHUB_SIGNATURE), Err(SignatureError::Mismatch));
        assert_eq!(verify(&one, b"x", "sha256=zz"), Err(SignatureError::Malformed));
        assert_eq!(verify(&one, b"x", "sha256=abcd"), Err(SignatureError::Malformed));
        assert_eq!(verify(&one, b"x", ""), Err(SignatureError::Malformed));
        let sha1 = "sha1=".to_owned() + &"0".repeat(40);
        assert_eq!(verify(&one, b"x", &sha1), Err(SignatureError::Malformed));
    }
}
