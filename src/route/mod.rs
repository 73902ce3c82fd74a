//! Deciding who hears about an alert: routes of label matchers to channels.
//!
//! Later this folder also holds throttle windows, digests and silences; each
//! is a decision about an alert, none knows how a channel sends.

pub mod matcher;
pub mod scheduler;
pub mod silence;

use crate::alert::Labels;
use crate::config::{Config, GroupBy, RouteConfig};

/// Where an alert goes, and how, as its first matching route says.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// Channel name.
    pub channel: &'a str,
    /// How alerts that changed together are split into messages.
    pub group_by: &'a GroupBy,
    /// Remind this often while it stays firing and unacknowledged.
    pub repeat_interval: Option<std::time::Duration>,
    /// Hold the group's first message this long to gather more.
    pub group_wait: Option<std::time::Duration>,
    /// Which route (its place in the config), for group identity.
    pub route: usize,
    /// At most one firing message per alert per window.
    pub throttle: Option<std::time::Duration>,
}

/// Routes evaluated in order: first match wins unless `continue: true`.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<RouteConfig>,
    all_channels: Vec<String>,
}

impl Router {
    /// The router of a config. With no routes every alert goes to every channel.
    pub fn new(config: &Config) -> Self {
        Self {
            routes: config.routes.clone(),
            all_channels: config.channels.iter().map(|c| c.name.clone()).collect(),
        }
    }

    /// Whether any route throttles (else no received copy needs counting).
    pub fn throttles(&self) -> bool {
        self.routes.iter().any(|r| r.throttle.is_some())
    }

    /// Channel names an alert with these labels goes to, each once, in
    /// route order, with the grouping and reminder interval of the first
    /// route that sent it there.
    pub fn channels_for(&self, labels: &Labels) -> Vec<Destination<'_>> {
        static TOGETHER: GroupBy = GroupBy::Together;
        if self.routes.is_empty() {
            return self
                .all_channels
                .iter()
                .map(|c| Destination {
                    channel: c.as_str(),
                    group_by: &TOGETHER,
                    repeat_interval: None,
                    group_wait: None,
                    route: 0,
                    throttle: None,
                })
                .collect();
        }
        let mut out: Vec<Destination<'_>> = Vec::new();
        for (index, route) in self.routes.iter().enumerate() {
            if matcher::matches_all(&route.matchers, labels) {
                for c in &route.channels {
                    if !out.iter().any(|d| d.channel == c.as_str()) {
                        out.push(Destination {
                            channel: c,
                            group_by: &route.group_by,
                            repeat_interval: route.repeat_interval,
                            group_wait: route.group_wait,
                            route: index,
                            throttle: route.throttle,
                        });
                    }
                }
                if !route.continue_matching {
                    break;
                }
            }
        }
        out
    }
}
