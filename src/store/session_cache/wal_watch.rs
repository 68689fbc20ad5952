//! Seeing any commit to a SQLite database, from any process, without a query.
//!
//! In WAL mode SQLite keeps a shared index in the `-shm` file beside the database. Its header
//! (the first 48 bytes, written twice in a row: bytes 0..48 and 48..96) changes at every commit,
//! and SQLite itself reads it to learn whether the database changed. Reading the same 96 bytes
//! costs one `pread`, far less than the session query it saves. The two copies differ only
//! while a writer is between them; the lookup then simply goes to the database.
//! Format: <https://www.sqlite.org/walformat.html>, "The WAL-Index Header".

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};

use super::own_commits::OwnCommits;

const HEADER: usize = 48;
/// Byte of the header that is non-zero once SQLite has initialised the index.
const IS_INIT: usize = 12;

/// One snapshot of the WAL index header.
pub(crate) type WalHeader = [u8; HEADER];

/// `iChange`: moves by one at each commit (native byte order, as the whole index).
pub(crate) fn change_counter(header: &WalHeader) -> u32 {
    native_u32(header, 8)
}

/// `mxFrame`: the frames in the WAL after the last commit; 0 after a restart.
pub(crate) fn frame_count(header: &WalHeader) -> u32 {
    native_u32(header, 16)
}

/// `aSalt`: both salts of the WAL file; a restart adds one to the first and draws the second.
pub(crate) fn salts(header: &WalHeader) -> &[u8] {
    &header[32..40]
}

/// The first salt, which SQLite keeps big-endian.
pub(crate) fn salt1(header: &WalHeader) -> u32 {
    u32::from_be_bytes([header[32], header[33], header[34], header[35]])
}

fn native_u32(header: &WalHeader, at: usize) -> u32 {
    u32::from_ne_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
}

pub(crate) struct WalWatch {
    shm: File,
    /// A connection held open for the watch's lifetime. When the last connection to a WAL
    /// database closes, SQLite removes the `-shm` file and the next one creates a new one;
    /// this one keeps the file we read the live one. Never used, hence the lock is never taken.
    _holder: Mutex<SqliteConnection>,
    own: OwnCommits,
}

impl WalWatch {
    /// Opens the watch for the database `options` names (already in WAL mode).
    pub(crate) async fn open(options: &SqliteConnectOptions) -> anyhow::Result<Self> {
        let mut holder = SqliteConnection::connect_with(options)
            .await
            .context("opening the connection that keeps the WAL index")?;
        // The index is mapped at the first read, not at connect.
        sqlx::query("SELECT COUNT(*) FROM sqlite_schema")
            .execute(&mut holder)
            .await
            .context("reading the schema")?;
        let mut shm_path = options.get_filename().as_os_str().to_owned();
        shm_path.push("-shm");
        let shm = open_read_only(Path::new(&shm_path))?;
        let watch = Self {
            shm,
            _holder: Mutex::new(holder),
            own: OwnCommits::default(),
        };
        watch
            .header()
            .context("the WAL index header could not be read")?;
        Ok(watch)
    }

    /// The commits of this process's connections (`follow_commits_of`).
    pub(crate) fn own(&self) -> &OwnCommits {
        &self.own
    }

    /// The current header, or `None` while it is being written (or cannot be read).
    pub(crate) fn header(&self) -> Option<WalHeader> {
        let mut both = [0u8; 2 * HEADER];
        read_at(&self.shm, &mut both).ok()?;
        let (first, second) = both.split_at(HEADER);
        if first != second || first[IS_INIT] == 0 {
            return None;
        }
        first.try_into().ok()
    }
}

fn open_read_only(path: &Path) -> anyhow::Result<File> {
    File::open(path).with_context(|| format!("opening {}", path.display()))
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, 0)
}

#[cfg(not(unix))]
fn read_at(_file: &File, _buf: &mut [u8]) -> std::io::Result<()> {
    // Without positioned reads the header cannot be checked cheaply: never trust the cache.
    Err(std::io::ErrorKind::Unsupported.into())
}
