//! Deciding who hears about an alert: routes of label matchers to channels.
//!
//! Later this folder also holds throttle windows, digests and silences; each
//! is a decision about an alert, none knows how a channel sends.

pub mod matcher;
pub mod scheduler;
pub mod silence;

use crate::alert::Labels;
use crate::config::{Config, GroupBy, RouteConfig};

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

    /// Channel names an alert with these labels goes to, each once, in
    /// route order, with the grouping of the first route that sent it there.
    pub fn channels_for(&self, labels: &Labels) -> Vec<(&str, &GroupBy)> {
        static TOGETHER: GroupBy = GroupBy::Together;
        if self.routes.is_empty() {
            return self
                .all_channels
                .iter()
                .map(|c| (c.as_str(), &TOGETHER))
                .collect();
        }
        let mut out: Vec<(&str, &GroupBy)> = Vec::new();
        for route in &self.routes {
            if matcher::matches_all(&route.matchers, labels) {
                for c in &route.channels {
                    if !out.iter().any(|(name, _)| *name == c.as_str()) {
                        out.push((c, &route.group_by));
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
