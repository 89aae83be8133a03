//! Team mode for operators, end to end: the team's shared purchase budget
//! in `status` (`/v1/status` and the CLI text) and `doctor`, and `team
//! budget show|reset` starting a new budget period while a purchase in
//! flight keeps its reservation — after which the daemon buys again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::team::*;
use common::*;
use tb_test_support::daemon::Daemon;
use tb_test_support::marketplace::SellerSpec;

async fn sql(db: &PgDatabase, statement: &str) {
    sqlx::query(statement)
        .execute(&mut pg(db).await)
        .await
        .unwrap();
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_team_budget_and_a_reset_starts_a_new_period() {
    let db = PgDatabase::create().await;
    // Each token answers one call; then the seller says it ran dry.
    let (seller, registry) = market(SellerSpec::new("s-alpha").insufficient_after(1)).await;
    // A budget of exactly one purchase.
    let config = team_config(&registry, &db.url(), PRICE, "");
    let daemon = Daemon::start(bin(), &config, &[("TB_TEAM_KEY", TEAM_KEY)])
        .await
        .unwrap();
    let ana = member_key(&daemon, "ana", &["--budget-usd", "100"]).await;
    member_key(&daemon, "bo", &[]).await;
    assert_eq!(post_as(&daemon.client(), &ana).await, 200);
    assert_eq!(seller.purchase_count(), 1);
    // The token ran dry and the budget allows no second purchase.
    assert_ne!(post_as(&daemon.client(), &ana).await, 200);
    assert_eq!(seller.purchase_count(), 1);
    assert_eq!(team_budget(&db).await, (PRICE as i64, 0));

    // Another daemon's purchase in flight: a live lease holding 0.2 USD.
    sql(
        &db,
        "INSERT INTO team_locks VALUES ('s-other:mock', 'elsewhere', \
         CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) + 600000, 200000)",
    )
    .await;
    sql(
        &db,
        "UPDATE team_state SET reserved_usd_micros = reserved_usd_micros + 200000",
    )
    .await;

    // `/v1/status`: the team's figures in micros.
    let status = get_json(&daemon, "/v1/status").await;
    assert_eq!(
        status["team"]["budget"],
        serde_json::json!({
            "budget_usd_micros": PRICE, "spent_usd_micros": PRICE,
            "reserved_usd_micros": 200_000, "left_usd_micros": 0,
            "live_leases": 1, "members_with_limits": 1,
        }),
        "{status}"
    );
    assert!(status["team"]["budget_error"].is_null(), "{status}");
    // `status`: in dollars.
    let text = cli_stdout(&daemon, ["status"]).await;
    assert_eq!(
        line(&text, "team budget:"),
        "team budget: $1.000000 spent, $0.200000 reserved, $0.000000 left of $1.000000; \
         1 live purchase lease, 1 member with limits"
    );
    // `doctor`: a spent team budget fails, saying how to reset it.
    let doctor = get_json(&daemon, "/v1/doctor").await;
    let team = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "team")
        .unwrap_or_else(|| panic!("no team check: {doctor}"))
        .clone();
    assert_eq!(team["verdict"], "fail", "{team}");
    assert!(
        team["hint"]
            .as_str()
            .unwrap()
            .contains("tokenbuddyd team budget reset --yes"),
        "{team}"
    );

    // Without --yes nothing changes.
    let out = cli_stdout(&daemon, ["team", "budget", "reset"]).await;
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(team_budget(&db).await, (PRICE as i64, 200_000));
    // With it, spent goes to 0 and the reservation stays.
    let out = cli_stdout(&daemon, ["team", "budget", "reset", "--yes"]).await;
    assert!(
        out.contains("spent was $1.000000, now $0.000000; $0.200000 stays reserved"),
        "{out}"
    );
    assert_eq!(team_budget(&db).await, (0, 200_000));
    let out = cli_stdout(&daemon, ["team", "budget", "show"]).await;
    assert_eq!(
        out.trim(),
        "team budget: $0.000000 spent, $0.200000 reserved, $0.800000 left of $1.000000; \
         1 live purchase lease, 1 member with limits"
    );

    // The other purchase fails and gives its reservation back; the new
    // period's budget buys again — although this daemon alone already
    // bought the whole budget once.
    sql(
        &db,
        "DELETE FROM team_locks WHERE lock_key = 's-other:mock'",
    )
    .await;
    sql(
        &db,
        "UPDATE team_state SET reserved_usd_micros = reserved_usd_micros - 200000",
    )
    .await;
    assert_eq!(
        post_as(&daemon.client(), &ana).await,
        200,
        "{}",
        daemon.logs()
    );
    assert_eq!(seller.purchase_count(), 2);
    assert_eq!(team_budget(&db).await, (PRICE as i64, 0));
    let status = get_json(&daemon, "/v1/status").await;
    assert_eq!(status["team"]["budget"]["spent_usd_micros"], PRICE);
    assert_eq!(status["team"]["budget"]["live_leases"], 0);
    assert!(!text.contains(TEAM_KEY) && !daemon.logs().contains(TEAM_KEY));
}

#[tokio::test]
async fn a_single_user_daemon_has_no_team_in_status_and_team_budget_needs_postgresql() {
    let Setup { daemon, .. } = setup().await;
    let status = get_json(&daemon, "/v1/status").await;
    assert!(status.get("team").is_none(), "{status}");
    let text = cli_stdout(&daemon, ["status"]).await;
    assert!(!text.contains("team"), "{text}");
    let out = tb_test_support::daemon::command(bin(), daemon.home())
        .args(["team", "budget", "show"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("PostgreSQL") && stderr.contains("ledger"),
        "{stderr}"
    );
}
