//! A bought seller token and the rule for reusing it.

use tb_domain::PaymentMethod;

use crate::SellerSecret;

/// A seller token the daemon holds: one per (seller, payment method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerToken {
    /// The seller's registry id.
    pub seller_id: String,
    /// How it was paid for.
    pub payment_method: PaymentMethod,
    /// The bearer token (masked in `Debug`).
    pub access_token: SellerSecret,
    /// Credit left, micros (updated by settlements).
    pub balance_micros: u64,
    /// Credit bought, micros.
    pub credit_micros: u64,
    /// What the purchase cost, USD micros.
    pub price_usd_micros: u64,
    /// When the token expires, unix ms.
    pub expires_at_ms: i64,
    /// When it was bought, unix ms.
    pub purchased_at_ms: i64,
}

impl SellerToken {
    /// Whether the token may serve a request now (marketplace.md, "Tokens
    /// and credit"): `now + margin < expires_at` **and**
    /// `balance > min_balance`. Both comparisons are strict; the sum
    /// saturates, so a huge margin never wraps around.
    pub fn usable(&self, now_ms: i64, margin_ms: i64, min_balance_micros: u64) -> bool {
        now_ms.saturating_add(margin_ms) < self.expires_at_ms
            && self.balance_micros > min_balance_micros
    }

    /// The token's fingerprint (first 12 hex chars of its SHA-256).
    pub fn fingerprint(&self) -> String {
        self.access_token.fingerprint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(balance: u64, expires: i64) -> SellerToken {
        SellerToken {
            seller_id: "s".into(),
            payment_method: PaymentMethod::Mock,
            access_token: SellerSecret::new("t"),
            balance_micros: balance,
            credit_micros: 1_000_000,
            price_usd_micros: 1_000,
            expires_at_ms: expires,
            purchased_at_ms: 0,
        }
    }

    #[test]
    fn usable_at_the_boundaries() {
        const NOW: i64 = 1_000_000;
        const MARGIN: i64 = 60_000;
        const MIN: u64 = 10_000;
        // (balance, expires_at, usable)
        let table: &[(u64, i64, bool)] = &[
            // Expiry: now + margin must be strictly before expires_at.
            (MIN + 1, NOW + MARGIN + 1, true),
            (MIN + 1, NOW + MARGIN, false),
            (MIN + 1, NOW + MARGIN - 1, false),
            (MIN + 1, NOW, false),
            (MIN + 1, NOW - 1, false),
            (MIN + 1, i64::MAX, true),
            // Balance: strictly above the minimum.
            (MIN, i64::MAX, false),
            (MIN - 1, i64::MAX, false),
            (0, i64::MAX, false),
            (u64::MAX, NOW + MARGIN + 1, true),
            // Both failing.
            (MIN, NOW, false),
        ];
        for &(balance, expires, want) in table {
            assert_eq!(
                token(balance, expires).usable(NOW, MARGIN, MIN),
                want,
                "balance {balance}, expires {expires}"
            );
        }
    }

    #[test]
    fn usable_edge_parameters() {
        // Zero margin and zero minimum: any positive balance before expiry.
        assert!(token(1, 11).usable(10, 0, 0));
        assert!(!token(1, 10).usable(10, 0, 0));
        assert!(!token(0, 11).usable(10, 0, 0));
        // A huge margin saturates instead of wrapping to a negative time.
        assert!(!token(5, i64::MAX).usable(i64::MAX - 1, i64::MAX, 0));
        // A huge minimum balance: never usable.
        assert!(!token(u64::MAX, i64::MAX).usable(0, 0, u64::MAX));
    }
}
