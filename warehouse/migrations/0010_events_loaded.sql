-- How many events a batch's loaded records became. One record is one event for every format but chat, where a
-- record is a conversation of many messages; batches from before this column loaded one event per record.
alter table ingest_batches add column events_loaded bigint;
update ingest_batches set events_loaded = loaded;
