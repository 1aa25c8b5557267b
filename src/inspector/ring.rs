//! The recent deliveries, in memory: at most `max_entries` of them and `max_bytes` of bodies and
//! headers, the oldest dropped first. Each entry is the delivery as the receiver saw it (outcome,
//! signature result, sender, size; the body and headers only for signed deliveries), and, once
//! its file is in the table, where it landed.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use bytes::Bytes;
use chrono::{DateTime, Utc};

/// Bytes an entry costs besides its body and headers.
const ENTRY_OVERHEAD: usize = 256;

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Rejected { status: u16, reason: &'static str },
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected { reason, .. } => reason,
        }
    }
}

/// What the signature check found; text only when it is shown (nothing is formatted per delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    NoHeader,
    Malformed,
    /// The header was fine; the body did not arrive whole (too large, stalled, broken).
    BodyIncomplete,
    /// Secret `index` matched: one of the `current` configured ones, or past them, a replaced
    /// subscription's secret in its grace period.
    Matched {
        index: usize,
        current: usize,
    },
    Stale {
        offset_secs: i64,
        tolerance_secs: u64,
    },
    NoMatch {
        configured: usize,
    },
}

impl Signature {
    pub fn text(&self) -> String {
        match self {
            Signature::NoHeader => "no Oncehub-Signature header".to_owned(),
            Signature::Malformed => "malformed Oncehub-Signature header".to_owned(),
            Signature::BodyIncomplete => "not checked: the body did not arrive whole".to_owned(),
            Signature::Matched { index, current } if index < current => {
                format!("secret {} of {current} matched", index + 1)
            }
            Signature::Matched { .. } => "the replaced subscription's secret matched (grace period)".to_owned(),
            Signature::Stale { offset_secs, tolerance_secs } => {
                format!("not checked: t was {offset_secs} s from now (tolerance {tolerance_secs} s)")
            }
            Signature::NoMatch { configured } => format!("no secret matched (of {configured} configured)"),
        }
    }
}

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub received_at: DateTime<Utc>,
    pub event_id: Option<String>,
    /// A documented trigger, `other` for another type, none when it is not an event.
    pub trigger: Option<&'static str>,
    pub outcome: Outcome,
    /// Which secret matched, or why none did.
    pub signature: Signature,
    pub remote: Option<SocketAddr>,
    pub size: usize,
    /// Signed deliveries only: the body, and the request headers as `name: value` lines in one
    /// buffer of their own (one copy, so the connection's read buffer is not held; redacted when
    /// shown).
    pub body: Option<Bytes>,
    pub headers: Bytes,
    /// The spool sequence of an accepted delivery.
    pub seq: Option<u64>,
}

/// Where an accepted delivery's row is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    pub table: &'static str,
    pub key: String,
    pub at: DateTime<Utc>,
}

/// A ring entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    pub seen: Seen,
    pub landed: Option<Landed>,
}

impl Entry {
    /// A copy without the headers (what a list line needs; the body is shared, not copied).
    pub fn summary(&self) -> Entry {
        let s = &self.seen;
        let seen = Seen {
            received_at: s.received_at,
            event_id: s.event_id.clone(),
            trigger: s.trigger,
            outcome: s.outcome.clone(),
            signature: s.signature.clone(),
            remote: s.remote,
            size: s.size,
            body: s.body.clone(),
            headers: Bytes::new(),
            seq: s.seq,
        };
        Entry { id: self.id, seen, landed: self.landed.clone() }
    }

    fn cost(&self) -> usize {
        ENTRY_OVERHEAD + self.seen.body.as_ref().map_or(0, Bytes::len) + self.seen.headers.len()
    }
}

/// The ring itself.
#[derive(Debug)]
pub(super) struct Ring {
    entries: VecDeque<Entry>,
    bytes: usize,
    next_id: u64,
    /// Spool sequence → entry id, for entries not landed yet.
    pending: HashMap<u64, u64>,
    max_entries: usize,
    max_bytes: usize,
}

impl Ring {
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> Ring {
        Ring {
            entries: VecDeque::with_capacity(max_entries.min(4096)),
            bytes: 0,
            next_id: 1,
            pending: HashMap::new(),
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// Keeps `seen`, dropping the oldest entries over either bound; returns its id and the
    /// entries dropped (for the caller to free after it released its lock).
    pub(super) fn push(&mut self, mut seen: Seen) -> (u64, Vec<Entry>) {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(seq) = seen.seq {
            self.pending.insert(seq, id);
        }
        let kept = seen.body.as_ref().map_or(0, Bytes::len) + seen.headers.len();
        if ENTRY_OVERHEAD + kept > self.max_bytes {
            // Too large to keep whole: keep the line, not the body.
            seen.body = None;
            seen.headers = Bytes::new();
        }
        let entry = Entry { id, seen, landed: None };
        self.bytes += entry.cost();
        self.entries.push_back(entry);
        let mut dropped = Vec::new();
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some(old) = self.entries.pop_front() else { break };
            self.bytes -= old.cost();
            if let Some(seq) = old.seen.seq {
                self.pending.remove(&seq);
            }
            dropped.push(old);
        }
        (id, dropped)
    }

    /// The deliveries of `seqs` are in `key` of `table`.
    pub(super) fn landed(&mut self, seqs: &[u64], table: &'static str, key: &str, at: DateTime<Utc>) {
        let Some(first_id) = self.entries.front().map(|e| e.id) else { return };
        for seq in seqs {
            let Some(id) = self.pending.remove(seq) else { continue };
            let Some(entry) = id.checked_sub(first_id).and_then(|i| self.entries.get_mut(i as usize)) else { continue };
            entry.landed = Some(Landed { table, key: key.to_owned(), at });
        }
    }

    /// Newest first.
    pub(super) fn newest(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().rev()
    }

    pub(super) fn get(&self, id: u64) -> Option<&Entry> {
        let first = self.entries.front()?.id;
        self.entries.get(id.checked_sub(first)? as usize)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(seq: Option<u64>, body: &'static [u8]) -> Seen {
        Seen {
            received_at: Utc::now(),
            event_id: Some("EVNT-1".into()),
            trigger: Some("booking.scheduled"),
            outcome: Outcome::Accepted,
            signature: Signature::Matched { index: 0, current: 1 },
            remote: None,
            size: body.len(),
            body: Some(Bytes::from_static(body)),
            headers: Bytes::from_static(b"content-type: application/json\n"),
            seq,
        }
    }

    #[test]
    fn signature_results_read_as_sentences() {
        assert_eq!(Signature::Matched { index: 1, current: 2 }.text(), "secret 2 of 2 matched");
        assert!(Signature::Matched { index: 2, current: 2 }.text().contains("grace period"));
        let stale = Signature::Stale { offset_secs: -301, tolerance_secs: 300 };
        assert_eq!(stale.text(), "not checked: t was -301 s from now (tolerance 300 s)");
        assert_eq!(Signature::NoMatch { configured: 1 }.text(), "no secret matched (of 1 configured)");
    }

    #[test]
    fn the_ring_is_bounded_by_entries_and_by_bytes() {
        let mut ring = Ring::new(3, 1 << 20);
        for i in 0..10 {
            ring.push(seen(Some(i), b"{}"));
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.newest().map(|e| e.id).collect::<Vec<_>>(), [10, 9, 8]);
        assert!(ring.get(7).is_none() && ring.get(8).is_some());

        let big: &'static [u8] = &[b'x'; 10_000];
        let mut ring = Ring::new(1000, 25_000);
        for i in 0..10 {
            ring.push(seen(Some(i), big));
        }
        assert!(ring.bytes() <= 25_000, "{}", ring.bytes());
        assert_eq!(ring.len(), 2);
        let mut tiny = Ring::new(10, 1000);
        tiny.push(seen(None, big));
        assert_eq!(tiny.len(), 1, "a body over the whole budget: the line is kept, not the body");
        assert!(tiny.newest().next().unwrap().seen.body.is_none());
    }

    #[test]
    fn landing_finds_the_entries_still_in_the_ring() {
        let mut ring = Ring::new(2, 1 << 20);
        let a = ring.push(seen(Some(1), b"{}")).0;
        let b = ring.push(seen(Some(2), b"{}")).0;
        let c = ring.push(seen(Some(3), b"{}")).0;
        ring.landed(&[1, 2, 3, 99], "bookings", "bookings/dt=2026-01-01/part-x.parquet", Utc::now());
        assert!(ring.get(a).is_none());
        assert_eq!(ring.get(b).unwrap().landed.as_ref().unwrap().table, "bookings");
        assert_eq!(ring.get(c).unwrap().landed.as_ref().unwrap().key, "bookings/dt=2026-01-01/part-x.parquet");
    }
}
