//! Query strings: `application/x-www-form-urlencoded` decoding and the
//! parameters of `/v1/calls` and `/v1/usage` (the call filters and
//! `/v1/series` are in `filter`).

use crate::api::{ApiError, CallFilter, UsageBy};

/// Default `limit` of `/v1/calls`.
pub(crate) const DEFAULT_LIMIT: u32 = 50;
/// Largest accepted `limit` of `/v1/calls`.
pub(crate) const MAX_LIMIT: u32 = 1000;
/// Default `since` of `/v1/usage`.
pub(crate) const DEFAULT_SINCE: &str = "7d";

/// `GET /v1/calls` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallsQuery {
    pub(crate) limit: u32,
    pub(crate) before: Option<String>,
    pub(crate) filter: CallFilter,
}

/// `GET /v1/usage` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageQuery {
    pub(crate) since: String,
    pub(crate) by: UsageBy,
}

pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "invalid_query", message)
}

/// Decoded `(name, value)` pairs, in order. `+` is a space; a `%` not
/// followed by two hex digits, or a result that is not UTF-8, is an error.
pub(crate) fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn decode(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid(format!("bad percent-encoding in query: {raw:?}")))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| invalid("query is not UTF-8 after percent-decoding"))
}

/// The first value of `name`.
pub(crate) fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `limit` (`1..=1000`, default 50) and `before` (`<started_at_ms>:<id>`).
pub(crate) fn calls(query: Option<&str>) -> Result<CallsQuery, ApiError> {
    let pairs = pairs(query)?;
    let limit = match first(&pairs, "limit") {
        None | Some("") => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, got {v:?}"
                ))
            })?,
    };
    let before = match first(&pairs, "before") {
        None | Some("") => None,
        Some(v) => {
            let valid = v.split_once(':').is_some_and(|(ms, id)| {
                !ms.is_empty()
                    && ms.len() <= 20
                    && ms.bytes().all(|b| b.is_ascii_digit())
                    && !id.is_empty()
                    && id.len() <= 128
                    && id.bytes().all(|b| b.is_ascii_graphic())
            });
            if !valid {
                return Err(invalid(format!(
                    "before must be the next_before cursor of a previous answer (<started_at_ms>:<id>), got {v:?}"
                )));
            }
            Some(v.to_string())
        }
    };
    let filter = crate::filter::call_filter(&pairs)?;
    Ok(CallsQuery {
        limit,
        before,
        filter,
    })
}

/// `since` (default `7d`, passed on as sent; at most 64 characters) and
/// `by` (`model` | `upstream` | `day`, default `model`).
pub(crate) fn usage(query: Option<&str>) -> Result<UsageQuery, ApiError> {
    let pairs = pairs(query)?;
    let since = since_of(&pairs)?;
    let by = match first(&pairs, "by") {
        None | Some("") => UsageBy::default(),
        Some(v) => UsageBy::parse(v).ok_or_else(|| {
            invalid(format!(
                "by must be one of model, upstream, day, member, got {v:?}"
            ))
        })?,
    };
    Ok(UsageQuery { since, by })
}

/// `since` alone (`/v1/sellers`, `/v1/sellers/audit`), as for `usage`.
pub(crate) fn since(query: Option<&str>) -> Result<String, ApiError> {
    since_of(&pairs(query)?)
}

/// `since`: default `7d`, passed on as sent, at most 64 characters.
fn since_of(pairs: &[(String, String)]) -> Result<String, ApiError> {
    match first(pairs, "since") {
        None | Some("") => Ok(DEFAULT_SINCE.to_string()),
        Some(v) => checked_since(v),
    }
}

/// A `since` value as sent, when it is at most 64 characters without
/// control characters (the daemon parses it).
pub(crate) fn checked_since(v: &str) -> Result<String, ApiError> {
    if v.len() <= 64 && !v.chars().any(char::is_control) {
        Ok(v.to_string())
    } else {
        Err(invalid(format!(
            "since must be a duration like 30m, 12h, 7d or an RFC 3339 time, got {v:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        let p = pairs(Some("a=1&b=x%20y+z&&c&d=%E2%9C%93&a=2")).unwrap();
        assert_eq!(
            p,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), String::new()),
                ("d".into(), "✓".into()),
                ("a".into(), "2".into()),
            ]
        );
        assert!(pairs(Some("a=%zz")).is_err());
        assert!(pairs(Some("a=%4")).is_err());
        assert!(pairs(Some("a=%ff")).is_err());
        assert!(pairs(None).unwrap().is_empty());
    }

    #[test]
    fn calls_parameters() {
        assert_eq!(
            calls(None).unwrap(),
            CallsQuery {
                limit: 50,
                before: None,
                filter: CallFilter::default(),
            }
        );
        assert_eq!(calls(Some("limit=1000")).unwrap().limit, 1000);
        assert_eq!(calls(Some("limit=1&limit=7")).unwrap().limit, 1);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=-1",
            "limit=ten",
            "limit=4294967296",
        ] {
            let e = calls(Some(bad)).unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_query"), "{bad}");
        }
        assert_eq!(
            calls(Some("before=1700000000000%3A0190-a")).unwrap().before,
            Some("1700000000000:0190-a".into())
        );
        for bad in [
            "before=x",
            "before=12",
            "before=:a",
            "before=12:",
            "before=a1:b",
        ] {
            assert!(calls(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_parameters() {
        assert_eq!(
            usage(None).unwrap(),
            UsageQuery {
                since: "7d".into(),
                by: UsageBy::Model
            }
        );
        let q = usage(Some("since=2024-05-01T00%3A00%3A00%2B02%3A00&by=day")).unwrap();
        assert_eq!(q.since, "2024-05-01T00:00:00+02:00");
        assert_eq!(q.by, UsageBy::Day);
        assert!(usage(Some("by=seller")).is_err());
        assert!(usage(Some("since=%0A")).is_err());
    }
}
