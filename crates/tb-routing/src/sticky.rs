//! Stickiness after a failover (routing.md, "Stickiness").

use std::collections::HashMap;
use std::sync::Arc;

/// `routing.sticky_reset_ms` when the config says nothing.
pub const DEFAULT_STICKY_RESET_MS: u64 = 60_000;

/// "Start this model's next requests at this upstream until `until_ms`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyHint {
    /// The upstream that served the failover.
    pub upstream_id: Arc<str>,
    /// When the hint stops applying (exclusive): the failover time plus
    /// `sticky_reset_ms`.
    pub until_ms: i64,
}

/// Per-model stickiness, kept by the caller (behind whatever lock it likes;
/// there is no interior mutability here) and fed the caller's clock.
///
/// After a request for a model fails over and is served by upstream *i*,
/// [`on_failover_served`](Self::on_failover_served) records *i* until
/// `now + reset_ms`; [`hint`](Self::hint) hands that to the planner while it
/// lasts, then the model snaps back to the best-ranked upstream. Requests
/// that are served by the sticky upstream without a failover do not touch
/// the entry, so continuous traffic never postpones the re-probe; only a new
/// failover does. `reset_ms = 0` turns it off.
///
/// ```
/// use tb_routing::Stickiness;
///
/// let mut s = Stickiness::new(60_000);
/// s.on_failover_served("gpt-4o", "seller-b".into(), 1_000);
/// assert_eq!(s.hint("gpt-4o", 30_000).map(|h| h.until_ms), Some(61_000));
/// assert_eq!(s.hint("gpt-4o", 61_000), None); // snapped back
/// assert_eq!(s.hint("other-model", 30_000), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Stickiness {
    reset_ms: u64,
    by_model: HashMap<String, StickyHint>,
}

impl Stickiness {
    /// Stickiness lasting `reset_ms` after each failover; 0 = off.
    pub fn new(reset_ms: u64) -> Stickiness {
        Stickiness {
            reset_ms,
            by_model: HashMap::new(),
        }
    }

    /// The configured interval.
    pub fn reset_ms(&self) -> u64 {
        self.reset_ms
    }

    /// Whether stickiness is on (`reset_ms > 0`).
    pub fn is_enabled(&self) -> bool {
        self.reset_ms > 0
    }

    /// A request for `model` failed over and `upstream_id` served it at
    /// `now_ms`: stick to it until `now_ms + reset_ms` (replacing any earlier
    /// hint for the model). Returns the new hint, `None` when off.
    ///
    /// Call it only when the serving upstream was not the plan's first (a
    /// request served first try, sticky or not, is not a failover).
    pub fn on_failover_served(
        &mut self,
        model: &str,
        upstream_id: Arc<str>,
        now_ms: i64,
    ) -> Option<StickyHint> {
        if !self.is_enabled() {
            return None;
        }
        let until_ms = now_ms.saturating_add(i64::try_from(self.reset_ms).unwrap_or(i64::MAX));
        let hint = StickyHint {
            upstream_id,
            until_ms,
        };
        match self.by_model.get_mut(model) {
            Some(slot) => *slot = hint.clone(),
            None => {
                self.by_model.insert(model.to_owned(), hint.clone());
            }
        }
        Some(hint)
    }

    /// The hint for `model` at `now_ms`, while `now_ms < until_ms`.
    pub fn hint(&self, model: &str, now_ms: i64) -> Option<StickyHint> {
        if !self.is_enabled() {
            return None;
        }
        self.by_model
            .get(model)
            .filter(|h| now_ms < h.until_ms)
            .cloned()
    }

    /// Forgets `model`'s hint (e.g. its sticky upstream left the index).
    pub fn forget(&mut self, model: &str) {
        self.by_model.remove(model);
    }

    /// Drops expired hints so the map only holds live ones; call it now and
    /// then (e.g. on the prewarm tick). Expired hints are ignored anyway.
    pub fn prune(&mut self, now_ms: i64) {
        self.by_model.retain(|_, h| now_ms < h.until_ms);
    }

    /// Number of models with a stored hint (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.by_model.len()
    }

    /// Whether no hint is stored.
    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn until(s: &Stickiness, model: &str, now: i64) -> Option<(String, i64)> {
        s.hint(model, now)
            .map(|h| (h.upstream_id.to_string(), h.until_ms))
    }

    #[test]
    fn hint_lasts_reset_ms_since_the_failover() {
        let mut s = Stickiness::new(60_000);
        assert_eq!(until(&s, "m", 0), None);
        let h = s.on_failover_served("m", "b".into(), 10_000);
        assert_eq!(
            h,
            Some(StickyHint {
                upstream_id: "b".into(),
                until_ms: 70_000
            })
        );
        let cases = [
            (10_000, Some(("b".to_owned(), 70_000))),
            (69_999, Some(("b".to_owned(), 70_000))),
            (70_000, None),
            (1_000_000, None),
        ];
        for (now, want) in cases {
            assert_eq!(until(&s, "m", now), want, "{now}");
        }
        // Per model.
        assert_eq!(until(&s, "other", 20_000), None);
    }

    #[test]
    fn continuous_traffic_does_not_postpone_but_a_new_failover_does() {
        let mut s = Stickiness::new(1_000);
        s.on_failover_served("m", "b".into(), 0);
        // Many requests served by b (first in plan, no failover): hint()
        // only reads.
        for now in (0..1_000).step_by(50) {
            assert_eq!(until(&s, "m", now), Some(("b".to_owned(), 1_000)));
        }
        assert_eq!(until(&s, "m", 1_000), None);
        // A later failover to c starts a new interval.
        s.on_failover_served("m", "c".into(), 1_500);
        assert_eq!(until(&s, "m", 2_000), Some(("c".to_owned(), 2_500)));
        // Failing over again (to b) while sticky to c replaces it.
        s.on_failover_served("m", "b".into(), 2_100);
        assert_eq!(until(&s, "m", 2_200), Some(("b".to_owned(), 3_100)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn zero_is_off() {
        let mut s = Stickiness::new(0);
        assert!(!s.is_enabled());
        assert_eq!(s.on_failover_served("m", "b".into(), 0), None);
        assert_eq!(s.hint("m", 0), None);
        assert!(s.is_empty());
    }

    #[test]
    fn prune_and_forget() {
        let mut s = Stickiness::new(100);
        s.on_failover_served("a", "x".into(), 0);
        s.on_failover_served("b", "y".into(), 50);
        s.prune(120);
        assert_eq!(s.len(), 1);
        assert_eq!(until(&s, "b", 120), Some(("y".to_owned(), 150)));
        s.forget("b");
        assert!(s.is_empty());
    }

    #[test]
    fn huge_reset_saturates() {
        let mut s = Stickiness::new(u64::MAX);
        let h = s.on_failover_served("m", "b".into(), 5);
        assert_eq!(h.map(|h| h.until_ms), Some(i64::MAX));
    }
}
