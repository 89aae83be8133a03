//! Video generation billing (issue 18, part 3): pure arithmetic over
//! per-second prices, no clock and no I/O.
//!
//! A video job is priced per second of video produced, so routes cannot be
//! compared by a per-token price: they are ordered by the cost of a
//! reference clip ([`REFERENCE_CLIP_SECONDS`]) instead. A finished job is
//! billed on the seconds the upstream says it produced, else the seconds
//! the client asked for, else the reference length — in that order
//! ([`billed_seconds`]) — and compared with the upstream's own bill with the
//! same 25× outlier guard as every other call (`billing.cost_outlier`).

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::cost::Costing;
use crate::record::BaselineKind;
use crate::usage::wire::usd_text_to_micros;

/// The clip length routes are compared by, and the length billed when
/// neither the upstream nor the client says how long the video is
/// (OpenAI's Sora default clip is 4 s; 8 s is the common paid length).
pub const REFERENCE_CLIP_SECONDS: u32 = 8;

/// A route's price for video: USD micros per second of video produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerSecond(pub u64);

impl PerSecond {
    /// What `seconds` of video cost at this price (saturating).
    #[must_use]
    pub fn cost(self, seconds: u32) -> u64 {
        self.0.saturating_mul(u64::from(seconds))
    }

    /// What the reference clip costs at this price: the number routes are
    /// ordered by.
    #[must_use]
    pub fn reference_clip(self) -> u64 {
        self.cost(REFERENCE_CLIP_SECONDS)
    }
}

/// Orders `routes` cheapest reference clip first; routes without a
/// per-second price go last. Stable: equal prices keep the configured
/// order, so ties still fail over in the order the user wrote.
pub fn order_by_clip_cost<T>(routes: &mut [T], price: impl Fn(&T) -> Option<PerSecond>) {
    routes.sort_by_key(|r| match price(r) {
        Some(p) => (false, p.reference_clip()),
        None => (true, 0),
    });
}

/// The price table's per-second price for `model` (the `official`
/// baseline): LiteLLM's `video_generation` row, when it has one.
#[must_use]
pub fn official_per_second(model: &str) -> Option<PerSecond> {
    tb_prices::video_price(model).map(|p| PerSecond(p.per_second))
}

/// Which length a video job was billed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondsBasis {
    /// The seconds the upstream reported in the terminal job object.
    Produced,
    /// The seconds the client asked for (`seconds` of the submit body).
    Requested,
    /// Neither was known: [`REFERENCE_CLIP_SECONDS`].
    Reference,
}

impl SecondsBasis {
    /// The name used in logs and docs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SecondsBasis::Produced => "produced",
            SecondsBasis::Requested => "requested",
            SecondsBasis::Reference => "reference",
        }
    }
}

/// The billed length of a job: produced, else requested, else the
/// reference clip. A reported 0 is not a length (a failed job that made
/// nothing is billed on what was asked, which the upstream may still
/// charge for; its own bill, when it sends one, wins anyway).
#[must_use]
pub fn billed_seconds(produced: Option<u32>, requested: Option<u32>) -> (u32, SecondsBasis) {
    match (produced.filter(|s| *s > 0), requested.filter(|s| *s > 0)) {
        (Some(s), _) => (s, SecondsBasis::Produced),
        (None, Some(s)) => (s, SecondsBasis::Requested),
        (None, None) => (REFERENCE_CLIP_SECONDS, SecondsBasis::Reference),
    }
}

/// What is known about a finished video job when it is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoBill<'a> {
    /// The billed length ([`billed_seconds`]).
    pub seconds: u32,
    /// The accepting route's price, when it has one.
    pub winner: Option<PerSecond>,
    /// The price table's price for the model (the `official` baseline).
    pub official: Option<PerSecond>,
    /// The prices of every planned route that has one (for the
    /// `priciest-route` baseline when there is no official price).
    pub plan: &'a [PerSecond],
    /// What the upstream said the job cost, when it said.
    pub reported_usd_micros: Option<u64>,
}

/// Prices a finished video job: the estimate from the winner's
/// per-second price, the upstream's own bill when it sent one (flagged as
/// an outlier when 25× off the estimate), and the savings against the
/// official price, else the priciest planned route.
#[must_use]
pub fn cost_video(bill: &VideoBill<'_>) -> Costing {
    let mut c = Costing {
        unpriced: bill.winner.is_none() && bill.reported_usd_micros.is_none(),
        est_cost_usd_micros: bill.winner.map(|p| p.cost(bill.seconds)),
        ..Costing::default()
    };
    c.cost_usd_micros = bill.reported_usd_micros.or(c.est_cost_usd_micros);
    c.compare_to_estimate(bill.reported_usd_micros);
    let baseline = match bill.official {
        Some(p) => Some((p.cost(bill.seconds), BaselineKind::Official)),
        None => bill
            .plan
            .iter()
            .map(|p| p.cost(bill.seconds))
            .max()
            .map(|b| (b, BaselineKind::PriciestRoute)),
    };
    c.set_baseline(baseline);
    c
}

/// Where an OpenAI video job is (`status` of the job object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// `queued`.
    Queued,
    /// `in_progress`.
    InProgress,
    /// `completed`: terminal, the content can be downloaded.
    Completed,
    /// `failed`: terminal.
    Failed,
    /// A status this version does not know (not terminal: polls go on).
    Other,
}

impl JobStatus {
    fn parse(s: &str) -> JobStatus {
        match s {
            "queued" => JobStatus::Queued,
            "in_progress" => JobStatus::InProgress,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            _ => JobStatus::Other,
        }
    }

    /// Whether the job is finished (the one moment it is recorded).
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed)
    }
}

/// What billing reads from an upstream's video job object (`POST
/// /v1/videos` and `GET /v1/videos/{id}` answer one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    /// The job id.
    pub id: String,
    /// Where the job is.
    pub status: JobStatus,
    /// The clip length the job says it has (OpenAI sends `"8"`, others a
    /// number); `None` when absent or not a whole number of seconds.
    pub seconds: Option<u32>,
    /// What the upstream billed, when it says (`usage.cost` in USD, as
    /// OpenRouter-style upstreams report it), in micros.
    pub reported_cost_usd_micros: Option<u64>,
}

/// Why a job object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JobViewError {
    /// Not JSON, or not an object with a string `id` and `status`.
    #[error("the video job object is not JSON with a string `id` and `status`: {0}")]
    Shape(#[from] serde_json::Error),
}

#[derive(Deserialize)]
struct WireJob<'a> {
    id: String,
    status: String,
    #[serde(default, borrow)]
    seconds: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage: Option<WireUsage<'a>>,
}

#[derive(Deserialize)]
struct WireUsage<'a> {
    #[serde(default, borrow)]
    cost: Option<&'a RawValue>,
}

/// A whole number of seconds from `"8"` or `8` (what the API accepts in
/// `seconds`, also in the submit body).
#[must_use]
pub fn seconds_of(raw: &RawValue) -> Option<u32> {
    let text = raw.get().trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse::<u32>().ok()
}

impl JobView {
    /// Reads a job object.
    ///
    /// # Errors
    ///
    /// When it is not JSON with a string `id` and `status`.
    pub fn parse(body: &[u8]) -> Result<JobView, JobViewError> {
        let wire: WireJob<'_> = serde_json::from_slice(body)?;
        Ok(JobView {
            status: JobStatus::parse(&wire.status),
            seconds: wire.seconds.and_then(seconds_of),
            reported_cost_usd_micros: wire
                .usage
                .and_then(|u| u.cost)
                .and_then(|c| usd_text_to_micros(c.get())),
            id: wire.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_objects_are_read_with_string_or_number_seconds() {
        let queued = JobView::parse(
            br#"{"id":"video_1","object":"video","status":"queued","seconds":"8","size":"720x1280"}"#,
        )
        .unwrap();
        assert_eq!(queued.id, "video_1");
        assert_eq!(queued.status, JobStatus::Queued);
        assert!(!queued.status.is_terminal());
        assert_eq!(queued.seconds, Some(8));
        let done =
            JobView::parse(br#"{"id":"v","status":"completed","seconds":4,"usage":{"cost":0.4}}"#)
                .unwrap();
        assert!(done.status.is_terminal());
        assert_eq!(done.seconds, Some(4));
        assert_eq!(done.reported_cost_usd_micros, Some(400_000));
        let odd = JobView::parse(br#"{"id":"v","status":"exploded","seconds":"4.5"}"#).unwrap();
        assert_eq!(odd.status, JobStatus::Other);
        assert_eq!(odd.seconds, None);
        assert!(JobView::parse(br#"{"status":"completed"}"#).is_err());
        assert!(JobView::parse(b"not json").is_err());
        assert!(JobStatus::parse("failed").is_terminal());
        assert_eq!(JobStatus::parse("in_progress"), JobStatus::InProgress);
    }

    #[test]
    fn routes_are_ordered_by_the_reference_clip_unpriced_last_ties_stable() {
        let mut routes = vec![
            ("unpriced", None),
            ("dear", Some(PerSecond(500_000))),
            ("cheap-a", Some(PerSecond(100_000))),
            ("cheap-b", Some(PerSecond(100_000))),
        ];
        order_by_clip_cost(&mut routes, |r| r.1);
        let ids: Vec<&str> = routes.iter().map(|r| r.0).collect();
        assert_eq!(ids, ["cheap-a", "cheap-b", "dear", "unpriced"]);
        assert_eq!(PerSecond(100_000).reference_clip(), 800_000);
    }

    #[test]
    fn cost_saturates_instead_of_overflowing() {
        assert_eq!(PerSecond(u64::MAX).cost(8), u64::MAX);
    }

    #[test]
    fn billed_on_produced_then_requested_then_reference() {
        assert_eq!(
            billed_seconds(Some(6), Some(12)),
            (6, SecondsBasis::Produced)
        );
        assert_eq!(
            billed_seconds(None, Some(12)),
            (12, SecondsBasis::Requested)
        );
        assert_eq!(
            billed_seconds(Some(0), Some(4)),
            (4, SecondsBasis::Requested)
        );
        assert_eq!(billed_seconds(None, None), (8, SecondsBasis::Reference));
        assert_eq!(
            billed_seconds(Some(0), Some(0)),
            (8, SecondsBasis::Reference)
        );
    }

    #[test]
    fn the_estimate_is_the_cost_when_the_upstream_sends_no_bill() {
        let plan = [PerSecond(100_000), PerSecond(300_000)];
        let c = cost_video(&VideoBill {
            seconds: 4,
            winner: Some(PerSecond(100_000)),
            official: Some(PerSecond(250_000)),
            plan: &plan,
            reported_usd_micros: None,
        });
        assert_eq!(c.est_cost_usd_micros, Some(400_000));
        assert_eq!(c.cost_usd_micros, Some(400_000));
        assert_eq!(c.baseline_kind, Some(BaselineKind::Official));
        assert_eq!(c.baseline_usd_micros, Some(1_000_000));
        assert_eq!(c.saved_usd_micros, Some(600_000));
        assert!(!c.outlier && !c.unpriced);
    }

    #[test]
    fn without_an_official_price_the_priciest_route_is_the_baseline() {
        let plan = [PerSecond(100_000), PerSecond(300_000)];
        let c = cost_video(&VideoBill {
            seconds: 2,
            winner: Some(PerSecond(100_000)),
            official: None,
            plan: &plan,
            reported_usd_micros: None,
        });
        assert_eq!(c.baseline_kind, Some(BaselineKind::PriciestRoute));
        assert_eq!(c.baseline_usd_micros, Some(600_000));
        assert_eq!(c.saved_usd_micros, Some(400_000));
    }

    #[test]
    fn a_bill_a_hundred_times_the_estimate_is_an_outlier() {
        let bill = |reported| VideoBill {
            seconds: 8,
            winner: Some(PerSecond(100_000)),
            official: None,
            plan: &[],
            reported_usd_micros: Some(reported),
        };
        let c = cost_video(&bill(80_000_000));
        assert!(c.outlier);
        assert_eq!(c.cost_usd_micros, Some(80_000_000));
        assert_eq!(c.price_drift_ppm, Some(99_000_000));
        let fair = cost_video(&bill(1_000_000));
        assert!(!fair.outlier);
        // 24× is still within the guard.
        assert!(!cost_video(&bill(19_200_000)).outlier);
        assert!(cost_video(&bill(20_000_000)).outlier);
    }

    #[test]
    fn an_unpriced_route_without_a_bill_is_unpriced() {
        let c = cost_video(&VideoBill {
            seconds: 8,
            winner: None,
            official: None,
            plan: &[],
            reported_usd_micros: None,
        });
        assert!(c.unpriced);
        assert_eq!(c.cost_usd_micros, None);
        assert_eq!(c.baseline_kind, None);
        let billed = cost_video(&VideoBill {
            reported_usd_micros: Some(5),
            ..VideoBill {
                seconds: 8,
                winner: None,
                official: None,
                plan: &[],
                reported_usd_micros: None,
            }
        });
        assert!(!billed.unpriced);
        assert_eq!(billed.cost_usd_micros, Some(5));
    }
}
