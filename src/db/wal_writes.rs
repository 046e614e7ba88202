//! The intake writer's write-ahead log, handed to the file once per commit.
//!
//! SQLite writes each WAL frame with two `pwrite` calls, its 24-byte header and then the
//! page. A batch of deliveries changes about twenty pages, so a commit was some forty
//! system calls on the writer's thread, each about a microsecond of CPU on this kind of
//! machine: a fifth of the writer's time per delivery, and on two cores that time is
//! taken from the HTTP side (docs/benchmarks.md, issue 20). This VFS, used by the writer's
//! connection alone, gathers a WAL's contiguous writes in memory and hands them to the
//! file in one `pwrite` just before the sync that makes the commit durable.
//!
//! It changes when bytes reach the file, never their order or what is on disk at a sync:
//! everything written before a read, a size, a truncation, a sync, a file control or a
//! close reaches the file first, and a write that does not continue the gathered ones
//! sends them first. Other connections read a frame only once the WAL index lists it,
//! which SQLite updates after the commit's sync. That holds because the connection runs at
//! `synchronous = FULL` (every commit syncs the WAL) with `cache_spill = OFF` (no frames
//! are written before the commit, so none could outlive a rollback in memory):
//! [`check_connection`] refuses a connection without both. Other files (the database, its
//! shared memory) are the default VFS's own, untouched.

use std::ffi::{CStr, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::Connection;
use rusqlite::ffi;

/// The VFS's registered name.
pub(super) const NAME: &CStr = c"forgehand-wal";

/// Most bytes gathered before they are written anyway (a batch of 128 deliveries writes
/// about 2 MiB of frames).
const GATHER_LIMIT: usize = 8 << 20;

/// Most room kept between commits; a larger batch's room is given back after it.
const ROOM_KEPT: usize = 2 << 20;

/// Registers the VFS (once per process) on top of SQLite's default one.
pub(super) fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED.get_or_init(register_once).clone()
}

/// Refuses a connection on which a gathered write could be seen before its sync (see the
/// module's documentation).
pub(super) fn check_connection(conn: &Connection) -> Result<(), String> {
    let pragma = |name: &str| conn.pragma_query_value(None, name, |row| row.get::<_, i64>(0));
    match (pragma("synchronous"), pragma("cache_spill")) {
        (Ok(2 | 3), Ok(0)) => Ok(()),
        other => Err(format!(
            "the intake writer's connection needs synchronous = FULL and cache_spill = OFF \
             to gather its WAL writes; it has {other:?}"
        )),
    }
}

/// The default VFS, which every call ends in.
static BASE: OnceLock<Base> = OnceLock::new();

struct Base(*mut ffi::sqlite3_vfs);

// SAFETY: SQLite's VFS objects are meant to be shared between threads; the default VFS
// lives as long as the process.
unsafe impl Send for Base {}
unsafe impl Sync for Base {}

fn register_once() -> Result<(), String> {
    // SAFETY: `sqlite3_vfs_find` initialises SQLite and returns the default VFS, which is
    // never freed. The copy keeps its functions and `pAppData`: the default VFS's own
    // methods other than `xOpen` read nothing of their `sqlite3_vfs` but `mxPathname`,
    // which the copy keeps too. The copy is leaked: SQLite keeps a pointer to it.
    unsafe {
        let base = ffi::sqlite3_vfs_find(ptr::null());
        if base.is_null() {
            return Err("SQLite has no default VFS".into());
        }
        let _ = BASE.set(Base(base));
        let mut vfs = ptr::read(base);
        vfs.zName = NAME.as_ptr();
        vfs.pNext = ptr::null_mut();
        vfs.szOsFile = c_int::try_from(HEADER).map_err(|e| e.to_string())? + (*base).szOsFile;
        vfs.xOpen = Some(open);
        match ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0) {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(format!("SQLite refused the {NAME:?} VFS (code {rc})")),
        }
    }
}

/// A WAL file: SQLite's file object, the gathered writes, then the default VFS's file.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    gathered: *mut Gathered,
}

/// Where the default VFS's file object starts inside a [`WalFile`]'s allocation.
const HEADER: usize = size_of::<WalFile>().next_multiple_of(16);

fn base_vfs() -> *mut ffi::sqlite3_vfs {
    BASE.get().map_or(ptr::null_mut(), |base| base.0)
}

/// # Safety
/// `file` is an allocation of the VFS's `szOsFile` bytes that SQLite hands to `xOpen`.
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: `szOsFile` is `HEADER` plus the default VFS's size (`register_once`).
    unsafe { file.cast::<u8>().add(HEADER).cast() }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base_vfs();
    // SAFETY: `base` is the default VFS (set before this VFS was registered); `file` has
    // room for its file object, at the start or after the header.
    unsafe {
        let Some(base_open) = (*base).xOpen else { return ffi::SQLITE_CANTOPEN };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return base_open(base, name, file, flags, out_flags);
        }
        let wal = file.cast::<WalFile>();
        (*wal).base.pMethods = ptr::null();
        let rc = base_open(base, name, inner(file), flags, out_flags);
        // An opened file object (methods set) is closed through ours, even when it failed.
        if !(*inner(file)).pMethods.is_null() {
            (*wal).gathered = Box::into_raw(Box::default());
            (*wal).base.pMethods = &WAL_METHODS;
        }
        rc
    }
}

/// Writes that continue each other, not yet in the file.
#[derive(Default)]
struct Gathered {
    offset: i64,
    bytes: Vec<u8>,
}

impl Gathered {
    /// Gathers `data`, written at `offset`; sends what was gathered to `write` first when
    /// `data` does not continue it, and everything when the limit is reached.
    fn write(&mut self, offset: i64, data: &[u8], write: &mut dyn FnMut(i64, &[u8]) -> c_int) -> c_int {
        if !self.bytes.is_empty() && Some(offset) != self.end() {
            let rc = self.flush(write);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if self.bytes.is_empty() {
            self.offset = offset;
        }
        self.bytes.extend_from_slice(data);
        if self.bytes.len() >= GATHER_LIMIT {
            return self.flush(write);
        }
        ffi::SQLITE_OK
    }

    fn end(&self) -> Option<i64> {
        i64::try_from(self.bytes.len()).ok().and_then(|len| self.offset.checked_add(len))
    }

    /// Sends what was gathered to `write`; forgets it either way (a failed write fails the
    /// commit, whose frames are then never read).
    fn flush(&mut self, write: &mut dyn FnMut(i64, &[u8]) -> c_int) -> c_int {
        if self.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let rc = write(self.offset, &self.bytes);
        self.bytes.clear();
        self.bytes.shrink_to(ROOM_KEPT);
        rc
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    // Version 1: SQLite asks a WAL file for neither shared memory nor memory maps.
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The default VFS's methods of a WAL file this VFS opened.
///
/// # Safety
/// `file` is a [`WalFile`] that `open` set up.
unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: the default VFS's methods are static and were set by its `xOpen`.
    unsafe { &*(*inner(file)).pMethods }
}

/// Sends the file's gathered writes to the default VFS's file.
///
/// # Safety
/// `file` is a [`WalFile`] that `open` set up.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the caller's; `gathered` lives until `wal_close`.
    unsafe {
        let gathered = &mut *(*file.cast::<WalFile>()).gathered;
        gathered.flush(&mut |offset, bytes| write_through(file, offset, bytes))
    }
}

/// Most bytes the default VFS writes in one call: it keeps the low 17 bits of a length
/// (`seekAndWriteFd`) and reports a longer write as a full disk.
const WRITE_CHUNK: usize = 124 << 10;

/// Writes `bytes` at `offset` through the default VFS, in calls it accepts.
///
/// # Safety
/// `file` is a [`WalFile`] that `open` set up.
unsafe fn write_through(file: *mut ffi::sqlite3_file, offset: i64, bytes: &[u8]) -> c_int {
    // SAFETY: the caller's; each chunk outlives its call.
    unsafe {
        let Some(write) = methods(file).xWrite else { return ffi::SQLITE_IOERR_WRITE };
        let mut at = offset;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            let len = c_int::try_from(chunk.len()).unwrap_or(c_int::MAX);
            let rc = write(inner(file), chunk.as_ptr().cast(), len, at);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            at += i64::from(len);
        }
        ffi::SQLITE_OK
    }
}

/// Flushes, then runs `then` on the default VFS's file and methods.
///
/// # Safety
/// `file` is a [`WalFile`] that `open` set up.
unsafe fn flushed(
    file: *mut ffi::sqlite3_file,
    then: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> Option<c_int>,
) -> c_int {
    // SAFETY: the caller's.
    unsafe {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        then(inner(file), methods(file)).unwrap_or(ffi::SQLITE_MISUSE)
    }
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once; `gathered` was boxed by `open`.
    unsafe {
        let flushed = flush(file);
        let wal = file.cast::<WalFile>();
        drop(Box::from_raw((*wal).gathered));
        (*wal).gathered = ptr::null_mut();
        let closed = methods(file).xClose.map_or(ffi::SQLITE_OK, |close| close(inner(file)));
        if flushed != ffi::SQLITE_OK { flushed } else { closed }
    }
}

unsafe extern "C" fn wal_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite's arguments, passed on.
    unsafe { flushed(file, |inner, m| m.xRead.map(|read| read(inner, buf, amount, offset))) }
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let Ok(len) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
    // SAFETY: SQLite hands `amount` readable bytes at `buf`; `gathered` lives until close.
    unsafe {
        let data = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        let gathered = &mut *(*file.cast::<WalFile>()).gathered;
        gathered.write(offset, data, &mut |at, bytes| write_through(file, at, bytes))
    }
}

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: SQLite's arguments, passed on.
    unsafe { flushed(file, |inner, m| m.xTruncate.map(|truncate| truncate(inner, size))) }
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: SQLite's arguments, passed on.
    unsafe { flushed(file, |inner, m| m.xSync.map(|sync| sync(inner, flags))) }
}

unsafe extern "C" fn wal_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: SQLite's arguments, passed on.
    unsafe { flushed(file, |inner, m| m.xFileSize.map(|file_size| file_size(inner, size))) }
}

unsafe extern "C" fn wal_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: SQLite's arguments, passed on.
    unsafe { methods(file).xLock.map_or(ffi::SQLITE_MISUSE, |lock| lock(inner(file), level)) }
}

unsafe extern "C" fn wal_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: SQLite's arguments, passed on.
    unsafe { methods(file).xUnlock.map_or(ffi::SQLITE_MISUSE, |unlock| unlock(inner(file), level)) }
}

unsafe extern "C" fn wal_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: SQLite's arguments, passed on.
    unsafe { methods(file).xCheckReservedLock.map_or(ffi::SQLITE_MISUSE, |check| check(inner(file), out)) }
}

unsafe extern "C" fn wal_file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: SQLite's arguments, passed on.
    unsafe { flushed(file, |inner, m| m.xFileControl.map(|control| control(inner, op, arg))) }
}

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite's argument, passed on.
    unsafe { methods(file).xSectorSize.map_or(4096, |sector_size| sector_size(inner(file))) }
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite's argument, passed on.
    unsafe { methods(file).xDeviceCharacteristics.map_or(0, |characteristics| characteristics(inner(file))) }
}

#[cfg(test)]
mod tests;
