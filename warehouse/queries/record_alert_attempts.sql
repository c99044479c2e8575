-- record_alert_attempts: add delivery attempts to an alert, with their outcome.
-- Parameters: $alert_id, $attempts (made now), $last_error (NULL when the last one succeeded: the
-- previous error is kept, so a delivered alert still shows it needed retries), $delivered_at (NULL while
-- undelivered).
update alerts
set attempts     = attempts + $attempts,
    last_error   = coalesce($last_error, last_error),
    delivered_at = $delivered_at
where alert_id = $alert_id
