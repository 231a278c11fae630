//! `lowrouter journal inspect | set-aside`: what an operator needs when the server refuses to
//! start because of a usage journal record it cannot read (`store::usage_journal`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::config::Settings;
use crate::store::usage_journal::{self, Inspected, Journal};

#[derive(Subcommand)]
pub enum JournalCommand {
    /// Print every record of the usage journal (SQLite) as one JSON object per line,
    /// readable or not, without changing anything. Safe while the server runs.
    Inspect {
        /// Journal files to read (e.g. ones set aside) instead of the configured database's.
        files: Vec<PathBuf>,
    },
    /// Move the usage journal's files aside (renamed with a UTC timestamp, kept) so that the
    /// server starts without their records. Only while the server is stopped.
    SetAside {
        /// Also when every record is readable (the server would apply them at start; set
        /// aside, those not yet in the database are not applied).
        #[arg(long)]
        force: bool,
    },
}

pub fn run(settings: &Settings, command: JournalCommand) -> anyhow::Result<()> {
    match command {
        JournalCommand::Inspect { files } => {
            let files = if files.is_empty() {
                let db = database_file(settings)?;
                (0..2).map(|i| Journal::segment_path(&db, i)).collect()
            } else {
                files
            };
            let mut out = std::io::stdout().lock();
            for file in files {
                inspect(&file, &mut out)?;
            }
        }
        JournalCommand::SetAside { force } => set_aside(settings, force)?,
    }
    Ok(())
}

/// The SQLite database file of the configuration (its journal sits beside it).
fn database_file(settings: &Settings) -> anyhow::Result<PathBuf> {
    if settings.is_postgres() {
        bail!("the usage journal exists with SQLite only; this configuration uses PostgreSQL");
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&settings.database_url)
        .context("reading the database URL")?;
    Ok(opts.get_filename().to_owned())
}

fn inspect(file: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let name = file.display().to_string();
    for item in usage_journal::inspect(&bytes) {
        let line = match item {
            Inspected::Record {
                offset,
                version,
                json,
                error,
            } => {
                let mut line = json!({"file": name, "offset": offset, "version": version});
                line["status"] = json!(if error.is_some() { "unreadable" } else { "ok" });
                match serde_json::from_slice::<Value>(json) {
                    Ok(record) => line["record"] = record,
                    Err(_) => line["payload"] = json!(String::from_utf8_lossy(json)),
                }
                if let Some(e) = error {
                    line["error"] = json!(e);
                }
                line
            }
            Inspected::Torn { offset, bytes } => {
                json!({"file": name, "offset": offset, "status": "torn_tail", "bytes": bytes})
            }
            Inspected::Damaged {
                offset,
                bytes,
                reason,
            } => json!({"file": name, "offset": offset, "status": "damaged", "bytes": bytes,
                "error": format!("the record {reason}")}),
        };
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn set_aside(settings: &Settings, force: bool) -> anyhow::Result<()> {
    let db = database_file(settings)?;
    // The server's own lock: a running server keeps appending to these files.
    let _lock = crate::startup::lock_sqlite(&settings.database_url)?;
    let present: Vec<PathBuf> = (0..2)
        .map(|i| Journal::segment_path(&db, i))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .collect();
    if present.is_empty() {
        println!(
            "the usage journal of {} is empty: nothing to set aside",
            db.display()
        );
        return Ok(());
    }
    match Journal::read(&db) {
        Ok(records) if !force => bail!(
            "the usage journal of {} is readable ({} records): the server applies it at start, \
             so nothing was moved (--force moves it aside anyway; records not yet in the \
             database would then not be applied)",
            db.display(),
            records.len()
        ),
        Ok(_) => {}
        Err(usage_journal::JournalError::Unreadable { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .context("formatting the time")?;
    for from in present {
        let mut to = from.clone().into_os_string();
        to.push(format!(".set-aside-{stamp}"));
        let to = PathBuf::from(to);
        if to.exists() {
            bail!("{} exists already; try again in a second", to.display());
        }
        std::fs::rename(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        println!("moved {} to {}", from.display(), to.display());
    }
    println!(
        "the server now starts without these records; keep the files: `lowrouter journal \
         inspect <file>` shows them"
    );
    Ok(())
}
