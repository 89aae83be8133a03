//! Sellers' own prices: each registry seller's optional `GET /manifest`
//! (marketplace.md), fetched once per registry generation in the
//! background, never on the request path. The manifests are kept beside
//! the registry snapshot and built into the routing table
//! ([`Upstream::seller`](crate::Upstream::seller)), so a request reads a
//! seller's prices from memory. A seller with no manifest (404) or a bad
//! one (unreachable, not JSON, too large — the client caps the body) is
//! priced from the table × (1 − discount) × (1 + fee), with a warning for
//! the bad ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tb_registry::{RegistryDoc, SellerEntry};
use tb_seller::{Manifest, SellerClient};

/// How long one manifest fetch may take (connect, head and body).
pub(crate) const MANIFEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How many manifests are fetched at once.
pub(crate) const MANIFEST_CONCURRENCY: usize = 16;
/// How many unusable manifests a generation logs as warnings (the rest at
/// debug level; the `registry.manifests` summary counts them all), so a
/// large registry of unreachable sellers does not flood the log.
const WARNINGS_PER_GENERATION: usize = 10;

/// The manifests of one registry generation, by seller id, each with the
/// URL it was fetched from (a seller whose URL changed is not matched).
#[derive(Debug, Default)]
pub(crate) struct Manifests {
    /// The registry generation they were fetched for (0: none yet).
    pub(crate) generation: u64,
    /// Sellers without a manifest (404).
    pub(crate) absent: usize,
    /// Sellers whose manifest could not be used.
    pub(crate) failed: usize,
    by_seller: HashMap<String, (String, Arc<Manifest>)>,
}

impl Manifests {
    /// The manifest `entry` published, if it was fetched from its URL.
    pub(crate) fn get(&self, entry: &SellerEntry) -> Option<&Manifest> {
        self.by_seller
            .get(entry.id.as_str())
            .filter(|(url, _)| *url == entry.url)
            .map(|(_, m)| m.as_ref())
    }

    /// How many sellers published a manifest.
    pub(crate) fn len(&self) -> usize {
        self.by_seller.len()
    }
}

/// Fetches the manifest of every seller of `doc` over `client`, at most
/// [`MANIFEST_CONCURRENCY`] at once. Failures are logged and left out.
pub(crate) async fn fetch(client: &SellerClient, doc: &RegistryDoc, generation: u64) -> Manifests {
    let gate = Arc::new(tokio::sync::Semaphore::new(MANIFEST_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for seller in &doc.sellers {
        let (client, gate) = (client.clone(), Arc::clone(&gate));
        let (id, url) = (seller.id.to_string(), seller.url.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.ok();
            let got = client.manifest(&url).await;
            (id, url, got)
        });
    }
    let (mut absent, mut failed) = (0usize, 0usize);
    let mut by_seller = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((id, url, got)) = joined else {
            failed += 1;
            continue;
        };
        match got {
            Ok(Some(manifest)) => {
                by_seller.insert(id, (url, Arc::new(manifest)));
            }
            Ok(None) => absent += 1,
            Err(e) => {
                failed += 1;
                // The error names the call and the URL (credentials
                // removed); no token is sent to /manifest.
                if failed <= WARNINGS_PER_GENERATION {
                    tracing::warn!(target: "registry.manifest_failed", seller = %id, error = %e, "seller manifest unusable; pricing it from the table × its discount");
                } else {
                    tracing::debug!(target: "registry.manifest_failed", seller = %id, error = %e, "seller manifest unusable");
                }
            }
        }
    }
    Manifests {
        generation,
        absent,
        failed,
        by_seller,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entry(id: &str, url: &str) -> SellerEntry {
        let raw = format!(
            r#"{{"version":"v","sellers":[{{"id":"{id}","url":"{url}","models":["m"],"protocols":["chat_completions"],"paymentMethods":["mock"]}}]}}"#
        );
        tb_registry::parse_registry(raw.as_bytes())
            .unwrap()
            .doc
            .sellers
            .remove(0)
    }

    #[test]
    fn a_manifest_matches_its_seller_only_at_the_url_it_came_from() {
        let mut m = Manifests::default();
        m.by_seller.insert(
            "s-a".into(),
            ("http://a".into(), Arc::new(Manifest::default())),
        );
        assert!(m.get(&entry("s-a", "http://a")).is_some());
        assert!(m.get(&entry("s-a", "http://moved")).is_none());
        assert!(m.get(&entry("s-b", "http://a")).is_none());
        assert_eq!(m.len(), 1);
    }
}
