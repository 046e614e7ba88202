//! Command parsing: instructions come back trimmed, only for comments that start with the
//! command as a whole word.
#![no_main]

use forgehand::trigger::parse_command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &str| {
    if let Some(instructions) = parse_command(body, "/forgehand") {
        assert_eq!(instructions, instructions.trim());
        assert!(body.trim_start().starts_with("/forgehand"));
        assert!(body.len() >= instructions.len() + "/forgehand".len());
    }
});
