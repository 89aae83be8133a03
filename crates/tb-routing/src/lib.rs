//! Routing decisions for tokenbuddy, as pure functions: the scorers, the
//! route planner, failover decisions and stickiness (routing.md).
//!
//! Why a crate of its own: every request runs through these decisions, they
//! have many cases, and they are easiest to get right (and to test
//! exhaustively) when they take plain values — candidates, the outcome of
//! an attempt, the caller's `now_ms` — and return plain values. There is no
//! I/O, no clock, no lock and no async here; the proxy gathers candidates
//! from the model index and the pool (this crate does not depend on either)
//! and acts on the answers.
//!
//! - [`score_breakdown`] / [`Scorer`]: `speed`, `discount`, `balanced`,
//!   `cheapest`, computed in integers so the order is deterministic.
//! - [`plan`]: rank, push benched upstreams to the back (never drop them),
//!   apply stickiness, cap at `max_attempts`. Linear in the number of
//!   candidates, one allocation for the keys.
//! - [`classify`], [`decide`], [`counts_as_pool_failure`],
//!   [`is_transient`], [`final_response_choice`]: the failover table and
//!   proxy.md's rule for the response when every route failed.
//! - [`Stickiness`]: after a failover, start at the upstream that served it
//!   for `sticky_reset_ms`.
//! - [`assess`] / [`Trust`] / [`Demotion`]: what `tokenbuddyd probe`'s
//!   findings mean for routing (a broken tool call, an ignored
//!   `max_tokens`, an over-counted prompt), with their expiry.
//!
//! ```
//! use tb_routing::{
//!     AttemptState, Action, BodyHint, Candidate, FailoverConfig, Outcome, PlanInput, PlanMode,
//!     Stickiness, classify, decide, plan,
//! };
//!
//! let now = 1_000_000;
//! let cands = [
//!     Candidate { id: "a".into(), registry_order: 0, health_score: 90, ttft_ms: Some(400), ..Candidate::default() },
//!     Candidate { id: "b".into(), registry_order: 1, health_score: 70, ttft_ms: Some(200), ..Candidate::default() },
//! ];
//! let mut sticky = Stickiness::new(60_000);
//! let p = plan(PlanInput {
//!     sticky: sticky.hint("gpt-4o", now),
//!     ..PlanInput::new(&cands, PlanMode::FullAuto, now)
//! });
//! assert_eq!(p.order, [0, 1]); // balanced: 0.35·90 + 0.20·60 > 0.35·70 + 0.20·80
//!
//! // The first upstream answers 503: retry it once, then fail over.
//! let outcome = classify(Some(503), None, BodyHint::default());
//! assert_eq!(outcome, Outcome::ServerError);
//! let state = AttemptState { attempt_no: 1, routes_left: 1, ..AttemptState::default() };
//! assert!(matches!(decide(outcome, state, FailoverConfig::default()), Action::RetrySame { .. }));
//! let again = AttemptState { attempt_no: 2, retried_same: true, ..state };
//! assert_eq!(decide(outcome, again, FailoverConfig::default()), Action::FailoverNext);
//!
//! // "b" served it after a failover: the model sticks to "b" for a minute.
//! sticky.on_failover_served("gpt-4o", cands[1].id.clone(), now);
//! let p = plan(PlanInput {
//!     sticky: sticky.hint("gpt-4o", now + 1),
//!     ..PlanInput::new(&cands, PlanMode::FullAuto, now + 1)
//! });
//! assert_eq!(p.order, [1, 0]);
//! ```

mod failover;
mod planner;
mod scorer;
mod sticky;
mod trust;

pub use failover::{
    Action, AttemptState, BodyHint, FailoverConfig, FinalChoice, Outcome, RETRY_BACKOFF_MS,
    TransportFailure, classify, counts_as_pool_failure, decide, final_response_choice,
    is_transient, jittered_backoff_ms,
};
pub use planner::{
    DEFAULT_MAX_ATTEMPTS, ManualPolicy, Plan, PlanDiagnostics, PlanInput, PlanMode, Ranking,
    StickyStatus, plan,
};
pub use scorer::{Candidate, ScoreBreakdown, Scorer, score_breakdown};
pub use sticky::{DEFAULT_STICKY_RESET_MS, Stickiness, StickyHint};
pub use trust::{CheckFinding, Demotion, ProbeFindings, Trust, TrustPolicy, assess};
