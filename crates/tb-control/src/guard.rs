//! The DNS-rebinding guard: a page on `evil.example` whose name was made to
//! resolve to 127.0.0.1 still sends `Host: evil.example`, so only loopback
//! names are served.

use http::{HeaderMap, Uri, header};

/// Whether the request names a loopback host: exactly one `Host` header
/// that is `127.0.0.1`, `localhost` or `[::1]`, optionally with a port, and
/// (for absolute-form request targets) an authority that passes the same
/// test. A missing `Host` fails.
pub(crate) fn loopback_host(headers: &HeaderMap, uri: &Uri) -> bool {
    let mut hosts = headers.get_all(header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return false;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    if !is_loopback_authority(host) {
        return false;
    }
    match uri.authority() {
        Some(authority) => is_loopback_authority(authority.as_str()),
        None => true,
    }
}

/// `127.0.0.1`, `localhost` (any case) or `[::1]`, each optionally followed
/// by `:` and a port of 1 to 5 digits.
fn is_loopback_authority(value: &str) -> bool {
    let (name, port) = if let Some(rest) = value.strip_prefix("[::1]") {
        ("[::1]", rest)
    } else {
        match value.find(':') {
            Some(i) => value.split_at(i),
            None => (value, ""),
        }
    };
    let name_ok = name == "127.0.0.1" || name == "[::1]" || name.eq_ignore_ascii_case("localhost");
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => {
            (1..=5).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.parse::<u32>().is_ok_and(|p| p <= 65_535)
        }
    };
    name_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_host(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::HOST,
                HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("x")),
            );
        }
        h
    }

    #[test]
    fn accepted_names() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:7879",
            "localhost",
            "localhost:1",
            "LocalHost:65535",
            "[::1]",
            "[::1]:7879",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
    }

    #[test]
    fn refused_names() {
        for bad in [
            "",
            "evil.example",
            "evil.example:7879",
            "localhost.",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.2",
            "0.0.0.0",
            "::1",
            "[::1]x",
            "[::2]:80",
            "localhost:",
            "localhost:65536",
            "localhost:123456",
            "localhost:80:80",
            "localhost:+80",
            "user@localhost",
            " localhost",
        ] {
            assert!(!is_loopback_authority(bad), "{bad:?}");
        }
    }

    #[test]
    fn header_count_and_absolute_targets() {
        let origin: Uri = "/v1/status".parse().unwrap_or_default();
        assert!(loopback_host(&with_host(&["localhost:1"]), &origin));
        assert!(!loopback_host(&with_host(&[]), &origin));
        assert!(!loopback_host(
            &with_host(&["localhost", "localhost"]),
            &origin
        ));
        let evil: Uri = "http://evil.example/v1/status".parse().unwrap_or_default();
        assert!(!loopback_host(&with_host(&["localhost"]), &evil));
        let fine: Uri = "http://127.0.0.1:9/v1/status".parse().unwrap_or_default();
        assert!(loopback_host(&with_host(&["localhost"]), &fine));
    }
}
