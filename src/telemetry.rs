//! Telemetry in one place: metric names (defined once), the Prometheus
//! recorder, and one function per occurrence that logs it and counts it
//! together. Labels are bounded: source and sink names come from config,
//! rule ids and error kinds from fixed sets.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const BUILD_INFO: &str = "rootwatch_build_info";
pub const MESSAGES_RECEIVED: &str = "rootwatch_messages_received_total";
pub const MESSAGES_DELETED: &str = "rootwatch_messages_deleted_total";
pub const MESSAGES_REDRIVE: &str = "rootwatch_messages_redrive_total";
pub const SOURCE_ERRORS: &str = "rootwatch_source_errors_total";
pub const EVENTS_PROCESSED: &str = "rootwatch_events_processed_total";
pub const DECODE_ERRORS: &str = "rootwatch_decode_errors_total";
/// The `kind` label values of [`DECODE_ERRORS`].
const DECODE_ERROR_KINDS: [&str; 9] = [
    "invalid_json",
    "malformed",
    "unknown_envelope",
    "too_deep",
    "not_a_record",
    "invalid_utf8",
    "too_large",
    "too_slow",
    "io",
];
pub const FINDINGS: &str = "rootwatch_findings_total";
pub const ALERTS_DELIVERED: &str = "rootwatch_alerts_delivered_total";
pub const ALERTS_RETRIED: &str = "rootwatch_alerts_retried_total";
pub const ALERTS_FAILED: &str = "rootwatch_alerts_failed_total";
pub const DELIVERY_DURATION: &str = "rootwatch_delivery_duration_seconds";
pub const EVENT_LAG: &str = "rootwatch_event_lag_seconds";
pub const ALERT_LATENCY: &str = "rootwatch_alert_latency_seconds";
pub const DEDUP_SUPPRESSED: &str = "rootwatch_dedup_suppressed_total";
pub const THROTTLE_SUPPRESSED: &str = "rootwatch_throttle_suppressed_total";
pub const THROTTLE_ESCALATED: &str = "rootwatch_throttle_escalated_total";
pub const THROTTLE_WINDOWS: &str = "rootwatch_throttle_windows";
pub const SIGMA_CORRELATION_WINDOWS: &str = "rootwatch_sigma_correlation_windows";
pub const RULE_RELOADS: &str = "rootwatch_rule_reloads_total";
pub const THROTTLE_HELD_INPUTS: &str = "rootwatch_throttle_held_inputs";
pub const THROTTLE_EVICTED: &str = "rootwatch_throttle_evicted_total";
pub const THROTTLE_UNHELD: &str = "rootwatch_throttle_unheld_total";
pub const IN_FLIGHT: &str = "rootwatch_in_flight_messages";
pub const CHECKPOINT_AGE: &str = "rootwatch_cloudwatch_checkpoint_age_seconds";
pub const INPUTS_SKIPPED: &str = "rootwatch_inputs_skipped_total";
pub const INGESTION_DELAY: &str = "rootwatch_cloudwatch_ingestion_delay_seconds";
pub const LATE_EVENTS: &str = "rootwatch_cloudwatch_late_events_total";
pub const CWL_REQUESTS: &str = "rootwatch_cloudwatch_requests_total";
pub const CWL_EVENTS_READ: &str = "rootwatch_cloudwatch_events_read_total";
pub const FULL_READ_FINDS: &str = "rootwatch_cloudwatch_full_read_finds_total";
pub const ALERTS_ALREADY_DELIVERED: &str = "rootwatch_alerts_already_delivered_total";
pub const ALERTS_DEAD_LETTERED: &str = "rootwatch_alerts_dead_lettered_total";
pub const DEAD_LETTER_ERRORS: &str = "rootwatch_dead_letter_errors_total";
pub const DEAD_LETTER_BYTES: &str = "rootwatch_dead_letter_bytes";
pub const DEAD_LETTER_ROTATIONS: &str = "rootwatch_dead_letter_rotations_total";
pub const ACKS_ABANDONED: &str = "rootwatch_acks_abandoned_total";
pub const TASK_FAILURES: &str = "rootwatch_task_failures_total";
pub const SOURCE_UP: &str = "rootwatch_source_up";
pub const POSTURE_VIOLATIONS: &str = "rootwatch_posture_violations";
pub const POSTURE_AUDITS: &str = "rootwatch_posture_audits_total";
pub const POSTURE_RESOLVED: &str = "rootwatch_posture_resolved_total";
pub const FINDINGS_EXPECTED: &str = "rootwatch_findings_expected_total";
pub const POSTURE_REPORT_AGE: &str = "rootwatch_posture_report_age_seconds";
pub const LEASES_HELD: &str = "rootwatch_cloudwatch_leases_held";
pub const LEASE_TAKEOVERS: &str = "rootwatch_cloudwatch_lease_takeovers_total";
pub const LEASE_LOSSES: &str = "rootwatch_cloudwatch_lease_losses_total";
pub const CHECKPOINT_IDS_DROPPED: &str = "rootwatch_cloudwatch_checkpoint_ids_dropped_total";

/// Every metric name, for tests that check dashboards against exports.
pub const ALL: &[&str] = &[
    BUILD_INFO,
    MESSAGES_RECEIVED,
    MESSAGES_DELETED,
    MESSAGES_REDRIVE,
    SOURCE_ERRORS,
    EVENTS_PROCESSED,
    DECODE_ERRORS,
    FINDINGS,
    FINDINGS_EXPECTED,
    ALERTS_DELIVERED,
    ALERTS_RETRIED,
    ALERTS_FAILED,
    DELIVERY_DURATION,
    EVENT_LAG,
    ALERT_LATENCY,
    DEDUP_SUPPRESSED,
    THROTTLE_SUPPRESSED,
    THROTTLE_ESCALATED,
    THROTTLE_WINDOWS,
    SIGMA_CORRELATION_WINDOWS,
    RULE_RELOADS,
    THROTTLE_HELD_INPUTS,
    THROTTLE_EVICTED,
    THROTTLE_UNHELD,
    IN_FLIGHT,
    CHECKPOINT_AGE,
    INPUTS_SKIPPED,
    INGESTION_DELAY,
    LATE_EVENTS,
    CWL_REQUESTS,
    CWL_EVENTS_READ,
    FULL_READ_FINDS,
    ALERTS_ALREADY_DELIVERED,
    ALERTS_DEAD_LETTERED,
    DEAD_LETTER_ERRORS,
    DEAD_LETTER_BYTES,
    DEAD_LETTER_ROTATIONS,
    ACKS_ABANDONED,
    TASK_FAILURES,
    SOURCE_UP,
    POSTURE_VIOLATIONS,
    POSTURE_AUDITS,
    POSTURE_RESOLVED,
    LEASES_HELD,
    LEASE_TAKEOVERS,
    LEASE_LOSSES,
    CHECKPOINT_IDS_DROPPED,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(DELIVERY_DURATION.into()),
                &[
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(EVENT_LAG.into()),
                    &[
                        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0,
                        86400.0,
                    ],
                )
            })
            .and_then(|b| {
                // Milliseconds matter here: the time rootwatch itself adds
                // between receiving a message and alerting on it.
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(ALERT_LATENCY.into()),
                    &[
                        0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                        5.0,
                    ],
                )
            })
            .expect("bucket lists are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program);
        // then rootwatch's metrics go there and /metrics shows only ours.
        let _ = metrics::set_global_recorder(recorder);
        gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        process().describe();
        handle
    })
}

/// The `process_*` series Prometheus clients export (CPU seconds,
/// resident and virtual memory, open and maximum file descriptors, start
/// time, threads), read from /proc when /metrics is scraped; elsewhere
/// than Linux, only those the platform gives.
fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Reads the process's own figures into the `process_*` series.
pub fn collect_process() {
    process().collect();
}

/// Registers every metric with its help text and zero values for the label
/// sets known at start (configured sources and sinks, built-in rules), so
/// dashboards and alerts see each series from the first scrape, not from
/// the first occurrence.
pub fn register(sources: &[&str], sinks: &[&str], rules: &[&str]) {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    // The recorder first: descriptions given before it exists are lost.
    prometheus();
    describe_gauge!(BUILD_INFO, "Build information; always 1.");
    describe_counter!(MESSAGES_RECEIVED, "Inputs received (SQS messages, files).");
    describe_counter!(
        MESSAGES_DELETED,
        "Inputs acknowledged after every alert from them was handled."
    );
    describe_counter!(
        MESSAGES_REDRIVE,
        "Inputs left unacknowledged for the queue's redrive policy, by reason."
    );
    describe_counter!(SOURCE_ERRORS, "Source API errors, by kind.");
    describe_counter!(
        EVENTS_PROCESSED,
        "CloudTrail records decoded and evaluated."
    );
    describe_counter!(
        DECODE_ERRORS,
        "Inputs or records that could not be decoded, by kind."
    );
    describe_counter!(
        FINDINGS,
        "Findings by rule and severity, before dedup and throttling of alerts."
    );
    describe_counter!(
        FINDINGS_EXPECTED,
        "Findings marked expected by a [[detect.expected]] entry (their severity capped at low), by rule."
    );
    describe_counter!(ALERTS_DELIVERED, "Alerts delivered, by sink.");
    describe_counter!(
        ALERTS_RETRIED,
        "Delivery attempts that failed and were retried, by sink."
    );
    describe_counter!(
        ALERTS_FAILED,
        "Alerts not delivered, by sink and reason (rejected, deadline, shutdown)."
    );
    describe_histogram!(
        DELIVERY_DURATION,
        Unit::Seconds,
        "Time from first attempt to delivery, by sink."
    );
    describe_histogram!(
        EVENT_LAG,
        Unit::Seconds,
        "Time from eventTime to detection."
    );
    describe_histogram!(
        ALERT_LATENCY,
        Unit::Seconds,
        "Time from receiving an SQS message to the first attempt to send an alert derived from it, by sink."
    );
    describe_counter!(DEDUP_SUPPRESSED, "Duplicate events dropped.");
    describe_counter!(
        THROTTLE_SUPPRESSED,
        "Findings folded into a throttle window, by rule."
    );
    describe_counter!(
        THROTTLE_ESCALATED,
        "Findings more severe than any sent in their throttle window, sent at once instead of folded, by rule."
    );
    describe_gauge!(THROTTLE_WINDOWS, "Throttle windows open.");
    describe_counter!(
        RULE_RELOADS,
        "Rule reloads on SIGHUP, by result (ok, or failed: the running rules stayed)."
    );
    describe_gauge!(
        SIGMA_CORRELATION_WINDOWS,
        "Sigma correlation windows held, one per (correlation, group-by value); at 100,000 the expired ones are dropped, then the oldest."
    );
    describe_gauge!(
        THROTTLE_HELD_INPUTS,
        "Inputs held unacknowledged as carriers of a throttle summary not yet delivered (one per window at most)."
    );
    describe_counter!(
        THROTTLE_EVICTED,
        "Throttle windows closed early, their summary sent, to make room for a new key."
    );
    describe_counter!(
        THROTTLE_UNHELD,
        "Folded findings whose input was acknowledged at once because the bound on held inputs was reached; a crash before their window's summary loses its count."
    );
    describe_gauge!(
        IN_FLIGHT,
        "Inputs received and not yet acknowledged, by source."
    );
    describe_gauge!(
        CHECKPOINT_AGE,
        "Age of the CloudWatch Logs checkpoint, by log group."
    );
    describe_gauge!(
        DEAD_LETTER_BYTES,
        "Bytes in a source's dead-letter file and its rotated files, by source (as of its last write)."
    );
    describe_counter!(
        DEAD_LETTER_ROTATIONS,
        "Dead-letter files rotated for size, by source."
    );
    describe_counter!(
        LATE_EVENTS,
        "CloudWatch Logs events that became searchable more than lookback_secs after their timestamp, by source: read this time, but events as late as they are can be passed over."
    );
    describe_counter!(
        CWL_REQUESTS,
        "FilterLogEvents calls of a CloudWatch Logs source, by source and read (poll: back by the overlap; full: back by lookback_secs)."
    );
    describe_counter!(
        CWL_EVENTS_READ,
        "Events FilterLogEvents returned to a CloudWatch Logs source, those read again included, by source and read (poll or full)."
    );
    describe_counter!(
        FULL_READ_FINDS,
        "CloudWatch Logs events found only by a full read: later than the polls' overlap, so alerted up to full_read_interval_secs after they became searchable, by source."
    );
    describe_counter!(
        INPUTS_SKIPPED,
        "Inputs recognised and deliberately not read (S3 test events, digest files, non-CloudTrail EventBridge events, ...), by kind."
    );
    describe_histogram!(
        INGESTION_DELAY,
        Unit::Seconds,
        "How long after its timestamp a CloudWatch Logs event became searchable (ingestionTime - timestamp), by source. Near lookback_secs, events start to be missed."
    );
    describe_counter!(
        ALERTS_ALREADY_DELIVERED,
        "Alerts not sent again to a sink that already took them (the input came back for another sink), by sink."
    );
    describe_counter!(
        ALERTS_DEAD_LETTERED,
        "Undeliverable alerts written to a source's dead-letter file, by sink and reason."
    );
    describe_counter!(
        DEAD_LETTER_ERRORS,
        "Dead-letter file writes that failed (the input stays unacknowledged), by sink."
    );
    describe_counter!(
        ACKS_ABANDONED,
        "Acknowledgement handles dropped without an outcome (a panic or an aborted task); their input is not acknowledged."
    );
    describe_counter!(
        TASK_FAILURES,
        "Daemon tasks that ended by panicking or being cancelled, by task."
    );
    describe_gauge!(
        LEASES_HELD,
        "CloudWatch Logs log groups whose lease this replica holds (checkpoint_table), by source."
    );
    describe_counter!(
        LEASE_TAKEOVERS,
        "Log group leases taken over from another replica whose lease had expired, by source."
    );
    describe_counter!(
        LEASE_LOSSES,
        "Log group leases this replica lost to another (its group stopped here without advancing the checkpoint), by source."
    );
    describe_counter!(
        CHECKPOINT_IDS_DROPPED,
        "Handled events left out of a shared checkpoint write (the oldest, past the item's size bound; a restart may repeat their alerts), counted at every such write, by source."
    );
    describe_gauge!(
        SOURCE_UP,
        "1 while the source's receive calls succeed, 0 once several in a row failed (its upstream is unreachable or refuses it), by source."
    );
    for &source in sources {
        let s = source.to_owned();
        for kind in DECODE_ERROR_KINDS {
            counter!(DECODE_ERRORS, "source" => s.clone(), "kind" => kind).absolute(0);
        }
        gauge!(SOURCE_UP, "source" => s.clone()).set(1.0);
        counter!(MESSAGES_RECEIVED, "source" => s.clone()).absolute(0);
        counter!(MESSAGES_DELETED, "source" => s.clone()).absolute(0);
        counter!(EVENTS_PROCESSED, "source" => s.clone()).absolute(0);
        // Zero for sources without shared checkpoints: none held, none lost.
        gauge!(LEASES_HELD, "source" => s.clone()).set(0.0);
        counter!(LEASE_TAKEOVERS, "source" => s.clone()).absolute(0);
        counter!(LEASE_LOSSES, "source" => s.clone()).absolute(0);
        counter!(CHECKPOINT_IDS_DROPPED, "source" => s.clone()).absolute(0);
        for reason in [
            "decode",
            "s3",
            "delivery",
            "rejected",
            "abandoned",
            "dead_letter",
            "shutdown",
            "panic",
            "refused",
        ] {
            counter!(MESSAGES_REDRIVE, "source" => s.clone(), "reason" => reason).absolute(0);
        }
        for kind in ["receive", "worker_panic", "bucket_not_allowed"] {
            counter!(SOURCE_ERRORS, "source" => s.clone(), "kind" => kind).absolute(0);
        }
        let _ = histogram!(INGESTION_DELAY, "source" => s.clone());
        gauge!(DEAD_LETTER_BYTES, "source" => s.clone()).set(0.0);
        counter!(DEAD_LETTER_ROTATIONS, "source" => s.clone()).absolute(0);
        counter!(LATE_EVENTS, "source" => s.clone()).absolute(0);
        counter!(FULL_READ_FINDS, "source" => s.clone()).absolute(0);
        for read in ["poll", "full"] {
            counter!(CWL_REQUESTS, "source" => s.clone(), "read" => read).absolute(0);
            counter!(CWL_EVENTS_READ, "source" => s.clone(), "read" => read).absolute(0);
        }
        gauge!(IN_FLIGHT, "source" => s).set(0.0);
    }
    for &sink in sinks {
        let s = sink.to_owned();
        counter!(ALERTS_DELIVERED, "sink" => s.clone()).absolute(0);
        counter!(ALERTS_RETRIED, "sink" => s.clone()).absolute(0);
        for reason in ["rejected", "deadline", "shutdown"] {
            counter!(ALERTS_FAILED, "sink" => s.clone(), "reason" => reason).absolute(0);
        }
        counter!(ALERTS_ALREADY_DELIVERED, "sink" => s.clone()).absolute(0);
        for reason in ["rejected", "deadline"] {
            counter!(ALERTS_DEAD_LETTERED, "sink" => s.clone(), "reason" => reason).absolute(0);
        }
        counter!(DEAD_LETTER_ERRORS, "sink" => s.clone()).absolute(0);
        let _ = histogram!(ALERT_LATENCY, "sink" => s.clone());
        let _ = histogram!(DELIVERY_DURATION, "sink" => s);
    }
    for &rule in rules {
        for severity in crate::finding::Severity::ALL {
            counter!(FINDINGS, "rule" => rule.to_owned(), "severity" => severity.as_str())
                .absolute(0);
        }
        counter!(THROTTLE_SUPPRESSED, "rule" => rule.to_owned()).absolute(0);
        counter!(FINDINGS_EXPECTED, "rule" => rule.to_owned()).absolute(0);
        counter!(THROTTLE_ESCALATED, "rule" => rule.to_owned()).absolute(0);
    }
    for kind in crate::decode::Skip::ALL {
        counter!(INPUTS_SKIPPED, "kind" => kind.as_str()).absolute(0);
    }
    counter!(DEDUP_SUPPRESSED).absolute(0);
    counter!(ACKS_ABANDONED).absolute(0);
    gauge!(THROTTLE_WINDOWS).set(0.0);
    gauge!(SIGMA_CORRELATION_WINDOWS).set(0.0);
    for result in ["ok", "failed"] {
        counter!(RULE_RELOADS, "result" => result).absolute(0);
    }
    gauge!(THROTTLE_HELD_INPUTS).set(0.0);
    counter!(THROTTLE_EVICTED).absolute(0);
    counter!(THROTTLE_UNHELD).absolute(0);
    for task in ["source", "throttle", "follower"] {
        counter!(TASK_FAILURES, "task" => task).absolute(0);
    }
    let _ = histogram!(EVENT_LAG);
}

pub fn message_received(source: &str, message_id: &str) {
    tracing::debug!(source, message_id, "message received");
    counter!(MESSAGES_RECEIVED, "source" => source.to_owned()).increment(1);
}

pub fn messages_deleted(source: &str, n: u64) {
    tracing::debug!(source, count = n, "messages deleted");
    counter!(MESSAGES_DELETED, "source" => source.to_owned()).increment(n);
}

/// A message left undeleted for the queue's redrive policy.
pub fn message_left_for_redrive(
    source: &str,
    message_id: &str,
    reason: &'static str,
    detail: &str,
) {
    tracing::warn!(
        source,
        message_id,
        reason,
        detail,
        "message not deleted; the queue's redrive policy takes it from here"
    );
    counter!(MESSAGES_REDRIVE, "source" => source.to_owned(), "reason" => reason).increment(1);
}

pub fn source_error(source: &str, kind: &'static str, error: &dyn std::fmt::Display) {
    tracing::warn!(source, kind, error = %error, "source error");
    counter!(SOURCE_ERRORS, "source" => source.to_owned(), "kind" => kind).increment(1);
}

/// `count` source errors of one kind, told in one log line.
pub fn source_errors(source: &str, kind: &'static str, count: u64, error: &dyn std::fmt::Display) {
    tracing::warn!(source, kind, count, error = %error, "source error");
    counter!(SOURCE_ERRORS, "source" => source.to_owned(), "kind" => kind).increment(count);
}

/// A source worker task panicked; `restarted` says whether another took
/// its place (not when the source is already stopping).
pub fn worker_panicked(source: &str, detail: &str, restarted: bool) {
    tracing::error!(
        source,
        kind = "worker_panic",
        error = detail,
        restarted,
        "source worker panicked; its unhandled messages are left for redrive"
    );
    counter!(SOURCE_ERRORS, "source" => source.to_owned(), "kind" => "worker_panic").increment(1);
}

/// A notification named an object in a bucket the source may not read.
pub fn object_refused(source: &str, message_id: &str, object: &str) {
    tracing::warn!(
        source,
        message_id,
        object,
        kind = "bucket_not_allowed",
        "object refused: its bucket is not in allowed_buckets; the message is left for redrive"
    );
    counter!(SOURCE_ERRORS, "source" => source.to_owned(), "kind" => "bucket_not_allowed")
        .increment(1);
}

pub fn events_processed(source: &str, n: u64) {
    counter!(EVENTS_PROCESSED, "source" => source.to_owned()).increment(n);
}

pub fn decode_error(
    source: &str,
    message_id: &str,
    kind: &'static str,
    error: &dyn std::fmt::Display,
) {
    tracing::warn!(source, message_id, kind, error = %error, "decode error");
    counter!(DECODE_ERRORS, "source" => source.to_owned(), "kind" => kind).increment(1);
}

/// Every decode error of one input: those kept whole are logged one by
/// one, the rest in one line of counts by kind; the counter gets them all.
pub fn decode_errors(source: &str, message_id: &str, errors: &crate::decode::Errors) {
    for e in errors.kept() {
        decode_error(source, message_id, e.kind(), e);
    }
    let rest = errors.not_kept();
    if rest.is_empty() {
        return;
    }
    let counts: Vec<String> = rest.iter().map(|(k, n)| format!("{k}={n}")).collect();
    tracing::warn!(
        source,
        message_id,
        total = errors.total(),
        not_logged = rest.values().sum::<u64>(),
        counts = %counts.join(" "),
        "decode errors past the first {} of this input counted, not logged one by one",
        errors.kept().len()
    );
    for (kind, n) in rest {
        counter!(DECODE_ERRORS, "source" => source.to_owned(), "kind" => kind).increment(n);
    }
}

/// An input recognised and deliberately not read.
pub fn skipped(kind: crate::decode::Skip) {
    tracing::debug!(kind = kind.as_str(), "input skipped");
    counter!(INPUTS_SKIPPED, "kind" => kind.as_str()).increment(1);
}

/// How late a CloudWatch Logs event became searchable.
pub fn ingestion_delay(source: &str, delay: Duration) {
    histogram!(INGESTION_DELAY, "source" => source.to_owned()).record(delay.as_secs_f64());
}

/// An event became searchable later than the lookback after its time.
pub fn late_event(source: &str) {
    counter!(LATE_EVENTS, "source" => source.to_owned()).increment(1);
}

/// One FilterLogEvents page with `events` events, of a full read or a poll.
pub fn cloudwatch_page(source: &str, full: bool, events: usize) {
    let read = if full { "full" } else { "poll" };
    counter!(CWL_REQUESTS, "source" => source.to_owned(), "read" => read).increment(1);
    counter!(CWL_EVENTS_READ, "source" => source.to_owned(), "read" => read)
        .increment(events as u64);
}

/// A full read found a new event that the polls' overlap did not reach.
pub fn full_read_find(source: &str) {
    counter!(FULL_READ_FINDS, "source" => source.to_owned()).increment(1);
}

pub fn late_event_warning(source: &str, log_group: &str, delay: Duration, lookback: Duration) {
    tracing::warn!(
        source,
        log_group,
        delay_secs = delay.as_secs(),
        lookback_secs = lookback.as_secs(),
        "a CloudWatch Logs event became searchable close to lookback_secs after its timestamp: raise lookback_secs, or events that arrive later than it will be missed"
    );
}

pub fn finding(f: &crate::finding::Finding) {
    tracing::info!(rule = %f.rule, severity = %f.severity, finding_id = %f.finding_id, event_id = f.event_id.as_deref().unwrap_or(""), principal = f.principal_arn.as_deref().unwrap_or(""), source_ip = f.source_ip.as_deref().unwrap_or(""), "finding");
    counter!(FINDINGS, "rule" => f.rule.clone(), "severity" => f.severity.as_str()).increment(1);
    if f.expected.is_some() {
        counter!(FINDINGS_EXPECTED, "rule" => f.rule.clone()).increment(1);
    }
}

pub fn event_lag(lag: Duration) {
    histogram!(EVENT_LAG).record(lag.as_secs_f64());
}

/// The first attempt to send an alert starts, `latency` after its input
/// was received.
pub fn alert_starting(sink: &str, finding_id: &str, latency: Duration) {
    tracing::trace!(
        sink,
        finding_id,
        latency_secs = latency.as_secs_f64(),
        "alert sending"
    );
    histogram!(ALERT_LATENCY, "sink" => sink.to_owned()).record(latency.as_secs_f64());
}

pub fn alert_delivered(sink: &str, finding_id: &str, took: Duration, attempts: u32) {
    tracing::info!(
        sink,
        finding_id,
        attempts,
        took_ms = took.as_millis() as u64,
        "alert delivered"
    );
    counter!(ALERTS_DELIVERED, "sink" => sink.to_owned()).increment(1);
    histogram!(DELIVERY_DURATION, "sink" => sink.to_owned()).record(took.as_secs_f64());
}

pub fn alert_retry(
    sink: &str,
    finding_id: &str,
    attempt: u32,
    wait: Duration,
    error: &dyn std::fmt::Display,
) {
    tracing::warn!(sink, finding_id, attempt, wait_ms = wait.as_millis() as u64, error = %error, "delivery failed; retrying");
    counter!(ALERTS_RETRIED, "sink" => sink.to_owned()).increment(1);
}

/// `reason`: `rejected` (permanent 4xx), `deadline` (retries exhausted) or
/// `shutdown` (cancelled by the grace period).
pub fn alert_failed(
    sink: &str,
    finding_id: &str,
    reason: &'static str,
    error: &dyn std::fmt::Display,
) {
    tracing::error!(sink, finding_id, reason, error = %error, "alert not delivered");
    counter!(ALERTS_FAILED, "sink" => sink.to_owned(), "reason" => reason).increment(1);
}

pub fn dedup_suppressed(event_id: &str) {
    tracing::debug!(event_id, "duplicate event dropped");
    counter!(DEDUP_SUPPRESSED).increment(1);
}

pub fn throttle_suppressed(rule: &str, finding_id: &str) {
    tracing::debug!(rule, finding_id, "finding folded into a throttle window");
    counter!(THROTTLE_SUPPRESSED, "rule" => rule.to_owned()).increment(1);
}

pub fn throttle_escalated(rule: &str, finding_id: &str) {
    tracing::info!(
        rule,
        finding_id,
        "finding more severe than any sent in its throttle window; sent at once"
    );
    counter!(THROTTLE_ESCALATED, "rule" => rule.to_owned()).increment(1);
}

/// The throttle's state after a tick, with the windows evicted and the
/// folds left unheld since the last one.
pub fn throttle_state(windows: usize, held: usize, evicted: u64, unheld: u64) {
    if evicted > 0 {
        tracing::warn!(
            evicted,
            open = windows,
            "throttle windows closed early to make room for new keys"
        );
    }
    if unheld > 0 {
        tracing::warn!(
            unheld,
            held,
            "folded findings acknowledged without holding their input: the bound on held inputs is reached"
        );
    }
    gauge!(THROTTLE_WINDOWS).set(windows as f64);
    gauge!(THROTTLE_HELD_INPUTS).set(held as f64);
    counter!(THROTTLE_EVICTED).increment(evicted);
    counter!(THROTTLE_UNHELD).increment(unheld);
}

pub fn in_flight(source: &str, n: usize) {
    gauge!(IN_FLIGHT, "source" => source.to_owned()).set(n as f64);
}

pub fn leases_held(source: &str, n: usize) {
    gauge!(LEASES_HELD, "source" => source.to_owned()).set(n as f64);
}

/// A lease acquired; `from` is the replica whose expired lease it was.
pub fn lease_acquired(source: &str, log_group: &str, owner: &str, from: Option<&str>) {
    match from {
        Some(from) => {
            tracing::warn!(
                source,
                log_group,
                owner,
                from,
                "took over an expired log group lease: reading on from its last checkpoint"
            );
            counter!(LEASE_TAKEOVERS, "source" => source.to_owned()).increment(1);
        }
        None => tracing::info!(source, log_group, owner, "log group lease acquired"),
    }
}

/// A lease held no more: another replica has it, or it could not be
/// renewed before it expired.
pub fn lease_lost(source: &str, log_group: &str, owner: &str, why: &dyn std::fmt::Display) {
    tracing::warn!(
        source,
        log_group,
        owner,
        error = %why,
        "log group lease lost: stopped following it here; its checkpoint is not advanced by this replica"
    );
    counter!(LEASE_LOSSES, "source" => source.to_owned()).increment(1);
}

/// A shared checkpoint written without its oldest handled events: more
/// alerted inside the lookback than the table item holds.
pub fn checkpoint_ids_dropped(source: &str, log_group: &str, kept: usize, dropped: usize) {
    tracing::warn!(
        source,
        log_group,
        kept,
        dropped,
        "too many alerted events inside the lookback for the checkpoint item: the oldest were left out of it, and a restart or takeover may alert them again (a shorter lookback_secs holds fewer)"
    );
    counter!(CHECKPOINT_IDS_DROPPED, "source" => source.to_owned()).increment(dropped as u64);
}

pub fn checkpoint_age(log_group: &str, age: Duration) {
    gauge!(CHECKPOINT_AGE, "log_group" => log_group.to_owned()).set(age.as_secs_f64());
}

/// An alert not sent again: `sink` took it when its input was first seen.
pub fn alert_already_delivered(sink: &str, finding_id: &str) {
    tracing::info!(
        sink,
        finding_id,
        "alert already delivered to this sink; not sent again"
    );
    counter!(ALERTS_ALREADY_DELIVERED, "sink" => sink.to_owned()).increment(1);
}

/// An undeliverable alert written to a dead-letter file, so its input can
/// be acknowledged.
pub fn dead_lettered(sink: &str, finding_id: &str, input: &str, reason: &'static str, place: &str) {
    tracing::error!(
        sink,
        finding_id,
        input,
        reason,
        dead_letter = place,
        "alert not delivered; written to the dead-letter file or queue"
    );
    counter!(ALERTS_DEAD_LETTERED, "sink" => sink.to_owned(), "reason" => reason).increment(1);
}

pub fn dead_letter_bytes(source: &str, bytes: u64) {
    gauge!(DEAD_LETTER_BYTES, "source" => source.to_owned()).set(bytes as f64);
}

pub fn dead_letter_rotated(source: &str, path: &std::path::Path) {
    tracing::warn!(source, dead_letter = %path.display(), "dead-letter file rotated for size: undelivered alerts are piling up");
    counter!(DEAD_LETTER_ROTATIONS, "source" => source.to_owned()).increment(1);
}

pub fn dead_letter_error(sink: &str, finding_id: &str, place: &str, error: &dyn std::fmt::Display) {
    tracing::error!(sink, finding_id, dead_letter = place, error = %error, "cannot write the dead letter; the input stays unacknowledged");
    counter!(DEAD_LETTER_ERRORS, "sink" => sink.to_owned()).increment(1);
}

/// An acknowledgement handle dropped without an outcome: its input is not
/// acknowledged.
pub fn ack_abandoned() {
    tracing::warn!(
        "work on an input ended without an outcome (a panic or a cancelled task); the input is not acknowledged"
    );
    counter!(ACKS_ABANDONED).increment(1);
}

/// A daemon task that panicked or was cancelled. `task` is a bounded kind
/// (`source`, `throttle`); `name` says which one.
pub fn task_failed(task: &'static str, name: &str, error: &dyn std::fmt::Display) {
    tracing::error!(task, name, error = %error, "task failed");
    counter!(TASK_FAILURES, "task" => task).increment(1);
}

/// A source's receive calls failed `failures` times in a row: it is
/// degraded (`/readyz` 503) until one succeeds.
pub fn source_degraded(source: &str, failures: u32, kind: &str, error: &str) {
    tracing::error!(
        source,
        failures,
        kind,
        error,
        "source degraded: its calls to its upstream keep failing; not ready until one succeeds (retrying with backoff)"
    );
    gauge!(SOURCE_UP, "source" => source.to_owned()).set(0.0);
}

/// A degraded source received again.
pub fn source_recovered(source: &str, failures: u32, down_for: Duration) {
    tracing::info!(
        source,
        failures,
        down_secs = down_for.as_secs(),
        "source recovered: receiving again"
    );
    gauge!(SOURCE_UP, "source" => source.to_owned()).set(1.0);
}

/// Describes the posture audit's metrics and zeroes them for the
/// configured accounts, `(name, account id)` (from config: bounded), so
/// they exist before the first audit. rootwatch's own account (audited
/// when none is configured) appears with its first audit.
pub fn register_audit(accounts: &[(&str, &str)], checks: &[&'static str]) {
    use metrics::{describe_counter, describe_gauge};
    prometheus();
    describe_gauge!(
        POSTURE_VIOLATIONS,
        "Open posture violations found by the last audit, by check (rule id) and account."
    );
    describe_counter!(
        POSTURE_AUDITS,
        "Posture audits of an account, by outcome (ok, failed)."
    );
    describe_counter!(
        POSTURE_RESOLVED,
        "Posture violations no longer found by an audit, by check."
    );
    describe_gauge!(
        POSTURE_REPORT_AGE,
        "Age of the credential report the last audit of the account used, in seconds (over 14400 is stale)."
    );
    for &(name, account_id) in accounts {
        for outcome in ["ok", "failed"] {
            counter!(POSTURE_AUDITS, "account" => name.to_owned(), "outcome" => outcome)
                .absolute(0);
        }
        for &check in checks {
            gauge!(POSTURE_VIOLATIONS, "check" => check, "account" => account_id.to_owned())
                .set(0.0);
        }
    }
    for &check in checks {
        counter!(POSTURE_RESOLVED, "check" => check).absolute(0);
        for severity in crate::finding::Severity::ALL {
            counter!(FINDINGS, "rule" => check, "severity" => severity.as_str()).absolute(0);
        }
    }
    counter!(TASK_FAILURES, "task" => "audit").absolute(0);
}

/// An account was audited; `account` is its name in config (or its id).
/// `notes` are checks that could not run.
pub fn posture_audited(
    account: &str,
    account_id: &str,
    generated: chrono::DateTime<chrono::Utc>,
    findings: usize,
    notes: &[String],
    stale_after_secs: u64,
) {
    // IAM hands out a cached report for up to four hours: the log says
    // how old the evidence is, and warns past `stale_after_secs`.
    let age = (chrono::Utc::now() - generated).num_seconds().max(0);
    tracing::info!(account, account_id, report_generated = %generated.to_rfc3339(), report_age_secs = age, findings, "posture audit done");
    if age as u64 > stale_after_secs {
        tracing::warn!(account, account_id, report_generated = %generated.to_rfc3339(), report_age_secs = age, stale_after_secs, "the credential report is stale: posture findings may be out of date");
    }
    for note in notes {
        tracing::warn!(account, account_id, note = %note, "posture check skipped");
    }
    gauge!(POSTURE_REPORT_AGE, "account" => account_id.to_owned()).set(age as f64);
    counter!(POSTURE_AUDITS, "account" => account.to_owned(), "outcome" => "ok").increment(1);
}

pub fn posture_audit_failed(account: &str, error: &dyn std::fmt::Display) {
    tracing::error!(account, error = %error, "posture audit failed");
    counter!(POSTURE_AUDITS, "account" => account.to_owned(), "outcome" => "failed").increment(1);
}

pub fn posture_violations(check: &'static str, account_id: &str, n: u64) {
    gauge!(POSTURE_VIOLATIONS, "check" => check, "account" => account_id.to_owned()).set(n as f64);
}

pub fn posture_resolved(account_id: &str, check: &str, principal: &str, finding_id: &str) {
    tracing::info!(
        account_id,
        rule = check,
        principal,
        finding_id,
        "posture violation resolved"
    );
    counter!(POSTURE_RESOLVED, "check" => check.to_owned()).increment(1);
}

/// Sigma correlation windows held after an event fed them.
pub fn sigma_correlation_windows(n: usize) {
    gauge!(SIGMA_CORRELATION_WINDOWS).set(n as f64);
}

/// A rule reload on SIGHUP ended.
pub fn rules_reloaded(ok: bool) {
    counter!(RULE_RELOADS, "result" => if ok { "ok" } else { "failed" }).increment(1);
}
