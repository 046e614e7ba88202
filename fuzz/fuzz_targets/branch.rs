//! Branch names: any issue title gives a valid git reference under the prefix.
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|input: (u32, &str)| properties::branch(input.0, input.1));
