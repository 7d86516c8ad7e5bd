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

#[derive(Debug)]
struct Streak {
    failures: u32,
    since: Instant,
    /// What kind of failure the last one was: `/readyz` names the kind,
    /// never the service's error text (it carries account ids, role and
    /// user ARNs, request ids). The text goes to the log.
    kind: &'static str,
}

/// Error codes AWS services use when a request is over a rate or quota:
/// the caller should slow down, nothing is wrong with the request.
pub fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "Throttling"
                | "ThrottlingException"
                | "ThrottledException"
                | "RequestThrottled"
                | "RequestThrottledException"
                | "TooManyRequestsException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "RateExceeded"
                | "SlowDown"
                | "AWS.SimpleQueueService.RequestThrottled"
                | "KMS.ThrottlingException"
        )
    )
}

/// The kind of a failed AWS call, from its error code (`None`: no answer,
/// the connection failed or timed out): `throttled`, `denied`, `not_found`,
/// `server_error`, `unreachable` or `error`.
pub fn error_kind(code: Option<&str>) -> &'static str {
    let Some(code) = code else {
        return "unreachable";
    };
    const DENIED: &[&str] = &[
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "AuthFailure",
        "OptInRequired",
        "KMS.AccessDeniedException",
        "KMS.DisabledException",
    ];
    const NOT_FOUND: &[&str] = &[
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "ResourceNotFoundException",
        "NoSuchBucket",
        "NoSuchKey",
    ];
    const SERVER: &[&str] = &[
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceException",
    ];
    if is_throttling(Some(code)) {
        "throttled"
    } else if DENIED.contains(&code) || code.ends_with("NotAuthorized") {
        "denied"
    } else if NOT_FOUND.contains(&code) {
        "not_found"
    } else if SERVER.contains(&code) || code.ends_with("InternalError") {
        "server_error"
    } else {
        "error"
    }
}

/// The failure streak of every source that has one.
#[derive(Debug, Default)]
pub struct SourceHealth(Mutex<BTreeMap<String, Streak>>);

impl SourceHealth {
    /// A call of `source` to its upstream succeeded: the streak ends, and a
    /// degraded source is up again.
    pub fn receive_ok(&self, source: &str, now: Instant) {
        let ended = self.0.lock().expect("health lock").remove(source);
        if let Some(s) = ended
            && s.failures >= DEGRADED_AFTER_FAILURES
        {
            telemetry::source_recovered(source, s.failures, now.duration_since(s.since));
        }
    }

    /// A call of `source` to its upstream failed: `kind` (see
    /// [`error_kind`]) is what `/readyz` shows, `error` goes to the log.
    pub fn receive_failed(&self, source: &str, kind: &'static str, error: &str, now: Instant) {
        let mut all = self.0.lock().expect("health lock");
        let s = all.entry(source.to_owned()).or_insert_with(|| Streak {
            failures: 0,
            since: now,
            kind,
        });
        s.failures += 1;
        s.kind = kind;
        if s.failures == DEGRADED_AFTER_FAILURES {
            telemetry::source_degraded(source, s.failures, kind, error);
        }
    }

    /// One line per degraded source, naming it and the kind of problem;
    /// empty when every source is up.
    pub fn problems(&self, now: Instant) -> Vec<String> {
        self.0
            .lock()
            .expect("health lock")
            .iter()
            .filter(|(_, s)| s.failures >= DEGRADED_AFTER_FAILURES)
            .map(|(name, s)| {
                let secs = now.duration_since(s.since).as_secs();
                format!(
                    "source `{name}`: the last {} calls to its upstream failed (for {secs} s): {}",
                    s.failures, s.kind
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
            h.receive_failed("q", "unreachable", "connection refused", t0);
            assert!(!h.is_degraded(), "after {i} failures");
        }
        // A success in between starts the count again.
        h.receive_ok("q", t0);
        for _ in 1..DEGRADED_AFTER_FAILURES {
            h.receive_failed("q", "unreachable", "connection refused", t0);
        }
        assert!(!h.is_degraded());
        h.receive_failed(
            "q",
            "denied",
            "AccessDenied: User: arn:aws:sts::111122223333:assumed-role/rootwatch/i-0abc is not authorized",
            t0 + Duration::from_secs(7),
        );
        assert!(h.is_degraded());
        h.receive_failed("other", "error", "x", t0);
        assert_eq!(
            h.problems(t0 + Duration::from_secs(12)),
            ["source `q`: the last 3 calls to its upstream failed (for 12 s): denied"]
        );
        h.receive_ok("q", t0 + Duration::from_secs(13));
        assert!(!h.is_degraded());
        assert!(h.problems(t0).is_empty());
    }

    #[test]
    fn error_kinds() {
        for (code, kind) in [
            (None, "unreachable"),
            (Some("ThrottlingException"), "throttled"),
            (Some("AWS.SimpleQueueService.RequestThrottled"), "throttled"),
            (Some("AccessDeniedException"), "denied"),
            (Some("AccessDenied"), "denied"),
            (Some("ExpiredToken"), "denied"),
            (Some("InvalidClientTokenId"), "denied"),
            (Some("AWS.SimpleQueueService.NonExistentQueue"), "not_found"),
            (Some("ResourceNotFoundException"), "not_found"),
            (Some("InternalError"), "server_error"),
            (Some("com.amazonaws.sqs#InternalError"), "server_error"),
            (Some("ServiceUnavailable"), "server_error"),
            (Some("InvalidParameterValue"), "error"),
        ] {
            assert_eq!(error_kind(code), kind, "{code:?}");
        }
    }
}
