//! Building and running the service: the one place that wires storage,
//! ingest, routing, delivery and the HTTP surfaces together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::app::reload::{self, ConfigSource, Reloader, ReloaderParts};
use crate::app::Config;
use crate::channels::Channel;
use crate::clock::Clock;
use crate::deliver::Sink;
use crate::ingest::{self, IngestState};
use crate::model::silence::SilenceBook;
use crate::route::scheduler::Scheduler;
use crate::route::subscribers::SubscriberBook;
use crate::store::writer::IngestWriter;
use crate::store::OutboxSignal;
use crate::store::{self, NotificationState, Store, StoreError};
use crate::telemetry::Metrics;
use crate::web::{self, WebState};
use chrono::{DateTime, Utc};

/// How long shutdown waits for sends in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A built, bound, not yet running alertrelay.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: axum::Router,
    store: Arc<dyn Store>,
    reloader: Arc<Reloader>,
    channels: Vec<Arc<Channel>>,
    writer_task: JoinHandle<()>,
    scheduler: Scheduler,
    idle: IdleProbe,
}

/// Tells whether this process has finished the work it was given: no
/// outbox entry claimed and not yet recorded, no entry due and unclaimed,
/// and a scheduler pass for every time up to the one asked about. Tests
/// wait on it instead of sleeping a fixed time.
#[derive(Clone)]
pub struct IdleProbe {
    signal: OutboxSignal,
    store: Arc<dyn Store>,
    clock: Clock,
}

impl IdleProbe {
    /// The service's time now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Whether everything due up to `since` has been handled and nothing
    /// is being sent.
    pub async fn idle_since(&self, since: DateTime<Utc>) -> Result<bool, StoreError> {
        if !self.signal.idle_since(since) {
            return Ok(false);
        }
        let pending = self
            .store
            .list_notifications(Some(NotificationState::Pending), None, None, 1000)
            .await?;
        let now = self.clock.now();
        Ok(pending.items.iter().all(|n| n.next_attempt_at > now))
    }
}

impl Application {
    /// Opens storage, builds channels and binds the listener. Any failure
    /// stops here, before anything is served: nothing half-starts. Without
    /// a config source, `/-/reload` and SIGHUP have nothing to re-read.
    pub async fn build(config: Config, clock: Clock) -> anyhow::Result<Self> {
        Self::build_with_source(config, clock, None).await
    }

    /// As [`Application::build`], re-reading `source` on reload.
    pub async fn build_with_source(
        config: Config,
        clock: Clock,
        source: Option<ConfigSource>,
    ) -> anyhow::Result<Self> {
        let errors = config.exposure_errors(config.listen);
        if !errors.is_empty() {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::bail!("{}", text.join("\n"));
        }
        let store = store::open(&config.storage)
            .await
            .with_context(|| format!("cannot open storage {}", config.storage.redacted()))?;
        let silences = SilenceBook::new(
            store
                .live_silences(clock.now())
                .await
                .context("cannot read the silences")?,
        );
        let subscribers = SubscriberBook::new(
            store
                .list_chats()
                .await
                .context("cannot read the registered chats")?,
        );
        let built = reload::build(&config, &store, &silences, &subscribers, &clock)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let metrics = Arc::new(Metrics::new());
        let names: Vec<String> = built
            .channels
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let signal = OutboxSignal::new(&names);
        let listen = config.listen;
        let max_body_bytes = config.max_body_bytes;
        let (reloader, channels) = Reloader::new(ReloaderParts {
            source,
            config,
            built,
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            signal: signal.clone(),
            silences: silences.clone(),
            subscribers: subscribers.clone(),
            drain: DRAIN_TIMEOUT,
        });
        let reloader = Arc::new(reloader);
        let scheduler = Scheduler::new(
            store.clone(),
            reloader.planner.clone(),
            silences.clone(),
            subscribers,
            clock.clone(),
            signal.clone(),
        );
        // Digest schedules exist before the first request, so the first
        // period counts from the start; one that ended while alertrelay
        // was stopped is summed up now.
        if let Err(e) = scheduler.send_digests(clock.now()).await {
            tracing::error!(error = %e, "cannot schedule the digests; retrying");
        }
        let (writer, writer_task) = IngestWriter::spawn(
            store.clone(),
            reloader.planner.clone(),
            clock.clone(),
            signal.clone(),
        );

        let ingest_state = IngestState {
            writer,
            access: reloader.ingest_access.clone(),
            max_body_bytes,
            metrics: metrics.clone(),
        };
        let web_state = WebState {
            store: store.clone(),
            access: reloader.ui_access.clone(),
            metrics,
            channels: reloader.channel_names.clone(),
            clock: clock.clone(),
            signal: signal.clone(),
            silences,
            reloader: reloader.clone(),
        };
        let idle = IdleProbe {
            signal,
            store: store.clone(),
            clock,
        };
        let router = axum::Router::new()
            .merge(ingest::routes(ingest_state))
            .merge(web::routes(web_state))
            .layer(TraceLayer::new_for_http());
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let address = listener.local_addr()?;
        Ok(Self {
            listener,
            address,
            router,
            store,
            reloader,
            channels,
            writer_task,
            scheduler,
            idle,
        })
    }

    /// A probe of whether this process is idle, for tests.
    pub fn idle_probe(&self) -> IdleProbe {
        self.idle.clone()
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The storage, for tests and tools that inspect it.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Serves until `stop` completes, then shuts down in order: stop
    /// accepting requests and finish the ones in progress (their alerts get
    /// committed), then let deliveries in flight finish within the drain
    /// bound, returning the rest to the queue.
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            address,
            router,
            store: _,
            reloader,
            channels,
            writer_task,
            scheduler,
            idle: _,
        } = self;
        let shutdown = CancellationToken::new();
        reloader.start_workers(channels).await;
        let scheduler = scheduler.spawn(shutdown.clone());
        let hangups = spawn_sighup_reload(reloader.clone(), shutdown.clone());
        tracing::info!(%address, "alertrelay listening");
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await;
        tracing::info!("shutting down: HTTP closed, draining deliveries");
        shutdown.cancel();
        let _ = hangups.await;
        reloader.stop_workers().await;
        let _ = scheduler.await;
        // The router (and with it the last writer handle) is gone: the writer finishes its queue and stops.
        let _ = writer_task.await;
        tracing::info!("stopped");
        served.context("HTTP server failed")
    }
}

/// SIGHUP re-reads the config, as `POST /-/reload` does; the outcome goes
/// to the log.
fn spawn_sighup_reload(reloader: Arc<Reloader>, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut hup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: re-reading the config");
                        if let Err(e) = reloader.reload().await {
                            tracing::error!(errors = %e.reasons().join("; "), "reload refused; the running config stays");
                        }
                    }
                    _ = shutdown.cancelled() => return,
                }
            }
        }
        #[cfg(not(unix))]
        shutdown.cancelled().await;
    })
}
