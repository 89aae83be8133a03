//! Per-second video prices (LiteLLM's `video_generation` entries).
//!
//! A video model is billed per second of video produced, not per token, so
//! its prices live in a table of their own ([`video_table`]), generated
//! with the token table by `cargo xtask gen-prices`: one price per model,
//! LiteLLM's `output_cost_per_second` (else `output_cost_per_video_per_second`)
//! in integer USD micros per second. Per-resolution prices
//! (`output_cost_per_second_720p`, …) are not kept.

use crate::generated;

/// One video model's list price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VideoPrice {
    /// The model id (LiteLLM's key without its provider prefix).
    pub id: &'static str,
    /// LiteLLM's `litellm_provider`.
    pub provider: &'static str,
    /// USD micros per second of video produced (`100_000` is $0.10/s).
    pub per_second: u64,
}

/// Every priced video model, sorted by [`VideoPrice::id`] (ids are unique).
#[must_use]
pub fn video_table() -> &'static [VideoPrice] {
    generated::VIDEO
}

/// The video price of `model`: the entry with this id, else (for
/// `provider/model`) the entry of the id after the first `/`.
#[must_use]
pub fn video_price(model: &str) -> Option<&'static VideoPrice> {
    let exact = |id: &str| {
        let table = video_table();
        table
            .binary_search_by(|e| e.id.cmp(id))
            .ok()
            .and_then(|i| table.get(i))
    };
    exact(model).or_else(|| {
        let (provider, rest) = model.split_once('/')?;
        (!provider.is_empty() && !rest.is_empty())
            .then(|| exact(rest))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_table_is_sorted_and_unique() {
        let t = video_table();
        assert!(t.windows(2).all(|w| w[0].id < w[1].id));
        assert!(t.iter().all(|v| v.per_second > 0));
    }

    #[test]
    fn sora_and_veo_are_priced_per_second() {
        // LiteLLM: sora-2 output_cost_per_video_per_second 0.1.
        assert_eq!(video_price("sora-2").unwrap().per_second, 100_000);
        assert_eq!(video_price("openai/sora-2").unwrap().per_second, 100_000);
        assert_eq!(video_price("sora-2-pro").unwrap().per_second, 300_000);
        // gemini/veo-3.1-generate-preview output_cost_per_second 0.4.
        let veo = video_price("veo-3.1-generate-preview").unwrap();
        assert_eq!((veo.provider, veo.per_second), ("gemini", 400_000));
        assert!(video_price("gpt-4o").is_none());
        assert!(video_price("/sora-2").is_none());
    }
}
