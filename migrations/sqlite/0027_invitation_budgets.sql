-- Invitation budgets (the security issue's item 3: 55 invitation mails in 0.3 s from a new
-- account, 15 to one address). Each budget counts the `invitations` rows made in the last
-- 24 hours, revoked and accepted ones included (rows are never deleted), so revoking and
-- inviting again cannot reset a budget, and every process sharing the database counts the
-- same rows. The workspace's count uses `invitations_account` (0013); these two serve the
-- inviter's and the address's.
create index invitations_inviter on invitations(invited_by, created_at);
create index invitations_email on invitations(email, created_at);

-- One row per address ever invited: an invitation's transaction upserts it first, which
-- locks it, so two invitations of one address from different workspaces (which share no
-- other row) are counted one after the other and cannot both pass its budget. SQLite's one
-- writer orders them anyway; the table is there too, so both schemas stay alike.
create table invitation_addresses (
    email           text   primary key,
    last_invited_at bigint not null
);
