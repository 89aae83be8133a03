-- The ledger schema, PostgreSQL dialect. Keep in step with
-- ../sqlite/0001_ledger.sql: same tables, same columns, same meaning.
-- Money is BIGINT micros (NULL = unknown, never zero); times are unix
-- milliseconds UTC. Text that is sorted on uses COLLATE "C" so the order is
-- bytewise, as in SQLite, whatever the database's locale.

-- One row per call record (tb_billing::record::CallRecord), one column per
-- field. `seq` is the write order; `calls --tail` follows it, because
-- records arrive out of `started_at_ms` order.
CREATE TABLE calls (
    seq                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                       TEXT COLLATE "C" NOT NULL UNIQUE,
    request_id               TEXT    NOT NULL,
    started_at_ms            BIGINT  NOT NULL,
    endpoint                 TEXT    NOT NULL,
    protocol                 TEXT    NOT NULL,
    requested_model          TEXT COLLATE "C" NOT NULL,
    model                    TEXT COLLATE "C" NOT NULL,
    stream                   BOOLEAN NOT NULL,
    ok                       BOOLEAN NOT NULL,
    outcome                  TEXT    NOT NULL,
    winner                   TEXT COLLATE "C",
    failed_over              BOOLEAN NOT NULL,
    attempts                 TEXT    NOT NULL,
    latency_ms               BIGINT  NOT NULL,
    ttft_ms                  BIGINT,
    input_tokens             BIGINT,
    cached_input_tokens      BIGINT,
    cache_write_tokens       BIGINT,
    output_tokens            BIGINT,
    reasoning_tokens         BIGINT,
    tokens_per_second        DOUBLE PRECISION,
    cost_usd_micros          BIGINT,
    est_cost_usd_micros      BIGINT,
    baseline_usd_micros      BIGINT,
    baseline_kind            TEXT,
    saved_usd_micros         BIGINT,
    cached_saving_usd_micros BIGINT,
    settled_credit_micros    BIGINT,
    balance_source           TEXT    NOT NULL,
    remaining_credit_micros  BIGINT,
    billing_unit             TEXT    NOT NULL,
    image_count              BIGINT,
    image_size               TEXT,
    image_quality            TEXT,
    image_format             TEXT,
    usage_missing            BOOLEAN NOT NULL,
    empty_completion         BOOLEAN NOT NULL,
    unpriced                 BOOLEAN NOT NULL,
    price_drift_ppm          BIGINT,
    prompt_hash              TEXT
);

-- Recent-first paging (`ORDER BY started_at_ms DESC, id DESC` with a
-- `(started_at_ms, id) <` cursor), since-time scans and per-day buckets.
CREATE INDEX calls_started_idx ON calls (started_at_ms, id);
-- Per-model and per-upstream aggregation over a window.
CREATE INDEX calls_model_started_idx ON calls (model, started_at_ms);
CREATE INDEX calls_winner_started_idx ON calls (winner, started_at_ms);

-- Seller tokens (marketplace.md, "Tokens and credit"): one per (seller,
-- payment method). The token is stored only encrypted (ciphertext + nonce,
-- key in <data_dir>/token-key) next to a SHA-256 fingerprint for logs.
CREATE TABLE tokens (
    seller_id           TEXT   NOT NULL,
    payment_method      TEXT   NOT NULL,
    token_ciphertext    BYTEA  NOT NULL,
    token_nonce         BYTEA  NOT NULL,
    token_fingerprint   TEXT   NOT NULL,
    credit_micros       BIGINT,
    balance_micros      BIGINT,
    price_usd_micros    BIGINT,
    expires_at_ms       BIGINT,
    purchased_at_ms     BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (seller_id, payment_method)
);

-- Every purchase attempt (quote → complete), for the session budget and the
-- credit tracker.
CREATE TABLE purchases (
    id                  TEXT   NOT NULL PRIMARY KEY,
    seller_id           TEXT   NOT NULL,
    model               TEXT,
    payment_method      TEXT   NOT NULL,
    status              TEXT   NOT NULL,
    quote_id            TEXT,
    credit_micros       BIGINT,
    price_usd_micros    BIGINT,
    payment_reference   TEXT,
    token_fingerprint   TEXT,
    error               TEXT,
    created_at_ms       BIGINT NOT NULL,
    completed_at_ms     BIGINT
);

CREATE INDEX purchases_created_idx ON purchases (created_at_ms);
CREATE INDEX purchases_seller_created_idx ON purchases (seller_id, created_at_ms);

-- Small named values: registry snapshot, provider-mode config, observations.
CREATE TABLE config_kv (
    key           TEXT   NOT NULL PRIMARY KEY,
    value         TEXT   NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
