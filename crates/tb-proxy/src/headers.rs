//! Header rules (proxy.md, "Request handling" 5 and 6): what crosses the
//! proxy in each direction.

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Client headers that never go upstream (credentials for the daemon, or
/// values the client library recomputes).
const CLIENT_ONLY: [&str; 6] = [
    "authorization",
    "x-api-key",
    "host",
    "content-length",
    "cookie",
    "accept-encoding",
];

fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn is_hop_by_hop(name: &HeaderName, listed: &[String]) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(&n) || n == "upgrade" || listed.iter().any(|t| t == n)
}

/// The client headers that may be forwarded upstream.
pub(crate) fn upstream_request_headers(client: &HeaderMap) -> HeaderMap {
    let listed = connection_tokens(client);
    let mut out = HeaderMap::with_capacity(client.len() + 6);
    for (name, value) in client {
        if is_hop_by_hop(name, &listed) || CLIENT_ONLY.contains(&name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    out
}

/// The upstream response headers that may reach the client: no hop-by-hop
/// headers, and no `x-tokenbuddy-*` (internal accounting stays internal).
pub(crate) fn client_response_headers(upstream: &HeaderMap) -> HeaderMap {
    let listed = connection_tokens(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len() + 3);
    for (name, value) in upstream {
        if is_hop_by_hop(name, &listed) || name.as_str().starts_with("x-tokenbuddy-") {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
pub(crate) const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// The Anthropic headers a route gets: on a translated route none of the
/// client's (they describe a protocol the upstream is not spoken to in);
/// on a native one every `anthropic-beta` but those the upstream drops.
pub(crate) fn anthropic_headers(
    headers: &mut HeaderMap,
    upstream: &tb_router::Upstream,
    translated: bool,
) {
    if translated {
        headers.remove(ANTHROPIC_BETA);
        headers.remove(ANTHROPIC_VERSION);
        return;
    }
    if upstream.dropped_betas.is_empty() || !headers.contains_key(ANTHROPIC_BETA) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(ANTHROPIC_BETA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty() && !upstream.dropped_betas.iter().any(|d| d == b))
        .map(str::to_owned)
        .collect();
    headers.remove(ANTHROPIC_BETA);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join(","))
    {
        headers.insert(ANTHROPIC_BETA, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn request_headers_drop_credentials_and_hop_by_hop() {
        let got = upstream_request_headers(&map(&[
            ("authorization", "Bearer local"),
            ("x-api-key", "local"),
            ("host", "127.0.0.1:7878"),
            ("content-length", "10"),
            ("cookie", "a=b"),
            ("accept-encoding", "gzip"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "a"),
            ("anthropic-beta", "b"),
            ("user-agent", "sdk/1"),
        ]));
        let names: Vec<&str> = got.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "anthropic-version",
                "anthropic-beta",
                "user-agent",
                "accept-encoding"
            ]
        );
        assert_eq!(got.get_all("anthropic-beta").iter().count(), 2);
        assert_eq!(got["accept-encoding"], "identity");
    }

    #[test]
    fn response_headers_drop_internal_and_hop_by_hop() {
        let got = client_response_headers(&map(&[
            ("content-type", "text/event-stream"),
            ("x-tokenbuddy-settlement", "secret"),
            ("X-TokenBuddy-Cost", "1"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("x-request-id", "abc"),
        ]));
        let names: Vec<&str> = got.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["content-type", "x-request-id"]);
    }
}
