//! Crash points for the fault tests: inert unless `FORGEHAND_FAILPOINT` names one.
//!
//! `FORGEHAND_FAILPOINT=after_push forgehand serve` aborts the process (no destructor,
//! no flush: as abrupt as `kill -9`) the first time a task reaches that step, so that a
//! test can restart it and check that the task still finishes exactly once. The names:
//! `after_fetch`, `after_commit`, `after_push`, `after_pull_created`.

use std::sync::OnceLock;

/// The environment variable that arms one crash point.
pub const VARIABLE: &str = "FORGEHAND_FAILPOINT";

/// Aborts the process if `name` is the armed crash point; does nothing otherwise.
pub fn hit(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(VARIABLE).ok().filter(|v| !v.is_empty()));
    if armed.as_deref() == Some(name) {
        eprintln!("forgehand: crash point {name} reached; aborting as {VARIABLE} asks");
        std::process::abort();
    }
}
