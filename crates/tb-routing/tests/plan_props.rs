//! Properties of the planner over random candidates: it never drops a
//! candidate below `min(max_attempts, n)`, never plans an upstream twice,
//! keeps unbenched candidates ahead of benched ones, and is deterministic.

use std::collections::HashSet;

use proptest::prelude::*;
use tb_routing::{
    Candidate, ManualPolicy, PlanInput, PlanMode, Scorer, StickyHint, StickyStatus, plan,
};

const NOW: i64 = 1_000_000;

fn candidate() -> impl Strategy<Value = Candidate> {
    (
        (any::<bool>(), 0u8..=120, prop::option::of(0u64..5_000)),
        (
            prop::option::of(0u64..5_000),
            prop::option::of(0u64..5_000),
            prop::option::of(-10.0f64..400.0),
        ),
        (
            prop::option::of(0u32..1_200_000),
            prop::option::of(0u64..50_000_000),
            prop::option::of(NOW - 100..NOW + 100),
            any::<bool>(),
        ),
    )
        .prop_map(
            |((default, health, ttft), (probe, avg, tps), (discount, price, benched, half))| {
                Candidate {
                    is_default_seller: default,
                    health_score: health,
                    ttft_ms: ttft,
                    probe_latency_ms: probe,
                    avg_latency_ms: avg,
                    tokens_per_second: tps,
                    discount_ppm: discount,
                    price_usd_micros_per_1m: price,
                    benched_until_ms: benched,
                    half_open: half,
                    ..Candidate::default()
                }
            },
        )
}

fn mode() -> impl Strategy<Value = PlanMode> {
    prop_oneof![
        Just(PlanMode::FullAuto),
        Just(PlanMode::FixedSet),
        Just(PlanMode::Fixed),
        any::<bool>().prop_map(|auto_sort| PlanMode::Manual {
            policy: ManualPolicy::Fallback,
            auto_sort
        }),
        any::<bool>().prop_map(|auto_sort| PlanMode::Manual {
            policy: ManualPolicy::Locked,
            auto_sort
        }),
    ]
}

fn scorer() -> impl Strategy<Value = Scorer> {
    prop::sample::select(Scorer::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plan_is_complete_distinct_and_ordered(
        mut cands in prop::collection::vec(candidate(), 0..60),
        mode in mode(),
        scorer in scorer(),
        max_attempts in 0usize..70,
        sticky in prop::option::of((0usize..80, NOW - 50..NOW + 50)),
    ) {
        for (i, c) in cands.iter_mut().enumerate() {
            c.id = format!("u{i}").into();
            c.registry_order = i;
        }
        let n = cands.len();
        let sticky = sticky.map(|(k, until_ms)| StickyHint {
            upstream_id: format!("u{k}").into(),
            until_ms,
        });
        let input = PlanInput {
            candidates: &cands,
            mode,
            scorer,
            max_attempts,
            now_ms: NOW,
            sticky: sticky.clone(),
        };
        let p = plan(input.clone());
        let locked = matches!(mode, PlanMode::Manual { policy: ManualPolicy::Locked, .. });
        let cap = if locked { 1 } else { max_attempts.max(1) };

        // Never drops below min(max_attempts, n); never more.
        prop_assert_eq!(p.order.len(), cap.min(n));
        prop_assert_eq!(p.diagnostics.left_out, n - p.order.len());
        // Never duplicates, never out of range.
        let distinct: HashSet<usize> = p.order.iter().copied().collect();
        prop_assert_eq!(distinct.len(), p.order.len());
        prop_assert!(p.order.iter().all(|&i| i < n));

        // Benched ones only behind unbenched ones (after a sticky head),
        // soonest to recover first.
        let head = usize::from(matches!(
            p.diagnostics.sticky,
            StickyStatus::Applied | StickyStatus::AlreadyFirst
        ));
        let rest = &p.order[head.min(p.order.len())..];
        if !locked {
            let benched: Vec<bool> = rest.iter().map(|&i| cands[i].is_benched(NOW)).collect();
            prop_assert!(benched.windows(2).all(|w| w[0] <= w[1]), "{:?}", benched);
            let untils: Vec<i64> = rest
                .iter()
                .filter(|&&i| cands[i].is_benched(NOW))
                .filter_map(|&i| cands[i].benched_until_ms)
                .collect();
            prop_assert!(untils.windows(2).all(|w| w[0] <= w[1]), "{:?}", untils);
            // With enough room, every candidate is planned even if all are
            // benched.
            if cap >= n {
                prop_assert_eq!(p.order.len(), n);
            }
        } else if n > 0 {
            prop_assert_eq!(p.order[0], 0);
        }
        let benched_total = cands.iter().filter(|c| c.is_benched(NOW)).count();
        prop_assert_eq!(p.diagnostics.benched, benched_total);
        prop_assert_eq!(p.diagnostics.all_benched, n > 0 && benched_total == n);

        // Sticky applied ⇒ it is first.
        if head == 1 {
            let hint = sticky.as_ref().map(|h| h.upstream_id.clone());
            prop_assert_eq!(Some(cands[p.order[0]].id.clone()), hint);
        }

        // Deterministic, and a larger cap only extends the plan.
        prop_assert_eq!(&plan(input.clone()), &p);
        let longer = plan(PlanInput { max_attempts: max_attempts.max(1) + 5, ..input });
        prop_assert_eq!(&longer.order[..p.order.len()], &p.order[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Repeated upstream ids (a caller bug, or one upstream listed twice)
    /// are planned once and do not use up attempts.
    #[test]
    fn repeated_ids_are_planned_once(
        mut cands in prop::collection::vec(candidate(), 0..80),
        id_pool in 1usize..40,
        mode in mode(),
        scorer in scorer(),
        max_attempts in 0usize..60,
    ) {
        for (i, c) in cands.iter_mut().enumerate() {
            c.id = format!("u{}", (i * 7 + 3) % id_pool).into();
            c.registry_order = i;
        }
        let ids: HashSet<&str> = cands.iter().map(|c| &*c.id).collect();
        let p = plan(PlanInput {
            candidates: &cands,
            mode,
            scorer,
            max_attempts,
            now_ms: NOW,
            sticky: None,
        });
        let locked = matches!(mode, PlanMode::Manual { policy: ManualPolicy::Locked, .. });
        let cap = if locked { 1 } else { max_attempts.max(1) };
        prop_assert_eq!(p.order.len(), cap.min(ids.len()));
        let planned: HashSet<&str> = p.order.iter().map(|&i| &*cands[i].id).collect();
        prop_assert_eq!(planned.len(), p.order.len());
    }
}
