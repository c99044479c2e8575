-- count_outcomes_by_file: how many records of each file in the current chunk (Arrow table `classified`)
-- went where, each quarantine reason apart; ingest draws its per-file hints from these (selfmodel/sources/hints.py).
select file, outcome, reason, count(*) as records
from classified
group by all
