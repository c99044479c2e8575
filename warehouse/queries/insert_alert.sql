-- insert_alert: record one alert (one owner, one channel) before its first delivery attempt.
-- Parameters: one per column of alerts except the delivery outcome, which starts empty.
insert into alerts (alert_id, incident_id, suite, kind, owner, channel, created_at, delivered_at, attempts,
                    last_error, subject, body)
values ($alert_id, $incident_id, $suite, $kind, $owner, $channel, $created_at, null, 0, null, $subject, $body)
