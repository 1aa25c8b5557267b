//! `compact`, `vacuum` and `current`: the lake's upkeep by hand, with the settings `serve` reads
//! (it does all three by itself). A progress bar on a terminal; one line per partition (or
//! table) on stdout either way.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{CompactArgs, CurrentArgs, StoreArgs, VacuumArgs};
use crate::compact::{Compactor, Layout, Options, Outcome, Partition};
use crate::config::{MIN_VACUUM_RETENTION, resolve};
use crate::lake::{DeltaLake, TableFormat};
use crate::schema::{Catalog, Table};
use crate::sink::{StorageUrl, WriterId, from_root, open_root};

/// The lake named by the arguments, opened.
struct Opened {
    layout: Layout,
    store: Arc<dyn object_store::ObjectStore>,
    catalog: Arc<Catalog>,
    tables: Vec<Table>,
    shown: String,
}

/// The lake `args` names, with `tables` (default: every delivered table).
fn open(args: &StoreArgs, tables: &[Table]) -> anyhow::Result<Opened> {
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let data_dir = resolve(&cwd, &args.data.data_dir);
    let storage = match &args.storage_url {
        Some(url) => StorageUrl::parse(url, &cwd)?,
        None => StorageUrl::Local(data_dir.join("lake")),
    };
    let root = open_root(&storage)?;
    let store = from_root(&storage, root.clone())?;
    let catalog = Arc::new(Catalog::load()?);
    let layout = match args.table_format {
        TableFormat::Parquet => Layout::Plain,
        TableFormat::Delta => {
            let local_dir = match &storage {
                StorageUrl::Local(path) => Some(path.clone()),
                _ => None,
            };
            Layout::Delta(Arc::new(DeltaLake::new(&root, local_dir, &WriterId::generate(), catalog.clone())))
        }
    };
    let tables = if tables.is_empty() { Table::ALL.to_vec() } else { tables.to_vec() };
    Ok(Opened { layout, store, catalog, tables, shown: storage.to_string() })
}

/// `oncehub-bridge compact`.
pub async fn run(args: CompactArgs) -> anyhow::Result<()> {
    let lake = open(&args.lake.store, &args.lake.tables)?;
    let options = Options {
        target_size: args.target_size.get() as u64,
        since: args.since,
        until: args.until,
        before: None,
        dry_run: args.lake.dry_run,
        temp_dir: args.temp_dir.clone().unwrap_or_else(std::env::temp_dir),
        run_bytes: args.run_size.get(),
    };
    let compactor = Compactor::new(lake.layout, lake.store, lake.catalog, options, tokio::runtime::Handle::current());
    let (tables, shown) = (lake.tables, lake.shown);
    tokio::task::spawn_blocking(move || compact_all(&compactor, &tables, &shown)).await?
}

fn compact_all(compactor: &Compactor, tables: &[Table], shown: &str) -> anyhow::Result<()> {
    let mut partitions: Vec<Partition> = Vec::new();
    for table in tables {
        partitions
            .extend(compactor.plan(*table).with_context(|| format!("cannot list the partitions of {}", table.name()))?);
    }
    if partitions.is_empty() {
        println!("{shown}: nothing to compact (no partition has more than one file with one below the target size)");
        return Ok(());
    }
    let bar = progress_bar(partitions.iter().map(Partition::bytes).sum());
    let (mut compacted, mut failed, mut before, mut after, mut dropped) = (0, 0, 0, 0, 0);
    for partition in &partitions {
        bar.set_message(format!("{} dt={}", partition.table.name(), partition.dt));
        match compactor.compact(partition, &|bytes| bar.inc(bytes)) {
            Ok(report) => {
                if matches!(report.outcome, Outcome::Compacted { .. } | Outcome::Planned) {
                    compacted += 1;
                    before += report.files_before;
                    after += report.files_after;
                    dropped += report.dropped;
                }
                bar.suspend(|| println!("{report}"));
            }
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("{} dt={}: cannot compact: {e}", partition.table.name(), partition.dt));
            }
        }
    }
    bar.finish_and_clear();
    let verb = if compactor.options().dry_run { "would be compacted" } else { "compacted" };
    println!("{compacted} partitions {verb}: {before} files -> {after}, {dropped} duplicate rows dropped");
    if failed > 0 {
        anyhow::bail!(
            "{failed} partitions could not be compacted (see above); run compact again: a partition whose commit did land is not compacted twice"
        );
    }
    Ok(())
}

/// Bytes read, with the partition at work; hidden when stderr is not a terminal.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg:28} [{bar:30}] {binary_bytes}/{binary_total_bytes} {eta} left")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(total).with_style(style)
}

/// `oncehub-bridge current`.
pub async fn current(args: CurrentArgs) -> anyhow::Result<()> {
    let lake = open(&args.store, &[Table::BookingsCurrent])?;
    let options = Options { target_size: args.target_size.get() as u64, dry_run: args.dry_run, ..Options::default() };
    let compactor = Compactor::new(lake.layout, lake.store, lake.catalog, options, tokio::runtime::Handle::current());
    let report = tokio::task::spawn_blocking(move || compactor.rebuild_current()).await?;
    let report = report.with_context(|| format!("{}: cannot bring bookings_current up to date", lake.shown))?;
    println!("{report}");
    Ok(())
}

/// `oncehub-bridge vacuum`.
pub async fn vacuum(args: VacuumArgs) -> anyhow::Result<()> {
    let retention = args.vacuum_retention;
    if retention < MIN_VACUUM_RETENTION && !args.allow_short_retention {
        anyhow::bail!(
            "--vacuum-retention {} is below 1h: a file whose commit is still to come (a writer retrying) could be deleted; pass --allow-short-retention if no writer is running",
            humantime::format_duration(retention)
        );
    }
    let lake = open(&args.lake.store, &args.lake.tables)?;
    let Layout::Delta(delta) = lake.layout else {
        println!(
            "{}: the parquet layout keeps no removed files (compaction deletes its inputs); nothing to vacuum",
            lake.shown
        );
        return Ok(());
    };
    // bookings_current too: each rebuild removes the files of the partitions it rewrote.
    let tables = if args.lake.tables.is_empty() { Table::LAKE.to_vec() } else { lake.tables };
    let dry_run = args.lake.dry_run;
    tokio::task::spawn_blocking(move || {
        for table in tables {
            if delta.open_existing(table)?.is_none() {
                println!("{}: no delta table yet", table.name());
                continue;
            }
            let report = delta.vacuum(table, retention, dry_run)?;
            crate::metrics::vacuumed(table.name(), if dry_run { 0 } else { report.deleted });
            println!(
                "{}: {} files ({}) {}; kept {} referenced and {} unreferenced younger than {}",
                table.name(),
                report.deleted,
                bytesize::ByteSize(report.deleted_bytes).display().iec(),
                if dry_run { "would be deleted" } else { "deleted" },
                report.referenced,
                report.young,
                humantime::format_duration(retention)
            );
        }
        Ok::<(), anyhow::Error>(())
    })
    .await?
}
