//! The dedup index: which event ids were accepted within the window.
//!
//! In memory it is a map from [`EventKey`] (the first 16 bytes of SHA-256 of the event id: exact in
//! practice, 16 bytes per id whatever the id's length) to when it was accepted and in which write
//! batch. On disk it is one append-only file per UTC day, `<spool>/dedup/YYYY-MM-DD.keys`, of
//! 32-byte entries:
//!
//! ```text
//! 0   16  event key
//! 16  8   accepted at, seconds since the Unix epoch, i64 LE
//! 24  4   CRC32C of bytes 0..24, u32 LE
//! 28  4   zero
//! ```
//!
//! Invariants: an entry is appended after its record is fsynced in a segment, and the day file is
//! fsynced before any segment is deleted, so every accepted id is always in a day file or in a
//! segment; on start both are read. Day files older than the window are deleted. A torn last
//! entry (a crash mid-append) is cut off; a corrupt entry is skipped with a warning and counted
//! (`oncehub_bridge_dedup_entries_damaged_total`), since the id it held is forgotten.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};

const ENTRY_LEN: usize = 32;

/// The dedup key of one event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventKey(pub [u8; 16]);

impl EventKey {
    pub fn of(event_id: &str) -> EventKey {
        let digest = Sha256::digest(event_id.as_bytes());
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        EventKey(key)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub accepted_secs: i64,
    /// The write batch that holds the record; 0 for entries loaded at start (durable).
    pub batch: u64,
}

/// Shards of the in-memory map. A `HashMap` doubles all at once when it grows; with the map split
/// by the key's first byte each growth moves 1/256 of the entries, so no append waits behind a
/// rehash of the whole index (measured: 20-40 ms stalls of every in-flight request at ~200k ids).
const SHARDS: usize = 256;

/// An [`Entry`] as the map stores it, in 8 bytes instead of 16 (24 per id with its key, against
/// 32: the index is the largest thing in memory that grows with traffic, a week of ids). Seconds
/// since the epoch fit in 32 bits until 2106; a batch keeps its low 32 bits, and the full number
/// is the latest batch inserted minus their distance, exact for every batch less than 2^32
/// batches old. An older one is long written, and any number not above the latest answers the
/// same: a duplicate waits at most for a batch that is already on its way to disk.
#[derive(Debug, Clone, Copy)]
struct Slot {
    accepted_secs: u32,
    batch: u32,
}

/// The in-memory map.
#[derive(Debug)]
pub(super) struct DedupMap {
    shards: Vec<HashMap<EventKey, Slot>>,
    /// The highest batch number inserted, against which a slot's low bits are read.
    latest_batch: u64,
}

impl Default for DedupMap {
    fn default() -> DedupMap {
        DedupMap { shards: (0..SHARDS).map(|_| HashMap::new()).collect(), latest_batch: 0 }
    }
}

impl DedupMap {
    fn shard(&self, key: &EventKey) -> &HashMap<EventKey, Slot> {
        &self.shards[usize::from(key.0[0])]
    }

    fn shard_mut(&mut self, key: &EventKey) -> &mut HashMap<EventKey, Slot> {
        &mut self.shards[usize::from(key.0[0])]
    }

    pub(super) fn get(&self, key: &EventKey) -> Option<Entry> {
        self.shard(key).get(key).map(|slot| self.entry(*slot))
    }

    pub(super) fn insert(&mut self, key: EventKey, entry: Entry) {
        self.latest_batch = self.latest_batch.max(entry.batch);
        // Before 1970 cannot happen; after 2106 saturates, so nothing expires early.
        let accepted_secs = u32::try_from(entry.accepted_secs.max(0)).unwrap_or(u32::MAX);
        self.shard_mut(&key).insert(key, Slot { accepted_secs, batch: entry.batch as u32 });
    }

    fn entry(&self, slot: Slot) -> Entry {
        let behind = (self.latest_batch as u32).wrapping_sub(slot.batch);
        Entry {
            accepted_secs: i64::from(slot.accepted_secs),
            batch: self.latest_batch.saturating_sub(u64::from(behind)),
        }
    }

    /// Forgets keys of a batch that failed to be written.
    pub(super) fn forget_batch(&mut self, keys: impl IntoIterator<Item = EventKey>, batch: u64) {
        for key in keys {
            if self.get(&key).is_some_and(|e| e.batch == batch) {
                self.shard_mut(&key).remove(&key);
            }
        }
    }

    /// Drops entries accepted before `cutoff_secs`.
    pub(super) fn expire(&mut self, cutoff_secs: i64) {
        for shard in &mut self.shards {
            shard.retain(|_, slot| i64::from(slot.accepted_secs) >= cutoff_secs);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }
}

/// What [`DedupLog::load`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Loaded {
    pub keys: usize,
    /// Entries whose checksum failed (a torn last entry is not counted: it was never fsynced).
    pub damaged: usize,
}

/// The day files.
#[derive(Debug)]
pub(super) struct DedupLog {
    dir: PathBuf,
    open: Option<(NaiveDate, io::BufWriter<File>)>,
}

impl DedupLog {
    pub(super) fn new(dir: PathBuf) -> io::Result<DedupLog> {
        fs::create_dir_all(&dir)?;
        Ok(DedupLog { dir, open: None })
    }

    /// Reads every day file not older than `cutoff_secs` into `map`; deletes older ones.
    /// Damaged entries are skipped, counted and reported: the ids they held are forgotten, so a
    /// redelivery of one of those events is stored again (a duplicate row in the lake).
    pub(super) fn load(&self, map: &mut DedupMap, cutoff_secs: i64) -> io::Result<Loaded> {
        let mut loaded = Loaded::default();
        for (day, path) in self.day_files()? {
            if day_end_secs(day) < cutoff_secs {
                remove_quietly(&path);
                continue;
            }
            let bytes = fs::read(&path)?;
            let mut damaged = 0;
            let entries = bytes.chunks_exact(ENTRY_LEN);
            let torn = entries.remainder().len();
            for entry in entries {
                match decode(entry) {
                    Some((key, secs)) if secs >= cutoff_secs => {
                        map.insert(key, Entry { accepted_secs: secs, batch: 0 });
                        loaded.keys += 1;
                    }
                    Some(_) => {}
                    None => damaged += 1,
                }
            }
            if damaged > 0 || torn > 0 {
                tracing::warn!(
                    file = %path.display(), damaged_entries = damaged, torn_bytes = torn,
                    "the dedup index has damaged entries; the event ids they held are forgotten, so a redelivery of one of those events within the dedup window is stored again (a duplicate row)"
                );
            }
            if torn > 0 {
                // Cut it, or the next append would start mid-entry and misalign every later one.
                OpenOptions::new().write(true).open(&path)?.set_len((bytes.len() - torn) as u64)?;
            }
            loaded.damaged += damaged;
        }
        Ok(loaded)
    }

    /// Appends entries (buffered; see [`Self::sync`]).
    pub(super) fn append(&mut self, keys: &[(EventKey, i64)]) -> io::Result<()> {
        for &(key, secs) in keys {
            let day = DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default().date_naive();
            let writer = match &mut self.open {
                Some((d, w)) if *d == day => w,
                _ => {
                    self.sync()?;
                    let file = OpenOptions::new().create(true).append(true).open(self.day_path(day))?;
                    &mut self.open.insert((day, io::BufWriter::with_capacity(64 * 1024, file))).1
                }
            };
            writer.write_all(&encode(key, secs))?;
        }
        Ok(())
    }

    /// Writes out the buffered entries and returns a handle on the open day file whose
    /// `sync_data` makes them durable, so callers can fsync without holding this log's lock
    /// (the spool writer appends to it between its own fsyncs).
    pub(super) fn flushed(&mut self) -> io::Result<Option<File>> {
        match &mut self.open {
            Some((_, w)) => {
                w.flush()?;
                Ok(Some(w.get_ref().try_clone()?))
            }
            None => Ok(None),
        }
    }

    /// Makes every appended entry durable.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        self.flushed()?.map_or(Ok(()), |f| f.sync_data())
    }

    /// Deletes day files entirely older than `cutoff_secs`.
    pub(super) fn expire(&mut self, cutoff_secs: i64) -> io::Result<()> {
        for (day, path) in self.day_files()? {
            let current = self.open.as_ref().is_some_and(|(d, _)| *d == day);
            if !current && day_end_secs(day) < cutoff_secs {
                remove_quietly(&path);
            }
        }
        Ok(())
    }

    fn day_path(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(format!("{}.keys", day.format("%Y-%m-%d")))
    }

    fn day_files(&self) -> io::Result<Vec<(NaiveDate, PathBuf)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let day = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".keys"))
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            if let Some(day) = day {
                files.push((day, path));
            }
        }
        files.sort();
        Ok(files)
    }
}

fn day_end_secs(day: NaiveDate) -> i64 {
    day.succ_opt().unwrap_or(day).and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(i64::MAX)
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot delete an expired dedup file");
    }
}

fn encode(key: EventKey, secs: i64) -> [u8; ENTRY_LEN] {
    let mut out = [0; ENTRY_LEN];
    out[..16].copy_from_slice(&key.0);
    out[16..24].copy_from_slice(&secs.to_le_bytes());
    let crc = crc32c::crc32c(&out[..24]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode(entry: &[u8]) -> Option<(EventKey, i64)> {
    let crc = u32::from_le_bytes(entry.get(24..28)?.try_into().ok()?);
    if crc32c::crc32c(entry.get(..24)?) != crc {
        return None;
    }
    let key = EventKey(entry.get(..16)?.try_into().ok()?);
    let secs = i64::from_le_bytes(entry.get(16..24)?.try_into().ok()?);
    Some((key, secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_763_800_000;

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(EventKey::of("EVNT-1"), EventKey::of("EVNT-1"));
        assert_ne!(EventKey::of("EVNT-1"), EventKey::of("EVNT-2"));
    }

    #[test]
    fn entries_survive_a_reopen_and_old_days_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DedupLog::new(dir.path().into()).unwrap();
        let old = EventKey::of("old");
        let fresh = EventKey::of("fresh");
        log.append(&[(old, NOW - 10 * DAY), (fresh, NOW)]).unwrap();
        log.sync().unwrap();
        drop(log);

        let log = DedupLog::new(dir.path().into()).unwrap();
        let mut map = DedupMap::default();
        assert_eq!(log.load(&mut map, NOW - 7 * DAY).unwrap(), Loaded { keys: 1, damaged: 0 });
        assert!(map.get(&fresh).is_some() && map.get(&old).is_none());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the old day file is deleted");
    }

    #[test]
    fn a_torn_or_corrupt_entry_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DedupLog::new(dir.path().into()).unwrap();
        log.append(&[(EventKey::of("a"), NOW), (EventKey::of("b"), NOW)]).unwrap();
        log.sync().unwrap();
        let path = log.day_files().unwrap()[0].1.clone();
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 1; // corrupt "a"
        bytes.extend_from_slice(&[1, 2, 3]); // torn tail
        fs::write(&path, bytes).unwrap();
        let mut map = DedupMap::default();
        assert_eq!(log.load(&mut map, 0).unwrap(), Loaded { keys: 1, damaged: 1 }, "counted, not silent");
        assert!(map.get(&EventKey::of("b")).is_some());
        assert_eq!(
            fs::read(&path).unwrap().len(),
            2 * ENTRY_LEN,
            "the torn tail is cut, so later appends stay aligned"
        );
    }

    #[test]
    fn a_failed_batch_forgets_only_its_own_keys() {
        let mut map = DedupMap::default();
        let k = EventKey::of("k");
        map.insert(k, Entry { accepted_secs: NOW, batch: 3 });
        map.forget_batch([k], 4);
        assert!(map.get(&k).is_some());
        map.forget_batch([k], 3);
        assert!(map.get(&k).is_none());
    }

    /// A slot keeps 32 bits of its batch: read back against the latest batch, the number is exact
    /// past 2^32 batches, and the seconds and the expiry are unchanged.
    #[test]
    fn entries_read_back_exactly_past_32_bit_batch_numbers() {
        let mut map = DedupMap::default();
        let (old, new) = (EventKey::of("old"), EventKey::of("new"));
        let far = (1_u64 << 32) + 7;
        map.insert(old, Entry { accepted_secs: NOW - 10, batch: far - 5 });
        map.insert(new, Entry { accepted_secs: NOW, batch: far });
        let e = map.get(&old).unwrap();
        assert_eq!((e.accepted_secs, e.batch), (NOW - 10, far - 5));
        assert_eq!(map.get(&new).unwrap().batch, far);
        map.forget_batch([old, new], far - 5);
        assert!(map.get(&old).is_none() && map.get(&new).is_some());
        map.expire(NOW);
        assert_eq!(map.len(), 1);
        map.expire(NOW + 1);
        assert_eq!(map.len(), 0);
    }
}
