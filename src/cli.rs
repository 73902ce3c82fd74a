//! The command line: `serve`, `check-config`, `hash-password`, `send-test`, `render`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Config;
use crate::channels::ChannelContext;
use crate::clock::Clock;
use crate::deliver::Sink;
use crate::model::alert::{AlertStatus, Fingerprint, IncomingAlert, Labels, Source};
use crate::model::contacts::ContactBook;
use crate::model::notification::AlertGroup;
use crate::startup::Application;

/// alertrelay: from Alertmanager, Grafana, GCP and probes to the people who must hear.
#[derive(Debug, Parser)]
#[command(name = "alertrelay", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (embedded defaults without -c: 127.0.0.1:9099, SQLite alertrelay.db, no channels).
    Serve {
        /// Config file (YAML).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Listen address, overriding `listen`'s host.
        #[arg(short = 'H', long = "host")]
        host: Option<String>,
        /// Listen port, overriding `listen`'s port.
        #[arg(short = 'p', long = "port")]
        port: Option<u16>,
        /// Write logs to this file instead of stderr.
        #[arg(short = 'l', long = "log")]
        log: Option<PathBuf>,
    },
    /// Check a config file: exit 0 with a summary, or 1 with every error and its place.
    CheckConfig {
        /// Config file (YAML).
        file: PathBuf,
    },
    /// Read a password on stdin and print an argon2id hash for `ui.users`.
    HashPassword,
    /// Print what a channel would send for a sample alert (nothing is sent).
    Render {
        /// Channel name from the config.
        #[arg(long)]
        channel: String,
        /// Which sample: a firing or a resolved alert, or a digest.
        #[arg(long, value_enum, default_value = "firing")]
        sample: Sample,
        /// Config file (YAML).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Send a sample firing alert through one channel.
    SendTest {
        /// Channel name from the config.
        #[arg(long)]
        channel: String,
        /// Config file (YAML).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
}

/// The sample notifications of `render`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Sample {
    Firing,
    Resolved,
    /// A digest route's status summary.
    Digest,
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
                println!("{}", cfg.summary());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{} error(s)", errors.errors.len());
                ExitCode::FAILURE
            }
        },
        Command::HashPassword => hash_password(),
        Command::Serve {
            config,
            host,
            port,
            log,
        } => run_async(serve(config, host, port, log)),
        Command::SendTest { channel, config } => run_async(send_test(channel, config)),
        Command::Render {
            channel,
            sample,
            config,
        } => run_async(render(channel, sample, config)),
    }
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(config: Option<&PathBuf>) -> anyhow::Result<Config> {
    match config {
        Some(path) => {
            Config::load(path).map_err(|e| anyhow::anyhow!("the config does not check out:\n{e}"))
        }
        None => Ok(Config::default()),
    }
}

async fn serve(
    config: Option<PathBuf>,
    host: Option<String>,
    port: Option<u16>,
    log: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut cfg = load(config.as_ref())?;
    let host: Option<IpAddr> = match host {
        Some(h) if h == "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
        Some(h) => Some(
            h.trim_matches(|c| c == '[' || c == ']')
                .parse()
                .map_err(|_| anyhow::anyhow!("--host {h:?} is not an IP address"))?,
        ),
        None => None,
    };
    // The command line wins over the file, at start and on every reload.
    let overrides = move |cfg: &mut Config| {
        if let Some(ip) = host {
            cfg.listen = SocketAddr::new(ip, cfg.listen.port());
        }
        if let Some(p) = port {
            cfg.listen.set_port(p);
        }
    };
    overrides(&mut cfg);
    let source: Option<crate::app::reload::ConfigSource> = config.map(|path| {
        Box::new(move || {
            let mut cfg = Config::load(&path)?;
            overrides(&mut cfg);
            Ok(cfg)
        }) as crate::app::reload::ConfigSource
    });
    let _guard = crate::telemetry::init_logging(log.as_deref())?;
    let app = Application::build_with_source(cfg, Clock::system(), source).await?;
    app.run_until_stopped(shutdown_signal()).await
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn hash_password() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("error: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let password = input
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&input);
    if password.is_empty() {
        eprintln!("error: empty password on stdin");
        return ExitCode::FAILURE;
    }
    match crate::auth::hash_password(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The alert `send-test` sends.
pub fn sample_alert(clock: &Clock) -> IncomingAlert {
    let labels: Labels = [
        ("alertname", "AlertrelayTest"),
        ("severity", "info"),
        ("instance", "alertrelay.example:9099"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    IncomingAlert {
        fingerprint: Fingerprint::from_labels(&labels),
        status: AlertStatus::Firing,
        labels,
        annotations: [
            (
                "summary".to_string(),
                "Test notification from alertrelay".to_string(),
            ),
            (
                "description".to_string(),
                "If you can read this, the channel works.".to_string(),
            ),
        ]
        .into(),
        starts_at: clock.now(),
        ends_at: None,
        generator_url: None,
        source: Source::Alertmanager,
        ack: None,
    }
}

/// Builds one configured channel as `serve` would, with the config's
/// contacts (the stored book may hold more; `serve` reads that one).
fn build_channel(cfg: &Config, channel: &str) -> anyhow::Result<crate::channels::Channel> {
    let Some(cc) = cfg.channel(channel) else {
        let names: Vec<&str> = cfg.channels.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "no channel named {channel:?} (configured: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
    };
    let ctx = ChannelContext {
        timezone: cfg.timezone,
        public_url: cfg.public_url.clone(),
        timeout: cfg.delivery.timeout,
        contacts: ContactBook::new(cfg.contacts.clone()),
    };
    Ok(cc.build(&ctx)?)
}

async fn render(channel: String, sample: Sample, config: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = load(config.as_ref())?;
    let ch = build_channel(&cfg, &channel)?;
    let now = Clock::system().now();
    let group = match sample {
        Sample::Firing => crate::template::sample_group(AlertStatus::Firing, now),
        Sample::Resolved => crate::template::sample_group(AlertStatus::Resolved, now),
        Sample::Digest => crate::model::notification::AlertGroup::of_digest(
            crate::model::digest::sample_digest(now),
        ),
    };
    let text = ch
        .preview(&group)
        .map_err(|e| anyhow::anyhow!("cannot render: {e}"))?;
    // Written, not println!: `render | head` closes the pipe early, which
    // is no error of ours.
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn send_test(channel: String, config: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = load(config.as_ref())?;
    let ch = build_channel(&cfg, &channel)?;
    let group = AlertGroup {
        status: AlertStatus::Firing,
        alerts: vec![sample_alert(&Clock::system())],
        others_firing: 0,
        reminder: false,
        group_key: None,
        repeats: None,
        digest: None,
        flapping: None,
    };
    let destinations = ch.destinations();
    if destinations.is_empty() {
        anyhow::bail!("channel {channel} has no fixed destination (chat_ids is empty): send-test sends only to configured chats, not to chats registered with /start");
    }
    let mut failed = 0;
    for dest in destinations {
        match ch.send(&dest, &group, 0).await {
            Ok(()) => println!("{channel} → {dest}: sent"),
            Err(e) => {
                failed += 1;
                println!("{channel} → {dest}: FAILED: {e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} destination(s) failed");
    }
    Ok(())
}
