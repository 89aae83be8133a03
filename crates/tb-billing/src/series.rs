//! Time series for the dashboard (`GET /v1/series`): which upstream is
//! slow, which keeps failing over, how spend and savings develop.
//!
//! Why here and pure: the ledger sums what SQL sums well (spend, savings,
//! counts per bucket); percentiles and per-attempt rates need the rows
//! themselves (an upstream that fails is never a call's winner, so its
//! failures live only in the attempt chains). Those rows come in as
//! [`CallSample`] values and leave as [`UpstreamSeries`] — no clock, no
//! I/O — so every rule below is unit tested.
//!
//! Rules:
//! - Buckets are aligned to the Unix epoch in UTC: a bucket starts at
//!   `floor(started_at_ms / width) × width` (a day bucket is a UTC day).
//! - Per upstream and bucket, *attempts* are the attempts made on it;
//!   *ok* those that ended `ok`; *failovers* those after which the call
//!   went on to another upstream (a retry on the same upstream is not a
//!   failover).
//! - Latency, TTFT and tokens per second describe the calls the upstream
//!   *answered* (it was the winner): what the client saw from it.
//!   Percentiles are nearest-rank ([`percentile`]); unknown values are
//!   left out, and a bucket without a known value has `None`.

use std::collections::BTreeMap;

use tb_domain::{Outcome, Protocol};

use crate::record::{Attempt, CallOutcome};

/// Parts per million: rates are integers, like every share on the wire.
pub const PPM: u64 = 1_000_000;

/// The width of one bucket of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// 60 s.
    Minute,
    /// 3,600 s.
    Hour,
    /// One UTC day.
    Day,
}

impl Bucket {
    /// Every bucket width, finest first.
    pub const ALL: [Bucket; 3] = [Bucket::Minute, Bucket::Hour, Bucket::Day];

    /// The width in milliseconds.
    pub fn width_ms(self) -> i64 {
        match self {
            Bucket::Minute => 60_000,
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    /// The query and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// Parses the query value.
    pub fn parse(s: &str) -> Option<Bucket> {
        Bucket::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// The start of the bucket holding `at_ms` (UTC, epoch-aligned; also
    /// right for instants before 1970).
    pub fn start_of(self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.width_ms()) * self.width_ms()
    }

    /// How many buckets `[since_ms, now_ms]` spans (at least 1).
    pub fn count_between(self, since_ms: i64, now_ms: i64) -> i64 {
        let first = self.start_of(since_ms);
        let last = self.start_of(now_ms.max(since_ms));
        (last - first) / self.width_ms() + 1
    }
}

/// Which calls a listing or a series covers. Every field narrows; `None`
/// is "any". Matches the ledger's columns exactly: `model` is the model
/// sent upstream, `upstream` the winner, `protocol` the client's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// The model sent upstream.
    pub model: Option<String>,
    /// The upstream that answered.
    pub upstream: Option<String>,
    /// The protocol the client spoke.
    pub protocol: Option<Protocol>,
    /// How the call ended.
    pub outcome: Option<CallOutcome>,
    /// The member whose key made the call; [`ACCESS_TOKEN_MEMBER`]: the
    /// calls made with the access token.
    pub member: Option<String>,
}

/// The `member` filter value for calls made with the access token (no
/// member), as `usage --by member` shows them.
pub const ACCESS_TOKEN_MEMBER: &str = "-";

impl CallFilter {
    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        *self == CallFilter::default()
    }

    /// Whether `call` passes (the same rule the ledger's SQL applies).
    pub fn matches(
        &self,
        model: &str,
        winner: Option<&str>,
        protocol: Protocol,
        outcome: CallOutcome,
        member: Option<&str>,
    ) -> bool {
        self.model.as_deref().is_none_or(|m| m == model)
            && self.upstream.as_deref().is_none_or(|u| Some(u) == winner)
            && self.protocol.is_none_or(|p| p == protocol)
            && self.outcome.is_none_or(|o| o == outcome)
            && self
                .member
                .as_deref()
                .is_none_or(|m| member.map_or(m == ACCESS_TOKEN_MEMBER, |member| m == member))
    }
}

/// What the series needs of one call record.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSample {
    /// When the call started (Unix milliseconds).
    pub started_at_ms: i64,
    /// The upstream that answered.
    pub winner: Option<String>,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Total time until the last byte went to the client.
    pub latency_ms: u64,
    /// Time to the first content byte (streams).
    pub ttft_ms: Option<u64>,
    /// Output tokens per second (streams).
    pub tokens_per_second: Option<f64>,
}

/// Spend, savings and traffic in one bucket (summed by the ledger in SQL).
/// Unknown tokens and costs are left out of the sums, as in `/v1/usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendPoint {
    /// The bucket's start (Unix milliseconds, UTC-aligned).
    pub bucket_start_ms: i64,
    /// Calls started in the bucket.
    pub calls: u64,
    /// Of them, ended `ok`.
    pub ok_calls: u64,
    /// Of them, tried more than one upstream.
    pub failed_over_calls: u64,
    /// Known input tokens.
    pub input_tokens: u64,
    /// Known output tokens.
    pub output_tokens: u64,
    /// Known spend, USD micros.
    pub cost_usd_micros: i64,
    /// Known savings, USD micros.
    pub saved_usd_micros: i64,
    /// Calls whose cost is unknown (not in the sum).
    pub unpriced_calls: u64,
}

/// One upstream's series, points in time order (buckets without an
/// attempt on it are absent).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSeries {
    /// The upstream id.
    pub upstream: String,
    /// One point per bucket with an attempt.
    pub points: Vec<UpstreamPoint>,
}

/// One upstream in one bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPoint {
    /// The bucket's start (Unix milliseconds, UTC-aligned).
    pub bucket_start_ms: i64,
    /// Attempts made on it.
    pub attempts: u64,
    /// Of them, ended `ok`.
    pub ok_attempts: u64,
    /// Of them, followed by an attempt on another upstream.
    pub failovers: u64,
    /// `ok_attempts / attempts`, ppm.
    pub success_ppm: u64,
    /// `failovers / attempts`, ppm.
    pub failover_ppm: u64,
    /// Calls it answered.
    pub calls_answered: u64,
    /// Latency of the calls it answered, p50 (ms).
    pub latency_p50_ms: Option<u64>,
    /// The same, p95.
    pub latency_p95_ms: Option<u64>,
    /// Time to first token of the calls it answered, p50 (ms).
    pub ttft_p50_ms: Option<u64>,
    /// The same, p95.
    pub ttft_p95_ms: Option<u64>,
    /// Output tokens per second of the calls it answered, median.
    pub tokens_per_second_p50: Option<f64>,
}

/// The nearest-rank percentile `p` (0..=100) of `values` (sorted in
/// place): the smallest value with at least `p` % of the values at or
/// below it. `None` for no values; `p = 0` is the minimum.
pub fn percentile<T: PartialOrd + Copy>(values: &mut [T], p: u32) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = values.len() as u64;
    let rank = (u64::from(p.min(100)) * n).div_ceil(100).max(1);
    values.get(usize::try_from(rank - 1).ok()?).copied()
}

/// `part / whole` in ppm (0 when `whole` is 0).
pub fn ppm(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    let v = u128::from(part) * u128::from(PPM) / u128::from(whole);
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[derive(Default)]
struct Accumulator {
    attempts: u64,
    ok_attempts: u64,
    failovers: u64,
    calls_answered: u64,
    latencies: Vec<u64>,
    ttfts: Vec<u64>,
    speeds: Vec<f64>,
}

impl Accumulator {
    fn point(mut self, bucket_start_ms: i64) -> UpstreamPoint {
        UpstreamPoint {
            bucket_start_ms,
            attempts: self.attempts,
            ok_attempts: self.ok_attempts,
            failovers: self.failovers,
            success_ppm: ppm(self.ok_attempts, self.attempts),
            failover_ppm: ppm(self.failovers, self.attempts),
            calls_answered: self.calls_answered,
            latency_p50_ms: percentile(&mut self.latencies, 50),
            latency_p95_ms: percentile(&mut self.latencies, 95),
            ttft_p50_ms: percentile(&mut self.ttfts, 50),
            ttft_p95_ms: percentile(&mut self.ttfts, 95),
            tokens_per_second_p50: percentile(&mut self.speeds, 50),
        }
    }
}

/// Per-upstream series of `samples`, bucketed by `bucket`; upstreams in
/// id order, points in time order.
pub fn upstream_series(samples: &[CallSample], bucket: Bucket) -> Vec<UpstreamSeries> {
    let mut acc: BTreeMap<(&str, i64), Accumulator> = BTreeMap::new();
    for s in samples {
        let start = bucket.start_of(s.started_at_ms);
        for (i, a) in s.attempts.iter().enumerate() {
            let entry = acc.entry((a.upstream.as_str(), start)).or_default();
            entry.attempts += 1;
            entry.ok_attempts += u64::from(a.outcome == Outcome::Ok);
            let moved_on = s.attempts[i + 1..]
                .first()
                .is_some_and(|next| next.upstream != a.upstream);
            entry.failovers += u64::from(moved_on);
        }
        if let Some(winner) = s.winner.as_deref() {
            let entry = acc.entry((winner, start)).or_default();
            entry.calls_answered += 1;
            entry.latencies.push(s.latency_ms);
            entry.ttfts.extend(s.ttft_ms);
            entry
                .speeds
                .extend(s.tokens_per_second.filter(|v| v.is_finite()));
        }
    }
    let mut out: Vec<UpstreamSeries> = Vec::new();
    for ((upstream, start), a) in acc {
        let point = a.point(start);
        match out.last_mut() {
            Some(last) if last.upstream == upstream => last.points.push(point),
            _ => out.push(UpstreamSeries {
                upstream: upstream.to_string(),
                points: vec![point],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::tests::attempt;

    fn sample(
        at: i64,
        attempts: &[(&str, Outcome)],
        latency: u64,
        ttft: Option<u64>,
    ) -> CallSample {
        let attempts: Vec<Attempt> = attempts.iter().map(|(u, o)| attempt(u, *o)).collect();
        let winner = attempts
            .last()
            .filter(|a| a.outcome == Outcome::Ok)
            .map(|a| a.upstream.clone());
        CallSample {
            started_at_ms: at,
            winner,
            attempts,
            latency_ms: latency,
            ttft_ms: ttft,
            tokens_per_second: Some(latency as f64),
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile::<u64>(&mut [], 50), None);
        assert_eq!(percentile(&mut [7u64], 50), Some(7));
        assert_eq!(percentile(&mut [7u64], 95), Some(7));
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50), Some(50));
        assert_eq!(percentile(&mut v, 95), Some(95));
        assert_eq!(percentile(&mut v, 100), Some(100));
        assert_eq!(percentile(&mut v, 0), Some(1));
        assert_eq!(percentile(&mut [3u64, 1, 2, 4], 50), Some(2));
        assert_eq!(percentile(&mut [10u64, 20, 30, 40, 1000], 95), Some(1000));
        assert_eq!(percentile(&mut [1.5f64, 0.5], 50), Some(0.5));
    }

    #[test]
    fn ppm_is_exact_and_safe() {
        assert_eq!(ppm(1, 3), 333_333);
        assert_eq!(ppm(0, 0), 0);
        assert_eq!(ppm(5, 5), PPM);
        assert_eq!(ppm(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn buckets_are_utc_and_epoch_aligned() {
        // 2024-03-02T13:45:10.5Z.
        let t = 1_709_387_110_500;
        assert_eq!(Bucket::Minute.start_of(t), 1_709_387_100_000);
        assert_eq!(Bucket::Hour.start_of(t), 1_709_384_400_000);
        assert_eq!(Bucket::Day.start_of(t), 1_709_337_600_000);
        assert_eq!(Bucket::Hour.start_of(-1), -3_600_000);
        assert_eq!(Bucket::Hour.count_between(t, t), 1);
        assert_eq!(Bucket::Hour.count_between(t - 3_600_000, t), 2);
        assert_eq!(Bucket::Day.count_between(t - 7 * 86_400_000, t), 8);
        assert_eq!(Bucket::Minute.count_between(t, t - 1), 1);
        for b in Bucket::ALL {
            assert_eq!(Bucket::parse(b.as_str()), Some(b));
        }
        assert_eq!(Bucket::parse("week"), None);
    }

    #[test]
    fn failovers_success_and_answered_calls_per_upstream() {
        let h = 3_600_000;
        let samples = [
            // bad fails, good answers: one failover from bad.
            sample(
                10,
                &[("bad", Outcome::ServerError), ("good", Outcome::Ok)],
                100,
                Some(40),
            ),
            // bad retried on itself, then good: the retry is no failover.
            sample(
                20,
                &[
                    ("bad", Outcome::ServerError),
                    ("bad", Outcome::ServerError),
                    ("good", Outcome::Ok),
                ],
                300,
                None,
            ),
            sample(30, &[("good", Outcome::Ok)], 200, Some(20)),
            // Next hour: bad answers once.
            sample(h + 5, &[("bad", Outcome::Ok)], 50, Some(10)),
            // Nothing answered: counted for the attempt, not as an answer.
            sample(h + 6, &[("good", Outcome::RateLimited)], 9, None),
        ];
        let series = upstream_series(&samples, Bucket::Hour);
        assert_eq!(series.len(), 2);
        let bad = &series[0];
        assert_eq!(bad.upstream, "bad");
        assert_eq!(bad.points.len(), 2);
        let p = &bad.points[0];
        assert_eq!(
            (p.bucket_start_ms, p.attempts, p.ok_attempts, p.failovers),
            (0, 3, 0, 2)
        );
        assert_eq!((p.success_ppm, p.failover_ppm), (0, 666_666));
        assert_eq!(
            (p.calls_answered, p.latency_p50_ms, p.ttft_p50_ms),
            (0, None, None)
        );
        let p = &bad.points[1];
        assert_eq!((p.bucket_start_ms, p.attempts, p.ok_attempts), (h, 1, 1));
        assert_eq!(
            (p.success_ppm, p.failover_ppm, p.calls_answered),
            (PPM, 0, 1)
        );
        assert_eq!((p.latency_p50_ms, p.ttft_p95_ms), (Some(50), Some(10)));
        let good = &series[1];
        assert_eq!(good.upstream, "good");
        let p = &good.points[0];
        assert_eq!(
            (p.attempts, p.ok_attempts, p.failovers, p.calls_answered),
            (3, 3, 0, 3)
        );
        assert_eq!((p.latency_p50_ms, p.latency_p95_ms), (Some(200), Some(300)));
        // Unknown TTFTs are left out, not zero.
        assert_eq!((p.ttft_p50_ms, p.ttft_p95_ms), (Some(20), Some(40)));
        assert_eq!(p.tokens_per_second_p50, Some(200.0));
        let p = &good.points[1];
        assert_eq!(
            (p.attempts, p.ok_attempts, p.success_ppm, p.calls_answered),
            (1, 0, 0, 0)
        );
    }

    #[test]
    fn the_same_samples_bucket_by_day_into_one_point() {
        let samples = [
            sample(0, &[("a", Outcome::Ok)], 10, None),
            sample(86_399_999, &[("a", Outcome::Ok)], 20, None),
            sample(86_400_000, &[("a", Outcome::Ok)], 30, None),
        ];
        let series = upstream_series(&samples, Bucket::Day);
        let starts: Vec<i64> = series[0].points.iter().map(|p| p.bucket_start_ms).collect();
        assert_eq!(starts, vec![0, 86_400_000]);
        assert_eq!(series[0].points[0].attempts, 2);
        assert!(upstream_series(&[], Bucket::Minute).is_empty());
    }

    #[test]
    fn filters_match_like_the_ledger() {
        use CallOutcome::{Failed, Ok};
        use Protocol::{ChatCompletions, Messages, Responses};
        let any = CallFilter::default();
        assert!(any.is_empty());
        assert!(any.matches("m", None, ChatCompletions, Failed, Some("ana")));
        let f = CallFilter {
            model: Some("m".into()),
            upstream: Some("u".into()),
            protocol: Some(Messages),
            outcome: Some(Ok),
            member: Some("ana".into()),
        };
        assert!(!f.is_empty());
        assert!(f.matches("m", Some("u"), Messages, Ok, Some("ana")));
        assert!(!f.matches("m2", Some("u"), Messages, Ok, Some("ana")));
        assert!(!f.matches("m", None, Messages, Ok, Some("ana")));
        assert!(!f.matches("m", Some("u"), Responses, Ok, Some("ana")));
        assert!(!f.matches("m", Some("u"), Messages, Failed, Some("ana")));
        assert!(!f.matches("m", Some("u"), Messages, Ok, Some("bo")));
        assert!(!f.matches("m", Some("u"), Messages, Ok, None));
        let token = CallFilter {
            member: Some(ACCESS_TOKEN_MEMBER.into()),
            ..CallFilter::default()
        };
        assert!(token.matches("m", None, Messages, Ok, None));
        assert!(!token.matches("m", None, Messages, Ok, Some("ana")));
    }
}
