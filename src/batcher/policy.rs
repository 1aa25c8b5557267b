//! The flush decision, pure: a file is cut when its rows, its bytes or its age reach a limit.

use std::num::NonZeroUsize;
use std::time::Duration;

/// When a pending file is cut, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushLimits {
    pub max_rows: NonZeroUsize,
    /// In-memory size of the pending file (encoded pages plus rows not yet encoded).
    pub max_bytes: NonZeroUsize,
    pub max_age: Duration,
}

impl Default for FlushLimits {
    fn default() -> Self {
        FlushLimits {
            max_rows: NonZeroUsize::new(100_000).expect("non-zero"),
            max_bytes: NonZeroUsize::new(64 * 1024 * 1024).expect("non-zero"),
            max_age: Duration::from_secs(60),
        }
    }
}

/// Why a file was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    Rows,
    Bytes,
    Age,
    Shutdown,
    /// Replay after a restart: the file is cut where a flush intent says it was cut before.
    Replay,
}

impl FlushReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Rows => "rows",
            FlushReason::Bytes => "bytes",
            FlushReason::Age => "age",
            FlushReason::Shutdown => "shutdown",
            FlushReason::Replay => "replay",
        }
    }
}

/// `Some(reason)` when a pending file of `rows` rows, `bytes` bytes and `age` must be cut now.
pub fn should_flush(rows: usize, bytes: usize, age: Duration, limits: &FlushLimits) -> Option<FlushReason> {
    if rows == 0 {
        None
    } else if rows >= limits.max_rows.get() {
        Some(FlushReason::Rows)
    } else if bytes >= limits.max_bytes.get() {
        Some(FlushReason::Bytes)
    } else if age >= limits.max_age {
        Some(FlushReason::Age)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FlushLimits {
        FlushLimits {
            max_rows: NonZeroUsize::new(10).unwrap(),
            max_bytes: NonZeroUsize::new(1000).unwrap(),
            max_age: Duration::from_secs(5),
        }
    }

    #[test]
    fn each_limit_triggers_on_its_own() {
        let l = limits();
        assert_eq!(should_flush(9, 999, Duration::from_secs(4), &l), None);
        assert_eq!(should_flush(10, 0, Duration::ZERO, &l), Some(FlushReason::Rows));
        assert_eq!(should_flush(1, 1000, Duration::ZERO, &l), Some(FlushReason::Bytes));
        assert_eq!(should_flush(1, 0, Duration::from_secs(5), &l), Some(FlushReason::Age));
    }

    #[test]
    fn an_empty_buffer_is_never_flushed() {
        assert_eq!(should_flush(0, 5000, Duration::from_secs(100), &limits()), None);
    }
}
