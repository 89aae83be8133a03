//! Runs a simulated [`Marketplace`] until Ctrl-C, printing the registry URL
//! and the sellers: handy for poking at the seller protocol with curl, or
//! for pointing a daemon's `registry.url` at it.
//!
//! ```text
//! cargo run -p tb-sim-market --example marketplace -- 3
//! ```

use tb_sim_market::Marketplace;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let n = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let market = Marketplace::start(n).await?;
    println!("REGISTRY_URL={}", market.registry_url());
    for seller in &market.sellers {
        println!("{} {}", seller.id(), seller.url());
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
