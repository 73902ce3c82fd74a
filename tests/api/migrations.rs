//! A database made by an earlier release keeps its alerts, events and
//! queued notifications when a newer alertrelay opens it.

use alertrelay::model::alert::{AlertStatus, Fingerprint, IncomingAlert, Source};
use alertrelay::model::notification::AlertGroup;
use alertrelay::store::AlertFilter;

use crate::both_dbs;
use crate::helpers::{fresh_storage, Db, TestApp};

/// Applies only the first migration, as release 0001 left the database.
async fn migrate_to_first_release(db: Db, url: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (folder, file) = match db {
        Db::Sqlite => ("migrations/sqlite", "0001_init.sql"),
        Db::Postgres => ("migrations/postgres", "0001_init.sql"),
    };
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(folder)
            .join(file),
        dir.path().join(file),
    )
    .expect("copy the first migration");
    let migrator = sqlx::migrate::Migrator::new(dir.path())
        .await
        .expect("migrator");
    let group = AlertGroup {
        status: AlertStatus::Firing,
        alerts: vec![IncomingAlert {
            fingerprint: Fingerprint::new("00000000000000aa"),
            status: AlertStatus::Firing,
            labels: [("alertname".to_string(), "OldDisk".to_string())].into(),
            annotations: Default::default(),
            starts_at: "2026-11-01T00:00:00Z".parse().expect("time"),
            ends_at: None,
            generator_url: None,
            source: Source::Alertmanager,
            ack: None,
        }],
        others_firing: 0,
        reminder: false,
        group_key: None,
        repeats: None,
        digest: None,
        flapping: None,
    };
    let payload = serde_json::to_string(&group).expect("json");
    let rows = [
        "INSERT INTO alerts (fingerprint, status, alertname, source, starts_at, first_seen, last_seen, labels, annotations)
         VALUES ('00000000000000aa', 'firing', 'OldDisk', 'alertmanager', 1, 1, 1, '{\"alertname\":\"OldDisk\"}', '{}')"
            .to_string(),
        "INSERT INTO events (fingerprint, alertname, status, at) VALUES ('00000000000000aa', 'OldDisk', 'firing', 1)"
            .to_string(),
        format!(
            "INSERT INTO notifications (channel, destination, status, state, attempts, created_at, next_attempt_at, last_error, payload)
             VALUES ('oncall', '42', 'firing', 'failed', 3, 1, 1, 'HTTP 502', '{}')",
            payload.replace('\'', "''")
        ),
    ];
    match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
                .await
                .expect("sqlite");
            migrator.run(&pool).await.expect("first migration");
            for sql in &rows {
                sqlx::query(sql).execute(&pool).await.expect("old row");
            }
            pool.close().await;
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            migrator.run(&pool).await.expect("first migration");
            for sql in &rows {
                sqlx::query(sql).execute(&pool).await.expect("old row");
            }
            pool.close().await;
        }
    }
}

async fn a_database_of_the_first_release_is_upgraded_with_its_data(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, schema) = fresh_storage(db, &dir).await;
    migrate_to_first_release(db, &url).await;

    let app = TestApp::spawn_with_storage(dir, url, schema, "").await;
    let alert = app
        .store
        .get_alert("00000000000000aa")
        .await
        .expect("read")
        .expect("the old alert is still there");
    assert_eq!(alert.labels["alertname"], "OldDisk");
    let events = app
        .store
        .list_events(&AlertFilter::default(), Some("00000000000000aa"), None, 10)
        .await
        .expect("events");
    assert_eq!(
        events.items.len(),
        1,
        "the old event still belongs to its alert"
    );
    assert_eq!(events.items[0].alertname, "OldDisk");
    let notes = app
        .store
        .list_notifications(None, None, None, 10)
        .await
        .expect("notifications");
    assert_eq!(notes.items.len(), 1);
    assert_eq!(notes.items[0].last_error.as_deref(), Some("HTTP 502"));
    assert_eq!(
        notes.items[0].group.alerts[0].labels["alertname"],
        "OldDisk"
    );

    // New alerts keep going in beside the old ones.
    app.post_ok(&crate::helpers::am_payload(vec![crate::helpers::am_alert(
        "NewDisk", "db2:9100", "firing",
    )]))
    .await;
    assert_eq!(app.alerts().await.len(), 2);
    assert_eq!(app.events().await.len(), 2);
}
both_dbs!(a_database_of_the_first_release_is_upgraded_with_its_data);
