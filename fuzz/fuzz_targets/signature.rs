//! Signature verification: never panics, and a body signed with a secret verifies.
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::signature(data));
