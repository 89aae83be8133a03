//! What a simulated server saw: one request, recorded before it was answered.

use bytes::Bytes;

/// A request a server received, recorded before it was answered (the
/// sellers here keep their inference requests; `tb-test-support`'s mock
/// upstream keeps every request).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The request method.
    pub method: http::Method,
    /// Path and query string as received, e.g. `/v1/chat/completions?x=1`.
    pub path_and_query: String,
    /// Every request header.
    pub headers: http::HeaderMap,
    /// The whole request body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
    }

    /// The body parsed as JSON, or `Value::Null` when it is not JSON (an
    /// assertion on a member then fails; [`body`](Self::body) shows what
    /// came).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The first value of header `name`, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, body: &'static [u8]) -> RecordedRequest {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-seller", http::HeaderValue::from_static("s-alpha"));
        RecordedRequest {
            method: http::Method::POST,
            path_and_query: path.to_string(),
            headers,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn path_drops_the_query_string() {
        assert_eq!(request("/v1/messages?beta=1", b"").path(), "/v1/messages");
        assert_eq!(request("/v1/messages", b"").path(), "/v1/messages");
    }

    #[test]
    fn json_parses_the_body_and_is_null_for_anything_else() {
        assert_eq!(request("/", br#"{"model":"m"}"#).json()["model"], "m");
        assert_eq!(request("/", b"not json").json(), serde_json::Value::Null);
    }

    #[test]
    fn header_reads_the_first_value() {
        let req = request("/", b"");
        assert_eq!(req.header("X-Seller"), Some("s-alpha"));
        assert_eq!(req.header("absent"), None);
    }
}
