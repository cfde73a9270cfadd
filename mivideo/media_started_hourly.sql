-- Kaltura KAF "MediaEvent/Started" Caliper events per UTC hour and Canvas course.
--
-- Parameters (named, bound by the BigQuery client; never formatted into the text):
--   @after_time  TIMESTAMP  the floor (default_last_timestamp): later events only
--   @hour_from   TIMESTAMP  the start of the newest stored hour: it and every later
--                           (complete) hour are counted whole, so storing the result
--                           replaces counts and never adds to them: a re-run, a late
--                           event, or two runs at once cannot count an event twice
-- A table name cannot be a parameter in BigQuery: the placeholder after FROM is replaced
-- by the configured MIVIDEO.udp_events_table, validated and backtick-quoted (events.py).
--
-- Only whole UTC days are counted (event_time before the start of today, UTC), so every
-- hour bucket is complete when it is stored; the next run recounts from the newest one. kaf:course_id is a string of digits; anything else (missing,
-- JSON null, "abc", "12abc") casts to NULL and is dropped.
SELECT
  event_hour_utc,
  course_id,
  MAX(event_time) AS event_time_utc_latest,
  COUNT(*) AS event_count
FROM (
  SELECT
    TIMESTAMP_TRUNC(event_time, HOUR, 'UTC') AS event_hour_utc,
    SAFE_CAST(
      JSON_EXTRACT_SCALAR(event, "$.object.extensions['kaf:course_id']") AS INT64
    ) AS course_id,
    event_time
  FROM {events_table}
  WHERE type = 'MediaEvent'
    AND action = 'Started'
    AND ENDS_WITH(ed_app, '/caliper/info/app/KafEdApp')
    AND event_time > @after_time
    AND event_time >= @hour_from
    AND event_time < TIMESTAMP(CURRENT_DATE('UTC'))
)
WHERE course_id IS NOT NULL
GROUP BY event_hour_utc, course_id
ORDER BY event_hour_utc, course_id
