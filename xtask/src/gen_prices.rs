//! `cargo xtask gen-prices [--input FILE | --url URL] [--check]`: generates
//! `crates/tb-prices/src/generated.rs` from a LiteLLM price snapshot
//! (docs: billing.md, "Price table").
//!
//! # Where the input comes from (a deliberate deviation from billing.md)
//!
//! billing.md names the upstream raw URL as the default input. Here the
//! default is the **committed snapshot**: the one
//! `crates/tb-prices/data/litellm-model-prices-*.json`. Generation, `--check`
//! and the staleness test then never touch the network and always agree with
//! what is committed, and CI cannot go red because upstream moved.
//!
//! - no flag: the committed snapshot;
//! - `--input FILE`: any local file (offline use, tests);
//! - `--url URL`: a maintainer's refresh. `curl` (a subprocess: no HTTP crate
//!   in the build) downloads URL, the download must generate cleanly, then it
//!   **replaces** the snapshot as `litellm-model-prices-YYYY-MM-DD.json`
//!   (UTC download date; earlier snapshots are removed, git keeps them) and
//!   the table is regenerated from it. Update `data/README.md` alongside.
//!   Upstream is [`UPSTREAM_URL`].
//!
//! `--check` regenerates in memory and fails when the committed file differs
//! (it never downloads, so `--url` with `--check` is refused).
//!
//! # What is kept
//!
//! Entries whose `litellm_provider` is in [`PROVIDERS`] and whose `mode` is
//! `chat`, `responses`, `image_generation` or `embedding`; chat/responses
//! entries need both an input and an output price > 0, embedding entries an
//! input price > 0. `sample_spec`, non-object values
//! and `ft:` keys are dropped. The id is the key with everything up to the
//! first `/` removed; on a collision the key without a prefix wins, otherwise
//! the first in file order (the top-level object is read with its key order).
//!
//! Image keys (`^(?:(\w+)/)?(\d+)-x-(\d+)/(.+)$`, matched before the prefix
//! is stripped: `low/1024-x-1024/gpt-image-1`) are folded into the base
//! model's `per_image` map as `quality/WxH` (`default/WxH` without a
//! quality), priced `output_cost_per_image ?? input_cost_per_image ??
//! input_cost_per_pixel × W × H`.
//!
//! Prices are converted exactly from the JSON number text (see
//! [`crate::decimal`]). A missing price is `None`; so is a `0`, which LiteLLM
//! uses as a placeholder (`cache_creation_input_token_cost: 0.0` on DeepSeek,
//! whose cache writes are billed as plain input).
//!
//! Tiered prices are kept as tiers of the entry (see [`TierField`]): the
//! `_priority` and `_flex` service tiers, the `…_above_<N>k_tokens` context
//! thresholds (xAI's read as "at least", as LiteLLM bills them, the others'
//! as "over") and their combinations, of the input, output, cache-read,
//! cache-write and 1-hour cache-write (`cache_creation_input_token_cost_above_1hr`)
//! prices. Every other tiered price is ignored and counted: `_batches` (the
//! batch API is not proxied), `_ultrafast`, `_decisions`, OpenAI's
//! `…_above_12hr` cache writes (no answer reports them), per-audio,
//! per-image and per-character tiers, and LiteLLM's `tiered_pricing` ranges.

use std::collections::{BTreeMap, btree_map};
use std::fmt::{self, Write as _};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::decimal;

/// First-party makers whose prices are kept (LiteLLM's `litellm_provider`).
/// Add one here to extend the table.
pub(crate) const PROVIDERS: &[&str] = &[
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

/// LiteLLM's price file upstream, for `--url`.
pub(crate) const UPSTREAM_URL: &str =
    "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json";

/// Where the snapshot lives, relative to the workspace root.
const DATA_DIR: &str = "crates/tb-prices/data";
/// Snapshot file names: `litellm-model-prices-<version or date>.json`.
const SNAPSHOT_PREFIX: &str = "litellm-model-prices-";
/// The generated file, relative to the workspace root.
pub(crate) const OUTPUT: &str = "crates/tb-prices/src/generated.rs";
/// What to run when the generated file is stale.
pub(crate) const REGENERATE: &str = "cargo xtask gen-prices";

const USAGE: &str = "usage: cargo xtask gen-prices [--input FILE | --url URL] [--check]

  (no flag)     generate from the committed snapshot in crates/tb-prices/data
  --input FILE  generate from a local LiteLLM model_prices_and_context_window.json
  --url URL     download with curl, replace the committed snapshot, generate
                (upstream: see UPSTREAM_URL in xtask/src/gen_prices.rs)
  --check       regenerate in memory; fail if crates/tb-prices/src/generated.rs differs";

/// The workspace root (xtask lives in `<root>/xtask`).
pub(crate) fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Runs the task with its arguments (after `gen-prices`).
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut input: Option<PathBuf> = None;
    let mut url: Option<String> = None;
    let mut check = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--input" => {
                let v = it.next().context("--input needs a FILE")?;
                input = Some(PathBuf::from(v));
            }
            "--url" => url = Some(it.next().context("--url needs a URL")?.clone()),
            "--check" => check = true,
            "-h" | "--help" => {
                println!("{USAGE}\n\nupstream: {UPSTREAM_URL}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if input.is_some() && url.is_some() {
        bail!("--input and --url exclude each other\n\n{USAGE}");
    }
    if check && url.is_some() {
        bail!("--check never downloads: use it with --input FILE or alone");
    }

    let root = root();
    let data_dir = root.join(DATA_DIR);
    let path = match (input, url) {
        (Some(path), _) => path,
        (None, Some(url)) => download(&url, &data_dir)?,
        (None, None) => snapshot_in(&data_dir)?,
    };
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let name = file_name(&path)?;
    let generated = generate(&name, &bytes)?;
    print!("{}", generated.summary);

    let output = root.join(OUTPUT);
    if check {
        let committed = fs::read_to_string(&output).unwrap_or_default();
        if committed != generated.code {
            let mut command = REGENERATE.to_owned();
            if args.iter().any(|a| a == "--input") {
                let _ = write!(command, " --input {}", path.display());
            }
            bail!("{OUTPUT} is stale (it does not match {name}); run: {command}");
        }
        println!("{OUTPUT} is up to date");
    } else {
        fs::write(&output, &generated.code)
            .with_context(|| format!("writing {}", output.display()))?;
        println!("wrote {OUTPUT}");
    }
    Ok(())
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name", path.display()))
}

/// The committed snapshot: the one `litellm-model-prices-*.json` in `dir`.
pub(crate) fn snapshot_in(dir: &Path) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with(SNAPSHOT_PREFIX) && n.ends_with(".json")) {
            found.push(path);
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "no {SNAPSHOT_PREFIX}*.json in {}; use --input FILE or --url URL",
            dir.display()
        ),
        _ => bail!(
            "several snapshots in {} ({}); keep one or use --input FILE",
            dir.display(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Downloads `url` with curl and makes it the committed snapshot in
/// `data_dir`, replacing earlier ones. Returns the new snapshot's path.
pub(crate) fn download(url: &str, data_dir: &Path) -> Result<PathBuf> {
    let tmp = data_dir.join(".download.json.tmp");
    println!("downloading {url}");
    let status = Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location"])
        .arg("--output")
        .arg(&tmp)
        .arg(url)
        .status()
        .context("running curl (is it installed?)")?;
    if !status.success() {
        let _ = fs::remove_file(&tmp);
        bail!("curl {url} failed ({status})");
    }
    let bytes = fs::read(&tmp).with_context(|| format!("reading {}", tmp.display()))?;
    if let Err(err) = generate("download", &bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(err.context(format!("{url} is not a usable LiteLLM price file")));
    }
    let dest = data_dir.join(format!("{SNAPSHOT_PREFIX}{}.json", utc_date_today()));
    fs::rename(&tmp, &dest).with_context(|| format!("moving download to {}", dest.display()))?;
    for entry in fs::read_dir(data_dir)? {
        let path = entry?.path();
        let name = file_name(&path)?;
        if path != dest && name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(".json") {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            println!("removed the previous snapshot {name}");
        }
    }
    println!(
        "saved {}; update {DATA_DIR}/README.md (version, date)",
        dest.display()
    );
    Ok(dest)
}

/// Today's UTC date as `YYYY-MM-DD`.
fn utc_date_today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

// ---------------------------------------------------------------------------
// Reading the JSON with its key order.

/// A JSON object's members in file order, values left as raw JSON text
/// (serde_json's own map would sort the keys).
struct Ordered<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Ordered<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor;
        impl<'de> Visitor<'de> for OrderedVisitor {
            type Value = Ordered<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    members.push((key, value));
                }
                Ok(Ordered(members))
            }
        }
        deserializer.deserialize_map(OrderedVisitor)
    }
}

/// One LiteLLM entry: its fields as raw JSON.
struct Entry<'a> {
    key: &'a str,
    fields: BTreeMap<&'a str, &'a RawValue>,
    /// The tiered price fields that are kept, with their names.
    tiered: Vec<(TierField, String, &'a RawValue)>,
}

impl<'a> Entry<'a> {
    fn parse(key: &'a str, raw: &'a RawValue) -> Option<Entry<'a>> {
        let members: Ordered<'a> = serde_json::from_str(raw.get()).ok()?;
        // Keys that needed unescaping are owned; LiteLLM's field names never do.
        let mut fields = BTreeMap::new();
        let mut tiered = Vec::new();
        for (name, value) in members.0 {
            if let Some(known) = FIELD_NAMES.iter().find(|f| **f == name) {
                fields.insert(*known, value);
            } else if let Some(field) = TierField::parse(&name) {
                tiered.push((field, name, value));
            } else if is_tiered(&name) {
                fields.insert(TIERED_MARKER, value);
            }
        }
        Some(Entry {
            key,
            fields,
            tiered,
        })
    }

    fn string(&self, field: &str) -> Option<String> {
        serde_json::from_str(self.fields.get(field)?.get()).ok()
    }

    /// `field × multiplier × 10^pow10`, rounded; `None` when absent, `null`
    /// or zero. Errors on anything that is not a non-negative number.
    fn scaled(&self, field: &str, pow10: i32, multiplier: u128) -> Result<Option<u64>> {
        let Some(raw) = self.fields.get(field) else {
            return Ok(None);
        };
        self.scaled_raw(field, raw, pow10, multiplier)
    }

    /// [`Entry::scaled`] of a raw value.
    fn scaled_raw(
        &self,
        field: &str,
        raw: &RawValue,
        pow10: i32,
        multiplier: u128,
    ) -> Result<Option<u64>> {
        let text = raw.get().trim();
        if text == "null" {
            return Ok(None);
        }
        let value = decimal::scale(text, pow10, multiplier)
            .with_context(|| format!("{:?}: {field} = {text}", self.key))?;
        let value = u64::try_from(value)
            .with_context(|| format!("{:?}: {field} = {text} is out of range", self.key))?;
        Ok((value > 0).then_some(value))
    }

    /// A per-token price in USD micros per 1M tokens.
    fn per_million(&self, field: &str) -> Result<Option<u64>> {
        self.scaled(field, 12, 1)
    }

    /// A per-image price in USD micros: `output_cost_per_image ??
    /// input_cost_per_image`, then (with a size) `input_cost_per_pixel × W × H`.
    fn per_image(&self, size: Option<(u64, u64)>) -> Result<Option<u64>> {
        if let Some(p) = self.scaled("output_cost_per_image", 6, 1)? {
            return Ok(Some(p));
        }
        if let Some(p) = self.scaled("input_cost_per_image", 6, 1)? {
            return Ok(Some(p));
        }
        match size {
            Some((w, h)) => self.scaled("input_cost_per_pixel", 6, u128::from(w) * u128::from(h)),
            None => Ok(None),
        }
    }

    /// A video price in USD micros per second: `output_cost_per_second ??
    /// output_cost_per_video_per_second` (OpenAI's Sora rows use the latter).
    fn per_second(&self) -> Result<Option<u64>> {
        if let Some(p) = self.scaled("output_cost_per_second", 6, 1)? {
            return Ok(Some(p));
        }
        self.scaled("output_cost_per_video_per_second", 6, 1)
    }

    fn tokens(&self) -> Result<Prices> {
        Ok(Prices {
            input: self.per_million("input_cost_per_token")?,
            output: self.per_million("output_cost_per_token")?,
            cache_read: self.per_million("cache_read_input_token_cost")?,
            cache_write: self.per_million("cache_creation_input_token_cost")?,
            cache_write_1h: self.per_million("cache_creation_input_token_cost_above_1hr")?,
        })
    }

    /// The kept tiers: (service tier, threshold) → prices, for an entry of
    /// `provider` (xAI's thresholds are "at least").
    fn tiers(&self, provider: &str) -> Result<BTreeMap<TierKey, Prices>> {
        let mut tiers: BTreeMap<TierKey, Prices> = BTreeMap::new();
        for (field, name, raw) in &self.tiered {
            let Some(micros) = self.scaled_raw(name, raw, 12, 1)? else {
                continue;
            };
            let above = field.above.map(|n| {
                if provider == "xai" {
                    Threshold::AtLeast(n)
                } else {
                    Threshold::Over(n)
                }
            });
            let prices = tiers.entry((field.service, above)).or_default();
            let slot = match field.class {
                PriceClass::Input => &mut prices.input,
                PriceClass::Output => &mut prices.output,
                PriceClass::CacheRead => &mut prices.cache_read,
                PriceClass::CacheWrite => &mut prices.cache_write,
                PriceClass::CacheWrite1h => &mut prices.cache_write_1h,
            };
            *slot = Some(micros);
        }
        Ok(tiers)
    }

    fn image_tokens(&self) -> Result<Prices> {
        Ok(Prices {
            input: self.per_million("input_cost_per_image_token")?,
            output: self.per_million("output_cost_per_image_token")?,
            cache_read: self.per_million("cache_read_input_image_token_cost")?,
            cache_write: None,
            cache_write_1h: None,
        })
    }

    fn has_tiered(&self) -> bool {
        self.fields.contains_key(TIERED_MARKER)
    }
}

/// The fields the generator reads; everything else is skipped.
const FIELD_NAMES: &[&str] = &[
    "litellm_provider",
    "mode",
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "cache_creation_input_token_cost_above_1hr",
    "input_cost_per_image_token",
    "output_cost_per_image_token",
    "cache_read_input_image_token_cost",
    "output_cost_per_image",
    "input_cost_per_image",
    "input_cost_per_pixel",
    "output_cost_per_second",
    "output_cost_per_video_per_second",
];

/// Stands in an [`Entry`] for "had at least one tiered price".
const TIERED_MARKER: &str = " tiered";

/// The price classes a tier can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PriceClass {
    Input,
    Output,
    CacheRead,
    CacheWrite,
    CacheWrite1h,
}

/// A service tier with prices of its own (LiteLLM's key suffix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Service {
    Standard,
    Priority,
    Flex,
}

/// A context threshold: over N (most providers) or at least N (xAI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Threshold {
    Over(u64),
    AtLeast(u64),
}

/// A tier's place in the table: service tier, then threshold (none first).
type TierKey = (Service, Option<Threshold>);

/// A kept tiered price field: `<class>[_above_<N>[k]_tokens][_priority|_flex]`
/// where `<class>` is `input_cost_per_token`, `output_cost_per_token`,
/// `cache_read_input_token_cost`, `cache_creation_input_token_cost` or
/// `cache_creation_input_token_cost_above_1hr` (the base 1-hour write price,
/// read as a base field, is not one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TierField {
    class: PriceClass,
    above: Option<u64>,
    service: Service,
}

impl TierField {
    pub(crate) fn parse(name: &str) -> Option<TierField> {
        let (rest, service) = if let Some(r) = name.strip_suffix("_priority") {
            (r, Service::Priority)
        } else if let Some(r) = name.strip_suffix("_flex") {
            (r, Service::Flex)
        } else {
            (name, Service::Standard)
        };
        let (class_name, above) = match rest.strip_suffix("_tokens") {
            Some(r) => {
                let (class_name, count) = r.rsplit_once("_above_")?;
                (class_name, Some(parse_token_count(count)?))
            }
            None => (rest, None),
        };
        let class = match class_name {
            "input_cost_per_token" => PriceClass::Input,
            "output_cost_per_token" => PriceClass::Output,
            "cache_read_input_token_cost" => PriceClass::CacheRead,
            "cache_creation_input_token_cost" => PriceClass::CacheWrite,
            "cache_creation_input_token_cost_above_1hr" => PriceClass::CacheWrite1h,
            _ => return None,
        };
        let field = TierField {
            class,
            above,
            service,
        };
        // The base prices are not tiers.
        (above.is_some() || service != Service::Standard).then_some(field)
    }
}

/// `200k` → 200_000, `128` → 128; anything else is not a count.
fn parse_token_count(text: &str) -> Option<u64> {
    let (digits, scale) = match text.strip_suffix('k') {
        Some(d) => (d, 1_000),
        None => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// A tiered price field that is not kept: a `…cost…` field with a tier
/// qualifier, or LiteLLM's `tiered_pricing` ranges.
fn is_tiered(field: &str) -> bool {
    if field == "tiered_pricing" {
        return true;
    }
    field.contains("cost")
        && (field.contains("_above_")
            || ["_priority", "_batches", "_flex", "_ultrafast", "_decisions"]
                .iter()
                .any(|s| field.ends_with(s)))
}

// ---------------------------------------------------------------------------
// Generation.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Chat,
    Responses,
    ImageGeneration,
    Embedding,
}

impl Mode {
    fn parse(text: &str) -> Option<Mode> {
        match text {
            "chat" => Some(Mode::Chat),
            "responses" => Some(Mode::Responses),
            "image_generation" => Some(Mode::ImageGeneration),
            "embedding" => Some(Mode::Embedding),
            _ => None,
        }
    }

    fn variant(self) -> &'static str {
        match self {
            Mode::Chat => "Mode::Chat",
            Mode::Responses => "Mode::Responses",
            Mode::ImageGeneration => "Mode::ImageGeneration",
            Mode::Embedding => "Mode::Embedding",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Prices {
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    cache_write_1h: Option<u64>,
}

impl Prices {
    fn is_none(&self) -> bool {
        *self == Prices::default()
    }
}

#[derive(Clone, Debug)]
struct Model {
    id: String,
    key: String,
    provider: String,
    mode: Mode,
    tokens: Prices,
    tiers: BTreeMap<TierKey, Prices>,
    image_tokens: Prices,
    per_image: BTreeMap<String, u64>,
    per_image_any_size: Option<u64>,
}

impl Model {
    fn is_priced(&self) -> bool {
        !self.tokens.is_none()
            || !self.image_tokens.is_none()
            || !self.per_image.is_empty()
            || self.per_image_any_size.is_some()
    }
}

/// A key of the image form `^(?:(\w+)/)?(\d+)-x-(\d+)/(.+)$`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ImageKey<'a> {
    quality: Option<&'a str>,
    width: u64,
    height: u64,
    model: &'a str,
}

/// Matches `^(?:(\w+)/)?(\d+)-x-(\d+)/(.+)$` (with the regex's
/// backtracking: the quality group is tried first, then without it).
pub(crate) fn parse_image_key(key: &str) -> Option<ImageKey<'_>> {
    fn size_then_model(s: &str) -> Option<(u64, u64, &str)> {
        let (size, model) = s.split_once('/')?;
        let (w, h) = size.split_once("-x-")?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(w) || !digits(h) || model.is_empty() || model.contains('\n') {
            return None;
        }
        Some((w.parse().ok()?, h.parse().ok()?, model))
    }
    let word = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_alphanumeric() || c == '_');
    if let Some((quality, rest)) = key.split_once('/')
        && word(quality)
        && let Some((width, height, model)) = size_then_model(rest)
    {
        return Some(ImageKey {
            quality: Some(quality),
            width,
            height,
            model,
        });
    }
    let (width, height, model) = size_then_model(key)?;
    Some(ImageKey {
        quality: None,
        width,
        height,
        model,
    })
}

/// Everything after the first `/` (the whole key without one).
fn strip_prefix(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, rest)| rest)
}

/// Why an entry of the input is not a model of its own in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DropReason {
    /// The `sample_spec` documentation entry.
    SampleSpec,
    /// The value is not a JSON object.
    NotAnObject,
    /// A fine-tuned `ft:` key.
    FineTuned,
    /// `litellm_provider` missing or not in [`PROVIDERS`].
    Provider,
    /// `mode` missing or not chat/responses/image_generation/embedding/
    /// video_generation.
    Mode,
    /// Chat/responses without both input and output price > 0, or an image
    /// model with no price at all.
    NoPrice,
    /// An image size/quality key without a per-image price.
    ImageKeyWithoutPrice,
    /// Lost a collision on its id.
    CollisionLoser,
}

impl DropReason {
    fn name(self) -> &'static str {
        match self {
            DropReason::SampleSpec => "sample_spec",
            DropReason::NotAnObject => "not an object",
            DropReason::FineTuned => "ft: (fine-tuned)",
            DropReason::Provider => "provider not listed",
            DropReason::Mode => "mode not chat/responses/image_generation/embedding/video",
            DropReason::NoPrice => "no input/output price",
            DropReason::ImageKeyWithoutPrice => "image size key without a price",
            DropReason::CollisionLoser => "lost an id collision",
        }
    }
}

/// What a generation did, printed after it.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) input: String,
    pub(crate) sha256: String,
    pub(crate) entries: usize,
    pub(crate) kept: usize,
    pub(crate) kept_by_mode: BTreeMap<&'static str, usize>,
    /// Video models kept (per-second prices, a table of their own).
    pub(crate) kept_video: usize,
    pub(crate) dropped: BTreeMap<DropReason, usize>,
    pub(crate) folded_image_keys: usize,
    pub(crate) image_key_duplicates: usize,
    /// Every id that was seen more than once, with the number of losers.
    pub(crate) collisions: BTreeMap<String, usize>,
    /// Collisions whose input prices differ by more than 5 %: id → (winner
    /// key, loser key).
    pub(crate) differing: BTreeMap<String, Vec<(String, String)>>,
    /// Kept entries with tiered prices kept.
    pub(crate) tiered_kept: usize,
    /// Kept entries with tiered prices ignored (`_batches`, …).
    pub(crate) tiered_ignored: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "input: {} (sha256 {})", self.input, self.sha256)?;
        writeln!(f, "entries read: {}", self.entries)?;
        let modes: Vec<String> = self
            .kept_by_mode
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        writeln!(f, "kept: {} models ({})", self.kept, modes.join(", "))?;
        writeln!(f, "kept: {} video models (per second)", self.kept_video)?;
        writeln!(
            f,
            "folded into per_image: {} image size/quality entries ({} duplicate keys ignored)",
            self.folded_image_keys, self.image_key_duplicates
        )?;
        let total: usize = self.dropped.values().sum();
        writeln!(f, "dropped: {total}")?;
        for (reason, n) in &self.dropped {
            writeln!(f, "  {:<42} {n}", reason.name())?;
        }
        let losers: usize = self.collisions.values().sum();
        writeln!(
            f,
            "collisions: {losers} entries on {} ids (no-prefix key wins, else first in file)",
            self.collisions.len()
        )?;
        writeln!(
            f,
            "collisions with input prices > 5% apart: {}",
            self.differing.len()
        )?;
        for (id, pairs) in &self.differing {
            for (winner, loser) in pairs {
                writeln!(f, "  {id}: kept {winner}, not {loser}")?;
            }
        }
        writeln!(
            f,
            "tiered prices kept on {} entries (_priority, _flex, _above_<N>k_tokens, 1-hour cache writes above <N>k)",
            self.tiered_kept
        )?;
        writeln!(
            f,
            "tiered prices ignored on {} kept entries (_batches, _ultrafast, _decisions, above_12hr, tiered_pricing, …)",
            self.tiered_ignored
        )
    }
}

/// The result of a generation: the file's text and what was done.
pub(crate) struct Generated {
    pub(crate) code: String,
    pub(crate) summary: Summary,
}

/// `a` and `b` differ by more than 5 % of `base` (the kept price).
fn differ_more_than_5_percent(a: u64, b: u64, base: u64) -> bool {
    u128::from(a.abs_diff(b)) * 20 > u128::from(base)
}

/// Generates `generated.rs` from the bytes of a LiteLLM price file named
/// `input_name` (the name goes into the header with the bytes' SHA-256).
pub(crate) fn generate(input_name: &str, bytes: &[u8]) -> Result<Generated> {
    let text = std::str::from_utf8(bytes).context("the price file is not UTF-8")?;
    let top: Ordered<'_> =
        serde_json::from_str(text).context("the price file is not a JSON object")?;
    let mut summary = Summary {
        input: input_name.to_owned(),
        sha256: sha256_hex(bytes),
        entries: top.0.len(),
        ..Summary::default()
    };

    let mut models: BTreeMap<String, Model> = BTreeMap::new();
    // id → (key, provider, USD micros per second).
    let mut videos: BTreeMap<String, (String, String, u64)> = BTreeMap::new();
    // (base id, provider, per_image key, micros), folded in at the end.
    let mut image_prices: Vec<(String, String, String, u64)> = Vec::new();

    for (key, raw) in &top.0 {
        let mut count_drop = |reason: DropReason| *summary.dropped.entry(reason).or_default() += 1;
        if key == "sample_spec" {
            count_drop(DropReason::SampleSpec);
            continue;
        }
        let Some(entry) = Entry::parse(key, raw) else {
            count_drop(DropReason::NotAnObject);
            continue;
        };
        if key.starts_with("ft:") {
            count_drop(DropReason::FineTuned);
            continue;
        }
        let Some(provider) = entry
            .string("litellm_provider")
            .filter(|p| PROVIDERS.contains(&p.as_str()))
        else {
            count_drop(DropReason::Provider);
            continue;
        };
        if entry.string("mode").as_deref() == Some("video_generation") {
            let Some(per_second) = entry.per_second()? else {
                count_drop(DropReason::NoPrice);
                continue;
            };
            let id = strip_prefix(key).to_owned();
            match videos.entry(id) {
                btree_map::Entry::Vacant(slot) => {
                    slot.insert((key.clone(), provider, per_second));
                }
                btree_map::Entry::Occupied(mut slot) => {
                    count_drop(DropReason::CollisionLoser);
                    *summary.collisions.entry(slot.key().clone()).or_default() += 1;
                    if slot.get().0.contains('/') && !key.contains('/') {
                        slot.insert((key.clone(), provider, per_second));
                    }
                }
            }
            continue;
        }
        let Some(mode) = entry.string("mode").as_deref().and_then(Mode::parse) else {
            count_drop(DropReason::Mode);
            continue;
        };

        if mode == Mode::ImageGeneration
            && let Some(image) = parse_image_key(key)
        {
            match entry.per_image(Some((image.width, image.height)))? {
                Some(micros) => {
                    let quality = image.quality.unwrap_or("default").to_ascii_lowercase();
                    let size = format!("{}x{}", image.width, image.height);
                    image_prices.push((
                        strip_prefix(image.model).to_owned(),
                        provider,
                        format!("{quality}/{size}"),
                        micros,
                    ));
                    summary.folded_image_keys += 1;
                }
                None => count_drop(DropReason::ImageKeyWithoutPrice),
            }
            continue;
        }

        let tokens = entry.tokens()?;
        let is_image = mode == Mode::ImageGeneration;
        // An embedding has no output tokens: its input price is enough.
        let needs_output = !is_image && mode != Mode::Embedding;
        if !is_image && (tokens.input.is_none() || (needs_output && tokens.output.is_none())) {
            count_drop(DropReason::NoPrice);
            continue;
        }
        let tiers = entry.tiers(&provider)?;
        let model = Model {
            id: strip_prefix(key).to_owned(),
            key: key.clone(),
            provider,
            mode,
            tokens,
            tiers,
            image_tokens: if is_image {
                entry.image_tokens()?
            } else {
                Prices::default()
            },
            per_image: BTreeMap::new(),
            per_image_any_size: if is_image {
                entry.per_image(None)?
            } else {
                None
            },
        };
        if entry.has_tiered() {
            summary.tiered_ignored += 1;
        }

        match models.get_mut(&model.id) {
            None => {
                models.insert(model.id.clone(), model);
            }
            Some(existing) => {
                count_drop(DropReason::CollisionLoser);
                *summary.collisions.entry(model.id.clone()).or_default() += 1;
                let new_wins = existing.key.contains('/') && !model.key.contains('/');
                let (winner, loser) = if new_wins {
                    (&model, &*existing)
                } else {
                    (&*existing, &model)
                };
                if let (Some(w), Some(l)) = (winner.tokens.input, loser.tokens.input)
                    && differ_more_than_5_percent(w, l, w)
                {
                    summary
                        .differing
                        .entry(model.id.clone())
                        .or_default()
                        .push((winner.key.clone(), loser.key.clone()));
                }
                if new_wins {
                    *existing = model;
                }
            }
        }
    }

    for (id, provider, key, micros) in image_prices {
        let model = models.entry(id.clone()).or_insert_with(|| Model {
            id: id.clone(),
            key: id,
            provider,
            mode: Mode::ImageGeneration,
            tokens: Prices::default(),
            tiers: BTreeMap::new(),
            image_tokens: Prices::default(),
            per_image: BTreeMap::new(),
            per_image_any_size: None,
        });
        match model.per_image.entry(key) {
            btree_map::Entry::Vacant(slot) => {
                slot.insert(micros);
            }
            btree_map::Entry::Occupied(_) => summary.image_key_duplicates += 1,
        }
    }

    let before = models.len();
    models.retain(|_, m| m.is_priced());
    if before > models.len() {
        *summary.dropped.entry(DropReason::NoPrice).or_default() += before - models.len();
    }
    summary.kept = models.len();
    summary.tiered_kept = models.values().filter(|m| !m.tiers.is_empty()).count();
    for m in models.values() {
        let mode = match m.mode {
            Mode::Chat => "chat",
            Mode::Responses => "responses",
            Mode::ImageGeneration => "image_generation",
            Mode::Embedding => "embedding",
        };
        *summary.kept_by_mode.entry(mode).or_default() += 1;
    }

    summary.kept_video = videos.len();
    let code = render(&summary, models.values(), &videos);
    Ok(Generated { code, summary })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    const_hex::encode(Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------
// Rendering, in the exact layout rustfmt gives it (CI runs `cargo fmt
// --check` over the generated file).

/// `2500000` → `2_500_000`.
fn underscored(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    out
}

fn option(p: Option<u64>) -> String {
    p.map_or_else(
        || "None".to_owned(),
        |v| format!("Some({})", underscored(v)),
    )
}

/// `field: TokenPrices { … },` at `indent` spaces.
fn render_prices(out: &mut String, indent: usize, field: &str, p: &Prices) {
    let pad = " ".repeat(indent);
    if p.is_none() {
        let _ = writeln!(out, "{pad}{field}: TokenPrices::NONE,");
        return;
    }
    let _ = writeln!(out, "{pad}{field}: TokenPrices {{");
    for (name, value) in [
        ("input", p.input),
        ("output", p.output),
        ("cache_read", p.cache_read),
        ("cache_write", p.cache_write),
        ("cache_write_1h", p.cache_write_1h),
    ] {
        let _ = writeln!(out, "{pad}    {name}: {},", option(value));
    }
    let _ = writeln!(out, "{pad}}},");
}

/// `tiers: &[…],`: one `TierPrices` per tier, in key order.
fn render_tiers(out: &mut String, tiers: &BTreeMap<TierKey, Prices>) {
    if tiers.is_empty() {
        out.push_str("        tiers: &[],\n");
        return;
    }
    // rustfmt puts a lone struct literal on the brackets' lines.
    let one = tiers.len() == 1;
    let (open, item, close, pad) = if one {
        ("        tiers: &[TierPrices {\n", "", "        }],\n", 12)
    } else {
        (
            "        tiers: &[\n",
            "            TierPrices {\n",
            "        ],\n",
            16,
        )
    };
    out.push_str(open);
    for ((service, above), prices) in tiers {
        let service = match service {
            Service::Standard => "ServiceTier::Standard",
            Service::Priority => "ServiceTier::Priority",
            Service::Flex => "ServiceTier::Flex",
        };
        let above = match above {
            None => "None".to_owned(),
            Some(Threshold::Over(n)) => format!("Some(Threshold::Over({}))", underscored(*n)),
            Some(Threshold::AtLeast(n)) => {
                format!("Some(Threshold::AtLeast({}))", underscored(*n))
            }
        };
        let spaces = " ".repeat(pad);
        out.push_str(item);
        let _ = writeln!(out, "{spaces}service: {service},");
        let _ = writeln!(out, "{spaces}above: {above},");
        render_prices(out, pad, "tokens", prices);
        if !one {
            out.push_str("            },\n");
        }
    }
    out.push_str(close);
}

/// rustfmt's `array_width` (60 % of `max_width` 100): an array whose items
/// (without the brackets) fit stays on one line.
const ARRAY_WIDTH: usize = 60;
const MAX_WIDTH: usize = 100;

fn render_per_image(out: &mut String, per_image: &BTreeMap<String, u64>) {
    let items: Vec<String> = per_image
        .iter()
        .map(|(k, v)| format!("({k:?}, {})", underscored(*v)))
        .collect();
    let inner = items.join(", ");
    let prefix = "        per_image: ";
    if inner.chars().count() <= ARRAY_WIDTH && prefix.len() + inner.len() + 4 <= MAX_WIDTH {
        let _ = writeln!(out, "{prefix}&[{inner}],");
        return;
    }
    let _ = writeln!(out, "{prefix}&[");
    for item in items {
        let _ = writeln!(out, "            {item},");
    }
    out.push_str("        ],\n");
}

/// `text` as `// ` comment lines of at most 79 characters.
fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("//");
    for word in text.split_whitespace() {
        if line.len() > 2 && line.chars().count() + 1 + word.chars().count() > 79 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("//");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

fn render<'a>(
    summary: &Summary,
    models: impl Iterator<Item = &'a Model>,
    videos: &BTreeMap<String, (String, String, u64)>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by `{REGENERATE}` — do not edit by hand.\n//"
    );
    out.push_str(&comment(&format!(
        "Input: {} (SHA-256 {}), LiteLLM's model_prices_and_context_window.json, \
         MIT-licensed, committed in crates/tb-prices/data (see its README.md).",
        summary.input, summary.sha256
    )));
    out.push_str("//\n");
    out.push_str(&comment(&format!(
        "Kept: providers {} (`PROVIDERS` in xtask/src/gen_prices.rs); modes chat, \
         responses and image_generation. Prices are integer USD micros per 1M \
         tokens (per image for `per_image`), converted exactly from the JSON \
         number text; a missing or zero price is `None`, never 0. Mode \
         video_generation is the `VIDEO` table: USD micros per second of video \
         (`output_cost_per_second`, else `output_cost_per_video_per_second`).",
        PROVIDERS.join(", ")
    )));
    out.push_str("//\n");
    out.push_str(&comment(
        "Tiered prices are `tiers` of the entry: the `_priority` and `_flex` \
         service tiers, the `…_above_<N>k_tokens` context thresholds (xAI's as \
         `AtLeast`, the others' as `Over`) and their combinations; \
         `cache_write_1h` is `cache_creation_input_token_cost_above_1hr`. \
         `_batches` prices are IGNORED (the batch API is not proxied), and so \
         are `_ultrafast`, `_decisions`, `…_above_12hr` cache writes, \
         per-audio/image/character tiers and `tiered_pricing` ranges.",
    ));
    let _ = write!(
        out,
        "\
//
// Regenerate: {REGENERATE}
// Check:      {REGENERATE} --check

use crate::{{Mode, ModelPrice, ServiceTier, Threshold, TierPrices, TokenPrices, VideoPrice}};

pub(crate) const SOURCE_FILE: &str = {input:?};
",
        input = summary.input,
    );
    let sha_line = format!(
        "pub(crate) const SOURCE_SHA256: &str = {:?};",
        summary.sha256
    );
    if sha_line.len() <= MAX_WIDTH {
        let _ = writeln!(out, "{sha_line}");
    } else {
        let _ = writeln!(
            out,
            "pub(crate) const SOURCE_SHA256: &str =\n    {:?};",
            summary.sha256
        );
    }
    out.push_str("\npub(crate) static ENTRIES: &[ModelPrice] = &[\n");
    for m in models {
        out.push_str("    ModelPrice {\n");
        let _ = writeln!(out, "        id: {:?},", m.id);
        let _ = writeln!(out, "        provider: {:?},", m.provider);
        let _ = writeln!(out, "        mode: {},", m.mode.variant());
        render_prices(&mut out, 8, "tokens", &m.tokens);
        render_tiers(&mut out, &m.tiers);
        render_prices(&mut out, 8, "image_tokens", &m.image_tokens);
        render_per_image(&mut out, &m.per_image);
        let _ = writeln!(
            out,
            "        per_image_any_size: {},",
            option(m.per_image_any_size)
        );
        out.push_str("    },\n");
    }
    out.push_str("];\n");
    render_videos(&mut out, videos);
    out
}

/// `VIDEO`: one `VideoPrice` per video model, in id order (rustfmt puts a
/// lone struct literal on the brackets' lines).
fn render_videos(out: &mut String, videos: &BTreeMap<String, (String, String, u64)>) {
    out.push_str("\npub(crate) static VIDEO: &[VideoPrice] = &[");
    if videos.is_empty() {
        out.push_str("];\n");
        return;
    }
    let one = videos.len() == 1;
    let pad = if one { "" } else { "    " };
    if !one {
        out.push('\n');
    }
    for (id, (_, provider, per_second)) in videos {
        let _ = writeln!(out, "{pad}VideoPrice {{");
        let _ = writeln!(out, "{pad}    id: {id:?},");
        let _ = writeln!(out, "{pad}    provider: {provider:?},");
        let _ = writeln!(out, "{pad}    per_second: {},", underscored(*per_second));
        if one {
            out.push_str("}];\n");
        } else {
            out.push_str("    },\n");
        }
    }
    if !one {
        out.push_str("];\n");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn gen_json(json: &str) -> Generated {
        generate("test.json", json.as_bytes()).unwrap()
    }

    /// The table of a generation, as (id → model), re-derived from a run.
    fn run_gen(json: &str) -> (Summary, String) {
        let g = gen_json(json);
        (g.summary, g.code)
    }

    #[test]
    fn committed_table_is_up_to_date() {
        let root = root();
        let snapshot = snapshot_in(&root.join(DATA_DIR)).unwrap();
        let bytes = fs::read(&snapshot).unwrap();
        let generated = generate(&file_name(&snapshot).unwrap(), &bytes).unwrap();
        let committed = fs::read_to_string(root.join(OUTPUT)).unwrap_or_default();
        assert!(
            committed == generated.code,
            "{OUTPUT} is stale (does not match {}); run: {REGENERATE}",
            snapshot.display()
        );
    }

    #[test]
    fn snapshot_summary_facts() {
        let root = root();
        let snapshot = snapshot_in(&root.join(DATA_DIR)).unwrap();
        let bytes = fs::read(&snapshot).unwrap();
        let g = generate(&file_name(&snapshot).unwrap(), &bytes).unwrap();
        let s = &g.summary;
        assert_eq!(s.entries, 4_553);
        for id in ["deepseek-v4-flash", "deepseek-v4-pro"] {
            let pairs = s.differing.get(id).unwrap_or_else(|| panic!("{id}"));
            // The unprefixed DeepSeek entry wins over the dashscope resale.
            assert!(pairs.iter().all(|(winner, _)| winner == id), "{pairs:?}");
            assert!(
                pairs
                    .iter()
                    .any(|(_, loser)| loser == &format!("dashscope/{id}")),
                "{pairs:?}"
            );
        }
        assert_eq!(s.dropped.get(&DropReason::SampleSpec), Some(&1));
        assert!(s.kept > 300, "{s}");
        assert!(s.tiered_ignored > 0);
        assert_eq!(s.tiered_kept, 121);
        assert!(g.code.contains("Tiered prices"));
        assert!(g.code.contains(&sha256_hex(&bytes)));
    }

    #[test]
    fn source_digest_is_lower_case_sha256_hex() {
        // Pinned: the generated table names its source by this digest.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn keeps_listed_providers_and_modes_and_drops_the_rest() {
        let (s, code) = run_gen(
            r#"{
            "sample_spec": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 0.0},
            "ft:gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
            "odd": [1, 2],
            "bedrock/x": {"litellm_provider": "bedrock", "mode": "chat", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
            "nomode": {"litellm_provider": "openai", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
            "text-embedding": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 1e-6},
            "free": {"litellm_provider": "zai", "mode": "chat", "input_cost_per_token": 0, "output_cost_per_token": 0},
            "half": {"litellm_provider": "zai", "mode": "chat", "input_cost_per_token": 1e-6},
            "kept-chat": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06, "cache_creation_input_token_cost": 0.0, "input_cost_per_token_priority": 4e-06, "input_cost_per_token_above_200k_tokens": 5e-06},
            "kept-responses": {"litellm_provider": "openai", "mode": "responses", "input_cost_per_token": 1.5e-04, "output_cost_per_token": 6e-04}
        }"#,
        );
        assert_eq!(s.entries, 10);
        assert_eq!(s.kept, 3, "kept-chat, kept-responses and the embedding");
        let dropped: Vec<(DropReason, usize)> = s.dropped.iter().map(|(d, n)| (*d, *n)).collect();
        assert_eq!(
            dropped,
            vec![
                (DropReason::SampleSpec, 1),
                (DropReason::NotAnObject, 1),
                (DropReason::FineTuned, 1),
                (DropReason::Provider, 1),
                (DropReason::Mode, 1),
                (DropReason::NoPrice, 2),
            ]
        );
        assert_eq!((s.tiered_kept, s.tiered_ignored), (1, 0));
        // Zero is missing (`None`), tiers are kept, prices are exact.
        assert!(code.contains(
            "        id: \"kept-chat\",
        provider: \"openai\",
        mode: Mode::Chat,
        tokens: TokenPrices {
            input: Some(2_500_000),
            output: Some(10_000_000),
            cache_read: Some(1_250_000),
            cache_write: None,
            cache_write_1h: None,
        },
        tiers: &[
            TierPrices {
                service: ServiceTier::Standard,
                above: Some(Threshold::Over(200_000)),
                tokens: TokenPrices {
                    input: Some(5_000_000),
                    output: None,
                    cache_read: None,
                    cache_write: None,
                    cache_write_1h: None,
                },
            },
            TierPrices {
                service: ServiceTier::Priority,
                above: None,
                tokens: TokenPrices {
                    input: Some(4_000_000),
                    output: None,
                    cache_read: None,
                    cache_write: None,
                    cache_write_1h: None,
                },
            },
        ],"
        ));
        assert!(code.contains("mode: Mode::Responses"));
        assert!(code.contains("mode: Mode::Embedding"));
        assert!(code.contains("input: Some(150_000_000)"));
    }

    #[test]
    fn tier_fields() {
        use PriceClass::{CacheRead, CacheWrite, CacheWrite1h, Input, Output};
        use Service::{Flex, Priority, Standard};
        let f = |class, above, service| {
            Some(TierField {
                class,
                above,
                service,
            })
        };
        for (name, want) in [
            ("input_cost_per_token_priority", f(Input, None, Priority)),
            ("output_cost_per_token_flex", f(Output, None, Flex)),
            (
                "cache_read_input_token_cost_above_200k_tokens",
                f(CacheRead, Some(200_000), Standard),
            ),
            (
                "input_cost_per_token_above_272k_tokens_priority",
                f(Input, Some(272_000), Priority),
            ),
            (
                "cache_creation_input_token_cost_above_128_tokens_flex",
                f(CacheWrite, Some(128), Flex),
            ),
            (
                "cache_creation_input_token_cost_above_1hr_above_100k_tokens",
                f(CacheWrite1h, Some(100_000), Standard),
            ),
            // Base prices are not tiers.
            ("input_cost_per_token", None),
            ("cache_creation_input_token_cost_above_1hr", None),
            // Ignored tiers.
            ("input_cost_per_token_batches", None),
            ("input_cost_per_token_above_200k_tokens_batches", None),
            ("input_cost_per_token_ultrafast", None),
            ("cache_creation_input_token_cost_above_12hr", None),
            ("cache_creation_input_token_cost_above_12hr_priority", None),
            ("input_cost_per_audio_token_priority", None),
            ("input_cost_per_character_above_128k_tokens", None),
            ("input_cost_per_token_above_k_tokens", None),
            ("input_cost_per_token_above_2x_tokens", None),
            ("input_cost_per_token_priority_above_200k_tokens", None),
        ] {
            assert_eq!(TierField::parse(name), want, "{name}");
        }
    }

    #[test]
    fn tiers_are_kept_per_entry() {
        let (s, code) = run_gen(
            r#"{
            "grok": {"litellm_provider": "xai", "mode": "chat", "input_cost_per_token": 2e-6, "output_cost_per_token": 1e-5, "input_cost_per_token_above_200k_tokens": 4e-6, "output_cost_per_token_above_200k_tokens": 2e-5, "input_cost_per_token_batches": 1e-6},
            "claude": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5, "cache_creation_input_token_cost": 3.75e-6, "cache_creation_input_token_cost_above_1hr": 6e-6, "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-5, "input_cost_per_token_above_200k_tokens": 6e-6, "input_cost_per_token_flex": 0, "tiered_pricing": []}
        }"#,
        );
        assert_eq!((s.kept, s.tiered_kept, s.tiered_ignored), (2, 2, 2));
        // xAI: "at least"; `_batches` ignored.
        assert!(code.contains(
            "        tiers: &[TierPrices {
            service: ServiceTier::Standard,
            above: Some(Threshold::AtLeast(200_000)),
            tokens: TokenPrices {
                input: Some(4_000_000),
                output: Some(20_000_000),
                cache_read: None,
                cache_write: None,
                cache_write_1h: None,
            },
        }],"
        ));
        // Anthropic: the base 1-hour price on the entry, the tier's above
        // 200k; a 0 tier price is a placeholder (no flex tier at all).
        assert!(code.contains(
            "            cache_write: Some(3_750_000),
            cache_write_1h: Some(6_000_000),
        },
        tiers: &[TierPrices {
            service: ServiceTier::Standard,
            above: Some(Threshold::Over(200_000)),
            tokens: TokenPrices {
                input: Some(6_000_000),
                output: None,
                cache_read: None,
                cache_write: None,
                cache_write_1h: Some(12_000_000),
            },
        }],"
        ));
    }

    #[test]
    fn collisions_prefer_the_unprefixed_key_then_file_order() {
        let entry = |provider: &str, input: &str| {
            format!(
                r#"{{"litellm_provider": "{provider}", "mode": "chat", "input_cost_per_token": {input}, "output_cost_per_token": 1e-6}}"#
            )
        };
        // Keys deliberately out of alphabetical order: file order matters.
        let json = format!(
            r#"{{
            "zai/m1": {a},
            "dashscope/m1": {b},
            "dashscope/m2": {c},
            "m2": {d},
            "m2x": {e},
            "moonshot/m2": {f}
        }}"#,
            a = entry("zai", "1e-6"),
            b = entry("dashscope", "1.04e-6"),
            c = entry("dashscope", "2e-6"),
            d = entry("deepseek", "3e-6"),
            e = entry("deepseek", "3e-6"),
            f = entry("moonshot", "3.1e-6"),
        );
        let (s, code) = run_gen(&json);
        assert_eq!(s.kept, 3);
        assert_eq!(
            s.collisions,
            BTreeMap::from([("m1".to_owned(), 1), ("m2".to_owned(), 2)])
        );
        // m1: first in file wins (both prefixed); 4 % apart is not "> 5 %".
        // m2: the unprefixed key wins; dashscope/m2 is 33 % below it.
        assert_eq!(
            s.differing,
            BTreeMap::from([(
                "m2".to_owned(),
                vec![("m2".to_owned(), "dashscope/m2".to_owned())]
            )])
        );
        assert!(code.contains("id: \"m1\",\n        provider: \"zai\","));
        assert!(code.contains("id: \"m2\",\n        provider: \"deepseek\","));
        // Sorted by id.
        let m1 = code.find("id: \"m1\"").unwrap();
        let m2 = code.find("id: \"m2\"").unwrap();
        let m2x = code.find("id: \"m2x\"").unwrap();
        assert!(m1 < m2 && m2 < m2x);
    }

    #[test]
    fn image_keys_fold_into_the_base_model() {
        let (s, code) = run_gen(
            r#"{
            "low/1024-x-1024/gpt-image-1": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_image": 0.011, "input_cost_per_pixel": 1.0490417e-08},
            "high/1024-x-1536/gpt-image-1": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_pixel": 1.58945719e-07},
            "gpt-image-1": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_token": 5e-06, "input_cost_per_image_token": 1e-05, "output_cost_per_image_token": 4e-05, "cache_read_input_image_token_cost": 2.5e-06},
            "1024-x-1024/dall-e-2": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.02, "input_cost_per_image": 0.5},
            "512-x-512/dall-e-2": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_pixel": 6.86e-08},
            "256-x-256/dall-e-2": {"litellm_provider": "openai", "mode": "image_generation"},
            "1024-x-1024/50-steps/bedrock/sd": {"litellm_provider": "bedrock", "mode": "image_generation", "output_cost_per_image": 0.04},
            "xai/grok-image": {"litellm_provider": "xai", "mode": "image_generation", "input_cost_per_image": 0.02},
            "dashscope/empty-image": {"litellm_provider": "dashscope", "mode": "image_generation"}
        }"#,
        );
        assert_eq!(s.folded_image_keys, 4);
        assert_eq!(s.dropped.get(&DropReason::ImageKeyWithoutPrice), Some(&1));
        assert_eq!(s.dropped.get(&DropReason::Provider), Some(&1));
        assert_eq!(s.dropped.get(&DropReason::NoPrice), Some(&1));
        assert_eq!(s.kept, 3);
        // dall-e-2 has no entry of its own: one is made for its sizes.
        // 6.86e-08 × 512 × 512 × 1e6 = 17_983 (17_982.6…).
        assert!(code.contains(
            "        id: \"dall-e-2\",
        provider: \"openai\",
        mode: Mode::ImageGeneration,
        tokens: TokenPrices::NONE,
        tiers: &[],
        image_tokens: TokenPrices::NONE,
        per_image: &[(\"default/1024x1024\", 20_000), (\"default/512x512\", 17_983)],
        per_image_any_size: None,"
        ));
        assert!(code.contains(
            "        id: \"gpt-image-1\",
        provider: \"openai\",
        mode: Mode::ImageGeneration,
        tokens: TokenPrices {
            input: Some(5_000_000),
            output: None,
            cache_read: None,
            cache_write: None,
            cache_write_1h: None,
        },
        tiers: &[],
        image_tokens: TokenPrices {
            input: Some(10_000_000),
            output: Some(40_000_000),
            cache_read: Some(2_500_000),
            cache_write: None,
            cache_write_1h: None,
        },
        per_image: &[(\"high/1024x1536\", 250_000), (\"low/1024x1024\", 11_000)],
        per_image_any_size: None,"
        ));
        assert!(code.contains("id: \"grok-image\""));
        assert!(code.contains("per_image_any_size: Some(20_000),"));
    }

    #[test]
    fn video_rows_are_priced_per_second() {
        let (s, code) = run_gen(
            r#"{
            "openai/sora-2": {"litellm_provider": "openai", "mode": "video_generation", "output_cost_per_video_per_second": 0.2},
            "sora-2": {"litellm_provider": "openai", "mode": "video_generation", "output_cost_per_video_per_second": 0.1},
            "gemini/veo-3": {"litellm_provider": "gemini", "mode": "video_generation", "output_cost_per_second": 0.4, "output_cost_per_second_4k": 0.6, "output_cost_per_video_per_second": 9},
            "vertex_ai/veo-9": {"litellm_provider": "vertex_ai", "mode": "video_generation", "output_cost_per_second": 0.4},
            "xai/free-video": {"litellm_provider": "xai", "mode": "video_generation", "output_cost_per_second": 0}
        }"#,
        );
        assert_eq!(s.kept, 0);
        assert_eq!(s.kept_video, 2);
        assert_eq!(s.dropped.get(&DropReason::Provider), Some(&1));
        assert_eq!(s.dropped.get(&DropReason::NoPrice), Some(&1));
        assert_eq!(s.dropped.get(&DropReason::CollisionLoser), Some(&1));
        // The key without a prefix wins the id; `output_cost_per_second`
        // wins over the per-video spelling; resolution prices are not kept.
        assert!(code.contains(
            "pub(crate) static VIDEO: &[VideoPrice] = &[
    VideoPrice {
        id: \"sora-2\",
        provider: \"openai\",
        per_second: 100_000,
    },
    VideoPrice {
        id: \"veo-3\",
        provider: \"gemini\",
        per_second: 400_000,
    },
];
"
        ));
    }

    #[test]
    fn image_key_pattern() {
        let key = |q: Option<&'static str>, w, h, model| ImageKey {
            quality: q,
            width: w,
            height: h,
            model,
        };
        for (input, want) in [
            (
                "low/1024-x-1024/gpt-image-1",
                Some(key(Some("low"), 1024, 1024, "gpt-image-1")),
            ),
            (
                "1024-x-1024/dall-e-2",
                Some(key(None, 1024, 1024, "dall-e-2")),
            ),
            (
                "1024-x-1024/50-steps/bedrock/x",
                Some(key(None, 1024, 1024, "50-steps/bedrock/x")),
            ),
            (
                "hd_2/1792-x-1024/openai/dall-e-3",
                Some(key(Some("hd_2"), 1792, 1024, "openai/dall-e-3")),
            ),
            ("azure/hd/1024-x-1024/dall-e-3", None),
            ("1024-x-1024/", None),
            ("1024x1024/dall-e-2", None),
            ("-x-1024/m", None),
            ("gpt-image-1", None),
            ("xai/grok-imagine-image", None),
        ] {
            assert_eq!(parse_image_key(input), want, "{input}");
        }
    }

    #[test]
    fn render_is_rustfmt_stable() {
        // Every shape the renderer emits, checked by rustfmt itself when it
        // is installed (CI also runs `cargo fmt --check` on the real file).
        // g's per_image items are 60 characters wide (one line), h's 61
        // (one item per line): rustfmt's array_width boundary.
        let (_, code) = run_gen(
            r#"{
            "a": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
            "t1": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "input_cost_per_token_priority": 2e-6},
            "t2": {"litellm_provider": "xai", "mode": "chat", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "input_cost_per_token_above_200k_tokens": 2e-6, "output_cost_per_token_flex": 1e-6, "cache_creation_input_token_cost_above_1hr": 3e-6},
            "low/1024-x-1024/b": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_image": 0.011},
            "low/1024-x-1024/c": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_image": 0.011},
            "high/1024-x-1536/c": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_image": 0.25},
            "medium/1536-x-1024/c": {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_image": 0.063},
            "d": {"litellm_provider": "xai", "mode": "image_generation", "input_cost_per_image": 0.02},
            "v": {"litellm_provider": "openai", "mode": "video_generation", "output_cost_per_second": 0.1},
            "1024-x-1024/e": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.02},
            "512-x-512/e": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.018},
            "1-x-1/f": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.02},
            "2-x-2/f": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.018},
            "1024-x-1024/g": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.02},
            "2048-x-2048/g": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.018},
            "1024-x-1024/h": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.02},
            "20480-x-2048/h": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.018}
        }"#,
        );
        let Ok(mut child) = Command::new("rustfmt")
            .args(["--edition", "2024"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("rustfmt not found; skipped");
            return;
        };
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(code.as_bytes()).unwrap();
        }
        // rustfmt formats stdin to stdout (its `--check` exits 0 on stdin).
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rustfmt failed");
        let formatted = String::from_utf8(out.stdout).unwrap();
        if formatted != code {
            let first = formatted
                .lines()
                .zip(code.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "rustfmt changes the generated code from line {}:\n{}",
                first + 1,
                formatted
                    .lines()
                    .skip(first.saturating_sub(3))
                    .take(12)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }

    #[test]
    fn numbers_are_underscored() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1_000"),
            (28_000, "28_000"),
            (2_500_000, "2_500_000"),
            (123_456_789_012, "123_456_789_012"),
        ] {
            assert_eq!(underscored(n), want);
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    #[test]
    fn download_replaces_the_snapshot() {
        if Command::new("curl").arg("--version").output().is_err() {
            eprintln!("curl not found; skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("upstream.json");
        fs::write(
            &source,
            r#"{"m": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}"#,
        )
        .unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("litellm-model-prices-v1.0.0.json"), "{}").unwrap();
        fs::write(data.join("README.md"), "keep me").unwrap();

        let url = format!("file://{}", source.display());
        let saved = download(&url, &data).unwrap();
        assert_eq!(snapshot_in(&data).unwrap(), saved);
        assert!(data.join("README.md").exists());
        assert_eq!(fs::read(&saved).unwrap(), fs::read(&source).unwrap());

        // A download that is not a price file changes nothing.
        fs::write(&source, "not json").unwrap();
        assert!(download(&url, &data).is_err());
        assert_eq!(snapshot_in(&data).unwrap(), saved);
        assert!(download("file:///nonexistent/x.json", &data).is_err());
        assert_eq!(snapshot_in(&data).unwrap(), saved);
    }
}
