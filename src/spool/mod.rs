//! The spool: the one seam between the receiver and the batcher.
//!
//! The receiver hands each accepted delivery to [`Spool::append`] and answers 2xx only when it
//! returns; the batcher reads records in sequence order from the [`SpoolReader`] and calls
//! [`Spool::ack`] once everything up to a sequence number is durably in the store.
//!
//! This implementation is in memory: a bounded channel, so a full batcher back-pressures the
//! receiver. The write-ahead log (issue #3) replaces the body of this module and keeps its
//! interface: `append` then means "on local disk, fsynced", and `ack` trims the log.
//!
//! Invariants: sequence numbers start at 1, grow by one per accepted record, and the reader sees
//! records in exactly that order; after [`Spool::close`] every `append` fails and the reader ends
//! once it has drained what was accepted before.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

/// A record's position in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

/// One accepted delivery, as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub received_at: DateTime<Utc>,
    pub remote_addr: Option<SocketAddr>,
    pub body: Bytes,
}

/// A delivery with its sequence number.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: Seq,
    pub delivery: Delivery,
}

/// The spool refused a record.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is closed: the service is shutting down")]
    Closed,
}

/// The writing side, shared by every request handler.
#[derive(Debug)]
pub struct Spool {
    tx: Mutex<Option<mpsc::Sender<Record>>>,
    next_seq: Mutex<u64>,
    acked: AtomicU64,
}

/// The reading side, owned by the batcher.
#[derive(Debug)]
pub struct SpoolReader {
    rx: mpsc::Receiver<Record>,
}

impl Spool {
    /// A spool holding at most `capacity` records not yet read by the batcher.
    pub fn open(capacity: usize) -> (Spool, SpoolReader) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let spool = Spool { tx: Mutex::new(Some(tx)), next_seq: Mutex::new(1), acked: AtomicU64::new(0) };
        (spool, SpoolReader { rx })
    }

    /// Accepts a delivery; returns its sequence number once it is kept.
    pub async fn append(&self, delivery: Delivery) -> Result<Seq, SpoolError> {
        let tx = self.tx.lock().map_err(|_| SpoolError::Closed)?.clone().ok_or(SpoolError::Closed)?;
        let permit = tx.reserve().await.map_err(|_| SpoolError::Closed)?;
        // Assigning the number and sending under one lock keeps the reader's order = seq order.
        let mut next = self.next_seq.lock().map_err(|_| SpoolError::Closed)?;
        let seq = Seq(*next);
        *next += 1;
        permit.send(Record { seq, delivery });
        Ok(seq)
    }

    /// Everything up to and including `upto` is durably in the store.
    pub fn ack(&self, upto: Seq) {
        self.acked.fetch_max(upto.0, Ordering::AcqRel);
    }

    /// The highest acknowledged sequence number (0 before the first ack).
    pub fn acked(&self) -> Seq {
        Seq(self.acked.load(Ordering::Acquire))
    }

    /// Refuses further appends; the reader ends after draining what was accepted.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
    }
}

impl SpoolReader {
    /// The next record in sequence order; `None` once the spool is closed and drained.
    pub async fn next(&mut self) -> Option<Record> {
        self.rx.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(body: &'static str) -> Delivery {
        Delivery { received_at: Utc::now(), remote_addr: None, body: Bytes::from_static(body.as_bytes()) }
    }

    #[tokio::test]
    async fn sequence_numbers_are_dense_and_ordered_and_close_drains() {
        let (spool, mut reader) = Spool::open(8);
        let a = spool.append(delivery("a")).await.unwrap();
        let b = spool.append(delivery("b")).await.unwrap();
        assert_eq!((a, b), (Seq(1), Seq(2)));
        spool.close();
        assert!(matches!(spool.append(delivery("c")).await, Err(SpoolError::Closed)));
        assert_eq!(reader.next().await.unwrap().seq, Seq(1));
        assert_eq!(reader.next().await.unwrap().delivery.body, "b");
        assert!(reader.next().await.is_none());
    }

    #[test]
    fn ack_only_moves_forward() {
        let (spool, _reader) = Spool::open(1);
        spool.ack(Seq(5));
        spool.ack(Seq(3));
        assert_eq!(spool.acked(), Seq(5));
    }
}
