-- A counter advanced by every usage batch in the batch's own transaction. The gateway reads
-- it in the same statement as the key row, so it knows exactly which committed charges its
-- read includes (see src/gateway/holds.rs).
create table ledger_seq (
    id    integer primary key,
    value bigint  not null
);
insert into ledger_seq (id, value) values (1, 0);
