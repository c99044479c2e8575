-- Delivery errors used to quote the webhook URL whole, credentials included ("Client error '401' for url
-- 'https://user:password@host/hook?token=...'"); for Slack and Teams the URL itself is the secret. Errors
-- are now written redacted (selfmodel.redact); this reduces every URL already stored to its scheme and host:
-- first a URL written percent-encoded (http%3A%2F%2F...) to its scheme alone, then user info (up to the
-- last "@" of the URL, whatever the password holds) away, then anything after the host to "/…".
update alerts
set last_error = regexp_replace(
        regexp_replace(
            regexp_replace(last_error, '([a-zA-Z][a-zA-Z0-9+.-]*)%3[aA]%2[fF]%2[fF][^\s''"<>]*', '\1://…', 'g'),
            '([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s''"<>]*@', '\1', 'g'),
        '([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s''"<>/?#]*)[/?#][^\s''"<>]*', '\1\2/…', 'g')
where last_error like '%://%' or last_error ilike '%\%3a\%2f\%2f%' escape '\';
