//! Attempt outcomes, the failover decision and the final-response rule
//! (routing.md, "Failover"; proxy.md, "Errors").

use serde::Serialize;

pub use tb_domain::Outcome;

/// A failure below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportFailure {
    /// The connection could not be established (refused, unreachable, DNS,
    /// TLS handshake).
    Connect,
    /// The connection was reset or closed before a complete answer.
    Reset,
    /// A deadline passed: connect timeout, response head deadline, or the
    /// stream's idle timeout before content.
    Deadline,
}

/// What the caller found in an error body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BodyHint {
    /// The body says the credit ran out (marketplace.md: `insufficient`,
    /// `out of credit`, `quota`, `balance`, `余额不足`, `欠费`, `扣款`; the
    /// seller crate's `is_insufficient_funds` detects it).
    pub billing_wording: bool,
}

/// Classifies one attempt (routing.md's "classified when" column).
///
/// - An error status (anything but 2xx) decides by itself; what happened to
///   the connection afterwards does not matter. Billing wording on any
///   status ≥ 400 → `insufficient_funds` (so a 401/403/429 that says
///   "quota" or "balance" is a dry token, not a bad key or a rate limit).
/// - Otherwise a transport failure decides: `Connect` → `connect_failed`,
///   `Reset` → `server_error`, `Deadline` → `deadline`. With a 2xx status
///   this is a body or stream that broke before it was complete.
/// - 2xx with no transport failure → `ok` (`empty_completion` needs the
///   usage and is the caller's call).
/// - No status and no transport failure (nothing was learned) →
///   `server_error`.
///
/// Status table: 402 → insufficient funds; 401, 403 → auth invalid; 429 →
/// rate limited; 5xx, 408, 409, 498 → server error; every other 4xx →
/// client error (400, 404, 413, 422 by the spec; 405, 410, 415 … too: the
/// request was refused as such, so retrying it elsewhere is the same
/// gamble and it is no sign of a sick upstream); 1xx/3xx (not followed) →
/// server error.
pub fn classify(
    status: Option<u16>,
    transport: Option<TransportFailure>,
    body_hint: BodyHint,
) -> Outcome {
    match status {
        Some(s) if (200..300).contains(&s) => match transport {
            None => Outcome::Ok,
            Some(t) => classify_transport(t),
        },
        Some(s) if s >= 400 && body_hint.billing_wording => Outcome::InsufficientFunds,
        Some(402) => Outcome::InsufficientFunds,
        Some(401 | 403) => Outcome::AuthInvalid,
        Some(429) => Outcome::RateLimited,
        Some(408 | 409 | 498) => Outcome::ServerError,
        Some(400..=499) => Outcome::ClientError,
        Some(_) => Outcome::ServerError,
        None => match transport {
            Some(t) => classify_transport(t),
            None => Outcome::ServerError,
        },
    }
}

fn classify_transport(t: TransportFailure) -> Outcome {
    match t {
        TransportFailure::Connect => Outcome::ConnectFailed,
        TransportFailure::Reset => Outcome::ServerError,
        TransportFailure::Deadline => Outcome::Deadline,
    }
}

/// Whether an outcome counts as a failure in the pool (health −25, breaker
/// window). Spec: cancellations and the caller's own bad requests do not.
///
/// | outcome | counts | why |
/// | --- | --- | --- |
/// | `ok` | no | a success |
/// | `cancelled` | no | spec: the client left |
/// | `client_error` | no | spec: the request's fault |
/// | `insufficient_funds` | no | our credit ran out; the upstream answered correctly (the seller path buys and retries) |
/// | `purchase_failed` | no | no inference was attempted: a spent budget is our state, a failed purchase is the credit broker's to account |
/// | `auth_invalid` | yes | the upstream refuses us; benching a provider with a bad key stops wasting attempts on it |
/// | `rate_limited` | no | a 429 is capacity, not sickness: the caller benches the upstream until `Retry-After` (the pool's capacity block), which already stops wasting attempts; counting it too would open the breaker of a busy but healthy upstream (docs/decisions.md) |
/// | `server_error`, `connect_failed`, `deadline` | yes | the upstream is sick or unreachable |
/// | `empty_completion` | yes | the upstream took the input and produced nothing |
pub fn counts_as_pool_failure(outcome: Outcome) -> bool {
    match outcome {
        Outcome::Ok
        | Outcome::Cancelled
        | Outcome::ClientError
        | Outcome::InsufficientFunds
        | Outcome::RateLimited
        | Outcome::PurchaseFailed => false,
        Outcome::AuthInvalid
        | Outcome::ServerError
        | Outcome::ConnectFailed
        | Outcome::Deadline
        | Outcome::EmptyCompletion => true,
    }
}

/// Transient outcomes (proxy.md): `rate_limited`, `server_error`,
/// `deadline` and connect failure. Their answers lose to a later
/// non-transient answer in [`final_response_choice`].
pub fn is_transient(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::RateLimited | Outcome::ServerError | Outcome::Deadline | Outcome::ConnectFailed
    )
}

/// `routing.failover_on_client_error` and `routing.retry_same_on_5xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailoverConfig {
    /// Fail over on a `client_error` (default true) instead of answering
    /// the client at once.
    pub failover_on_client_error: bool,
    /// Retry a `server_error` once on the same upstream (default true).
    pub retry_same_on_5xx: bool,
}

impl Default for FailoverConfig {
    fn default() -> FailoverConfig {
        FailoverConfig {
            failover_on_client_error: true,
            retry_same_on_5xx: true,
        }
    }
}

/// Where the request stands when an attempt ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AttemptState {
    /// 1 for the first attempt of the request, counting retries.
    pub attempt_no: u32,
    /// This upstream was already retried once after a `server_error`.
    pub retried_same: bool,
    /// Planned upstreams not tried yet.
    pub routes_left: usize,
    /// The upstream is a marketplace seller (paid with a bought token).
    pub is_seller: bool,
    /// Credit was already bought for this upstream in this request after a
    /// dry token.
    pub bought_after_dry: bool,
    /// Randomness for the retry backoff (e.g. from the request id), so the
    /// decision stays a pure function.
    pub jitter_seed: u64,
}

/// Backoff before retrying the same upstream after a `server_error`.
pub const RETRY_BACKOFF_MS: (u64, u64) = (100, 300);

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Try the same upstream again after `backoff_ms`; buy credit first when
    /// `buy_credit` (then set [`AttemptState::bought_after_dry`]; otherwise
    /// set [`AttemptState::retried_same`]).
    RetrySame {
        /// Milliseconds to wait (0 after a purchase).
        backoff_ms: u64,
        /// Buy new credit for this seller first.
        buy_credit: bool,
    },
    /// Try the next planned upstream. With `routes_left == 0` the routes
    /// ran out: answer per [`final_response_choice`].
    FailoverNext,
    /// Answer the client with this attempt's response now.
    FailFast,
    /// Stop: the client is gone (no pool failure, nothing to answer).
    Abort,
    /// Answer the client with this attempt's response: a success, or an
    /// empty completion with no route left (the caller flags it).
    Done,
}

/// The failover decision (routing.md's table), a pure function:
///
/// | outcome | action |
/// | --- | --- |
/// | `ok` | `done` |
/// | `cancelled` | `abort` |
/// | `insufficient_funds` | seller, no purchase yet in this request for it: `retry_same` with `buy_credit` (no backoff); after that, or manual: `failover_next` |
/// | `auth_invalid` | `failover_next` (the caller drops a seller's token) |
/// | `rate_limited` | `failover_next` (the caller sets the capacity block) |
/// | `client_error` | `failover_next` when `failover_on_client_error`, else `fail_fast` |
/// | `server_error` | `retry_same` once after a 100–300 ms jittered backoff when `retry_same_on_5xx`, then `failover_next` |
/// | `connect_failed` | `failover_next`: a refused connection is not worth the backoff; the same upstream will refuse again |
/// | `deadline` | `failover_next` |
/// | `purchase_failed` | `failover_next` |
/// | `empty_completion` | `failover_next` when routes are left, else `done` |
///
/// The two one-shot retries are independent (a 402 after a 5xx retry still
/// gets its purchase), so an upstream gets at most three attempts.
pub fn decide(outcome: Outcome, attempt: AttemptState, cfg: FailoverConfig) -> Action {
    match outcome {
        Outcome::Ok => Action::Done,
        Outcome::Cancelled => Action::Abort,
        Outcome::InsufficientFunds if attempt.is_seller && !attempt.bought_after_dry => {
            Action::RetrySame {
                backoff_ms: 0,
                buy_credit: true,
            }
        }
        Outcome::ClientError if !cfg.failover_on_client_error => Action::FailFast,
        Outcome::ServerError if cfg.retry_same_on_5xx && !attempt.retried_same => {
            Action::RetrySame {
                backoff_ms: jittered_backoff_ms(attempt.jitter_seed, attempt.attempt_no),
                buy_credit: false,
            }
        }
        Outcome::EmptyCompletion if attempt.routes_left == 0 => Action::Done,
        Outcome::InsufficientFunds
        | Outcome::AuthInvalid
        | Outcome::RateLimited
        | Outcome::ClientError
        | Outcome::ServerError
        | Outcome::ConnectFailed
        | Outcome::Deadline
        | Outcome::PurchaseFailed
        | Outcome::EmptyCompletion => Action::FailoverNext,
    }
}

/// A backoff in [`RETRY_BACKOFF_MS`] (inclusive), spread by the seed and
/// the attempt number (splitmix64).
pub fn jittered_backoff_ms(seed: u64, attempt_no: u32) -> u64 {
    let mut z = seed
        .wrapping_add(u64::from(attempt_no).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let (lo, hi) = RETRY_BACKOFF_MS;
    lo + z % (hi - lo + 1)
}

/// Which response the client gets when every route failed (proxy.md,
/// "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalChoice {
    /// Pass through the first answer (index into the attempts) whose outcome
    /// was not transient.
    FirstNonTransientAnswer(usize),
    /// Every answer was transient: pass through the last one.
    LastAnswer(usize),
    /// No upstream answered: the daemon's own error.
    NoAnswer {
        /// Every attempt hit a deadline: `504 upstream_timeout`; otherwise
        /// `502 upstream_unreachable`.
        all_deadline: bool,
    },
}

impl FinalChoice {
    /// The daemon's own status for [`FinalChoice::NoAnswer`] (502 or 504);
    /// `None` when an upstream answer is passed through.
    pub fn daemon_status(self) -> Option<u16> {
        match self {
            FinalChoice::NoAnswer { all_deadline: true } => Some(504),
            FinalChoice::NoAnswer {
                all_deadline: false,
            } => Some(502),
            FinalChoice::FirstNonTransientAnswer(_) | FinalChoice::LastAnswer(_) => None,
        }
    }
}

/// proxy.md's rule for the response when the routes ran out. `attempts` are
/// `(outcome, status)` in attempt order, where `status` is `Some` only for
/// an HTTP answer the caller can still pass through (kept buffered: error
/// bodies, and an empty completion's answer).
///
/// The first answer that was not transient wins (a `400` says more than a
/// later `503`); else the last answer; else no upstream answered: 504 when
/// every attempt was a deadline, else 502. An empty completion's `200` is
/// an answer that is not transient.
pub fn final_response_choice(attempts: &[(Outcome, Option<u16>)]) -> FinalChoice {
    let mut last_answer = None;
    for (i, &(outcome, status)) in attempts.iter().enumerate() {
        if status.is_some() {
            if !is_transient(outcome) {
                return FinalChoice::FirstNonTransientAnswer(i);
            }
            last_answer = Some(i);
        }
    }
    match last_answer {
        Some(i) => FinalChoice::LastAnswer(i),
        None => FinalChoice::NoAnswer {
            all_deadline: !attempts.is_empty()
                && attempts.iter().all(|&(o, _)| o == Outcome::Deadline),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Outcome::*;
    use TransportFailure as T;

    const WORDS: BodyHint = BodyHint {
        billing_wording: true,
    };
    const PLAIN: BodyHint = BodyHint {
        billing_wording: false,
    };

    #[test]
    fn classify_table() {
        let cases: &[(Option<u16>, Option<T>, BodyHint, Outcome)] = &[
            // Success.
            (Some(200), None, PLAIN, Ok),
            (Some(201), None, PLAIN, Ok),
            (Some(204), None, PLAIN, Ok),
            (Some(200), None, WORDS, Ok),
            // Insufficient funds: 402 or billing wording on any error.
            (Some(402), None, PLAIN, InsufficientFunds),
            (Some(402), None, WORDS, InsufficientFunds),
            (Some(400), None, WORDS, InsufficientFunds),
            (Some(401), None, WORDS, InsufficientFunds),
            (Some(403), None, WORDS, InsufficientFunds),
            (Some(429), None, WORDS, InsufficientFunds),
            (Some(500), None, WORDS, InsufficientFunds),
            (Some(402), Some(T::Reset), PLAIN, InsufficientFunds),
            // Auth.
            (Some(401), None, PLAIN, AuthInvalid),
            (Some(403), None, PLAIN, AuthInvalid),
            // Rate limit.
            (Some(429), None, PLAIN, RateLimited),
            // Client errors, named and not.
            (Some(400), None, PLAIN, ClientError),
            (Some(404), None, PLAIN, ClientError),
            (Some(413), None, PLAIN, ClientError),
            (Some(422), None, PLAIN, ClientError),
            (Some(405), None, PLAIN, ClientError),
            (Some(410), None, PLAIN, ClientError),
            (Some(415), None, PLAIN, ClientError),
            (Some(451), None, PLAIN, ClientError),
            (Some(499), None, PLAIN, ClientError),
            // Server errors.
            (Some(500), None, PLAIN, ServerError),
            (Some(502), None, PLAIN, ServerError),
            (Some(503), None, PLAIN, ServerError),
            (Some(504), None, PLAIN, ServerError),
            (Some(529), None, PLAIN, ServerError),
            (Some(599), None, PLAIN, ServerError),
            (Some(408), None, PLAIN, ServerError),
            (Some(409), None, PLAIN, ServerError),
            (Some(498), None, PLAIN, ServerError),
            // An error status wins over what the connection did after.
            (Some(503), Some(T::Deadline), PLAIN, ServerError),
            (Some(400), Some(T::Reset), PLAIN, ClientError),
            // Unusable statuses.
            (Some(100), None, PLAIN, ServerError),
            (Some(301), None, PLAIN, ServerError),
            (Some(304), None, PLAIN, ServerError),
            (Some(600), None, PLAIN, ServerError),
            // Transport, before any head.
            (None, Some(T::Connect), PLAIN, ConnectFailed),
            (None, Some(T::Reset), PLAIN, ServerError),
            (None, Some(T::Deadline), PLAIN, Deadline),
            (None, Some(T::Deadline), WORDS, Deadline),
            // Transport after a 2xx head: a body / stream that broke.
            (Some(200), Some(T::Reset), PLAIN, ServerError),
            (Some(200), Some(T::Deadline), PLAIN, Deadline),
            (Some(200), Some(T::Connect), PLAIN, ConnectFailed),
            // Nothing learned.
            (None, None, PLAIN, ServerError),
            (None, None, WORDS, ServerError),
        ];
        for &(status, transport, hint, want) in cases {
            assert_eq!(
                classify(status, transport, hint),
                want,
                "{status:?} {transport:?} {hint:?}"
            );
        }
    }

    #[test]
    fn classify_every_status_is_total_and_consistent() {
        for s in 0..=999u16 {
            let o = classify(Some(s), None, PLAIN);
            assert_ne!(o, Cancelled);
            assert_eq!(o == Ok, (200..300).contains(&s), "{s}");
            if s >= 400 {
                assert_eq!(classify(Some(s), None, WORDS), InsufficientFunds, "{s}");
            }
        }
    }

    fn st(routes_left: usize, retried_same: bool, is_seller: bool, bought: bool) -> AttemptState {
        AttemptState {
            attempt_no: 1,
            retried_same,
            routes_left,
            is_seller,
            bought_after_dry: bought,
            jitter_seed: 42,
        }
    }

    const DEFAULT: FailoverConfig = FailoverConfig {
        failover_on_client_error: true,
        retry_same_on_5xx: true,
    };
    const STRICT: FailoverConfig = FailoverConfig {
        failover_on_client_error: false,
        retry_same_on_5xx: false,
    };

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum A {
        Retry,
        Buy,
        Next,
        Fast,
        Abort,
        Done,
    }

    fn short(a: Action) -> A {
        match a {
            Action::RetrySame {
                buy_credit: true,
                backoff_ms,
            } => {
                assert_eq!(backoff_ms, 0);
                A::Buy
            }
            Action::RetrySame {
                buy_credit: false,
                backoff_ms,
            } => {
                assert!((100..=300).contains(&backoff_ms), "{backoff_ms}");
                A::Retry
            }
            Action::FailoverNext => A::Next,
            Action::FailFast => A::Fast,
            Action::Abort => A::Abort,
            Action::Done => A::Done,
        }
    }

    #[test]
    fn decide_table() {
        // (outcome, routes_left, retried_same, is_seller, bought, cfg, want)
        let cases: &[(Outcome, usize, bool, bool, bool, FailoverConfig, A)] = &[
            (Ok, 2, false, false, false, DEFAULT, A::Done),
            (Ok, 0, true, true, true, STRICT, A::Done),
            (Cancelled, 2, false, false, false, DEFAULT, A::Abort),
            (Cancelled, 0, false, true, false, STRICT, A::Abort),
            // Insufficient funds: seller buys once, then fails over.
            (InsufficientFunds, 2, false, true, false, DEFAULT, A::Buy),
            (InsufficientFunds, 0, false, true, false, DEFAULT, A::Buy),
            (InsufficientFunds, 2, true, true, false, DEFAULT, A::Buy),
            (InsufficientFunds, 2, false, true, true, DEFAULT, A::Next),
            (InsufficientFunds, 0, false, true, true, DEFAULT, A::Next),
            (InsufficientFunds, 2, false, false, false, DEFAULT, A::Next),
            (InsufficientFunds, 2, false, false, false, STRICT, A::Next),
            (AuthInvalid, 2, false, true, false, DEFAULT, A::Next),
            (AuthInvalid, 2, false, false, false, STRICT, A::Next),
            (RateLimited, 2, false, false, false, DEFAULT, A::Next),
            (RateLimited, 0, false, false, false, STRICT, A::Next),
            // Client error.
            (ClientError, 2, false, false, false, DEFAULT, A::Next),
            (ClientError, 0, false, false, false, DEFAULT, A::Next),
            (ClientError, 2, false, false, false, STRICT, A::Fast),
            (ClientError, 2, false, true, false, STRICT, A::Fast),
            // Server error: retry once, then fail over.
            (ServerError, 2, false, false, false, DEFAULT, A::Retry),
            (ServerError, 0, false, true, false, DEFAULT, A::Retry),
            (ServerError, 2, true, false, false, DEFAULT, A::Next),
            (ServerError, 0, true, false, false, DEFAULT, A::Next),
            (ServerError, 2, false, false, false, STRICT, A::Next),
            (ServerError, 2, false, true, true, DEFAULT, A::Retry),
            // Connect failure: never retried on the same upstream.
            (ConnectFailed, 2, false, false, false, DEFAULT, A::Next),
            (ConnectFailed, 0, false, false, false, DEFAULT, A::Next),
            (Deadline, 2, false, false, false, DEFAULT, A::Next),
            (Deadline, 0, false, true, false, STRICT, A::Next),
            (PurchaseFailed, 2, false, true, false, DEFAULT, A::Next),
            (PurchaseFailed, 0, false, true, true, DEFAULT, A::Next),
            // Empty completion: fail over while routes remain.
            (EmptyCompletion, 1, false, false, false, DEFAULT, A::Next),
            (EmptyCompletion, 0, false, false, false, DEFAULT, A::Done),
            (EmptyCompletion, 0, false, true, false, STRICT, A::Done),
        ];
        for &(outcome, left, retried, seller, bought, cfg, want) in cases {
            let got = decide(outcome, st(left, retried, seller, bought), cfg);
            assert_eq!(
                short(got),
                want,
                "{outcome} left={left} retried={retried} seller={seller} bought={bought} {cfg:?}"
            );
        }
        // Every combination is decided (and within the documented actions).
        for outcome in Outcome::ALL {
            for bits in 0..32u8 {
                let s = st(
                    usize::from(bits & 1),
                    bits & 2 != 0,
                    bits & 4 != 0,
                    bits & 8 != 0,
                );
                let cfg = if bits & 16 != 0 { DEFAULT } else { STRICT };
                short(decide(outcome, s, cfg));
            }
        }
    }

    #[test]
    fn backoff_is_jittered_within_range_and_deterministic() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..2_000u64 {
            let b = jittered_backoff_ms(seed, 1);
            assert!((100..=300).contains(&b));
            assert_eq!(b, jittered_backoff_ms(seed, 1));
            seen.insert(b);
        }
        // Spread over the range, both ends reachable.
        assert!(seen.len() > 150, "{}", seen.len());
        assert!(seen.contains(&100) && seen.contains(&300));
        assert_ne!(
            (1..10)
                .map(|n| jittered_backoff_ms(7, n))
                .collect::<Vec<_>>(),
            vec![jittered_backoff_ms(7, 1); 9]
        );
    }

    #[test]
    fn pool_failure_and_transient_tables() {
        // (outcome, counts_as_pool_failure, is_transient)
        let cases = [
            (Ok, false, false),
            (Cancelled, false, false),
            (InsufficientFunds, false, false),
            (AuthInvalid, true, false),
            (RateLimited, false, true),
            (ClientError, false, false),
            (ServerError, true, true),
            (ConnectFailed, true, true),
            (Deadline, true, true),
            (PurchaseFailed, false, false),
            (EmptyCompletion, true, false),
        ];
        assert_eq!(cases.len(), Outcome::ALL.len());
        for (o, pool, transient) in cases {
            assert_eq!(counts_as_pool_failure(o), pool, "{o}");
            assert_eq!(is_transient(o), transient, "{o}");
        }
    }

    #[test]
    fn final_choice_table() {
        use FinalChoice::*;
        type Attempts<'a> = &'a [(Outcome, Option<u16>)];
        let cases: &[(Attempts<'_>, FinalChoice, Option<u16>)] = &[
            // First non-transient answer, even before later transient ones.
            (
                &[
                    (ServerError, Some(503)),
                    (ClientError, Some(400)),
                    (AuthInvalid, Some(401)),
                ],
                FirstNonTransientAnswer(1),
                None,
            ),
            (
                &[(AuthInvalid, Some(401)), (RateLimited, Some(429))],
                FirstNonTransientAnswer(0),
                None,
            ),
            (
                &[
                    (Deadline, None),
                    (InsufficientFunds, Some(402)),
                    (ServerError, Some(500)),
                ],
                FirstNonTransientAnswer(1),
                None,
            ),
            // An empty completion's 200 is an answer, and not transient.
            (
                &[(EmptyCompletion, Some(200)), (ServerError, Some(502))],
                FirstNonTransientAnswer(0),
                None,
            ),
            // Only transient answers: the last answer.
            (
                &[
                    (ServerError, Some(500)),
                    (RateLimited, Some(429)),
                    (ConnectFailed, None),
                ],
                LastAnswer(1),
                None,
            ),
            (&[(RateLimited, Some(429))], LastAnswer(0), None),
            (
                &[(Deadline, None), (ServerError, Some(503)), (Deadline, None)],
                LastAnswer(1),
                None,
            ),
            // No answer at all.
            (
                &[(Deadline, None), (Deadline, None)],
                NoAnswer { all_deadline: true },
                Some(504),
            ),
            (
                &[(Deadline, None), (ConnectFailed, None)],
                NoAnswer {
                    all_deadline: false,
                },
                Some(502),
            ),
            (
                &[(ServerError, None)],
                NoAnswer {
                    all_deadline: false,
                },
                Some(502),
            ),
            (
                &[(PurchaseFailed, None)],
                NoAnswer {
                    all_deadline: false,
                },
                Some(502),
            ),
            (
                &[],
                NoAnswer {
                    all_deadline: false,
                },
                Some(502),
            ),
        ];
        for &(attempts, want, status) in cases {
            let got = final_response_choice(attempts);
            assert_eq!(got, want, "{attempts:?}");
            assert_eq!(got.daemon_status(), status, "{attempts:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for o in Outcome::ALL {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{}\"", o.as_str()));
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o);
        }
        assert_eq!(FailoverConfig::default(), DEFAULT);
    }
}
