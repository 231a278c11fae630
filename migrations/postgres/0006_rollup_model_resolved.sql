-- Rollups by model count only catalogue models (hardening, issue 12): a request that never
-- resolved to a model (unknown, malformed, refused before resolution) is rolled up under
-- model '' instead of the string the client sent, so clients cannot grow the rollup by one
-- row per invented name, nor put their text in "Top models". Raw rows keep what was asked
-- (`requested_model`, escaped and bounded). Rebuilt from the raw rows, the source of truth.
delete from usage_daily;

insert into usage_daily (account_id, day, key_id, key_name, model, provider, region, status,
                         requests, errors, prompt_tokens, completion_tokens, cost)
select account_id, started_at / 86400000, key_id, key_name, coalesce(resolved_model, ''),
       coalesce(provider, ''), coalesce(region, ''), status,
       count(*), sum(case when status <> 'ok' then 1 else 0 end),
       sum(prompt_tokens), sum(completion_tokens), sum(cost)
from usage
group by account_id, started_at / 86400000, key_id, key_name, coalesce(resolved_model, ''),
         coalesce(provider, ''), coalesce(region, ''), status;
