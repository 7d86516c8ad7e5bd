//! What is worth retrying (pure) and the retry loop that uses it.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{SendError, Sink};
use crate::finding::Finding;

/// Classifies an HTTP status: `None` for success, otherwise the error.
/// 408, 429 and 5xx are retriable (429 and 503 honour `Retry-After`), every
/// other status is a permanent rejection.
pub fn classify_status(status: u16, retry_after: Option<&str>, body: &str) -> Option<SendError> {
    if (200..300).contains(&status) {
        return None;
    }
    let snippet: String = body.chars().take(200).collect();
    // A receiver's error page may echo its own URL, which can carry a
    // token: no URL from the body goes into the error text.
    let snippet = crate::secret::scrub_urls(snippet.trim());
    let error = if snippet.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {snippet}")
    };
    if status == 408 || status == 429 || (500..600).contains(&status) {
        Some(SendError::Retriable {
            error,
            retry_after: retry_after.and_then(parse_retry_after),
            status: Some(status),
        })
    } else {
        Some(SendError::Permanent {
            error,
            status: Some(status),
        })
    }
}

/// AWS error codes worth retrying: throttling, the service's own
/// failures, and credentials that expired between refreshes.
const AWS_RETRIABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "KMSThrottlingException",
    "SlowDown",
    "InternalError",
    "InternalFailure",
    "InternalFailureException",
    "InternalException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
];

/// AWS error codes that end retrying at once: the caller may not, the
/// target does not exist, or the request is malformed.
const AWS_PERMANENT_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "NotAuthorizedForSourceException",
    "NotAuthorizedForDetailTypeException",
    "NotFound",
    "NotFoundException",
    "ResourceNotFoundException",
    "InvalidParameter",
    "InvalidParameterException",
    "InvalidParameterValue",
    "ValidationException",
    "ValidationError",
    "MalformedDetail",
    "InvalidArgument",
    "KMSDisabled",
    "KMSNotFound",
    "KMSAccessDenied",
];

/// Classifies an AWS service error by its code and HTTP status (when the
/// error came with a response): throttling, internal errors, 408, 429 and
/// 5xx are retriable; access denied, a missing topic or bus and validation
/// errors are permanent, as is any other 4xx.
pub fn classify_aws(code: Option<&str>, status: Option<u16>, message: &str) -> SendError {
    let message = crate::secret::scrub_urls(message.trim());
    let message: String = message.chars().take(200).collect();
    let error = match (code, message.is_empty()) {
        (Some(c), false) => format!("{c}: {message}"),
        (Some(c), true) => c.to_owned(),
        (None, false) => message,
        (None, true) => status.map_or("AWS error".to_owned(), |s| format!("HTTP {s}")),
    };
    let retriable = match code {
        Some(c) if AWS_RETRIABLE_CODES.contains(&c) => true,
        Some(c) if AWS_PERMANENT_CODES.contains(&c) => false,
        _ => status.is_none_or(|s| s == 408 || s == 429 || s >= 500),
    };
    if retriable {
        SendError::Retriable {
            error,
            retry_after: None,
            status,
        }
    } else {
        SendError::Permanent { error, status }
    }
}

/// `Retry-After` as delay seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[derive(Debug, Clone)]
pub struct Policy {
    /// Give up once this much time has passed since the first attempt.
    pub deadline: Duration,
    pub initial: Duration,
    pub max: Duration,
    /// Give up after this many attempts even inside the deadline; `None`
    /// for no such cap. The daemon uses none: its deadline is the budget.
    /// `test-alert` caps attempts so a dead receiver is reported quickly.
    pub max_attempts: Option<u32>,
}

impl Policy {
    pub fn with_deadline(deadline: Duration) -> Self {
        Policy {
            deadline,
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            max_attempts: None,
        }
    }

    /// Exponential backoff with jitter: a random wait between half and all
    /// of `initial * 2^attempt`, capped at `max`, so many alerts failing at
    /// once do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << attempt.min(20));
        let ceiling = exp.min(self.max);
        let half = ceiling / 2;
        half + ceiling.saturating_sub(half).mul_f64(rand::random::<f64>())
    }
}

/// The wait before the next attempt, or `None` when that attempt would
/// start past the deadline: then retrying ends now, as a failure. A
/// receiver's `Retry-After` is honoured but cannot stretch the deadline
/// (a header of `u64::MAX` seconds or a date centuries ahead must end
/// retrying, not overflow the clock arithmetic).
pub fn next_wait(
    elapsed: Duration,
    retry_after: Option<Duration>,
    backoff: Duration,
    policy: &Policy,
) -> Option<Duration> {
    let wait = retry_after
        .map(|r| r.min(policy.deadline.saturating_add(Duration::from_secs(1))))
        .unwrap_or_default()
        .max(backoff);
    match elapsed.checked_add(wait) {
        Some(next) if next <= policy.deadline => Some(wait),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("rejected: {error}")]
    Rejected { error: String, status: Option<u16> },
    /// `status`: the HTTP status of the last answer, when there was one
    /// (an answer that was an error, 408, 429 or 5xx, or none at all).
    #[error("gave up after {attempts} attempt(s): {last}")]
    GaveUp {
        attempts: u32,
        last: String,
        status: Option<u16>,
    },
    #[error("cancelled by shutdown after {attempts} attempt(s)")]
    Cancelled { attempts: u32 },
}

/// Sends until success, a permanent rejection, the deadline or
/// cancellation. Returns the number of attempts on success. `on_retry` is
/// called before each wait with the attempt number, the wait and the error.
pub async fn send_with_retry(
    sink: &dyn Sink,
    finding: &Finding,
    policy: &Policy,
    cancel: &CancellationToken,
    mut on_retry: impl FnMut(u32, Duration, &SendError),
) -> Result<u32, DeliveryError> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = tokio::select! {
            r = sink.send(finding) => r,
            _ = cancel.cancelled() => return Err(DeliveryError::Cancelled { attempts: attempt }),
        };
        let err = match result {
            Ok(()) => return Ok(attempt),
            Err(SendError::Permanent { error, status }) => {
                return Err(DeliveryError::Rejected { error, status });
            }
            Err(e) => e,
        };
        let SendError::Retriable {
            retry_after,
            status,
            ..
        } = &err
        else {
            unreachable!()
        };
        let status = *status;
        let capped = policy.max_attempts.is_some_and(|max| attempt >= max);
        let wait = next_wait(
            started.elapsed(),
            *retry_after,
            policy.backoff(attempt - 1),
            policy,
        );
        let (false, Some(wait)) = (capped, wait) else {
            return Err(DeliveryError::GaveUp {
                attempts: attempt,
                last: err.to_string(),
                status,
            });
        };
        on_retry(attempt, wait, &err);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return Err(DeliveryError::Cancelled { attempts: attempt }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify_status(200, None, ""), None);
        assert_eq!(classify_status(204, None, ""), None);
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    classify_status(s, None, ""),
                    Some(SendError::Retriable { .. })
                ),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 410, 413, 422, 301] {
            assert!(
                matches!(
                    classify_status(s, None, ""),
                    Some(SendError::Permanent { .. })
                ),
                "{s}"
            );
        }
        assert_eq!(
            classify_status(429, Some("7"), "slow down"),
            Some(SendError::Retriable {
                error: "HTTP 429: slow down".into(),
                retry_after: Some(Duration::from_secs(7)),
                status: Some(429),
            })
        );
        let long = "x".repeat(1000);
        let Some(SendError::Permanent { error, status }) = classify_status(400, None, &long) else {
            panic!()
        };
        assert!(error.len() < 220);
        assert_eq!(status, Some(400));
        let Some(SendError::Permanent { error, .. }) = classify_status(
            404,
            None,
            "no such hook https://hooks.example.com/services/T0/B0/secret",
        ) else {
            panic!()
        };
        assert_eq!(error, "HTTP 404: no such hook <url>");
    }

    #[test]
    fn aws_errors() {
        let retriable =
            |c: Option<&str>, s| matches!(classify_aws(c, s, "m"), SendError::Retriable { .. });
        for c in [
            "Throttling",
            "ThrottlingException",
            "InternalFailure",
            "ServiceUnavailable",
        ] {
            assert!(retriable(Some(c), Some(400)), "{c}");
        }
        for c in [
            "AccessDenied",
            "AuthorizationError",
            "NotFound",
            "ResourceNotFoundException",
            "ValidationException",
            "InvalidParameter",
        ] {
            assert!(!retriable(Some(c), Some(500)), "{c}");
        }
        assert!(retriable(Some("Unheard"), Some(503)));
        assert!(retriable(Some("Unheard"), Some(429)));
        assert!(!retriable(Some("Unheard"), Some(400)));
        // A per-entry failure has no status: unknown codes are retried.
        assert!(retriable(Some("Unheard"), None));
        assert!(!retriable(Some("MalformedDetail"), None));
        assert_eq!(
            classify_aws(
                Some("NotFound"),
                Some(404),
                "Topic does not exist https://sns.example/x"
            ),
            SendError::Permanent {
                error: "NotFound: Topic does not exist <url>".into(),
                status: Some(404)
            }
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("18446744073709551615"),
            Some(Duration::from_secs(u64::MAX))
        );
        let far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
        assert!(far > Duration::from_secs(3600 * 24 * 365 * 7000), "{far:?}");
    }

    #[test]
    fn a_wait_past_the_deadline_ends_retrying() {
        let p = Policy::with_deadline(Duration::from_secs(60));
        let b = Duration::from_millis(300);
        assert_eq!(
            next_wait(Duration::ZERO, None, b, &p),
            Some(b),
            "backoff alone"
        );
        assert_eq!(
            next_wait(Duration::from_secs(1), Some(Duration::from_secs(7)), b, &p),
            Some(Duration::from_secs(7)),
            "Retry-After honoured inside the deadline"
        );
        assert_eq!(
            next_wait(
                Duration::from_secs(50),
                Some(Duration::from_secs(11)),
                b,
                &p
            ),
            None,
            "Retry-After past the deadline"
        );
        for huge in [Duration::from_secs(u64::MAX), Duration::MAX] {
            assert_eq!(next_wait(Duration::from_secs(1), Some(huge), b, &p), None);
            assert_eq!(next_wait(Duration::MAX, Some(huge), b, &p), None);
        }
        assert_eq!(next_wait(Duration::MAX, None, b, &p), None);
    }

    /// Fails every attempt with a retriable error, counting them.
    struct AlwaysBusy(std::sync::atomic::AtomicU32);

    impl Sink for AlwaysBusy {
        fn send<'a>(&'a self, _: &'a Finding) -> crate::sink::BoxFuture<'a, Result<(), SendError>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async {
                Err(SendError::Retriable {
                    error: "HTTP 503".into(),
                    retry_after: None,
                    status: Some(503),
                })
            })
        }
    }

    #[tokio::test]
    async fn an_attempt_cap_ends_retrying_inside_the_deadline() {
        let rec = crate::event::Record::parse(r#"{"eventID":"e"}"#).unwrap();
        let f = Finding::new(
            &rec,
            "r",
            "t",
            crate::finding::Severity::Low,
            "r".into(),
            None,
        );
        let sink = AlwaysBusy(Default::default());
        let mut policy = Policy::with_deadline(Duration::from_secs(60));
        policy.initial = Duration::from_millis(1);
        policy.max_attempts = Some(2);
        let r = send_with_retry(&sink, &f, &policy, &CancellationToken::new(), |_, _, _| {}).await;
        assert!(
            matches!(r, Err(DeliveryError::GaveUp { attempts: 2, ref last, status: Some(503) }) if last == "HTTP 503"),
            "{r:?}"
        );
        assert_eq!(sink.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = Policy::with_deadline(Duration::from_secs(60));
        for attempt in 0..30 {
            let b = p.backoff(attempt);
            let ceiling = (p.initial * 2u32.pow(attempt.min(20))).min(p.max);
            assert!(b >= ceiling / 2 && b <= ceiling, "{attempt}: {b:?}");
        }
    }
}
