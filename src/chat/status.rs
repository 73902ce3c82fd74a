//! `/status`: the state of things now, by host: each host with alerts
//! firing and their names, the hosts a silence mutes listed apart.

use std::collections::BTreeMap;

use super::{escape, Session};
use crate::alert::AlertStatus;
use crate::route::scheduler::as_incoming;
use crate::store::{AlertFilter, StoreError};

/// Most firing alerts looked at (the web page has the rest).
const MAX_ALERTS: u32 = 500;
/// Most hosts listed per state.
const MAX_HOSTS: usize = 30;

/// The summary.
pub(super) async fn run(s: &Session) -> Result<String, StoreError> {
    let filter = AlertFilter {
        status: Some(AlertStatus::Firing),
        ..AlertFilter::default()
    };
    let page = s
        .services
        .store
        .list_alerts(&filter, None, MAX_ALERTS)
        .await?;
    if page.items.is_empty() {
        return Ok("✅ All clear: nothing is firing.".into());
    }
    let now = s.services.clock.now();
    let mut firing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut muted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in &page.items {
        let labels = as_incoming(a).match_labels();
        let host = a
            .labels
            .get("instance")
            .cloned()
            .unwrap_or_else(|| "(no instance)".into());
        let name = a
            .labels
            .get("alertname")
            .cloned()
            .unwrap_or_else(|| "?".into());
        let book = if s.services.silences.mutes(&labels, now) {
            &mut muted
        } else {
            &mut firing
        };
        let names = book.entry(host).or_default();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut out = format!(
        "📊 <b>Status</b>: {} host(s) firing, {} muted",
        firing.len(),
        muted.len()
    );
    for (icon, title, hosts) in [("🔴", "Firing", &firing), ("🔕", "Muted", &muted)] {
        if hosts.is_empty() {
            continue;
        }
        out.push_str(&format!("\n\n<b>{title}</b>"));
        for (host, names) in hosts.iter().take(MAX_HOSTS) {
            out.push_str(&format!(
                "\n{icon} <code>{}</code>: {}",
                escape(host),
                escape(&names.join(", "))
            ));
        }
        if hosts.len() > MAX_HOSTS {
            out.push_str(&format!("\n<i>… and {} more</i>", hosts.len() - MAX_HOSTS));
        }
    }
    if page.next_cursor.is_some() {
        out.push_str(&format!(
            "\n<i>(the first {MAX_ALERTS} firing alerts; the web page has them all)</i>"
        ));
    }
    Ok(out)
}
