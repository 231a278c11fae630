//! Backend parity is tested, not assumed (issue 27): both backends migrated from empty must
//! have the same tables, the same columns with the same kind of type and nullability, and
//! the same indexes (table, columns, unique, partial). Types are compared by kind (an
//! integer, text, a boolean, a real, bytes): each engine spells them its own way.
//! Needs the PostgreSQL server of LOWROUTER_TEST_DATABASE_URL (the CI's second run).

use std::collections::BTreeSet;

use sqlx::{Connection, Row};

use crate::common::{fresh_postgres, postgres_admin_url};

/// (table, column, type kind, not null).
type Column = (String, String, &'static str, bool);
/// (table, columns in order, unique, partial).
type Index = (String, Vec<String>, bool, bool);

fn kind(declared: &str) -> &'static str {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") || t.contains("serial") {
        "integer"
    } else if t.contains("char") || t == "text" {
        "text"
    } else if t.starts_with("bool") {
        "boolean"
    } else if t.contains("double")
        || t.contains("real")
        || t.contains("float")
        || t.contains("numeric")
    {
        "real"
    } else if t.contains("blob") || t.contains("bytea") {
        "bytes"
    } else {
        "other"
    }
}

async fn sqlite_schema(url: &str) -> (BTreeSet<Column>, BTreeSet<Index>) {
    let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "select name from sqlite_master where type = 'table' \
         and name not like 'sqlite_%' and name not like '_sqlx%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let (mut columns, mut indexes) = (BTreeSet::new(), BTreeSet::new());
    for t in tables {
        for r in sqlx::query(&format!("pragma table_info('{t}')"))
            .fetch_all(&mut c)
            .await
            .unwrap()
        {
            let declared: String = r.get("type");
            let not_null: i64 = r.get("notnull");
            let pk: i64 = r.get("pk");
            columns.insert((
                t.clone(),
                r.get::<String, _>("name"),
                kind(&declared),
                not_null == 1 || pk > 0,
            ));
        }
        for r in sqlx::query(&format!("pragma index_list('{t}')"))
            .fetch_all(&mut c)
            .await
            .unwrap()
        {
            let origin: String = r.get("origin");
            if origin == "pk" {
                continue;
            }
            let name: String = r.get("name");
            let unique: i64 = r.get("unique");
            let partial: i64 = r.get("partial");
            let cols: Vec<String> = sqlx::query(&format!("pragma index_info('{name}')"))
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("name"))
                .collect();
            indexes.insert((t.clone(), cols, unique == 1, partial == 1));
        }
    }
    (columns, indexes)
}

async fn postgres_schema(url: &str) -> (BTreeSet<Column>, BTreeSet<Index>) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let columns = sqlx::query(
        "select table_name::text as t, column_name::text as c, data_type::text as ty, \
         is_nullable::text as n from information_schema.columns \
         where table_schema = 'public' and table_name not like '\\_sqlx%' \
         and table_name not in (select relname from pg_class where relispartition)",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get::<String, _>("t"),
            r.get::<String, _>("c"),
            kind(&r.get::<String, _>("ty")),
            r.get::<String, _>("n") == "NO",
        )
    })
    .collect();
    // Every index but primary keys, its columns in order (`indkey`).
    let indexes = sqlx::query(
        "select t.relname::text as t, \
           array(select a.attname::text from unnest(i.indkey) with ordinality k(n, o) \
                 join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.n \
                 order by k.o) as cols, \
           i.indisunique as u, i.indpred is not null as p \
         from pg_index i join pg_class t on t.oid = i.indrelid \
         join pg_namespace s on s.oid = t.relnamespace \
         where s.nspname = 'public' and not i.indisprimary and t.relname not like '\\_sqlx%' \
         and not t.relispartition",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let table = r.get::<String, _>("t");
        let mut cols = r.get::<Vec<String>, _>("cols");
        let unique = r.get::<bool, _>("u");
        // `usage` is partitioned by `started_at` on PostgreSQL (migration 0025), and a
        // partitioned table's unique keys must end with the partition key: the same
        // uniqueness as SQLite's, for a row has one start.
        if table == "usage" && unique && cols.last().is_some_and(|c| c == "started_at") {
            cols.pop();
        }
        (table, cols, unique, r.get::<bool, _>("p"))
    })
    .collect();
    (columns, indexes)
}

fn differences<T: Ord + std::fmt::Debug + Clone>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> String {
    let only_a: Vec<_> = a.difference(b).cloned().collect();
    let only_b: Vec<_> = b.difference(a).cloned().collect();
    format!("SQLite only: {only_a:#?}\nPostgreSQL only: {only_b:#?}")
}

#[tokio::test]
async fn both_backends_migrate_to_the_same_tables_columns_and_indexes() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("SKIPPED: schema parity needs LOWROUTER_TEST_DATABASE_URL (a PostgreSQL server)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lite = format!("sqlite://{}", dir.path().join("parity.db").display());
    let pg = fresh_postgres(&admin).await;
    for url in [&lite, &pg] {
        lowrouter::store::Store::connect(url)
            .await
            .unwrap()
            .close()
            .await;
    }
    let (lite_columns, lite_indexes) = sqlite_schema(&lite).await;
    let (pg_columns, pg_indexes) = postgres_schema(&pg).await;
    assert!(
        lite_columns.len() > 100,
        "the schema was read: {}",
        lite_columns.len()
    );
    assert!(
        lite_indexes
            .iter()
            .any(|(t, _, _, partial)| t == "usage" && *partial),
        "indexes were read, partial ones included: {lite_indexes:#?}"
    );
    assert_eq!(
        lite_columns,
        pg_columns,
        "columns differ:\n{}",
        differences(&lite_columns, &pg_columns)
    );
    assert_eq!(
        lite_indexes,
        pg_indexes,
        "indexes differ:\n{}",
        differences(&lite_indexes, &pg_indexes)
    );
}
