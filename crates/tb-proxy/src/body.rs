//! Request bodies: bounded reading, the probe (model, stream; `validate`
//! checks the whole body on the way), and the one edit the proxy makes
//! (the `model` value), which keeps every other byte of the body as the
//! client sent it.

use std::borrow::Cow;
use std::fmt;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::ProxyBody;
use crate::error::{ErrorCode, ProxyError};
use crate::foreign;

/// A complete in-memory body as a [`ProxyBody`].
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// How much of a refused body is read and thrown away so the client sees
/// the 413 instead of a connection reset (closing a socket with unread data
/// makes TCP send RST, which can destroy the answer in flight).
const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// How long a refused body may be drained.
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a request's whole body within `limit`, using its
/// `Content-Length` (when sane) to refuse an oversized one before reading.
pub(crate) async fn read_request_body(
    parts: &http::request::Parts,
    body: Incoming,
    limit: u64,
) -> Result<Bytes, ProxyError> {
    let content_length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    read_limited(body, content_length, limit).await
}

/// Reads at most `limit` bytes. A `Content-Length` over the limit is
/// refused before reading anything; a chunked body is cut at the limit. The
/// rest of a refused body is discarded in the background (bounded in bytes
/// and time), never kept.
pub(crate) async fn read_limited(
    mut body: Incoming,
    content_length: Option<u64>,
    limit: u64,
) -> Result<Bytes, ProxyError> {
    let too_large = || {
        ProxyError::new(
            ErrorCode::BodyTooLarge,
            format!(
                "request body is larger than the limit of {limit} bytes (proxy.max_body_bytes); send a smaller request or raise the limit"
            ),
        )
    };
    if content_length.is_some_and(|n| n > limit) {
        discard_in_background(body);
        return Err(too_large());
    }
    let hint = content_length.unwrap_or(0).min(limit);
    let mut buf = BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ProxyError::new(
                ErrorCode::InvalidJson,
                format!("could not read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                discard_in_background(body);
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn discard_in_background(mut body: Incoming) {
    tokio::spawn(async move {
        let drain = async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > DRAIN_MAX_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
    });
}

/// The request probe is now the full validator (one pass, no tree).
pub(crate) use crate::validate::validate as probe;

/// The top-level members of a JSON object, values kept as raw text.
pub(crate) struct RawMembers<'a>(pub(crate) Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMembers<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    out.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(RawMembers(out))
            }
        }
        d.deserialize_map(V).map_err(de::Error::custom)
    }
}

/// The edits the proxy may make to a request body (proxy.md, step 5).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BodyEdits<'a> {
    /// Replace `model` (alias or prefix resolution changed it).
    pub model: Option<&'a str>,
    /// Set `stream_options.include_usage = true` (chat streams whose client
    /// did not ask, so the usage can still be read).
    pub include_usage: bool,
    /// Drop `thinking` blocks with an empty signature from `messages`
    /// (see [`crate::foreign::has_unsigned_thinking`]).
    pub drop_unsigned_thinking: bool,
    /// Leave out made-up reasoning items and made-up ids from a Responses
    /// `input` (see [`crate::foreign::has_foreign_items`]).
    pub drop_foreign_items: bool,
}

impl BodyEdits<'_> {
    /// Whether the body can go upstream as the client sent it.
    pub(crate) fn is_empty(&self) -> bool {
        self.model.is_none()
            && !self.include_usage
            && !self.drop_unsigned_thinking
            && !self.drop_foreign_items
    }
}

/// Applies `edits`, keeping every other member's bytes (order, number
/// formatting, nested whitespace) exactly as they were.
pub(crate) fn edit_body(body: &[u8], edits: BodyEdits<'_>) -> Result<Bytes, serde_json::Error> {
    let members: RawMembers<'_> = serde_json::from_slice(body)?;
    let mut out = Vec::with_capacity(body.len() + 64);
    out.push(b'{');
    let mut saw_stream_options = false;
    for (i, (key, raw)) in members.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key.as_ref())?;
        out.push(b':');
        match (key.as_ref(), edits.model) {
            ("model", Some(model)) => serde_json::to_writer(&mut out, model)?,
            ("stream_options", _) if edits.include_usage => {
                saw_stream_options = true;
                write_stream_options(&mut out, raw)?;
            }
            ("messages", _) if edits.drop_unsigned_thinking => {
                foreign::write_messages_without_unsigned_thinking(&mut out, raw)?;
            }
            ("input", _) if edits.drop_foreign_items => {
                foreign::write_input_without_foreign_items(&mut out, raw)?;
            }
            _ => out.extend_from_slice(raw.get().as_bytes()),
        }
    }
    if edits.include_usage && !saw_stream_options {
        if !members.0.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
    }
    out.push(b'}');
    Ok(Bytes::from(out))
}

/// `stream_options` with `include_usage: true`, other options kept.
fn write_stream_options(out: &mut Vec<u8>, raw: &RawValue) -> Result<(), serde_json::Error> {
    let existing: RawMembers<'_> = match serde_json::from_str(raw.get()) {
        Ok(m) => m,
        // `null` or another non-object: replace it.
        Err(_) => RawMembers(Vec::new()),
    };
    out.push(b'{');
    let mut first = true;
    for (key, value) in existing.0.iter().filter(|(k, _)| k != "include_usage") {
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut *out, key.as_ref())?;
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(br#""include_usage":true}"#);
    Ok(())
}

/// What replaces a secret an upstream echoed back.
const REDACTED: &[u8] = b"[redacted]";

/// `body` with every occurrence of each secret replaced by `[redacted]`,
/// or `None` when no secret occurs (the body is then used as it is, with
/// no copy). An upstream that rejects a key may quote it in its error
/// message; the local client must not learn the provider key or a
/// seller's token from it. Secrets shorter than 8 bytes are skipped: they
/// are not real keys, and matching them would mangle ordinary text.
pub(crate) fn redact(body: &[u8], secrets: &[&[u8]]) -> Option<Bytes> {
    let secrets: Vec<&[u8]> = secrets.iter().copied().filter(|s| s.len() >= 8).collect();
    if secrets.is_empty() {
        return None;
    }
    let found = |at: usize| secrets.iter().find(|s| body[at..].starts_with(s));
    let first = (0..body.len()).find(|&at| found(at).is_some())?;
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..first]);
    let mut at = first;
    while at < body.len() {
        match found(at) {
            Some(secret) => {
                out.extend_from_slice(REDACTED);
                at += secret.len();
            }
            None => {
                out.push(body[at]);
                at += 1;
            }
        }
    }
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_replaces_every_echoed_secret_and_leaves_clean_bodies_alone() {
        let key: &[u8] = b"sk-live-0123456789";
        let token: &[u8] = b"tb_seller_token_abcdef";
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-live-0123456789 (again: sk-live-0123456789); token tb_seller_token_abcdef"}}"#;
        let got = redact(body, &[key, token]).unwrap();
        assert_eq!(
            &got[..],
            br#"{"error":{"message":"Incorrect API key provided: [redacted] (again: [redacted]); token [redacted]"}}"#
        );
        // Nothing to hide: no copy, the caller keeps its bytes.
        assert!(redact(br#"{"error":"bad key"}"#, &[key, token]).is_none());
        // A secret at the very start and the very end.
        assert_eq!(
            &redact(b"sk-live-0123456789", &[key]).unwrap()[..],
            b"[redacted]"
        );
        // Too short to be a key: never matched.
        assert!(redact(b"the key abc was wrong", &[b"abc"]).is_none());
        assert!(redact(b"", &[key]).is_none());
    }

    use super::*;

    #[test]
    fn include_usage_is_added_or_merged() {
        let edit = |b: &str| {
            String::from_utf8(
                edit_body(
                    b.as_bytes(),
                    BodyEdits {
                        include_usage: true,
                        ..BodyEdits::default()
                    },
                )
                .unwrap()
                .to_vec(),
            )
            .unwrap()
        };
        assert_eq!(
            edit(r#"{"model":"m","stream":true}"#),
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
        );
        assert_eq!(
            edit(r#"{"stream_options":{"include_usage":false,"x":1.50},"model":"m"}"#),
            r#"{"stream_options":{"x":1.50,"include_usage":true},"model":"m"}"#
        );
        assert_eq!(
            edit(r#"{"model":"m","stream_options":null}"#),
            r#"{"model":"m","stream_options":{"include_usage":true}}"#
        );
        assert_eq!(
            edit(r#"{}"#),
            r#"{"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn replace_model_keeps_everything_else() {
        let body = br#"{"temperature":0.10000000000000001,"model":"alias","messages":[ {"role" : "user","content":"h\u00e9"} ],"n":1e2}"#;
        let out = edit_body(
            body,
            BodyEdits {
                model: Some("real-model"),
                ..BodyEdits::default()
            },
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"temperature":0.10000000000000001,"model":"real-model","messages":[ {"role" : "user","content":"h\u00e9"} ],"n":1e2}"#
        );
        let quoted = edit_body(
            br#"{"model":"x"}"#,
            BodyEdits {
                model: Some("we\"ird"),
                ..BodyEdits::default()
            },
        )
        .unwrap();
        assert_eq!(&quoted[..], br#"{"model":"we\"ird"}"#);
    }

    #[test]
    fn unsigned_thinking_is_dropped_and_every_other_byte_kept() {
        let drop = |b: &str| {
            let edits = BodyEdits {
                drop_unsigned_thinking: true,
                ..BodyEdits::default()
            };
            String::from_utf8(edit_body(b.as_bytes(), edits).unwrap().to_vec()).unwrap()
        };
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant", "content":[{"type":"thinking","thinking":"foreign","signature":""},{"type":"thinking","thinking":"signed","signature":"sig"},{"type":"text","text":"a"},{"type":"thinking","thinking":"no signature at all"}]},{"role":"user","content":[{"type":"text","text":"b"}]}],"max_tokens":5}"#;
        assert_eq!(
            drop(body),
            r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"thinking","thinking":"signed","signature":"sig"},{"type":"text","text":"a"}]},{"role":"user","content":[{"type":"text","text":"b"}]}],"max_tokens":5}"#
        );
        // Nothing to drop: the turns' bytes as they were; a turn that would
        // be left empty is kept whole.
        let kept = r#"{"messages":[{"role":"assistant" , "content":[{"type":"text","text":"a"}]},{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":""}]}]}"#;
        assert_eq!(drop(kept), kept);
        // Content that is a string, or messages that are not an array.
        let odd = r#"{"messages":[{"role":"user","content":"x"}],"m":1}"#;
        assert_eq!(drop(odd), odd);
        let odd = r#"{"messages":"nope"}"#;
        assert_eq!(drop(odd), odd);
    }
}
