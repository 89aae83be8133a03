-- Wasted credit (issue 16): what was left on a purchase's token when the
-- daemon lost the use of it — failed over away from it within
-- purchase.fresh_window_ms of buying it (`failover`), let it expire
-- (`expired`), or saw its seller leave the registry (`delisted`).
-- Written by the purchase journal, keyed by the token's fingerprint (the
-- token itself is never in this table); set back to 0 with a NULL reason
-- when the daemon spends the token again (the credit was not lost after
-- all). The credit tracker is rebuilt from these rows at start-up.
ALTER TABLE purchases ADD COLUMN wasted_credit_micros BIGINT;
ALTER TABLE purchases ADD COLUMN waste_reason TEXT;
ALTER TABLE purchases ADD COLUMN wasted_at_ms BIGINT;
CREATE INDEX purchases_fingerprint_idx ON purchases (token_fingerprint);
