//! `routes:`: label matchers to channels, and how a route groups, waits,
//! reminds, throttles or digests.

use std::time::Duration;

use super::{yaml, Walker};
use crate::model::matcher::Matcher;

/// One routing rule.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// All must hold.
    pub matchers: Vec<Matcher>,
    /// Channel names to notify.
    pub channels: Vec<String>,
    /// Keep evaluating later routes after this one matched.
    pub continue_matching: bool,
    /// Labels whose values split a webhook's changed alerts into messages
    /// (empty: one message per channel and state; `...`: one per alert).
    pub group_by: GroupBy,
    /// Remind this often while an alert stays firing and unacknowledged.
    pub repeat_interval: Option<Duration>,
    /// Hold a group's first notification this long so alerts of the same
    /// group from later webhooks join it in one message.
    pub group_wait: Option<Duration>,
    /// At most one firing message per alert and channel per window.
    pub throttle: Option<Duration>,
    /// No per-event messages: one status summary per host every period.
    pub digest: Option<Duration>,
}

/// How a route splits the alerts that changed together into messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GroupBy {
    /// All of them in one message (per channel and state).
    #[default]
    Together,
    /// One message per distinct value of these labels.
    Labels(Vec<String>),
    /// `group_by: ['...']`: one message per alert.
    EachAlert,
}

impl GroupBy {
    /// The key an alert's labels give under this grouping.
    pub fn key(&self, labels: &crate::model::alert::Labels) -> Vec<Option<String>> {
        match self {
            GroupBy::Together => Vec::new(),
            GroupBy::Labels(names) => names.iter().map(|n| labels.get(n).cloned()).collect(),
            GroupBy::EachAlert => labels
                .iter()
                .flat_map(|(k, v)| [Some(k.clone()), Some(v.clone())])
                .collect(),
        }
    }
}

/// One `routes[i]` entry; `known` are the channel names a route may name.
pub fn route_from_yaml(
    w: &mut Walker,
    node: &yaml::Node,
    path: &str,
    known: &[String],
) -> Option<RouteConfig> {
    let mut m = w.map(node, path)?;
    let mut matchers = Vec::new();
    if let Some(list) = m.take("match") {
        for (j, item) in w
            .list(list, &format!("{path}.match"))
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let mpath = format!("{path}.match[{j}]");
            if let Some(s) = w.string(item, &mpath) {
                match Matcher::parse(&s) {
                    Ok(mt) => matchers.push(mt),
                    Err(e) => w.error(item.line, &mpath, format!("bad matcher `{s}`: {e}")),
                }
            }
        }
    }
    let mut channels = Vec::new();
    match m.take("channels") {
        Some(list) => {
            let items = w.list(list, &format!("{path}.channels"));
            let items = match items {
                Some(i) => i,
                None => &[],
            };
            if items.is_empty() && matches!(list.value, yaml::Value::Seq(_) | yaml::Value::Null) {
                w.error(
                    list.line,
                    &format!("{path}.channels"),
                    "a route needs at least one channel".into(),
                );
            }
            for (j, item) in items.iter().enumerate() {
                let cpath = format!("{path}.channels[{j}]");
                if let Some(s) = w.string(item, &cpath) {
                    if known.contains(&s) {
                        channels.push(s);
                    } else {
                        w.error(
                            item.line,
                            &cpath,
                            format!(
                                "no channel is named `{s}` (channels: {})",
                                if known.is_empty() {
                                    "none".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        );
                    }
                }
            }
        }
        None => w.error(node.line, path, "`channels` is required".into()),
    }
    let continue_matching = match m.take("continue") {
        Some(b) => w.bool(b, &format!("{path}.continue")).unwrap_or(false),
        None => false,
    };
    let group_by = match m.take("group_by") {
        Some(list) => group_by_from_yaml(w, list, &format!("{path}.group_by")),
        None => GroupBy::Together,
    };
    let repeat_interval = match m.take("repeat_interval") {
        Some(v) => {
            let rpath = format!("{path}.repeat_interval");
            match w.duration(v, &rpath) {
                Some(d) if d < Duration::from_secs(60) => {
                    w.error(
                        v.line,
                        &rpath,
                        "must be at least 1m (a reminder more often than that is a flood)".into(),
                    );
                    None
                }
                d => d,
            }
        }
        None => None,
    };
    let group_wait = match m.take("group_wait") {
        Some(v) => {
            let gpath = format!("{path}.group_wait");
            match w.duration(v, &gpath) {
                Some(d) if d.is_zero() || d > Duration::from_secs(3600) => {
                    w.error(
                        v.line,
                        &gpath,
                        "must be more than 0s and at most 1h (it holds back the first message of a group)".into(),
                    );
                    None
                }
                d => d,
            }
        }
        None => None,
    };
    let throttle = match m.take("throttle") {
        Some(v) => {
            let tpath = format!("{path}.throttle");
            match w.duration(v, &tpath) {
                Some(d) if d < Duration::from_secs(10) || d > Duration::from_secs(86_400) => {
                    w.error(v.line, &tpath, "must be from 10s to 24h".into());
                    None
                }
                d => d,
            }
        }
        None => None,
    };
    let digest = match m.take("digest") {
        Some(v) => {
            let dpath = format!("{path}.digest");
            match w.duration(v, &dpath) {
                Some(d) if d < Duration::from_secs(60) || d > Duration::from_secs(7 * 86_400) => {
                    w.error(v.line, &dpath, "must be from 1m to 7d".into());
                    None
                }
                Some(d) => {
                    // A digest replaces per-event messages, so the keys that
                    // shape those messages would silently do nothing.
                    let per_event = [
                        ("group_by", group_by != GroupBy::Together),
                        ("group_wait", group_wait.is_some()),
                        ("repeat_interval", repeat_interval.is_some()),
                        ("throttle", throttle.is_some()),
                    ];
                    for (key, set) in per_event {
                        if set {
                            w.error(
                                v.line,
                                &dpath,
                                format!("`{key}` shapes per-event messages, which a digest route does not send; remove one of them"),
                            );
                        }
                    }
                    Some(d)
                }
                None => None,
            }
        }
        None => None,
    };
    m.finish(w);
    Some(RouteConfig {
        matchers,
        channels,
        continue_matching,
        group_by,
        repeat_interval,
        group_wait,
        throttle,
        digest,
    })
}

fn group_by_from_yaml(w: &mut Walker, node: &yaml::Node, path: &str) -> GroupBy {
    let mut names: Vec<String> = Vec::new();
    for (j, item) in w.list(node, path).unwrap_or_default().iter().enumerate() {
        let ipath = format!("{path}[{j}]");
        let Some(name) = w.string(item, &ipath) else {
            continue;
        };
        let valid = name == "..."
            || (!name.is_empty()
                && name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            w.error(
                item.line,
                &ipath,
                format!(
                    "`{name}` is not a label name (letters, digits, _; or `...` for every label)"
                ),
            );
        } else if names.contains(&name) {
            w.error(item.line, &ipath, format!("`{name}` is listed twice"));
        } else {
            names.push(name);
        }
    }
    if names.iter().any(|n| n == "...") {
        if names.len() > 1 {
            w.error(
                node.line,
                path,
                "`...` already groups by every label; list nothing else with it".into(),
            );
        }
        return GroupBy::EachAlert;
    }
    if names.is_empty() {
        GroupBy::Together
    } else {
        GroupBy::Labels(names)
    }
}
