//! The SQLite writer thread: every write of the process, group-committed.
//!
//! Webhooks, outbox claims and delivery results all queue here. The thread
//! takes everything queued, runs each job inside its own savepoint (a failing
//! job rolls back alone), commits once, and only then answers each caller.
//! One commit — one fsync — covers everything that arrived while the last
//! one was on its way to disk, so durability costs little under load, and
//! there is never more than one writer for SQLite to serialise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Most jobs folded into one transaction.
const MAX_JOBS: usize = 1024;

trait Job: Send {
    /// Runs inside the group transaction and keeps its result.
    fn run(&mut self, conn: &rusqlite::Connection);
    /// Answers the caller once the transaction committed (or failed).
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &rusqlite::Connection) {
        let Some(f) = self.f.take() else { return };
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            self.result = Some(Err(e.into()));
            return;
        }
        let result = f(conn);
        let end = if result.is_ok() {
            conn.execute_batch("RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        self.result = Some(match (result, end) {
            (Ok(v), Ok(())) => Ok(v),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e.into()),
        });
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let me = *self;
        let result = match commit {
            Ok(()) => me
                .result
                .unwrap_or_else(|| Err(StoreError::Unavailable("write job did not run".into()))),
            Err(e) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
        };
        let _ = me.reply.send(result);
    }
}

/// Handle to the writer thread; the thread stops when every handle is gone.
pub(super) struct WriterHandle {
    jobs: mpsc::Sender<Box<dyn Job>>,
    alive: Weak<()>,
    catch_up: Arc<AtomicBool>,
}

/// A group transaction taking this long is logged (at debug) with where
/// the time went, to find the tail of webhook latency.
const SLOW_TRANSACTION: std::time::Duration = std::time::Duration::from_millis(10);

impl WriterHandle {
    /// Starts the thread that owns `conn`.
    /// Starts the writer thread. `transaction_ended` is told, on that thread
    /// and before the next transaction begins, whether each one committed.
    pub(super) fn spawn(
        conn: rusqlite::Connection,
        transaction_ended: TransactionEnded,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(8192);
        let token = Arc::new(());
        let alive = Arc::downgrade(&token);
        let catch_up = Arc::new(AtomicBool::new(false));
        let asked = catch_up.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let _token = token;
                run(conn, rx, &asked, &transaction_ended);
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self {
            jobs: tx,
            alive,
            catch_up,
        })
    }

    /// Where the checkpoint thread asks the writer to finish a checkpoint
    /// between two transactions. The checkpoint thread copies the WAL back
    /// while the writer goes on, so under load it never quite catches up,
    /// and SQLite rewinds the WAL only once every frame is copied. Left
    /// alone the WAL grows without bound (1.5 GiB after 500 000 alerts of
    /// storm, and every page lookup searches all of it: new alerts fell from
    /// 23k/s to 3.7k/s). The writer copying the last frames itself, with
    /// nothing else writing, lets the next transaction start the WAL from
    /// the beginning. It holds up every webhook for as long as it takes,
    /// which is short only because the checkpoint thread has already copied
    /// and flushed nearly everything (see `spawn_checkpointer`).
    pub(super) fn catch_up_flag(&self) -> Arc<AtomicBool> {
        self.catch_up.clone()
    }

    /// Alive while the writer thread runs (the checkpointer watches it).
    pub(super) fn alive(&self) -> Weak<()> {
        self.alive.clone()
    }

    /// Runs `f` in the next group transaction; answers after the commit.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, wait) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(TypedJob {
            f: Some(f),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (frames in the WAL, frames copied back).
pub(super) fn passive_checkpoint(conn: &rusqlite::Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// Called with whether a group transaction committed.
pub(super) type TransactionEnded = Box<dyn Fn(bool) + Send>;

fn run(
    conn: rusqlite::Connection,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    catch_up: &AtomicBool,
    transaction_ended: &TransactionEnded,
) {
    let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_JOBS);
    loop {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        // Set by the checkpoint thread: finish its checkpoint before the next
        // transaction (see `catch_up_flag`).
        if catch_up.swap(false, Ordering::Relaxed) {
            let started = std::time::Instant::now();
            // Busy when the checkpoint thread is at it: it asks again.
            match passive_checkpoint(&conn) {
                Ok((frames, copied)) => tracing::debug!(
                    frames,
                    copied,
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "writer-side checkpoint"
                ),
                Err(e) => tracing::debug!(error = %e, "writer-side checkpoint skipped"),
            }
        }
        jobs.push(first);
        while jobs.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = e.to_string();
            tracing::error!(error = %e, "SQLite writer cannot begin a transaction");
            for job in jobs.drain(..) {
                job.finish(Err(e.clone()));
            }
            continue;
        }
        let began = std::time::Instant::now();
        for job in jobs.iter_mut() {
            job.run(&conn);
        }
        let ran = began.elapsed();
        let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        let took = began.elapsed();
        if took >= SLOW_TRANSACTION {
            tracing::debug!(
                jobs = jobs.len(),
                run_ms = ran.as_secs_f64() * 1e3,
                commit_ms = (took - ran).as_secs_f64() * 1e3,
                "slow group transaction"
            );
        }
        if let Err(e) = &commit {
            tracing::error!(error = %e, "SQLite commit failed");
            let _ = conn.execute_batch("ROLLBACK");
        }
        transaction_ended(commit.is_ok());
        for job in jobs.drain(..) {
            job.finish(commit.clone());
        }
    }
}
