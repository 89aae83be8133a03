//! Tiered prices: every rule of `ModelPrice::tiered` on synthetic entries,
//! the billed-tier label both ways, and the three acceptance calls of
//! issue 16 priced from the real table to the micro.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use tb_prices::{
    BilledTier, Mode, ModelPrice, ServiceTier, Threshold, TierPrices, TokenCounts, TokenPrices,
    cost_usd_micros, get,
};

use ServiceTier::{Flex, Priority, Standard};

const fn p(input: Option<u64>, output: Option<u64>, read: Option<u64>) -> TokenPrices {
    TokenPrices {
        input,
        output,
        cache_read: read,
        cache_write: None,
        cache_write_1h: None,
    }
}

const BASE: TokenPrices = TokenPrices {
    input: Some(100),
    output: Some(1_000),
    cache_read: Some(10),
    cache_write: Some(125),
    cache_write_1h: Some(200),
};

const fn tier(service: ServiceTier, above: Option<Threshold>, tokens: TokenPrices) -> TierPrices {
    TierPrices {
        service,
        above,
        tokens,
    }
}

const fn model(tiers: &'static [TierPrices]) -> ModelPrice {
    ModelPrice {
        id: "m",
        provider: "openai",
        mode: Mode::Chat,
        tokens: BASE,
        tiers,
        image_tokens: TokenPrices::NONE,
        per_image: &[],
        per_image_any_size: None,
    }
}

/// Priority publishes input and output but no cache-read price; flex all three.
const SERVICE: ModelPrice = model(&[
    tier(Priority, None, p(Some(200), Some(2_000), None)),
    tier(Flex, None, p(Some(50), Some(500), Some(5))),
]);

/// Two thresholds (100 and 200, "over"), a priority tier, a priority price
/// above 200 for input only, and a 1-hour write price above 200.
const LENGTH: ModelPrice = model(&[
    tier(
        Standard,
        Some(Threshold::Over(100)),
        p(Some(150), Some(1_500), Some(15)),
    ),
    tier(
        Standard,
        Some(Threshold::Over(200)),
        TokenPrices {
            cache_write_1h: Some(400),
            ..p(Some(300), Some(3_000), None)
        },
    ),
    tier(Priority, None, p(Some(200), Some(2_000), Some(20))),
    tier(
        Priority,
        Some(Threshold::Over(200)),
        p(Some(600), None, None),
    ),
    tier(Flex, None, p(Some(50), None, None)),
]);

fn counts(input: u64) -> TokenCounts {
    TokenCounts {
        input,
        ..TokenCounts::default()
    }
}

fn billed(service: ServiceTier, above: Option<Threshold>, cache_write_1h: bool) -> BilledTier {
    BilledTier {
        service,
        above,
        cache_write_1h,
    }
}

#[test]
fn no_tiers_is_the_base_price_whatever_the_answer_says() {
    let plain = model(&[]);
    for service in [Standard, Priority, Flex] {
        for input in [0, 1, 200_001, u64::MAX] {
            let t = plain.tiered(service, counts(input));
            assert_eq!(t.prices, BASE);
            assert_eq!(t.tier, BilledTier::STANDARD, "{service} {input}");
            assert_eq!(t.tier.to_string(), "standard");
        }
    }
}

#[test]
fn service_tiers_fall_back_class_by_class() {
    let t = SERVICE.tiered(Priority, counts(10));
    assert_eq!(t.tier, billed(Priority, None, false));
    // Priority input and output; cache prices from the base.
    assert_eq!(
        t.prices,
        TokenPrices {
            input: Some(200),
            output: Some(2_000),
            ..BASE
        }
    );
    let t = SERVICE.tiered(Flex, counts(10));
    assert_eq!(t.tier.to_string(), "flex");
    assert_eq!(
        t.prices,
        TokenPrices {
            input: Some(50),
            output: Some(500),
            cache_read: Some(5),
            ..BASE
        }
    );
    // Standard is the base, and a length never matters without thresholds.
    assert_eq!(SERVICE.tiered(Standard, counts(u64::MAX)).prices, BASE);
}

#[test]
fn a_service_tier_the_model_does_not_publish_is_billed_standard() {
    const ONLY_FLEX: ModelPrice = model(&[tier(Flex, None, p(Some(50), None, None))]);
    let t = ONLY_FLEX.tiered(Priority, counts(10));
    assert_eq!((t.prices, t.tier), (BASE, BilledTier::STANDARD));
}

#[test]
fn thresholds_bill_the_whole_call_above_the_highest_one_passed() {
    // Not over 100: base.
    for input in [0, 99, 100] {
        let t = LENGTH.tiered(Standard, counts(input));
        assert_eq!((t.prices, t.tier), (BASE, BilledTier::STANDARD), "{input}");
    }
    // Over 100, not over 200: the 100 tier, the rest from the base.
    for input in [101, 200] {
        let t = LENGTH.tiered(Standard, counts(input));
        assert_eq!(t.tier, billed(Standard, Some(Threshold::Over(100)), false));
        assert_eq!(
            t.prices,
            TokenPrices {
                input: Some(150),
                output: Some(1_500),
                cache_read: Some(15),
                ..BASE
            },
            "{input}"
        );
    }
    // Over 200: the 200 tier; its missing cache-read price is the base one
    // (not the 100 tier's: one threshold applies, as LiteLLM reads them).
    let t = LENGTH.tiered(Standard, counts(201));
    assert_eq!(t.tier.to_string(), "above_200");
    assert_eq!(
        t.prices,
        TokenPrices {
            input: Some(300),
            output: Some(3_000),
            cache_write_1h: Some(400),
            ..BASE
        }
    );
}

#[test]
fn at_least_thresholds_include_the_count() {
    const XAI: ModelPrice = model(&[tier(
        Standard,
        Some(Threshold::AtLeast(200)),
        p(Some(300), None, None),
    )]);
    assert_eq!(XAI.tiered(Standard, counts(199)).prices, BASE);
    let t = XAI.tiered(Standard, counts(200));
    assert_eq!(t.prices.input, Some(300));
    assert_eq!(t.tier.to_string(), "from_200");
}

#[test]
fn a_threshold_without_a_standard_input_price_is_not_one() {
    // Only a priority price above 100 (no `input_cost_per_token_above_…`):
    // LiteLLM never reads it as a threshold.
    const M: ModelPrice = model(&[
        tier(Priority, None, p(Some(200), None, None)),
        tier(
            Priority,
            Some(Threshold::Over(100)),
            p(Some(900), None, None),
        ),
        tier(Standard, Some(Threshold::Over(100)), p(None, Some(5), None)),
    ]);
    let t = M.tiered(Priority, counts(1_000));
    assert_eq!(t.tier, billed(Priority, None, false));
    assert_eq!(t.prices.input, Some(200));
}

#[test]
fn service_and_threshold_combine() {
    // Priority over 200: its own input price, the standard above-200 output
    // price, the priority cache-read price, the base cache-write price, the
    // above-200 1-hour price.
    let t = LENGTH.tiered(Priority, counts(201));
    assert_eq!(t.tier.to_string(), "priority+above_200");
    assert_eq!(
        t.prices,
        TokenPrices {
            input: Some(600),
            output: Some(3_000),
            cache_read: Some(20),
            cache_write: Some(125),
            cache_write_1h: Some(400),
        }
    );
    // Priority over 100 (no priority price above 100): the standard
    // above-100 prices win over the priority ones.
    let t = LENGTH.tiered(Priority, counts(150));
    assert_eq!(t.tier.to_string(), "priority+above_100");
    assert_eq!(t.prices.input, Some(150));
    // Flex over 200: no flex price above 200, so the standard above-200 ones.
    let t = LENGTH.tiered(Flex, counts(201));
    assert_eq!(t.tier.to_string(), "flex+above_200");
    assert_eq!(t.prices.input, Some(300));
    // Flex under every threshold: flex input, base output.
    let t = LENGTH.tiered(Flex, counts(5));
    assert_eq!((t.prices.input, t.prices.output), (Some(50), Some(1_000)));
}

#[test]
fn one_hour_writes_are_labelled_only_when_made_and_priced() {
    let with_1h = |input, write, write_1h| TokenCounts {
        input,
        cache_write: write,
        cache_write_1h: write_1h,
        ..TokenCounts::default()
    };
    // Made and priced.
    let t = SERVICE.tiered(Standard, with_1h(10, 10, 4));
    assert_eq!(t.tier.to_string(), "cache_write_1h");
    // Priced, none made (the clamp counts too: no cache writes at all).
    assert!(
        !SERVICE
            .tiered(Standard, with_1h(10, 10, 0))
            .tier
            .cache_write_1h
    );
    assert!(
        !SERVICE
            .tiered(Standard, with_1h(10, 0, 4))
            .tier
            .cache_write_1h
    );
    // Made, not priced: billed at the 5-minute price, not labelled.
    let no_1h = ModelPrice {
        tokens: TokenPrices {
            cache_write_1h: None,
            ..BASE
        },
        ..model(&[])
    };
    let t = no_1h.tiered(Standard, with_1h(10, 10, 4));
    assert_eq!(t.tier, BilledTier::STANDARD);
    // 6 × 125 + 4 × 125 (no 1-hour price) = 1_250 → 1 micro (rounded up).
    assert_eq!(cost_usd_micros(&t.prices, with_1h(10, 10, 4)), Some(1));
    // Every part at once.
    let t = LENGTH.tiered(Priority, with_1h(1_000, 500, 500));
    assert_eq!(t.tier.to_string(), "priority+above_200+cache_write_1h");
}

#[test]
fn labels_read_back_exactly() {
    let mut all = Vec::new();
    for service in [Standard, Priority, Flex] {
        for above in [
            None,
            Some(Threshold::Over(200_000)),
            Some(Threshold::Over(272_000)),
            Some(Threshold::AtLeast(200_000)),
            Some(Threshold::Over(128)),
            Some(Threshold::AtLeast(1_500)),
        ] {
            for cache_write_1h in [false, true] {
                all.push(billed(service, above, cache_write_1h));
            }
        }
    }
    for tier in all {
        let text = tier.to_string();
        assert_eq!(text.parse::<BilledTier>(), Ok(tier), "{text}");
    }
    assert_eq!(
        billed(Priority, Some(Threshold::Over(200_000)), true).to_string(),
        "priority+above_200k+cache_write_1h"
    );
    assert_eq!(
        billed(Standard, Some(Threshold::AtLeast(1_500)), false).to_string(),
        "from_1500"
    );
    for bad in [
        "",
        "Standard",
        "standard+priority",
        "priority+standard",
        "above_200k+priority",
        "priority+priority",
        "cache_write_1h+flex",
        "above_",
        "above_k",
        "above_200m",
        "above_200000",
        "above_-1k",
        "flex+",
        "+flex",
        "scale",
        "above_99999999999999999999k",
    ] {
        assert!(bad.parse::<BilledTier>().is_err(), "{bad:?}");
    }
}

#[test]
fn service_tier_names() {
    for (answer, tier) in [
        ("priority", Priority),
        ("PRIORITY", Priority),
        (" fast ", Priority),
        ("flex", Flex),
        ("default", Standard),
        ("auto", Standard),
        ("standard", Standard),
        ("scale", Standard),
        ("batch", Standard),
        ("", Standard),
        ("something-new", Standard),
    ] {
        assert_eq!(ServiceTier::from_answer(answer), tier, "{answer:?}");
    }
    for (flag, tier) in [
        ("standard", Standard),
        ("default", Standard),
        ("priority", Priority),
        ("flex", Flex),
    ] {
        assert_eq!(flag.parse::<ServiceTier>(), Ok(tier));
    }
    let err = "turbo".parse::<ServiceTier>().unwrap_err();
    assert!(
        err.to_string().contains("standard, priority or flex"),
        "{err}"
    );
}

/// The acceptance calls of issue 16, from the real table, to the micro.
#[test]
fn acceptance_calls_cost_what_the_provider_bills() {
    // Gemini 2.5 Pro, 300k input (50k of it cache reads), 2k output: the
    // whole call above 200k: 250k × $2.50 + 50k × $0.25 + 2k × $15
    // = $0.625 + $0.0125 + $0.03.
    let gemini = get("gemini-2.5-pro").unwrap();
    let c = TokenCounts {
        input: 300_000,
        cached: 50_000,
        output: 2_000,
        ..TokenCounts::default()
    };
    let t = gemini.tiered(Standard, c);
    assert_eq!(t.tier.to_string(), "above_200k");
    assert_eq!(cost_usd_micros(&t.prices, c), Some(667_500));
    // The same call under 200k is billed at the base rates: 2× and 1.5×.
    let short = TokenCounts {
        input: 200_000,
        ..c
    };
    let base = gemini.tiered(Standard, short);
    assert_eq!(base.tier, BilledTier::STANDARD);
    // 150k × $1.25 + 50k × $0.125 + 2k × $10
    assert_eq!(cost_usd_micros(&base.prices, short), Some(213_750));

    // GPT-5, priority: 10k input (1k cached), 500 output, each at 2×:
    // 9k × $2.50 + 1k × $0.25 + 500 × $20.
    let gpt5 = get("gpt-5").unwrap();
    let c = TokenCounts {
        input: 10_000,
        cached: 1_000,
        output: 500,
        ..TokenCounts::default()
    };
    let t = gpt5.tiered(Priority, c);
    assert_eq!(t.tier.to_string(), "priority");
    assert_eq!(cost_usd_micros(&t.prices, c), Some(32_750));
    assert_eq!(gpt5.cost_usd_micros(c), Some(16_375), "standard is half");
    let flex = gpt5.tiered(Flex, c);
    assert_eq!(cost_usd_micros(&flex.prices, c), Some(8_188)); // 8_187.5 rounded up

    // Claude Sonnet 4.5, 1-hour cache write: 100 fresh + 10k written for
    // 1 hour, 200 output: 100 × $3 + 10k × $6 + 200 × $15.
    let sonnet = get("claude-sonnet-4-5").unwrap();
    let c = TokenCounts {
        input: 10_100,
        cache_write: 10_000,
        cache_write_1h: 10_000,
        output: 200,
        ..TokenCounts::default()
    };
    let t = sonnet.tiered(Standard, c);
    assert_eq!(t.tier.to_string(), "cache_write_1h");
    assert_eq!(cost_usd_micros(&t.prices, c), Some(63_300));
    // As 5-minute writes: 10k × $3.75.
    let five = TokenCounts {
        cache_write_1h: 0,
        ..c
    };
    assert_eq!(cost_usd_micros(&t.prices, five), Some(40_800));
}

proptest! {
    /// Every table entry, any answer: standard under every threshold is
    /// the base price; the tier label always reads back; a class the base
    /// prices stays priced in every tier (a tier never makes a call
    /// unpriced).
    #[test]
    fn table_entries_tier_sanely(
        index in 0usize..10_000,
        service in prop::sample::select(vec![Standard, Priority, Flex]),
        input in 0u64..2_000_000,
        write_1h in 0u64..1_000,
    ) {
        let table = tb_prices::table();
        let m = &table[index % table.len()];
        let c = TokenCounts { input, cache_write: write_1h, cache_write_1h: write_1h, ..TokenCounts::default() };
        let t = m.tiered(service, c);
        prop_assert_eq!(t.tier.to_string().parse::<BilledTier>(), Ok(t.tier));
        for (tiered, base) in [
            (t.prices.input, m.tokens.input),
            (t.prices.output, m.tokens.output),
            (t.prices.cache_read, m.tokens.cache_read),
            (t.prices.cache_write, m.tokens.cache_write),
            (t.prices.cache_write_1h, m.tokens.cache_write_1h),
        ] {
            prop_assert!(base.is_none() || tiered.is_some());
        }
        let lowest = m.tiers.iter().filter_map(|t| t.above).map(|a| a.tokens()).min();
        if service == Standard && lowest.is_none_or(|l| input < l) {
            prop_assert_eq!(t.prices, m.tokens);
            prop_assert_eq!(t.tier.above, None);
        }
    }
}
