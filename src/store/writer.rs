//! Group commit: concurrent webhooks share one transaction.
//!
//! Each webhook hands its alerts to the single [`IngestWriter`] task and
//! waits. The task takes everything queued, writes it in one transaction,
//! and only then answers every waiting webhook. Under load many requests
//! share one commit (one fsync), so durability costs little; when idle a
//! request commits alone, at once.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{IngestRequest, NotificationPlanner, Store, StoreError};
use crate::clock::Clock;
use crate::store::OutboxSignal;

/// Most requests folded into one transaction.
const MAX_BATCH: usize = 512;

struct Job {
    request: IngestRequest,
    reply: oneshot::Sender<Result<usize, Arc<StoreError>>>,
}

/// Handle to the writer task. Cloning shares the one task.
#[derive(Clone)]
pub struct IngestWriter {
    jobs: mpsc::Sender<Job>,
}

impl IngestWriter {
    /// Starts the writer. It stops when every handle is dropped, after
    /// finishing what was queued.
    pub fn spawn(
        store: Arc<dyn Store>,
        planner: Arc<dyn NotificationPlanner>,
        clock: Clock,
        signal: OutboxSignal,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        // Several batches in flight only where the database overlaps them
        // (PostgreSQL); conflicting ones serialise on its per-fingerprint locks.
        let lanes = store.ingest_parallelism().max(1);
        let handle = tokio::spawn(async move {
            let mut lanes_running = tokio::task::JoinSet::new();
            for _ in 0..lanes {
                lanes_running.spawn(run(
                    rx.clone(),
                    store.clone(),
                    planner.clone(),
                    clock.clone(),
                    signal.clone(),
                ));
            }
            while lanes_running.join_next().await.is_some() {}
        });
        (Self { jobs: tx }, handle)
    }

    /// Stores one request's alerts; returns once they are committed, with
    /// the number of notifications they caused.
    pub async fn submit(&self, request: IngestRequest) -> Result<usize, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.jobs
            .send(Job { request, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        match wait.await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(StoreError::Shared(e)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

async fn run(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    store: Arc<dyn Store>,
    planner: Arc<dyn NotificationPlanner>,
    clock: Clock,
    signal: OutboxSignal,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            // One lane takes everything queued; the others wait their turn.
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { break };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let (requests, replies): (Vec<IngestRequest>, Vec<_>) =
            batch.drain(..).map(|j| (j.request, j.reply)).unzip();
        let requests: Arc<[IngestRequest]> = requests.into();
        match store
            .ingest(requests.clone(), planner.clone(), clock.now())
            .await
        {
            Ok(counts) => {
                if counts.iter().any(|&n| n > 0) {
                    signal.wake_all();
                }
                for (reply, n) in replies.into_iter().zip(counts) {
                    let _ = reply.send(Ok(n));
                }
            }
            Err(e) if requests.len() > 1 => {
                // One bad request must not fail its neighbours: retry alone.
                tracing::warn!(error = %e, size = requests.len(), "group commit failed; committing requests one by one");
                for (request, reply) in requests.iter().zip(replies) {
                    let one: Arc<[IngestRequest]> = Arc::from(vec![request.clone()]);
                    let result = match store.ingest(one, planner.clone(), clock.now()).await {
                        Ok(counts) => {
                            let n = counts.first().copied().unwrap_or(0);
                            if n > 0 {
                                signal.wake_all();
                            }
                            Ok(n)
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "storing a webhook failed");
                            Err(Arc::new(e))
                        }
                    };
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "storing a webhook failed");
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
