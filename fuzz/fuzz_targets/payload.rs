//! Payload parsing: any bytes under any event name give an event or an error, never a
//! panic or a stack overflow.
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::payload(data));
