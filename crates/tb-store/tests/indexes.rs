//! The ledger's indexes are part of its cost: every index on `calls` is one
//! more B-tree insert per recorded call. These tests pin the ones chosen on
//! purpose (migration 0015) and check that the queries they exist for still
//! use them.

#![allow(clippy::expect_used)]

mod common;

use common::Fixture;
use sqlx::{Connection, Row};
use tb_store::LedgerTarget;

/// The member filter of `GET /v1/calls?member=` and the dashboard (series.rs's
/// `filter_sql`), newest first.
const MEMBER_FILTER: &str = "SELECT seq FROM calls WHERE 1 = 1 AND member = $1 \
     ORDER BY started_at_ms DESC, id DESC LIMIT 50";

#[tokio::test]
async fn sqlite_member_index_holds_member_calls_only_and_serves_the_filter() {
    let fixture = Fixture::sqlite().await;
    let LedgerTarget::Sqlite(path) = &fixture.target else {
        unreachable!("a SQLite fixture");
    };
    let url = format!("sqlite://{}", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let sql: String =
        sqlx::query("SELECT sql FROM sqlite_master WHERE name = 'calls_member_started'")
            .fetch_one(&mut conn)
            .await
            .expect("the index exists")
            .get(0);
    assert!(sql.ends_with("WHERE member IS NOT NULL"), "{sql}");
    let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {MEMBER_FILTER}"))
        .bind("ana")
        .fetch_all(&mut conn)
        .await
        .expect("explain")
        .iter()
        .map(|row| row.get::<String, _>(3))
        .collect();
    assert!(
        plan.iter()
            .any(|step| step.contains("USING INDEX calls_member_started")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn postgres_member_index_holds_member_calls_only_and_serves_the_filter() {
    let fixture = Fixture::postgres().await;
    let LedgerTarget::Postgres {
        schema: Some(schema),
        ..
    } = &fixture.target
    else {
        unreachable!("a PostgreSQL fixture in its own schema");
    };
    let mut conn = sqlx::PgConnection::connect(common::POSTGRES_URL)
        .await
        .expect("connect");
    let def: String = sqlx::query(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'calls_member_started'",
    )
    .bind(schema)
    .fetch_one(&mut conn)
    .await
    .expect("the index exists")
    .get(0);
    assert!(def.ends_with("WHERE (member IS NOT NULL)"), "{def}");
    // An empty table would be scanned whatever the indexes; forbid that to
    // see which index the planner can use.
    sqlx::raw_sql(&format!(
        "SET search_path TO \"{schema}\"; SET enable_seqscan = off"
    ))
    .execute(&mut conn)
    .await
    .expect("session settings");
    let plan: Vec<String> = sqlx::query(&format!("EXPLAIN {MEMBER_FILTER}"))
        .bind("ana")
        .fetch_all(&mut conn)
        .await
        .expect("explain")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    assert!(
        plan.iter()
            .any(|line| line.contains("calls_member_started")),
        "{plan:?}"
    );
}
