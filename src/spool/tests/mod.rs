//! The spool against a real directory: ordering, group commit, replay, dedup, budget, trimming.

use super::*;
use std::fs;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

fn options(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_owned(),
        max_bytes: 1 << 30,
        segment_bytes: 64 << 20,
        min_free_bytes: 0,
        dedup_window: Duration::from_secs(7 * 86_400),
    }
}

fn delivery(id: Option<&str>, body: &str) -> Delivery {
    Delivery { event_key: id.map(EventKey::of), ..Delivery::for_test(Bytes::copy_from_slice(body.as_bytes())) }
}

fn stored(a: Appended) -> Seq {
    match a {
        Appended::Stored(seq) => seq,
        Appended::Duplicate => panic!("unexpected duplicate"),
    }
}

async fn read_all(spool: &Spool, reader: &mut SpoolReader) -> Vec<(u64, Bytes)> {
    spool.close();
    let mut out = Vec::new();
    while let Some(r) = reader.next().await.unwrap() {
        out.push((r.seq.0, r.delivery.body));
    }
    spool.close_and_join();
    out
}

#[tokio::test]
async fn appends_are_numbered_densely_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader, recovered) = Spool::open(options(dir.path())).unwrap();
    assert_eq!((recovered.checkpoint, recovered.last), (Seq(0), Seq(0)));
    let a = stored(spool.append(delivery(Some("a"), "A")).await.unwrap());
    let b = stored(spool.append(delivery(None, "B")).await.unwrap());
    assert_eq!((a, b), (Seq(1), Seq(2)));
    assert_eq!(spool.durable(), Seq(2));
    assert_eq!(read_all(&spool, &mut reader).await, [(1, Bytes::from("A")), (2, Bytes::from("B"))]);
    assert!(matches!(spool.append(delivery(None, "C")).await, Err(SpoolError::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader, _) = Spool::open(options(dir.path())).unwrap();
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let spool = spool.clone();
            tokio::spawn(async move { stored(spool.append(delivery(Some(&format!("e{i}")), "x")).await.unwrap()) })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().0);
    }
    seqs.sort();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>(), "every append got its own number");
    let stats = spool.stats();
    assert_eq!(stats.records, 400);
    assert!(stats.fsyncs < 400, "group commit: {} fsyncs for 400 appends", stats.fsyncs);
    assert_eq!(read_all(&spool, &mut reader).await.len(), 400);
}

#[tokio::test]
async fn unacknowledged_records_are_replayed_after_a_restart_and_acknowledged_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.segment_bytes = 200; // a few records per segment
    {
        let (spool, mut reader, _) = Spool::open(opts.clone()).unwrap();
        for i in 1..=10 {
            spool.append(delivery(None, &format!("r{i}"))).await.unwrap();
        }
        for _ in 0..10 {
            reader.next().await.unwrap().unwrap();
        }
        let intent = FlushIntent { partition: "bookings/dt=2026-11-22".into(), first: 7, last: 9 };
        spool.record_intent(intent.clone()).await.unwrap();
        spool.ack(Seq(6)).await.unwrap();
        spool.close_and_join();
    }
    let (spool, mut reader, recovered) = Spool::open(opts).unwrap();
    assert_eq!((recovered.checkpoint, recovered.last), (Seq(6), Seq(10)));
    assert_eq!(recovered.intents.len(), 1);
    let seqs: Vec<u64> = read_all(&spool, &mut reader).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(seqs, [7, 8, 9, 10]);
}

#[tokio::test]
async fn acknowledging_deletes_segments_wholly_behind_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.segment_bytes = 100; // one record of 100+ bytes per segment
    let (spool, mut reader, _) = Spool::open(opts).unwrap();
    for i in 1..=5 {
        spool.append(delivery(None, &format!("record {i} {}", "x".repeat(100)))).await.unwrap();
    }
    let before = segment::list(dir.path()).unwrap().len();
    let bytes_before = spool.stats().disk_bytes;
    for _ in 0..5 {
        reader.next().await.unwrap().unwrap();
    }
    spool.ack(Seq(4)).await.unwrap();
    let after: Vec<u64> = segment::list(dir.path()).unwrap().into_iter().map(|(f, _)| f).collect();
    assert!(before >= 5, "{before} segments");
    assert!(after.iter().all(|f| *f >= 5), "segments left: {after:?}");
    assert!(spool.stats().disk_bytes < bytes_before);
    spool.close_and_join();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_id_is_stored_once_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, mut reader, _) = Spool::open(options(dir.path())).unwrap();
        let (a, b) = tokio::join!(
            spool.append(delivery(Some("EVNT-1"), "first")),
            spool.append(delivery(Some("EVNT-1"), "again"))
        );
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| matches!(o, Appended::Duplicate));
        assert_eq!(outcomes[1], Appended::Duplicate);
        spool.append(delivery(Some("EVNT-2"), "other")).await.unwrap();
        assert_eq!(read_all(&spool, &mut reader).await.len(), 2);
        assert_eq!(spool.stats().duplicates, 1);
    }
    let (spool, mut reader, recovered) = Spool::open(options(dir.path())).unwrap();
    assert_eq!(recovered.dedup_keys, 2);
    assert_eq!(spool.append(delivery(Some("EVNT-1"), "third time")).await.unwrap(), Appended::Duplicate);
    assert_eq!(read_all(&spool, &mut reader).await.len(), 2, "only the replayed records");
}

#[tokio::test]
async fn event_ids_outlive_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.segment_bytes = 100;
    {
        let (spool, mut reader, _) = Spool::open(opts.clone()).unwrap();
        for i in 1..=3 {
            spool.append(delivery(Some(&format!("E{i}")), &"x".repeat(100))).await.unwrap();
            reader.next().await.unwrap().unwrap();
        }
        spool.append(delivery(None, "tail")).await.unwrap();
        spool.ack(Seq(3)).await.unwrap();
        spool.close_and_join();
    }
    assert!(segment::list(dir.path()).unwrap().iter().all(|(f, _)| *f > 3), "E1..E3's segments are gone");
    let (spool, _reader, _) = Spool::open(opts).unwrap();
    assert_eq!(spool.append(delivery(Some("E2"), "x")).await.unwrap(), Appended::Duplicate);
    spool.close_and_join();
}

#[tokio::test]
async fn the_budget_refuses_what_cannot_be_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_bytes = 600;
    let (spool, _reader, _) = Spool::open(opts).unwrap();
    let body = "x".repeat(200);
    let mut accepted = 0;
    let refused = loop {
        match spool.append(delivery(None, &body)).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 10, "the budget never bit");
    };
    assert!(matches!(refused, SpoolError::Full { limit: 600 }), "{refused:?}");
    assert_eq!(accepted, 2, "8 bytes of magic + 2 × 250-byte records fit in 600");
    spool.close_and_join();
}

#[tokio::test]
async fn a_torn_tail_is_cut_on_open_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _reader, _) = Spool::open(options(dir.path())).unwrap();
        for i in 1..=3 {
            spool.append(delivery(None, &format!("r{i}"))).await.unwrap();
        }
        spool.close_and_join();
    }
    let (_, path) = segment::list(dir.path()).unwrap().pop().unwrap();
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let (spool, mut reader, recovered) = Spool::open(options(dir.path())).unwrap();
    assert!(recovered.truncated.is_some());
    assert_eq!(recovered.last, Seq(2));
    let got = read_all(&spool, &mut reader).await;
    assert_eq!(got, [(1, Bytes::from("r1")), (2, Bytes::from("r2"))]);
}

#[tokio::test]
async fn one_data_dir_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _reader, _) = Spool::open(options(dir.path())).unwrap();
    let e = Spool::open(options(dir.path())).err().unwrap().to_string();
    assert!(e.contains("another oncehub-bridge"), "{e}");
    spool.close_and_join();
}

mod damage;
