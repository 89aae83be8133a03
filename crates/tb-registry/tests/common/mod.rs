//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tb_registry::HttpClient;

/// The same kind of client as tb-proxy's `build_client`, trusting nothing
/// (the tests only speak plain HTTP to loopback).
pub fn client() -> HttpClient {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

/// A valid seller, camelCase.
pub fn seller(id: &str) -> Value {
    json!({
        "id": id, "name": format!("Seller {id}"), "url": format!("https://{id}.example/"),
        "models": ["deepseek-chat", "claude-sonnet-4-5"],
        "protocols": ["chat_completions", "messages"],
        "paymentMethods": ["mock", "clawtip"],
        "discountRatio": 0.2, "serviceFeeRatio": 0.02, "status": "active"
    })
}

/// A document with these sellers.
pub fn doc(version: &str, sellers: &[Value]) -> String {
    json!({"version": version, "defaultSeller": sellers.first().map(|s| s["id"].clone()), "sellers": sellers})
        .to_string()
}
