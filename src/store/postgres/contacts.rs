//! The contact book on PostgreSQL.

use sqlx::Postgres;

use super::PostgresStore;
impl PostgresStore {
    /// PostgreSQL's path; SQLite writes through its writer thread.
    pub(super) async fn upsert_contacts(
        &self,
        contacts: &[crate::model::contacts::Contact],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), crate::store::StoreError> {
        let mut tx = self.write.begin().await?;
        for c in contacts {
            let groups = serde_json::to_string(&c.groups)
                .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
            let mut qb = sqlx::QueryBuilder::<Postgres>::new(
                "INSERT INTO contacts (name, email, telegram, groups, updated_at) VALUES (",
            );
            qb.push_bind(c.name.clone())
                .push(", ")
                .push_bind(c.email.clone())
                .push(", ")
                .push_bind(c.telegram.clone());
            qb.push(", ")
                .push_bind(groups)
                .push(", ")
                .push_bind(crate::store::to_micros(now));
            qb.push(") ON CONFLICT (name) DO UPDATE SET email = excluded.email, telegram = excluded.telegram, groups = excluded.groups, updated_at = excluded.updated_at");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
