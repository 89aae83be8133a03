//! `GET /v1/doctor`: checks with a verdict and a fix hint each.

use serde::{Deserialize, Serialize};

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Fine.
    Pass,
    /// Works, but worth a look (does not fail the report).
    Warn,
    /// Broken.
    Fail,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// What was checked (`config`, `ledger`, `provider openai`, …).
    pub name: String,
    /// The outcome.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about it (empty when it passed).
    pub hint: String,
}

impl Check {
    /// A passing check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Verdict::Pass, detail, String::new())
    }

    /// A warning with a hint.
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check::new(name, Verdict::Warn, detail, hint)
    }

    /// A failure with a hint.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check::new(name, Verdict::Fail, detail, hint)
    }

    fn new(
        name: impl Into<String>,
        verdict: Verdict,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            verdict,
            detail: detail.into(),
            hint: hint.into(),
        }
    }
}

/// `GET /v1/doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorReport {
    /// `false` when a check failed (warnings do not fail it).
    pub ok: bool,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// The report of `checks`: `ok` unless one failed.
    pub fn new(checks: Vec<Check>) -> DoctorReport {
        DoctorReport {
            ok: checks.iter().all(|c| c.verdict != Verdict::Fail),
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_keeps_the_report_ok_a_failure_does_not() {
        let warn = DoctorReport::new(vec![Check::pass("a", "x"), Check::warn("b", "y", "z")]);
        assert!(warn.ok);
        let fail = DoctorReport::new(vec![Check::pass("a", "x"), Check::fail("c", "y", "z")]);
        assert!(!fail.ok);
        assert!(DoctorReport::new(Vec::new()).ok);
    }

    #[test]
    fn wire_names() {
        let v = serde_json::to_value(Check::fail("ledger", "down", "fix it")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "ledger", "verdict": "fail", "detail": "down", "hint": "fix it"})
        );
    }
}
