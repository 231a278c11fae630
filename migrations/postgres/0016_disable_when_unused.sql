-- Keys that disable themselves after N days without use (issue 15). Kept in step with the
-- other backend's migration of the same number.
-- `disable_after_days`: NULL for never. `idle_from`: the instant the idle clock was last
-- restarted by an owner (Enable, or an edit); the key is idle from the latest of its creation,
-- its last use and this. Evaluated by the gateway at request time (`KeyRow::state`), so it is
-- exact across processes and needs no job.
alter table api_keys add column disable_after_days bigint;
alter table api_keys add column idle_from bigint;
