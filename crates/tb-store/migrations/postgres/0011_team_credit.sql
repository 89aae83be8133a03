-- Team mode (issue 19): seller credit shared by every daemon of a team on
-- one PostgreSQL ledger. The tables exist on SQLite too (one schema for
-- both engines) but only a PostgreSQL ledger uses them: `[team] enabled`
-- requires one.

-- One row (id = 1): a value encrypted with the team key, so a daemon
-- started with another key is refused instead of overwriting tokens it
-- cannot read, and the team's purchase budget: paid (spent) and held by
-- purchases in flight (reserved), USD micros.
CREATE TABLE team_state (
    id                  BIGINT PRIMARY KEY,
    key_check           BYTEA  NOT NULL,
    key_check_nonce     BYTEA  NOT NULL,
    spent_usd_micros    BIGINT NOT NULL,
    reserved_usd_micros BIGINT NOT NULL
);

-- Seller tokens of the team, encrypted with a key derived from the team
-- key (never the per-machine token key). One per (seller, payment method);
-- the balance is lowered atomically by settlement batches.
CREATE TABLE team_tokens (
    seller_id           TEXT   NOT NULL,
    payment_method      TEXT   NOT NULL,
    token_ciphertext    BYTEA  NOT NULL,
    token_nonce         BYTEA  NOT NULL,
    token_fingerprint   TEXT   NOT NULL,
    credit_micros       BIGINT NOT NULL,
    balance_micros      BIGINT NOT NULL,
    price_usd_micros    BIGINT NOT NULL,
    expires_at_ms       BIGINT NOT NULL,
    purchased_at_ms     BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (seller_id, payment_method)
);

-- Purchase leases: at most one purchase in flight per (seller, payment
-- method) across the team. A lease past expires_at_ms (the database's
-- clock) is taken over; what it had reserved of the budget is then
-- counted as spent (the dead holder may have paid).
CREATE TABLE team_locks (
    lock_key            TEXT   PRIMARY KEY,
    holder              TEXT   NOT NULL,
    expires_at_ms       BIGINT NOT NULL,
    reserved_usd_micros BIGINT NOT NULL
);
