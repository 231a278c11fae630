use super::last_use::LAST_USE_EVERY_MS;
use super::sqlite::SQLITE_SQL;
use super::*;
use crate::domain::key_form::KeySpec;
use crate::domain::text::GenerationId;
use crate::domain::{ApiToken, Credits, Email};
use crate::store::usage::sample_entry as entry;
use crate::store::usage_journal::Journal;
use crate::store::Backend;

/// What a killed process leaves: journaled entries, some applied and some not. Replay
/// applies each missing one exactly once, however often it runs.
#[tokio::test]
async fn journal_replay_applies_each_missing_entry_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("replay.db");
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let email = Email::parse("replay@example.com").unwrap();
    let account = store
        .create_account(&email, "x", Credits::parse("10").unwrap())
        .await
        .unwrap()
        .personal_workspace();
    let spec = KeySpec {
        name: "local-dev".into(),
        models: vec![],
        region: None,
        daily_limit: None,
        monthly_limit: None,
        expires_on: None,
        rpm_limit: None,
        concurrency_limit: None,
        disable_after_days: None,
    };
    let key = store
        .create_key(
            account,
            &spec,
            &ApiToken::generate(),
            &crate::domain::audit::Actor::cli(),
        )
        .await
        .unwrap();
    let (a, b, c) = (
        entry("gen-a", account.0, key.0),
        entry("gen-b", account.0, key.0),
        entry("gen-c", account.0, key.0),
    );
    let (mut journal, _) = Journal::open(&db).unwrap();
    journal
        .append_blocking(1, &[a.clone(), b.clone()], 0)
        .unwrap();
    journal.append_blocking(2, &[c], 0).unwrap();
    let Backend::Sqlite(sqlite) = store.backend() else {
        panic!("an SQLite store")
    };
    // The applier had applied `a` (and only `a`) when the process died.
    sqlite.apply_usage_blocking(&[a], 1).unwrap();
    drop(journal);

    let balance =
        |store: Store| async move { store.account(account).await.unwrap().balance.micros() };
    assert_eq!(balance(store.clone()).await, 10_000_000 - 1_000);
    let (_, records) = Journal::open(&db).unwrap();
    assert_eq!(sqlite.replay_usage_journal(records).unwrap(), 2);
    assert_eq!(balance(store.clone()).await, 10_000_000 - 3_000);
    assert_eq!(sqlite.max_settled_seq().unwrap(), 2);
    let (_, records) = Journal::open(&db).unwrap();
    assert_eq!(
        sqlite.replay_usage_journal(records).unwrap(),
        0,
        "idempotent"
    );
    assert_eq!(balance(store.clone()).await, 10_000_000 - 3_000);
    for id in ["gen-a", "gen-b", "gen-c"] {
        assert_eq!(
            store
                .usage_by_generation(account, &GenerationId::parse(id).unwrap())
                .await
                .unwrap()
                .cost,
            Credits::from_micros(1_000)
        );
    }
}

#[test]
fn sqlite_statements_number_every_parameter() {
    let sql = &*SQLITE_SQL;
    assert!(sql.usage.ends_with("$20)"), "{}", sql.usage);
    assert!(sql.daily.contains("$15)"), "{}", sql.daily);
    assert!(sql
        .daily_keys
        .contains("on conflict (account_id, day, key_id, key_name, shard) do update set requests"));
    assert!(sql.workspace.contains("$13)"), "{}", sql.workspace);
}

/// A key's and a secret's last use are written when first seen and then at most once per
/// [`LAST_USE_EVERY_MS`]; settlements that move money are never dropped.
#[test]
fn last_uses_are_written_when_due_and_money_always() {
    let reservation = |source| crate::store::ledger::Reservation {
        account_id: crate::domain::WorkspaceId(1),
        key_id: crate::domain::KeyId(7),
        amount: Credits::from_micros(5_000),
        day: 1,
        month: 1,
        source,
    };
    // Served from a budget lease, as the PostgreSQL gateway's holds are.
    let at = |id: &str, ms: i64| {
        let mut e = entry(id, 1, 7);
        e.usage.completed_at = ms;
        e.reservation = Some(reservation(HoldSource::Lease(crate::domain::LeaseId(3))));
        e
    };
    let mut written = LastUseWrites::default();
    let first = [at("a", 10_000)];
    let mut plan = BatchPlan::new(&first, Rows::Write, 0);
    written.prune(&mut plan);
    assert_eq!((plan.keys.len(), plan.secrets.len()), (1, 1), "first use");
    written.written(&plan);

    let soon = [at("b", 10_000 + LAST_USE_EVERY_MS - 1)];
    let mut plan = BatchPlan::new(&soon, Rows::Write, 0);
    let (accounts, leases) = (plan.accounts.clone(), plan.leases.clone());
    written.prune(&mut plan);
    assert_eq!((plan.keys.len(), plan.secrets.len()), (0, 0), "not due yet");
    assert_eq!(
        (plan.accounts, plan.leases),
        (accounts, leases),
        "money is untouched"
    );
    assert_eq!(plan.daily.len(), 1, "rollups are untouched");

    let later = [at("c", 10_000 + LAST_USE_EVERY_MS)];
    let mut plan = BatchPlan::new(&later, Rows::Write, 0);
    written.prune(&mut plan);
    assert_eq!((plan.keys.len(), plan.secrets.len()), (1, 1), "due");

    // A settlement with a release or a charge on the key (a reservation row) always stays.
    let mut held = at("d", 10_000);
    held.reservation = Some(reservation(HoldSource::Row("r".into())));
    let held = [held];
    let mut plan = BatchPlan::new(&held, Rows::Write, 0);
    written.prune(&mut plan);
    assert_eq!(plan.keys.len(), 1, "the key's counters must be settled");
}
