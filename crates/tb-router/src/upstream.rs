//! Upstreams as routing and the forwarder see them: an id, a base URL,
//! how they are priced, and (manual providers) a precomputed auth header
//! and extra headers. Sending to them is the proxy's job.

use http::{HeaderName, HeaderValue, Uri};
use std::collections::HashMap;

use tb_billing::cost::RoutePrice;
use tb_config::{ModelPriceConfig, ProviderConfig};
use tb_domain::{Protocol, ProviderKind, UpstreamId};
use tb_prices::{Ppm, TokenPrices};
use tb_registry::SellerEntry;
use tb_seller::Manifest;

/// One upstream, ready to be called: a manual provider or a marketplace
/// seller.
#[derive(Debug)]
pub struct Upstream {
    /// Its id.
    pub id: UpstreamId,
    /// Auth header family.
    pub kind: ProviderKind,
    /// Whether requests in another protocol may be translated to reach it.
    pub translate: bool,
    /// `anthropic-beta` values never forwarded to it.
    pub dropped_betas: Vec<String>,
    base_url: String,
    source: Source,
}

/// What kind of upstream, with what only that kind has.
#[derive(Debug)]
enum Source {
    /// Paid with the user's key.
    Manual {
        auth: (HeaderName, HeaderValue),
        extra_headers: Vec<(HeaderName, HeaderValue)>,
        discount: Ppm,
        prices: HashMap<String, TokenPrices>,
        /// USD micros per second of video, by model (`video_prices`).
        video_prices: HashMap<String, u64>,
    },
    /// A marketplace seller: paid with a bought token per request.
    Seller {
        /// The seller's base URL (purchases are relative to it).
        url: String,
        discount: Ppm,
        fee: Ppm,
        /// The seller's own prices from its manifest (both input and
        /// output known), by model; a model not listed is priced from the
        /// table × (1 − discount) × (1 + fee).
        prices: HashMap<String, TokenPrices>,
    },
}

/// Why an upstream could not be set up from config.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `api_key_env` names a variable that is not set.
    #[error(
        "providers[{index}] ({id}): environment variable {var} (api_key_env) is not set; export it or remove the provider"
    )]
    MissingKeyEnv {
        /// Position in `[[providers]]`.
        index: usize,
        /// Provider id.
        id: String,
        /// The variable.
        var: String,
    },
    /// `api_key_file` cannot be read or holds no key.
    #[error(
        "providers[{index}] ({id}).api_key_file: {path}: {problem}; put the key in that file (mode 0600) or re-run `tokenbuddyd setup`"
    )]
    KeyFile {
        /// Position in `[[providers]]`.
        index: usize,
        /// Provider id.
        id: String,
        /// The file, as configured.
        path: String,
        /// Why it gave no key (never its content).
        problem: String,
    },
    /// A value cannot be used in an HTTP header or URL.
    #[error("providers[{index}] ({id}).{field}: {problem}")]
    Invalid {
        /// Position in `[[providers]]`.
        index: usize,
        /// Provider id.
        id: String,
        /// The field.
        field: &'static str,
        /// What is wrong (never the secret itself).
        problem: String,
    },
}

/// The key in `path`: its content, trimmed (a trailing newline is not
/// part of it). The error says why there is none, never the content.
fn read_key_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => "is not UTF-8 text".to_string(),
        _ => e.to_string(),
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err("is empty".into());
    }
    if key.lines().nth(1).is_some() {
        return Err("holds more than one line; it must hold the key alone".into());
    }
    Ok(key.to_string())
}

impl Upstream {
    /// Builds the runtime form of `[[providers]]` entry `index`. `env` reads
    /// an environment variable (tests pass a map).
    pub fn from_config(
        index: usize,
        p: &ProviderConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Upstream, UpstreamError> {
        let invalid = |field: &'static str, problem: String| UpstreamError::Invalid {
            index,
            id: p.id.clone(),
            field,
            problem,
        };
        let key = match (&p.api_key, &p.api_key_env, &p.api_key_file) {
            (Some(k), _, _) => k.expose().to_string(),
            (None, Some(var), _) => env(var).ok_or_else(|| UpstreamError::MissingKeyEnv {
                index,
                id: p.id.clone(),
                var: var.clone(),
            })?,
            (None, None, Some(path)) => {
                read_key_file(path).map_err(|problem| UpstreamError::KeyFile {
                    index,
                    id: p.id.clone(),
                    path: path.display().to_string(),
                    problem,
                })?
            }
            (None, None, None) => return Err(invalid("api_key", "no key configured".into())),
        };
        let (name, value) = match p.kind {
            ProviderKind::Openai => (http::header::AUTHORIZATION, format!("Bearer {key}")),
            ProviderKind::Anthropic => (HeaderName::from_static("x-api-key"), key),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            invalid(
                "api_key",
                "contains characters not allowed in an HTTP header".into(),
            )
        })?;
        value.set_sensitive(true);

        let base_url = p.base_url.trim_end_matches('/').to_string();
        base_url.parse::<Uri>().map_err(|e| {
            invalid(
                "base_url",
                format!("{:?} is not a valid URL: {e}", p.base_url),
            )
        })?;

        let mut extra_headers = Vec::new();
        for (k, v) in &p.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| invalid("headers", format!("{k:?} is not a valid header name")))?;
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                invalid(
                    "headers",
                    format!("the value of {k:?} is not a valid header value"),
                )
            })?;
            value.set_sensitive(true);
            extra_headers.push((name, value));
        }
        // The discount is a 0–1 fraction (validated); money is integer from here on.
        let discount = Ppm::new((p.discount.clamp(0.0, 1.0) * 1_000_000.0).round() as u32);
        let micros = ModelPriceConfig::to_micros;
        let prices = p
            .prices
            .iter()
            .map(|(model, c)| {
                let tokens = TokenPrices {
                    input: Some(micros(c.input)),
                    output: Some(micros(c.output)),
                    cache_read: c.cache_read.map(micros),
                    cache_write: c.cache_write.map(micros),
                    // No config key: 1-hour writes fall back to `cache_write`.
                    cache_write_1h: None,
                };
                (model.clone(), tokens)
            })
            .collect();
        // USD per second → integer micros per second.
        let video_prices = p
            .video_prices
            .iter()
            .map(|(model, usd)| (model.clone(), (usd * 1_000_000.0).round() as u64))
            .collect();
        Ok(Upstream {
            id: UpstreamId::new(p.id.clone()),
            kind: p.kind,
            translate: p.translate,
            dropped_betas: p.drop_anthropic_betas.clone(),
            base_url,
            source: Source::Manual {
                auth: (name, value),
                extra_headers,
                discount,
                prices,
                video_prices,
            },
        })
    }

    /// A marketplace seller from the registry, refined by its manifest
    /// when it published one (its `selection` ratios replace the
    /// registry's; its prices are used for the models they cover).
    /// Inference goes to `<url>/v1/...`; the token is bought per (seller,
    /// payment method).
    pub fn seller(entry: &SellerEntry, manifest: Option<&Manifest>) -> Upstream {
        let url = entry.url.trim_end_matches('/').to_string();
        let prices = manifest
            .map(|m| {
                m.prices
                    .iter()
                    .filter(|(_, p)| p.input.is_some() && p.output.is_some())
                    .map(|(model, p)| (model.clone(), *p))
                    .collect()
            })
            .unwrap_or_default();
        Upstream {
            id: entry.id.clone(),
            kind: ProviderKind::Openai,
            translate: true,
            dropped_betas: Vec::new(),
            base_url: format!("{url}/v1"),
            source: Source::Seller {
                url,
                discount: manifest
                    .and_then(|m| m.discount_ratio)
                    .unwrap_or(entry.discount_ratio),
                fee: manifest
                    .and_then(|m| m.service_fee_ratio)
                    .unwrap_or(entry.service_fee_ratio),
                prices,
            },
        }
    }

    /// The discount off list price, in ppm (for the `discount` scorer).
    pub fn discount_ppm(&self) -> u32 {
        match &self.source {
            Source::Manual { discount, .. } | Source::Seller { discount, .. } => discount.get(),
        }
    }

    /// The seller's base URL, when this is a marketplace seller.
    pub fn seller_url(&self) -> Option<&str> {
        match &self.source {
            Source::Seller { url, .. } => Some(url),
            Source::Manual { .. } => None,
        }
    }

    /// The URL for `protocol`: base URL + protocol path minus `/v1` + the
    /// client's query string.
    pub fn url(
        &self,
        protocol: Protocol,
        query: Option<&str>,
    ) -> Result<Uri, http::uri::InvalidUri> {
        let mut s = format!("{}{}", self.base_url, protocol.upstream_suffix());
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        s.parse()
    }

    /// How this upstream prices `model`: its own prices (a manual
    /// provider's `prices`, a seller's manifest), else the table with the
    /// discount (and a seller's fee), else unpriced. The estimate, the
    /// savings baseline, the drift and the `cheapest` scorer all read this.
    pub fn price_of(&self, model: &str) -> RoutePrice {
        match &self.source {
            Source::Manual {
                discount, prices, ..
            } => RoutePrice::manual(prices.get(model).copied(), model, *discount),
            Source::Seller {
                discount,
                fee,
                prices,
                ..
            } => RoutePrice::seller(prices.get(model).copied(), model, *discount, *fee),
        }
    }

    /// Its price for a second of `model`'s video, in USD micros (a manual
    /// provider's `video_prices`; sellers do not serve video jobs).
    pub fn video_price_of(&self, model: &str) -> Option<u64> {
        match &self.source {
            Source::Manual { video_prices, .. } => video_prices.get(model).copied(),
            Source::Seller { .. } => None,
        }
    }

    /// How many models this upstream prices itself (a manual provider's
    /// `prices`, a seller's manifest prices).
    pub fn own_prices(&self) -> usize {
        match &self.source {
            Source::Manual { prices, .. } | Source::Seller { prices, .. } => prices.len(),
        }
    }

    /// The base URL (for messages; holds no secret).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The configured authentication header (manual providers; a seller's
    /// token is bought per request). The value is marked sensitive.
    pub fn auth_header(&self) -> Option<(&HeaderName, &HeaderValue)> {
        match &self.source {
            Source::Manual { auth, .. } => Some((&auth.0, &auth.1)),
            Source::Seller { .. } => None,
        }
    }

    /// The provider key itself, as sent in [`auth_header`](Self::auth_header)
    /// (without the `Bearer ` that `from_config` puts before it), so an
    /// upstream that quotes it back can be redacted.
    pub fn credential(&self) -> Option<&[u8]> {
        self.auth_header().map(|(_, v)| {
            let v = v.as_bytes();
            v.strip_prefix(b"Bearer ").unwrap_or(v)
        })
    }

    /// Extra configured headers (values marked sensitive).
    pub fn extra_headers(&self) -> &[(HeaderName, HeaderValue)] {
        match &self.source {
            Source::Manual { extra_headers, .. } => extra_headers,
            Source::Seller { .. } => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tb_config::Config;

    fn provider(extra: &str) -> ProviderConfig {
        let toml = format!(
            "[[providers]]\nid = \"p\"\nbase_url = \"http://127.0.0.1:9/v1/\"\nmodels = [\"m\"]\n{extra}"
        );
        Config::from_toml_str(&toml).unwrap().providers.remove(0)
    }

    #[test]
    fn auth_header_by_kind() {
        let env = |v: &str| (v == "KEY").then(|| "sk-env".to_string());
        let u = Upstream::from_config(
            0,
            &provider("kind = \"openai\"\napi_key_env = \"KEY\""),
            &env,
        )
        .unwrap();
        let (n, v) = u.auth_header().unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("authorization", "Bearer sk-env")
        );
        assert!(v.is_sensitive());
        let u = Upstream::from_config(
            0,
            &provider("kind = \"anthropic\"\napi_key = \"sk-a\""),
            &env,
        )
        .unwrap();
        let (n, v) = u.auth_header().unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-api-key", "sk-a"));
        assert!(!format!("{u:?}").contains("sk-a"));
    }

    #[test]
    fn missing_env_key_names_provider_and_variable() {
        let err = Upstream::from_config(
            3,
            &provider("kind = \"openai\"\napi_key_env = \"NOPE\""),
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("providers[3] (p)") && err.contains("NOPE"),
            "{err}"
        );
    }

    #[test]
    fn a_key_file_is_read_trimmed_and_its_problems_never_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openai.key");
        let with_file = |path: &std::path::Path| {
            provider(&format!(
                "kind = \"openai\"\napi_key_file = {:?}",
                path.display().to_string()
            ))
        };
        std::fs::write(&path, "sk-from-file-1234\n").unwrap();
        let u = Upstream::from_config(0, &with_file(&path), &|_| None).unwrap();
        assert_eq!(u.auth_header().unwrap().1, "Bearer sk-from-file-1234");
        for (content, want) in [
            ("  \n", "is empty"),
            ("sk-one\nsk-two\n", "more than one line"),
        ] {
            std::fs::write(&path, content).unwrap();
            let err = Upstream::from_config(2, &with_file(&path), &|_| None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("providers[2] (p).api_key_file") && err.contains(want),
                "{err}"
            );
            assert!(!err.contains("sk-one"), "{err}");
        }
        let err = Upstream::from_config(0, &with_file(&dir.path().join("nope")), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope") && err.contains("setup"), "{err}");
    }

    fn seller_entry() -> SellerEntry {
        let raw = br#"{"version":"v","sellers":[{"id":"s","url":"http://s/","models":["gpt-4o","m"],"protocols":["chat_completions"],"paymentMethods":["mock"],"discountRatio":0.5}]}"#;
        tb_registry::parse_registry(raw)
            .unwrap()
            .doc
            .sellers
            .remove(0)
    }

    #[test]
    fn a_seller_prices_with_its_manifest_else_the_table() {
        let entry = seller_entry();
        let own = TokenPrices {
            input: Some(1_000_000),
            output: Some(2_000_000),
            cache_read: None,
            cache_write: None,
            cache_write_1h: None,
        };
        let half = TokenPrices {
            output: None,
            ..own
        };
        let manifest = Manifest {
            discount_ratio: Some(Ppm::new(100_000)),
            prices: [("m".to_string(), own), ("gpt-4o".to_string(), half)]
                .into_iter()
                .collect(),
            ..Manifest::default()
        };
        let table_only = Upstream::seller(&entry, None);
        assert_eq!(table_only.own_prices(), 0);
        assert_eq!(table_only.discount_ppm(), 500_000);
        assert_eq!(table_only.price_of("m"), RoutePrice::Unpriced);
        // gpt-4o: $2.50 + $10 per 1M, half off.
        assert_eq!(
            table_only.price_of("gpt-4o").list_price_per_1m(),
            Some(6_250_000)
        );

        let priced = Upstream::seller(&entry, Some(&manifest));
        assert_eq!(priced.own_prices(), 1, "a price without output is not used");
        assert_eq!(priced.price_of("m"), RoutePrice::Explicit(own));
        assert_eq!(priced.price_of("m").list_price_per_1m(), Some(3_000_000));
        // The manifest's discount replaces the registry's for table prices.
        assert_eq!(priced.discount_ppm(), 100_000);
        assert_eq!(
            priced.price_of("gpt-4o").list_price_per_1m(),
            Some(11_250_000)
        );
    }

    #[test]
    fn urls_append_the_protocol_path_without_v1() {
        let u = Upstream::from_config(0, &provider("kind = \"openai\"\napi_key = \"k\""), &|_| {
            None
        })
        .unwrap();
        assert_eq!(
            u.url(Protocol::ChatCompletions, None).unwrap().to_string(),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert_eq!(
            u.url(Protocol::Messages, Some("beta=true"))
                .unwrap()
                .to_string(),
            "http://127.0.0.1:9/v1/messages?beta=true"
        );
    }
}
