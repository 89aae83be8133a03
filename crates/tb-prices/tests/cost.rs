//! Integer costs: tokens, prompt-cache savings, images, discounts and fees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use tb_prices::{
    ImageCost, ImageCostBasis, ImageTokenCounts, ImageUsage, Ppm, RatioError, TokenCounts,
    TokenPrices, apply_discount, apply_fee, cached_saving, cost_usd_micros, get,
    image_cost_usd_micros, price_for,
};

fn counts(input: u64, cached: u64, cache_write: u64, output: u64) -> TokenCounts {
    TokenCounts {
        input,
        cached,
        cache_write,
        cache_write_1h: 0,
        output,
    }
}

/// $3 / $15 / $0.30 read / $3.75 write / $6 1-hour write
/// (claude-sonnet-4-5's list prices).
const SONNET: TokenPrices = TokenPrices {
    input: Some(3_000_000),
    output: Some(15_000_000),
    cache_read: Some(300_000),
    cache_write: Some(3_750_000),
    cache_write_1h: Some(6_000_000),
};

#[test]
fn claude_sonnet_4_5_example() {
    let price = price_for("claude-sonnet-4-5").unwrap().price;
    assert_eq!(price.tokens, SONNET);
    // (1_000_000 − 200_000) × 3_000_000 + 200_000 × 300_000
    //   + 100_000 × 15_000_000 = 3_960_000_000_000 → ÷ 1M = 3_960_000 ($3.960000)
    let c = counts(1_000_000, 200_000, 0, 100_000);
    assert_eq!(price.cost_usd_micros(c), Some(3_960_000));
    assert_eq!(cost_usd_micros(&price.tokens, c), Some(3_960_000));
    // 200_000 × (3_000_000 − 300_000) ÷ 1M
    assert_eq!(price.cached_saving(c), Some(540_000));
}

#[test]
fn token_costs() {
    let no_cache = TokenPrices {
        input: Some(2_500_000),
        output: Some(10_000_000),
        cache_read: None,
        cache_write: None,
        cache_write_1h: None,
    };
    let no_output = TokenPrices {
        input: Some(5_000_000),
        output: None,
        cache_read: None,
        cache_write: None,
        cache_write_1h: None,
    };
    let cases = [
        // Nothing used costs nothing.
        (SONNET, counts(0, 0, 0, 0), Some(0)),
        // Exact: no rounding needed.
        (SONNET, counts(1_000, 0, 0, 1), Some(3_015)),
        // 1 token × $3/1M = 3 micros.
        (SONNET, counts(1, 0, 0, 0), Some(3)),
        // 1 cached token × $0.30/1M = 0.3 micros → rounded up to 1.
        (SONNET, counts(1, 1, 0, 0), Some(1)),
        // Rounded up once at the end, not per term: 0.3 + 0.3 + 3.75 → 5.
        (SONNET, counts(3, 2, 1, 0), Some(5)),
        // Cache writes at their own price.
        (
            SONNET,
            counts(1_000_000, 200_000, 100_000, 100_000),
            Some(4_035_000),
        ),
        // cached + cache_write clamped to input: cached first (to 10), then
        // cache_write to what is left (0).
        (SONNET, counts(10, 50, 50, 0), Some(3)),
        // cache_write clamped to input − cached: 10 − 4 = 6 written.
        (SONNET, counts(10, 4, 50, 0), Some(24)),
        // No cache prices: cache reads and writes billed at the input price.
        (no_cache, counts(1_000, 600, 400, 0), Some(2_500)),
        // A price needed for a non-zero count is unknown → unpriced.
        (no_output, counts(10, 0, 0, 1), None),
        // … but not when that count is zero.
        (no_output, counts(1_000_000, 0, 0, 0), Some(5_000_000)),
        (TokenPrices::NONE, counts(0, 0, 0, 0), Some(0)),
        (TokenPrices::NONE, counts(1, 0, 0, 0), None),
        // Overflow → None, never a wrapped number.
        (
            TokenPrices {
                input: Some(u64::MAX),
                output: Some(u64::MAX),
                cache_read: None,
                cache_write: None,
                cache_write_1h: None,
            },
            counts(u64::MAX, 0, 0, u64::MAX),
            None,
        ),
        // The largest representable result still works.
        (
            TokenPrices {
                input: Some(1_000_000),
                output: None,
                cache_read: None,
                cache_write: None,
                cache_write_1h: None,
            },
            counts(u64::MAX, 0, 0, 0),
            Some(u64::MAX),
        ),
    ];
    for (prices, c, want) in cases {
        assert_eq!(cost_usd_micros(&prices, c), want, "{prices:?} {c:?}");
    }
}

#[test]
fn table_costs() {
    for (model, c, want) in [
        // (234 × 2.5 + 1000 × 1.25 + 567 × 10) = 7_505 micros.
        ("gpt-4o", counts(1_234, 1_000, 0, 567), Some(7_505)),
        // 1 token × $0.28/1M = 0.28 micros → 1.
        ("deepseek-chat", counts(1, 0, 0, 0), Some(1)),
        // 1M fresh + 1M output: 0.28 + 0.42 dollars.
        (
            "deepseek-chat",
            counts(1_000_000, 0, 0, 1_000_000),
            Some(700_000),
        ),
        // DeepSeek's cache-write price is None: writes cost plain input.
        (
            "deepseek-chat",
            counts(1_000_000, 0, 1_000_000, 0),
            Some(280_000),
        ),
        (
            "deepseek-chat",
            counts(1_000_000, 1_000_000, 0, 0),
            Some(28_000),
        ),
    ] {
        let p = get(model).unwrap();
        assert_eq!(p.cost_usd_micros(c), want, "{model} {c:?}");
    }
}

#[test]
fn clamping_and_fresh_input() {
    assert_eq!(counts(10, 50, 50, 7).clamped(), counts(10, 10, 0, 7));
    assert_eq!(counts(10, 4, 50, 7).clamped(), counts(10, 4, 6, 7));
    assert_eq!(counts(10, 4, 3, 7).clamped(), counts(10, 4, 3, 7));
    assert_eq!(counts(10, 4, 3, 7).fresh_input(), 3);
    assert_eq!(counts(0, 5, 5, 0).fresh_input(), 0);
}

#[test]
fn cached_savings() {
    let no_read = TokenPrices {
        cache_read: None,
        ..SONNET
    };
    let pricier_read = TokenPrices {
        cache_read: Some(4_000_000),
        ..SONNET
    };
    let cases = [
        (SONNET, counts(1_000_000, 200_000, 0, 0), Some(540_000)),
        // Rounded down: 1 × 2.7 micros → 2.
        (SONNET, counts(1, 1, 0, 0), Some(2)),
        // Clamped like the cost: at most `input` tokens were cached.
        (SONNET, counts(10, 1_000_000, 0, 0), Some(27)),
        (SONNET, counts(1_000, 0, 500, 0), Some(0)),
        (no_read, counts(1_000, 1_000, 0, 0), Some(0)),
        (pricier_read, counts(1_000, 1_000, 0, 0), Some(0)),
        (TokenPrices::NONE, counts(1_000, 1_000, 0, 0), None),
        (TokenPrices::NONE, counts(1_000, 0, 0, 0), Some(0)),
    ];
    for (prices, c, want) in cases {
        assert_eq!(cached_saving(&prices, c), want, "{prices:?} {c:?}");
    }
}

fn usage<'a>(
    count: u64,
    quality: Option<&'a str>,
    size: Option<&'a str>,
    tokens: Option<ImageTokenCounts>,
) -> ImageUsage<'a> {
    ImageUsage {
        count,
        quality,
        size,
        tokens,
    }
}

#[test]
fn image_costs() {
    use ImageCostBasis::{AnySize, PerImage, Tokens};
    let cost = |usd_micros, basis| Some(ImageCost { usd_micros, basis });
    let gpt_image_tokens = ImageTokenCounts {
        text_input: 50,
        cached_text_input: 0,
        image_input: 0,
        cached_image_input: 0,
        output: 4_160,
    };
    let edit_tokens = ImageTokenCounts {
        text_input: 100,
        cached_text_input: 40,
        image_input: 1_000,
        cached_image_input: 200,
        output: 1_000,
    };
    let cases = [
        // Exact quality/size.
        (
            "gpt-image-1",
            usage(1, Some("low"), Some("1024x1024"), None),
            cost(11_000, PerImage("low/1024x1024")),
        ),
        (
            "gpt-image-1",
            usage(3, Some("high"), Some("1536x1024"), None),
            cost(750_000, PerImage("high/1536x1024")),
        ),
        // Case-insensitive.
        (
            "gpt-image-1",
            usage(1, Some("Medium"), Some("1024X1536"), None),
            cost(63_000, PerImage("medium/1024x1536")),
        ),
        // No such quality, no default/size, no any-size price → unpriced.
        (
            "gpt-image-1",
            usage(1, Some("auto"), Some("1024x1024"), None),
            None,
        ),
        ("gpt-image-1", usage(1, None, Some("1024x1024"), None), None),
        (
            "gpt-image-1",
            usage(1, Some("low"), Some("4096x4096"), None),
            None,
        ),
        ("gpt-image-1", usage(1, Some("low"), None, None), None),
        // Reported tokens win: 50 × $5 + 4_160 × $40 per 1M = 166_650 micros.
        (
            "gpt-image-1",
            usage(1, Some("low"), Some("1024x1024"), Some(gpt_image_tokens)),
            cost(166_650, Tokens),
        ),
        (
            "gpt-image-1",
            usage(1, Some("auto"), Some("1024x1024"), Some(gpt_image_tokens)),
            cost(166_650, Tokens),
        ),
        // An edit with cached text and image input, in USD per 1M tokens:
        // 60 × 5 + 40 × 1.25 (text cache read) + 800 × 10 + 200 × 2.5 (image
        // cache read) + 1_000 × 40 = 48_850 → $0.048850.
        (
            "gpt-image-1",
            usage(1, None, None, Some(edit_tokens)),
            cost(48_850, Tokens),
        ),
        // All-zero token usage is no usage: per-image price.
        (
            "gpt-image-1",
            usage(
                2,
                Some("low"),
                Some("1024x1024"),
                Some(ImageTokenCounts::default()),
            ),
            cost(22_000, PerImage("low/1024x1024")),
        ),
        // Quality unknown → default/size.
        (
            "gpt-image-1.5",
            usage(1, Some("auto"), Some("1024x1024"), None),
            cost(9_000, PerImage("default/1024x1024")),
        ),
        (
            "gpt-image-1.5",
            usage(2, None, Some("1536x1024"), None),
            cost(26_000, PerImage("default/1536x1024")),
        ),
        (
            "gpt-image-1.5",
            usage(1, Some("standard"), Some("1024x1536"), None),
            cost(13_000, PerImage("standard/1024x1536")),
        ),
        // No size match → the any-size price.
        (
            "grok-imagine-image-2.0",
            usage(1, Some("low"), Some("1024x1024"), None),
            cost(40_000, PerImage("low/1024x1024")),
        ),
        (
            "grok-imagine-image-2.0",
            usage(1, Some("high"), Some("1024x1024"), None),
            cost(60_000, AnySize),
        ),
        (
            "grok-imagine-image-2.0",
            usage(2, None, None, None),
            cost(120_000, AnySize),
        ),
        // Tokens reported, but no image-token prices: per-image price.
        (
            "grok-imagine-image",
            usage(1, None, None, Some(gpt_image_tokens)),
            cost(20_000, AnySize),
        ),
        (
            "qwen-image-2.0",
            usage(3, Some("hd"), Some("2048x2048"), None),
            cost(105_000, AnySize),
        ),
        // Zero images at a known price cost nothing.
        (
            "qwen-image-2.0",
            usage(0, None, None, None),
            cost(0, AnySize),
        ),
    ];
    for (model, u, want) in cases {
        let p = get(model).unwrap();
        assert_eq!(image_cost_usd_micros(p, &u), want, "{model} {u:?}");
        assert_eq!(p.image_cost(&u), want, "{model} {u:?}");
    }
}

#[test]
fn image_cost_overflow_is_none() {
    let p = get("gpt-image-1").unwrap();
    let u = usage(u64::MAX, Some("low"), Some("1024x1024"), None);
    assert_eq!(image_cost_usd_micros(p, &u), None);
}

#[test]
fn per_image_price_fallbacks() {
    let p = get("gpt-image-1.5").unwrap();
    assert_eq!(
        p.per_image_price(Some("high"), Some("1024x1024")),
        Some((ImageCostBasis::PerImage("high/1024x1024"), 133_000))
    );
    assert_eq!(
        p.per_image_price(Some("ultra"), Some("1024x1024")),
        Some((ImageCostBasis::PerImage("default/1024x1024"), 9_000))
    );
    assert_eq!(p.per_image_price(Some("high"), Some("1x1")), None);
    assert_eq!(p.per_image_price(None, None), None);
}

#[test]
fn ratios_parse_exactly() {
    for (text, ppm) in [
        ("0", 0),
        ("0.15", 150_000),
        (".5", 500_000),
        ("1", 1_000_000),
        ("1.", 1_000_000),
        ("0.000001", 1),
        ("0.0000005", 1),  // seventh decimal rounds half away from zero
        ("0.00000049", 0), // only the seventh decimal decides
        ("0.1234565", 123_457),
        ("0.1234564999", 123_456),
        ("2.5", 2_500_000),
        ("4294.967295", 4_294_967_295),
    ] {
        assert_eq!(Ppm::from_decimal_str(text), Ok(Ppm::new(ppm)), "{text}");
    }
    for text in ["", ".", "-0.1", "0,1", "1e-3", " 0.1", "abc", "1.2.3"] {
        assert!(
            matches!(Ppm::from_decimal_str(text), Err(RatioError::Syntax(_))),
            "{text:?}"
        );
    }
    for text in ["4294.967296", "99999999999999999999999"] {
        assert!(
            matches!(Ppm::from_decimal_str(text), Err(RatioError::TooLarge(_))),
            "{text:?}"
        );
    }
}

#[test]
fn ratios_display() {
    for (ppm, text) in [
        (0, "0"),
        (150_000, "0.15"),
        (1, "0.000001"),
        (1_000_000, "1"),
        (2_500_000, "2.5"),
    ] {
        assert_eq!(Ppm::new(ppm).to_string(), text);
        assert_eq!(Ppm::from_decimal_str(text), Ok(Ppm::new(ppm)));
    }
}

#[test]
fn discounts_and_fees_round_up() {
    for (amount, discount, want) in [
        (1_000_000, 150_000, 850_000),
        (3, 500_000, 2), // 1.5 → 2
        (1, 999_999, 1), // 0.000001 → 1
        (1, 0, 1),
        (0, 150_000, 0),
        (1_000_000, 1_000_000, 0),
        (1_000_000, 2_000_000, 0), // above 100 % counts as 100 %
        (u64::MAX, 0, u64::MAX),
        (u64::MAX, 1, u64::MAX - u64::MAX / 1_000_000),
    ] {
        assert_eq!(
            apply_discount(amount, Ppm::new(discount)),
            want,
            "{amount} − {discount} ppm"
        );
    }
    for (amount, fee, want) in [
        (1_000_000, 50_000, Some(1_050_000)),
        (1, 1, Some(2)), // 1.000001 → 2
        (100, 0, Some(100)),
        (0, 1_000_000, Some(0)),
        (u64::MAX, 0, Some(u64::MAX)),
        (u64::MAX, 1, None),
    ] {
        assert_eq!(
            apply_fee(amount, Ppm::new(fee)),
            want,
            "{amount} + {fee} ppm"
        );
    }
}

#[test]
fn effective_route_prices() {
    // A seller: table price × (1 − 10 %) × (1 + 5 %), each step rounded up.
    let effective = SONNET
        .discounted(Ppm::from_decimal_str("0.1").unwrap())
        .with_fee(Ppm::from_decimal_str("0.05").unwrap())
        .unwrap();
    assert_eq!(
        effective,
        TokenPrices {
            input: Some(2_835_000),
            output: Some(14_175_000),
            cache_read: Some(283_500),
            cache_write: Some(3_543_750),
            cache_write_1h: Some(5_670_000),
        }
    );
    assert_eq!(TokenPrices::NONE.discounted(Ppm::ONE), TokenPrices::NONE);
    assert_eq!(
        TokenPrices {
            input: Some(u64::MAX),
            ..TokenPrices::NONE
        }
        .with_fee(Ppm::new(1)),
        None
    );
}

proptest! {
    /// The cost is exactly the billing.md formula, ceil'd once, for any
    /// counts and prices (checked against an independent u128 evaluation).
    #[test]
    fn cost_matches_the_formula(
        input in 0u64..=10_000_000_000,
        cached in 0u64..=20_000_000_000,
        cache_write in 0u64..=20_000_000_000,
        output in 0u64..=10_000_000_000,
        p_in in 1u64..=1_000_000_000,
        p_out in 1u64..=1_000_000_000,
        p_read in proptest::option::of(1u64..=1_000_000_000),
        p_write in proptest::option::of(1u64..=1_000_000_000),
        write_1h in 0u64..=20_000_000_000,
        p_write_1h in proptest::option::of(1u64..=1_000_000_000),
    ) {
        let prices = TokenPrices { input: Some(p_in), output: Some(p_out), cache_read: p_read, cache_write: p_write, cache_write_1h: p_write_1h };
        let cached_c = cached.min(input);
        let write_c = cache_write.min(input - cached_c);
        let write_1h_c = write_1h.min(write_c);
        let fresh = input - cached_c - write_c;
        let n = u128::from(fresh) * u128::from(p_in)
            + u128::from(cached_c) * u128::from(p_read.unwrap_or(p_in))
            + u128::from(write_c - write_1h_c) * u128::from(p_write.unwrap_or(p_in))
            + u128::from(write_1h_c) * u128::from(p_write_1h.or(p_write).unwrap_or(p_in))
            + u128::from(output) * u128::from(p_out);
        let want = u64::try_from(n.div_ceil(1_000_000)).ok();
        let c = TokenCounts { cache_write_1h: write_1h, ..counts(input, cached, cache_write, output) };
        prop_assert_eq!(cost_usd_micros(&prices, c), want);
        // The saving is never more than the full cost of the cached tokens.
        let saving = cached_saving(&prices, counts(input, cached, cache_write, output)).unwrap();
        prop_assert!(u128::from(saving) * 1_000_000 <= u128::from(cached_c) * u128::from(p_in));
    }

    /// A discount never raises a price and a fee never lowers one.
    #[test]
    fn discount_and_fee_are_monotonic(amount in any::<u64>(), ppm in 0u32..=2_000_000) {
        prop_assert!(apply_discount(amount, Ppm::new(ppm)) <= amount);
        if let Some(with_fee) = apply_fee(amount, Ppm::new(ppm)) {
            prop_assert!(with_fee >= amount);
        }
    }
}
