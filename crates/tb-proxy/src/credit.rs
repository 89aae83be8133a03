//! The marketplace's [`Credit`]: seller tokens from tb-seller's
//! `CreditBroker` (cached or bought, single-flight, within the session
//! budget), with every purchase counted in `tb_purchases_total`.

use std::sync::Arc;

use tb_domain::PaymentMethod;
use tb_router::Upstream;
use tb_seller::{AcquireError, CreditBroker, Lease, SellerRef};

use crate::attempt::{BoxFuture, Credit, NoCredit};
use crate::metrics::ProxyMetrics;

/// Seller credit through the broker.
pub(crate) struct MarketCredit {
    pub broker: CreditBroker,
    pub payment: PaymentMethod,
    pub metrics: Arc<ProxyMetrics>,
}

impl MarketCredit {
    async fn acquire_counted(
        &self,
        upstream: &Upstream,
        seller_url: &str,
        model: &str,
        force_new: bool,
    ) -> Result<Lease, NoCredit> {
        let seller = SellerRef::new(upstream.id.as_str(), seller_url);
        let acquired = self
            .broker
            .acquire(&seller, model, self.payment, force_new)
            .await;
        let result = match &acquired {
            Ok(l) if l.bought => Some("ok"),
            Ok(_) => None,
            Err(AcquireError::BudgetSpent { .. }) => Some("budget_spent"),
            Err(AcquireError::PaymentPending(_)) => Some("payment_pending"),
            Err(AcquireError::PurchaseFailed(_)) => Some("failed"),
        };
        if let Some(result) = result {
            self.metrics
                .purchases
                .with_label_values(&[upstream.id.as_str(), result])
                .inc();
        }
        let lease = acquired.map_err(|e| NoCredit {
            payment_due: matches!(e, AcquireError::PaymentPending(_)),
            detail: e.to_string(),
        })?;
        if lease.bought {
            tracing::info!(target: "purchase.completed", upstream = %upstream.id, token = %lease.fingerprint, "bought seller credit");
        }
        Ok(lease)
    }
}

impl Credit for MarketCredit {
    fn acquire<'a>(
        &'a self,
        upstream: &'a Upstream,
        seller_url: &'a str,
        model: &'a str,
        force_new: bool,
    ) -> BoxFuture<'a, Result<Lease, NoCredit>> {
        Box::pin(self.acquire_counted(upstream, seller_url, model, force_new))
    }

    fn drop_lease(&self, lease: &Lease) {
        self.broker.drop_lease(lease);
    }

    fn mark_dry(&self, lease: &Lease) {
        self.broker.mark_lease_dry(lease);
    }

    fn settle(&self, lease: &Lease, settled_micros: Option<u64>, remaining_micros: Option<u64>) {
        self.broker
            .settle_lease(lease, settled_micros, remaining_micros);
    }

    fn abandon(&self, lease: &Lease) {
        self.broker.abandon_lease(lease);
    }
}
