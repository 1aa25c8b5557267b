//! Files are cut by rows and by bytes while the service runs, and never span two dt values. The
//! cut by age is the batcher's unit test on paused time (`src/batcher/tests.rs`): no test waits
//! for a flush interval to pass.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use oncehub_bridge::commands::samples;
use serde_json::json;

use crate::helpers::{TestApp, duck, parquet_files};

async fn wait_for_files(lake: &Path, n: usize) -> Vec<std::path::PathBuf> {
    let start = Instant::now();
    loop {
        let files = parquet_files(lake);
        if files.len() >= n {
            return files;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "only {} of {n} files after 30s", files.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rows_in(file: &Path) -> i64 {
    duck(&format!("SELECT count(*) FROM read_parquet('{}')", file.display())).rows[0][0].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rows_cuts_files_while_running() {
    let app = TestApp::spawn(|s| s.flush.max_rows = NonZeroUsize::new(5).unwrap()).await;
    for i in 0..12 {
        let e = samples::event("booking.scheduled", &format!("EVNT-ROWS-{i}"), 0, Utc::now());
        assert_eq!(app.post_signed(serde_json::to_vec(&e).unwrap()).await.status(), 200);
    }
    let files = wait_for_files(&app.lake, 2).await;
    assert_eq!(files.iter().map(|f| rows_in(f)).collect::<Vec<_>>(), vec![5, 5], "two full files before shutdown");
    let stopped = app.stop().await;
    let lake = stopped.lake.clone();
    let files = parquet_files(&lake);
    assert_eq!(files.iter().map(|f| rows_in(f)).sum::<i64>(), 12);
    assert_eq!(files.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_cuts_files_and_bounds_their_size() {
    let app = TestApp::spawn(|s| s.flush.max_bytes = NonZeroUsize::new(20_000).unwrap()).await;
    for i in 0..40 {
        let e = samples::event("booking.canceled", &format!("EVNT-BYTES-{i}"), 2, Utc::now());
        assert_eq!(app.post_signed(serde_json::to_vec(&e).unwrap()).await.status(), 200);
    }
    let stopped = app.stop().await;
    let lake = stopped.lake.clone();
    let files = parquet_files(&lake);
    assert!(files.len() >= 2, "40 deliveries of ~1.5 KB exceed 20 kB: {files:?}");
    assert_eq!(files.iter().map(|f| rows_in(f)).sum::<i64>(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_never_spans_two_dates() {
    let app = TestApp::spawn(|_| {}).await;
    let day1 = "2026-03-01T23:59:59Z".parse().unwrap();
    let day2 = "2026-03-02T00:00:00Z".parse().unwrap();
    for (i, t) in [day1, day2, day1].into_iter().enumerate() {
        let e = samples::event("booking.completed", &format!("EVNT-DT-{i}"), 1, t);
        assert_eq!(app.post_signed(serde_json::to_vec(&e).unwrap()).await.status(), 200);
    }
    let stopped = app.stop().await;
    let lake = stopped.lake.clone();
    let d = duck(&format!(
        "SELECT CAST(dt AS VARCHAR), count(*), count(DISTINCT filename) FROM read_parquet('{}/bookings/dt=*/*.parquet', hive_partitioning = true, filename = true) GROUP BY ALL ORDER BY 1",
        lake.display()
    ));
    assert_eq!(
        d.rows,
        vec![vec![json!("2026-03-01"), json!(2), json!(1)], vec![json!("2026-03-02"), json!(1), json!(1)]]
    );
}
