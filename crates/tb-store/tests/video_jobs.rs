//! Video jobs (`video_jobs` table), on both backends like the rest of the
//! ledger suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::Fixture;
use tb_billing::record::Attempt;
use tb_domain::Outcome;
use tb_store::VideoJob;

both_backends!(
    video_job_round_trips_and_the_first_mapping_stands,
    video_job_record_is_claimed_once,
);

fn job(id: &str, upstream: &str) -> VideoJob {
    VideoJob {
        job_id: id.into(),
        upstream_id: upstream.into(),
        request_id: "req-1".into(),
        requested_model: "sora-2".into(),
        model: "openai/sora-2".into(),
        requested_seconds: Some(8),
        submitted_at_ms: 1_000,
        recorded_at_ms: None,
        member: Some("ana".into()),
        submit_attempts: Vec::new(),
        record_id: Some(format!("rec-{id}")),
    }
}

async fn video_job_round_trips_and_the_first_mapping_stands(fx: Fixture) {
    assert_eq!(fx.ledger.video_job("video_1").await.unwrap(), None);
    let first = job("video_1", "second");
    assert!(fx.ledger.save_video_job(&first).await.unwrap());
    assert!(
        !fx.ledger
            .save_video_job(&job("video_1", "other"))
            .await
            .unwrap()
    );
    // A job accepted after another route refused the submit keeps that
    // attempt for its record.
    let no_length = VideoJob {
        requested_seconds: None,
        submit_attempts: vec![Attempt {
            upstream: "first".into(),
            status: Some(503),
            outcome: Outcome::ServerError,
            error_class: Some(Outcome::ServerError),
            latency_ms: 12,
        }],
        // A job stored before migration 0014 has no record id.
        record_id: None,
        ..job("video_2", "second")
    };
    assert!(fx.ledger.save_video_job(&no_length).await.unwrap());
    assert_eq!(fx.ledger.video_job("video_1").await.unwrap(), Some(first));
    assert_eq!(
        fx.ledger.video_job("video_2").await.unwrap(),
        Some(no_length)
    );
}

async fn video_job_record_is_claimed_once(fx: Fixture) {
    assert!(
        !fx.ledger
            .claim_video_job_record("missing", 5)
            .await
            .unwrap()
    );
    fx.ledger.save_video_job(&job("v", "u")).await.unwrap();
    assert!(fx.ledger.claim_video_job_record("v", 2_000).await.unwrap());
    assert!(!fx.ledger.claim_video_job_record("v", 3_000).await.unwrap());
    let stored = fx.ledger.video_job("v").await.unwrap().unwrap();
    assert_eq!(stored.recorded_at_ms, Some(2_000));
}
