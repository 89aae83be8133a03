//! Team mode's end-to-end setup (issue 19): several daemons on one
//! PostgreSQL database and the simulated marketplace, members' requests,
//! and what the shared tables hold.

use std::time::{Duration, Instant};

use sqlx::{Connection as _, Row as _};
use tb_test_support::daemon::DaemonClient;
use tb_test_support::marketplace::{RegistryServer, SellerServer, SellerSpec, registry_doc};

pub const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
pub const TEAM_KEY: &str = "team-key-for-tests-0123456789abcdef";
/// What one purchase costs the team, USD micros.
pub const PRICE: u64 = 1_000_000;

/// A daemon of the team on the ledger at `ledger_url`, with a team
/// purchase budget of `budget` USD micros and `team` added to `[team]`.
pub fn team_config(registry: &RegistryServer, ledger_url: &str, budget: u64, team: &str) -> String {
    format!(
        "[provider]\nmode = \"auto\"\n[registry]\nurl = \"{}\"\nrefresh_secs = 1\n\
         [ledger]\nurl = \"{ledger_url}\"\n[log]\nformat = \"json\"\n\
         [purchase]\nsession_budget_usd_micros = {budget}\n\
         [team]\nenabled = true\n{team}\n",
        registry.url(),
    )
}

/// One seller of `gpt-4o` at [`PRICE`] a purchase, and a registry listing
/// it.
pub async fn market(spec: SellerSpec) -> (SellerServer, RegistryServer) {
    let seller = SellerServer::start(spec.models(["gpt-4o"]).price_usd_micros(PRICE))
        .await
        .unwrap();
    let registry = RegistryServer::start(registry_doc(&[&seller], Some(&seller.id())))
        .await
        .unwrap();
    (seller, registry)
}

/// A connection of the test's own to `db` (not through any relay).
pub async fn pg(db: &super::PgDatabase) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&db.url()).await.unwrap()
}

/// (spent, reserved) of the team's purchase budget.
pub async fn team_budget(db: &super::PgDatabase) -> (i64, i64) {
    let row = sqlx::query("SELECT spent_usd_micros, reserved_usd_micros FROM team_state")
        .fetch_one(&mut pg(db).await)
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// `(lock_key, holder, ms left)` of every purchase lease row.
pub async fn lease_rows(db: &super::PgDatabase) -> Vec<(String, String, i64)> {
    sqlx::query(
        "SELECT lock_key, holder, expires_at_ms - CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
         FROM team_locks",
    )
    .fetch_all(&mut pg(db).await)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Waits until `seller` has a purchase completion in hand (its answer
/// held back by the seller's latency); the one lease row then held.
pub async fn purchase_in_flight(
    seller: &SellerServer,
    db: &super::PgDatabase,
) -> (String, String, i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while seller.purchase_count() < 1 {
        assert!(Instant::now() < deadline, "the first daemon never bought");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut leases = lease_rows(db).await;
    assert_eq!(leases.len(), 1, "{leases:?}");
    leases.remove(0)
}

/// What one member request got back.
pub struct Answer {
    pub status: u16,
    /// `x-tokenbuddy-request-id`, when the daemon gave one.
    pub request_id: Option<String>,
    pub body: String,
}

/// One chat request through `client` with member key `key`; `Err` when
/// the daemon did not answer at all.
pub async fn send_as(client: &DaemonClient, key: &str) -> Result<Answer, String> {
    let auth = format!("Bearer {key}");
    let (parts, body) = client
        .try_request(
            http::Method::POST,
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            CHAT,
        )
        .await?;
    Ok(Answer {
        status: parts.status.as_u16(),
        request_id: parts
            .headers
            .get("x-tokenbuddy-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// One chat request through `client` with member key `key`; its status.
pub async fn post_as(client: &DaemonClient, key: &str) -> u16 {
    send_as(client, key)
        .await
        .unwrap_or_else(|e| panic!("the daemon did not answer: {e}"))
        .status
}
