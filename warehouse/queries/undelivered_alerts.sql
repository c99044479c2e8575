-- undelivered_alerts: alerts not delivered yet, oldest first (a failure notice before its recovery).
-- Parameters: $suite (NULL for every suite).
select alert_id, incident_id, suite, kind, owner, channel, created_at, delivered_at, attempts, last_error,
       subject, body
from alerts
where delivered_at is null
  and ($suite is null or suite = $suite)
order by created_at, incident_id, kind = 'recovery', owner, channel
