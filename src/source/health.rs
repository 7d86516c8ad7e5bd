//! Whether each source can reach its upstream. A source whose receive calls
//! keep failing (the SQS endpoint down, credentials expired, the queue
//! deleted) is *degraded*: `/readyz` answers 503 naming it and
//! `rootwatch_source_up{source}` is 0, until a receive succeeds again.
//! Nothing restarts: a restart does not bring an endpoint back, and the
//! workers keep retrying with backoff, so the source recovers by itself.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::telemetry;

/// Receive calls in a row that must fail before a source counts as
/// degraded. Every worker of a source counts towards it, so with the
/// default 4 workers and their backoff this is about a second of failing
/// calls: one blip (a single timed-out long poll) does not flip readiness,
/// an outage does at once. The time a probe needs to see it is the
/// probe's own business (`failureThreshold` × `periodSeconds`).
pub const DEGRADED_AFTER_FAILURES: u32 = 3;

/// Error text kept for `/readyz`, in bytes.
const MAX_ERROR_TEXT: usize = 300;

#[derive(Debug)]
struct Streak {
    failures: u32,
    since: Instant,
    last_error: String,
}

/// The failure streak of every source that has one.
#[derive(Debug, Default)]
pub struct SourceHealth(Mutex<BTreeMap<String, Streak>>);

impl SourceHealth {
    /// A receive call of `source` succeeded: the streak ends, and a
    /// degraded source is up again.
    pub fn receive_ok(&self, source: &str, now: Instant) {
        let ended = self.0.lock().expect("health lock").remove(source);
        if let Some(s) = ended
            && s.failures >= DEGRADED_AFTER_FAILURES
        {
            telemetry::source_recovered(source, s.failures, now.duration_since(s.since));
        }
    }

    /// A receive call of `source` failed with `error`.
    pub fn receive_failed(&self, source: &str, error: &str, now: Instant) {
        let mut all = self.0.lock().expect("health lock");
        let s = all.entry(source.to_owned()).or_insert_with(|| Streak {
            failures: 0,
            since: now,
            last_error: String::new(),
        });
        s.failures += 1;
        s.last_error = bounded(error);
        if s.failures == DEGRADED_AFTER_FAILURES {
            telemetry::source_degraded(source, s.failures, &s.last_error);
        }
    }

    /// One line per degraded source, naming it and the problem; empty when
    /// every source is up.
    pub fn problems(&self, now: Instant) -> Vec<String> {
        self.0
            .lock()
            .expect("health lock")
            .iter()
            .filter(|(_, s)| s.failures >= DEGRADED_AFTER_FAILURES)
            .map(|(name, s)| {
                let secs = now.duration_since(s.since).as_secs();
                format!(
                    "source `{name}`: the last {} receive calls failed (for {secs} s): {}",
                    s.failures, s.last_error
                )
            })
            .collect()
    }

    pub fn is_degraded(&self) -> bool {
        self.0
            .lock()
            .expect("health lock")
            .values()
            .any(|s| s.failures >= DEGRADED_AFTER_FAILURES)
    }
}

/// The error on one line, at most [`MAX_ERROR_TEXT`] bytes.
fn bounded(error: &str) -> String {
    let one_line: String = error
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.len() <= MAX_ERROR_TEXT {
        return one_line;
    }
    let mut end = MAX_ERROR_TEXT;
    while !one_line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &one_line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn degraded_after_consecutive_failures_up_after_one_success() {
        telemetry::prometheus();
        let h = SourceHealth::default();
        let t0 = Instant::now();
        for i in 1..DEGRADED_AFTER_FAILURES {
            h.receive_failed("q", "connection refused", t0);
            assert!(!h.is_degraded(), "after {i} failures");
        }
        // A success in between starts the count again.
        h.receive_ok("q", t0);
        for _ in 1..DEGRADED_AFTER_FAILURES {
            h.receive_failed("q", "connection refused", t0);
        }
        assert!(!h.is_degraded());
        h.receive_failed("q", "HTTP 500\nInternalError", t0 + Duration::from_secs(7));
        assert!(h.is_degraded());
        h.receive_failed("other", "x", t0);
        assert_eq!(
            h.problems(t0 + Duration::from_secs(12)),
            ["source `q`: the last 3 receive calls failed (for 12 s): HTTP 500 InternalError"]
        );
        h.receive_ok("q", t0 + Duration::from_secs(13));
        assert!(!h.is_degraded());
        assert!(h.problems(t0).is_empty());
    }

    #[test]
    fn error_text_is_bounded_on_a_char_boundary() {
        let long = "é".repeat(400);
        let b = bounded(&long);
        assert!(b.len() <= MAX_ERROR_TEXT + '…'.len_utf8(), "{}", b.len());
        assert!(b.ends_with('…'));
        assert_eq!(bounded("short"), "short");
    }
}
