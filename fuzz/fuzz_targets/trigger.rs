//! Trigger decisions: any parsable event, in any issue context, gives a decision without
//! panicking; a task is only ever created for a named repository.
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::trigger(data));
