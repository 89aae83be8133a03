//! `multipart/form-data` requests (`POST /v1/images/edits`, a multipart
//! `POST /v1/videos`): the few text fields the gateway reads, found by
//! `multer` in the body already read within `proxy.max_body_bytes`. File
//! parts are walked over, never copied; the body goes upstream as sent
//! (only a resolved `model` is spliced in, [`replace_field`]).

use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, header};
use memchr::memmem;
use tb_billing::usage::RequestFacts;
use tb_domain::Protocol;

use crate::error::{ErrorCode, ProxyError};
use crate::validate::RequestProbe;

/// The text fields the gateway reads; every other part (files included)
/// is forwarded untouched and not read.
const READ: [&str; 8] = [
    "model",
    "stream",
    "n",
    "size",
    "quality",
    "output_format",
    "seconds",
    "prompt",
];

/// What the gateway read from a form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Form {
    boundary: String,
    fields: BTreeMap<&'static str, String>,
    /// How many parts carry a file (`filename=`).
    pub files: usize,
}

/// Why a form is refused (the client's 400; no upstream sees it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormError {
    /// The body does not parse as the boundary says.
    #[error("the multipart/form-data body is malformed: {0}")]
    Malformed(String),
    /// A field the gateway reads appears twice.
    #[error("the form field `{0}` appears twice")]
    Duplicate(&'static str),
    /// A field the gateway reads is a file or not UTF-8.
    #[error("the form field `{0}` must be a text field")]
    NotText(&'static str),
    /// No non-empty `model` field.
    #[error("the form has no `model` field")]
    MissingModel,
}

impl FormError {
    /// The client's 400.
    pub(crate) fn to_proxy_error(&self) -> ProxyError {
        let code = match self {
            FormError::MissingModel => ErrorCode::MissingModel,
            FormError::Malformed(_) => ErrorCode::InvalidMultipart,
            FormError::Duplicate(_) | FormError::NotText(_) => ErrorCode::InvalidField,
        };
        let hint = match self {
            FormError::MissingModel => "; add a `model` text field, e.g. model=gpt-image-1",
            FormError::Malformed(_) => {
                "; send multipart/form-data with the boundary of the Content-Type header"
            }
            FormError::Duplicate(_) | FormError::NotText(_) => "",
        };
        ProxyError::new(code, format!("{self}{hint}"))
    }
}

/// The boundary of a `multipart/form-data` request, `None` for any other
/// content type (a missing or empty boundary is a malformed form).
pub(crate) fn boundary(headers: &HeaderMap) -> Option<Result<String, FormError>> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    Some(multer::parse_boundary(ct).map_err(|e| FormError::Malformed(e.to_string())))
}

/// The form of a multipart request of `protocol` (image edits and video
/// submits are the protocols with one); `None` for a JSON request.
pub(crate) async fn of_request(
    protocol: Protocol,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Option<Form>, FormError> {
    if !matches!(protocol, Protocol::ImagesEdits | Protocol::Videos) {
        return Ok(None);
    }
    match boundary(headers) {
        None => Ok(None),
        Some(b) => read(body.clone(), &b?).await.map(Some),
    }
}

/// Reads the form's text fields (pure over the bytes: the body is in
/// memory already, so the stream never waits).
pub(crate) async fn read(body: Bytes, boundary: &str) -> Result<Form, FormError> {
    let malformed = |e: multer::Error| FormError::Malformed(e.to_string());
    let stream = futures_util::stream::once(async move { Ok::<Bytes, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut form = Form {
        boundary: boundary.to_string(),
        ..Form::default()
    };
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        let is_file = field.file_name().is_some();
        form.files += usize::from(is_file);
        let read = field
            .name()
            .and_then(|n| READ.iter().copied().find(|r| *r == n));
        let Some(name) = read else {
            while field.chunk().await.map_err(malformed)?.is_some() {}
            continue;
        };
        if is_file {
            return Err(FormError::NotText(name));
        }
        let mut value = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            value.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(value.to_vec()).map_err(|_| FormError::NotText(name))?;
        if form.fields.insert(name, text).is_some() {
            return Err(FormError::Duplicate(name));
        }
    }
    if form.model().is_none() {
        return Err(FormError::MissingModel);
    }
    Ok(form)
}

impl Form {
    /// A text field the gateway reads ([`READ`]), as sent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The non-empty `model`.
    pub(crate) fn model(&self) -> Option<&str> {
        self.get("model").filter(|m| !m.trim().is_empty())
    }

    /// What routing needs, as the JSON validator gives it: `stream` is
    /// `true` (any case) or absent/false.
    pub(crate) fn probe(&self) -> RequestProbe {
        RequestProbe {
            model: self.model().unwrap_or_default().to_string(),
            stream: self
                .get("stream")
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("true")),
            usage_requested: false,
            has_tools: false,
        }
    }

    /// The body sent upstream: the client's bytes, with the `model` field
    /// replaced only when resolution changed it.
    pub(crate) fn outbound(
        &self,
        body: &Bytes,
        requested: &str,
        resolved: &str,
    ) -> Result<Bytes, ProxyError> {
        if requested == resolved {
            return Ok(body.clone());
        }
        replace_field(body, &self.boundary, "model", resolved).ok_or_else(|| {
            ProxyError::new(
                ErrorCode::InvalidMultipart,
                "the form's `model` field could not be rewritten to the resolved model; send the model id without an alias".to_string(),
            )
        })
    }

    /// The image facts billing reads from the request (`n`, `size`, …).
    pub(crate) fn facts(&self) -> RequestFacts {
        let text = |name: &str| self.get(name).map(str::trim).filter(|s| !s.is_empty());
        RequestFacts {
            n: text("n").and_then(|n| n.parse().ok()),
            size: text("size").map(str::to_string),
            quality: text("quality").map(str::to_string),
            output_format: text("output_format").map(str::to_string),
        }
    }
}

/// The form with the value of the text field `name` replaced by `value`
/// (the rest byte for byte), or `None` when no such part is found. Run on
/// a body [`read`] accepted, so the parts are well formed.
pub(crate) fn replace_field(body: &[u8], boundary: &str, name: &str, value: &str) -> Option<Bytes> {
    let delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(delimiter.as_bytes());
    let wanted = format!("name=\"{name}\"");
    // A part's headers start after a delimiter line; the first delimiter
    // may open the body without the leading CRLF.
    let first = format!("--{boundary}");
    let mut at = if body.starts_with(first.as_bytes()) {
        first.len()
    } else {
        finder.find(body)? + delimiter.len()
    };
    loop {
        let headers_start = at + memmem::find(body.get(at..)?, b"\r\n")? + 2;
        let headers_len = memmem::find(body.get(headers_start..)?, b"\r\n\r\n")?;
        let headers = body.get(headers_start..headers_start + headers_len)?;
        let value_start = headers_start + headers_len + 4;
        let value_end = value_start + finder.find(body.get(value_start..)?)?;
        if is_named(headers, &wanted) {
            let mut out = BytesMut::with_capacity(body.len() + value.len());
            out.extend_from_slice(body.get(..value_start)?);
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(body.get(value_end..)?);
            return Some(out.freeze());
        }
        at = value_end + delimiter.len();
    }
}

/// Whether a part's headers name it `wanted` (`name="model"`, not
/// `filename="model"`).
fn is_named(headers: &[u8], wanted: &str) -> bool {
    let Ok(text) = std::str::from_utf8(headers) else {
        return false;
    };
    text.split("\r\n").any(|line| {
        let Some((key, params)) = line.split_once(':') else {
            return false;
        };
        key.trim().eq_ignore_ascii_case("content-disposition")
            && params.split(';').any(|p| p.trim() == wanted)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const B: &str = "XyZ";

    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, file, value) in parts {
            out.extend_from_slice(format!("--{B}\r\n").as_bytes());
            let disposition = match file {
                Some(f) => format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/png\r\n"
                ),
                None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n"),
            };
            out.extend_from_slice(disposition.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{B}--\r\n").as_bytes());
        out
    }

    async fn parse(b: Vec<u8>) -> Result<Form, FormError> {
        read(Bytes::from(b), B).await
    }

    #[tokio::test]
    async fn fields_are_read_and_files_only_counted() {
        let png = b"\x89PNG\r\n\x1a\n--XyZ not a boundary\r\n";
        let form = parse(body(&[
            ("image", Some("a.png"), png),
            ("image", Some("b.png"), png),
            ("prompt", None, "a hat\r\non a cat".as_bytes()),
            ("model", None, b"gpt-image-1"),
            ("n", None, b"2"),
            ("size", None, b"1024x1024"),
            ("stream", None, b"True"),
            ("user", None, b"u1"),
        ]))
        .await
        .unwrap();
        assert_eq!(form.files, 2);
        assert_eq!(form.model(), Some("gpt-image-1"));
        assert_eq!(form.get("prompt"), Some("a hat\r\non a cat"));
        assert_eq!(form.get("user"), None, "not read");
        let probe = form.probe();
        assert!(probe.stream);
        let facts = form.facts();
        assert_eq!(
            (facts.n, facts.size.as_deref()),
            (Some(2), Some("1024x1024"))
        );
    }

    #[tokio::test]
    async fn bad_forms_are_refused_with_the_reason() {
        let no_model = parse(body(&[("prompt", None, b"p")])).await.unwrap_err();
        assert_eq!(no_model, FormError::MissingModel);
        assert_eq!(no_model.to_proxy_error().code, ErrorCode::MissingModel);
        let empty = parse(body(&[("model", None, b" ")])).await.unwrap_err();
        assert_eq!(empty, FormError::MissingModel);
        let twice = parse(body(&[("model", None, b"a"), ("model", None, b"b")]))
            .await
            .unwrap_err();
        assert_eq!(twice, FormError::Duplicate("model"));
        let file = parse(body(&[("model", Some("m.txt"), b"a")]))
            .await
            .unwrap_err();
        assert_eq!(file, FormError::NotText("model"));
        // The body's boundary is not the header's.
        let other = read(Bytes::from(body(&[("model", None, b"a")])), "Other")
            .await
            .unwrap_err();
        assert!(matches!(other, FormError::Malformed(_)), "{other:?}");
        assert_eq!(other.to_proxy_error().code, ErrorCode::InvalidMultipart);
        // Cut short inside a part.
        let mut cut = body(&[("model", None, b"a"), ("image", Some("a.png"), b"xxxx")]);
        cut.truncate(cut.len() - 12);
        let truncated = parse(cut).await.unwrap_err();
        assert!(
            matches!(truncated, FormError::Malformed(_)),
            "{truncated:?}"
        );
    }

    #[test]
    fn the_boundary_comes_from_the_content_type() {
        let mut h = HeaderMap::new();
        assert!(boundary(&h).is_none());
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(boundary(&h).is_none());
        h.insert(
            header::CONTENT_TYPE,
            "multipart/form-data; boundary=abc".parse().unwrap(),
        );
        assert_eq!(boundary(&h).unwrap().unwrap(), "abc");
        h.insert(header::CONTENT_TYPE, "Multipart/Form-Data".parse().unwrap());
        assert!(boundary(&h).unwrap().is_err());
    }

    #[tokio::test]
    async fn replacing_the_model_keeps_every_other_byte() {
        let png: &[u8] = b"\x89PNG name=\"model\"\r\n";
        let original = body(&[
            ("image", Some("model"), png),
            ("model", None, b"p/openai/gpt-image-1"),
            ("prompt", None, b"p"),
        ]);
        let out = replace_field(&original, B, "model", "gpt-image-1").unwrap();
        let want = body(&[
            ("image", Some("model"), png),
            ("model", None, b"gpt-image-1"),
            ("prompt", None, b"p"),
        ]);
        assert_eq!(out, want);
        assert_eq!(read(out, B).await.unwrap().model(), Some("gpt-image-1"));
        assert!(replace_field(&original, B, "mask", "x").is_none());
    }
}
