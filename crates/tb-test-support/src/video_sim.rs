//! A simulated OpenAI video provider (`/v1/videos`), scriptable for the
//! gateway's video tests: refuse the submit with a status, accept and go
//! `queued` → `in_progress` → `completed` after N polls, report the seconds
//! produced and a bill (`usage.cost`) that may be ×100 off its own price,
//! and serve the content bytes. Set one per mock with
//! [`MockUpstream::simulate_video`](crate::MockUpstream::simulate_video).

use std::collections::HashMap;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::{RecordedRequest, Reply};

/// How the simulated video provider behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSim {
    /// Refuse every submit with this status (an OpenAI error body).
    pub refuse_submit: Option<u16>,
    /// The poll that first sees `completed` (1 = the first poll). Earlier
    /// polls see `queued` (the first) then `in_progress`.
    pub polls_to_complete: u32,
    /// The seconds the finished job reports; `None` reports none.
    pub produced_seconds: Option<u32>,
    /// The provider's own price, USD micros per second; the bill is
    /// `produced × price × bill_multiplier` (no bill when 0).
    pub per_second_usd_micros: u64,
    /// 1 for an honest bill, 100 for the outlier test.
    pub bill_multiplier: u64,
    /// What `GET /v1/videos/{id}/content` serves once completed.
    pub content: Bytes,
    /// The prefix of the job ids it hands out.
    pub id_prefix: &'static str,
}

impl VideoSim {
    /// Accepts, completes on the second poll with the requested seconds
    /// (or 4), bills honestly at $0.10/s.
    pub fn accepting(id_prefix: &'static str) -> VideoSim {
        VideoSim {
            refuse_submit: None,
            polls_to_complete: 2,
            produced_seconds: None,
            per_second_usd_micros: 100_000,
            bill_multiplier: 1,
            content: Bytes::from_static(b"\x00\x00\x00\x18ftypmp42 mock video bytes"),
            id_prefix,
        }
    }
}

/// One job the simulated provider accepted.
#[derive(Debug, Clone, Default)]
pub(crate) struct SimJob {
    model: String,
    requested: Option<u32>,
    polls: u32,
}

/// The jobs of one mock.
#[derive(Debug, Default)]
pub(crate) struct SimJobs {
    jobs: HashMap<String, SimJob>,
}

impl VideoSim {
    /// The answer to a request on `/v1/videos…`, or `None` for other paths.
    pub(crate) fn answer(&self, req: &RecordedRequest, jobs: &mut SimJobs) -> Option<Reply> {
        let path = req.path();
        let rest = path.strip_prefix("/v1/videos")?;
        Some(match (&req.method, rest.trim_start_matches('/')) {
            (&Method::POST, "") => self.submit(req, jobs),
            (&Method::GET, tail) if !tail.is_empty() => match tail.split_once('/') {
                None => self.poll(tail, jobs),
                Some((id, "content")) => self.content(id, jobs),
                Some(_) => not_found(path),
            },
            _ => not_found(path),
        })
    }

    fn submit(&self, req: &RecordedRequest, jobs: &mut SimJobs) -> Reply {
        if let Some(status) = self.refuse_submit {
            return Reply::openai_error(status, "server_error", "refused", "mock video: refused");
        }
        let multipart = req
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("multipart/form-data"));
        // A multipart submit (`input_reference` file + fields) read as the
        // JSON one would be.
        let form = multipart.then(|| {
            let field = |name: &str| crate::form_text(&req.body, name).map(Value::String);
            let fields = ["model", "prompt", "seconds"]
                .into_iter()
                .filter_map(|n| Some((n.to_string(), field(n)?)));
            Value::Object(fields.collect())
        });
        let Some(body) = form.or_else(|| serde_json::from_slice::<Value>(&req.body).ok()) else {
            return Reply::openai_error(400, "invalid_request_error", "bad_json", "not JSON");
        };
        let (Some(model), Some(_)) = (
            body.get("model").and_then(Value::as_str),
            body.get("prompt").and_then(Value::as_str),
        ) else {
            return Reply::openai_error(400, "invalid_request_error", "missing", "model, prompt");
        };
        let requested = match body.get("seconds") {
            Some(Value::String(s)) => s.parse().ok(),
            Some(v) => v.as_u64().and_then(|s| u32::try_from(s).ok()),
            None => None,
        };
        let id = format!("{}{}", self.id_prefix, jobs.jobs.len() + 1);
        let job = SimJob {
            model: model.to_owned(),
            requested,
            polls: 0,
        };
        let reply = self.job_json(&id, &job, "queued");
        jobs.jobs.insert(id, job);
        reply
    }

    fn poll(&self, id: &str, jobs: &mut SimJobs) -> Reply {
        let Some(job) = jobs.jobs.get_mut(id) else {
            return not_found(id);
        };
        job.polls += 1;
        let status = match job.polls {
            n if n >= self.polls_to_complete => "completed",
            1 => "queued",
            _ => "in_progress",
        };
        self.job_json(id, job, status)
    }

    fn content(&self, id: &str, jobs: &SimJobs) -> Reply {
        match jobs.jobs.get(id) {
            Some(job) if job.polls >= self.polls_to_complete => {
                Reply::bytes(200, self.content.clone()).with_header("content-type", "video/mp4")
            }
            Some(_) => Reply::openai_error(
                409,
                "invalid_request_error",
                "video_not_ready",
                "mock video: not completed yet",
            ),
            None => not_found(id),
        }
    }

    fn job_json(&self, id: &str, job: &SimJob, status: &str) -> Reply {
        let mut v = json!({
            "id": id,
            "object": "video",
            "model": job.model,
            "status": status,
            "progress": if status == "completed" { 100 } else { 0 },
            "created_at": 1_700_000_000,
            "size": "720x1280",
        });
        let seconds = if status == "completed" {
            self.produced_seconds.or(job.requested)
        } else {
            job.requested
        };
        if let Some(s) = seconds {
            v["seconds"] = json!(s.to_string());
        }
        if status == "completed" && self.bill_multiplier > 0 {
            let billed =
                u64::from(seconds.unwrap_or(0)) * self.per_second_usd_micros * self.bill_multiplier;
            // USD with six decimals, as a JSON number.
            let usd: Value =
                serde_json::from_str(&format!("{}.{:06}", billed / 1_000_000, billed % 1_000_000))
                    .unwrap_or(Value::Null);
            v["usage"] = json!({ "cost": usd });
        }
        Reply::json(200, v.to_string())
    }
}

fn not_found(what: &str) -> Reply {
    Reply::openai_error(
        404,
        "invalid_request_error",
        "not_found",
        &format!("mock video: no video {what}"),
    )
}
