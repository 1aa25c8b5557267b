//! The spool through damage and its own limits: a budget below the segment size, moved-out and
//! removed segments, a flipped byte, a damaged state file, losses reported once.

use std::fs;
use std::time::Duration;

use super::{delivery, options, read_all, stored};
use crate::spool::*;

#[tokio::test]
async fn a_budget_below_the_segment_size_recovers_once_the_store_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_bytes = 600; // far below the 64 MiB segment: every record stays in the active segment
    let (spool, mut reader, _) = Spool::open(opts).unwrap();
    let body = "x".repeat(200);
    let mut last = Seq(0);
    for round in 0..5 {
        let mut accepted = 0;
        loop {
            match spool.append(delivery(None, &body)).await {
                Ok(a) => {
                    last = stored(a);
                    accepted += 1;
                }
                Err(SpoolError::Full { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(accepted >= 2, "round {round}: {accepted} accepted");
        assert!(spool.readiness().is_err(), "full before the store catches up");
        while reader.next().await.unwrap().unwrap().seq < last {}
        spool.ack(last).await.unwrap();
        assert!(spool.readiness().is_ok(), "round {round}: everything is in the store, so there is room again");
    }
    spool.close_and_join();
}

#[tokio::test]
async fn the_full_message_does_not_blame_the_store() {
    let e = SpoolError::Full { limit: 10 }.to_string();
    assert!(!e.contains("not keeping up"), "{e}");
    assert!(e.contains("not yet written to the store"), "{e}");
}

/// Writes `n` records through a spool with small segments, acknowledging none; returns the dir.
async fn spool_of(n: u64) -> (tempfile::TempDir, SpoolOptions) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.segment_bytes = 300; // a few records per segment
    let (spool, _reader, _) = Spool::open(opts.clone()).unwrap();
    for i in 1..=n {
        spool.append(delivery(Some(&format!("E{i}")), &format!("record {i:03} {}", "y".repeat(60)))).await.unwrap();
    }
    spool.close_and_join();
    (dir, opts)
}

async fn replay(opts: &SpoolOptions) -> (Vec<u64>, Recovered) {
    let (spool, mut reader, recovered) = Spool::open(opts.clone()).unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), read_all(&spool, &mut reader))
        .await
        .expect("the reader never hangs");
    (read.into_iter().map(|(s, _)| s).collect(), recovered)
}

#[tokio::test]
async fn a_moved_out_segment_is_a_gap_the_reader_steps_over() {
    let (dir, opts) = spool_of(30).await;
    let segments = segment::list(dir.path()).unwrap();
    assert!(segments.len() >= 4, "{segments:?}");
    let (first, moved) = segments[2].clone();
    let next_first = segments[3].0;
    fs::rename(&moved, dir.path().join("elsewhere.bak")).unwrap();
    let (seqs, recovered) = replay(&opts).await;
    let expected: Vec<u64> = (1..=30).filter(|s| !(first..next_first).contains(s)).collect();
    assert_eq!(seqs, expected);
    assert_eq!(recovered.losses.len(), 1);
    assert_eq!((recovered.losses[0].first, recovered.losses[0].last), (first, next_first - 1));
}

#[tokio::test]
async fn a_removed_first_segment_does_not_stop_the_start() {
    let (dir, opts) = spool_of(30).await;
    let segments = segment::list(dir.path()).unwrap();
    fs::remove_file(&segments[0].1).unwrap();
    let (seqs, recovered) = replay(&opts).await;
    assert_eq!(seqs, (segments[1].0..=30).collect::<Vec<_>>());
    assert_eq!(recovered.losses[0].first, 1);
}

#[tokio::test]
async fn a_flipped_byte_in_the_last_segment_costs_one_record_and_the_rest_replay() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    {
        let (spool, _reader, _) = Spool::open(opts.clone()).unwrap();
        for i in 1..=600 {
            spool.append(delivery(None, &format!("record {i:04}"))).await.unwrap();
        }
        spool.close_and_join();
    }
    let (_, path) = segment::list(dir.path()).unwrap().into_iter().find(|(f, _)| *f == 1).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() / 10;
    bytes[at] ^= 0x20;
    fs::write(&path, bytes).unwrap();
    let (seqs, recovered) = replay(&opts).await;
    assert_eq!(seqs.len(), 599, "one record lost, not 539");
    assert_eq!(recovered.losses.len(), 1);
    let lost = recovered.losses[0].first;
    assert!(!seqs.contains(&lost) && lost > 1 && lost < 600);
    assert!(dir.path().join("quarantine").join(path.file_name().unwrap()).exists());
}

#[tokio::test]
async fn a_damaged_state_file_is_reset_below_the_oldest_segment() {
    let (dir, opts) = spool_of(10).await;
    fs::write(dir.path().join("checkpoint.json"), "{torn").unwrap();
    let (seqs, recovered) = replay(&opts).await;
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "every record on disk is replayed");
    assert_eq!(recovered.checkpoint, Seq(0));
    assert!(dir.path().join("quarantine/checkpoint.json").exists());
}

#[tokio::test]
async fn a_loss_is_reported_and_counted_once_not_at_every_start() {
    let (dir, opts) = spool_of(30).await;
    let segments = segment::list(dir.path()).unwrap();
    fs::remove_file(&segments[1].1).unwrap();
    let (_, first) = replay(&opts).await;
    assert_eq!(first.losses.len(), 1);
    let (seqs, again) = replay(&opts).await;
    assert!(again.losses.is_empty(), "already known: {:?}", again.losses);
    assert!(!seqs.is_empty());
    let checked = check(dir.path(), Mode::Inspect).unwrap();
    assert!(checked.scan.is_clean());
    assert_eq!(checked.known, [(first.losses[0].first, first.losses[0].last)]);
}

#[tokio::test]
async fn damage_found_while_running_is_stepped_over_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.segment_bytes = 300;
    let (spool, mut reader, _) = Spool::open(opts).unwrap();
    for i in 1..=30 {
        spool.append(delivery(None, &format!("record {i:03} {}", "z".repeat(60)))).await.unwrap();
    }
    // Bit rot in a sealed segment the reader has not reached yet.
    let (first, path) = crate::spool::segment::list(dir.path()).unwrap()[1].clone();
    let mut bytes = fs::read(&path).unwrap();
    bytes[20] ^= 0x10;
    fs::write(&path, bytes).unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), read_all(&spool, &mut reader)).await.expect("no hang");
    let seqs: Vec<u64> = read.into_iter().map(|(s, _)| s).collect();
    assert_eq!(seqs.len(), 29, "one record lost, the service reads on: {seqs:?}");
    assert!(!seqs.contains(&first), "the damaged record is the segment's first ({first})");
}
