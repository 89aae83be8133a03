-- Video jobs (issue 18, part 3): which upstream accepted each job, so
-- polls and downloads reach it across daemon restarts. `job_id` is the
-- upstream's job id, which is also the id the client sees.
-- `recorded_at_ms` is set exactly once, when a poll first observes the
-- terminal state and the call record is written: a second poll of a
-- terminal job finds it set and records nothing.
CREATE TABLE video_jobs (
    job_id TEXT PRIMARY KEY,
    upstream_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    model TEXT NOT NULL,
    requested_seconds BIGINT,
    submitted_at_ms BIGINT NOT NULL,
    recorded_at_ms BIGINT
);
