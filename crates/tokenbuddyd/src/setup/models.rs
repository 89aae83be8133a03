//! Which models a found provider serves — its own `GET /v1/models` when it
//! answers, else the bundled price table's models of that provider — and
//! which of them to focus on.

use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Deserialize;
use tb_domain::ProviderKind;
use tb_prices::Mode;

use super::known::KnownProvider;

/// How long `GET /v1/models` may take before the price table is used.
pub(crate) const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a provider's model list came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModelSource {
    /// The provider's own `GET /v1/models`.
    Listed,
    /// The bundled price table; the reason the list was not used.
    PriceTable(String),
}

/// `GET /v1/models`'s answer: OpenAI and Anthropic share this shape.
#[derive(Debug, Deserialize)]
struct ModelList {
    data: Vec<ListedModel>,
}

#[derive(Debug, Deserialize)]
struct ListedModel {
    id: String,
}

/// The model ids of a `GET /v1/models` answer, sorted, without blanks or
/// repeats.
pub(crate) fn parse_model_list(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    let list: ModelList = serde_json::from_slice(body)?;
    let mut ids: Vec<String> = list
        .data
        .into_iter()
        .map(|m| m.id.trim().to_string())
        .filter(|id| !id.is_empty())
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The chat and responses models the price table files under `provider`.
pub(crate) fn table_models(provider: &KnownProvider) -> Vec<String> {
    let Some(name) = provider.price_provider else {
        return Vec::new();
    };
    tb_prices::table()
        .iter()
        .filter(|p| p.provider == name && matches!(p.mode, Mode::Chat | Mode::Responses))
        .map(|p| p.id.to_string())
        .collect()
}

/// The default focus: each provider's flagships that it serves, in
/// provider order; when none is served, the first model of the first
/// provider that has one.
pub(crate) fn default_focus(offers: &[(&KnownProvider, &[String])]) -> Vec<String> {
    let mut focus: Vec<String> = Vec::new();
    for (provider, models) in offers {
        for flagship in provider.flagships {
            if models.iter().any(|m| m == flagship) && !focus.iter().any(|f| f == flagship) {
                focus.push((*flagship).to_string());
            }
        }
    }
    if focus.is_empty()
        && let Some(first) = offers.iter().find_map(|(_, models)| models.first())
    {
        focus.push(first.clone());
    }
    focus
}

/// The models worth offering as a numbered choice: per provider its
/// flagships, then its other priced models, at most `per_provider` each.
pub(crate) fn candidates(
    offers: &[(&KnownProvider, &[String])],
    per_provider: usize,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (provider, models) in offers {
        let flagships = provider
            .flagships
            .iter()
            .filter(|f| models.iter().any(|m| m == *f))
            .map(|f| (*f).to_string());
        let priced = models
            .iter()
            .filter(|m| tb_prices::get(m).is_some())
            .cloned();
        let mut taken = 0;
        for m in flagships.chain(priced) {
            if taken == per_provider {
                break;
            }
            if !out.contains(&m) {
                out.push(m);
                taken += 1;
            }
        }
    }
    out
}

/// The models `provider` serves at `base_url` with `key`: its list, or the
/// price table's models with the reason the list could not be used.
pub(crate) async fn models_of(
    client: &tb_proxy::UpstreamClient,
    provider: &KnownProvider,
    base_url: &str,
    key: &str,
) -> (Vec<String>, ModelSource) {
    let listed = tokio::time::timeout(LIST_TIMEOUT, fetch(client, provider.kind, base_url, key))
        .await
        .unwrap_or_else(|_| Err(anyhow!("no answer within {} s", LIST_TIMEOUT.as_secs())));
    match listed {
        Ok(ids) if !ids.is_empty() => (ids, ModelSource::Listed),
        Ok(_) => (
            table_models(provider),
            ModelSource::PriceTable("it listed no model".into()),
        ),
        Err(e) => (
            table_models(provider),
            ModelSource::PriceTable(format!("{e:#}")),
        ),
    }
}

/// `GET <base_url>/models` with the provider's auth header.
async fn fetch(
    client: &tb_proxy::UpstreamClient,
    kind: ProviderKind,
    base_url: &str,
    key: &str,
) -> anyhow::Result<Vec<String>> {
    use http_body_util::BodyExt;
    let url = format!("{}/models", base_url.trim_end_matches('/'));
    let mut builder = http::Request::get(&url);
    builder = match kind {
        ProviderKind::Openai => {
            builder.header(http::header::AUTHORIZATION, format!("Bearer {key}"))
        }
        ProviderKind::Anthropic => builder
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01"),
    };
    let mut req = builder
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .with_context(|| format!("{url} is not a URL"))?;
    for value in req.headers_mut().values_mut() {
        value.set_sensitive(true);
    }
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(anyhow!("GET {url} answered {status}"));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the answer of GET {url}"))?
        .to_bytes();
    parse_model_list(&body).with_context(|| format!("GET {url} is not a model list"))
}

#[cfg(test)]
mod tests {
    use super::super::known::by_id;
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|m| (*m).to_string()).collect()
    }

    #[test]
    fn a_model_list_is_read_sorted_and_deduplicated() {
        let body = br#"{"object":"list","data":[{"id":"gpt-5","object":"model"},{"id":"a"},{"id":" "},{"id":"a"}],"has_more":false}"#;
        assert_eq!(parse_model_list(body).unwrap(), ids(&["a", "gpt-5"]));
        assert!(parse_model_list(b"<html>").is_err());
        assert!(parse_model_list(br#"{"models":[]}"#).is_err());
    }

    #[test]
    fn the_price_table_gives_a_providers_text_models() {
        let deepseek = by_id("deepseek").unwrap();
        let models = table_models(deepseek);
        assert!(models.contains(&"deepseek-chat".to_string()), "{models:?}");
        assert!(
            models
                .iter()
                .all(|m| tb_prices::get(m).unwrap().provider == "deepseek")
        );
        let openai = table_models(by_id("openai").unwrap());
        assert!(
            !openai.iter().any(|m| m == "gpt-image-1"),
            "images are not chat models"
        );
        assert!(table_models(by_id("groq").unwrap()).is_empty());
    }

    #[test]
    fn the_default_focus_is_the_flagships_present() {
        let (openai, deepseek, groq) = (
            by_id("openai").unwrap(),
            by_id("deepseek").unwrap(),
            by_id("groq").unwrap(),
        );
        let o = ids(&["gpt-4o", "gpt-5", "gpt-5-mini"]);
        let d = ids(&["deepseek-chat"]);
        let g = ids(&["llama-3.3-70b"]);
        assert_eq!(
            default_focus(&[(openai, &o), (deepseek, &d)]),
            ids(&["gpt-5", "gpt-5-mini", "deepseek-chat"])
        );
        assert_eq!(
            default_focus(&[(groq, &g), (deepseek, &[])]),
            ids(&["llama-3.3-70b"])
        );
        assert!(default_focus(&[]).is_empty());
    }

    #[test]
    fn candidates_put_flagships_first_and_cap_each_provider() {
        let openai = by_id("openai").unwrap();
        let o = ids(&["gpt-4o", "gpt-4o-mini", "gpt-5", "unpriced-x"]);
        assert_eq!(candidates(&[(openai, &o)], 2), ids(&["gpt-5", "gpt-4o"]));
        assert_eq!(
            candidates(&[(openai, &o)], 10),
            ids(&["gpt-5", "gpt-4o", "gpt-4o-mini"])
        );
    }
}
