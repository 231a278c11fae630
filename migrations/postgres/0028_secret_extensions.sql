-- How many times Extend pushed a previous secret's retirement out: capped (see
-- store::key_secrets::extend_previous), so a secret cannot be kept alive forever by hand.
alter table key_secrets add column extensions integer not null default 0;
