//! Outbound HTTP proxy support: `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`
//! / `NO_PROXY` (upper or lower case) and the `[network] proxy` setting.
//!
//! Per destination the [`ProxyConnector`] asks [`route`]: proxied
//! destinations get an HTTP `CONNECT` tunnel through the proxy (with
//! `Proxy-Authorization: Basic` from the proxy URL's `user:pass`), and TLS
//! to the destination runs inside the tunnel exactly as without a proxy;
//! the others are dialled directly. Loopback destinations (`127.0.0.0/8`,
//! `::1`, `localhost` and `*.localhost`) are always direct, whatever the
//! settings say: a local model server or mock is never behind the company
//! proxy, and it keeps loopback traffic working on a machine that exports
//! `HTTP_PROXY`.
//!
//! The `CONNECT` itself and the environment rules (`NO_PROXY` domains,
//! subdomains, IPs, CIDRs, `*`) are hyper-util's
//! ([`Tunnel`], [`Matcher`]); this module only chooses.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use tower_service::Service;

/// The error a connection attempt ends with (direct or tunnelled).
pub type ConnectError = Box<dyn std::error::Error + Send + Sync>;

/// Which proxy to use for what: the explicit setting (`[network] proxy`,
/// for every scheme) wins over the environment variables.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// `[network] proxy`: the proxy for every destination.
    pub all: Option<String>,
    /// `HTTP_PROXY`: the proxy for `http://` destinations.
    pub http: Option<String>,
    /// `HTTPS_PROXY`: the proxy for `https://` destinations.
    pub https: Option<String>,
    /// `NO_PROXY`: comma-separated hosts, domains, IPs or CIDRs that go
    /// direct.
    pub no_proxy: Option<String>,
}

/// A proxy setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {problem}")]
pub struct ProxyConfigError {
    /// Where the value came from (`HTTPS_PROXY`, `network.proxy`, …).
    pub source_name: String,
    /// What is wrong (never the credentials).
    pub problem: String,
}

impl ProxySettings {
    /// The settings from the standard environment variables (`lookup`
    /// reads one; the daemon passes its environment), with `config_proxy`
    /// and `config_no_proxy` (`[network]`) taking precedence.
    pub fn from_env(
        lookup: &dyn Fn(&str) -> Option<String>,
        config_proxy: Option<&str>,
        config_no_proxy: &[String],
    ) -> ProxySettings {
        let first = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| lookup(n).filter(|v| !v.trim().is_empty()))
        };
        let env_all = first(["ALL_PROXY", "all_proxy"]);
        let no_proxy = if config_no_proxy.is_empty() {
            first(["NO_PROXY", "no_proxy"])
        } else {
            Some(config_no_proxy.join(","))
        };
        ProxySettings {
            all: config_proxy.map(str::to_owned).or(env_all),
            http: first(["HTTP_PROXY", "http_proxy"]),
            https: first(["HTTPS_PROXY", "https_proxy"]),
            no_proxy,
        }
    }

    /// True when no proxy is configured at all.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.http.is_none() && self.https.is_none()
    }

    /// Checks every proxy URL: `http://[user:pass@]host[:port]`.
    ///
    /// # Errors
    ///
    /// [`ProxyConfigError`] naming the setting and the problem.
    pub fn validate(&self) -> Result<(), ProxyConfigError> {
        for (name, value) in [
            ("network.proxy / ALL_PROXY", &self.all),
            ("HTTP_PROXY", &self.http),
            ("HTTPS_PROXY", &self.https),
        ] {
            if let Some(value) = value {
                validate_proxy_url(value).map_err(|problem| ProxyConfigError {
                    source_name: name.to_owned(),
                    problem,
                })?;
            }
        }
        Ok(())
    }

    /// The hyper-util matcher for these settings.
    pub fn matcher(&self) -> Matcher {
        let mut b = Matcher::builder();
        if let Some(all) = &self.all {
            // The explicit setting covers both schemes.
            b = b.http(all.as_str()).https(all.as_str());
        } else {
            if let Some(h) = &self.http {
                b = b.http(h.as_str());
            }
            if let Some(h) = &self.https {
                b = b.https(h.as_str());
            }
        }
        if let Some(no) = &self.no_proxy {
            b = b.no(no.as_str());
        }
        b.build()
    }
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = |v: &Option<String>| v.as_deref().map(mask_credentials);
        f.debug_struct("ProxySettings")
            .field("all", &m(&self.all))
            .field("http", &m(&self.http))
            .field("https", &m(&self.https))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// Why `value` is not a usable proxy URL, in words that never repeat the
/// credentials.
fn validate_proxy_url(value: &str) -> Result<(), String> {
    let uri: Uri = value.trim().parse().map_err(|_| {
        format!(
            "{} is not a URL; expected http://[user:pass@]host:port",
            mask_credentials(value)
        )
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "scheme {other}:// is not supported; only http:// proxies (HTTP CONNECT) are"
            ));
        }
        None => return Err("the proxy URL needs a scheme: http://host:port".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the proxy URL has no host".into());
    }
    Ok(())
}

/// `url` with any `user:pass@` replaced by `***@` (for logs, `doctor`,
/// errors).
pub fn mask_credentials(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// True for destinations that are always dialled directly: `localhost`,
/// `*.localhost`, `127.0.0.0/8`, `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// The routing decision for `dst`: `Some` proxy to tunnel through, or
/// `None` to connect directly.
pub fn route(matcher: &Matcher, dst: &Uri) -> Option<Intercept> {
    match dst.host() {
        Some(host) if !is_loopback_host(host) => matcher.intercept(dst),
        _ => None,
    }
}

/// A connector that dials directly or through an HTTP CONNECT proxy,
/// per destination (see [`route`]). TLS wraps it, so it runs end to end
/// inside the tunnel.
#[derive(Clone)]
pub struct ProxyConnector {
    direct: HttpConnector,
    matcher: Arc<Matcher>,
}

impl ProxyConnector {
    /// Wraps `direct` (also used to reach the proxy itself).
    pub fn new(direct: HttpConnector, settings: &ProxySettings) -> ProxyConnector {
        ProxyConnector {
            direct,
            matcher: Arc::new(settings.matcher()),
        }
    }
}

impl fmt::Debug for ProxyConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConnector").finish_non_exhaustive()
    }
}

type Stream = <HttpConnector as Service<Uri>>::Response;

impl Service<Uri> for ProxyConnector {
    type Response = Stream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let direct = self.direct.clone();
        match route(&self.matcher, &dst) {
            None => {
                let mut direct = direct;
                Box::pin(async move { direct.call(dst).await.map_err(Into::into) })
            }
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), direct);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move { tunnel.call(dst).await.map_err(Into::into) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn via(settings: &ProxySettings, dst: &str) -> Option<String> {
        route(&settings.matcher(), &dst.parse().unwrap()).map(|i| i.uri().to_string())
    }

    #[test]
    fn https_proxy_env_routes_https_only() {
        let s = ProxySettings::from_env(&env(&[("HTTPS_PROXY", "http://proxy:3128")]), None, &[]);
        assert_eq!(
            via(&s, "https://api.example.com/v1").as_deref(),
            Some("http://proxy:3128/")
        );
        assert_eq!(via(&s, "http://api.example.com/v1"), None);
    }

    #[test]
    fn lowercase_variables_count() {
        let s = ProxySettings::from_env(
            &env(&[("http_proxy", "http://p:1"), ("no_proxy", "internal.corp")]),
            None,
            &[],
        );
        assert!(via(&s, "http://api.example.com/").is_some());
        assert_eq!(via(&s, "http://git.internal.corp/"), None);
    }

    #[test]
    fn no_proxy_domains_subdomains_ips_and_cidrs_go_direct() {
        let s = ProxySettings::from_env(
            &env(&[
                ("HTTPS_PROXY", "http://proxy:3128"),
                ("NO_PROXY", "upstream.test, 10.0.0.0/8,192.168.1.7"),
            ]),
            None,
            &[],
        );
        assert_eq!(via(&s, "https://upstream.test:8443/"), None);
        assert_eq!(via(&s, "https://a.upstream.test/"), None);
        assert_eq!(via(&s, "https://10.2.3.4/"), None);
        assert_eq!(via(&s, "https://192.168.1.7/"), None);
        assert!(via(&s, "https://notupstream.test/").is_some());
        assert!(via(&s, "https://192.168.1.8/").is_some());
    }

    #[test]
    fn loopback_is_always_direct() {
        let s = ProxySettings::from_env(&env(&[]), Some("http://proxy:3128"), &[]);
        for dst in [
            "http://127.0.0.1:8080/",
            "https://127.9.9.9/",
            "http://[::1]:9000/",
            "http://localhost:11434/",
            "https://LOCALHOST./",
            "http://model.localhost/",
        ] {
            assert_eq!(via(&s, dst), None, "{dst}");
        }
        assert!(via(&s, "http://128.0.0.1/").is_some());
        assert!(via(&s, "http://localhost.example.com/").is_some());
    }

    #[test]
    fn config_wins_over_env_for_both_schemes() {
        let lookup = env(&[
            ("HTTPS_PROXY", "http://envproxy:1"),
            ("NO_PROXY", "a.example"),
        ]);
        let s = ProxySettings::from_env(&lookup, Some("http://cfg:2"), &["b.example".to_owned()]);
        assert_eq!(
            via(&s, "https://x.example/").as_deref(),
            Some("http://cfg:2/")
        );
        assert_eq!(
            via(&s, "http://x.example/").as_deref(),
            Some("http://cfg:2/")
        );
        // The configured no_proxy list replaces NO_PROXY.
        assert!(via(&s, "https://a.example/").is_some());
        assert_eq!(via(&s, "https://b.example/"), None);
    }

    #[test]
    fn no_settings_means_direct() {
        let s = ProxySettings::from_env(&env(&[("HTTPS_PROXY", "  ")]), None, &[]);
        assert!(s.is_empty());
        assert_eq!(via(&s, "https://api.example.com/"), None);
    }

    #[test]
    fn credentials_become_basic_auth_and_are_masked() {
        let s = ProxySettings::from_env(&env(&[]), Some("http://alice:s3cret@proxy:3128"), &[]);
        let i = route(&s.matcher(), &"https://x.example/".parse().unwrap()).unwrap();
        // base64("alice:s3cret")
        assert_eq!(i.basic_auth().unwrap(), "Basic YWxpY2U6czNjcmV0");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice"),
            "{shown}"
        );
        assert_eq!(
            mask_credentials("http://alice:s3cret@proxy:3128"),
            "http://***@proxy:3128"
        );
        assert_eq!(mask_credentials("http://proxy:3128/"), "http://proxy:3128/");
        assert_eq!(mask_credentials("http://proxy/a@b"), "http://proxy/a@b");
    }

    #[test]
    fn bad_proxy_urls_are_named_without_credentials() {
        let bad = |v: &str| {
            ProxySettings {
                https: Some(v.to_owned()),
                ..ProxySettings::default()
            }
            .validate()
            .unwrap_err()
            .to_string()
        };
        let e = bad("socks5://proxy:1080");
        assert!(
            e.starts_with("HTTPS_PROXY: ") && e.contains("only http://"),
            "{e}"
        );
        let e = bad("https://u:pw@proxy:443");
        assert!(e.contains("https://") && !e.contains("pw"), "{e}");
        let e = bad("proxy:3128");
        assert!(e.contains("scheme") || e.contains("not supported"), "{e}");
        let e = bad("http://u:pw@ bad host");
        assert!(e.contains("not a URL") && !e.contains("pw"), "{e}");
        assert!(ProxySettings::default().validate().is_ok());
        assert!(
            ProxySettings {
                all: Some("http://u:p@proxy:3128".into()),
                ..ProxySettings::default()
            }
            .validate()
            .is_ok()
        );
    }
}
