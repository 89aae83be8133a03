//! Cost of an image-generation answer: per-image prices by quality and size,
//! or image-token prices when the answer reports tokens.

use crate::cost::{ceil_micros, term};
use crate::{ModelPrice, TokenCounts, cost};

/// Token usage of an image answer (the images API's `usage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ImageTokenCounts {
    /// Text prompt tokens, all of them (cached included).
    pub text_input: u64,
    /// Of `text_input`, tokens read from the prompt cache.
    pub cached_text_input: u64,
    /// Image input tokens (reference images of an edit), all of them.
    pub image_input: u64,
    /// Of `image_input`, tokens read from the prompt cache.
    pub cached_image_input: u64,
    /// Output tokens: the generated images' tokens.
    pub output: u64,
}

impl ImageTokenCounts {
    fn is_zero(&self) -> bool {
        self.text_input == 0 && self.image_input == 0 && self.output == 0
    }
}

/// What an image answer produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ImageUsage<'a> {
    /// Number of images generated.
    pub count: u64,
    /// Requested or reported quality (`low`, `medium`, `high`, `standard`,
    /// `hd`, …); `None` when not known. Compared case-insensitively.
    pub quality: Option<&'a str>,
    /// Size as `WxH` (`1024x1024`); `None` when not known. Compared
    /// case-insensitively.
    pub size: Option<&'a str>,
    /// Token usage, when the answer reports it.
    pub tokens: Option<ImageTokenCounts>,
}

/// Which prices an [`ImageCost`] used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageCostBasis {
    /// Text-token and image-token prices (the answer reported tokens).
    Tokens,
    /// A per-image price from [`ModelPrice::per_image`], by its
    /// `quality/WxH` key.
    PerImage(&'static str),
    /// The model's any-size per-image price
    /// ([`ModelPrice::per_image_any_size`]).
    AnySize,
}

/// The cost of an image answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageCost {
    /// Total USD micros for all images of the answer.
    pub usd_micros: u64,
    /// Which prices were used.
    pub basis: ImageCostBasis,
}

impl ModelPrice {
    /// The per-image price (USD micros) for a quality and size, with its
    /// basis. Fallbacks, first found wins:
    ///
    /// 1. `quality/size` exactly (quality `None` is `default`);
    /// 2. `default/size`;
    /// 3. [`ModelPrice::per_image_any_size`].
    ///
    /// `None` when none applies (the image is unpriced, never free).
    #[must_use]
    pub fn per_image_price(
        &self,
        quality: Option<&str>,
        size: Option<&str>,
    ) -> Option<(ImageCostBasis, u64)> {
        if let Some(size) = size {
            let quality = quality.unwrap_or("default");
            for q in [quality, "default"] {
                let hit = self.per_image.iter().find(|(key, _)| {
                    key.split_once('/').is_some_and(|(kq, ks)| {
                        kq.eq_ignore_ascii_case(q) && ks.eq_ignore_ascii_case(size)
                    })
                });
                if let Some((key, micros)) = hit {
                    return Some((ImageCostBasis::PerImage(key), *micros));
                }
            }
        }
        self.per_image_any_size
            .map(|micros| (ImageCostBasis::AnySize, micros))
    }

    /// The cost of the tokens of an image answer in USD micros, rounded up
    /// once: text input at the text-token prices, image input and output at
    /// the image-token prices. `None` when a needed price is unknown.
    fn image_token_cost(&self, t: ImageTokenCounts) -> Option<u64> {
        let text = cost::cost_numerator(
            &self.tokens,
            TokenCounts {
                input: t.text_input,
                cached: t.cached_text_input,
                ..TokenCounts::default()
            },
        )?;
        let image = cost::cost_numerator(
            &self.image_tokens,
            TokenCounts {
                input: t.image_input,
                cached: t.cached_image_input,
                ..TokenCounts::default()
            },
        )?;
        let output = term(t.output, self.image_tokens.output)?;
        ceil_micros(text.checked_add(image)?.checked_add(output)?)
    }
}

/// The cost of an image answer in USD micros.
///
/// When the answer reports (non-zero) token usage and every price those
/// tokens need is known, token prices win ([`ImageCostBasis::Tokens`]).
/// Otherwise the per-image price for the quality and size
/// ([`ModelPrice::per_image_price`]) × `count`. `None` when neither applies
/// or on overflow.
///
/// ```
/// use tb_prices::{ImageCostBasis, ImageUsage, get, image_cost_usd_micros};
/// let model = get("gpt-image-1").expect("in the table");
/// let usage = ImageUsage { count: 2, quality: Some("low"), size: Some("1024x1024"), tokens: None };
/// let cost = image_cost_usd_micros(model, &usage).expect("priced");
/// assert_eq!((cost.usd_micros, cost.basis), (22_000, ImageCostBasis::PerImage("low/1024x1024")));
/// ```
#[must_use]
pub fn image_cost_usd_micros(price: &ModelPrice, usage: &ImageUsage<'_>) -> Option<ImageCost> {
    if let Some(tokens) = usage.tokens.filter(|t| !t.is_zero())
        && let Some(usd_micros) = price.image_token_cost(tokens)
    {
        return Some(ImageCost {
            usd_micros,
            basis: ImageCostBasis::Tokens,
        });
    }
    let (basis, each) = price.per_image_price(usage.quality, usage.size)?;
    Some(ImageCost {
        usd_micros: each.checked_mul(usage.count)?,
        basis,
    })
}
