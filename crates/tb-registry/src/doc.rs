//! The registry document: parsing and validation. Pure: bytes in, values
//! and warnings out.
//!
//! Every field is read leniently and on its own, so one bad seller (or one
//! bad field of a seller) never rejects the whole document; only a document
//! that is not a JSON object with a `sellers` array is an error.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use tb_domain::{PaymentMethod, Protocol, UpstreamId};
use tb_prices::Ppm;

/// A validated registry document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryDoc {
    /// The document's version, as given (`""` when missing).
    pub version: String,
    /// The default seller's id, when the document names one **and** that
    /// seller survived validation.
    pub default_seller: Option<String>,
    /// The accepted sellers, in document order.
    pub sellers: Vec<SellerEntry>,
}

impl RegistryDoc {
    /// The seller with this id.
    pub fn seller(&self, id: &str) -> Option<&SellerEntry> {
        self.sellers.iter().find(|s| s.id.as_str() == id)
    }

    /// The sellers in preference order: the default seller first, then the
    /// others in document order (the order the model index wants).
    pub fn sellers_default_first(&self) -> impl Iterator<Item = &SellerEntry> {
        let default = self.default_seller.as_deref();
        let first = default.and_then(|id| self.seller(id));
        first.into_iter().chain(
            self.sellers
                .iter()
                .filter(move |s| Some(s.id.as_str()) != default),
        )
    }
}

/// One seller of the registry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerEntry {
    /// Unique within the document.
    pub id: UpstreamId,
    /// Display name (the id when the document gives none).
    pub name: String,
    /// Base URL, `http` or `https` with a host, without a trailing slash.
    pub url: String,
    /// Model ids it serves, de-duplicated, in document order; never empty.
    pub models: Vec<String>,
    /// Known protocols it speaks (unknown ones are dropped), de-duplicated.
    pub protocols: Vec<Protocol>,
    /// Known seller payment methods (`mock`, `clawtip`), de-duplicated.
    pub payment_methods: Vec<PaymentMethod>,
    /// Fraction off the list price, 0–1 (out of range or invalid: 0).
    pub discount_ratio: Ppm,
    /// Fee on top of the price, 0–1 (out of range or invalid: 0).
    pub service_fee_ratio: Ppm,
}

/// A parsed document and what validation had to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The validated document.
    pub doc: RegistryDoc,
    /// One line per dropped seller or ignored value, for the logs.
    pub warnings: Vec<String>,
}

/// A document that cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Not JSON, not an object, or no `sellers` array.
    #[error("invalid registry document: {0}")]
    Invalid(String),
}

/// The longest seller id accepted.
const MAX_ID_LEN: usize = 128;

/// Parses and validates a registry document (see `marketplace.md`,
/// "Registry"). Field names are camelCase or snake_case.
///
/// # Errors
///
/// [`RegistryError::Invalid`] when `bytes` is not a JSON object with a
/// `sellers` array. Problems with single sellers are warnings instead.
pub fn parse_registry(bytes: &[u8]) -> Result<Parsed, RegistryError> {
    let top: Fields<'_> = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Invalid(format!("not a JSON object: {e}")))?;
    let sellers_raw = top
        .get(Field::Sellers)
        .ok_or_else(|| RegistryError::Invalid("no `sellers` array".into()))?;
    let sellers_raw: Vec<&RawValue> = serde_json::from_str(sellers_raw.get())
        .map_err(|_| RegistryError::Invalid("`sellers` is not an array".into()))?;

    let mut warnings = Vec::new();
    let version = match top.get(Field::Version) {
        None => {
            warnings.push("the document has no version".to_string());
            String::new()
        }
        Some(raw) => match string_of(raw) {
            Some(v) => v,
            // A number (or anything else) is kept as its JSON text.
            None => raw.get().trim().to_string(),
        },
    };

    let mut sellers: Vec<SellerEntry> = Vec::with_capacity(sellers_raw.len());
    let mut ids: HashSet<String> = HashSet::with_capacity(sellers_raw.len());
    for (i, raw) in sellers_raw.into_iter().enumerate() {
        let mut w = SellerWarnings {
            index: i,
            id: None,
            out: &mut warnings,
        };
        let Some(seller) = parse_seller(raw, &mut w) else {
            continue;
        };
        if !ids.insert(seller.id.as_str().to_string()) {
            w.push("dropped: an earlier seller has the same id");
            continue;
        }
        sellers.push(seller);
    }

    let default_seller = match top.get(Field::DefaultSeller) {
        None => None,
        Some(raw) if raw.get().trim() == "null" => None,
        Some(raw) => match string_of(raw) {
            Some(id) if ids.contains(&id) => Some(id),
            Some(id) => {
                warnings.push(format!(
                    "defaultSeller {id:?} is not an accepted seller of the document; ignored"
                ));
                None
            }
            None => {
                warnings.push("defaultSeller is not a string; ignored".to_string());
                None
            }
        },
    };

    Ok(Parsed {
        doc: RegistryDoc {
            version,
            default_seller,
            sellers,
        },
        warnings,
    })
}

/// Collects warnings about one seller, prefixed with where it is.
struct SellerWarnings<'w> {
    index: usize,
    id: Option<String>,
    out: &'w mut Vec<String>,
}

impl SellerWarnings<'_> {
    fn push(&mut self, msg: impl fmt::Display) {
        let line = match &self.id {
            Some(id) => format!("seller #{} ({id:?}): {msg}", self.index),
            None => format!("seller #{}: {msg}", self.index),
        };
        self.out.push(line);
    }
}

fn parse_seller(raw: &RawValue, w: &mut SellerWarnings<'_>) -> Option<SellerEntry> {
    let Ok(f) = serde_json::from_str::<Fields<'_>>(raw.get()) else {
        w.push("dropped: not a JSON object");
        return None;
    };

    // The id first, so every later warning can name the seller.
    let id = match f.get(Field::Id).map(string_of) {
        None => {
            w.push("dropped: no id");
            return None;
        }
        Some(None) => {
            w.push("dropped: id is not a string");
            return None;
        }
        Some(Some(id)) => id,
    };
    w.id = Some(id.clone());
    if let Err(problem) = check_id(&id) {
        w.push(format_args!("dropped: {problem}"));
        return None;
    }

    if let Some(raw) = f.get(Field::Status) {
        match string_of(raw) {
            Some(s) if s.eq_ignore_ascii_case("active") => {}
            Some(s) => {
                w.push(format_args!("skipped: status {s:?} is not active"));
                return None;
            }
            None => {
                w.push(format_args!(
                    "skipped: status {} is not active",
                    raw.get().trim()
                ));
                return None;
            }
        }
    }

    let url = match f.get(Field::Url).map(string_of) {
        None => {
            w.push("dropped: no url");
            return None;
        }
        Some(None) => {
            w.push("dropped: url is not a string");
            return None;
        }
        Some(Some(url)) => match check_url(&url) {
            Ok(url) => url,
            Err(problem) => {
                w.push(format_args!("dropped: url {url:?} {problem}"));
                return None;
            }
        },
    };

    let models = match f.get(Field::Models) {
        None => Vec::new(),
        Some(raw) => {
            let (models, bad) = string_list(raw);
            if bad > 0 {
                w.push(format_args!(
                    "ignoring {bad} model {} that {} not non-empty strings",
                    plural(bad, "entry", "entries"),
                    plural(bad, "is", "are"),
                ));
            }
            dedup_strings(models)
        }
    };
    if models.is_empty() {
        w.push("dropped: no model");
        return None;
    }

    let name = match f.get(Field::Name).map(string_of) {
        Some(Some(name)) if !name.trim().is_empty() => name,
        _ => id.clone(),
    };

    let protocols = parse_enum_list(f.get(Field::Protocols), "protocol", w, parse_protocol);
    if protocols.is_empty() {
        w.push("lists no supported protocol: it serves nothing until its manifest says otherwise");
    }
    let payment_methods = parse_enum_list(f.get(Field::PaymentMethods), "payment method", w, |s| {
        match PaymentMethod::parse(s) {
            Some(PaymentMethod::ProviderKey) | None => None,
            Some(m) => Some(m),
        }
    });
    if payment_methods.is_empty() {
        w.push("lists no supported payment method: no purchase is possible");
    }

    let discount_ratio = ratio_field(f.get(Field::DiscountRatio), "discountRatio", w);
    let service_fee_ratio = ratio_field(f.get(Field::ServiceFeeRatio), "serviceFeeRatio", w);

    Some(SellerEntry {
        id: UpstreamId::new(id),
        name,
        url,
        models,
        protocols,
        payment_methods,
        discount_ratio,
        service_fee_ratio,
    })
}

/// Ids are shown in headers, logs and metrics labels, and usable as a
/// `<id>/model` prefix: 1–128 characters of `A-Z a-z 0-9 . _ - ~ : @`.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("id is empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("id is longer than {MAX_ID_LEN} characters"));
    }
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"._-~:@".contains(&b);
    if !id.bytes().all(ok) {
        return Err(format!(
            "id {id:?} has characters other than letters, digits and . _ - ~ : @"
        ));
    }
    Ok(())
}

/// `http`/`https` with a host; trailing slashes removed.
fn check_url(url: &str) -> Result<String, &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "is not a valid URL")?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        _ => return Err("is not http or https"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    if uri.query().is_some() {
        return Err("has a query string");
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn parse_protocol(s: &str) -> Option<Protocol> {
    Protocol::ALL.into_iter().find(|p| p.as_str() == s)
}

/// A list of names: known ones kept (de-duplicated, in order), unknown ones
/// named in one warning.
fn parse_enum_list<T: PartialEq + Copy>(
    raw: Option<&RawValue>,
    what: &str,
    w: &mut SellerWarnings<'_>,
    parse: impl Fn(&str) -> Option<T>,
) -> Vec<T> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let (names, bad) = string_list(raw);
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        match parse(&name) {
            Some(v) if !out.contains(&v) => out.push(v),
            Some(_) => {}
            None => unknown.push(name),
        }
    }
    if bad > 0 {
        w.push(format_args!(
            "ignoring {bad} {what} {} that {} not strings",
            plural(bad, "entry", "entries"),
            plural(bad, "is", "are"),
        ));
    }
    if !unknown.is_empty() {
        w.push(format_args!("ignoring unsupported {what}(s) {unknown:?}"));
    }
    out
}

fn ratio_field(raw: Option<&RawValue>, name: &str, w: &mut SellerWarnings<'_>) -> Ppm {
    let Some(raw) = raw else {
        return Ppm::ZERO;
    };
    match ratio_from_json(raw.get().trim()) {
        Ok(ppm) => ppm,
        Err(problem) => {
            w.push(format_args!(
                "{name} {} {problem}; using 0",
                raw.get().trim()
            ));
            Ppm::ZERO
        }
    }
}

/// A ratio from a JSON value's text, exactly (by digits, never through a
/// float): `0.2`, `2e-1`, `20E-2` are all 200,000 ppm. `null` is 0.
fn ratio_from_json(text: &str) -> Result<Ppm, &'static str> {
    const OUT_OF_RANGE: &str = "is outside 0..1";
    if text == "null" {
        return Ok(Ppm::ZERO);
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if !unsigned.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("is not a number");
    }
    let (mantissa, exp) = match unsigned.split_once(['e', 'E']) {
        None => (unsigned, 0i64),
        Some((m, e)) => {
            let digits = e.trim_start_matches(['+', '-']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err("is not a number");
            }
            // Absurd exponents saturate; only their sign matters below.
            let magnitude = digits.parse::<i64>().unwrap_or(i64::MAX / 4).min(1 << 20);
            (
                m,
                if e.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                },
            )
        }
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all(int) || !all(frac) {
        return Err("is not a number");
    }
    // The value is 0.<digits> × 10^point, with digits starting non-zero.
    let joined: String = [int, frac].concat();
    let digits = joined.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(Ppm::ZERO);
    }
    if negative {
        return Err("is negative");
    }
    let leading_zeros = (joined.len() - digits.len()) as i64;
    let point = int.len() as i64 + exp - leading_zeros;
    if point > 1 {
        return Err(OUT_OF_RANGE);
    }
    if point < -6 {
        // Below 0.0000001: rounds to 0 ppm.
        return Ok(Ppm::ZERO);
    }
    let plain = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else {
        // point == 1: one integer digit.
        format!("{}.{}", &digits[..1], &digits[1..])
    };
    match Ppm::from_decimal_str(&plain) {
        Ok(ppm) if ppm <= Ppm::ONE => Ok(ppm),
        _ => Err(OUT_OF_RANGE),
    }
}

fn plural<'s>(n: usize, one: &'s str, many: &'s str) -> &'s str {
    if n == 1 { one } else { many }
}

fn string_of(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}

/// The strings of a JSON array (empty ones skipped) and how many entries
/// were not non-empty strings. Anything but an array counts as one bad
/// entry.
fn string_list(raw: &RawValue) -> (Vec<String>, usize) {
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        return (Vec::new(), 1);
    };
    let mut out = Vec::with_capacity(items.len());
    let mut bad = 0;
    for item in items {
        match string_of(item) {
            Some(s) if !s.is_empty() => out.push(s),
            _ => bad += 1,
        }
    }
    (out, bad)
}

fn dedup_strings(list: Vec<String>) -> Vec<String> {
    if list.len() < 2 {
        return list;
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(list.len());
    let keep: Vec<bool> = list.iter().map(|s| seen.insert(s.as_str())).collect();
    if keep.iter().all(|k| *k) {
        return list;
    }
    list.into_iter()
        .zip(keep)
        .filter_map(|(s, k)| k.then_some(s))
        .collect()
}

/// The fields the reader knows, each with its camelCase and snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Version,
    DefaultSeller,
    Sellers,
    Id,
    Name,
    Url,
    Models,
    Protocols,
    PaymentMethods,
    DiscountRatio,
    ServiceFeeRatio,
    Status,
}

const FIELDS: [(Field, &str, &str); 12] = [
    (Field::Version, "version", "version"),
    (Field::DefaultSeller, "defaultSeller", "default_seller"),
    (Field::Sellers, "sellers", "sellers"),
    (Field::Id, "id", "id"),
    (Field::Name, "name", "name"),
    (Field::Url, "url", "url"),
    (Field::Models, "models", "models"),
    (Field::Protocols, "protocols", "protocols"),
    (Field::PaymentMethods, "paymentMethods", "payment_methods"),
    (Field::DiscountRatio, "discountRatio", "discount_ratio"),
    (
        Field::ServiceFeeRatio,
        "serviceFeeRatio",
        "service_fee_ratio",
    ),
    (Field::Status, "status", "status"),
];

/// The known fields of one JSON object, as raw JSON borrowed from the
/// input; unknown fields are skipped, a repeated field keeps its last value.
struct Fields<'a>([Option<&'a RawValue>; FIELDS.len()]);

impl<'a> Fields<'a> {
    fn get(&self, field: Field) -> Option<&'a RawValue> {
        self.0[field as usize]
    }
}

/// A key of an object: the known field it names, if any.
struct Key(Option<Field>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(Key(FIELDS
                    .iter()
                    .find(|(_, camel, snake)| key == *camel || key == *snake)
                    .map(|(f, _, _)| *f)))
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields<'a>, D::Error> {
        struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'a>, A::Error> {
                let mut fields = Fields([None; FIELDS.len()]);
                while let Some(Key(field)) = map.next_key()? {
                    match field {
                        Some(f) => fields.0[f as usize] = Some(map.next_value::<&'de RawValue>()?),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(fields)
            }
        }
        d.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ratios_are_read_exactly_from_the_json_text() {
        let cases: &[(&str, Result<u32, &str>)] = &[
            ("0.2", Ok(200_000)),
            ("0.02", Ok(20_000)),
            ("0", Ok(0)),
            ("1", Ok(1_000_000)),
            ("1.0", Ok(1_000_000)),
            ("0.1234565", Ok(123_457)),
            ("0.0000004", Ok(0)),
            ("0.0000005", Ok(1)),
            ("2e-1", Ok(200_000)),
            ("20E-2", Ok(200_000)),
            ("0.002e2", Ok(200_000)),
            ("1e0", Ok(1_000_000)),
            ("1e-9", Ok(0)),
            ("5e-7", Ok(1)),
            ("1e-99999999999999999999999", Ok(0)),
            ("0e5", Ok(0)),
            ("-0", Ok(0)),
            ("-0.0", Ok(0)),
            ("null", Ok(0)),
            ("-0.2", Err("is negative")),
            ("1.5", Err("is outside 0..1")),
            ("1.0000005", Err("is outside 0..1")),
            ("1.0000004", Ok(1_000_000)),
            ("10", Err("is outside 0..1")),
            ("1e1", Err("is outside 0..1")),
            ("1e99999999999999999999999", Err("is outside 0..1")),
            ("\"0.2\"", Err("is not a number")),
            ("true", Err("is not a number")),
            ("[]", Err("is not a number")),
        ];
        for (text, want) in cases {
            let got = ratio_from_json(text).map(Ppm::get);
            assert_eq!(got, *want, "{text}");
        }
    }

    #[test]
    fn urls() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("https://a.example", Ok("https://a.example")),
            ("https://a.example/", Ok("https://a.example")),
            ("http://127.0.0.1:8080/v1//", Ok("http://127.0.0.1:8080/v1")),
            ("HTTPS://a.example", Ok("HTTPS://a.example")),
            ("ftp://a.example", Err("is not http or https")),
            ("a.example", Err("is not http or https")),
            ("/relative", Err("is not http or https")),
            ("https://", Err("is not a valid URL")),
            ("https://a.example/?x=1", Err("has a query string")),
            ("https://a b", Err("is not a valid URL")),
            ("", Err("is not a valid URL")),
        ];
        for (url, want) in cases {
            let got = check_url(url);
            assert_eq!(got.as_deref(), want.as_ref().map(|s| *s), "{url}");
        }
    }
}
