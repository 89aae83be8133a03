-- The id of a video job's call record, chosen at submit (issue 19): a
-- member's submit reserves the job's worst cost under this id, and the
-- record written at the terminal poll (by any daemon, after a restart too)
-- carries it, so the ledger writer swaps the reservation for the real cost
-- in the record's transaction. NULL for jobs stored before this column:
-- their record gets a fresh id (they reserved nothing).
ALTER TABLE video_jobs ADD COLUMN record_id TEXT;
