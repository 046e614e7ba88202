//! What the daemon keeps resident once it has started.
//!
//! Start-up runs code that never runs again: the configuration, the migrations' check,
//! the command line, the pools. The kernel maps a program's code 64 KiB at a time around
//! each page it runs (fault-around), and that code is spread over the whole binary, so
//! after start most of forgehand's code was resident: 11 of the 18.5 MB of idle RSS
//! (docs/benchmarks.md). Releasing the pages of the program's own read-only mappings once
//! it has started keeps resident only what runs afterwards; the released pages stay in
//! the page cache and come back, from memory, when their code runs again.

/// One mapping of the program's file that may be released: `len` bytes from `start`.
#[derive(Debug, PartialEq, Eq)]
struct Releasable {
    start: usize,
    len: usize,
    resident_kib: u64,
}

/// Releases the resident pages of forgehand's own read-only file mappings (code and
/// constants) that hold no private copy, and returns how many KiB were resident in them.
/// Linux only; anywhere else, or when `/proc` cannot be read, it releases nothing.
pub fn release_start_up_pages() -> u64 {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else { return 0 };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return 0 };
    let mut released = 0;
    for mapping in releasable(&smaps, &exe.to_string_lossy()) {
        // SAFETY: the range is one whole mapping of the program's file, neither writable
        // nor holding a private (copied-on-write) page, so every page in it equals the
        // file: MADV_DONTNEED only unmaps them, and the next access maps the same bytes
        // again. A mapping that was written before being made read-only (RELRO) has
        // private pages and is never released.
        let done =
            unsafe { libc::madvise(mapping.start as *mut libc::c_void, mapping.len, libc::MADV_DONTNEED) };
        if done == 0 {
            released += mapping.resident_kib;
        }
    }
    released
}

/// The mappings of `exe` in `smaps` (the text of `/proc/<pid>/smaps`) that are private,
/// not writable, resident, and hold no anonymous (privately copied) page.
fn releasable(smaps: &str, exe: &str) -> Vec<Releasable> {
    let mut found = Vec::new();
    let mut current: Option<(Releasable, Option<u64>)> = None;
    for line in smaps.lines() {
        if let Some(header) = mapping_header(line) {
            found.extend(current.take().and_then(keep));
            current = header_of(header, exe).map(|mapping| (mapping, None));
        } else if let Some((mapping, anonymous)) = current.as_mut() {
            if let Some(kib) = field_kib(line, "Rss:") {
                mapping.resident_kib = kib;
            } else if let Some(kib) = field_kib(line, "Anonymous:") {
                *anonymous = Some(kib);
            }
        }
    }
    found.extend(current.and_then(keep));
    found
}

/// A mapping is kept only when its anonymous size was read and is zero.
fn keep((mapping, anonymous): (Releasable, Option<u64>)) -> Option<Releasable> {
    (anonymous == Some(0) && mapping.resident_kib > 0).then_some(mapping)
}

/// The fields of a mapping's first line (`start-end perms offset dev inode path`).
fn mapping_header(line: &str) -> Option<Vec<&str>> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let range = fields.first()?;
    let (start, end) = range.split_once('-')?;
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(start) && hex(end) && fields.len() >= 5).then_some(fields)
}

/// The mapping a header describes, when it is a private, read-only mapping of `exe`.
fn header_of(fields: Vec<&str>, exe: &str) -> Option<Releasable> {
    let path = fields.get(5..).map(|rest| rest.join(" ")).unwrap_or_default();
    let perms = fields[1].as_bytes();
    if path != exe || perms.len() != 4 || perms[1] == b'w' || perms[3] != b'p' {
        return None;
    }
    let (start, end) = fields[0].split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    Some(Releasable { start, len: end.checked_sub(start)?, resident_kib: 0 })
}

/// `123` from a line `key   123 kB`.
fn field_kib(line: &str, key: &str) -> Option<u64> {
    line.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXE: &str = "/opt/forgehand/bin/forgehand";

    fn mapping(range: &str, perms: &str, path: &str, rss: u64, anonymous: u64) -> String {
        format!(
            "{range} {perms} 00000000 fe:00 5312159    {path}\nSize:  64 kB\nRss:  {rss} kB\n\
             Pss:  {rss} kB\nAnonymous:  {anonymous} kB\nVmFlags: rd mr mw me\n"
        )
    }

    #[test]
    fn only_the_programs_read_only_pages_without_private_copies_are_released() {
        let smaps = [
            mapping("1000-5000", "r--p", EXE, 12, 0),
            mapping("5000-9000", "r-xp", EXE, 16, 0),
            // RELRO: written by the dynamic linker, then made read-only.
            mapping("9000-a000", "r--p", EXE, 4, 4),
            mapping("a000-b000", "rw-p", EXE, 4, 0),
            // Not resident: nothing to release.
            mapping("b000-c000", "r--p", EXE, 0, 0),
            mapping("c000-d000", "r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6", 8, 0),
            mapping("d000-e000", "rw-s", "/data/forgehand.db-shm", 4, 0),
            mapping("e000-f000", "r-xp", "[vdso]", 4, 0),
        ]
        .concat();
        let found = releasable(&smaps, EXE);
        assert_eq!(
            found,
            vec![
                Releasable { start: 0x1000, len: 0x4000, resident_kib: 12 },
                Releasable { start: 0x5000, len: 0x4000, resident_kib: 16 },
            ]
        );
    }

    #[test]
    fn a_mapping_whose_private_size_is_not_shown_is_kept() {
        let smaps = "5000-9000 r-xp 00000000 fe:00 1 /opt/forgehand/bin/forgehand\nRss:  16 kB\n";
        assert_eq!(releasable(smaps, EXE), vec![]);
    }

    #[test]
    fn a_path_with_spaces_is_matched_whole() {
        let exe = "/home/me/my tools/forgehand";
        let smaps =
            mapping("5000-9000", "r-xp", exe, 16, 0) + &mapping("9000-a000", "r-xp", "/home/me/my", 4, 0);
        assert_eq!(
            releasable(&smaps, exe),
            vec![Releasable { start: 0x5000, len: 0x4000, resident_kib: 16 }]
        );
    }

    #[test]
    fn releasing_leaves_the_running_program_working() {
        // This test's own binary: whatever it drops comes back as the tests go on running.
        let released = release_start_up_pages();
        assert!(released > 0, "a test binary has resident code to release");
        // Trait objects call through vtables the dynamic linker relocated (RELRO): had
        // those pages been released, their pointers would be the file's, and this would crash.
        let shown: Vec<Box<dyn std::fmt::Display>> = vec![Box::new(released), Box::new("kib")];
        let text: Vec<String> = shown.iter().map(|item| item.to_string()).collect();
        assert_eq!(text, [released.to_string(), "kib".to_owned()]);
    }
}
