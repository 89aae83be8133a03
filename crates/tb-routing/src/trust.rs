//! Trust from probe results (docs/probe.md): what `tokenbuddyd probe`
//! found about an upstream × model decides whether it may be first choice.
//!
//! Why here: the rule is a pure function of the findings, the policy and
//! "now", and the planner applies it as one more sort key; the probe (I/O)
//! and the ledger only carry the findings to it.
//!
//! - A failed tool-call check pushes the upstream back for requests that
//!   carry tools only (a plain chat works there).
//! - Ignoring `max_tokens`, or reporting more prompt tokens than counted
//!   locally by more than `overcount_threshold_pct`, pushes it back for
//!   every request (a bill that cannot be trusted).
//! - Findings older than `expiry_ms` count for nothing.
//! - "Pushed back" is like benching: reorder, never drop.

use std::fmt;

use serde::Serialize;
use tb_domain::{ProbeCheck, Verdict};

/// What one check found: the verdict the probe gave, and the number it
/// measured (prompt tokens: the signed over-count in percent; max tokens:
/// the completion tokens answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckFinding {
    /// The check.
    pub check: ProbeCheck,
    /// ✓ / ✗ / ?.
    pub verdict: Verdict,
    /// The measured number, when there is one.
    pub measured: Option<i64>,
}

/// The latest probe of one upstream × model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFindings {
    /// When the probe ran, unix ms.
    pub probed_at_ms: i64,
    /// One finding per check run.
    pub checks: Vec<CheckFinding>,
}

impl ProbeFindings {
    fn find(&self, check: ProbeCheck) -> Option<&CheckFinding> {
        self.checks.iter().find(|c| c.check == check)
    }
}

/// `[probe]`: how long findings count, and the over-count tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Findings older than this count for nothing (0: they never count).
    pub expiry_ms: u64,
    /// Prompt tokens reported above the local count by more than this
    /// percentage demote the upstream.
    pub overcount_threshold_pct: u32,
}

/// Why an upstream × model is pushed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Demotion {
    /// The tool-call check failed: not first choice for requests with tools.
    ToolCallFailed,
    /// `max_tokens` was not honoured: pushed back for every request.
    IgnoresMaxTokens {
        /// The completion tokens it answered a `max_tokens` = 16 request with.
        completion_tokens: Option<i64>,
    },
    /// Prompt tokens over-counted beyond the threshold: pushed back for
    /// every request.
    OvercountsPrompt {
        /// How far above the local count, in percent.
        percent: i64,
    },
}

impl Demotion {
    /// Whether it applies to a request that does (or does not) carry tools.
    pub fn applies(self, has_tools: bool) -> bool {
        match self {
            Demotion::ToolCallFailed => has_tools,
            Demotion::IgnoresMaxTokens { .. } | Demotion::OvercountsPrompt { .. } => true,
        }
    }
}

impl fmt::Display for Demotion {
    /// `tool call failed`, `ignores max_tokens (20 completion tokens)`,
    /// `prompt tokens +30 %`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Demotion::ToolCallFailed => f.write_str("tool call failed"),
            Demotion::IgnoresMaxTokens {
                completion_tokens: Some(n),
            } => write!(f, "ignores max_tokens ({n} completion tokens)"),
            Demotion::IgnoresMaxTokens {
                completion_tokens: None,
            } => f.write_str("ignores max_tokens"),
            Demotion::OvercountsPrompt { percent } => write!(f, "prompt tokens {percent:+} %"),
        }
    }
}

/// What routing makes of one upstream × model's findings at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trust {
    /// The findings are older than the policy's expiry (nothing applies).
    pub expired: bool,
    /// Pushed back for requests with tools.
    pub for_tools: Option<Demotion>,
    /// Pushed back for every request (the first reason found).
    pub for_all: Option<Demotion>,
}

impl Trust {
    /// The demotion that applies to a request, if any: a reason for every
    /// request wins over the tools-only one.
    pub fn demotion(&self, has_tools: bool) -> Option<Demotion> {
        if self.expired {
            return None;
        }
        self.for_all
            .or(self.for_tools.filter(|d| d.applies(has_tools)))
    }
}

/// Judges `findings` under `policy` at `now_ms`. No allocation: routing
/// calls it per candidate per request.
///
/// ```
/// use tb_domain::{ProbeCheck, Verdict};
/// use tb_routing::{CheckFinding, Demotion, ProbeFindings, TrustPolicy, assess};
///
/// let findings = ProbeFindings {
///     probed_at_ms: 1_000,
///     checks: vec![CheckFinding { check: ProbeCheck::PromptTokens, verdict: Verdict::Fail, measured: Some(30) }],
/// };
/// let policy = TrustPolicy { expiry_ms: 60_000, overcount_threshold_pct: 25 };
/// let trust = assess(&findings, policy, 2_000);
/// assert_eq!(trust.demotion(false), Some(Demotion::OvercountsPrompt { percent: 30 }));
/// assert_eq!(assess(&findings, policy, 62_000).demotion(false), None); // expired
/// ```
pub fn assess(findings: &ProbeFindings, policy: TrustPolicy, now_ms: i64) -> Trust {
    let age = now_ms.saturating_sub(findings.probed_at_ms);
    let expired = u64::try_from(age).unwrap_or(0) >= policy.expiry_ms;
    let for_tools = findings
        .find(ProbeCheck::ToolCall)
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|_| Demotion::ToolCallFailed);
    let max_tokens = findings
        .find(ProbeCheck::MaxTokens)
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| Demotion::IgnoresMaxTokens {
            completion_tokens: c.measured,
        });
    // The threshold is applied here, to the measured number, so a changed
    // `overcount_threshold` takes effect without probing again.
    let overcount = findings
        .find(ProbeCheck::PromptTokens)
        .and_then(|c| c.measured)
        .filter(|&pct| pct > i64::from(policy.overcount_threshold_pct))
        .map(|percent| Demotion::OvercountsPrompt { percent });
    Trust {
        expired,
        for_tools,
        for_all: max_tokens.or(overcount),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: TrustPolicy = TrustPolicy {
        expiry_ms: 1_000,
        overcount_threshold_pct: 25,
    };

    fn finding(check: ProbeCheck, verdict: Verdict, measured: Option<i64>) -> CheckFinding {
        CheckFinding {
            check,
            verdict,
            measured,
        }
    }

    fn at(probed_at_ms: i64, checks: &[CheckFinding]) -> ProbeFindings {
        ProbeFindings {
            probed_at_ms,
            checks: checks.to_vec(),
        }
    }

    /// (findings, has_tools) → the demotion at t = 500 (fresh).
    fn check(checks: &[CheckFinding], has_tools: bool, want: Option<Demotion>) {
        let got = assess(&at(0, checks), POLICY, 500).demotion(has_tools);
        assert_eq!(got, want, "{checks:?} tools={has_tools}");
    }

    use ProbeCheck::*;
    use Verdict::*;

    #[test]
    fn every_passing_check_trusts() {
        let all: Vec<_> = ProbeCheck::ALL
            .iter()
            .map(|&c| finding(c, Pass, Some(0)))
            .collect();
        check(&all, true, None);
        check(&all, false, None);
        check(&[], true, None);
    }

    #[test]
    fn a_failed_tool_call_demotes_only_requests_with_tools() {
        let f = [finding(ToolCall, Fail, None)];
        check(&f, true, Some(Demotion::ToolCallFailed));
        check(&f, false, None);
        // Unknown is not a failure.
        check(&[finding(ToolCall, Unknown, None)], true, None);
    }

    #[test]
    fn ignoring_max_tokens_demotes_every_request() {
        let f = [finding(MaxTokens, Fail, Some(200))];
        let want = Some(Demotion::IgnoresMaxTokens {
            completion_tokens: Some(200),
        });
        check(&f, true, want);
        check(&f, false, want);
        check(&[finding(MaxTokens, Unknown, None)], false, None);
        check(&[finding(MaxTokens, Pass, Some(16))], false, None);
    }

    #[test]
    fn overcounting_beyond_the_threshold_demotes_every_request() {
        let over = |pct| [finding(PromptTokens, Fail, Some(pct))];
        let want = |percent| Some(Demotion::OvercountsPrompt { percent });
        check(&over(30), false, want(30));
        check(&over(30), true, want(30));
        check(&over(26), false, want(26));
        // At the threshold, under it, or under-counting: trusted.
        check(&over(25), false, None);
        check(&over(5), false, None);
        check(&over(-40), false, None);
        // The threshold is read from the policy, not the stored verdict.
        let lenient = TrustPolicy {
            overcount_threshold_pct: 50,
            ..POLICY
        };
        assert_eq!(assess(&at(0, &over(30)), lenient, 1).demotion(false), None);
        // No number: nothing to judge.
        check(&[finding(PromptTokens, Unknown, None)], false, None);
    }

    #[test]
    fn reasons_for_every_request_win_over_the_tools_one() {
        let f = [
            finding(ToolCall, Fail, None),
            finding(PromptTokens, Fail, Some(30)),
            finding(MaxTokens, Fail, Some(99)),
        ];
        let t = assess(&at(0, &f), POLICY, 1);
        assert_eq!(t.for_tools, Some(Demotion::ToolCallFailed));
        assert_eq!(
            t.demotion(true),
            Some(Demotion::IgnoresMaxTokens {
                completion_tokens: Some(99)
            })
        );
    }

    #[test]
    fn findings_expire() {
        let f = at(1_000, &[finding(ToolCall, Fail, None)]);
        let demoted = |now| assess(&f, POLICY, now).demotion(true);
        assert_eq!(demoted(1_999), Some(Demotion::ToolCallFailed));
        assert_eq!(demoted(2_000), None, "exactly expiry_ms old");
        assert_eq!(demoted(50_000), None);
        // A probe "from the future" (clock skew between machines) counts.
        assert_eq!(demoted(0), Some(Demotion::ToolCallFailed));
        // Expiry 0: nothing ever counts.
        let never = TrustPolicy {
            expiry_ms: 0,
            ..POLICY
        };
        assert_eq!(assess(&f, never, 1_000).demotion(true), None);
        assert!(assess(&f, never, 1_000).expired);
    }

    #[test]
    fn reasons_read_as_text_and_json() {
        let cases = [
            (Demotion::ToolCallFailed, "tool call failed"),
            (
                Demotion::IgnoresMaxTokens {
                    completion_tokens: Some(200),
                },
                "ignores max_tokens (200 completion tokens)",
            ),
            (
                Demotion::IgnoresMaxTokens {
                    completion_tokens: None,
                },
                "ignores max_tokens",
            ),
            (
                Demotion::OvercountsPrompt { percent: 30 },
                "prompt tokens +30 %",
            ),
        ];
        for (d, text) in cases {
            assert_eq!(d.to_string(), text);
        }
        assert_eq!(
            serde_json::to_value(Demotion::OvercountsPrompt { percent: 30 }).unwrap(),
            serde_json::json!({"reason": "overcounts_prompt", "percent": 30})
        );
    }
}
