//! What the status panel counts: deliveries per trigger since start and in the last hour (per
//! minute buckets), rejections by reason, duplicates, the last accepted delivery, files and rows
//! per table, and the receive-to-queryable lag of the last rows that landed.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Lag samples kept for the percentiles.
const LAG_SAMPLES: usize = 4096;

/// Minutes in the "last hour" window.
const MINUTES: usize = 60;

#[derive(Debug, Default)]
pub(super) struct Counters {
    since_start: BTreeMap<&'static str, u64>,
    /// (minute since the epoch, trigger → count), oldest first.
    minutes: VecDeque<(i64, BTreeMap<&'static str, u64>)>,
    rejected: BTreeMap<&'static str, u64>,
    duplicates: u64,
    last_accepted: Option<DateTime<Utc>>,
    /// table → (files, rows).
    written: BTreeMap<&'static str, (u64, u64)>,
    lags: VecDeque<f64>,
}

impl Counters {
    pub(super) fn accepted(&mut self, trigger: &'static str, at: DateTime<Utc>) {
        *self.since_start.entry(trigger).or_default() += 1;
        let minute = at.timestamp().div_euclid(60);
        if self.minutes.back().is_none_or(|(m, _)| *m != minute) {
            self.minutes.push_back((minute, BTreeMap::new()));
            while self.minutes.front().is_some_and(|(m, _)| *m <= minute - MINUTES as i64) {
                self.minutes.pop_front();
            }
        }
        if let Some((_, counts)) = self.minutes.back_mut() {
            *counts.entry(trigger).or_default() += 1;
        }
        self.last_accepted = Some(at);
    }

    pub(super) fn duplicate(&mut self) {
        self.duplicates += 1;
    }

    pub(super) fn rejected(&mut self, reason: &'static str) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    /// A file of `rows` rows is in `table`; `lags` are its rows' receive-to-queryable seconds.
    pub(super) fn landed(&mut self, table: &'static str, rows: u64, lags: impl Iterator<Item = f64>) {
        let w = self.written.entry(table).or_default();
        w.0 += 1;
        w.1 += rows;
        for lag in lags {
            if self.lags.len() == LAG_SAMPLES {
                self.lags.pop_front();
            }
            self.lags.push_back(lag);
        }
    }

    /// The counters as the status JSON shows them, at `now`.
    pub(super) fn to_json(&self, now: DateTime<Utc>) -> Value {
        let minute = now.timestamp().div_euclid(60);
        let mut last_hour: BTreeMap<&str, u64> = BTreeMap::new();
        for (m, counts) in &self.minutes {
            if *m > minute - MINUTES as i64 {
                for (trigger, n) in counts {
                    *last_hour.entry(trigger).or_default() += n;
                }
            }
        }
        let mut lags: Vec<f64> = self.lags.iter().copied().collect();
        lags.sort_by(f64::total_cmp);
        let pct = |p: f64| (!lags.is_empty()).then(|| lags[((lags.len() - 1) as f64 * p).round() as usize]);
        let written: BTreeMap<&str, Value> =
            self.written.iter().map(|(t, (files, rows))| (*t, json!({"files": files, "rows": rows}))).collect();
        json!({
            "deliveries": {"since_start": self.since_start, "last_hour": last_hour},
            "last_accepted": self.last_accepted.map(|t| t.to_rfc3339()),
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "written": written,
            "dead_letters": self.written.get("dead_letter").map_or(0, |w| w.1),
            "lag_seconds": {"p50": pct(0.5), "p99": pct(0.99), "samples": lags.len()},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_hour_forgets_older_minutes_and_lag_percentiles_come_from_landed_rows() {
        let mut c = Counters::default();
        let now = Utc::now();
        c.accepted("booking.scheduled", now - chrono::Duration::minutes(90));
        c.accepted("booking.scheduled", now - chrono::Duration::minutes(5));
        c.accepted("conversation.started", now);
        c.rejected("invalid_signature");
        c.duplicate();
        c.landed("bookings", 2, [0.5, 1.5].into_iter());
        c.landed("dead_letter", 1, [3.0].into_iter());
        let j = c.to_json(now);
        assert_eq!(j["deliveries"]["since_start"]["booking.scheduled"], 2);
        assert_eq!(j["deliveries"]["last_hour"]["booking.scheduled"], 1);
        assert_eq!(j["deliveries"]["last_hour"]["conversation.started"], 1);
        assert_eq!((j["rejected"]["invalid_signature"].as_u64(), j["duplicates"].as_u64()), (Some(1), Some(1)));
        assert_eq!(j["written"]["bookings"], json!({"files": 1, "rows": 2}));
        assert_eq!(j["dead_letters"], 1);
        assert_eq!((j["lag_seconds"]["p50"].as_f64(), j["lag_seconds"]["p99"].as_f64()), (Some(1.5), Some(3.0)));
    }
}
