//! `rootwatch test-alert`: one synthetic, clearly labelled finding sent
//! through the configured sinks with the daemon's own sink and retry code,
//! so an operator (or a Helm test hook) can prove a sink delivers before a
//! real root login happens.
//!
//! The retry budget is short on purpose: at most [`MAX_ATTEMPTS`] attempts,
//! a retry only if it can start within the sink's `timeout_secs` of the
//! first one (a `Retry-After` longer than that ends retrying). A sink that
//! gives no HTTP answer in that budget is *unreachable*; one that keeps
//! answering 408/429/5xx has *failed*; any other 3xx/4xx is *rejected* at
//! once, as in the daemon.
//!
//! The run is a separate process with no admin server: nothing it sends is
//! counted in a daemon's metrics.

use std::fmt;

use tokio_util::sync::CancellationToken;

use crate::config::SinkSettings;
use crate::event::Record;
use crate::finding::{Finding, Severity};
use crate::secret::Secrets;
use crate::sink::retry::{DeliveryError, Policy, send_with_retry};

/// The rule id of the synthetic finding; no real rule has it.
pub const RULE: &str = "rootwatch-test";
/// Starts with `[TEST]` so that every format's headline says it is a test.
pub const TITLE: &str = "[TEST] rootwatch test alert";
pub const REASON: &str = "This is a test alert sent by rootwatch test-alert to check that this \
     sink delivers. No AWS activity caused it and no action is needed.";
/// Attempts per sink: one retry covers a blip, and a dead receiver is
/// reported within about two timeouts.
pub const MAX_ATTEMPTS: u32 = 2;

/// The synthetic finding, as of `now`. `nonce` makes each run's finding id
/// new, so a receiver that de-duplicates on it (PagerDuty's `dedup_key`,
/// Opsgenie's `alias`) opens a new alert for every test instead of folding
/// it into an earlier one. Pure.
pub fn finding(severity: Severity, now: chrono::DateTime<chrono::Utc>, nonce: u64) -> Finding {
    let record = serde_json::json!({
        "eventVersion": "1.09",
        "eventTime": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "rootwatch",
        "eventName": "RootwatchTestAlert",
        "eventID": format!("rootwatch-test-{nonce:016x}"),
        "eventType": "RootwatchTestAlert",
        "userAgent": concat!("rootwatch/", env!("CARGO_PKG_VERSION"), " test-alert"),
    })
    .to_string();
    let rec = Record::parse(&record).expect("the test record is valid JSON");
    Finding::new(&rec, RULE, TITLE, severity, REASON.to_owned(), None)
}

/// What happened to the test alert at one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    /// A permanent refusal (3xx/4xx other than 408/429, or a failed write).
    Rejected {
        status: Option<u16>,
        error: String,
    },
    /// It answered, but with 408/429/5xx until the budget ran out.
    Failed {
        attempts: u32,
        error: String,
    },
    /// No HTTP answer (connection refused or reset, DNS, TLS, timeout)
    /// within the budget.
    Unreachable {
        attempts: u32,
        error: String,
    },
    /// Not sent: `--respect-routing` and the sink's `min_severity` or
    /// `rules` do not take the finding.
    Skipped,
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tries = |n: &u32| if *n == 1 { "attempt" } else { "attempts" };
        match self {
            Outcome::Delivered { attempts } => {
                write!(f, "delivered ({attempts} {})", tries(attempts))
            }
            Outcome::Rejected {
                status: Some(s),
                error,
            } => write!(f, "rejected (status {s}): {error}"),
            Outcome::Rejected {
                status: None,
                error,
            } => write!(f, "rejected: {error}"),
            Outcome::Failed { attempts, error } => {
                write!(f, "failed after {attempts} {}: {error}", tries(attempts))
            }
            Outcome::Unreachable { attempts, error } => {
                write!(
                    f,
                    "unreachable after {attempts} {}: {error}",
                    tries(attempts)
                )
            }
            Outcome::Skipped => {
                f.write_str("skipped (its min_severity or rules do not take the test finding)")
            }
        }
    }
}

/// Which sinks to send to.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Sink names; empty: every sink.
    pub names: Vec<String>,
    /// Honour each sink's `min_severity` and `rules` (skipped otherwise).
    pub respect_routing: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("the config has no sinks")]
    NoSinks,
    #[error("no sink is named `{name}` (configured: {known})")]
    UnknownSink { name: String, known: String },
}

/// The sinks `sel` names, in config order.
pub fn select<'a>(
    sinks: &'a [SinkSettings],
    sel: &Selection,
) -> Result<Vec<&'a SinkSettings>, SelectError> {
    if sinks.is_empty() {
        return Err(SelectError::NoSinks);
    }
    if let Some(name) = sel
        .names
        .iter()
        .find(|n| !sinks.iter().any(|s| &s.name == *n))
    {
        return Err(SelectError::UnknownSink {
            name: name.clone(),
            known: sinks
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(sinks
        .iter()
        .filter(|s| sel.names.is_empty() || sel.names.contains(&s.name))
        .collect())
}

/// The short budget of this command for `sink` (see the module docs).
pub fn policy(sink: &SinkSettings) -> Policy {
    let mut p = Policy::with_deadline(sink.timeout);
    p.max_attempts = Some(MAX_ATTEMPTS);
    p
}

/// Maps the retry loop's result to an outcome; error text is scrubbed of
/// the sink's secrets and of anything that looks like a URL.
pub fn outcome(result: Result<u32, DeliveryError>, secrets: &Secrets) -> Outcome {
    let scrub = |e: &str| secrets.scrub(e);
    match result {
        Ok(attempts) => Outcome::Delivered { attempts },
        Err(DeliveryError::Rejected { error, status }) => Outcome::Rejected {
            status,
            error: scrub(&error),
        },
        // The receiver answered, with an error each time.
        Err(DeliveryError::GaveUp {
            attempts,
            last,
            status: Some(_),
        }) => Outcome::Failed {
            attempts,
            error: scrub(&last),
        },
        Err(DeliveryError::GaveUp {
            attempts,
            last,
            status: None,
        }) => Outcome::Unreachable {
            attempts,
            error: scrub(&last),
        },
        // Nothing cancels this command's deliveries.
        Err(DeliveryError::Cancelled { attempts }) => Outcome::Unreachable {
            attempts,
            error: "cancelled".to_owned(),
        },
    }
}

/// Sends `finding` to each sink in turn with the real sink code and the
/// short budget; returns each sink's outcome, in order.
pub async fn run(
    sinks: &[&SinkSettings],
    finding: &Finding,
    respect_routing: bool,
) -> Vec<Outcome> {
    let client = crate::sink::http_client();
    // SNS and EventBridge sinks send through the SDK, with the credential
    // chain the daemon would use.
    let aws = if sinks.iter().any(|s| s.kind.uses_aws()) {
        Some(crate::aws::load_defaults().await)
    } else {
        None
    };
    let never = CancellationToken::new();
    let mut out = Vec::with_capacity(sinks.len());
    for s in sinks {
        if respect_routing && !s.accepts(&finding.rule, finding.severity) {
            out.push(Outcome::Skipped);
            continue;
        }
        let sink = crate::sink::build_with(s, &client, aws.as_ref());
        let result =
            send_with_retry(sink.as_ref(), finding, &policy(s), &never, |_, _, _| {}).await;
        out.push(outcome(result, &Secrets::of_sink(&s.kind)));
    }
    out
}

/// Exit 0 only when every sink sent to delivered (and at least one was).
pub fn all_delivered(outcomes: &[Outcome]) -> bool {
    let sent: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| **o != Outcome::Skipped)
        .collect();
    !sent.is_empty() && sent.iter().all(|o| o.delivered())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::{check, opsgenie, pagerduty, slack, teams};
    use crate::sink::retry::classify_status;

    fn test_finding() -> Finding {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T07:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        finding(Severity::Low, now, 7)
    }

    /// Every format says it is a test where a person looks first, and
    /// passes the payload checks of the real formats.
    #[test]
    fn the_test_finding_is_unmistakable_in_every_format() {
        let f = test_finding();
        assert_eq!(f.rule, RULE);
        assert_eq!(f.severity, Severity::Low);
        assert!(f.mitre_attack.is_none());
        check::all_formats(&f).unwrap();
        let json: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
        assert!(json["title"].as_str().unwrap().starts_with("[TEST]"));
        assert!(json["reason"].as_str().unwrap().contains("test alert"));
        let pd = pagerduty::body(&f, "0123456789abcdef0123456789abcdef");
        assert!(
            pd["payload"]["summary"]
                .as_str()
                .unwrap()
                .starts_with("[TEST]")
        );
        let og = opsgenie::body(&f);
        assert!(og["message"].as_str().unwrap().starts_with("[TEST]"));
        assert_eq!(og["priority"], "P4");
        let sl = slack::body(&f);
        assert!(
            sl["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("LOW: [TEST] rootwatch test alert")
        );
        assert!(sl["text"].as_str().unwrap().contains("[TEST]"), "{sl}");
        let tm = teams::body(&f);
        let title = tm["attachments"][0]["content"]["body"][0]["text"]
            .as_str()
            .unwrap();
        assert!(title.contains("\\[TEST\\]"), "{title}");
    }

    #[test]
    fn each_run_has_a_new_finding_id() {
        let now = chrono::Utc::now();
        let a = finding(Severity::High, now, 1);
        let b = finding(Severity::High, now, 2);
        assert_ne!(a.finding_id, b.finding_id);
        assert_eq!(a.severity, Severity::High);
    }

    #[test]
    fn outcomes_from_the_retry_loop() {
        let status = |code| match classify_status(code, None, "busy") {
            Some(crate::sink::SendError::Retriable { error, status, .. }) => {
                assert_eq!(status, Some(code));
                error
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            outcome(
                Err(DeliveryError::GaveUp {
                    attempts: 2,
                    last: status(503),
                    status: Some(503),
                }),
                &Secrets::default()
            ),
            Outcome::Failed {
                attempts: 2,
                error: "HTTP 503: busy".into()
            }
        );
        assert!(matches!(
            outcome(
                Err(DeliveryError::GaveUp {
                    attempts: 2,
                    last: "error sending request for url (http://hooks.example/T0/secret)".into(),
                    status: None,
                }),
                &Secrets::of_values(&["secret"])
            ),
            Outcome::Unreachable { attempts: 2, ref error } if error == "error sending request for url <url>"
        ));
        let rejected = outcome(
            Err(DeliveryError::Rejected {
                error: "HTTP 400: bad key K3yK3yK3y".into(),
                status: Some(400),
            }),
            &Secrets::of_values(&["K3yK3yK3y"]),
        );
        assert_eq!(
            rejected.to_string(),
            "rejected (status 400): HTTP 400: bad key <redacted>"
        );
        assert!(all_delivered(&[
            Outcome::Delivered { attempts: 1 },
            Outcome::Skipped
        ]));
        assert!(!all_delivered(&[Outcome::Skipped]));
        assert!(!all_delivered(&[]));
        assert!(!all_delivered(&[
            Outcome::Delivered { attempts: 1 },
            rejected
        ]));
    }
}
