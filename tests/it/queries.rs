//! The README's "Query your data" queries, read from README.md, against lakes built by the real
//! binary from deliveries whose answers are known (late and out-of-order events, owners given as
//! ids and as objects, conversations that did and did not lead to a booking): in DuckDB over the
//! Delta views `schema ddl --engine duckdb` prints (`bookings_current` kept by `oncehub-bridge
//! current`), and in Spark 3.5 over the plain layout and the statements of `schema ddl --engine
//! spark --table-format parquet` (`bookings_current` a view). Both give the same answers.

use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use oncehub_bridge::commands::samples;
use serde_json::{Value, json};

use crate::helpers::{Binary, SECRET, duck, post_signed_to};

/// The ```sql blocks of the README section "Query your data", in order.
fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("\n## Query your data").expect("README has a Query your data section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    section.split("```sql\n").skip(1).map(|block| block.split("```").next().unwrap().to_owned()).collect()
}

struct Deliveries {
    events: Vec<Value>,
}

impl Deliveries {
    /// A booking event of `trigger` for `booking`, as sample variant `n % 3` with these facts.
    fn booking(
        &mut self,
        trigger: &str,
        booking: &str,
        owner: &str,
        start: &str,
        updated: &str,
        conversation: Option<&str>,
    ) {
        let n = self.events.len();
        let mut e = samples::event(trigger, &format!("EVNT-q-{n}"), n % 3, Utc::now());
        let data = &mut e["data"];
        data["id"] = json!(booking);
        // The same owner as an id string or as an expanded object: owner_id is the same either way.
        data["owner"] =
            if n % 3 == 2 { json!({"id": owner, "object": "user", "first_name": "O"}) } else { json!(owner) };
        data["starting_time"] = json!(start);
        data["last_updated_time"] = json!(updated);
        data["conversation"] = conversation.map_or(Value::Null, |c| json!(c));
        e["creation_time"] = json!(updated);
        self.events.push(e);
    }

    /// A conversation event of `trigger`; variant 0 has bot BOT-62774A40FB, variant 1 BOT-STRINGID01.
    fn conversation(&mut self, trigger: &str, conversation: &str, variant: usize, updated: &str) {
        let n = self.events.len();
        let mut e = samples::event(trigger, &format!("EVNT-q-{n}"), variant, Utc::now());
        e["data"]["id"] = json!(conversation);
        e["data"]["last_updated_time"] = json!(updated);
        e["creation_time"] = json!(updated);
        self.events.push(e);
    }
}

fn known_deliveries() -> Vec<Value> {
    let mut d = Deliveries { events: Vec::new() };
    let (d1, d2, d3) = ("2026-11-10T12:00:00Z", "2026-11-11T12:00:00Z", "2026-11-12T12:00:00Z");
    let t = |h: u32| format!("2026-11-0{}T09:00:00Z", h);
    // Owner A: completed, no-show, completed.
    d.booking("booking.scheduled", "BKNG-1", "USR-A", d1, &t(1), None);
    d.booking("booking.completed", "BKNG-1", "USR-A", d1, &t(5), None);
    d.booking("booking.scheduled", "BKNG-2", "USR-A", d1, &t(1), None);
    d.booking("booking.no_show", "BKNG-2", "USR-A", d1, &t(6), None);
    d.booking("booking.scheduled", "BKNG-3", "USR-A", d2, &t(2), None);
    d.booking("booking.completed", "BKNG-3", "USR-A", d2, &t(7), None);
    // Owner B: no-show, canceled, and a rescheduled booking whose older "scheduled" arrives last.
    d.booking("booking.scheduled", "BKNG-4", "USR-B", d2, &t(2), None);
    d.booking("booking.no_show", "BKNG-4", "USR-B", d2, &t(7), None);
    d.booking("booking.scheduled", "BKNG-5", "USR-B", d2, &t(2), None);
    d.booking("booking.canceled", "BKNG-5", "USR-B", d2, &t(3), None);
    d.booking("booking.rescheduled", "BKNG-6", "USR-B", d2, &t(4), None);
    d.booking("booking.scheduled", "BKNG-6", "USR-B", d1, &t(1), None);
    // Owner C: two bookings that came from chatbot conversations.
    d.booking("booking.scheduled", "BKNG-7", "USR-C", d3, &t(3), Some("CVR-1"));
    d.booking("booking.completed", "BKNG-7", "USR-C", d3, &t(8), Some("CVR-1"));
    d.booking("booking.scheduled", "BKNG-8", "USR-C", d3, &t(4), Some("CVR-2"));
    // Conversations: bot X has 3 (one converted), bot Y has 1 (converted).
    d.conversation("conversation.started", "CVR-1", 0, &t(2));
    d.conversation("conversation.closed", "CVR-1", 0, &t(3));
    d.conversation("conversation.started", "CVR-2", 1, &t(3));
    d.conversation("conversation.closed", "CVR-2", 1, &t(4));
    d.conversation("conversation.started", "CVR-3", 0, &t(3));
    d.conversation("conversation.abandoned", "CVR-3", 0, &t(4));
    d.conversation("conversation.started", "CVR-4", 0, &t(5));
    d.events
}

fn rows(d: &crate::helpers::Duck) -> Vec<String> {
    d.rows
        .iter()
        .map(|r| {
            r.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect::<Vec<_>>().join(" | ")
        })
        .collect()
}

/// A lake of `known_deliveries` in `format`, and the `engine` statements for it.
async fn known_lake(dir: &std::path::Path, format: &str, engine: &str) -> String {
    let data = dir.join("data");
    let mut bin = Binary::serve(&data, &["--webhook-secret", SECRET, "--table-format", format], &[]);
    let client = reqwest::Client::new();
    for event in known_deliveries() {
        assert_eq!(post_signed_to(&client, &bin.url(), serde_json::to_vec(&event).unwrap()).await, 200);
    }
    assert!(bin.terminate(Duration::from_secs(30)).success());
    if format == "delta" {
        // bookings_current, as `serve` keeps it after a maintenance round.
        let out =
            Command::new(env!("CARGO_BIN_EXE_oncehub-bridge")).arg("current").arg("--data-dir").arg(&data).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("8 bookings from 15 bookings rows"));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["schema", "ddl", "--engine", engine, "--table-format", format, "--location"])
        .arg(data.join("lake"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_queries_answer_their_questions_on_a_known_lake() {
    let dir = tempfile::tempdir().unwrap();
    // Every view, those of the tables with no rows included: an empty Delta table is a table.
    let views = known_lake(dir.path(), "delta", "duckdb").await;
    assert_answers(|sql: &str| rows(&duck(&format!("{views}\n{sql}"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_gives_the_readme_queries_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let statements = known_lake(dir.path(), "parquet", "spark").await;
    assert_answers(|sql: &str| {
        let rows = crate::warehouse::spark(&statements, sql.trim().trim_end_matches(';'), dir.path());
        rows.iter()
            .map(|r| {
                r.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect()
    });
}

/// The answers the known deliveries give to the README's four queries, run by `run`.
fn assert_answers(run: impl Fn(&str) -> Vec<String>) {
    let queries = readme_queries();
    assert_eq!(queries.len(), 4, "the README section holds the four example queries");
    let latest = run(&queries[0]);
    let states: Vec<String> = latest.iter().map(|r| r.split(" | ").take(3).collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(
        states,
        [
            "BKNG-1 completed USR-A",
            "BKNG-2 no_show USR-A",
            "BKNG-3 completed USR-A",
            "BKNG-4 no_show USR-B",
            "BKNG-5 canceled USR-B",
            "BKNG-6 rescheduled USR-B",
            "BKNG-7 completed USR-C",
            "BKNG-8 scheduled USR-C",
        ],
        "{latest:#?}"
    );
    assert_eq!(
        run(&queries[1]),
        [
            "2026-11-10 | completed | 1",
            "2026-11-10 | no_show | 1",
            "2026-11-11 | canceled | 1",
            "2026-11-11 | completed | 1",
            "2026-11-11 | no_show | 1",
            "2026-11-11 | rescheduled | 1",
            "2026-11-12 | completed | 1",
            "2026-11-12 | scheduled | 1",
        ]
    );
    assert_eq!(run(&queries[2]), ["USR-A | 1 | 3 | 0.333", "USR-B | 1 | 1 | 1.0", "USR-C | 0 | 1 | 0.0"]);
    assert_eq!(run(&queries[3]), ["BOT-62774A40FB | 3 | 1 | 0.333", "BOT-STRINGID01 | 1 | 1 | 1.0"]);
}
