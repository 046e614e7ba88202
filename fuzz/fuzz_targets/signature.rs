//! Signature verification: never panics, and a body signed with a secret verifies.
#![no_main]

use forgehand::forge::signature::{sign, verify};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let split = usize::from(split).min(rest.len());
    let (secret, body) = rest.split_at(split);
    let secret = String::from_utf8_lossy(secret).into_owned();
    let secrets = [SecretString::from(secret.clone())];
    // Arbitrary text as the signature header.
    let _ = verify(&secrets, body, &String::from_utf8_lossy(body));
    let good = sign(secret.as_bytes(), body);
    assert!(verify(&secrets, body, &good).is_ok());
    assert!(verify(&secrets, body, &format!("sha256={good}")).is_ok());
    if !body.is_empty() {
        assert!(verify(&secrets, &body[1..], &good).is_err(), "a signature verified another body");
    }
});
