//! `spool verify` and `spool repair`: thin glue over the spool's own recovery (see
//! `spool::check`), printing one line per segment and one per lost range.

use std::path::Path;

use crate::cli::SpoolArgs;
use crate::spool::{self, Checked, Mode};

/// The spool holds damage or lost records.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpoolDamaged(String);

/// `spool verify`: reports, changes nothing; an error when anything is damaged or lost.
pub fn verify(args: &SpoolArgs) -> anyhow::Result<()> {
    let checked = spool::check(&spool_dir(&args.data.data_dir), Mode::Inspect)?;
    print!("{}", render(&checked, Mode::Inspect));
    if checked.scan.is_clean() && checked.state_error.is_none() {
        return Ok(());
    }
    Err(SpoolDamaged(format!(
        "the spool is damaged ({} records lost); `oncehub-bridge spool repair --data-dir {}` keeps every intact record (serve does the same at start-up)",
        checked.scan.lost(),
        args.data.data_dir.display()
    ))
    .into())
}

/// `spool repair`: does what start-up does, and says what it did.
pub fn repair(args: &SpoolArgs) -> anyhow::Result<()> {
    let checked = spool::check(&spool_dir(&args.data.data_dir), Mode::Repair)?;
    print!("{}", render(&checked, Mode::Repair));
    Ok(())
}

fn spool_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("spool")
}

/// The report: the checkpoint, each segment, each lost range, a summary line.
pub fn render(checked: &Checked, mode: Mode) -> String {
    let mut out = String::new();
    let scan = &checked.scan;
    match &checked.state_error {
        Some(e) => out.push_str(&format!("state       DAMAGED: {e} (repair resets it below the oldest segment)\n")),
        None => out
            .push_str(&format!("checkpoint  {} (every record at or below it is in the store)\n", checked.checkpoint.0)),
    }
    for r in &scan.reports {
        let name = r.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let seqs = r.seqs.map_or("no records".to_owned(), |(a, b)| format!("sequences {a}-{b}"));
        let status =
            if r.bad.is_empty() { "ok".to_owned() } else { r.action.clone().unwrap_or_else(|| "damaged".into()) };
        out.push_str(&format!("segment     {name}  {} records, {seqs}  {status}\n", r.records));
        for bad in &r.bad {
            out.push_str(&format!("  bad bytes {}..{}: {}\n", bad.start, bad.end, bad.reason));
        }
    }
    for loss in &scan.losses {
        out.push_str(&format!("lost        {loss}\n"));
    }
    for (first, last) in &checked.known {
        out.push_str(&format!(
            "lost before sequences {first}-{last} (found and reported by an earlier start or repair)\n"
        ));
    }
    for q in &scan.quarantined {
        out.push_str(&format!("quarantined {}\n", q.display()));
    }
    let verdict = match (scan.is_clean(), mode) {
        (true, _) => "clean".to_owned(),
        (false, Mode::Inspect) => format!("DAMAGED: {} records lost", scan.lost()),
        (false, Mode::Repair) => format!("repaired: {} records lost, every intact record kept", scan.lost()),
    };
    out.push_str(&format!("spool       {verdict}\n"));
    out
}
