//! The contact book on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::params;

use crate::store::{to_micros, StoreError};

use super::SqliteStore;
impl SqliteStore {
    pub(super) async fn upsert_contacts(
        &self,
        contacts: &[crate::model::contacts::Contact],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let contacts = contacts.to_vec();
        self.write_with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO contacts (name, email, telegram, groups, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET email = excluded.email, telegram = excluded.telegram,
                 groups = excluded.groups, updated_at = excluded.updated_at",
            )?;
            for c in &contacts {
                let groups = serde_json::to_string(&c.groups)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                stmt.execute(params![c.name, c.email, c.telegram, groups, to_micros(now)])?;
            }
            Ok(())
        })
        .await
    }
}
