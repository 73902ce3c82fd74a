//! `/status`: the digest now. For each digest route that sends to this
//! channel, the digest of its current period so far; on a channel without
//! one, the digest of every alert routed to it, over the last hour. The
//! same digest, laid out the same way, as the scheduler sends.

use super::Session;
use crate::route::scheduler::{collect_digest, DigestScope};
use crate::store::StoreError;

/// The period `/status` counts incidents over on a channel with no digest
/// route.
const RECENT: chrono::Duration = chrono::Duration::hours(1);

/// The digests, as Telegram HTML.
pub(super) async fn run(s: &Session) -> Result<String, StoreError> {
    let planner = s.services.planner.get();
    let tz = planner.timezone();
    let now = s.services.clock.now();
    let store = &*s.services.store;
    let routes: Vec<_> = planner
        .digest_routes()
        .into_iter()
        .filter(|r| r.channel == s.channel)
        .collect();
    let mut out = Vec::new();
    if routes.is_empty() {
        let name = format!("everything routed to {}", s.channel);
        let digest = collect_digest(
            store,
            &s.services.silences,
            DigestScope {
                name: &name,
                matchers: &[],
                covers: &|labels| planner.reaches(labels, &s.channel),
            },
            now - RECENT,
            now,
        )
        .await?;
        out.push(crate::channels::telegram::digest_html(&digest, tz));
    } else {
        let schedules = store.digest_schedules().await?;
        for r in &routes {
            let since = schedules
                .iter()
                .find(|d| d.channel == r.channel && d.scope == r.scope)
                .map_or(now - RECENT, |d| d.period_start);
            let digest = collect_digest(
                store,
                &s.services.silences,
                DigestScope {
                    name: &r.scope,
                    matchers: &r.matchers,
                    covers: &|labels| planner.in_digest(labels, r),
                },
                since,
                now,
            )
            .await?;
            out.push(crate::channels::telegram::digest_html(&digest, tz));
        }
    }
    Ok(out.join("\n\n"))
}
