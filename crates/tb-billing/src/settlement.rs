//! Seller settlement: what a marketplace seller says a call cost
//! (marketplace.md, "Settlement"). A seller is not trusted: every field is
//! sanitised on its own, and a bad field is dropped rather than failing the
//! request. A settlement that cannot be read at all is an error the caller
//! logs before pricing the call from the table instead.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};

/// The SSE event name that carries a settlement.
pub const SETTLEMENT_EVENT: &str = "tokenbuddy.settlement";
/// The response header that carries a settlement (base64url JSON).
pub const SETTLEMENT_HEADER: &str = "x-tokenbuddy-settlement";
/// Largest settlement document read.
pub const MAX_SETTLEMENT_BYTES: usize = 64 * 1024;
/// Largest integer accepted (10^15).
const MAX_INT: u64 = 1_000_000_000_000_000;

/// A sanitised settlement. `None`: the seller did not say, or said
/// something that did not pass the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    /// The request id the seller settled (≤ 128 visible characters).
    pub request_id: Option<String>,
    /// Credit the call consumed, in the seller's credit micros.
    pub settled_micros: Option<u64>,
    /// What the call cost in USD micros (authoritative for the ledger).
    pub settled_usd_micros: Option<u64>,
    /// The token's credit left after the call.
    pub remaining_credit_micros: Option<u64>,
    /// How the seller priced it, when it said and the breakdown was whole.
    pub breakdown: Option<Breakdown>,
}

/// The seller's billing breakdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breakdown {
    /// Token billing.
    Tokens {
        /// USD micros per 1M input tokens.
        input_price_micros_per_1m: u64,
        /// USD micros per 1M output tokens.
        output_price_micros_per_1m: u64,
        /// USD micros per 1M cache-read tokens.
        cache_read_price_micros_per_1m: Option<u64>,
        /// Input cost.
        input_cost_micros: Option<u64>,
        /// Output cost.
        output_cost_micros: Option<u64>,
        /// Cache-read cost.
        cache_read_cost_micros: Option<u64>,
        /// The price before the seller's multiplier.
        original_usd_micros: Option<u64>,
        /// The service tier, when it passes `^[A-Za-z0-9 _.-]+$`.
        service_tier: Option<String>,
    },
    /// Image billing.
    Images {
        /// USD micros per image.
        image_cost_micros_per_image: u64,
        /// Images.
        image_count: Option<u64>,
        /// Size, e.g. `1024x1024`.
        image_size: Option<String>,
        /// Quality.
        image_quality: Option<String>,
        /// Output format.
        image_output_format: Option<String>,
        /// Image output tokens.
        image_output_tokens: Option<u64>,
        /// Image output cost.
        image_output_cost_micros: Option<u64>,
        /// The service tier.
        service_tier: Option<String>,
    },
}

/// Why a settlement could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    /// Over [`MAX_SETTLEMENT_BYTES`].
    #[error("settlement is larger than {MAX_SETTLEMENT_BYTES} bytes")]
    TooLarge,
    /// The header is not base64url.
    #[error("settlement header is not base64url")]
    NotBase64,
    /// Not a JSON object.
    #[error("settlement is not a JSON object: {0}")]
    NotJson(String),
}

/// Reads the `X-TokenBuddy-Settlement` header value (base64url JSON,
/// padded or not).
pub fn from_header(value: &[u8]) -> Result<(Settlement, Vec<String>), SettlementError> {
    if value.len() > MAX_SETTLEMENT_BYTES * 4 / 3 + 4 {
        return Err(SettlementError::TooLarge);
    }
    let trimmed = value.trim_ascii();
    let json = URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE.decode(trimmed))
        .map_err(|_| SettlementError::NotBase64)?;
    from_json(&json)
}

/// Reads a settlement JSON document. Returns the sanitised settlement and
/// the names of the fields that were dropped (for the log).
pub fn from_json(json: &[u8]) -> Result<(Settlement, Vec<String>), SettlementError> {
    if json.len() > MAX_SETTLEMENT_BYTES {
        return Err(SettlementError::TooLarge);
    }
    let value: Value =
        serde_json::from_slice(json).map_err(|e| SettlementError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(SettlementError::NotJson("not an object".into()));
    };
    let mut dropped = Vec::new();
    let mut r = Reader {
        obj: &obj,
        dropped: &mut dropped,
        prefix: "",
    };
    let mut s = Settlement {
        request_id: r.request_id(),
        settled_micros: r.int("settledMicros", "settled_micros"),
        settled_usd_micros: r.int("settledUsdMicros", "settled_usd_micros"),
        remaining_credit_micros: r.int("remainingCreditMicros", "remaining_credit_micros"),
        breakdown: None,
    };
    if let Some(b) = get(&obj, "billingBreakdown", "billing_breakdown") {
        match b {
            Value::Object(b) => s.breakdown = breakdown(b, &mut dropped),
            Value::Null => {}
            _ => dropped.push("billingBreakdown".into()),
        }
    }
    Ok((s, dropped))
}

fn get<'a>(obj: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    obj.get(camel).or_else(|| obj.get(snake))
}

struct Reader<'a> {
    obj: &'a Map<String, Value>,
    dropped: &'a mut Vec<String>,
    prefix: &'static str,
}

impl Reader<'_> {
    fn drop_field(&mut self, name: &str) {
        self.dropped.push(format!("{}{name}", self.prefix));
    }

    /// A non-negative integer ≤ 10^15 (an integral float is accepted).
    fn int(&mut self, camel: &str, snake: &str) -> Option<u64> {
        let v = get(self.obj, camel, snake)?;
        let n = match v {
            Value::Null => return None,
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| {
                        f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f <= MAX_INT as f64
                    })
                    .map(|f| f as u64)
            }),
            _ => None,
        };
        match n.filter(|n| *n <= MAX_INT) {
            Some(n) => Some(n),
            None => {
                self.drop_field(camel);
                None
            }
        }
    }

    /// A short display string: 1–80 chars of `[A-Za-z0-9 _./:-]` after trim.
    fn display(&mut self, camel: &str, snake: &str) -> Option<String> {
        self.text(camel, snake, 80, |c| {
            c.is_ascii_alphanumeric() || " _./:-".contains(c)
        })
    }

    /// `serviceTier`: `^[A-Za-z0-9 _.-]+$`.
    fn tier(&mut self) -> Option<String> {
        self.text("serviceTier", "service_tier", 80, |c| {
            c.is_ascii_alphanumeric() || " _.-".contains(c)
        })
    }

    fn request_id(&mut self) -> Option<String> {
        self.text("requestId", "request_id", 128, |c| c.is_ascii_graphic())
    }

    fn text(
        &mut self,
        camel: &str,
        snake: &str,
        max: usize,
        ok: impl Fn(char) -> bool,
    ) -> Option<String> {
        let v = get(self.obj, camel, snake)?;
        let good = match v {
            Value::Null => return None,
            Value::String(s) => {
                let t = s.trim();
                (!t.is_empty() && t.len() <= max && t.chars().all(&ok)).then(|| t.to_string())
            }
            _ => None,
        };
        if good.is_none() {
            self.drop_field(camel);
        }
        good
    }
}

fn breakdown(obj: &Map<String, Value>, dropped: &mut Vec<String>) -> Option<Breakdown> {
    let mut r = Reader {
        obj,
        dropped,
        prefix: "billingBreakdown.",
    };
    let unit = r.text("billingUnit", "billing_unit", 16, |c| {
        c.is_ascii_alphabetic()
    });
    let service_tier = r.tier();
    match unit.as_deref() {
        Some("images") => {
            let Some(per_image) = r.int("imageCostMicrosPerImage", "image_cost_micros_per_image")
            else {
                r.drop_field("(whole: an image breakdown needs imageCostMicrosPerImage)");
                return None;
            };
            Some(Breakdown::Images {
                image_cost_micros_per_image: per_image,
                image_count: r.int("imageCount", "image_count"),
                image_size: r.display("imageSize", "image_size"),
                image_quality: r.display("imageQuality", "image_quality"),
                image_output_format: r.display("imageOutputFormat", "image_output_format"),
                image_output_tokens: r.int("imageOutputTokens", "image_output_tokens"),
                image_output_cost_micros: r
                    .int("imageOutputCostMicros", "image_output_cost_micros"),
                service_tier,
            })
        }
        Some("tokens") | None => {
            let input = r.int("inputPriceMicrosPer1m", "input_price_micros_per_1m");
            let output = r.int("outputPriceMicrosPer1m", "output_price_micros_per_1m");
            let (Some(input), Some(output)) = (input, output) else {
                r.drop_field("(whole: a token breakdown needs inputPriceMicrosPer1m and outputPriceMicrosPer1m)");
                return None;
            };
            Some(Breakdown::Tokens {
                input_price_micros_per_1m: input,
                output_price_micros_per_1m: output,
                cache_read_price_micros_per_1m: r.int(
                    "cacheReadPriceMicrosPer1m",
                    "cache_read_price_micros_per_1m",
                ),
                input_cost_micros: r.int("inputCostMicros", "input_cost_micros"),
                output_cost_micros: r.int("outputCostMicros", "output_cost_micros"),
                cache_read_cost_micros: r.int("cacheReadCostMicros", "cache_read_cost_micros"),
                original_usd_micros: r.int("originalUsdMicros", "original_usd_micros"),
                service_tier,
            })
        }
        Some(_) => {
            r.drop_field("billingUnit");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"{ "requestId": "r-1", "settledMicros": 1234, "settledUsdMicros": 987,
      "remainingCreditMicros": 4998766,
      "billingBreakdown": { "billingUnit": "tokens",
        "inputPriceMicrosPer1m": 2400000, "outputPriceMicrosPer1m": 12000000,
        "cacheReadPriceMicrosPer1m": 240000,
        "inputCostMicros": 480, "outputCostMicros": 600, "cacheReadCostMicros": 0,
        "originalUsdMicros": 1350, "billingMultiplier": 0.8, "serviceTier": "default" } }"#;

    #[test]
    fn the_spec_example_reads_whole() {
        let (s, dropped) = from_json(SPEC_EXAMPLE.as_bytes()).unwrap();
        assert!(dropped.is_empty(), "{dropped:?}");
        assert_eq!(s.request_id.as_deref(), Some("r-1"));
        assert_eq!(
            (
                s.settled_micros,
                s.settled_usd_micros,
                s.remaining_credit_micros
            ),
            (Some(1234), Some(987), Some(4_998_766))
        );
        match s.breakdown.unwrap() {
            Breakdown::Tokens {
                input_price_micros_per_1m,
                output_price_micros_per_1m,
                service_tier,
                ..
            } => {
                assert_eq!(
                    (input_price_micros_per_1m, output_price_micros_per_1m),
                    (2_400_000, 12_000_000)
                );
                assert_eq!(service_tier.as_deref(), Some("default"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn header_is_base64url_with_or_without_padding() {
        let enc = URL_SAFE_NO_PAD.encode(SPEC_EXAMPLE);
        assert_eq!(
            from_header(enc.as_bytes()).unwrap().0.settled_usd_micros,
            Some(987)
        );
        let padded = URL_SAFE.encode(SPEC_EXAMPLE);
        assert_eq!(
            from_header(padded.as_bytes()).unwrap().0.settled_usd_micros,
            Some(987)
        );
        assert_eq!(from_header(b"%%%"), Err(SettlementError::NotBase64));
    }

    #[test]
    fn hostile_fields_are_dropped_one_by_one() {
        let long = "x".repeat(10_000);
        let cases: Vec<(String, &str)> = vec![
            (r#"{"settledUsdMicros": -5}"#.into(), "settledUsdMicros"),
            (r#"{"settledUsdMicros": 1e30}"#.into(), "settledUsdMicros"),
            (r#"{"settledUsdMicros": 1000000000000001}"#.into(), "settledUsdMicros"),
            (r#"{"settledUsdMicros": "987"}"#.into(), "settledUsdMicros"),
            (r#"{"settledUsdMicros": 9.5}"#.into(), "settledUsdMicros"),
            (r#"{"remainingCreditMicros": true}"#.into(), "remainingCreditMicros"),
            (format!(r#"{{"requestId": "{long}"}}"#), "requestId"),
            (
                r#"{"billingBreakdown": {"billingUnit":"tokens","inputPriceMicrosPer1m":1,"outputPriceMicrosPer1m":2,"serviceTier":"<script>"}}"#.into(),
                "billingBreakdown.serviceTier",
            ),
            (
                format!(r#"{{"billingBreakdown": {{"billingUnit":"images","imageCostMicrosPerImage":5,"imageSize":"{long}"}}}}"#),
                "billingBreakdown.imageSize",
            ),
            (r#"{"billingBreakdown": {"billingUnit":"tokens","inputPriceMicrosPer1m":1}}"#.into(), "billingBreakdown.(whole"),
            (r#"{"billingBreakdown": {"billingUnit":"images"}}"#.into(), "billingBreakdown.(whole"),
            (r#"{"billingBreakdown": {"billingUnit":"bitcoins"}}"#.into(), "billingBreakdown.billingUnit"),
            (r#"{"billingBreakdown": 7}"#.into(), "billingBreakdown"),
        ];
        for (json, field) in cases {
            let (s, dropped) = from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert!(
                dropped.iter().any(|d| d.starts_with(field)),
                "{json} → {dropped:?}"
            );
            assert_eq!(s.settled_usd_micros, None, "{json}");
        }
        // One bad field never costs the good ones.
        let (s, dropped) = from_json(
            br#"{"settledUsdMicros": 10, "remainingCreditMicros": -1, "serviceTier": 5}"#,
        )
        .unwrap();
        assert_eq!(s.settled_usd_micros, Some(10));
        assert_eq!(dropped, vec!["remainingCreditMicros".to_string()]);
    }

    #[test]
    fn snake_case_and_images() {
        let (s, dropped) = from_json(
            br#"{"settled_usd_micros": 166400, "billing_breakdown": {"billing_unit": "images",
                "image_cost_micros_per_image": 166400, "image_count": 1, "image_size": " 1024x1024 ",
                "image_quality": "high", "image_output_format": "png"}}"#,
        )
        .unwrap();
        assert!(dropped.is_empty(), "{dropped:?}");
        assert_eq!(s.settled_usd_micros, Some(166_400));
        assert!(
            matches!(s.breakdown, Some(Breakdown::Images { image_size: Some(ref size), .. }) if size == "1024x1024")
        );
    }

    #[test]
    fn unreadable_documents_are_errors() {
        assert!(matches!(
            from_json(b"nope"),
            Err(SettlementError::NotJson(_))
        ));
        assert!(matches!(
            from_json(b"[1]"),
            Err(SettlementError::NotJson(_))
        ));
        let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_SETTLEMENT_BYTES));
        assert_eq!(from_json(huge.as_bytes()), Err(SettlementError::TooLarge));
    }
}
