//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tb_registry::HttpClient;

/// The daemon's client, trusting nothing (the tests only speak plain HTTP
/// to loopback).
pub fn client() -> HttpClient {
    tb_http::client_with_roots(tb_http::RootCertStore::empty()).unwrap()
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
