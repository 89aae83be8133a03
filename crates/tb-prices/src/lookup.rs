//! Finding a model's price: exact binary search plus the fallback rules.

use std::fmt;

use crate::{ModelPrice, table};

/// How [`price_for`] got from the model id as asked to the table's id.
///
/// Each flag is one rewrite; several can combine (see [`price_for`] for the
/// order in which combinations are tried). All `false` is an exact match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LookupRule {
    /// A leading `provider/` was removed (`openai/gpt-4o` → `gpt-4o`).
    pub provider_removed: bool,
    /// One version separator between two digits was swapped (`4.5` ↔ `4-5`).
    pub separator_swapped: bool,
    /// A trailing `-YYYYMMDD` or `-latest` was removed.
    pub suffix_removed: bool,
}

impl LookupRule {
    /// The id was found as given.
    pub const EXACT: LookupRule = LookupRule {
        provider_removed: false,
        separator_swapped: false,
        suffix_removed: false,
    };

    /// `true` when the id was found as given.
    #[must_use]
    pub const fn is_exact(&self) -> bool {
        !self.provider_removed && !self.separator_swapped && !self.suffix_removed
    }
}

impl fmt::Display for LookupRule {
    /// `exact`, or the rewrites joined by ` + `, e.g.
    /// `provider prefix removed + version separator swapped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_exact() {
            return f.write_str("exact");
        }
        let parts = [
            (self.provider_removed, "provider prefix removed"),
            (self.separator_swapped, "version separator swapped"),
            (self.suffix_removed, "date suffix removed"),
        ];
        let mut first = true;
        for (on, name) in parts {
            if on {
                if !first {
                    f.write_str(" + ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// A successful [`price_for`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// The table entry.
    pub price: &'static ModelPrice,
    /// The table id that matched (`price.id`).
    pub resolved: &'static str,
    /// How the id was rewritten to match.
    pub rule: LookupRule,
}

/// The table entry with exactly this id (binary search, no fallbacks).
#[must_use]
pub fn get(id: &str) -> Option<&'static ModelPrice> {
    let entries = table();
    entries
        .binary_search_by(|e| e.id.cmp(id))
        .ok()
        .and_then(|i| entries.get(i))
}

/// Everything after the first `/`, when there is one with text on both
/// sides.
fn strip_provider(model: &str) -> Option<&str> {
    let (provider, rest) = model.split_once('/')?;
    (!provider.is_empty() && !rest.is_empty()).then_some(rest)
}

/// The id without a trailing `-YYYYMMDD` or `-latest`.
fn strip_suffix(model: &str) -> Option<&str> {
    if let Some(rest) = model.strip_suffix("-latest") {
        return (!rest.is_empty()).then_some(rest);
    }
    let split = model.len().checked_sub(9)?;
    let (rest, tail) = (model.get(..split)?, model.get(split..)?);
    let date = tail.strip_prefix('-')?;
    (!rest.is_empty() && date.bytes().all(|b| b.is_ascii_digit())).then_some(rest)
}

/// Tries `model` with each single version separator (`.` or `-` between two
/// ASCII digits) swapped, left to right. `buf` is reused between tries.
fn find_swapped(model: &str, buf: &mut String) -> Option<&'static ModelPrice> {
    let bytes = model.as_bytes();
    for i in 1..bytes.len().saturating_sub(1) {
        let swapped = match bytes[i] {
            b'.' => "-",
            b'-' => ".",
            _ => continue,
        };
        if !(bytes[i - 1].is_ascii_digit() && bytes[i + 1].is_ascii_digit()) {
            continue;
        }
        buf.clear();
        buf.push_str(model);
        buf.replace_range(i..=i, swapped);
        if let Some(price) = get(buf) {
            return Some(price);
        }
    }
    None
}

/// The price of a model, by its id as a client or route names it.
///
/// Tried in this order, first hit wins (a rewrite that changes nothing is
/// skipped):
///
/// 1. the id as given;
/// 2. with a leading `provider/` removed (everything up to the first `/`);
/// 3. with one version separator between two digits swapped (`4.5` ↔ `4-5`;
///    each separator alone, left to right), on the id as given, then on the
///    provider-stripped id;
/// 4. with a trailing `-YYYYMMDD` or `-latest` removed, on the id as given,
///    then on the provider-stripped id;
/// 5. suffix removed **and** a separator swapped, on the id as given, then on
///    the provider-stripped id.
///
/// So every rule works alone and combined with the others
/// (`anthropic/claude-sonnet-4.5-20250929` finds `claude-sonnet-4-5` with all
/// three). Exact matches allocate nothing; only separator swaps build a
/// candidate string (one buffer, reused).
///
/// `None` for an unknown model: the call is unpriced, never priced at 0.
#[must_use]
pub fn price_for(model: &str) -> Option<Lookup> {
    let found = |price: &'static ModelPrice, p, s, d| Lookup {
        price,
        resolved: price.id,
        rule: LookupRule {
            provider_removed: p,
            separator_swapped: s,
            suffix_removed: d,
        },
    };
    if let Some(price) = get(model) {
        return Some(found(price, false, false, false));
    }
    let stripped = strip_provider(model);
    if let Some(price) = stripped.and_then(get) {
        return Some(found(price, true, false, false));
    }
    // Both bases: the id as given, then the provider-stripped id.
    let bases = [Some((model, false)), stripped.map(|s| (s, true))];
    let mut buf = String::with_capacity(model.len());
    for (base, p) in bases.into_iter().flatten() {
        if let Some(price) = find_swapped(base, &mut buf) {
            return Some(found(price, p, true, false));
        }
    }
    for (base, p) in bases.into_iter().flatten() {
        if let Some(price) = strip_suffix(base).and_then(get) {
            return Some(found(price, p, false, true));
        }
    }
    for (base, p) in bases.into_iter().flatten() {
        if let Some(price) = strip_suffix(base).and_then(|b| find_swapped(b, &mut buf)) {
            return Some(found(price, p, true, true));
        }
    }
    None
}

/// Levenshtein distance over chars, ASCII case ignored (two rows).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(!ca.eq_ignore_ascii_case(cb));
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The `n` table ids closest to `model` (Levenshtein distance, ASCII case
/// ignored, on the provider-stripped id; ties by id), for an "unknown model"
/// message. Not on the hot path: it scans the whole table.
#[must_use]
pub fn closest(model: &str, n: usize) -> Vec<&'static str> {
    let query = strip_provider(model).unwrap_or(model);
    let mut scored: Vec<(usize, &'static str)> = table()
        .iter()
        .map(|e| (edit_distance(query, e.id), e.id))
        .collect();
    scored.sort_unstable();
    scored.into_iter().take(n).map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_basics() {
        for (a, b, d) in [
            ("", "", 0),
            ("abc", "", 3),
            ("", "abc", 3),
            ("kitten", "sitting", 3),
            ("gpt-4o", "gpt-4o", 0),
            ("gpt-4o-mni", "gpt-4o-mini", 1),
            ("MiniMax-M2", "minimax-m2", 0),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn suffix_stripping() {
        for (input, want) in [
            ("claude-sonnet-4-5-20250929", Some("claude-sonnet-4-5")),
            ("grok-4-latest", Some("grok-4")),
            ("-latest", None),
            ("-20250101", None),
            ("model-2025010", None),
            ("model-2025010a", None),
            ("model20250101", None),
            ("gpt-4o", None),
            ("é-20250101", Some("é")),
        ] {
            assert_eq!(strip_suffix(input), want, "{input:?}");
        }
    }

    #[test]
    fn provider_stripping() {
        for (input, want) in [
            ("openai/gpt-4o", Some("gpt-4o")),
            ("a/b/c", Some("b/c")),
            ("/gpt-4o", None),
            ("openai/", None),
            ("gpt-4o", None),
        ] {
            assert_eq!(strip_provider(input), want, "{input:?}");
        }
    }
}
