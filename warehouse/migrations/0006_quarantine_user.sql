-- The user a quarantined record names, when it names one, so `selfmodel forget` can delete raw records
-- about that user too (the raw text is personal data as much as an event is).
alter table quarantine add column user_id varchar;
alter table deletions add column quarantined bigint;
