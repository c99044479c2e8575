-- Delivery errors used to quote the webhook URL whole, credentials included ("Client error '401' for url
-- 'https://user:password@host/hook?token=...'"); for Slack and Teams the URL itself is the secret. Errors
-- are now written redacted (selfmodel.redact); this reduces every URL already stored to its scheme and host.
update alerts
set last_error = regexp_replace(
        regexp_replace(last_error,
                       '([a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^\s''"<>?#]*@)?([^\s''"<>/?#@]*)[/?#][^\s''"<>]*',
                       '\1\2/…', 'g'),
        '([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s''"<>/?#]*@([^\s''"<>/?#@]*)',
        '\1\2', 'g')
where last_error like '%://%';
