//! The daemon's side of a network-facing gateway: the proxy port's
//! certificate (`[proxy.tls]`, read once at start) and what `/readyz`
//! checks (the ledger answers; in team mode that is PostgreSQL).

use std::sync::Arc;

use anyhow::anyhow;
use tb_config::Config;
use tb_proxy::{Proxy, Readiness, ServerTls};
use tb_store::Ledger;

use crate::Failure;

/// Reads `[proxy.tls]` when set and hands the certificate to `proxy`;
/// returns the URL scheme the proxy serves. An unreadable or mismatched
/// certificate/key is a configuration error (exit 2) naming the file.
pub(crate) fn configure(config: &Config, proxy: &Proxy) -> Result<&'static str, Failure> {
    let Some((cert, key)) = config.proxy.tls.files() else {
        return Ok("http");
    };
    let tls = ServerTls::from_pem_files(cert, key).map_err(|e| Failure::Config(anyhow!(e)))?;
    proxy.serve_tls(tls);
    if !config.proxy.bind.is_loopback() {
        tracing::info!(target: "gateway.network", bind = %config.proxy.bind, "listening beyond loopback over TLS: only member keys are accepted on the proxy port");
    }
    Ok("https")
}

/// How long the ledger may take to answer a readiness ping (its pool
/// retries a refused connection for longer than a balancer waits).
const PING_LIMIT: std::time::Duration = std::time::Duration::from_millis(1_000);

/// `/readyz` is ready while the ledger answers a `SELECT 1`.
pub(crate) struct LedgerReadiness(pub(crate) Ledger);

impl Readiness for LedgerReadiness {
    fn check(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            match tokio::time::timeout(PING_LIMIT, self.0.ping()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("ledger unreachable: {e}")),
                Err(_) => Err(format!(
                    "ledger unreachable: no answer within {} ms",
                    PING_LIMIT.as_millis()
                )),
            }
        })
    }
}

/// Wires the readiness check into `proxy`.
pub(crate) fn watch_readiness(proxy: &Proxy, ledger: &Ledger) {
    proxy.set_readiness(Arc::new(LedgerReadiness(ledger.clone())));
}
