-- Only member calls are indexed by member. A solo daemon's calls (and the
-- access token's calls on a team ledger) have `member` NULL; indexing them
-- cost an index insert per recorded call that no query used: the member
-- filter (`GET /v1/calls?member=NAME`, the dashboard's member view) asks for
-- `member = NAME`, which this partial index still serves. Listing only the
-- access token's calls (`member IS NULL`) scans by time instead.
DROP INDEX calls_member_started;
CREATE INDEX calls_member_started ON calls (member, started_at_ms) WHERE member IS NOT NULL;
