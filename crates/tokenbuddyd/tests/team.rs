//! Team mode end to end (issue 19, shared seller credit): several real
//! daemons on one PostgreSQL database and the simulated marketplace.
//! They buy once per seller, spend the same token, stop at the team's
//! purchase budget together, record every member's call exactly once,
//! and a daemon killed mid-purchase holds the team up only until its
//! lease expires.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::team::*;
use common::*;
use sqlx::Row;
use tb_test_support::daemon::Daemon;
use tb_test_support::marketplace::SellerSpec;

fn round_trips(metrics: &str) -> f64 {
    parse_metrics(metrics)
        .get("tb_team_pg_round_trips_total")
        .copied()
        .unwrap_or_else(|| panic!("no tb_team_pg_round_trips_total in\n{metrics}"))
}

async fn metrics(daemon: &Daemon) -> String {
    let (status, body) = control(daemon, http::Method::GET, "/metrics", None, false, "").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `(member, calls, distinct ids)` of the shared ledger, once it holds
/// `n` calls (records reach it off the request path).
async fn calls_by_member(db: &PgDatabase, n: i64) -> Vec<(Option<String>, i64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = sqlx::query(
            "SELECT member, COUNT(*), COUNT(DISTINCT id) FROM calls GROUP BY member ORDER BY member",
        )
        .fetch_all(&mut pg(db).await)
        .await
        .unwrap();
        let rows: Vec<(Option<String>, i64, i64)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        if rows.iter().map(|r| r.1).sum::<i64>() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger never held {n} calls: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_buy_once_and_share_credit_and_budget() {
    let db = PgDatabase::create().await;
    let (seller, registry) = market(SellerSpec::new("s-alpha")).await;
    // Two daemons take the key from TB_TEAM_KEY, the third from key_file.
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("team-key");
    std::fs::write(&key_file, format!("{TEAM_KEY}\n")).unwrap();
    let env_config = team_config(&registry, &db.url(), 1_500_000, "lease_ms = 30000");
    let file_config = team_config(
        &registry,
        &db.url(),
        1_500_000,
        &format!("key_file = \"{}\"", key_file.display()),
    );
    // The members' keys, created once in the shared ledger.
    let admin = tb_test_support::daemon::home_with_config(&env_config).unwrap();
    let mut keys = Vec::new();
    for member in ["ana", "bo", "cy"] {
        let out = home_stdout(admin.path(), ["keys", "create", "--member", member]).await;
        keys.push(out.lines().last().unwrap().to_string());
    }
    let env = [("TB_TEAM_KEY", TEAM_KEY)];
    let daemons = [
        Daemon::start(bin(), &env_config, &env).await.unwrap(),
        Daemon::start(bin(), &env_config, &env).await.unwrap(),
        Daemon::start(bin(), &file_config, &[]).await.unwrap(),
    ];

    // 3 members × 3 daemons × 10 concurrent requests: one purchase.
    let mut tasks = Vec::new();
    for daemon in &daemons {
        for key in &keys {
            for _ in 0..10 {
                let (client, key) = (daemon.client(), key.clone());
                tasks.push(tokio::spawn(async move { post_as(&client, &key).await }));
            }
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(seller.purchase_count(), 1, "one purchase for the team");
    assert_eq!(seller.tokens_issued(), 1);
    assert_eq!(team_budget(&db).await, (PRICE as i64, 0));
    assert!(lease_rows(&db).await.is_empty(), "no lease left behind");
    let calls = calls_by_member(&db, 90).await;
    let want: Vec<(Option<String>, i64, i64)> = ["ana", "bo", "cy"]
        .iter()
        .map(|m| (Some((*m).to_string()), 30, 30))
        .collect();
    assert_eq!(calls, want, "every call recorded once, with its member");

    // The shared balance went down by every daemon's settlements.
    let cost = seller
        .spec()
        .call_cost(tb_domain::Protocol::ChatCompletions, "gpt-4o");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let balance: i64 = sqlx::query("SELECT balance_micros FROM team_tokens")
            .fetch_one(&mut pg(&db).await)
            .await
            .unwrap()
            .get(0);
        if balance == 1_000_000 - 90 * cost.settled_micros as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shared balance stuck at {balance}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // With a cached token a request costs no PostgreSQL round trip: only
    // the settlement batches (at most one per 100 ms) do.
    let before = round_trips(&metrics(&daemons[0]).await);
    for _ in 0..20 {
        assert_eq!(post_as(&daemons[0].client(), &keys[0]).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let added = round_trips(&metrics(&daemons[0]).await) - before;
    assert!(
        (1.0..=20.0).contains(&added),
        "20 requests on a cached token cost {added} round trips"
    );
    eprintln!("team round trips for 20 requests on a cached token: {added}");

    // The seller says the token ran dry: every daemon wants to buy again,
    // but the team budget (1.5 USD, 1 spent) allows no second purchase —
    // although two of the daemons have bought nothing themselves.
    seller.update(|s| s.insufficient_after = Some(0));
    for (daemon, key) in daemons.iter().zip(&keys) {
        assert_ne!(post_as(&daemon.client(), key).await, 200);
    }
    assert_eq!(seller.purchase_count(), 1, "the budget held across daemons");
    assert_eq!(team_budget(&db).await, (PRICE as i64, 0));
    for daemon in &daemons {
        assert!(
            daemon
                .logs()
                .contains("team purchase budget would be exceeded"),
            "{}",
            daemon.logs()
        );
        assert!(
            !daemon.logs().contains(TEAM_KEY),
            "the team key is never logged"
        );
    }
    // `status` shows team mode and where the key came from, never the key.
    let status = cli_stdout(&daemons[2], ["status"]).await;
    assert!(
        status.contains(&format!(
            "team: on (key from key_file {}",
            key_file.display()
        )),
        "{status}"
    );
    assert!(!status.contains(TEAM_KEY));
    let status = cli_stdout(&daemons[0], ["status"]).await;
    assert!(
        status.contains("team: on (key from TB_TEAM_KEY"),
        "{status}"
    );
    let token = seller.tokens()[0].token.clone();
    for daemon in &daemons {
        assert!(
            !daemon.logs().contains(&token),
            "the seller token is never logged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_purchase_blocks_the_team_only_until_its_lease_expires() {
    let db = PgDatabase::create().await;
    // A seller slow to answer: the purchase is in flight long enough to
    // kill the daemon making it.
    let (seller, registry) =
        market(SellerSpec::new("s-slow").latency(Duration::from_millis(1_200))).await;
    let config = team_config(&registry, &db.url(), 5_000_000, "lease_ms = 4000");
    let env = [("TB_TEAM_KEY", TEAM_KEY)];
    let mut first = Daemon::start(bin(), &config, &env).await.unwrap();
    let second = Daemon::start(bin(), &config, &env).await.unwrap();

    let client = first.client();
    let doomed =
        tokio::spawn(async move { client.try_post_json("/v1/chat/completions", CHAT).await });
    // The seller has the completion: the first daemon holds the lease and
    // its reservation, waiting for the token.
    let lease = purchase_in_flight(&seller, &db).await;
    assert_eq!(lease.0, "s-slow:mock");
    assert_eq!(
        team_budget(&db).await,
        (0, PRICE as i64),
        "reserved while buying"
    );
    first.sigkill().unwrap();
    first.wait().await.unwrap();
    assert!(
        doomed.await.unwrap().is_err(),
        "the killed daemon never answered"
    );
    let left_ms = lease_rows(&db).await[0].2;
    assert!(
        left_ms > 0,
        "the dead daemon's lease still runs: {left_ms} ms"
    );

    // The second daemon waits for the lease to expire, takes it over and
    // buys; the dead daemon's reservation counts as spent (it may have
    // paid — here the seller did issue it a token).
    let started = Instant::now();
    let client = second.client();
    let (parts, body) = client
        .try_post_json("/v1/chat/completions", CHAT)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(
        parts.status,
        200,
        "{body:?} after {waited:?}\n{}",
        second.logs()
    );
    assert!(
        waited >= Duration::from_millis(u64::try_from(left_ms).unwrap()),
        "bought after the lease expired ({waited:?}, {left_ms} ms left)"
    );
    assert!(
        waited < Duration::from_millis(4_000 + 5 * 1_200 + 2_000),
        "blocked only until the lease expired: {waited:?}"
    );
    second
        .wait_for_log("took over an expired purchase lease")
        .await;
    assert_eq!(seller.purchase_count(), 2);
    assert!(
        lease_rows(&db).await.is_empty(),
        "no lease held after its timeout"
    );
    assert_eq!(team_budget(&db).await, (2 * PRICE as i64, 0));
    let text = metrics(&second).await;
    assert!(round_trips(&text) > 0.0, "round trips are counted");
}

/// Why a daemon with `config` and `env` refused to start.
async fn start_error(config: &str, env: &[(&str, &str)]) -> String {
    match Daemon::start(bin(), config, env).await {
        Ok(_) => panic!("the daemon started"),
        Err(e) => e.0,
    }
}

#[tokio::test]
async fn team_mode_misconfigurations_are_refused_saying_how_to_fix_them() {
    // Not PostgreSQL.
    let home = tb_test_support::daemon::home_with_config("[team]\nenabled = true\n").unwrap();
    let stderr = refused(
        home.path(),
        &["serve", "--port", "0", "--control-port", "0"],
    )
    .await;
    assert!(
        stderr.contains("team.enabled") && stderr.contains("postgres"),
        "{stderr}"
    );

    // PostgreSQL but no key.
    let db = PgDatabase::create().await;
    let config = format!("[ledger]\nurl = \"{}\"\n[team]\nenabled = true\n", db.url());
    let err = start_error(&config, &[]).await;
    assert!(
        err.contains("TB_TEAM_KEY") && err.contains("key_file"),
        "{err}"
    );

    // A daemon with another key than the team's is refused (it could not
    // read the team's tokens), and the key is not in the message.
    let ok = Daemon::start(bin(), &config, &[("TB_TEAM_KEY", TEAM_KEY)])
        .await
        .unwrap();
    let other = "another-team-key-0123456789abcdefgh";
    let err = start_error(&config, &[("TB_TEAM_KEY", other)]).await;
    assert!(err.contains("team key differs"), "{err}");
    assert!(!err.contains(other) && !err.contains(TEAM_KEY), "{err}");
    drop(ok);
}
