//! `flapping:`: the settings of flapping detection (the rule itself is
//! [`crate::model::flapping`]).

use std::time::Duration;

use super::{yaml, Walker};
use crate::model::flapping::FlappingConfig;

/// `flapping: off` (or `false`), or `{ changes: 6, window: 10m }` with
/// either key left to its default. A rejected value keeps the default.
pub fn flapping_from_yaml(w: &mut Walker, node: &yaml::Node) -> Option<FlappingConfig> {
    let mut cfg = FlappingConfig::default();
    match &node.value {
        yaml::Value::Bool(false) => return None,
        yaml::Value::Str(s) if s == "off" => return None,
        yaml::Value::Map(_) => {}
        _ => {
            w.error(
                node.line,
                "flapping",
                "expected `off` or a mapping like { changes: 6, window: 10m }".into(),
            );
            return Some(cfg);
        }
    }
    let mut m = w.map(node, "flapping")?;
    if let Some(v) = m.take("changes") {
        if let Some(x) = w.integer(v, "flapping.changes", 3, 100) {
            cfg.changes = x as u32;
        }
    }
    if let Some(v) = m.take("window") {
        match w.duration(v, "flapping.window") {
            Some(d) if d < Duration::from_secs(60) || d > Duration::from_secs(86_400) => {
                w.error(v.line, "flapping.window", "must be from 1m to 24h".into());
            }
            Some(d) => cfg.window = d,
            None => {}
        }
    }
    m.finish(w);
    Some(cfg)
}
