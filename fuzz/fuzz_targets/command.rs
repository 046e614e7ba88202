//! Command parsing: instructions come back trimmed, only for comments that start with the
//! command as a whole word.
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|body: &str| properties::command(body));
