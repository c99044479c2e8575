-- quarantine_counts: quarantined records per source and reason, most frequent first.
-- Parameters: $source, $reason (NULL = all)
select source, reason, count(*) as records
from quarantine
where ($source is null or source = $source) and ($reason is null or reason = $reason)
group by source, reason
order by records desc, source, reason
