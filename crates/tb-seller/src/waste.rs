//! The waste rules (marketplace.md, "Tokens and credit"; issue 16): when
//! credit left on a bought token counts as wasted. Pure: the token's
//! numbers, what happened, the time and the policy in; the waste out.
//!
//! - **Failover**: the daemon failed over away from the seller less than
//!   `purchase.fresh_window_ms` after buying the token — the cost of a bad
//!   failover. Later failovers are ordinary: the token was worth buying.
//! - **Expired**: the token can no longer be used because of its expiry
//!   (`now + token_expiry_margin_ms ≥ expires_at`, the rule that makes the
//!   daemon buy anew) while credit is left on it.
//! - **Delisted**: the seller is no longer in the registry while credit
//!   is left on its token.
//!
//! A token wastes at most once; the broker undoes the waste if the token is
//! spent again after all (a failed-over seller that serves later).

use tb_store::WasteReason;

use crate::PurchasePolicy;

/// What the rules need of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenFacts {
    /// Credit left, micros.
    pub balance_micros: u64,
    /// When it was bought, unix ms.
    pub purchased_at_ms: i64,
    /// When it expires, unix ms.
    pub expires_at_ms: i64,
}

/// What happened to the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEvent {
    /// The daemon failed over away from the token's seller.
    FailedOver,
    /// A periodic look (or a replacement): `listed` says whether the
    /// seller is in the registry now.
    Checked {
        /// The seller is in the registry's current document.
        listed: bool,
    },
}

/// The credit wasted on `token` by `event` at `now_ms`, and why; `None`
/// when nothing is wasted (no credit left, or no rule applies).
pub fn wasted(
    token: TokenFacts,
    event: TokenEvent,
    now_ms: i64,
    policy: &PurchasePolicy,
) -> Option<(u64, WasteReason)> {
    if token.balance_micros == 0 {
        return None;
    }
    let reason = match event {
        TokenEvent::FailedOver => {
            let window = i64::try_from(policy.fresh_window_ms).unwrap_or(i64::MAX);
            let age = now_ms.saturating_sub(token.purchased_at_ms);
            (age < window).then_some(WasteReason::Failover)?
        }
        TokenEvent::Checked { listed } => {
            let margin = i64::try_from(policy.token_expiry_margin_ms).unwrap_or(i64::MAX);
            if now_ms.saturating_add(margin) >= token.expires_at_ms {
                WasteReason::Expired
            } else if !listed {
                WasteReason::Delisted
            } else {
                return None;
            }
        }
    };
    Some((token.balance_micros, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUGHT: i64 = 1_700_000_000_000;
    const WINDOW: i64 = 300_000;
    const MARGIN: i64 = 60_000;
    const EXPIRES: i64 = BOUGHT + 3_600_000;

    /// What a rule returns.
    type Verdict = Option<(u64, WasteReason)>;

    fn policy() -> PurchasePolicy {
        PurchasePolicy {
            fresh_window_ms: WINDOW as u64,
            token_expiry_margin_ms: MARGIN as u64,
            ..PurchasePolicy::default()
        }
    }

    fn token(balance: u64) -> TokenFacts {
        TokenFacts {
            balance_micros: balance,
            purchased_at_ms: BOUGHT,
            expires_at_ms: EXPIRES,
        }
    }

    #[test]
    fn failover_inside_the_fresh_window_wastes_the_balance() {
        use WasteReason::Failover;
        let fo = TokenEvent::FailedOver;
        // (balance, now, expected)
        let table: &[(u64, i64, Verdict)] = &[
            (900_000, BOUGHT, Some((900_000, Failover))),
            (900_000, BOUGHT + 1, Some((900_000, Failover))),
            (900_000, BOUGHT + WINDOW - 1, Some((900_000, Failover))),
            // At the end of the window and after: an ordinary failover.
            (900_000, BOUGHT + WINDOW, None),
            (900_000, BOUGHT + WINDOW + 1, None),
            (900_000, i64::MAX, None),
            // A clock that went back counts as fresh.
            (900_000, BOUGHT - 1_000, Some((900_000, Failover))),
            (900_000, i64::MIN, Some((900_000, Failover))),
            // Nothing left: nothing wasted.
            (0, BOUGHT + 1, None),
            (1, BOUGHT + 1, Some((1, Failover))),
            (u64::MAX, BOUGHT, Some((u64::MAX, Failover))),
        ];
        for &(balance, now, want) in table {
            assert_eq!(
                wasted(token(balance), fo, now, &policy()),
                want,
                "balance {balance}, now {now}"
            );
        }
        // A zero window: no failover is ever fresh.
        let p = PurchasePolicy {
            fresh_window_ms: 0,
            ..policy()
        };
        assert_eq!(wasted(token(5), fo, BOUGHT, &p), None);
        // A huge window saturates instead of wrapping.
        let p = PurchasePolicy {
            fresh_window_ms: u64::MAX,
            ..policy()
        };
        assert_eq!(
            wasted(token(5), fo, i64::MAX, &p),
            Some((5, WasteReason::Failover))
        );
    }

    #[test]
    fn expiry_and_delisting_waste_what_is_left() {
        use WasteReason::{Delisted, Expired};
        let listed = TokenEvent::Checked { listed: true };
        let gone = TokenEvent::Checked { listed: false };
        // (balance, event, now, expected)
        let table: &[(u64, TokenEvent, i64, Verdict)] = &[
            // Usable: nothing.
            (500, listed, BOUGHT, None),
            (500, listed, EXPIRES - MARGIN - 1, None),
            // Within the margin of expiry: the daemon will not use it again.
            (500, listed, EXPIRES - MARGIN, Some((500, Expired))),
            (500, listed, EXPIRES, Some((500, Expired))),
            (500, listed, i64::MAX, Some((500, Expired))),
            (0, listed, EXPIRES, None),
            // The seller left the registry.
            (500, gone, BOUGHT, Some((500, Delisted))),
            (0, gone, BOUGHT, None),
            // Both: the expiry had lost it anyway.
            (500, gone, EXPIRES, Some((500, Expired))),
        ];
        for &(balance, event, now, want) in table {
            assert_eq!(
                wasted(token(balance), event, now, &policy()),
                want,
                "balance {balance}, {event:?}, now {now}"
            );
        }
        // A huge margin saturates: the token counts as expired.
        let p = PurchasePolicy {
            token_expiry_margin_ms: u64::MAX,
            ..policy()
        };
        assert_eq!(wasted(token(7), listed, BOUGHT, &p), Some((7, Expired)));
    }
}
