-- Tiered prices (issue 16): the 1-hour cache writes of a call and the
-- price tier its estimate was billed at (`standard`, `priority`,
-- `above_200k`, `priority+above_200k+cache_write_1h`, …; NULL when the
-- route's price was not the bundled table's or nothing was priced).
ALTER TABLE calls ADD COLUMN cache_write_1h_tokens BIGINT;
ALTER TABLE calls ADD COLUMN price_tier TEXT;
