//! Wallet purchases (`clawtip`, marketplace.md): the quote carries a
//! payment request the user pays outside the daemon; the purchase stays
//! pending while a background task polls `complete` with backoff
//! ([`next_payment_poll_ms`]) until it is paid, expires or is cancelled.

use std::sync::Arc;
use std::time::Duration;

use tb_domain::PaymentMethod;
use tb_store::{PurchaseEvent, PurchaseRow, PurchaseStatus};

use super::{
    AcquireError, CreditBroker, FlightKey, Inner, PendingPayment, SellerRef, next_payment_poll_ms,
};
use crate::{Completion, PaymentRequest, Purchased, SellerError};

/// How a pending wallet purchase ended.
enum WalletEnd {
    Paid(Purchased),
    Expired,
    Cancelled,
    Failed(SellerError),
}

impl Inner {
    /// Quotes a wallet purchase, keeps it pending (journaled with status
    /// `pending`, the pay URL as its payment reference) and starts its
    /// poller. Returns the error the request that needed the credit gets:
    /// [`AcquireError::PaymentPending`], or why no payment could be asked.
    pub(super) async fn start_wallet_purchase(
        self: &Arc<Self>,
        seller: &SellerRef,
        model: &str,
        payment: PaymentMethod,
    ) -> AcquireError {
        let (quote, mut row) = match self.quote_within_budget(seller, model, payment, None).await {
            Ok(quoted) => quoted,
            Err(e) => return e,
        };
        let price = quote.price_usd_micros;
        let Some(request) = quote.payment.clone() else {
            let error = AcquireError::PurchaseFailed(format!(
                "seller {}: its {payment} quote {} has no usable payment object (payUrl), so \
                 the user cannot be asked to pay",
                seller.id, quote.quote_id
            ));
            self.release_failed(&seller.id, price, row, &error);
            return error;
        };
        let pending = PendingPayment {
            purchase_id: row.id.clone(),
            seller_id: seller.id.clone(),
            model: model.to_owned(),
            payment_method: payment,
            quote_id: quote.quote_id.clone(),
            credit_micros: quote.credit_micros,
            price_usd_micros: price,
            expires_at_ms: quote.expires_at_ms,
            created_at_ms: row.created_at_ms,
            request,
        };
        row.status = PurchaseStatus::Pending;
        row.payment_reference = Some(pending.request.pay_url.clone());
        self.journal(PurchaseEvent::Purchase(row.clone()));
        tracing::info!(
            target: "purchase.pending",
            seller = %seller.id,
            payment = %payment,
            model,
            purchase_id = %pending.purchase_id,
            price_usd_micros = price,
            credit_micros = pending.credit_micros,
            pay_url = %pending.request.pay_url,
            expires_at_ms = pending.expires_at_ms,
            "wallet payment pending: the user must pay"
        );
        let key: FlightKey = (seller.id.clone(), model.to_owned(), payment);
        self.state().payments.insert(key, pending.clone());
        let inner = Arc::clone(self);
        let poller_seller = seller.clone();
        let poller_pending = pending.clone();
        tokio::spawn(async move { inner.poll_wallet(poller_seller, poller_pending, row).await });
        AcquireError::PaymentPending(Box::new(pending))
    }

    /// Polls `complete` until the purchase ends, then installs the token
    /// or journals why there is none. The pending entry leaves the map
    /// only after the token is cached, so no request in between starts a
    /// second quote.
    async fn poll_wallet(
        self: Arc<Self>,
        seller: SellerRef,
        pending: PendingPayment,
        row: PurchaseRow,
    ) {
        let end = self.wait_for_payment(&seller, &pending).await;
        let key: FlightKey = (
            pending.seller_id.clone(),
            pending.model.clone(),
            pending.payment_method,
        );
        let price = pending.price_usd_micros;
        let forget = || self.state().payments.remove(&key);
        match end {
            WalletEnd::Paid(purchased) => {
                let installed = self
                    .install(
                        &seller,
                        &pending.model,
                        pending.payment_method,
                        price,
                        purchased,
                        row,
                    )
                    .await;
                if let (Ok(_), Some(url)) = (&installed, &pending.request.recharge_qr_url) {
                    self.state()
                        .recharge_urls
                        .insert((seller.id.clone(), pending.payment_method), url.clone());
                }
                forget();
                match installed {
                    Ok(lease) => tracing::info!(
                        target: "purchase.completed",
                        upstream = %seller.id,
                        purchase_id = %pending.purchase_id,
                        token = %lease.fingerprint,
                        "wallet payment received; bought seller credit"
                    ),
                    Err(e) => {
                        tracing::warn!(target: "purchase.completed", upstream = %seller.id, "{e}")
                    }
                }
            }
            WalletEnd::Expired | WalletEnd::Cancelled => {
                let (status, why) = match end {
                    WalletEnd::Expired => (PurchaseStatus::Expired, "the quote expired unpaid"),
                    _ => (
                        PurchaseStatus::Cancelled,
                        "the payment was cancelled in the wallet",
                    ),
                };
                forget();
                {
                    let mut st = self.state();
                    st.budget_reserved = st.budget_reserved.saturating_sub(price);
                }
                let mut row = row;
                row.error = Some(format!("seller {}: {why}", seller.id));
                self.journal_end(row, status, None);
                tracing::info!(
                    target: "purchase.ended",
                    seller = %seller.id,
                    purchase_id = %pending.purchase_id,
                    status = status.as_str(),
                    "wallet purchase ended unpaid: {why}; the next request quotes again"
                );
            }
            WalletEnd::Failed(e) => {
                forget();
                let error = AcquireError::PurchaseFailed(format!("seller {}: {e}", seller.id));
                tracing::warn!(target: "purchase.ended", seller = %seller.id, purchase_id = %pending.purchase_id, "{error}");
                self.release_failed(&seller.id, price, row, &error);
            }
        }
        self.wallet_ends.send_modify(|n| *n += 1);
    }

    /// The poll loop: backoff from 2 s to 15 s, never sleeping past the
    /// quote's expiry, one last poll after it. A transport error or 5xx is
    /// retried; any other error answer ends the purchase.
    async fn wait_for_payment(&self, seller: &SellerRef, pending: &PendingPayment) -> WalletEnd {
        let mut attempt = 0u32;
        let mut after_expiry = false;
        loop {
            let Some(wait) =
                next_payment_poll_ms(attempt, self.now(), pending.expires_at_ms, after_expiry)
            else {
                return WalletEnd::Expired;
            };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            attempt = attempt.saturating_add(1);
            after_expiry = self.now() >= pending.expires_at_ms;
            let polled = self
                .client
                .poll_complete(&seller.url, &pending.quote_id, pending.payment_method)
                .await;
            match polled {
                Ok(Completion::Pending) => {}
                Ok(Completion::Paid(purchased)) => return WalletEnd::Paid(purchased),
                Ok(Completion::Expired) => return WalletEnd::Expired,
                Ok(Completion::Cancelled) => return WalletEnd::Cancelled,
                Err(e) if e.status().is_some_and(|s| s < 500 && s != 408 && s != 429) => {
                    return WalletEnd::Failed(e);
                }
                Err(e) => tracing::warn!(
                    target: "purchase.poll",
                    seller = %seller.id,
                    purchase_id = %pending.purchase_id,
                    "polling the wallet payment failed, retrying: {e}"
                ),
            }
        }
    }
}

impl CreditBroker {
    /// Polls again the wallet purchases a previous run left `pending`
    /// (`rows` from the ledger, newest first), so a payment the user makes
    /// while the daemon was down, or after it restarted, is still
    /// collected. `seller_url` finds a seller's URL in the current
    /// registry. The price of each is reserved against this run's budget
    /// as for a new one. A row that cannot be polled (its seller is no
    /// longer listed, a field is missing, or a newer pending quote of the
    /// same seller, model and method exists) is journaled `failed` with the
    /// reason. Returns how many are polled again.
    pub fn resume_wallet_purchases(
        &self,
        rows: Vec<PurchaseRow>,
        seller_url: &dyn Fn(&str) -> Option<String>,
    ) -> usize {
        let mut resumed = 0;
        for row in rows {
            if row.status != PurchaseStatus::Pending {
                continue;
            }
            match resumable(&row, seller_url) {
                Ok((seller, pending)) => {
                    let key: FlightKey = (
                        pending.seller_id.clone(),
                        pending.model.clone(),
                        pending.payment_method,
                    );
                    {
                        let mut st = self.inner.state();
                        if st.payments.contains_key(&key) {
                            drop(st);
                            self.give_up_resuming(row, "a newer pending quote replaces it");
                            continue;
                        }
                        st.budget_reserved =
                            st.budget_reserved.saturating_add(pending.price_usd_micros);
                        st.payments.insert(key, pending.clone());
                    }
                    tracing::info!(
                        target: "purchase.pending",
                        seller = %seller.id,
                        purchase_id = %pending.purchase_id,
                        pay_url = %pending.request.pay_url,
                        expires_at_ms = pending.expires_at_ms,
                        "wallet payment still pending after a restart: polling it again"
                    );
                    let inner = Arc::clone(&self.inner);
                    tokio::spawn(async move { inner.poll_wallet(seller, pending, row).await });
                    resumed += 1;
                }
                Err(why) => self.give_up_resuming(row, &why),
            }
        }
        resumed
    }

    fn give_up_resuming(&self, row: PurchaseRow, why: &str) {
        let error = AcquireError::PurchaseFailed(format!(
            "seller {}: the pending wallet purchase was not polled again after a restart: {why}",
            row.seller_id
        ));
        tracing::warn!(target: "purchase.ended", purchase_id = %row.id, "{error}");
        self.inner
            .journal_end(row, PurchaseStatus::Failed, Some(&error));
    }
}

/// The seller and the pending payment a stored `pending` row describes, or
/// what is missing. The QR payload is the pay URL (the ledger keeps only
/// that; marketplace.md: "usually `payUrl` itself").
fn resumable(
    row: &PurchaseRow,
    seller_url: &dyn Fn(&str) -> Option<String>,
) -> Result<(SellerRef, PendingPayment), String> {
    let missing = |what: &str| format!("its {what} is not in the ledger");
    let url = seller_url(&row.seller_id)
        .ok_or_else(|| "its seller is not in the current registry".to_owned())?;
    let pay_url = row
        .payment_reference
        .clone()
        .ok_or_else(|| missing("pay URL"))?;
    let pending = PendingPayment {
        purchase_id: row.id.clone(),
        seller_id: row.seller_id.clone(),
        model: row.model.clone().ok_or_else(|| missing("model"))?,
        payment_method: row.payment_method,
        quote_id: row.quote_id.clone().ok_or_else(|| missing("quote id"))?,
        credit_micros: row.credit_micros.ok_or_else(|| missing("credit"))?,
        price_usd_micros: row.price_usd_micros.ok_or_else(|| missing("price"))?,
        expires_at_ms: row.expires_at_ms.ok_or_else(|| missing("quote expiry"))?,
        created_at_ms: row.created_at_ms,
        request: PaymentRequest {
            qr_payload: pay_url.clone(),
            pay_url,
            recharge_qr_url: None,
        },
    };
    Ok((SellerRef::new(row.seller_id.clone(), url), pending))
}
