//! The query parameters the dashboard's endpoints add: the call filters of
//! `/v1/calls` and `/v1/series` (`model`, `upstream`, `protocol`,
//! `outcome`, `member`), `/v1/series`' `since` and `bucket`, and the id of
//! `/v1/calls/{id}`. Each bad value is a `400 invalid_query` naming the
//! parameter, what it got and what it takes.

use tb_billing::record::CallOutcome;
use tb_domain::Protocol;

use crate::api::{ApiError, CallFilter, SeriesBucket, SeriesRequest};
use crate::query::{first, invalid, pairs};

/// Default `since` of `/v1/series`.
pub(crate) const DEFAULT_SERIES_SINCE: &str = "24h";
/// The longest accepted `model` or `upstream` filter value.
const MAX_NAME_LEN: usize = 256;
/// The longest call id.
const MAX_ID_LEN: usize = 128;

/// `model`, `upstream`, `protocol`, `outcome` and `member` (`-`: the
/// access token's calls; an empty value is no filter).
pub(crate) fn call_filter(pairs: &[(String, String)]) -> Result<CallFilter, ApiError> {
    let name = |param: &str| -> Result<Option<String>, ApiError> {
        match first(pairs, param) {
            None | Some("") => Ok(None),
            Some(v) if v.len() <= MAX_NAME_LEN && !v.chars().any(char::is_control) => {
                Ok(Some(v.to_string()))
            }
            Some(v) => Err(invalid(format!(
                "{param} must be an id of at most {MAX_NAME_LEN} characters without control characters, got {v:?}"
            ))),
        }
    };
    let protocol = match first(pairs, "protocol") {
        None | Some("") => None,
        Some(v) => Some(Protocol::parse(v).ok_or_else(|| {
            invalid(format!(
                "protocol must be one of {}, {}, {}, got {v:?}",
                Protocol::ALL.map(Protocol::as_str).join(", "),
                Protocol::ImagesEdits.as_str(),
                Protocol::Videos.as_str()
            ))
        })?),
    };
    let outcome = match first(pairs, "outcome") {
        None | Some("") => None,
        Some(v) => Some(CallOutcome::parse(v).ok_or_else(|| {
            invalid(format!(
                "outcome must be one of ok, failed, cancelled, failed_mid_stream, rejected, got {v:?}"
            ))
        })?),
    };
    Ok(CallFilter {
        model: name("model")?,
        upstream: name("upstream")?,
        protocol,
        outcome,
        member: name("member")?,
    })
}

/// `GET /v1/series` parameters: `since` (default `24h`, passed on as sent,
/// at most 64 characters), `bucket` (`minute` | `hour` | `day`, default
/// `hour`) and the call filters.
pub(crate) fn series(query: Option<&str>) -> Result<SeriesRequest, ApiError> {
    let pairs = pairs(query)?;
    let since = match first(&pairs, "since") {
        None | Some("") => DEFAULT_SERIES_SINCE.to_string(),
        Some(v) => crate::query::checked_since(v)?,
    };
    let bucket = match first(&pairs, "bucket") {
        None | Some("") => SeriesBucket::Hour,
        Some(v) => SeriesBucket::parse(v).ok_or_else(|| {
            invalid(format!(
                "bucket must be one of minute, hour, day, got {v:?}"
            ))
        })?,
    };
    Ok(SeriesRequest {
        since,
        bucket,
        filter: call_filter(&pairs)?,
    })
}

/// The `{id}` of `/v1/calls/{id}`: 1..=128 of `[A-Za-z0-9_-]` (record ids
/// are UUIDs).
pub(crate) fn call_id(raw: &str) -> Result<String, ApiError> {
    let valid = !raw.is_empty()
        && raw.len() <= MAX_ID_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(raw.to_string())
    } else {
        Err(ApiError::new(
            400,
            "invalid_call_id",
            format!(
                "a call id is 1 to {MAX_ID_LEN} letters, digits, '-' or '_' (the id field of GET /v1/calls), got {raw:?}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(q: &str) -> Result<CallFilter, ApiError> {
        call_filter(&pairs(Some(q)).unwrap())
    }

    #[test]
    fn filters_are_parsed_and_empty_means_any() {
        assert_eq!(filter("").unwrap(), CallFilter::default());
        assert_eq!(
            filter("model=&upstream=&protocol=&outcome=").unwrap(),
            CallFilter::default()
        );
        let f =
            filter("model=gpt-4o&upstream=s%2Dgood&protocol=messages&outcome=failed_mid_stream")
                .unwrap();
        assert_eq!(f.model.as_deref(), Some("gpt-4o"));
        assert_eq!(f.upstream.as_deref(), Some("s-good"));
        assert_eq!(f.protocol, Some(Protocol::Messages));
        assert_eq!(f.outcome, Some(CallOutcome::FailedMidStream));
        // The video job API is filtered like the forward-path protocols.
        let videos = filter("protocol=videos").unwrap();
        assert_eq!(videos.protocol, Some(Protocol::Videos));
    }

    #[test]
    fn bad_filters_name_the_parameter_and_the_choices() {
        for (q, needle) in [
            ("outcome=bogus", "outcome must be one of ok, failed"),
            ("protocol=chat", "protocol must be one of chat_completions"),
            ("protocol=video", "images_edits, videos, got"),
            ("model=%0A", "model must be an id"),
            ("upstream=%07", "upstream must be an id"),
        ] {
            let e = filter(q).unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_query"), "{q}");
            assert!(e.message.contains(needle), "{q}: {}", e.message);
        }
        let long = format!("model={}", "m".repeat(257));
        assert!(filter(&long).is_err());
        assert!(filter(&format!("model={}", "m".repeat(256))).is_ok());
    }

    #[test]
    fn series_parameters() {
        let q = series(None).unwrap();
        assert_eq!(
            q,
            SeriesRequest {
                since: "24h".into(),
                bucket: SeriesBucket::Hour,
                filter: CallFilter::default()
            }
        );
        let q = series(Some("since=7d&bucket=day&outcome=ok")).unwrap();
        assert_eq!((q.since.as_str(), q.bucket), ("7d", SeriesBucket::Day));
        assert_eq!(q.filter.outcome, Some(CallOutcome::Ok));
        assert_eq!(
            series(Some("bucket=minute")).unwrap().bucket,
            SeriesBucket::Minute
        );
        let e = series(Some("bucket=week")).unwrap_err();
        assert!(
            e.message
                .contains("bucket must be one of minute, hour, day"),
            "{}",
            e.message
        );
        assert!(series(Some("since=%0A")).is_err());
        assert!(series(Some("outcome=nope")).is_err());
    }

    #[test]
    fn call_ids() {
        assert_eq!(call_id("0190a1b2-c3d4_e").unwrap(), "0190a1b2-c3d4_e");
        for bad in ["", "a/b", "a b", "a%20b", "é", &"x".repeat(129)] {
            let e = call_id(bad).unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_call_id"), "{bad}");
        }
    }
}
