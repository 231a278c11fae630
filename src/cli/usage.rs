//! `lowrouter usage export | purge`: the operator's side of usage retention ("export, then
//! reset"), without the HTTP server. Export writes what `GET /api/v1/usage/export` sends
//! (`service::usage_export`), for one workspace or every one; purge runs the hourly job's
//! steps (`startup::purge_usage`) now.

use anyhow::Context;
use clap::Subcommand;

use std::io::Write;

use futures_util::StreamExt;

use crate::config::Settings;
use crate::domain::time_util;
use crate::domain::WorkspaceId;
use crate::service::usage_export;
use crate::store::Store;

#[derive(Subcommand)]
pub enum UsageCommand {
    /// Write every usage row of a period, oldest first, to a file (NDJSON or CSV). Periods
    /// are `YYYY-MM-DD` (UTC midnight) or unix seconds; `--end` is exclusive.
    Export {
        #[arg(long)]
        start: String,
        /// Default: now.
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        out: std::path::PathBuf,
        /// `ndjson` (default) or `csv`.
        #[arg(long, default_value = "ndjson")]
        format: String,
        /// One workspace's rows (its id, on the Members page); default every workspace,
        /// one after another, each row carrying its workspace in the file name's order.
        #[arg(long)]
        workspace: Option<i64>,
    },
    /// Remove request-level usage rows that started before a UTC date (YYYY-MM-DD), now,
    /// rather than at `usage_retention_days`. Totals, charts and limits are unchanged: they
    /// read the daily rollups, which are kept. Safe while the server runs.
    Purge {
        #[arg(long)]
        before: String,
    },
}

pub async fn run(settings: &Settings, command: UsageCommand) -> anyhow::Result<()> {
    match command {
        UsageCommand::Export {
            start,
            end,
            out,
            format,
            workspace,
        } => {
            let instant = |name: &str, s: &str| {
                usage_export::parse_instant(s).with_context(|| {
                    format!("--{name} {s:?}: expected a date (YYYY-MM-DD) or unix seconds")
                })
            };
            let start = instant("start", &start)?;
            let end = match end {
                Some(e) => instant("end", &e)?,
                None => time_util::now_ms(),
            };
            anyhow::ensure!(end > start, "--end must be after --start");
            let format = usage_export::ExportFormat::parse(&format)
                .with_context(|| format!("--format {format:?}: expected ndjson or csv"))?;
            let store = Store::connect(&settings.database_url).await?;
            let workspaces = match workspace {
                Some(w) => vec![WorkspaceId(w)],
                None => store.workspace_ids().await?,
            };
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let mut file = std::io::BufWriter::new(file);
            let mut rows = 0usize;
            let mut header = format == usage_export::ExportFormat::Csv;
            for w in workspaces {
                let mut pages = store.stream_usage_period(w, start, end, None).await?;
                while let Some(page) = pages.next().await {
                    let page = page?;
                    rows += page.len();
                    file.write_all(&usage_export::encode(&page, format, header))?;
                    header = false;
                }
            }
            file.flush()?;
            println!("wrote {rows} usage rows to {}", out.display());
        }
        UsageCommand::Purge { before } => {
            let date = time_util::parse_date(&before)
                .with_context(|| format!("--before {before:?}: expected a date, YYYY-MM-DD"))?;
            let store = Store::connect(&settings.database_url).await?;
            let purged =
                crate::startup::purge_usage(&store, time_util::date_start_ms(date)).await?;
            println!(
                "removed {} usage rows and {} whole days (partitions) that started before {before} (UTC); rollups kept",
                purged.rows, purged.days
            );
        }
    }
    Ok(())
}
