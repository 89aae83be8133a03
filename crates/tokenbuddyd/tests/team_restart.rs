//! Team mode through a PostgreSQL restart (issue 19): three daemons on one
//! database through a relay the test controls (the machine's server is
//! shared with tests running alongside, so it is never restarted itself).
//! A restart drops every open connection — the relay cuts them and the
//! server ends the database's sessions — and new connections fail for a
//! few seconds.
//!
//! - Under steady traffic (the port refused, as while a server restarts):
//!   members on the team's cached token are answered throughout,
//!   `/readyz` says 503 while PostgreSQL is gone and 200 after, every `200`
//!   is recorded exactly once with its member, member reservations are
//!   settled, nothing is bought twice and a later purchase still works.
//! - While a purchase lease is held (connections failing outright, so no
//!   pool wait absorbs it): the buyer answers with the token it bought,
//!   stores it and releases the lease once PostgreSQL is back, and the
//!   other daemons reuse that token instead of buying again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::team::*;
use common::*;
use sqlx::Row;
use tb_test_support::daemon::{Daemon, DaemonClient};
use tb_test_support::marketplace::SellerSpec;
use tb_test_support::relay::TcpRelay;
use tokio::sync::watch;
use tokio::task::JoinSet;

const ENV: [(&str, &str); 1] = [("TB_TEAM_KEY", TEAM_KEY)];

/// Creates a member key per `(member, extra args)` in the shared ledger.
async fn member_keys(config: &str, members: &[(&str, &[&str])]) -> Vec<String> {
    let admin = tb_test_support::daemon::home_with_config(config).unwrap();
    let mut keys = Vec::new();
    for (member, extra) in members {
        let mut args = vec!["keys", "create", "--member", member];
        args.extend_from_slice(extra);
        let out = home_stdout(admin.path(), args).await;
        keys.push(out.lines().last().unwrap().to_string());
    }
    keys
}

async fn three_daemons(config: &str) -> Vec<Daemon> {
    let mut daemons = Vec::new();
    for _ in 0..3 {
        daemons.push(Daemon::start(bin(), config, &ENV).await.unwrap());
    }
    daemons
}

/// One answered request of the load: who sent it, what came back, and
/// whether it was sent and answered while PostgreSQL was down.
struct Sent {
    member: &'static str,
    answer: Answer,
    during_outage: bool,
}

/// What the load saw.
#[derive(Default)]
struct Load {
    sent: Vec<Sent>,
    /// Requests the daemon never answered (connection refused or cut).
    unanswered: Vec<String>,
}

/// Every member sends requests one after the other through every daemon
/// until `stop` flips; `down` says whether PostgreSQL is down.
async fn load(
    clients: Vec<DaemonClient>,
    members: Vec<(&'static str, String)>,
    stop: watch::Receiver<bool>,
    down: watch::Receiver<bool>,
) -> Load {
    let mut tasks = JoinSet::new();
    for client in clients {
        for (member, key) in members.clone() {
            let (client, stop, down) = (client.clone(), stop.clone(), down.clone());
            tasks.spawn(async move {
                let mut seen = Load::default();
                while !*stop.borrow() {
                    let down_before = *down.borrow();
                    match send_as(&client, &key).await {
                        Ok(answer) => seen.sent.push(Sent {
                            member,
                            answer,
                            during_outage: down_before && *down.borrow(),
                        }),
                        Err(e) => seen.unanswered.push(e),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            });
        }
    }
    let mut all = Load::default();
    while let Some(done) = tasks.join_next().await {
        let done = done.unwrap();
        all.sent.extend(done.sent);
        all.unanswered.extend(done.unanswered);
    }
    all
}

async fn readyz(daemon: &Daemon) -> (u16, String) {
    let (parts, body) = daemon
        .client()
        .try_request(http::Method::GET, "/readyz", &[], "")
        .await
        .unwrap();
    (
        parts.status.as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Polls every daemon's `/readyz` until it answers `want`.
async fn wait_ready(daemons: &[Daemon], want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    for daemon in daemons {
        loop {
            let (status, body) = readyz(daemon).await;
            if status == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz still {status} ({body}), want {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until the shared ledger holds a call for every request id of a
/// `200` in `sent`, then checks each is there exactly once with its member.
async fn assert_recorded_once(db: &PgDatabase, sent: &[Sent]) {
    let want: HashMap<&str, &str> = sent
        .iter()
        .filter(|s| s.answer.status == 200)
        .map(|s| (s.answer.request_id.as_deref().unwrap(), s.member))
        .collect();
    let ids: Vec<String> = want.keys().map(|id| (*id).to_owned()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows = sqlx::query(
            "SELECT request_id, member, COUNT(*) FROM calls WHERE request_id = ANY($1) \
             GROUP BY request_id, member",
        )
        .bind(&ids)
        .fetch_all(&mut pg(db).await)
        .await
        .unwrap();
        if rows.len() >= want.len() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} answered calls recorded",
            rows.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut seen: HashMap<String, (Option<String>, i64)> = HashMap::new();
    for row in &rows {
        let id: String = row.get(0);
        let member: Option<String> = row.get(1);
        let n: i64 = row.get(2);
        let prev = seen.insert(id.clone(), (member, n));
        assert!(prev.is_none(), "call {id} recorded under two members");
    }
    for (id, member) in &want {
        let (stored, n) = &seen[*id];
        assert_eq!(*n, 1, "call {id} recorded {n} times");
        assert_eq!(stored.as_deref(), Some(*member), "call {id}'s member");
    }
}

/// Every member reservation of a recorded call is settled (deleted), and
/// each member's reserved sum is what its remaining reservations hold:
/// those left are admissions whose answer PostgreSQL's restart cut off
/// (the request was refused), and they lapse at their expiry.
async fn assert_reservations_settle(db: &PgDatabase) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let unsettled: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM member_reservations r JOIN calls c ON c.id = r.id",
        )
        .fetch_one(&mut pg(db).await)
        .await
        .unwrap();
        if unsettled == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unsettled} reservations of recorded calls never settled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = sqlx::query(
        "SELECT u.member, u.reserved_usd_micros, \
           COALESCE((SELECT SUM(cost_usd_micros) FROM member_reservations r \
             WHERE r.member = u.member), 0)::BIGINT, \
           COALESCE((SELECT MAX(expires_at_ms) FROM member_reservations r \
             WHERE r.member = u.member), 0) \
         FROM member_usage u",
    )
    .fetch_all(&mut pg(db).await)
    .await
    .unwrap();
    let lapse_by = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
        + 15 * 60_000;
    for row in &rows {
        let member: String = row.get(0);
        let reserved: i64 = row.get(1);
        let held: i64 = row.get(2);
        let expires: i64 = row.get(3);
        assert_eq!(reserved, held, "{member}: reserved sum vs its reservations");
        assert!(expires <= lapse_by, "{member}: a reservation never lapses");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_under_team_traffic_loses_no_record_and_leaves_nothing_held() {
    let db = PgDatabase::create().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap())
        .await
        .unwrap();
    let (seller, registry) = market(SellerSpec::new("s-alpha")).await;
    let budget = 3 * PRICE;
    let via_relay = db.url_via(&relay.addr().to_string());
    let config = team_config(&registry, &via_relay, budget, "lease_ms = 5000");
    // ana and bo have no limits: a cached token serves them without
    // PostgreSQL. cy has a budget: every request is admitted in PostgreSQL.
    let keys = member_keys(
        &team_config(&registry, &db.url(), budget, ""),
        &[("ana", &[]), ("bo", &[]), ("cy", &["--budget-usd", "100"])],
    )
    .await;
    let daemons = three_daemons(&config).await;
    for (daemon, key) in daemons.iter().zip(&keys) {
        assert_eq!(post_as(&daemon.client(), key).await, 200);
    }
    assert_eq!(seller.purchase_count(), 1, "the team's token");
    wait_ready(&daemons, 200, Duration::from_secs(5)).await;

    let members: Vec<(&'static str, String)> = ["ana", "bo", "cy"]
        .into_iter()
        .zip(keys.iter().cloned())
        .collect();
    let (stop, stopped) = watch::channel(false);
    let (down, is_down) = watch::channel(false);
    let clients = daemons.iter().map(Daemon::client).collect();
    let running = tokio::spawn(load(clients, members, stopped, is_down));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The restart: the server ends every session, the port is closed
    // for 3 s.
    down.send(true).unwrap();
    let ended = db.terminate_backends().await;
    relay.refuse();
    let outage = Instant::now();
    wait_ready(&daemons, 503, Duration::from_secs(5)).await;
    let (_, reason) = readyz(&daemons[0]).await;
    assert!(reason.contains("ledger unreachable"), "{reason}");
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(outage.elapsed())).await;
    down.send(false).unwrap();
    relay.restore();
    let back = Instant::now();
    wait_ready(&daemons, 200, Duration::from_secs(15)).await;
    eprintln!(
        "restart: {ended} sessions ended, down {:?}, ready again after {:?}",
        back - outage,
        back.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    let seen = running.await.unwrap();

    assert!(
        seen.unanswered.is_empty(),
        "every request was answered: {:?}",
        seen.unanswered
    );
    let mut tally: BTreeMap<(&str, bool, u16), usize> = BTreeMap::new();
    for s in &seen.sent {
        *tally
            .entry((s.member, s.during_outage, s.answer.status))
            .or_default() += 1;
        match (s.member, s.answer.status) {
            (_, 200) => {}
            ("cy", 503) => assert!(
                s.answer.body.contains("could not be checked"),
                "{}",
                s.answer.body
            ),
            (member, status) => panic!("{member} got {status}: {}", s.answer.body),
        }
    }
    eprintln!("(member, during the outage, status) → requests: {tally:?}");
    for member in ["ana", "bo"] {
        assert!(
            tally.get(&(member, true, 200)).copied().unwrap_or(0) > 0,
            "{member} was served while PostgreSQL was down: {tally:?}"
        );
    }
    assert_recorded_once(&db, &seen.sent).await;
    assert_reservations_settle(&db).await;
    assert_eq!(seller.purchase_count(), 1, "nothing bought twice");
    assert!(lease_rows(&db).await.is_empty(), "no lease left behind");
    assert_eq!(team_budget(&db).await, (PRICE as i64, 0));

    // A later purchase still works: the token runs dry at the seller and
    // the team buys once more, within its budget.
    let served = seller.inference_status_count(200);
    seller.update(|s| s.insufficient_after = Some(served));
    let deadline = Instant::now() + Duration::from_secs(15);
    while post_as(&daemons[1].client(), &keys[1]).await != 200 {
        assert!(Instant::now() < deadline, "no purchase after the restart");
    }
    assert_eq!(seller.purchase_count(), 2);
    assert!(lease_rows(&db).await.is_empty(), "no lease left behind");
    assert_eq!(team_budget(&db).await, (2 * PRICE as i64, 0));
    for daemon in &daemons {
        assert!(!daemon.logs().contains("panicked"), "{}", daemon.logs());
        assert_eq!(post_as(&daemon.client(), &keys[0]).await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_outage_during_a_purchase_leaves_no_lease_held_and_buys_once() {
    let db = PgDatabase::create().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap())
        .await
        .unwrap();
    // A seller slow to answer: the purchase is in flight long enough for
    // PostgreSQL to go away under it.
    let (seller, registry) =
        market(SellerSpec::new("s-slow").latency(Duration::from_millis(1_200))).await;
    let lease_ms = 10_000;
    let via_relay = db.url_via(&relay.addr().to_string());
    let config = team_config(
        &registry,
        &via_relay,
        5 * PRICE,
        &format!("lease_ms = {lease_ms}"),
    );
    let keys = member_keys(
        &team_config(&registry, &db.url(), 5 * PRICE, ""),
        &[("ana", &[]), ("bo", &[]), ("cy", &[])],
    )
    .await;
    let daemons = three_daemons(&config).await;

    let client = daemons[0].client();
    let key = keys[0].clone();
    let buying = tokio::spawn(async move { send_as(&client, &key).await });
    let lease = purchase_in_flight(&seller, &db).await;
    let lease_ends = Instant::now() + Duration::from_millis(u64::try_from(lease.2).unwrap());
    assert_eq!(team_budget(&db).await, (0, PRICE as i64), "reserved");

    // PostgreSQL goes away while the seller completes the purchase:
    // connections die and new ones fail at once.
    relay.cut();
    db.terminate_backends().await;
    let outage = Instant::now();
    let mut others = JoinSet::new();
    for (daemon, key) in daemons[1..].iter().zip(&keys[1..]) {
        let (client, key) = (daemon.client(), key.clone());
        others.spawn(async move { send_as(&client, &key).await.unwrap() });
    }
    let first = buying.await.unwrap().unwrap();
    assert_eq!(first.status, 200, "{}\n{}", first.body, daemons[0].logs());
    let mut sent = vec![Sent {
        member: "ana",
        answer: first,
        during_outage: true,
    }];
    // The others could not look for the team's token: a clear error.
    while let Some(answer) = others.join_next().await {
        let answer = answer.unwrap();
        assert_ne!(answer.status, 200, "{}", answer.body);
        assert!(answer.body.contains("team"), "{}", answer.body);
        eprintln!(
            "during the outage, without a token: {} {}",
            answer.status, answer.body
        );
    }
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(outage.elapsed())).await;
    relay.restore();

    // Back: the buyer stores its token and ends its lease; the others
    // find that token (no second purchase), well before the lease expires.
    let back = Instant::now();
    let mut after = JoinSet::new();
    for ((daemon, key), member) in daemons.iter().zip(&keys).zip(["ana", "bo", "cy"]) {
        let (client, key) = (daemon.client(), key.clone());
        after.spawn(async move { (member, send_as(&client, &key).await.unwrap()) });
    }
    while let Some(done) = after.join_next().await {
        let (member, answer) = done.unwrap();
        assert_eq!(answer.status, 200, "{member}: {}", answer.body);
        sent.push(Sent {
            member,
            answer,
            during_outage: false,
        });
    }
    let served_in = back.elapsed();
    assert_eq!(
        seller.purchase_count(),
        1,
        "bought once: the others found the buyer's token"
    );
    assert!(
        Instant::now() < lease_ends,
        "served without waiting for the lease to expire ({served_in:?} after PostgreSQL was back)"
    );
    eprintln!("after the outage, every daemon served in {served_in:?}");
    daemons[0]
        .wait_for_log("purchase lease released after PostgreSQL came back")
        .await;
    assert_eq!(seller.tokens_issued(), 1);
    assert_eq!(team_budget(&db).await, (PRICE as i64, 0));
    assert!(lease_rows(&db).await.is_empty(), "no lease left behind");
    assert_recorded_once(&db, &sent).await;
    // The shared balance took the settlements made while it was not stored.
    let cost = seller
        .spec()
        .call_cost(tb_domain::Protocol::ChatCompletions, "gpt-4o");
    let want = 1_000_000 - 4 * cost.settled_micros as i64;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let balance: i64 = sqlx::query_scalar("SELECT balance_micros FROM team_tokens")
            .fetch_one(&mut pg(&db).await)
            .await
            .unwrap();
        if balance == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shared balance {balance}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
