//! The batcher's side of the spool's state: a flush intent is noted before its upload, and the
//! checkpoint after it; acknowledged segments are then deleted (the dedup day file fsynced first,
//! so an accepted event id is always in a day file or in a segment).

use std::fs;
use std::sync::atomic::Ordering;

use super::{FlushIntent, Seq, Spool, SpoolError, blocking, segment};

impl Spool {
    /// Durably notes that a file holding `intent` is about to be uploaded.
    pub async fn record_intent(&self, intent: FlushIntent) -> Result<(), SpoolError> {
        let shared = self.shared.clone();
        blocking(move || {
            let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            state.state.intents.push(intent);
            state.save().map_err(SpoolError::from)
        })
        .await
    }

    /// Everything up to and including `upto` is durably in the store: persist the checkpoint and
    /// delete the segments wholly behind it.
    pub async fn ack(&self, upto: Seq) -> Result<(), SpoolError> {
        if upto <= self.acked() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let spool = self.clone();
        blocking(move || {
            // Day files first: a trimmed segment's event ids must be kept elsewhere.
            // The fsync runs outside the lock: the writer thread appends to the log after every batch.
            let flushed = shared.dedup_log.lock().unwrap_or_else(|p| p.into_inner()).flushed();
            let synced = flushed.and_then(|file| file.map_or(Ok(()), |f| f.sync_data()));
            if let Err(e) = &synced {
                tracing::warn!(error = %e, "cannot sync the dedup index; keeping segments until it can");
            }
            {
                let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                state.state.checkpoint = upto.0;
                state.state.intents.retain(|i| i.last > upto.0);
                state.state.lost.retain(|(_, last)| *last > upto.0);
                state.save()?;
            }
            shared.acked.fetch_max(upto.0, Ordering::AcqRel);
            if synced.is_ok() {
                spool.trim(upto);
            }
            Ok(())
        })
        .await
    }

    /// Deletes the segments whose records are all at or below `checkpoint` (never the active one).
    pub(super) fn trim(&self, checkpoint: Seq) {
        let doomed: Vec<u64> = {
            let mut inner = self.shared.inner();
            while inner.boundaries.front().is_some_and(|b| b.0 <= checkpoint.0) {
                if let Some((_, segment, offset)) = inner.boundaries.pop_front() {
                    inner.acked_to = Some((segment, offset));
                    inner.refused_full = false;
                }
            }
            let mut doomed = Vec::new();
            while inner.segments.len() > 1 && inner.segments[1].0 - 1 <= checkpoint.0 {
                if let Some((first, size)) = inner.segments.pop_front() {
                    inner.disk_bytes -= size;
                    inner.refused_full = false;
                    doomed.push(first);
                }
            }
            doomed
        };
        tracing::debug!(checkpoint = checkpoint.0, deleted = doomed.len(), "spool acknowledged");
        for first in doomed {
            let path = segment::path(&self.shared.opts.dir, first);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(segment = %path.display(), error = %e, "cannot delete an acknowledged spool segment");
            }
        }
    }
}
