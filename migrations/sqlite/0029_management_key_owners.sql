-- Keys made and secrets rolled through a management key now belong to the key's owner
-- (`created_by`), so offboarding the owner finds them. Rows from before this recorded no
-- one: their owner is read back from the audit log (the event of the create or roll, by
-- that management key, within a few seconds of the secret).
update api_keys set created_by = (
    select m.created_by from audit_events e join management_keys m on m.id = e.actor_id
    where e.account_id = api_keys.account_id and e.actor_kind = 'management_key'
      and e.action = 'key.created' and e.target_kind = 'key' and e.target_id = api_keys.id
    order by e.id limit 1)
where created_by is null;

update key_secrets set created_by = (
    select m.created_by from audit_events e join management_keys m on m.id = e.actor_id
    join api_keys k on k.id = key_secrets.key_id
    where e.account_id = k.account_id and e.actor_kind = 'management_key'
      and e.action in ('key.created', 'key.rolled') and e.target_kind = 'key'
      and e.target_id = key_secrets.key_id
      and e.at between key_secrets.created_at - 5000 and key_secrets.created_at + 5000
    order by e.id limit 1)
where created_by is null;
