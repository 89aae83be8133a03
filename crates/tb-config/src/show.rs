//! `config show`: every effective value, masked, with where it was set.

use figment::Source;
use serde_json::Value;

use crate::load::LoadedConfig;
use crate::schema::Secret;

/// One line of `config show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownValue {
    /// Dotted key, with `[i]` for array entries (`providers[0].id`).
    pub key: String,
    /// The value as TOML-ish text, secrets masked.
    pub value: String,
    /// `default`, `file <path>`, `env TB_…` or `flag`.
    pub source: String,
}

/// Header names whose values are credentials and are masked in output.
fn sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["auth", "key", "token", "secret", "cookie", "password"]
        .iter()
        .any(|s| n.contains(s))
}

/// Lists the effective configuration, leaf by leaf, with the source of each
/// value. Secrets (`api_key`, credential-looking `headers`) are masked.
pub fn describe(loaded: &LoadedConfig) -> Vec<ShownValue> {
    let mut json = serde_json::to_value(&loaded.config).unwrap_or(Value::Null);
    mask_headers(&mut json);
    let mut out = Vec::new();
    walk(&json, String::new(), loaded, &mut out);
    out
}

/// A URL with any password replaced by the mask
/// (`postgres://u:secret@h/db` → `postgres://u:********@h/db`).
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:{}", Secret::MASK)
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

fn mask_headers(json: &mut Value) {
    if let Some(url) = json.pointer_mut("/ledger/url")
        && let Some(text) = url.as_str()
    {
        *url = Value::String(mask_url(text));
    }
    // A collector may take its token in the query string.
    for pointer in ["/export/http/url", "/export/otlp/endpoint"] {
        if let Some(url) = json.pointer_mut(pointer)
            && let Some((base, _query)) = url.as_str().and_then(|t| t.split_once('?'))
        {
            *url = Value::String(format!("{base}?{}", Secret::MASK));
        }
    }
    let Some(providers) = json.get_mut("providers").and_then(Value::as_array_mut) else {
        return;
    };
    for p in providers {
        if let Some(headers) = p.get_mut("headers").and_then(Value::as_object_mut) {
            for (name, v) in headers.iter_mut() {
                if sensitive_header(name) {
                    *v = Value::String(Secret::MASK.into());
                }
            }
        }
    }
}

/// Sources of array entries are tracked by figment for the array as a
/// whole, so `providers[0].id` reports the source of `providers`.
fn walk(v: &Value, key: String, loaded: &LoadedConfig, out: &mut Vec<ShownValue>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let child_key = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                walk(child, child_key, loaded, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{key}[{i}]"), loaded, out);
            }
        }
        leaf => {
            let source_key = key.split('[').next().unwrap_or(&key);
            let source = source_of(loaded, source_key);
            out.push(ShownValue {
                value: leaf.to_string(),
                source,
                key,
            });
        }
    }
}

fn source_of(loaded: &LoadedConfig, key: &str) -> String {
    let Some(md) = loaded.figment.find_metadata(key) else {
        return "default".into();
    };
    if let Some(Source::File(path)) = &md.source {
        return format!("file {}", path.display());
    }
    if md.name.contains("environment") {
        let var = format!("TB_{}", key.to_ascii_uppercase().replace('.', "__"));
        return format!("env {var}");
    }
    if md.name.contains("CliOverrides") {
        return "flag".into();
    }
    "default".into()
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use crate::{CliOverrides, Paths, load};

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            mask_url("postgres://u:pw@h:5432/db"),
            "postgres://u:********@h:5432/db"
        );
        assert_eq!(mask_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(mask_url("postgres://h/db?x=a@b"), "postgres://h/db?x=a@b");
        assert_eq!(mask_url("/var/ledger.db"), "/var/ledger.db");
    }

    #[test]
    fn shows_sources_and_masks_secrets() {
        figment::Jail::expect_with(|jail| {
            let dir = jail.directory().to_path_buf();
            jail.create_file(
                "config.toml",
                r#"
[proxy]
shutdown_grace_ms = 1000
[[providers]]
id = "p"
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
api_key = "sk-secret-value"
models = ["m"]
headers = { "X-Title" = "me", "X-Custom-Token" = "tok-secret" }
[export.http]
url = "https://collect.example/in?token=qs-secret"
headers = { x-tenant = "hdr-secret" }
"#,
            )?;
            jail.set_env("TB_LOG__LEVEL", "debug");
            let mut flags = CliOverrides::default();
            flags.proxy.port = Some(0);
            let paths = Paths {
                config_file: dir.join("config.toml"),
                config_file_explicit: false,
                data_dir: dir.join("data"),
            };
            let loaded = load(paths, &flags).unwrap();
            let shown = describe(&loaded);
            let get = |k: &str| {
                shown
                    .iter()
                    .find(|s| s.key == k)
                    .unwrap_or_else(|| panic!("{k} in {shown:?}"))
            };
            assert_eq!(get("proxy.port").source, "flag");
            assert_eq!(get("proxy.port").value, "0");
            assert!(get("proxy.shutdown_grace_ms").source.starts_with("file "));
            assert_eq!(get("proxy.max_body_bytes").source, "default");
            assert_eq!(get("log.level").source, "env TB_LOG__LEVEL");
            assert_eq!(
                get("providers[0].api_key").value,
                format!("\"{}\"", Secret::MASK)
            );
            assert_eq!(
                get("providers[0].headers.X-Custom-Token").value,
                format!("\"{}\"", Secret::MASK)
            );
            assert_eq!(get("providers[0].headers.X-Title").value, "\"me\"");
            assert!(get("providers[0].id").source.starts_with("file "));
            assert_eq!(
                get("export.http.url").value,
                format!("\"https://collect.example/in?{}\"", Secret::MASK)
            );
            let all = format!("{shown:?}");
            for secret in ["sk-secret-value", "tok-secret", "qs-secret", "hdr-secret"] {
                assert!(!all.contains(secret), "{secret} in {all}");
            }
            Ok(())
        });
    }
}
