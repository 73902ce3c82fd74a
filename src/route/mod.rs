//! Deciding who hears about an alert: routes of label matchers to channels.
//!
//! Beside the routes: silences, digests and the scheduler of what falls
//! due with time; each is a decision about an alert, none knows how a
//! channel sends.

pub mod planner;
pub mod scheduler;
pub mod subscribers;

use crate::config::{GroupBy, RouteConfig};
use crate::model::alert::Labels;
use crate::model::matcher;

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
    /// A digest route: no per-event message, one summary every period.
    pub digest: Option<std::time::Duration>,
}

/// A route with `digest:` and one of its channels: one summary of the
/// alerts it routes there every period.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestRoute {
    /// The route's place in the config.
    pub route: usize,
    /// Channel name.
    pub channel: String,
    /// How often.
    pub period: std::time::Duration,
    /// The route's matchers as written (`source="gcp"`), or `every alert`:
    /// what the digest covers, and its key in the database, so moving the
    /// route within the file keeps its schedule.
    pub scope: String,
    /// The route's matchers.
    pub matchers: Vec<matcher::Matcher>,
}

/// Routes evaluated in order: first match wins unless `continue: true`.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<RouteConfig>,
    all_channels: Vec<String>,
}

impl Router {
    /// The router of these routes over these channel names. With no routes
    /// every alert goes to every channel.
    pub fn new(routes: &[RouteConfig], channels: Vec<String>) -> Self {
        Self {
            routes: routes.to_vec(),
            all_channels: channels,
        }
    }

    /// Whether any route throttles (else no received copy needs counting).
    pub fn throttles(&self) -> bool {
        self.routes.iter().any(|r| r.throttle.is_some())
    }

    /// Every (digest route, channel) pair, in config order.
    pub fn digest_routes(&self) -> Vec<DigestRoute> {
        let mut out = Vec::new();
        for (index, route) in self.routes.iter().enumerate() {
            let Some(period) = route.digest else {
                continue;
            };
            let scope = if route.matchers.is_empty() {
                "every alert".to_string()
            } else {
                route
                    .matchers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            for c in &route.channels {
                out.push(DigestRoute {
                    route: index,
                    channel: c.clone(),
                    period,
                    scope: scope.clone(),
                    matchers: route.matchers.clone(),
                });
            }
        }
        out
    }

    /// Whether the alert with these labels is summed up by `digest` (its
    /// first route to that channel is that digest route).
    pub fn in_digest(&self, labels: &Labels, digest: &DigestRoute) -> bool {
        self.channels_for(labels)
            .iter()
            .any(|d| d.channel == digest.channel && d.route == digest.route && d.digest.is_some())
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
                    digest: None,
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
                            digest: route.digest,
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
