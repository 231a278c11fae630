-- Email verification (issue 12, item 6). Kept column-for-column in step with ../postgres.
-- email_verified_at: when the account proved its address (unix ms), or null while it has
-- not. Accounts from before, and accounts made while verification is off, count as verified:
-- only an account that signed up with `require_email_verification` on is ever null.
alter table accounts add column email_verified_at bigint;
update accounts set email_verified_at = created_at;

-- The links sent to verify an address. Only the token's SHA-256 (hex) is stored; a token is
-- used once (used_at) and lives 24 hours (expires_at). Rows also count the mail sent to an
-- account, for the resend limits (per minute and per day; see store::email_tokens).
create table email_verification_tokens (
    id          integer primary key,
    token_hash  text    not null unique,
    account_id  bigint  not null references accounts(id),
    created_at  bigint  not null,
    expires_at  bigint  not null,
    used_at     bigint
);
create index email_verification_tokens_account on email_verification_tokens(account_id, created_at);
