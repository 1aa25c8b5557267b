//! The damage matrix: flipped bytes at several offsets of the last and of an older segment,
//! truncation at several points, deleted segments; each case says exactly which records survive.

use super::*;
use crate::spool::Delivery;
use crate::spool::record;
use bytes::Bytes;

/// Writes a segment holding `seqs`; returns its path and each record's start offset, then the end.
fn write(dir: &Path, seqs: std::ops::RangeInclusive<u64>) -> (PathBuf, Vec<u64>) {
    let path = segment::path(dir, *seqs.start());
    let mut out = MAGIC.to_vec();
    let mut bounds = vec![out.len() as u64];
    for s in seqs {
        record::encode(
            Seq(s),
            &Delivery::for_test(Bytes::from(format!("{{\"n\":{s},\"pad\":\"{}\"}}", "x".repeat(40)))),
            &mut out,
        );
        bounds.push(out.len() as u64);
    }
    fs::write(&path, out).unwrap();
    (path, bounds)
}

fn run(dir: &Path, checkpoint: u64, mode: Mode) -> (Vec<u64>, Scan) {
    let mut seen = Vec::new();
    let scan = scan(dir, Seq(checkpoint), &[], mode, |r| seen.push(r.seq.0)).unwrap();
    (seen, scan)
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

fn cut(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

fn all_but(range: std::ops::RangeInclusive<u64>, lost: &[u64]) -> Vec<u64> {
    range.filter(|s| !lost.contains(s)).collect()
}

/// The record holding byte `at`, given the record bounds of a segment whose first record is `first`.
fn record_at(bounds: &[u64], first: u64, at: u64) -> u64 {
    first + bounds.windows(2).position(|w| (w[0]..w[1]).contains(&at)).unwrap() as u64
}

#[test]
fn a_clean_spool_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1..=3);
    write(dir.path(), 4..=5);
    let (seen, scan) = run(dir.path(), 0, Mode::Repair);
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    assert_eq!(scan.last, Seq(5));
    assert!(scan.truncated.is_none() && scan.is_clean() && scan.losses.is_empty());
}

#[test]
fn one_flipped_byte_in_the_last_segment_costs_one_record_wherever_it_is() {
    for percent in [1, 10, 50, 90] {
        let dir = tempfile::tempdir().unwrap();
        let (path, bounds) = write(dir.path(), 1..=600);
        let size = *bounds.last().unwrap();
        let at = (size * percent / 100).max(8);
        let victim = record_at(&bounds, 1, at);
        flip(&path, at);
        let (seen, scan) = run(dir.path(), 0, Mode::Repair);
        assert_eq!(seen, all_but(1..=600, &[victim]), "flip at {percent}% (byte {at})");
        assert_eq!(scan.losses.len(), 1, "{percent}%");
        assert_eq!((scan.losses[0].first, scan.losses[0].last), (victim, victim));
        assert!(scan.losses[0].cause.contains("damaged bytes"), "{}", scan.losses[0].cause);
        assert_eq!(scan.lost(), 1);
        assert_eq!(scan.quarantined.len(), 1, "the original is kept for inspection");
        assert_eq!(fs::read(&scan.quarantined[0]).unwrap().len() as u64, size);
        // The rewritten segment reads clean now: a second start finds nothing to do.
        let (again, rescan) = run(dir.path(), 0, Mode::Repair);
        assert_eq!(again, seen);
        assert!(rescan.reports.iter().all(|r| r.bad.is_empty()), "{percent}%");
    }
}

#[test]
fn damage_in_a_header_or_checksum_field_costs_only_that_record() {
    for field_offset in [0, 2, 4, 7, 8, 20] {
        let dir = tempfile::tempdir().unwrap();
        let (path, bounds) = write(dir.path(), 1..=50);
        write(dir.path(), 51..=60);
        flip(&path, bounds[19] + field_offset); // record 20's length, checksum, sequence...
        let (seen, scan) = run(dir.path(), 0, Mode::Repair);
        assert_eq!(seen, all_but(1..=60, &[20]), "field offset {field_offset}");
        assert_eq!(scan.lost(), 1);
    }
}

#[test]
fn flipped_bytes_in_an_older_segment_are_repaired_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (older, bounds) = write(dir.path(), 1..=100);
    write(dir.path(), 101..=120);
    let a = bounds[10] + 30;
    let b = bounds[70] + 12;
    flip(&older, a);
    flip(&older, b);
    let (seen, scan) = run(dir.path(), 0, Mode::Repair);
    assert_eq!(seen, all_but(1..=120, &[11, 71]));
    let lost: Vec<_> = scan.losses.iter().map(|l| (l.first, l.last)).collect();
    assert_eq!(lost, [(11, 11), (71, 71)]);
    assert_eq!(scan.last, Seq(120));
}

#[test]
fn truncating_the_last_segment_is_a_torn_tail_at_any_point() {
    for keep in [3, 10, 25] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1..=5);
        let (path, bounds) = write(dir.path(), 6..=35);
        cut(&path, bounds[keep] + 7); // inside record 6 + keep
        let (seen, scan) = run(dir.path(), 0, Mode::Repair);
        assert_eq!(seen, (1..=5 + keep as u64).collect::<Vec<_>>());
        assert!(scan.losses.is_empty(), "a torn tail was never acknowledged");
        assert!(scan.truncated.as_ref().unwrap().contains("7 bytes"));
        assert_eq!(fs::metadata(&path).unwrap().len(), bounds[keep], "cut at the record start");
    }
}

#[test]
fn truncating_an_older_segment_loses_exactly_its_cut_records() {
    for keep in [0, 4, 9] {
        let dir = tempfile::tempdir().unwrap();
        let (older, bounds) = write(dir.path(), 1..=10);
        write(dir.path(), 11..=15);
        cut(&older, bounds[keep] + 3);
        let (seen, scan) = run(dir.path(), 0, Mode::Repair);
        let kept = keep as u64;
        assert_eq!(seen, (1..=kept).chain(11..=15).collect::<Vec<_>>(), "kept {keep}");
        assert_eq!(scan.losses.len(), 1);
        assert_eq!((scan.losses[0].first, scan.losses[0].last), (kept + 1, 10));
        assert!(
            scan.losses[0].cause.contains("at the end of wal-00000000000000000001.seg"),
            "{}",
            scan.losses[0].cause
        );
    }
}

#[test]
fn a_deleted_segment_is_a_reported_gap() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1..=10);
    let (middle, _) = write(dir.path(), 11..=20);
    write(dir.path(), 21..=25);
    fs::remove_file(middle).unwrap();
    let (seen, scan) = run(dir.path(), 0, Mode::Repair);
    assert_eq!(seen, (1..=10).chain(21..=25).collect::<Vec<_>>());
    assert_eq!((scan.losses[0].first, scan.losses[0].last), (11, 20));
    assert!(scan.losses[0].cause.contains("segment file was removed"), "{}", scan.losses[0].cause);
}

#[test]
fn a_deleted_first_segment_loses_only_what_the_store_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = write(dir.path(), 1..=10);
    write(dir.path(), 11..=20);
    fs::remove_file(first).unwrap();
    let (_, scan) = run(dir.path(), 4, Mode::Repair);
    assert_eq!((scan.losses[0].first, scan.losses[0].last), (5, 10), "1-4 are in the store already");
    let (_, acked) = run(dir.path(), 10, Mode::Repair);
    assert!(acked.losses.is_empty());
}

#[test]
fn a_damaged_magic_keeps_the_records_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let (older, _) = write(dir.path(), 1..=5);
    write(dir.path(), 6..=6);
    flip(&older, 2);
    let (seen, scan) = run(dir.path(), 0, Mode::Repair);
    assert_eq!(seen, [1, 2, 3, 4, 5, 6]);
    assert!(scan.losses.is_empty());
    assert_eq!(&fs::read(&older).unwrap()[..8], MAGIC, "rewritten with a good magic");
}

#[test]
fn inspecting_reports_the_same_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (older, bounds) = write(dir.path(), 1..=10);
    let (last, last_bounds) = write(dir.path(), 11..=20);
    flip(&older, bounds[3] + 20);
    cut(&last, last_bounds[5] + 2);
    let before: Vec<_> = [&older, &last].iter().map(|p| fs::read(p).unwrap()).collect();
    let (seen, scan) = run(dir.path(), 0, Mode::Inspect);
    assert_eq!(seen, all_but(1..=15, &[4]));
    assert_eq!(scan.lost(), 1);
    assert!(!scan.is_clean());
    let after: Vec<_> = [&older, &last].iter().map(|p| fs::read(p).unwrap()).collect();
    assert_eq!(before, after);
    assert!(!dir.path().join("quarantine").exists());
}

#[test]
fn an_empty_spool_resumes_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (_, scan) = run(dir.path(), 41, Mode::Repair);
    assert_eq!(scan.last, Seq(41));
}

#[test]
fn a_known_gap_is_not_a_loss_again() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1..=10);
    let (middle, _) = write(dir.path(), 11..=20);
    write(dir.path(), 21..=25);
    fs::remove_file(middle).unwrap();
    let scan = scan(dir.path(), Seq(0), &[(11, 20)], Mode::Repair, |_| {}).unwrap();
    assert!(scan.losses.is_empty(), "{:?}", scan.losses);
    let partly = super::scan(dir.path(), Seq(0), &[(11, 14)], Mode::Repair, |_| {}).unwrap();
    assert_eq!(partly.losses.iter().map(|l| (l.first, l.last)).collect::<Vec<_>>(), [(15, 20)]);
    assert_eq!(uncovered(1, 10, &[(3, 4), (7, 7)]), [(1, 2), (5, 6), (8, 10)]);
}
