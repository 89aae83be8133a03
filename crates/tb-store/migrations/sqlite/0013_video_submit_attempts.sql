-- The submit attempts a video job's accepting upstream was preceded by
-- (issue 18): routes that refused the submit (5xx, 429, connect errors,
-- their own 401/403/404), as the JSON array of the call record's
-- `attempts`. The record is written at the terminal poll, possibly by
-- another daemon run, so the chain is kept with the job. NULL for jobs
-- stored before this column: no earlier attempts known.
ALTER TABLE video_jobs ADD COLUMN submit_attempts TEXT;
