-- Image billing completed (issue 16): what one image cost (the call's cost
-- divided by its image count, rounded up), the image output tokens and
-- what they cost. NULL = unknown.
ALTER TABLE calls ADD COLUMN image_cost_per_image_usd_micros BIGINT;
ALTER TABLE calls ADD COLUMN image_output_tokens BIGINT;
ALTER TABLE calls ADD COLUMN image_output_cost_usd_micros BIGINT;
