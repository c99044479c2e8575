-- predictive_topic_top1: for one cutoff, each user who holds a topic belief at the cutoff (temp table
-- beliefs_at_cutoff) and has topic observations in the window (cutoff, horizon_end]: is the user's most
-- confident topic among the window's topics, and is the baseline "most frequent topic so far" (the most topic
-- observations up to the cutoff, counted without decay) among them. Ties go to the smallest value.
-- The window counts only observations from $source (all sources when it is null), like predictive_judgements.
-- Parameters: $cutoff, $horizon_end, $source
with

window_topics as (
    select distinct user_id, value
    from observations
    where observed_at > $cutoff and observed_at <= $horizon_end
      and ($source is null or source = $source)
      and split_part(key, '@', 1) = 'topic'
),

window_users as (
    select distinct user_id from window_topics
),

believed_top as (
    select user_id, value as believed_topic
    from beliefs_at_cutoff
    where split_part(key, '@', 1) = 'topic'
    qualify row_number() over (partition by user_id order by confidence desc, value) = 1
),

topic_counts as (
    select user_id, value, count(*) as observations
    from observations
    where observed_at <= $cutoff
      and split_part(key, '@', 1) = 'topic'
    group by user_id, value
),

most_frequent as (
    select user_id, value as frequent_topic
    from topic_counts
    qualify row_number() over (partition by user_id order by observations desc, value) = 1
),

final as (
    select
        b.user_id,
        b.believed_topic,
        f.frequent_topic,
        hit_believed.value is not null as believed_hit,
        hit_frequent.value is not null as frequent_hit
    from believed_top as b
    join window_users as w using (user_id)
    left join most_frequent as f using (user_id)
    left join window_topics as hit_believed
        on hit_believed.user_id = b.user_id and hit_believed.value = b.believed_topic
    left join window_topics as hit_frequent
        on hit_frequent.user_id = b.user_id and hit_frequent.value = f.frequent_topic
)

select * from final order by user_id
