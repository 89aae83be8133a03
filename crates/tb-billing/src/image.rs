//! The image fields of a call record (billing.md, "Settlement vs estimate":
//! images are billed per image, `per-image cost = ceil(total ÷ count)`).
//!
//! A marketplace seller's image breakdown is preferred field by field (unit,
//! count, size, quality, format, image output tokens and their cost); what
//! it leaves out falls back to the usage read from the answer, and the
//! image output cost to the serving route's image-token price. The
//! per-image cost is always derived from the record's own cost, so it
//! agrees with `cost_usd_micros` (a seller's settled amount, or the
//! estimate).
//!
//! Pure: values in, values out.

use tb_domain::Protocol;

use crate::cost::RoutePrice;
use crate::record::BillingUnit;
use crate::settlement::Breakdown;
use crate::usage::Usage;

/// The image fields of one call record. `None` means unknown, never zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFields {
    /// What the call is billed in: the seller's breakdown unit, else
    /// `images` for an image generation and `tokens` for the rest.
    pub billing_unit: BillingUnit,
    /// Images generated.
    pub count: Option<u32>,
    /// Size, e.g. `1024x1024`.
    pub size: Option<String>,
    /// Quality, e.g. `low`.
    pub quality: Option<String>,
    /// Output format, e.g. `png`.
    pub format: Option<String>,
    /// `ceil(cost ÷ count)`, when both are known and `count > 0`.
    pub cost_per_image_usd_micros: Option<u64>,
    /// Image output tokens.
    pub output_tokens: Option<u64>,
    /// What the image output tokens cost.
    pub output_cost_usd_micros: Option<u64>,
}

/// The seller's image breakdown, when the settlement carried one.
struct SellerImages<'a> {
    count: Option<u64>,
    size: Option<&'a str>,
    quality: Option<&'a str>,
    format: Option<&'a str>,
    output_tokens: Option<u64>,
    output_cost: Option<u64>,
}

impl<'a> SellerImages<'a> {
    fn of(breakdown: Option<&'a Breakdown>) -> Option<SellerImages<'a>> {
        match breakdown? {
            Breakdown::Images {
                image_count,
                image_size,
                image_quality,
                image_output_format,
                image_output_tokens,
                image_output_cost_micros,
                ..
            } => Some(SellerImages {
                count: *image_count,
                size: image_size.as_deref(),
                quality: image_quality.as_deref(),
                format: image_output_format.as_deref(),
                output_tokens: *image_output_tokens,
                output_cost: *image_output_cost_micros,
            }),
            Breakdown::Tokens { .. } => None,
        }
    }
}

/// The image fields of a call of `protocol` that used `usage`, settled
/// with `breakdown` (sellers only), cost `cost_usd_micros` in total and
/// was served at `route`'s prices.
pub fn image_fields(
    protocol: Protocol,
    usage: Option<&Usage>,
    breakdown: Option<&Breakdown>,
    cost_usd_micros: Option<u64>,
    route: &RoutePrice,
) -> ImageFields {
    let seller = SellerImages::of(breakdown);
    let billing_unit = match breakdown {
        Some(Breakdown::Images { .. }) => BillingUnit::Images,
        Some(Breakdown::Tokens { .. }) => BillingUnit::Tokens,
        None if protocol.is_images() => BillingUnit::Images,
        None => BillingUnit::Tokens,
    };
    let image = usage.and_then(|u| u.image.as_ref());
    if seller.is_none() && image.is_none() {
        return ImageFields {
            billing_unit,
            count: None,
            size: None,
            quality: None,
            format: None,
            cost_per_image_usd_micros: None,
            output_tokens: None,
            output_cost_usd_micros: None,
        };
    }
    let seller = seller.as_ref();
    let text = |from_seller: Option<&str>, from_usage: Option<&String>| {
        from_seller
            .map(str::to_owned)
            .or_else(|| from_usage.cloned())
    };
    let count = seller
        .and_then(|s| s.count)
        .and_then(|c| u32::try_from(c).ok())
        .or_else(|| image.and_then(|i| i.count));
    let output_tokens = seller
        .and_then(|s| s.output_tokens)
        .or_else(|| usage.and_then(usage_output_image_tokens));
    let output_cost_usd_micros = seller
        .and_then(|s| s.output_cost)
        .or_else(|| route.image_output_cost(output_tokens?));
    ImageFields {
        billing_unit,
        count,
        size: text(
            seller.and_then(|s| s.size),
            image.and_then(|i| i.size.as_ref()),
        ),
        quality: text(
            seller.and_then(|s| s.quality),
            image.and_then(|i| i.quality.as_ref()),
        ),
        format: text(
            seller.and_then(|s| s.format),
            image.and_then(|i| i.output_format.as_ref()),
        ),
        cost_per_image_usd_micros: per_image(cost_usd_micros, count),
        output_tokens,
        output_cost_usd_micros,
    }
}

/// `ceil(total ÷ count)`; `None` when either is unknown or no image was made.
pub fn per_image(total_usd_micros: Option<u64>, count: Option<u32>) -> Option<u64> {
    let count = u64::from(count.filter(|c| *c > 0)?);
    Some(total_usd_micros?.div_ceil(count))
}

/// The image output tokens an images answer reported:
/// `output_tokens_details.image_tokens`, else `output_tokens` less any
/// text output tokens (billing.md: else all output tokens are image tokens).
fn usage_output_image_tokens(usage: &Usage) -> Option<u64> {
    let image = usage.image.as_ref()?;
    image.output_image_tokens.or_else(|| {
        let output = usage.output_tokens?;
        Some(output.saturating_sub(image.output_text_tokens.unwrap_or(0)))
    })
}

#[cfg(test)]
mod tests {
    use tb_prices::{Ppm, TokenPrices};

    use super::*;
    use crate::usage::ImageUsage;

    fn usage(count: u32, output: Option<u64>, output_image: Option<u64>) -> Usage {
        Usage {
            input_tokens: Some(10),
            output_tokens: output,
            image: Some(ImageUsage {
                count: Some(count),
                size: Some("1024x1024".into()),
                quality: Some("low".into()),
                output_format: Some("png".into()),
                input_text_tokens: Some(10),
                output_image_tokens: output_image,
                ..ImageUsage::default()
            }),
            ..Usage::default()
        }
    }

    fn seller_breakdown() -> Breakdown {
        Breakdown::Images {
            image_cost_micros_per_image: 11_000,
            image_count: Some(3),
            image_size: Some("1536x1024".into()),
            image_quality: Some("high".into()),
            image_output_format: None,
            image_output_tokens: Some(4_160),
            image_output_cost_micros: Some(166_400),
            service_tier: None,
        }
    }

    #[test]
    fn per_image_cost_rounds_up_and_never_divides_by_zero() {
        assert_eq!(per_image(Some(10), Some(3)), Some(4));
        assert_eq!(per_image(Some(9), Some(3)), Some(3));
        assert_eq!(per_image(Some(0), Some(2)), Some(0));
        assert_eq!(per_image(Some(1), Some(1)), Some(1));
        assert_eq!(per_image(Some(u64::MAX), Some(2)), Some(u64::MAX / 2 + 1));
        assert_eq!(per_image(Some(10), Some(0)), None);
        assert_eq!(per_image(None, Some(2)), None);
        assert_eq!(per_image(Some(10), None), None);
    }

    #[test]
    fn a_manual_answer_fills_every_field_from_its_usage() {
        // gpt-image-1 at the table price: image output tokens $40 per 1M.
        let route = RoutePrice::official("gpt-image-1");
        let f = image_fields(
            Protocol::ImagesGenerations,
            Some(&usage(2, Some(544), None)),
            None,
            Some(21_761),
            &route,
        );
        assert_eq!(
            f,
            ImageFields {
                billing_unit: BillingUnit::Images,
                count: Some(2),
                size: Some("1024x1024".into()),
                quality: Some("low".into()),
                format: Some("png".into()),
                cost_per_image_usd_micros: Some(10_881),
                output_tokens: Some(544),
                // 544 × 40_000_000 / 1M = 21_760 micros.
                output_cost_usd_micros: Some(21_760),
            }
        );
        // A discounted route pays its own price for the output tokens:
        // 21_760 × 0.75 = 16_320.
        let cheaper = RoutePrice::manual(None, "gpt-image-1", Ppm::new(250_000));
        let f = image_fields(
            Protocol::ImagesGenerations,
            Some(&usage(2, Some(544), None)),
            None,
            None,
            &cheaper,
        );
        assert_eq!(f.output_cost_usd_micros, Some(16_320));
        assert_eq!(f.cost_per_image_usd_micros, None, "cost unknown");
    }

    #[test]
    fn image_output_tokens_prefer_the_detail_then_the_output_less_text() {
        let route = RoutePrice::Explicit(TokenPrices {
            input: Some(1),
            output: Some(3_000_000),
            ..TokenPrices::NONE
        });
        let f = image_fields(
            Protocol::ImagesGenerations,
            Some(&usage(1, Some(300), Some(250))),
            None,
            Some(5),
            &route,
        );
        assert_eq!(f.output_tokens, Some(250));
        // 250 × $3 per 1M = 750 micros.
        assert_eq!(f.output_cost_usd_micros, Some(750));
        let mut u = usage(1, Some(300), None);
        if let Some(i) = u.image.as_mut() {
            i.output_text_tokens = Some(20);
        }
        let f = image_fields(Protocol::ImagesGenerations, Some(&u), None, None, &route);
        assert_eq!(f.output_tokens, Some(280));
        // No tokens reported at all: unknown, and so is their cost.
        let f = image_fields(
            Protocol::ImagesGenerations,
            Some(&usage(1, None, None)),
            None,
            Some(11_000),
            &route,
        );
        assert_eq!((f.output_tokens, f.output_cost_usd_micros), (None, None));
        assert_eq!(f.cost_per_image_usd_micros, Some(11_000));
        // Unpriced route: the tokens are known, their cost is not.
        let f = image_fields(
            Protocol::ImagesGenerations,
            Some(&usage(1, Some(272), None)),
            None,
            None,
            &RoutePrice::Unpriced,
        );
        assert_eq!(
            (f.output_tokens, f.output_cost_usd_micros),
            (Some(272), None)
        );
    }

    #[test]
    fn the_sellers_breakdown_wins_field_by_field() {
        let b = seller_breakdown();
        let f = image_fields(
            Protocol::ImagesGenerations,
            Some(&usage(1, Some(272), None)),
            Some(&b),
            Some(100_000),
            &RoutePrice::official("gpt-image-1"),
        );
        assert_eq!(
            f,
            ImageFields {
                billing_unit: BillingUnit::Images,
                count: Some(3),
                size: Some("1536x1024".into()),
                quality: Some("high".into()),
                // The seller left the format out: the answer's stands.
                format: Some("png".into()),
                // ceil(100_000 / 3), from the record's (settled) cost.
                cost_per_image_usd_micros: Some(33_334),
                output_tokens: Some(4_160),
                output_cost_usd_micros: Some(166_400),
            }
        );
        // No usage at all (the answer carried none): the breakdown alone.
        let f = image_fields(
            Protocol::ImagesGenerations,
            None,
            Some(&b),
            Some(9),
            &RoutePrice::Unpriced,
        );
        assert_eq!((f.count, f.format.as_deref()), (Some(3), None));
        assert_eq!(f.cost_per_image_usd_micros, Some(3));
        // A count beyond u32 falls back to the usage.
        let mut huge = seller_breakdown();
        if let Breakdown::Images { image_count, .. } = &mut huge {
            *image_count = Some(u64::from(u32::MAX) + 1);
        }
        let f = image_fields(
            Protocol::ImagesGenerations,
            Some(&usage(2, None, None)),
            Some(&huge),
            Some(10),
            &RoutePrice::Unpriced,
        );
        assert_eq!(f.count, Some(2));
    }

    #[test]
    fn the_unit_follows_the_breakdown_else_the_protocol() {
        let tokens = Breakdown::Tokens {
            input_price_micros_per_1m: 1,
            output_price_micros_per_1m: 1,
            cache_read_price_micros_per_1m: None,
            input_cost_micros: None,
            output_cost_micros: None,
            cache_read_cost_micros: None,
            original_usd_micros: None,
            service_tier: None,
        };
        let u = usage(1, Some(272), None);
        let f = image_fields(
            Protocol::ImagesGenerations,
            Some(&u),
            Some(&tokens),
            Some(7),
            &RoutePrice::Unpriced,
        );
        assert_eq!(f.billing_unit, BillingUnit::Tokens);
        assert_eq!(f.count, Some(1), "the answer's image facts stay");
        let chat = Usage {
            input_tokens: Some(1),
            output_tokens: Some(1),
            ..Usage::default()
        };
        let f = image_fields(
            Protocol::ChatCompletions,
            Some(&chat),
            None,
            Some(7),
            &RoutePrice::Unpriced,
        );
        assert_eq!(f.billing_unit, BillingUnit::Tokens);
        assert_eq!(
            (f.count, f.cost_per_image_usd_micros, f.output_tokens),
            (None, None, None)
        );
        let f = image_fields(
            Protocol::ImagesGenerations,
            None,
            None,
            None,
            &RoutePrice::Unpriced,
        );
        assert_eq!(f.billing_unit, BillingUnit::Images);
        assert_eq!(f.count, None);
    }
}
