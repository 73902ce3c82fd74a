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

use crate::auth::Access;
use crate::channels::{Channel, ChannelContext};
use crate::clock::Clock;
use crate::config::Config;
use crate::contacts::ContactBook;
use crate::deliver::{ChannelTarget, Outbox, OutboxSignal, Planner};
use crate::ingest::{self, IngestState};
use crate::route::scheduler::Scheduler;
use crate::route::silence::SilenceBook;
use crate::route::Router;
use crate::store::writer::IngestWriter;
use crate::store::{self, Store};
use crate::telemetry::Metrics;
use crate::web::{self, WebState};

/// How long shutdown waits for sends in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A built, bound, not yet running alertrelay.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: axum::Router,
    store: Arc<dyn Store>,
    outbox: Outbox,
    channels: Vec<Arc<Channel>>,
    writer_task: JoinHandle<()>,
    scheduler: Scheduler,
    drain: Duration,
}

impl Application {
    /// Opens storage, builds channels and binds the listener. Any failure
    /// stops here, before anything is served: nothing half-starts.
    pub async fn build(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let errors = config.exposure_errors(config.listen);
        if !errors.is_empty() {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::bail!("{}", text.join("\n"));
        }
        let store = store::open(&config.storage)
            .await
            .with_context(|| format!("cannot open storage {}", config.storage.redacted()))?;
        store
            .upsert_contacts(&config.contacts, clock.now())
            .await
            .context("cannot store the config's contacts")?;
        let contacts = ContactBook::new(
            store
                .list_contacts()
                .await
                .context("cannot read the contact book")?,
        );
        let ctx = ChannelContext {
            timezone: config.timezone,
            public_url: config.public_url.clone(),
            timeout: config.delivery.timeout,
            contacts,
        };
        let mut channels = Vec::new();
        for c in &config.channels {
            channels.push(Arc::new(c.build(&ctx)?));
        }
        let metrics = Arc::new(Metrics::new());
        let names: Vec<String> = channels.iter().map(|c| c.name().to_string()).collect();
        let signal = OutboxSignal::new(&names);
        let targets = channels
            .iter()
            .map(|c| ChannelTarget {
                name: c.name().to_string(),
                destinations: c.destinations(),
                send_resolved: c.send_resolved(),
            })
            .collect();
        let silences = SilenceBook::new(
            store
                .live_silences(clock.now())
                .await
                .context("cannot read the silences")?,
        );
        let planner = Arc::new(Planner::new(
            Router::new(&config),
            targets,
            silences.clone(),
            clock.clone(),
        ));
        let scheduler = Scheduler::new(
            store.clone(),
            planner.clone(),
            silences.clone(),
            clock.clone(),
            signal.clone(),
        );
        let (writer, writer_task) =
            IngestWriter::spawn(store.clone(), planner, clock.clone(), signal.clone());
        let outbox = Outbox::new(
            store.clone(),
            clock.clone(),
            config.delivery.clone(),
            metrics.clone(),
            signal.clone(),
        );

        let ingest_state = IngestState {
            writer,
            access: Arc::new(Access::new(config.ingest.clone(), config.listen)),
            max_body_bytes: config.max_body_bytes,
            metrics: metrics.clone(),
        };
        let web_state = WebState {
            store: store.clone(),
            access: Arc::new(Access::new(config.ui.clone(), config.listen)),
            metrics,
            channels: Arc::new(names),
            clock,
            signal,
            silences,
        };
        let router = axum::Router::new()
            .merge(ingest::routes(ingest_state))
            .merge(web::routes(web_state))
            .layer(TraceLayer::new_for_http());
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        Ok(Self {
            listener,
            address,
            router,
            store,
            outbox,
            channels,
            writer_task,
            scheduler,
            drain: DRAIN_TIMEOUT,
        })
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
            outbox,
            channels,
            writer_task,
            scheduler,
            drain,
        } = self;
        let shutdown = CancellationToken::new();
        let workers = outbox.spawn(channels, shutdown.clone(), drain);
        let scheduler = scheduler.spawn(shutdown.clone());
        tracing::info!(%address, "alertrelay listening");
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await;
        tracing::info!("shutting down: HTTP closed, draining deliveries");
        shutdown.cancel();
        for w in workers {
            let _ = w.await;
        }
        let _ = scheduler.await;
        // The router (and with it the last writer handle) is gone: the writer finishes its queue and stops.
        let _ = writer_task.await;
        tracing::info!("stopped");
        served.context("HTTP server failed")
    }
}
