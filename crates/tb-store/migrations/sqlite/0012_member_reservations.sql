-- Member limits that hold with calls in flight (issue 19): one row per
-- member holds what admission checks in one atomic conditional UPDATE —
-- the recorded spend, what calls in flight have reserved, and the current
-- minute window's requests and tokens (recorded + reserved). The ledger
-- writer moves a call's reservation to its actual cost and tokens in the
-- transaction that inserts its record. `last_admitted` is the reservation
-- id of the last admitted request: admission compares it with its own id
-- to know whether it was admitted.
CREATE TABLE member_usage (
    member TEXT PRIMARY KEY,
    spent_usd_micros BIGINT NOT NULL DEFAULT 0,
    reserved_usd_micros BIGINT NOT NULL DEFAULT 0,
    window_start_ms BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    tokens BIGINT NOT NULL DEFAULT 0,
    last_admitted TEXT
);
INSERT INTO member_usage (member, spent_usd_micros)
    SELECT member, CAST(COALESCE(SUM(cost_usd_micros), 0) AS BIGINT)
    FROM calls WHERE member IS NOT NULL GROUP BY member;

-- One row per admitted call still in flight: its id is the call record's
-- id. Deleted when the record is written (the reservation replaced by the
-- actual cost) or, for a daemon that died mid-call, once `expires_at_ms`
-- has passed (its reservation given back).
CREATE TABLE member_reservations (
    id TEXT PRIMARY KEY,
    member TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    cost_usd_micros BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX member_reservations_expiry ON member_reservations (expires_at_ms);

-- The per-minute request counts now live in member_usage.
DROP TABLE member_windows;

-- The member whose key submitted a video job (NULL: the access token), so
-- the job's record carries it whoever polls the terminal state.
ALTER TABLE video_jobs ADD COLUMN member TEXT;
