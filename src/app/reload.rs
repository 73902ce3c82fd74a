//! Reload: `POST /-/reload` and SIGHUP re-read the config while serving.
//!
//! A new config is checked and every channel built before anything
//! changes; a config with errors is refused with them and the running one
//! stays. Then the outbox workers of the old channels stop the way they do
//! at shutdown (sends in flight finish, claims go back to the queue), and
//! the new routes, channels, credentials and delivery settings take over.
//! Queued notifications live in the database and survive the swap; those
//! for a channel the new config no longer has stay queued (visible in
//! `/api/v1/notifications`) and go out if the channel comes back. The
//! listen address and the storage cannot change without a restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::Config;
use crate::auth::Access;
use crate::channels::{BuildError, Channel, ChannelContext};
use crate::clock::Clock;
use crate::config::ConfigErrors;
use crate::deliver::{Outbox, Sink};
use crate::live::Live;
use crate::model::contacts::ContactBook;
use crate::model::silence::SilenceBook;
use crate::route::planner::{ChannelTarget, Planner};
use crate::route::subscribers::SubscriberBook;
use crate::route::Router;
use crate::store::OutboxSignal;
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// Where a new config comes from: the file `serve` was started with (and
/// its command-line overrides). `Err` holds the errors, one per line.
pub type ConfigSource = Box<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// Why a config was not swapped in (or, at start, not built). Nothing
/// changed; [`ReloadError::reasons`] says why, one line each.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Started on the embedded defaults: there is no file to re-read.
    #[error(
        "alertrelay runs on its embedded defaults (no --config file): there is nothing to re-read"
    )]
    NoConfigFile,
    /// The file does not check out.
    #[error("{0}")]
    Config(ConfigErrors),
    /// It checks out, but asks for what only a restart can change, or
    /// would expose an HTTP surface without credentials.
    #[error("{}", .0.join("\n"))]
    Refused(Vec<String>),
    /// What it describes could not be built.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Build(Vec<BuildFailure>),
}

impl ReloadError {
    /// Every reason, one line each.
    pub fn reasons(&self) -> Vec<String> {
        self.to_string().lines().map(String::from).collect()
    }
}

/// One part of a config that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildFailure {
    /// The config's contacts could not be stored.
    #[error("cannot store the config's contacts: {0}")]
    StoreContacts(StoreError),
    /// The contact book could not be read back.
    #[error("cannot read the contact book: {0}")]
    ReadContacts(StoreError),
    /// A channel could not be built (a bad proxy, TLS setup, template).
    #[error("channel {name}: {error}")]
    Channel {
        /// The channel's name.
        name: String,
        /// Why.
        error: BuildError,
    },
}

/// What a config builds: channels and the planner that routes to them.
pub struct Built {
    /// Channels, ready to send.
    pub channels: Vec<Arc<Channel>>,
    /// Routes to those channels, minding the silences.
    pub planner: Planner,
}

/// Builds channels and planner from a config, storing its contacts.
pub async fn build(
    config: &Config,
    store: &Arc<dyn Store>,
    silences: &SilenceBook,
    subscribers: &SubscriberBook,
    clock: &Clock,
) -> Result<Built, ReloadError> {
    let one = |f: BuildFailure| ReloadError::Build(vec![f]);
    store
        .upsert_contacts(&config.contacts, clock.now())
        .await
        .map_err(|e| one(BuildFailure::StoreContacts(e)))?;
    let contacts = ContactBook::new(
        store
            .list_contacts()
            .await
            .map_err(|e| one(BuildFailure::ReadContacts(e)))?,
    );
    let ctx = ChannelContext {
        timezone: config.timezone,
        public_url: config.public_url.clone(),
        timeout: config.delivery.timeout,
        contacts,
    };
    let mut channels = Vec::new();
    let mut errors = Vec::new();
    for c in &config.channels {
        match c.build(&ctx) {
            Ok(ch) => channels.push(Arc::new(ch)),
            Err(error) => errors.push(BuildFailure::Channel {
                name: c.name.clone(),
                error,
            }),
        }
    }
    if !errors.is_empty() {
        return Err(ReloadError::Build(errors));
    }
    let targets = channels
        .iter()
        .map(|c| ChannelTarget {
            name: c.name().to_string(),
            destinations: c.destinations(),
            send_resolved: c.send_resolved(),
            subscribers: c.has_subscribers(),
            allow: c.allow_list().map(Arc::new),
        })
        .collect();
    let planner = Planner::new(
        Router::new(&config.routes, config.channel_names()),
        targets,
        silences.clone(),
        subscribers.clone(),
        clock.clone(),
        config.timezone,
    )
    .with_flapping(config.flapping);
    Ok(Built { channels, planner })
}

/// The running outbox workers and how to stop them.
struct Workers {
    stop: CancellationToken,
    handles: Vec<JoinHandle<()>>,
}

/// Everything a reload replaces, and the workers it restarts.
pub struct Reloader {
    source: Option<ConfigSource>,
    current: Mutex<Config>,
    workers: Mutex<Workers>,
    store: Arc<dyn Store>,
    clock: Clock,
    metrics: Arc<Metrics>,
    signal: OutboxSignal,
    silences: SilenceBook,
    subscribers: SubscriberBook,
    drain: Duration,
    /// Swapped by a reload.
    pub planner: Arc<Live<Planner>>,
    /// Credentials of `/webhook/*`.
    pub ingest_access: Arc<Live<Access>>,
    /// Credentials of `/api/v1`.
    pub ui_access: Arc<Live<Access>>,
    /// Channel names, for `/metrics`.
    pub channel_names: Arc<Live<Vec<String>>>,
}

/// The parts a [`Reloader`] starts from.
pub struct ReloaderParts {
    /// Where a new config comes from (`None`: embedded defaults, nothing to re-read).
    pub source: Option<ConfigSource>,
    /// The config running now.
    pub config: Config,
    /// What it built.
    pub built: Built,
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Clock,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Outbox wake-ups.
    pub signal: OutboxSignal,
    /// Silences.
    pub silences: SilenceBook,
    /// Chats registered with /start.
    pub subscribers: SubscriberBook,
    /// How long stopping workers waits for sends in flight.
    pub drain: Duration,
}

impl Reloader {
    /// A reloader for a config and what it built; workers not started yet.
    pub fn new(parts: ReloaderParts) -> (Self, Vec<Arc<Channel>>) {
        let names: Vec<String> = parts
            .built
            .channels
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let listen = parts.config.listen;
        let me = Self {
            source: parts.source,
            ingest_access: Arc::new(Live::new(Access::new(parts.config.ingest.clone(), listen))),
            ui_access: Arc::new(Live::new(Access::new(parts.config.ui.clone(), listen))),
            current: Mutex::new(parts.config),
            workers: Mutex::new(Workers {
                stop: CancellationToken::new(),
                handles: Vec::new(),
            }),
            store: parts.store,
            clock: parts.clock,
            metrics: parts.metrics,
            signal: parts.signal,
            silences: parts.silences,
            subscribers: parts.subscribers,
            drain: parts.drain,
            planner: Arc::new(Live::new(parts.built.planner)),
            channel_names: Arc::new(Live::new(names)),
        };
        (me, parts.built.channels)
    }

    fn outbox(&self, config: &Config) -> Outbox {
        Outbox::new(
            self.store.clone(),
            self.clock.clone(),
            config.delivery.clone(),
            self.metrics.clone(),
            self.signal.clone(),
        )
    }

    /// Starts the outbox workers of `channels` (at start).
    pub async fn start_workers(&self, channels: Vec<Arc<Channel>>) {
        let outbox = self.outbox(&*self.current.lock().await);
        let mut workers = self.workers.lock().await;
        workers.handles = self.spawn(&outbox, channels, workers.stop.clone());
    }

    /// The outbox workers and the chat-command pollers of `channels`; all
    /// stop on `stop`.
    fn spawn(
        &self,
        outbox: &Outbox,
        channels: Vec<Arc<Channel>>,
        stop: CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let services = crate::chat::Services {
            store: self.store.clone(),
            subscribers: self.subscribers.clone(),
            silences: self.silences.clone(),
            clock: self.clock.clone(),
            planner: self.planner.clone(),
        };
        let pollers: Vec<JoinHandle<()>> = channels
            .iter()
            .filter_map(|c| c.command_bot())
            .map(|bot| crate::chat::spawn_poller(bot, &services, stop.clone()))
            .collect();
        let sinks: Vec<Arc<dyn Sink>> = channels.into_iter().map(|c| c as Arc<dyn Sink>).collect();
        let mut handles = outbox.spawn(sinks, stop, self.drain);
        handles.extend(pollers);
        handles
    }

    /// Stops the outbox workers: sends in flight finish within the drain
    /// bound, the rest goes back to the queue (at shutdown and on reload).
    pub async fn stop_workers(&self) {
        let mut workers = self.workers.lock().await;
        workers.stop.cancel();
        for w in std::mem::take(&mut workers.handles) {
            let _ = w.await;
        }
        workers.stop = CancellationToken::new();
    }

    /// Re-reads the config and, if it checks out, swaps it in. Returns a
    /// one-line summary, or every reason it was refused (nothing changed).
    pub async fn reload(&self) -> Result<String, ReloadError> {
        let Some(source) = &self.source else {
            return Err(ReloadError::NoConfigFile);
        };
        let new = source().map_err(ReloadError::Config)?;
        let mut current = self.current.lock().await;
        let mut errors = Vec::new();
        if new.listen != current.listen {
            errors.push(format!(
                "listen: {} → {} needs a restart",
                current.listen, new.listen
            ));
        }
        if new.storage.redacted() != current.storage.redacted() {
            errors.push("storage: a different database needs a restart".into());
        }
        errors.extend(
            new.exposure_errors(new.listen)
                .iter()
                .map(ToString::to_string),
        );
        if !errors.is_empty() {
            return Err(ReloadError::Refused(errors));
        }
        let built = build(
            &new,
            &self.store,
            &self.silences,
            &self.subscribers,
            &self.clock,
        )
        .await?;
        // Checked and built: from here on the new config takes over.
        self.stop_workers().await;
        let names: Vec<String> = built
            .channels
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let summary = format!(
            "reloaded: {} channel(s), {} route(s)",
            names.len(),
            new.routes.len()
        );
        self.planner.set(built.planner);
        self.ingest_access
            .set(Access::new(new.ingest.clone(), new.listen));
        self.ui_access.set(Access::new(new.ui.clone(), new.listen));
        self.channel_names.set(names);
        let outbox = self.outbox(&new);
        *current = new;
        drop(current);
        {
            let mut workers = self.workers.lock().await;
            workers.handles = self.spawn(&outbox, built.channels, workers.stop.clone());
        }
        // What was queued meanwhile goes out now.
        self.signal.wake_all();
        tracing::info!("{summary}");
        Ok(summary)
    }
}
