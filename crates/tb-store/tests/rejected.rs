//! `rejected` calls (malformed requests the daemon refused before any
//! upstream) round-trip on both backends and stay out of the usage views:
//! they are neither usage nor an upstream's failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fixture, minimal_record, priced};
use tb_billing::record::{CallOutcome, CallRecord, prompt_hash};
use tb_domain::Protocol;
use tb_store::GroupBy;

/// 2024-03-02T00:00:00Z.
const T: i64 = 1_709_337_600_000;

fn rejected(started_at_ms: i64) -> CallRecord {
    CallRecord {
        requested_model: String::new(),
        model: String::new(),
        ok: false,
        outcome: CallOutcome::Rejected,
        prompt_hash: prompt_hash(Protocol::Messages, b""),
        trace_parent: None,
        member: None,
        ..minimal_record(started_at_ms)
    }
}

async fn rejected_round_trips_and_is_not_usage(fx: Fixture) {
    let records = vec![
        priced(T, "a", Some("alpha"), Some(100), Some(10)),
        rejected(T + 1),
        rejected(T + 2),
    ];
    fx.ledger.insert_batch(&records).await.unwrap();

    let back = fx.ledger.calls_since(T - 1, 10).await.unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(back[1], records[1], "the rejected record round-trips");
    assert_eq!(back[2].outcome, CallOutcome::Rejected);
    assert!(back[1].attempts.is_empty() && back[1].winner.is_none());

    // Usage and stats: only the call that went upstream.
    for by in [GroupBy::Model, GroupBy::Upstream, GroupBy::Day] {
        let rows = fx.ledger.usage_summary(T, by).await.unwrap();
        assert_eq!(rows.len(), 1, "{by:?}: {rows:?}");
        assert_eq!((rows[0].calls, rows[0].ok_calls), (1, 1), "{by:?}");
        assert_eq!(rows[0].unpriced_calls, 0, "{by:?}");
    }
    let totals = fx.ledger.totals(T).await.unwrap();
    assert_eq!((totals.calls, totals.unpriced_calls), (1, 0));
    assert_eq!(
        fx.ledger.models_used_since(T, 10).await.unwrap(),
        vec!["a".to_string()]
    );
}

mod sqlite {
    #[tokio::test]
    async fn rejected_round_trips_and_is_not_usage() {
        super::rejected_round_trips_and_is_not_usage(crate::common::Fixture::sqlite().await).await;
    }
}

mod postgres {
    #[tokio::test]
    async fn rejected_round_trips_and_is_not_usage() {
        super::rejected_round_trips_and_is_not_usage(crate::common::Fixture::postgres().await)
            .await;
    }
}
