//! Fixtures shared by the ledger tests: one per backend, and record
//! builders.

#![allow(dead_code, unreachable_pub, unused_macros)]

/// Generates (in the test file that uses it, with `#[macro_use] mod common;`) `sqlite::<name>` and `postgres::<name>` for each shared test.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::common::Fixture::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::common::Fixture::postgres().await).await;
                }
            )*
        }
    };
}

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;
use tb_billing::record::{
    Attempt, BalanceSource, BaselineKind, BilledTier, BillingUnit, CallOutcome, CallRecord,
};
use tb_domain::{Outcome, Protocol};
use tb_store::{Ledger, LedgerTarget};
use tempfile::TempDir;

/// The machine's PostgreSQL server (billing.md, "Ledger"). Tests fail, never
/// skip, when it is absent.
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A freshly created, empty ledger, cleaned up on drop (also when the test
/// panics). Fields drop in order: the ledger's pool closes before the
/// directory or schema goes away.
pub struct Fixture {
    pub ledger: Ledger,
    pub target: LedgerTarget,
    _dir: Option<TempDir>,
    _schema: Option<SchemaGuard>,
}

impl Fixture {
    /// A SQLite ledger in a new temporary directory.
    pub async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = LedgerTarget::Sqlite(dir.path().join("ledger.db"));
        let ledger = Ledger::open(&target).await.expect("open SQLite ledger");
        Fixture {
            ledger,
            target,
            _dir: Some(dir),
            _schema: None,
        }
    }

    /// A PostgreSQL ledger in a new schema of its own, dropped (CASCADE)
    /// when the fixture goes away.
    pub async fn postgres() -> Fixture {
        let schema = format!("tb_test_{}", uuid::Uuid::now_v7().simple());
        // The guard exists before anything is created, so a failure while
        // opening still cleans up.
        let guard = SchemaGuard {
            name: schema.clone(),
        };
        let target = LedgerTarget::Postgres {
            url: POSTGRES_URL.to_owned(),
            schema: Some(schema),
        };
        let ledger = Ledger::open(&target).await.unwrap_or_else(|e| {
            panic!("the PostgreSQL ledger tests need a server at {POSTGRES_URL}: {e}")
        });
        Fixture {
            ledger,
            target,
            _dir: None,
            _schema: Some(guard),
        }
    }

    /// Opens the same ledger again (a second daemon, or a restart).
    pub async fn reopen(&self) -> Ledger {
        Ledger::open(&self.target).await.expect("reopen ledger")
    }

    /// How many calls the ledger holds.
    pub async fn count(&self) -> u64 {
        self.ledger.totals(i64::MIN).await.expect("totals").calls
    }
}

/// Drops a test schema with everything in it. `Drop` cannot await, so it
/// uses its own thread and runtime; a lock timeout keeps a stuck connection
/// from hanging the test run.
struct SchemaGuard {
    name: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let sql = format!(
            "SET lock_timeout = '15s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.name
        );
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(POSTGRES_URL)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(&sql)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {name}: {e}"),
            Err(_) => eprintln!("could not drop test schema {name}: cleanup thread panicked"),
        }
    }
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A unique, time-ordered record id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A unique request id.
pub fn new_request_id() -> String {
    format!("req-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A record with every optional field unknown and no attempts.
pub fn minimal_record(started_at_ms: i64) -> CallRecord {
    CallRecord {
        id: new_id(),
        request_id: new_request_id(),
        started_at_ms,
        endpoint: "chat".into(),
        protocol: Protocol::ChatCompletions,
        upstream_protocol: None,
        requested_model: "gpt-4o-mini".into(),
        model: "gpt-4o-mini".into(),
        stream: false,
        ok: false,
        outcome: CallOutcome::Failed,
        winner: None,
        failed_over: false,
        attempts: Vec::new(),
        latency_ms: 0,
        ttft_ms: None,
        input_tokens: None,
        cached_input_tokens: None,
        cache_write_tokens: None,
        cache_write_1h_tokens: None,
        output_tokens: None,
        reasoning_tokens: None,
        tokens_per_second: None,
        cost_usd_micros: None,
        est_cost_usd_micros: None,
        baseline_usd_micros: None,
        baseline_kind: None,
        saved_usd_micros: None,
        cached_saving_usd_micros: None,
        settled_credit_micros: None,
        balance_source: BalanceSource::Estimated,
        remaining_credit_micros: None,
        billing_unit: BillingUnit::Tokens,
        image_count: None,
        image_size: None,
        image_quality: None,
        image_format: None,
        image_cost_per_image_usd_micros: None,
        image_output_tokens: None,
        image_output_cost_usd_micros: None,
        usage_missing: false,
        empty_completion: false,
        unpriced: false,
        price_tier: None,
        price_drift_ppm: None,
        prompt_hash: None,
        trace_parent: None,
        member: None,
    }
}

/// A record with every field set to something other than its default.
pub fn full_record(started_at_ms: i64) -> CallRecord {
    CallRecord {
        id: new_id(),
        request_id: new_request_id(),
        started_at_ms,
        endpoint: "messages".into(),
        protocol: Protocol::Messages,
        upstream_protocol: Some(Protocol::ChatCompletions),
        requested_model: "claude-sonnet-4-5".into(),
        model: "anthropic/claude-sonnet-4.5".into(),
        stream: true,
        ok: true,
        outcome: CallOutcome::Ok,
        winner: Some("beta".into()),
        failed_over: true,
        attempts: vec![
            Attempt {
                upstream: "alpha".into(),
                status: Some(502),
                outcome: Outcome::ServerError,
                error_class: Some(Outcome::ServerError),
                latency_ms: 87,
            },
            Attempt {
                upstream: "gamma \"quoted\" ✓".into(),
                status: None,
                outcome: Outcome::ConnectFailed,
                error_class: Some(Outcome::ConnectFailed),
                latency_ms: 3,
            },
            Attempt {
                upstream: "beta".into(),
                status: Some(200),
                outcome: Outcome::Ok,
                error_class: None,
                latency_ms: 120,
            },
        ],
        latency_ms: 1_234,
        ttft_ms: Some(345),
        input_tokens: Some(12_000),
        cached_input_tokens: Some(8_000),
        cache_write_tokens: Some(1_000),
        cache_write_1h_tokens: Some(600),
        output_tokens: Some(640),
        reasoning_tokens: Some(128),
        tokens_per_second: Some(719.910_011_248_594),
        cost_usd_micros: Some(4_321),
        est_cost_usd_micros: Some(4_400),
        baseline_usd_micros: Some(9_000),
        baseline_kind: Some(BaselineKind::PriciestRoute),
        saved_usd_micros: Some(4_679),
        cached_saving_usd_micros: Some(2_160),
        settled_credit_micros: Some(5_401),
        balance_source: BalanceSource::SellerAuthoritative,
        remaining_credit_micros: Some(994_599),
        billing_unit: BillingUnit::Images,
        image_count: Some(2),
        image_size: Some("1024x1024".into()),
        image_quality: Some("high".into()),
        image_format: Some("png".into()),
        image_cost_per_image_usd_micros: Some(2_161),
        image_output_tokens: Some(4_160),
        image_output_cost_usd_micros: Some(166_400),
        usage_missing: true,
        empty_completion: true,
        unpriced: true,
        price_tier: "priority+above_200k+cache_write_1h".parse().ok(),
        price_drift_ppm: Some(-17_954),
        prompt_hash: Some(
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        trace_parent: None,
        member: Some("ana".to_string()),
    }
}

/// A record with every optional field known and zero (distinct from
/// unknown).
pub fn zero_record(started_at_ms: i64) -> CallRecord {
    CallRecord {
        ttft_ms: Some(0),
        input_tokens: Some(0),
        cached_input_tokens: Some(0),
        cache_write_tokens: Some(0),
        cache_write_1h_tokens: Some(0),
        output_tokens: Some(0),
        reasoning_tokens: Some(0),
        tokens_per_second: Some(0.0),
        cost_usd_micros: Some(0),
        est_cost_usd_micros: Some(0),
        baseline_usd_micros: Some(0),
        baseline_kind: Some(BaselineKind::Official),
        saved_usd_micros: Some(0),
        cached_saving_usd_micros: Some(0),
        settled_credit_micros: Some(0),
        remaining_credit_micros: Some(0),
        image_count: Some(0),
        image_size: Some(String::new()),
        image_quality: Some(String::new()),
        image_format: Some(String::new()),
        image_cost_per_image_usd_micros: Some(0),
        image_output_tokens: Some(0),
        image_output_cost_usd_micros: Some(0),
        price_tier: Some(BilledTier::STANDARD),
        price_drift_ppm: Some(0),
        prompt_hash: Some(String::new()),
        trace_parent: None,
        member: None,
        winner: Some(String::new()),
        ..minimal_record(started_at_ms)
    }
}

/// A successful priced call for aggregation tests.
pub fn priced(
    started_at_ms: i64,
    model: &str,
    winner: Option<&str>,
    cost: Option<i64>,
    saved: Option<i64>,
) -> CallRecord {
    CallRecord {
        model: model.into(),
        requested_model: model.into(),
        winner: winner.map(str::to_owned),
        ok: true,
        outcome: CallOutcome::Ok,
        input_tokens: Some(100),
        cached_input_tokens: Some(10),
        output_tokens: Some(20),
        cost_usd_micros: cost,
        saved_usd_micros: saved,
        ..minimal_record(started_at_ms)
    }
}
