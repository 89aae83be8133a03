//! The generated table: its invariants and the acceptance facts of
//! billing.md. (That the table matches the committed snapshot is checked by
//! xtask's `committed_table_is_up_to_date`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tb_prices::{
    Mode, ModelPrice, SOURCE_FILE, SOURCE_SHA256, ServiceTier, Threshold, TierPrices, TokenPrices,
    get, table,
};

const PROVIDERS: &[&str] = &[
    "openai",
    "anthropic",
    "gemini",
    "xai",
    "mistral",
    "deepseek",
    "dashscope",
    "moonshot",
    "minimax",
    "zai",
];

fn model(id: &str) -> &'static ModelPrice {
    get(id).unwrap_or_else(|| panic!("{id} is not in the table"))
}

fn prices(
    input: u64,
    output: u64,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
) -> TokenPrices {
    TokenPrices {
        input: Some(input),
        output: Some(output),
        cache_read,
        cache_write,
        cache_write_1h: None,
    }
}

#[test]
fn source_is_the_committed_snapshot() {
    assert_eq!(SOURCE_FILE, "litellm-model-prices-v1.109.1.json");
    assert_eq!(
        SOURCE_SHA256,
        "8f8060d8ce7a40c91b995c74d6a27657543d49e3c1c53430dabd556f244392c6"
    );
}

#[test]
fn ids_are_sorted_and_unique_so_binary_search_works() {
    let t = table();
    assert!(t.len() > 300, "{}", t.len());
    for pair in t.windows(2) {
        assert!(pair[0].id < pair[1].id, "{} !< {}", pair[0].id, pair[1].id);
    }
    for entry in t {
        assert!(std::ptr::eq(get(entry.id).unwrap(), entry), "{}", entry.id);
    }
}

#[test]
fn every_entry_is_well_formed() {
    for e in table() {
        let id = e.id;
        assert!(!id.is_empty() && !id.contains('/'), "{id}");
        assert!(PROVIDERS.contains(&e.provider), "{id}: {}", e.provider);
        if matches!(e.mode, Mode::Chat | Mode::Responses) {
            assert!(
                e.tokens.input.is_some() && e.tokens.output.is_some(),
                "{id}"
            );
            assert!(e.image_tokens.is_none() && e.per_image.is_empty(), "{id}");
            assert!(e.per_image_any_size.is_none(), "{id}");
        } else {
            let priced = !e.tokens.is_none()
                || !e.image_tokens.is_none()
                || !e.per_image.is_empty()
                || e.per_image_any_size.is_some();
            assert!(priced, "{id} has no price at all");
        }
        assert_eq!(e.image_tokens.cache_write, None, "{id}");
        assert_eq!(e.image_tokens.cache_write_1h, None, "{id}");
        // Tiers: sorted by (service, threshold), unique, never empty,
        // thresholds named by a positive count, no 0 price.
        for pair in e.tiers.windows(2) {
            let key = |t: &TierPrices| (t.service, t.above.map(|a| a.tokens()));
            assert!(key(&pair[0]) < key(&pair[1]), "{id}: tiers not sorted");
        }
        for t in e.tiers {
            assert!(!t.tokens.is_none(), "{id}: an empty tier");
            assert!(
                t.service != ServiceTier::Standard || t.above.is_some(),
                "{id}"
            );
            assert!(t.above.is_none_or(|a| a.tokens() > 0), "{id}");
            let over = matches!(t.above, None | Some(Threshold::Over(_)));
            assert_eq!(over, e.provider != "xai" || t.above.is_none(), "{id}");
            let p = t.tokens;
            let tier = [
                p.input,
                p.output,
                p.cache_read,
                p.cache_write,
                p.cache_write_1h,
            ];
            assert!(tier.iter().all(|p| *p != Some(0)), "{id}: {tier:?}");
        }
        // A missing price is None, never 0.
        let all = [
            e.tokens.input,
            e.tokens.output,
            e.tokens.cache_read,
            e.tokens.cache_write,
            e.tokens.cache_write_1h,
            e.image_tokens.input,
            e.image_tokens.output,
            e.image_tokens.cache_read,
            e.per_image_any_size,
        ];
        assert!(all.iter().all(|p| *p != Some(0)), "{id}: {all:?}");
        for pair in e.per_image.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{id}: per_image not sorted");
        }
        for (key, micros) in e.per_image {
            assert!(*micros > 0, "{id} {key}");
            let (quality, size) = key.split_once('/').unwrap();
            let (w, h) = size.split_once('x').unwrap();
            assert!(!quality.is_empty() && quality == quality.to_ascii_lowercase());
            assert!(
                w.parse::<u32>().is_ok() && h.parse::<u32>().is_ok(),
                "{id} {key}"
            );
        }
    }
}

#[test]
fn acceptance_prices() {
    // (id, provider, mode, text-token prices in USD micros per 1M)
    let cases = [
        // $2.50 / $10.00 / $1.25 cached.
        (
            "gpt-4o",
            "openai",
            Mode::Chat,
            prices(2_500_000, 10_000_000, Some(1_250_000), None),
        ),
        // $0.28 / $0.42 / $0.028 cached (2.8e-08 per token → 28_000 exactly).
        (
            "deepseek-chat",
            "deepseek",
            Mode::Chat,
            prices(280_000, 420_000, Some(28_000), None),
        ),
        // $3 / $15 / $0.30 cache read / $3.75 cache write.
        (
            "claude-sonnet-4-5",
            "anthropic",
            Mode::Chat,
            TokenPrices {
                cache_write_1h: Some(6_000_000),
                ..prices(3_000_000, 15_000_000, Some(300_000), Some(3_750_000))
            },
        ),
        (
            "claude-sonnet-4-5-20250929",
            "anthropic",
            Mode::Chat,
            TokenPrices {
                cache_write_1h: Some(6_000_000),
                ..prices(3_000_000, 15_000_000, Some(300_000), Some(3_750_000))
            },
        ),
        // The unprefixed DeepSeek entries win over dashscope's resale
        // (dashscope/deepseek-v4-flash is 0.20, …-pro 2.40), and DeepSeek's
        // `cache_creation_input_token_cost: 0.0` is a placeholder → None.
        (
            "deepseek-v4-flash",
            "deepseek",
            Mode::Chat,
            prices(300_000, 1_200_000, Some(6_000), None),
        ),
        (
            "deepseek-v4-pro",
            "deepseek",
            Mode::Chat,
            prices(1_320_000, 3_960_000, Some(44_000), None),
        ),
        (
            "o3-pro",
            "openai",
            Mode::Responses,
            prices(20_000_000, 80_000_000, None, None),
        ),
    ];
    for (id, provider, mode, tokens) in cases {
        let m = model(id);
        assert_eq!(
            (m.provider, m.mode, m.tokens),
            (provider, mode, tokens),
            "{id}"
        );
    }
}

#[test]
fn gpt_image_1_has_prices_per_quality_and_size() {
    let m = model("gpt-image-1");
    assert_eq!(m.mode, Mode::ImageGeneration);
    assert_eq!(
        m.per_image,
        &[
            ("high/1024x1024", 167_000),
            ("high/1024x1536", 250_000),
            ("high/1536x1024", 250_000),
            ("low/1024x1024", 11_000),
            ("low/1024x1536", 16_000),
            ("low/1536x1024", 16_000),
            ("medium/1024x1024", 42_000),
            ("medium/1024x1536", 63_000),
            ("medium/1536x1024", 63_000),
        ]
    );
    // Text prompt $5, image input $10, image output $40 per 1M tokens.
    assert_eq!(m.tokens.input, Some(5_000_000));
    assert_eq!(m.tokens.output, None);
    assert_eq!(
        m.image_tokens,
        TokenPrices {
            input: Some(10_000_000),
            output: Some(40_000_000),
            cache_read: Some(2_500_000),
            cache_write: None,
            cache_write_1h: None,
        }
    );
    assert_eq!(m.per_image_any_size, None);
}

/// (id, per_image, per_image_any_size)
type ImageCase = (&'static str, &'static [(&'static str, u64)], Option<u64>);

#[test]
fn other_image_models() {
    let cases: [ImageCase; 5] = [
        (
            "gpt-image-1.5",
            &[
                ("default/1024x1024", 9_000),
                ("default/1024x1536", 13_000),
                ("default/1536x1024", 13_000),
                ("high/1024x1024", 133_000),
                ("high/1024x1536", 200_000),
                ("high/1536x1024", 200_000),
                ("low/1024x1024", 9_000),
                ("low/1024x1536", 13_000),
                ("low/1536x1024", 13_000),
                ("medium/1024x1024", 34_000),
                ("medium/1024x1536", 50_000),
                ("medium/1536x1024", 50_000),
                ("standard/1024x1024", 9_000),
                ("standard/1024x1536", 13_000),
                ("standard/1536x1024", 13_000),
            ],
            None,
        ),
        (
            "grok-imagine-image-2.0",
            &[("low/1024x1024", 40_000)],
            Some(60_000),
        ),
        ("qwen-image-2.0", &[], Some(35_000)),
        // output_cost_per_image wins over input_cost_per_image (0.0011).
        ("gemini-3-pro-image", &[], Some(134_000)),
        ("imagen-3.0-generate-001", &[], Some(40_000)),
    ];
    for (id, per_image, any_size) in cases {
        let m = model(id);
        assert_eq!(m.mode, Mode::ImageGeneration, "{id}");
        assert_eq!(
            (m.per_image, m.per_image_any_size),
            (per_image, any_size),
            "{id}"
        );
    }
    // dashscope/qwen-image-3.0-pro has no price at all: not in the table.
    assert!(get("qwen-image-3.0-pro").is_none());
}

#[test]
fn embeddings_are_priced_on_input_only() {
    let e = get("text-embedding-3-small").expect("embedding models are kept");
    assert_eq!(e.mode, tb_prices::Mode::Embedding);
    assert_eq!(e.tokens.input, Some(20_000), "$0.02 per 1M");
}

#[test]
fn dropped_entries_are_absent() {
    for id in [
        "sample_spec",
        "ft:gpt-4o-2024-08-06",
        "glm-4.7-flash", // zai, priced 0/0: no positive price
        "whisper-1",
        "low/1024-x-1024/gpt-image-1",
        "1024-x-1024/gpt-image-1.5",
    ] {
        assert!(get(id).is_none(), "{id}");
    }
}

fn tier(service: ServiceTier, above: Option<Threshold>, tokens: TokenPrices) -> TierPrices {
    TierPrices {
        service,
        above,
        tokens,
    }
}

/// The tiers of the acceptance models, as LiteLLM 1.109.1 publishes them
/// (`…_above_200k_tokens`, `_priority`, `_flex`, `…_above_1hr`).
#[test]
fn golden_tiers() {
    use ServiceTier::{Flex, Priority, Standard};
    let over_200k = Some(Threshold::Over(200_000));
    // Gemini 2.5 Pro: 2× input and 1.5× output above 200k; priority 1.8×;
    // flex half; priority above 200k 3.6× / 2.7×.
    assert_eq!(
        model("gemini-2.5-pro").tiers,
        &[
            tier(
                Standard,
                over_200k,
                prices(2_500_000, 15_000_000, Some(250_000), None)
            ),
            tier(
                Priority,
                None,
                prices(2_250_000, 18_000_000, Some(225_000), None)
            ),
            tier(
                Priority,
                over_200k,
                prices(4_500_000, 27_000_000, Some(450_000), None)
            ),
            tier(Flex, None, prices(625_000, 5_000_000, Some(125_000), None)),
        ]
    );
    // GPT-5: priority 2×, flex half.
    assert_eq!(
        model("gpt-5").tiers,
        &[
            tier(
                Priority,
                None,
                prices(2_500_000, 20_000_000, Some(250_000), None)
            ),
            tier(Flex, None, prices(625_000, 5_000_000, Some(62_500), None)),
        ]
    );
    // Claude: a 1-hour cache write is 1.6× a 5-minute one ($6 vs $3.75);
    // no service or length tiers.
    for id in ["claude-sonnet-4-5", "claude-opus-4-6", "claude-haiku-4-5"] {
        let m = model(id);
        let write = m.tokens.cache_write.unwrap();
        assert_eq!(m.tokens.cache_write_1h, Some(write * 8 / 5), "{id}");
        assert!(m.tiers.is_empty(), "{id}");
    }
    // xAI reads its thresholds as "at least".
    assert_eq!(
        model("grok-4.20").tiers.first().map(|t| t.above),
        Some(Some(Threshold::AtLeast(200_000)))
    );
    // GPT-4o: a priority tier, nothing else (`_batches` is ignored).
    assert_eq!(
        model("gpt-4o").tiers,
        &[tier(
            Priority,
            None,
            prices(4_250_000, 17_000_000, Some(2_125_000), None)
        )]
    );
}
