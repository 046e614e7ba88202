use std::ffi::c_int;

use rusqlite::{Connection, OpenFlags};

use super::*;

/// Applies writes to an in-memory file, as the default VFS would to the real one.
fn apply(file: &mut Vec<u8>, offset: i64, bytes: &[u8]) {
    let at = usize::try_from(offset).unwrap();
    if file.len() < at + bytes.len() {
        file.resize(at + bytes.len(), 0);
    }
    file[at..at + bytes.len()].copy_from_slice(bytes);
}

#[test]
fn gathered_writes_reach_the_file_in_order_and_continuous_ones_in_one_write() {
    // Frames appended, one rewritten inside what was gathered, a header at the start.
    let writes: Vec<(i64, Vec<u8>)> = vec![
        (32, vec![1; 24]),
        (56, vec![2; 100]),
        (156, vec![3; 24]),
        (180, vec![4; 100]),
        (56, vec![9; 100]),
        (0, vec![7; 32]),
        (32, vec![8; 24]),
    ];
    let mut direct = Vec::new();
    for (offset, bytes) in &writes {
        apply(&mut direct, *offset, bytes);
    }

    let mut gathered = Gathered::default();
    let mut file = Vec::new();
    let mut calls = Vec::new();
    let mut write = |offset: i64, bytes: &[u8]| -> c_int {
        calls.push((offset, bytes.len()));
        apply(&mut file, offset, bytes);
        ffi::SQLITE_OK
    };
    for (offset, bytes) in &writes {
        assert_eq!(gathered.write(*offset, bytes, &mut write), ffi::SQLITE_OK);
    }
    assert_eq!(gathered.flush(&mut write), ffi::SQLITE_OK);

    assert_eq!(file, direct, "the file must end as if every write went through at once");
    // The four continuous writes in one call; each jump sends what was gathered first.
    assert_eq!(calls, vec![(32, 248), (56, 100), (0, 56)]);
}

#[test]
fn a_failed_write_is_reported_and_forgotten() {
    let mut gathered = Gathered::default();
    let mut failing = |_: i64, _: &[u8]| ffi::SQLITE_IOERR_WRITE;
    assert_eq!(gathered.write(0, &[1; 10], &mut failing), ffi::SQLITE_OK);
    assert_eq!(gathered.flush(&mut failing), ffi::SQLITE_IOERR_WRITE);
    let mut calls = 0;
    assert_eq!(
        gathered.flush(&mut |_, _| {
            calls += 1;
            ffi::SQLITE_OK
        }),
        ffi::SQLITE_OK
    );
    assert_eq!(calls, 0, "nothing is written again after a failure");
}

#[test]
fn writes_beyond_the_limit_are_sent_without_waiting_for_the_sync() {
    let mut gathered = Gathered::default();
    let mut sent = 0;
    let chunk = vec![0; GATHER_LIMIT / 4];
    for i in 0..4 {
        let offset = i64::try_from(i * chunk.len()).unwrap();
        gathered.write(offset, &chunk, &mut |_, bytes| {
            sent += bytes.len();
            ffi::SQLITE_OK
        });
    }
    assert_eq!(sent, GATHER_LIMIT);
}

/// Write system calls made by this thread so far (`/proc/thread-self/io`).
fn write_calls() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines().find_map(|line| line.strip_prefix("syscw: ")).unwrap().trim().parse().unwrap()
}

fn open_writer(path: &std::path::Path, vfs: Option<&CStr>) -> Connection {
    let conn = match vfs {
        Some(name) => {
            register().unwrap();
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), name).unwrap()
        }
        None => Connection::open(path).unwrap(),
    };
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_spill = OFF; \
         CREATE TABLE IF NOT EXISTS a (id INTEGER PRIMARY KEY, body TEXT NOT NULL); \
         CREATE INDEX IF NOT EXISTS a_body ON a (body);",
    )
    .unwrap();
    conn
}

/// Inserts `rows` rows of about 1 KiB in one transaction; the write calls it cost.
fn commit_rows(conn: &Connection, first: usize, rows: usize) -> u64 {
    let before = write_calls();
    let tx = conn.unchecked_transaction().unwrap();
    for i in first..first + rows {
        tx.execute(
            "INSERT INTO a (id, body) VALUES (?1, ?2)",
            rusqlite::params![i64::try_from(i).unwrap(), format!("{i:0>1000}")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    write_calls() - before
}

fn wal_size(db: &std::path::Path) -> u64 {
    std::fs::metadata(db.with_extension("db-wal")).unwrap().len()
}

/// The WAL's growth in frames of 4 KiB pages, and the write calls, of a commit of `rows`.
fn measured_commit(conn: &Connection, db: &std::path::Path, first: usize, rows: usize) -> (u64, u64) {
    let before = wal_size(db);
    let calls = commit_rows(conn, first, rows);
    let grown = wal_size(db) - before;
    assert_eq!(grown % 4120, 0, "the WAL grew by whole frames");
    (grown / 4120, calls)
}

#[test]
fn a_commit_reaches_the_wal_in_one_write_where_sqlite_alone_makes_two_per_page() {
    let dir = tempfile::tempdir().unwrap();
    let (plain_db, gathered_db) = (dir.path().join("plain.db"), dir.path().join("gathered.db"));
    let plain = open_writer(&plain_db, None);
    let gathered = open_writer(&gathered_db, Some(NAME));
    // The first commit also starts the WAL (its header, synced on its own).
    commit_rows(&plain, 0, 1);
    commit_rows(&gathered, 0, 1);

    let (plain_frames, plain_calls) = measured_commit(&plain, &plain_db, 1, 6);
    let (frames, calls) = measured_commit(&gathered, &gathered_db, 1, 6);

    assert!(frames >= 4 && frames * 4120 < WRITE_CHUNK as u64, "{frames} frames");
    assert_eq!(plain_frames, frames);
    assert_eq!(plain_calls, 2 * plain_frames, "SQLite alone writes a frame's header and page apart");
    assert_eq!(calls, 1, "the gathering VFS wrote {frames} frames in {calls} calls");
}

#[test]
fn a_commit_larger_than_one_write_of_the_default_vfs_is_written_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.db");
    let writer = open_writer(&path, Some(NAME));
    commit_rows(&writer, 0, 1);

    let (frames, calls) = measured_commit(&writer, &path, 1, 100);

    // Each call at most what the default VFS writes at once (longer ones failed as a full disk).
    assert!(frames * 4120 > 3 * WRITE_CHUNK as u64, "{frames} frames");
    assert_eq!(calls, (frames * 4120).div_ceil(WRITE_CHUNK as u64));
    let reader = Connection::open(&path).unwrap();
    let rows: i64 = reader.query_row("SELECT count(*) FROM a", [], |row| row.get(0)).unwrap();
    assert_eq!(rows, 101);
}

#[test]
fn every_commit_is_seen_by_other_connections_across_checkpoints_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let writer = open_writer(&path, Some(NAME));
    check_connection(&writer).unwrap();
    // Checkpoints (and WAL restarts) every few commits.
    writer.pragma_update(None, "wal_autocheckpoint", 8).unwrap();
    let reader = Connection::open(&path).unwrap();
    let count =
        |conn: &Connection| conn.query_row("SELECT count(*) FROM a", [], |row| row.get::<_, i64>(0)).unwrap();

    for round in 0..60 {
        commit_rows(&writer, round * 5, 5);
        assert_eq!(count(&reader), i64::try_from(round * 5 + 5).unwrap(), "round {round}");
    }
    drop(writer);
    let again = open_writer(&path, Some(NAME));
    assert_eq!(count(&again), 300);
    let check: String = again.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn a_connection_that_could_leave_writes_unsynced_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_writer(&dir.path().join("c.db"), Some(NAME));
    check_connection(&conn).unwrap();
    conn.execute_batch("PRAGMA synchronous = NORMAL").unwrap();
    let err = check_connection(&conn).unwrap_err();
    assert!(err.contains("synchronous = FULL"), "{err}");
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA cache_spill = ON").unwrap();
    assert!(check_connection(&conn).is_err());
}
