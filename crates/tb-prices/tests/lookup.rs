//! `price_for` fallbacks, alone and combined, and `closest`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tb_prices::{LookupRule, closest, price_for};

const EXACT: LookupRule = LookupRule::EXACT;
const P: LookupRule = LookupRule {
    provider_removed: true,
    separator_swapped: false,
    suffix_removed: false,
};
const S: LookupRule = LookupRule {
    provider_removed: false,
    separator_swapped: true,
    suffix_removed: false,
};
const D: LookupRule = LookupRule {
    provider_removed: false,
    separator_swapped: false,
    suffix_removed: true,
};
const PS: LookupRule = LookupRule {
    provider_removed: true,
    separator_swapped: true,
    suffix_removed: false,
};
const PD: LookupRule = LookupRule {
    provider_removed: true,
    separator_swapped: false,
    suffix_removed: true,
};
const SD: LookupRule = LookupRule {
    provider_removed: false,
    separator_swapped: true,
    suffix_removed: true,
};
const PSD: LookupRule = LookupRule {
    provider_removed: true,
    separator_swapped: true,
    suffix_removed: true,
};

#[test]
fn fallbacks_alone_and_combined() {
    let cases = [
        // As given.
        ("gpt-4o", "gpt-4o", EXACT),
        ("gpt-4.1", "gpt-4.1", EXACT),
        (
            "claude-sonnet-4-5-20250929",
            "claude-sonnet-4-5-20250929",
            EXACT,
        ),
        ("gpt-5-chat-latest", "gpt-5-chat-latest", EXACT),
        // A leading provider/ removed.
        ("openai/gpt-4o", "gpt-4o", P),
        ("deepseek/deepseek-chat", "deepseek-chat", P),
        (
            "anything/gpt-4o-mini-2024-07-18",
            "gpt-4o-mini-2024-07-18",
            P,
        ),
        // The official entry, whoever resells it.
        ("dashscope/deepseek-v4-flash", "deepseek-v4-flash", P),
        // A version separator between two digits swapped, both ways.
        ("claude-sonnet-4.5", "claude-sonnet-4-5", S),
        ("claude-opus-4.6", "claude-opus-4-6", S),
        ("gpt-4-1", "gpt-4.1", S),
        ("gemini-2-5-flash", "gemini-2.5-flash", S),
        ("kimi-k2-5", "kimi-k2.5", S),
        ("grok-4-20", "grok-4.20", S),
        // Each separator alone, left to right: `10-2025` stays as it is.
        ("gpt-4-1-mini", "gpt-4.1-mini", S),
        (
            "gemini-2-5-computer-use-preview-10-2025",
            "gemini-2.5-computer-use-preview-10-2025",
            S,
        ),
        // A trailing -YYYYMMDD or -latest removed.
        ("claude-sonnet-4-6-20260101", "claude-sonnet-4-6", D),
        ("gpt-4o-latest", "gpt-4o", D),
        ("grok-4.7-latest", "grok-4.7", D),
        // Provider + separator.
        ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5", PS),
        ("openai/gpt-4-1-nano", "gpt-4.1-nano", PS),
        // Provider + suffix.
        (
            "anthropic/claude-sonnet-4-6-20260101",
            "claude-sonnet-4-6",
            PD,
        ),
        ("openai/gpt-4o-latest", "gpt-4o", PD),
        // Separator + suffix.
        ("claude-sonnet-4.6-20260101", "claude-sonnet-4-6", SD),
        ("gemini-2-5-pro-latest", "gemini-2.5-pro", SD),
        // All three.
        (
            "anthropic/claude-sonnet-4.6-20260101",
            "claude-sonnet-4-6",
            PSD,
        ),
        ("anthropic/claude-opus-4.5-latest", "claude-opus-4-5", PSD),
    ];
    for (asked, resolved, rule) in cases {
        let found = price_for(asked).unwrap_or_else(|| panic!("{asked} not found"));
        assert_eq!((found.resolved, found.rule), (resolved, rule), "{asked}");
        assert_eq!(found.price.id, found.resolved, "{asked}");
    }
}

#[test]
fn earlier_rules_win() {
    // `claude-sonnet-4-5-20250929` exists itself: no suffix removal.
    let found = price_for("anthropic/claude-sonnet-4-5-20250929").unwrap();
    assert_eq!(
        (found.resolved, found.rule),
        ("claude-sonnet-4-5-20250929", P)
    );
    // Both glm-5.2 and glm-5-2 exist: each is found as given.
    assert_eq!(price_for("glm-5.2").unwrap().resolved, "glm-5.2");
    assert_eq!(price_for("glm-5-2").unwrap().resolved, "glm-5-2");
}

#[test]
fn unknown_models_are_unpriced() {
    for asked in [
        "",
        "/",
        "openai/",
        "/gpt-4o",
        "no-such-model",
        "gpt-4o/",
        "gpt-4o-2099-01-01", // only -YYYYMMDD dates are removed
        "gpt-4o-2099010",    // 7 digits: not a date
        "gpt-4o-latest-latest",
        "claude-sonnet-4..5",
        "-latest",
    ] {
        assert!(price_for(asked).is_none(), "{asked:?} should be unpriced");
    }
}

#[test]
fn rules_display_for_the_prices_command() {
    for (rule, text) in [
        (EXACT, "exact"),
        (P, "provider prefix removed"),
        (S, "version separator swapped"),
        (D, "date suffix removed"),
        (PS, "provider prefix removed + version separator swapped"),
        (PD, "provider prefix removed + date suffix removed"),
        (SD, "version separator swapped + date suffix removed"),
        (
            PSD,
            "provider prefix removed + version separator swapped + date suffix removed",
        ),
    ] {
        assert_eq!(rule.to_string(), text);
        assert_eq!(rule.is_exact(), text == "exact");
    }
}

#[test]
fn closest_ids_for_an_unknown_model() {
    assert_eq!(closest("gpt-4o-mni", 1), ["gpt-4o-mini"]);
    assert_eq!(closest("openai/claude-sonet-4-5", 1), ["claude-sonnet-4-5"]);
    assert_eq!(closest("DeepSeek-Chat", 1), ["deepseek-chat"]);
    assert_eq!(closest("minimax-m2", 1), ["MiniMax-M2"]);
    let three = closest("gpt-4o", 3);
    assert_eq!(three.len(), 3);
    assert_eq!(three[0], "gpt-4o");
    assert!(closest("anything", 0).is_empty());
    assert_eq!(closest("x", usize::MAX).len(), tb_prices::table().len());
}
