-- Translated routes (issue 15): the protocol the winning upstream was
-- spoken to in, when it differs from the client's.
ALTER TABLE calls ADD COLUMN upstream_protocol TEXT;
