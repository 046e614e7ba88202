//! Replays the fuzz seeds (`fuzz/seeds/<target>/`, the fuzzing corpora minimized with
//! libFuzzer's `-merge=1`) through the properties the fuzz targets check: every input
//! that once found new coverage still holds, on the stable toolchain, without cargo-fuzz.

#[path = "../../fuzz/properties.rs"]
mod properties;

use std::path::Path;

/// The seeds of `target`, with their file names.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 50, "only {} seeds for {target}", seeds.len());
    seeds
}

/// The longest valid UTF-8 prefix, as `arbitrary` takes a `&str` from the rest of the input.
fn text(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap(),
    }
}

/// Runs `check` on every seed of `target`, naming the seed that fails.
fn replay(target: &str, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) -> usize {
    let seeds = seeds(target);
    for (name, data) in &seeds {
        if let Err(panic) = std::panic::catch_unwind(|| check(data)) {
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!("fuzz/seeds/{target}/{name} breaks the property: {message}");
        }
    }
    seeds.len()
}

#[test]
fn every_fuzz_seed_still_holds() {
    let counts = [
        replay("signature", properties::signature),
        replay("payload", properties::payload),
        replay("trigger", properties::trigger),
        replay("command", |data| properties::command(text(data))),
        replay("branch", |data| {
            let (number, title) = data.split_at(data.len().min(4));
            let mut bytes = [0; 4];
            bytes[..number.len()].copy_from_slice(number);
            properties::branch(u32::from_le_bytes(bytes), text(title));
        }),
    ];
    assert!(counts.iter().sum::<usize>() > 1000, "{counts:?}");
}
