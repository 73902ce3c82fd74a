//! `/alerts`: the alerts firing now, newest first, with the ids `/ack`
//! takes.

use super::{escape, Session};
use crate::model::alert::AlertStatus;
use crate::store::{AlertFilter, StoreError};

/// Most alerts listed.
const MAX_LISTED: u32 = 20;

/// The list.
pub(super) async fn run(s: &Session) -> Result<String, StoreError> {
    let filter = AlertFilter {
        status: Some(AlertStatus::Firing),
        ..AlertFilter::default()
    };
    let page = s
        .services
        .store
        .list_alerts(&filter, None, MAX_LISTED)
        .await?;
    if page.items.is_empty() {
        return Ok("✅ Nothing is firing.".into());
    }
    let mut out = String::from("🔥 <b>Firing now</b>");
    for a in &page.items {
        let name = a.labels.get("alertname").map(String::as_str).unwrap_or("?");
        out.push_str(&format!("\n• <b>{}</b>", escape(name)));
        if let Some(sev) = a.labels.get("severity") {
            out.push_str(&format!(" · {}", escape(sev)));
        }
        if let Some(i) = a.labels.get("instance") {
            out.push_str(&format!(" · <code>{}</code>", escape(i)));
        }
        out.push_str(&format!(
            " · id <code>{}</code>",
            escape(a.fingerprint.as_str())
        ));
        if a.ack.is_some() {
            out.push_str(" · acked");
        }
    }
    if page.next_cursor.is_some() {
        out.push_str(&format!(
            "\n<i>… the first {MAX_LISTED} shown; the web page has them all</i>"
        ));
    }
    Ok(out)
}
