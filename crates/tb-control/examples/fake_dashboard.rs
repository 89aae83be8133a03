//! Serves the dashboard and API over the test suite's fake daemon, for
//! trying the page by hand and for the headless-browser smoke check
//! (`crates/tokenbuddyd/tests/browser/dashboard_check.mjs`).
//!
//! ```text
//! TB_FAKE_TOKEN=secret cargo run -p tb-control --example fake_dashboard
//! control: http://127.0.0.1:41234
//! ```
//!
//! `TB_FAKE_PORT` picks the port (default: ephemeral); `TB_FAKE_MANUAL=1`
//! answers `null` for credit and prewarm (manual mode); Ctrl-C stops it.

#[path = "../tests/support/fake.rs"]
mod fake;

use std::sync::Arc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let token = std::env::var("TB_FAKE_TOKEN").unwrap_or_else(|_| "fake-token".to_string());
    let port: u16 = std::env::var("TB_FAKE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("control: http://{}", listener.local_addr()?);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let mut api = fake::FakeApi::new(&token);
    api.manual_mode = std::env::var("TB_FAKE_MANUAL").is_ok_and(|v| v == "1");
    tb_control::serve(listener, Arc::new(api), stop).await;
    Ok(())
}
