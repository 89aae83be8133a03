//! A member's video jobs reserve their worst cost (docs/video.md,
//! "Members"), against the real binary on SQLite and on PostgreSQL: of
//! two concurrent submits whose estimates together exceed the budget
//! exactly one is admitted, the other is a 402 that reaches no upstream;
//! the job's record, written at the terminal poll by a restarted daemon,
//! replaces the reservation by the real cost; a submit no upstream accepts
//! gives its reservation back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{PgDatabase, bin, member_key};
use http::Method;
use sqlx::{Connection, Row};
use tb_test_support::daemon::{Daemon, body_json};
use tb_test_support::{MockUpstream, VideoSim};

const MODEL: &str = "sora-2";

/// One provider at $0.10/s (the price table's too); `ledger` is the
/// `[ledger]` section, empty for the default SQLite file.
fn config(upstream: &MockUpstream, ledger: &str) -> String {
    format!(
        r#"
{ledger}
[log]
level = "info"
format = "json"

[[providers]]
id = "only"
kind = "openai"
base_url = "{url}"
api_key = "k-only"
models = ["{MODEL}"]
protocols = ["videos"]
video_prices = {{ "{MODEL}" = 0.10 }}
"#,
        url = upstream.base_url(),
    )
}

/// Where the member counters are read from.
enum Counters<'a> {
    Sqlite(&'a Path),
    Postgres(&'a PgDatabase),
}

/// `(spent, reserved, reservation rows with their expiry)` of `member`.
async fn counters(at: &Counters<'_>, member: &str) -> (i64, i64, Vec<i64>) {
    let usage = "SELECT spent_usd_micros, reserved_usd_micros FROM member_usage WHERE member = $1";
    let rows = "SELECT expires_at_ms FROM member_reservations WHERE member = $1";
    macro_rules! read {
        ($conn:expr) => {{
            let mut conn = $conn;
            let u = sqlx::query(usage)
                .bind(member)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            let r = sqlx::query(rows)
                .bind(member)
                .fetch_all(&mut conn)
                .await
                .unwrap();
            (
                u.get::<i64, _>(0),
                u.get::<i64, _>(1),
                r.iter().map(|r| r.get::<i64, _>(0)).collect(),
            )
        }};
    }
    match at {
        Counters::Sqlite(db) => {
            let url = format!("sqlite://{}?mode=ro", db.display());
            read!(sqlx::SqliteConnection::connect(&url).await.unwrap())
        }
        Counters::Postgres(db) => read!(sqlx::PgConnection::connect(&db.url()).await.unwrap()),
    }
}

/// Polls the counters until they say `(spent, reserved, rows)`: records
/// reach the ledger off the request path.
async fn await_counters(at: &Counters<'_>, member: &str, spent: i64, reserved: i64, rows: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = counters(at, member).await;
        if (now.0, now.1, now.2.len()) == (spent, reserved, rows) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{member}: {now:?}, expected spent {spent}, reserved {reserved}, {rows} reservations"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A submit of `seconds` with member key `key`: status and JSON answer.
async fn submit_as(daemon: &Daemon, key: &str, seconds: u32) -> (u16, serde_json::Value) {
    let resp = common::submit_video_as(daemon, key, MODEL, seconds).await;
    (resp.status().as_u16(), body_json(resp).await)
}

async fn poll(daemon: &Daemon, id: &str) -> serde_json::Value {
    let auth = format!("Bearer {}", daemon.token);
    let resp = daemon
        .request(
            Method::GET,
            &format!("/v1/videos/{id}"),
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(resp.status(), 200);
    body_json(resp).await
}

async fn restart(daemon: Daemon) -> Daemon {
    daemon.sigterm().unwrap();
    let mut daemon = daemon;
    assert!(daemon.wait().await.unwrap().success());
    Daemon::start_in(bin(), daemon.into_home(), &[])
        .await
        .unwrap()
}

/// The scenario on the ledger the `[ledger]` section `ledger` points at:
/// `pg`'s database, or the daemon's SQLite file when `None`.
async fn jobs_reserve_and_records_settle(ledger: &str, pg: Option<&PgDatabase>) {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.simulate_video(VideoSim {
        polls_to_complete: 2,
        // Produced 6 s of the 8 asked, billed at $0.10/s: $0.60.
        produced_seconds: Some(6),
        ..VideoSim::accepting("video_")
    });
    let daemon = Daemon::start(bin(), &config(&upstream, ledger), &[])
        .await
        .unwrap();
    let sqlite = daemon.data_dir().join("ledger.db");
    let at = match pg {
        Some(db) => Counters::Postgres(db),
        None => Counters::Sqlite(&sqlite),
    };
    let key = member_key(&daemon, "vi", &["--budget-usd", "1"]).await;

    // Two concurrent 8-second jobs, $0.80 each at the priciest price, on
    // a $1 budget: exactly one fits.
    let (a, b) = tokio::join!(submit_as(&daemon, &key, 8), submit_as(&daemon, &key, 8));
    let mut answers = [a, b];
    answers.sort_by_key(|(status, _)| *status);
    let [(ok, job), (refused, err)] = answers;
    assert_eq!((ok, refused), (200, 402), "{job} {err}");
    assert_eq!(err["error"]["code"], "member_budget_spent", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("may cost up to $0.800000 (8 s at $0.100000/s)"),
        "{message}"
    );
    assert_eq!(
        upstream.requests_under("/v1/videos").len(),
        1,
        "the refused submit reached no upstream"
    );
    let id = job["id"].as_str().unwrap().to_string();

    // The job's reservation holds for the hour, not a call's 15 minutes.
    let (spent, reserved, expiries) = counters(&at, "vi").await;
    assert_eq!((spent, reserved, expiries.len()), (0, 800_000, 1));
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    assert!(
        expiries[0] > now + 55 * 60_000,
        "expires in {} ms",
        expiries[0] - now
    );

    // A restarted daemon polls the job to its end: the record (the
    // member's) replaces the reservation by the real cost.
    let daemon = restart(daemon).await;
    assert_eq!(poll(&daemon, &id).await["status"], "queued");
    assert_eq!(poll(&daemon, &id).await["status"], "completed");
    await_counters(&at, "vi", 600_000, 0, 0).await;

    // $0.40 left: a 4-second job ($0.40) fits exactly; no upstream takes
    // it, and its reservation is given back.
    upstream.simulate_video(VideoSim {
        refuse_submit: Some(503),
        ..VideoSim::accepting("video_")
    });
    let (status, err) = submit_as(&daemon, &key, 4).await;
    assert_eq!(status, 502, "{err}");
    await_counters(&at, "vi", 600_000, 0, 0).await;
    // A 5-second one ($0.50) does not fit.
    let (status, err) = submit_as(&daemon, &key, 5).await;
    assert_eq!(status, 402, "{err}");

    let mut daemon = daemon;
    let records = common::stop_and_read_ledger(&mut daemon).await;
    let videos: Vec<_> = records
        .iter()
        .filter(|r| r["protocol"] == "videos")
        .collect();
    assert_eq!(
        videos.len(),
        2,
        "the job and the refused submit: {videos:?}"
    );
    assert!(videos.iter().all(|r| r["member"] == "vi"));
    assert_eq!(videos[0]["cost_usd_micros"], 600_000);
    assert!(videos[1]["cost_usd_micros"].is_null());
}

#[tokio::test]
async fn a_members_jobs_reserve_their_worst_cost_on_sqlite() {
    jobs_reserve_and_records_settle("", None).await;
}

#[tokio::test]
async fn a_members_jobs_reserve_their_worst_cost_on_postgres() {
    let db = PgDatabase::create().await;
    let ledger = format!("[ledger]\nurl = \"{}\"\n", db.url());
    jobs_reserve_and_records_settle(&ledger, Some(&db)).await;
}
