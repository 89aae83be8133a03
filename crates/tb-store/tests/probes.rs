//! Provider probe results (`probe_results` table), on both backends like
//! the rest of the ledger suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::Fixture;
use tb_domain::{ProbeCheck, Verdict};
use tb_store::{ProbeCheckRow, ProbeRun};

both_backends!(
    probes_latest_run_per_upstream_and_model,
    probes_same_run_again_replaces_it,
);

fn check(check: ProbeCheck, verdict: Verdict, measured: Option<i64>) -> ProbeCheckRow {
    ProbeCheckRow {
        check,
        verdict,
        measured,
        detail: format!("{check} {}", verdict.as_str()),
    }
}

fn run(upstream: &str, model: &str, at: i64, checks: Vec<ProbeCheckRow>) -> ProbeRun {
    ProbeRun {
        upstream_id: upstream.into(),
        model: model.into(),
        probed_at_ms: at,
        checks,
    }
}

async fn probes_latest_run_per_upstream_and_model(fx: Fixture) {
    assert!(fx.ledger.latest_probes().await.unwrap().is_empty());
    let old = run(
        "bad",
        "m",
        1_000,
        vec![check(ProbeCheck::ToolCall, Verdict::Pass, None)],
    );
    // Stored out of check order: read back in ProbeCheck::ALL order.
    let new = run(
        "bad",
        "m",
        2_000,
        vec![
            check(ProbeCheck::PromptTokens, Verdict::Fail, Some(30)),
            check(ProbeCheck::MaxTokens, Verdict::Fail, Some(200)),
            check(ProbeCheck::ToolCall, Verdict::Unknown, None),
        ],
    );
    let other_model = run(
        "bad",
        "a-model",
        500,
        vec![check(ProbeCheck::Plain, Verdict::Pass, Some(-1))],
    );
    let honest = run(
        "Honest",
        "m",
        1_500,
        vec![check(ProbeCheck::ModelId, Verdict::Pass, None)],
    );
    for r in [&new, &old, &other_model, &honest] {
        fx.ledger.save_probe(r).await.unwrap();
    }
    let got = fx.ledger.latest_probes().await.unwrap();
    let mut want_new = new.clone();
    want_new.checks.sort_by_key(|c| c.check);
    // Upper case first (bytewise), then by model.
    assert_eq!(got, vec![honest, other_model, want_new]);
}

async fn probes_same_run_again_replaces_it(fx: Fixture) {
    let first = run(
        "u",
        "m",
        7,
        vec![check(ProbeCheck::ToolCall, Verdict::Fail, None)],
    );
    fx.ledger.save_probe(&first).await.unwrap();
    let again = run(
        "u",
        "m",
        7,
        vec![check(ProbeCheck::ToolCall, Verdict::Pass, Some(12))],
    );
    fx.ledger.save_probe(&again).await.unwrap();
    assert_eq!(fx.ledger.latest_probes().await.unwrap(), vec![again]);
}
