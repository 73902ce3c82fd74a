//! The checkpoint thread: copies the WAL back into the database file beside
//! the writer, and starts the write-back of what it copied.
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::writer::passive_checkpoint;
use crate::store::StoreError;

/// Copies the WAL back into the database file from its own thread and
/// connection. SQLite's automatic checkpoint runs inside a commit, so the
/// writer (and every webhook waiting on it) would stall for the copy and its
/// fsync; here it runs beside the writer, on the other core. It stops when
/// the store is dropped.
///
/// Under a storm the writer commits every few milliseconds, so a pass here
/// never reaches the WAL's end, and SQLite only rewinds the WAL after a
/// checkpoint that did. So once the WAL is long, the writer is asked to copy
/// the last few frames itself between two transactions
/// (`WriterHandle::catch_up_flag`). That final step also fsyncs the
/// database file, and SQLite skips that fsync in every pass that did not
/// reach the end: left alone, the page cache would hold everything copied
/// since the last rewind (hundreds of MiB) and the writer's fsync took
/// 420–440 ms with every webhook waiting. So each pass here starts the
/// write-back of what it copied (`sync_file_range`, which neither waits
/// nor commits the file system's journal: an `fdatasync` per pass made
/// every WAL commit wait behind it, commit p90 1.6 -> 14 ms), and before
/// asking the writer this thread waits for the file to be clean. The
/// writer's part is then a few frames and a nearly clean file (5-9 ms).
pub(super) fn spawn_checkpointer(
    path: &Path,
    writer: Weak<()>,
    catch_up: Arc<AtomicBool>,
) -> Result<(), StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch("PRAGMA busy_timeout = 10000;")?;
    let db_file = std::fs::File::open(path)?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while writer.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_EVERY);
                // (frames in the WAL, frames copied back); the write-back
                // of what was copied is started, not waited for.
                let pass = || -> Result<(i64, i64), StoreError> {
                    let started = std::time::Instant::now();
                    let done = passive_checkpoint(&conn)?;
                    start_write_back(&db_file);
                    tracing::trace!(
                        frames = done.0,
                        copied = done.1,
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "checkpoint pass"
                    );
                    Ok(done)
                };
                let result = pass().and_then(|mut done| {
                    if done.0 > WAL_REWIND_FRAMES {
                        // Copy what was written meanwhile, so the writer's own
                        // part stays short.
                        for _ in 0..4 {
                            if done.0 - done.1 <= CATCH_UP_FRAMES {
                                break;
                            }
                            done = pass()?;
                        }
                        db_file.sync_data()?;
                        catch_up.store(true, Ordering::Relaxed);
                    }
                    Ok(())
                });
                if let Err(e) = result {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; will retry");
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

/// Starts writing the file's dirty pages to disk without waiting for them.
/// Only a hint: a failure leaves them to the final `fdatasync`.
#[cfg(target_os = "linux")]
pub(super) fn start_write_back(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for as long as `file` is borrowed;
    // the call only reads its arguments.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "sync_file_range failed");
    }
}

/// Elsewhere the final `fdatasync` does all of it.
#[cfg(not(target_os = "linux"))]
pub(super) fn start_write_back(_file: &std::fs::File) {}

/// How often the WAL is copied back; under load it holds about this much work.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// WAL length (frames of one 1 KiB page) past which the writer is asked to
/// finish the checkpoint between two transactions, so the WAL rewinds: it
/// stays near 64 MiB, in the page cache, and its blocks are overwritten
/// rather than allocated anew.
pub(super) const WAL_REWIND_FRAMES: i64 = 64 * 1024;

/// At most this many frames are left for the writer to copy itself.
pub(super) const CATCH_UP_FRAMES: i64 = 2 * 1024;
