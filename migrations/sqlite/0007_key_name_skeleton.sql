-- The TR39 confusable skeleton of the key's name (src/domain/key_name.rs): names that look
-- the same on the Keys page have the same skeleton, and an account's live (not revoked) keys
-- may not share one, as they may not share a name (api_keys_live_name stays).
--
-- SQL cannot compute a skeleton, so the column starts empty (NULL) and the application fills
-- it in right after migrating (`Store::backfill_name_skeletons`, at every start: it also
-- covers rows written meanwhile by a previous version during a rolling upgrade). NULLs are
-- distinct in a unique index on both backends, so creating the index cannot fail on existing
-- look-alike names; the backfill gives a live key whose skeleton an older live key of the
-- account already has a marked skeleton instead (skeleton || U+0001 || id, which no name can
-- produce: names have no control characters), so both keep working and new look-alikes of
-- the older one are still refused.
alter table api_keys add column name_skeleton text;
create unique index api_keys_live_skeleton on api_keys(account_id, name_skeleton)
    where status <> 'revoked';
