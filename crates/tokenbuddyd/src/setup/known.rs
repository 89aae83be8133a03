//! The providers `setup` recognises, in one table: which variables hold
//! their key and base URL, their public base URL, which auth header and
//! protocols they take, where the bundled price table files their models,
//! and the flagship models `setup --yes` focuses on.

use tb_domain::{Protocol, ProviderKind};

/// One provider `setup` can offer when it finds its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnownProvider {
    /// The `[[providers]]` id it gets.
    pub id: &'static str,
    /// The variable that conventionally holds its key.
    pub key_var: &'static str,
    /// The variable that conventionally overrides its base URL.
    pub base_url_var: &'static str,
    /// Its public base URL (ending in its API version, as
    /// `providers[].base_url` wants it).
    pub default_base_url: &'static str,
    /// Which auth header it takes.
    pub kind: ProviderKind,
    /// The protocols it serves natively; `None` = its kind's defaults.
    pub protocols: Option<&'static [Protocol]>,
    /// LiteLLM's provider name in the bundled price table (`tb-prices`),
    /// `None` when the table has none of its models.
    pub price_provider: Option<&'static str>,
    /// Its flagship models, best first: the default focus when present.
    pub flagships: &'static [&'static str],
    /// Its id in opencode's `auth.json`.
    pub opencode_id: &'static str,
}

/// Only the Chat Completions protocol: what OpenAI-compatible providers
/// other than OpenAI itself serve (the other text protocols reach them
/// translated).
const CHAT: &[Protocol] = &[Protocol::ChatCompletions];

const fn chat_provider(
    id: &'static str,
    key_var: &'static str,
    base_url_var: &'static str,
    default_base_url: &'static str,
    price_provider: Option<&'static str>,
    flagships: &'static [&'static str],
    opencode_id: &'static str,
) -> KnownProvider {
    KnownProvider {
        id,
        key_var,
        base_url_var,
        default_base_url,
        kind: ProviderKind::Openai,
        protocols: Some(CHAT),
        price_provider,
        flagships,
        opencode_id,
    }
}

/// Every provider `setup` knows, in the order it offers them.
pub(crate) const KNOWN: &[KnownProvider] = &[
    KnownProvider {
        id: "openai",
        key_var: "OPENAI_API_KEY",
        base_url_var: "OPENAI_BASE_URL",
        default_base_url: "https://api.openai.com/v1",
        kind: ProviderKind::Openai,
        protocols: None,
        price_provider: Some("openai"),
        flagships: &["gpt-5", "gpt-5-mini"],
        opencode_id: "openai",
    },
    KnownProvider {
        id: "anthropic",
        key_var: "ANTHROPIC_API_KEY",
        base_url_var: "ANTHROPIC_BASE_URL",
        default_base_url: "https://api.anthropic.com/v1",
        kind: ProviderKind::Anthropic,
        protocols: None,
        price_provider: Some("anthropic"),
        flagships: &["claude-sonnet-4-5", "claude-haiku-4-5"],
        opencode_id: "anthropic",
    },
    chat_provider(
        "deepseek",
        "DEEPSEEK_API_KEY",
        "DEEPSEEK_BASE_URL",
        "https://api.deepseek.com/v1",
        Some("deepseek"),
        &["deepseek-chat", "deepseek-reasoner"],
        "deepseek",
    ),
    chat_provider(
        "gemini",
        "GEMINI_API_KEY",
        "GEMINI_BASE_URL",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        Some("gemini"),
        &["gemini-2.5-pro", "gemini-2.5-flash"],
        "google",
    ),
    chat_provider(
        "xai",
        "XAI_API_KEY",
        "XAI_BASE_URL",
        "https://api.x.ai/v1",
        Some("xai"),
        &["grok-4.3", "grok-code-fast-1"],
        "xai",
    ),
    chat_provider(
        "mistral",
        "MISTRAL_API_KEY",
        "MISTRAL_BASE_URL",
        "https://api.mistral.ai/v1",
        Some("mistral"),
        &["mistral-large-latest", "codestral-latest"],
        "mistral",
    ),
    chat_provider(
        "moonshot",
        "MOONSHOT_API_KEY",
        "MOONSHOT_BASE_URL",
        "https://api.moonshot.ai/v1",
        Some("moonshot"),
        &["kimi-k2.5"],
        "moonshotai",
    ),
    chat_provider(
        "dashscope",
        "DASHSCOPE_API_KEY",
        "DASHSCOPE_BASE_URL",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        Some("dashscope"),
        &["qwen-max", "qwen-plus"],
        "alibaba",
    ),
    chat_provider(
        "zai",
        "ZAI_API_KEY",
        "ZAI_BASE_URL",
        "https://api.z.ai/api/paas/v4",
        Some("zai"),
        &["glm-4.6"],
        "zai",
    ),
    chat_provider(
        "minimax",
        "MINIMAX_API_KEY",
        "MINIMAX_BASE_URL",
        "https://api.minimax.io/v1",
        Some("minimax"),
        &["MiniMax-M2"],
        "minimax",
    ),
    chat_provider(
        "openrouter",
        "OPENROUTER_API_KEY",
        "OPENROUTER_BASE_URL",
        "https://openrouter.ai/api/v1",
        None,
        &[],
        "openrouter",
    ),
    chat_provider(
        "groq",
        "GROQ_API_KEY",
        "GROQ_BASE_URL",
        "https://api.groq.com/openai/v1",
        None,
        &[],
        "groq",
    ),
    chat_provider(
        "together",
        "TOGETHER_API_KEY",
        "TOGETHER_BASE_URL",
        "https://api.together.xyz/v1",
        None,
        &[],
        "togetherai",
    ),
    chat_provider(
        "fireworks",
        "FIREWORKS_API_KEY",
        "FIREWORKS_BASE_URL",
        "https://api.fireworks.ai/inference/v1",
        None,
        &[],
        "fireworks-ai",
    ),
];

/// The known provider with this id.
pub(crate) fn by_id(id: &str) -> Option<&'static KnownProvider> {
    KNOWN.iter().find(|p| p.id == id)
}

/// Every variable `setup` reads: the key and base-URL variables.
pub(crate) fn variables() -> impl Iterator<Item = &'static str> {
    KNOWN.iter().flat_map(|p| [p.key_var, p.base_url_var])
}

impl KnownProvider {
    /// The base URL to configure from the base-URL variable's value (the
    /// public default when unset or blank). Anthropic's variable
    /// conventionally names the root (`https://api.anthropic.com`), while
    /// `base_url` must end in the API version, so `/v1` is added to it
    /// when missing; the other variables already carry their version
    /// (`OPENAI_BASE_URL=https://api.openai.com/v1`) and are used as given.
    pub(crate) fn base_url(&self, from_var: Option<&str>) -> String {
        let Some(url) = from_var.map(str::trim).filter(|u| !u.is_empty()) else {
            return self.default_base_url.to_string();
        };
        let url = url.trim_end_matches('/');
        if self.kind == ProviderKind::Anthropic && !url.ends_with("/v1") {
            format!("{url}/v1")
        } else {
            url.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_variables_are_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for p in KNOWN {
            assert!(seen.insert(p.id), "{} twice", p.id);
            assert!(seen.insert(p.key_var) && seen.insert(p.base_url_var));
            assert!(p.default_base_url.starts_with("https://"));
            for m in p.flagships {
                assert!(
                    p.price_provider.is_some_and(
                        |pp| tb_prices::get(m).is_some_and(|price| price.provider == pp)
                    ),
                    "{m} of {} is not in the price table under its provider",
                    p.id
                );
            }
        }
        assert_eq!(
            by_id("deepseek").map(|p| p.key_var),
            Some("DEEPSEEK_API_KEY")
        );
        assert!(variables().any(|v| v == "ANTHROPIC_BASE_URL"));
    }

    #[test]
    fn base_urls_follow_each_variables_convention() {
        let (openai, anthropic) = (&KNOWN[0], &KNOWN[1]);
        assert_eq!(openai.base_url(None), "https://api.openai.com/v1");
        assert_eq!(openai.base_url(Some(" ")), "https://api.openai.com/v1");
        assert_eq!(
            openai.base_url(Some("http://127.0.0.1:9/v1/")),
            "http://127.0.0.1:9/v1"
        );
        assert_eq!(
            anthropic.base_url(Some("https://gw.corp/anthropic")),
            "https://gw.corp/anthropic/v1"
        );
        assert_eq!(
            anthropic.base_url(Some("http://127.0.0.1:9/v1")),
            "http://127.0.0.1:9/v1"
        );
    }
}
