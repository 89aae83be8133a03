-- Provider probes (`tokenbuddyd probe`, issue 18): one row per check of
-- one probe run of one upstream × model. Routing reads the latest run per
-- upstream × model; older runs stay as history. `measured` is the check's
-- number (prompt tokens: the over-count in percent; max tokens: the
-- completion tokens answered; else the latency in ms), NULL when none.
CREATE TABLE probe_results (
    upstream_id TEXT NOT NULL,
    model TEXT NOT NULL,
    probed_at_ms BIGINT NOT NULL,
    check_name TEXT NOT NULL,
    verdict TEXT NOT NULL,
    measured BIGINT,
    detail TEXT NOT NULL,
    PRIMARY KEY (upstream_id, model, probed_at_ms, check_name)
);
