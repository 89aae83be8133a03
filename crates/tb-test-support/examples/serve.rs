//! Runs a [`MockUpstream`] until Ctrl-C, printing its URLs: handy for
//! poking at the canned replies with curl or an SDK (see `crates/tokenbuddyd/tests/sdk/sdk_check.py`).
//!
//! ```text
//! cargo run -p tb-test-support --example serve
//! ```

use tb_test_support::MockUpstream;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let upstream = MockUpstream::start().await?;
    println!("OPENAI_BASE_URL={}", upstream.base_url());
    println!("ANTHROPIC_BASE_URL={}", upstream.root_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
