//! Opening a spool: take its lock, read its state (a damaged state file is quarantined and reset),
//! load the dedup index, recover every segment (see `recovery`), record what was lost, and create
//! the active segment where appending resumes. [`check`] reads a spool the same way for
//! `spool verify` (changing nothing) and `spool repair`.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::path::Path;

use chrono::Utc;

use super::dedup::{DedupLog, DedupMap, Entry};
use super::recovery::{self, Mode, Scan};
use super::state::{StateError, StateFile};
use super::{OpenError, Recovered, Seq, SpoolOptions, segment, writer};
use crate::metrics;

/// What opening found and made, for `Spool::open` to start from.
pub(super) struct Opened {
    pub lock: File,
    pub state: StateFile,
    pub dedup_log: DedupLog,
    pub dedup: DedupMap,
    /// (first seq, size) of each segment; the last one is the new active segment.
    pub segments: VecDeque<(u64, u64)>,
    pub active: writer::Active,
    pub recovered: Recovered,
}

/// Takes the lock, reads the state, loads the dedup index, recovers the segments and creates the
/// active segment where appending resumes.
pub(super) fn open(opts: &SpoolOptions) -> Result<Opened, OpenError> {
    let dir = opts.dir.clone();
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| OpenError::Io { path, source }
    };
    let lock = lock(&dir)?;
    let state = open_state(&dir, Mode::Repair)?;
    let checkpoint = Seq(state.state.checkpoint);

    let mut dedup_log = DedupLog::new(dir.join("dedup")).map_err(io(&dir))?;
    let cutoff = Utc::now().timestamp() - opts.dedup_window.as_secs() as i64;
    let mut dedup = DedupMap::default();
    let loaded = dedup_log.load(&mut dedup, cutoff).map_err(io(&dir.join("dedup")))?;
    metrics::dedup_damaged(loaded.damaged as u64);
    let mut spooled_keys = Vec::new();
    let known = state.state.lost.clone();
    let scan = recovery::scan(&dir, checkpoint, &known, Mode::Repair, |r| {
        let secs = r.delivery.received_at.timestamp();
        if let (Some(key), true) = (r.delivery.event_key, secs >= cutoff) {
            dedup.insert(key, Entry { accepted_secs: secs, batch: 0 });
            spooled_keys.push((key, secs));
        }
    })?;
    // Keys seen only in segments go to the day files too, before any segment can be trimmed.
    dedup_log.append(&spooled_keys).and_then(|()| dedup_log.sync()).map_err(io(&dir.join("dedup")))?;

    metrics::records_lost(scan.lost());
    let mut state = state;
    if let Err(e) = remember_losses(&mut state, &scan) {
        // Not a reason to stay down: the losses are logged, and the next start finds them again.
        tracing::warn!(error = %e, "cannot record the losses in the spool state; the next start reports them again");
    }
    let next = scan.last.0 + 1;
    let mut segments: VecDeque<(u64, u64)> =
        scan.segments.iter().copied().filter(|(first, _)| *first != next).collect();
    let active = writer::Active::create(&dir, next).map_err(io(&segment::path(&dir, next)))?;
    segments.push_back((next, active.offset));
    let intents: Vec<_> = state.state.intents.iter().filter(|i| i.last > checkpoint.0).cloned().collect();
    let recovered = Recovered {
        checkpoint,
        last: scan.last,
        intents,
        truncated: scan.truncated,
        losses: scan.losses,
        dedup_keys: dedup.len(),
    };
    Ok(Opened { lock, state, dedup_log, dedup, segments, active, recovered })
}

/// Takes the spool directory's lock (creating the directory): one process per spool.
fn lock(dir: &Path) -> Result<File, OpenError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| OpenError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let lock_path = dir.join("LOCK");
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    if lock.try_lock().is_err() {
        return Err(OpenError::Locked(dir.to_owned()));
    }
    Ok(lock)
}

/// Reads the state file. A damaged one is, when repairing, quarantined and replaced by a state
/// whose checkpoint is just below the oldest segment (everything before it was trimmed, so it is
/// in the store); its flush intents are lost, so rows replayed since may be written twice.
fn open_state(dir: &Path, mode: Mode) -> Result<StateFile, OpenError> {
    match StateFile::open(dir) {
        Err(e @ StateError::Invalid { .. }) if mode == Mode::Repair => {
            let oldest = segment::list(dir)
                .map_err(|source| OpenError::Io { path: dir.to_owned(), source })?
                .first()
                .map(|(f, _)| *f);
            let checkpoint = oldest.unwrap_or(1).saturating_sub(1);
            let moved = StateFile::reset(dir, checkpoint)?;
            tracing::error!(
                error = %e, quarantined = %moved.display(), checkpoint,
                "the spool state file is damaged: moved it to quarantine and resumed after the oldest segment; rows replayed from here may be written twice"
            );
            Ok(StateFile::open(dir)?)
        }
        other => Ok(other?),
    }
}

/// What `spool verify` / `spool repair` found.
#[derive(Debug)]
pub struct Checked {
    pub checkpoint: Seq,
    pub scan: Scan,
    /// Set when the state file cannot be read (inspecting: repair would reset it).
    pub state_error: Option<String>,
    /// Gaps lost and reported before (by an earlier start or repair).
    pub known: Vec<(u64, u64)>,
}

/// Reads the spool in `dir` without starting it: `Mode::Inspect` changes nothing, `Mode::Repair`
/// does what start-up does (cut a torn tail, rewrite damaged segments, quarantine originals,
/// reset a damaged state file). Takes the spool's lock, so it refuses to run beside `serve`.
pub fn check(dir: &Path, mode: Mode) -> Result<Checked, OpenError> {
    if !dir.is_dir() {
        return Err(OpenError::NoSpool(dir.to_owned()));
    }
    let _lock = lock(dir)?;
    let (state, state_error) = match open_state(dir, mode) {
        Ok(state) => (Some(state), None),
        Err(OpenError::State(e)) if mode == Mode::Inspect => (None, Some(e.to_string())),
        Err(e) => return Err(e),
    };
    let checkpoint = Seq(state.as_ref().map_or(0, |s| s.state.checkpoint));
    let known = state.as_ref().map(|s| s.state.lost.clone()).unwrap_or_default();
    let scan = recovery::scan(dir, checkpoint, &known, mode, |_| {})?;
    if let (Some(mut state), Mode::Repair) = (state, mode) {
        remember_losses(&mut state, &scan)?;
    }
    Ok(Checked { checkpoint, scan, state_error, known })
}

/// Records the losses recovery just reported, so later starts know those gaps.
fn remember_losses(state: &mut StateFile, scan: &Scan) -> Result<(), StateError> {
    if scan.losses.is_empty() {
        return Ok(());
    }
    state.state.lost.extend(scan.losses.iter().map(|l| (l.first, l.last)));
    state.save()
}
