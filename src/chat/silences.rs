//! `/silences`: the silences holding now or later, as
//! `GET /api/v1/silences` shows them.

use super::silence::remaining;
use super::{escape, Session};
use crate::store::StoreError;

/// `/silences`: those holding now or later.
pub(super) async fn run(s: &Session) -> Result<String, StoreError> {
    let now = s.services.clock.now();
    let live = s.services.store.live_silences(now).await?;
    if live.is_empty() {
        return Ok("No silences.".into());
    }
    let mut out = String::from("🔕 <b>Silences</b>");
    for silence in live.iter().take(30) {
        let v = silence.view(now);
        out.push_str(&format!(
            "\n#{} <code>{}</code> {}",
            v.id,
            escape(&v.matchers.join(", ")),
            remaining(v.ends_at, now)
        ));
        if !v.comment.is_empty() {
            out.push_str(&format!(" · <i>{}</i>", escape(&v.comment)));
        }
        out.push_str(&format!(" · by {}", escape(&v.created_by)));
    }
    if live.len() > 30 {
        out.push_str(&format!(
            "\n<i>… and {} more on the web page</i>",
            live.len() - 30
        ));
    }
    Ok(out)
}
