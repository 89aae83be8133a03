-- Wallet purchases (clawtip, issue 16): when a purchase's quote lapses.
-- A purchase left `pending` (the user has not paid yet) is polled again
-- after a restart until this time; NULL for purchases written before, and
-- for quotes that were never kept pending.
ALTER TABLE purchases ADD COLUMN expires_at_ms BIGINT;
