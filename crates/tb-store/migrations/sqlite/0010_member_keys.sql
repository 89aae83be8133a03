-- Member keys (issue 19): one row per key a team member authenticates
-- with. Only the SHA-256 (hex) of the key is stored; the key itself is
-- shown once by `tokenbuddyd keys create`. `models` is the comma-joined
-- allow list, NULL meaning every model; the limits are NULL when unset
-- (budget in USD micros, requests and tokens per minute window). A revoked key keeps its row (with
-- `revoked_at_ms`) so `keys list` still shows who had access.
CREATE TABLE member_keys (
    id TEXT PRIMARY KEY,
    member TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    models TEXT,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    budget_usd_micros BIGINT,
    rpm BIGINT,
    tpm BIGINT
);
CREATE INDEX member_keys_member ON member_keys (member);

-- The member whose key authenticated the call; NULL for the access token.
ALTER TABLE calls ADD COLUMN member TEXT;
CREATE INDEX calls_member_started ON calls (member, started_at_ms);

-- Requests per member per minute window, shared by every daemon on the
-- ledger: one atomic upsert per request of a member with limits.
CREATE TABLE member_windows (
    member TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (member, window_start_ms)
);
