//! decode -> detect -> dedup -> deliver, with acknowledgement tokens.
//!
//! Sources call [`Pipeline::scan_body`] / [`Pipeline::scan_reader`] to turn
//! input into findings grouped by event, then [`Pipeline::dispatch`] with
//! the input's [`InputHandle`]. Each delivery holds a handle on its event's unit
//! (nested in the input's) and ends it explicitly, so the source
//! acknowledges the input only once every finding reached every sink that
//! takes it. A delivery that panics or is dropped unfinished ends nothing:
//! its handles fail the input as `abandoned`.
//!
//! A sink that refuses a finding (a 3xx/4xx other than 408/429) fails the
//! input, unless the input's source has a dead-letter file: then the
//! finding is written there and the input may be acknowledged.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ack::InputHandle;
use crate::config::{Settings, SinkSettings};
use crate::dead_letter::Entry;
use crate::decode::{self, DecodeError, Errors, Item, ObjectRef};
use crate::dedup::{Claim, Dedup, SentTo};
use crate::detect::Detector;
use crate::event::{EventKey, Record};
use crate::finding::Finding;
use crate::secret::Secrets;
use crate::sink::retry::{DeliveryError, Policy, send_with_retry};
use crate::sink::{self, Sink};
use crate::telemetry;
use crate::throttle::{Admit, Throttle};

/// Findings of one event.
#[derive(Debug)]
pub struct EventFindings {
    pub key: Option<EventKey>,
    pub findings: Vec<Finding>,
    /// When the input was received, for the alert latency histogram.
    pub received: Option<Instant>,
}

/// What scanning some input found.
#[derive(Debug, Default)]
pub struct Scan {
    pub events: u64,
    pub groups: Vec<EventFindings>,
    pub objects: ObjectRefs,
    pub errors: Errors,
    pub skipped: u64,
    /// When the input was received (SQS), copied into each group.
    pub received: Option<Instant>,
}

/// Object references an input named beyond which only their number is
/// kept, unless the reader asks for more ([`ObjectRefs::with_cap`]).
pub const MAX_KEPT_OBJECTS: usize = 100;

/// The S3 objects an input named: the first few, and how many in all. A
/// notification names one or a handful; an input naming more is refused
/// or reported, and for that its count is enough.
#[derive(Debug)]
pub struct ObjectRefs {
    kept: Vec<ObjectRef>,
    named: u64,
    cap: usize,
}

impl Default for ObjectRefs {
    fn default() -> Self {
        ObjectRefs::with_cap(MAX_KEPT_OBJECTS)
    }
}

impl ObjectRefs {
    /// Keeps the first `cap`; a source that reads up to that many objects
    /// a message names needs each of them.
    pub fn with_cap(cap: usize) -> Self {
        ObjectRefs {
            kept: Vec::new(),
            named: 0,
            cap,
        }
    }

    fn push(&mut self, object: ObjectRef) {
        self.named += 1;
        if self.kept.len() < self.cap {
            self.kept.push(object);
        }
    }

    /// Every reference, kept or not.
    pub fn named(&self) -> u64 {
        self.named
    }

    pub fn kept(&self) -> &[ObjectRef] {
        &self.kept
    }

    pub fn is_empty(&self) -> bool {
        self.named == 0
    }
}

pub struct SinkRunner {
    pub settings: SinkSettings,
    /// Removed from the sink's error text before a dead letter is written.
    secrets: Secrets,
    sink: Box<dyn Sink>,
    policy: Policy,
    /// Deliveries in progress for this sink at most.
    slots: Semaphore,
}

/// Concurrent deliveries per sink: enough to absorb a burst, few enough not
/// to hammer a SOC endpoint.
const SINK_CONCURRENCY: usize = 16;

pub struct Pipeline {
    /// Replaced as a whole when the rules are reloaded (SIGHUP); a scan
    /// keeps the set it started with.
    detector: std::sync::RwLock<Arc<Detector>>,
    dedup: Dedup,
    /// Which sinks took which finding, so a returning input alerts only
    /// the sinks that did not.
    sent: SentTo,
    throttle: Option<Mutex<Throttle<InputHandle>>>,
    sinks: Vec<SinkRunner>,
    deliveries: TaskTracker,
    /// Cancels deliveries still retrying when the shutdown grace ends.
    abort: CancellationToken,
}

/// How old an event was when scanned, when its time is known.
fn event_lag(time: Option<chrono::DateTime<chrono::Utc>>, now: SystemTime) {
    if let Some(t) = time
        && let Ok(lag) = now.duration_since(t.into())
    {
        telemetry::event_lag(lag);
    }
}

/// Inputs the throttle may hold as carriers of its summaries: at most a
/// quarter of the smallest SQS source's in-flight bound, so held carriers
/// never take more than that from intake.
fn carrier_bound(settings: &Settings) -> usize {
    settings
        .sources
        .iter()
        .filter_map(|s| match s {
            crate::config::SourceSettings::Sqs(q) => Some(q.max_in_flight.get() / 4),
            _ => None,
        })
        .fold(crate::throttle::MAX_CARRIERS, usize::min)
}

impl Pipeline {
    pub fn new(settings: &Settings, abort: CancellationToken) -> Pipeline {
        Self::with_aws(settings, abort, None)
    }

    /// As [`Pipeline::new`], with the AWS configuration the SNS and
    /// EventBridge sinks build their clients from (required when the
    /// settings have such a sink).
    pub fn with_aws(
        settings: &Settings,
        abort: CancellationToken,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Pipeline {
        let client = sink::http_client();
        let sinks = settings
            .sinks
            .iter()
            .map(|s| SinkRunner {
                settings: s.clone(),
                secrets: Secrets::of_sink(&s.kind),
                sink: sink::build_with(s, &client, aws),
                policy: Policy::with_deadline(s.retry_max),
                slots: Semaphore::new(SINK_CONCURRENCY),
            })
            .collect();
        Pipeline {
            detector: std::sync::RwLock::new(Arc::new(Detector::new(settings.detect.clone()))),
            dedup: Dedup::new(settings.dedup_capacity),
            sent: SentTo::new(settings.dedup_capacity),
            throttle: settings.throttle_window.map(|w| {
                Mutex::new(Throttle::with_limits(
                    w,
                    crate::throttle::MAX_WINDOWS,
                    carrier_bound(settings),
                ))
            }),
            sinks,
            deliveries: TaskTracker::new(),
            abort,
        }
    }

    /// The rules now.
    pub fn detector(&self) -> Arc<Detector> {
        Arc::clone(&self.detector.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts new rules in place: scans that started keep the old ones, and
    /// what they found is delivered as usual.
    pub fn replace_detector(&self, detector: Detector) {
        *self.detector.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(detector);
    }

    /// Decodes one message body and runs the rules on its records. A
    /// record the prefilter proves silent (an EventBridge detail, a plain
    /// record of a `Records` array) is counted and passed over unparsed, as
    /// in S3 objects and replay.
    pub fn scan_body(&self, body: &str, scan: &mut Scan) {
        let now = SystemTime::now();
        let d = self.detector();
        let may_alert = |record: &[u8]| d.may_alert(record);
        decode::decode_body_filtered(body, &may_alert, &mut |item| {
            self.scan_item(&d, item, now, scan)
        });
    }

    /// Decodes a stream (an S3 object, a file), one record at a time.
    /// Blocking: call it from a blocking thread.
    pub fn scan_reader(&self, reader: impl Read, scan: &mut Scan) {
        if let Err(e) = self.scan_reader_with(reader, scan, &mut |_| {}) {
            scan.errors.push(e);
        }
    }

    /// Decodes JSON lines, one body per line; errors carry their line
    /// number and the lines after a bad one are still read. Blocking.
    pub fn scan_lines(&self, reader: impl Read, scan: &mut Scan) {
        let now = SystemTime::now();
        let d = self.detector();
        let stream = decode::decode_lines(reader, &mut |line, item| {
            let item = item.map_err(|error| DecodeError::AtLine {
                line,
                error: Box::new(error),
            });
            self.scan_item(&d, item, now, scan)
        });
        if let Err(e) = stream {
            scan.errors.push(e);
        }
    }

    /// Like [`Pipeline::scan_reader`], calling `after` after each item, so
    /// the caller can take findings out as they are found (and bound how
    /// many are in flight) rather than hold a whole object's, and can
    /// track where each record ended in the stream. The error that ended
    /// the stream early, if one did, is returned rather than added to
    /// `scan.errors`: the caller may know it for the effect of something
    /// it did (a limit its reader enforces).
    pub fn scan_reader_with(
        &self,
        reader: impl Read,
        scan: &mut Scan,
        after: &mut dyn FnMut(&mut Scan),
    ) -> Result<(), DecodeError> {
        let now = SystemTime::now();
        let d = self.detector();
        let may_alert = |record: &[u8]| d.may_alert(record);
        decode::decode_reader_filtered(reader, &may_alert, &mut |item| {
            self.scan_item(&d, item, now, scan);
            after(scan);
        })
    }

    /// `now` is read once per input, not once per record.
    fn scan_item(
        &self,
        d: &Detector,
        item: Result<Item<'_>, DecodeError>,
        now: SystemTime,
        scan: &mut Scan,
    ) {
        match item {
            Ok(Item::Record(rec)) => {
                scan.events += 1;
                scan_record(d, &rec, now, scan);
            }
            Ok(Item::Unparsed(bytes)) => {
                scan.events += 1;
                event_lag(decode::event_time(bytes), now);
            }
            Ok(Item::Object(o)) => scan.objects.push(o),
            Ok(Item::Skipped(kind)) => {
                telemetry::skipped(kind);
                scan.skipped += 1;
            }
            Err(e) => scan.errors.push(e),
        }
    }

    /// Sends each event's findings to every sink that takes them. `unit` is
    /// held until every delivery ended; duplicates of delivered events are
    /// dropped, and copies of events being delivered wait on that delivery.
    /// The caller still ends its own handle on `unit`.
    pub fn dispatch(self: &Arc<Self>, unit: &InputHandle, groups: Vec<EventFindings>) {
        for group in groups {
            if let Some(key) = group.key {
                match self.dedup.claim(key, unit) {
                    Claim::Fresh => {}
                    Claim::Delivered | Claim::InFlight => {
                        let id = group.findings[0].event_id.as_deref().unwrap_or("");
                        telemetry::dedup_suppressed(id);
                        continue;
                    }
                }
            }
            let guard = self.event_unit(group.key, unit);
            for finding in group.findings {
                telemetry::finding(&finding);
                if let Some(t) = &self.throttle {
                    let admit = t.lock().expect("throttle lock").admit(
                        &finding,
                        || guard.clone(),
                        Instant::now(),
                    );
                    match admit {
                        Admit::Send => {}
                        Admit::Escalated => {
                            telemetry::throttle_escalated(&finding.rule, &finding.finding_id);
                        }
                        Admit::Folded { released } => {
                            // The window's summary is carried by this
                            // finding's input now (or by nothing, past the
                            // bound): the one that carried it is handled.
                            if let Some(previous) = released {
                                previous.done();
                            }
                            telemetry::throttle_suppressed(&finding.rule, &finding.finding_id);
                            continue;
                        }
                    }
                }
                self.send(finding, vec![guard.clone()], group.received);
            }
            guard.done();
        }
    }

    /// A unit for one event's deliveries, inside the input's `unit`. When
    /// it ends, the event's key leaves the in-flight set (entering the
    /// delivered cache only if it was delivered, and taking copies that
    /// waited on it along), and its outcome passes to the input.
    fn event_unit(self: &Arc<Self>, key: Option<EventKey>, unit: &InputHandle) -> InputHandle {
        let (me, input) = (Arc::clone(self), unit.clone());
        let dead_letter = unit.dead_letter().cloned();
        let on_done = move |outcome| {
            if let Some(k) = key {
                me.dedup.complete(k, outcome);
            }
            input.end(outcome);
        };
        match dead_letter {
            Some(t) => InputHandle::with_dead_letter(on_done, t),
            None => InputHandle::new(on_done),
        }
    }

    /// Sends a posture finding (from an audit, not an event) to every sink
    /// that takes it, holding `unit` until each delivery ended. No event
    /// dedup or throttling: the audit's state decides when an open problem
    /// alerts again, so an earlier delivery of the same finding id does
    /// not stop this one.
    pub fn deliver_posture(self: &Arc<Self>, mut finding: Finding, unit: &InputHandle) {
        // Account context, runbooks and announced root work apply to
        // posture findings as to the stream's.
        self.detector().enrich(&mut finding);
        telemetry::finding(&finding);
        self.send_with(finding, vec![unit.clone()], Resend::Always, None);
    }

    /// Starts a delivery of `finding` to every sink that takes it. Each
    /// delivery gets its own handles on `guards` and ends them.
    fn send(
        self: &Arc<Self>,
        finding: Finding,
        guards: Vec<InputHandle>,
        received: Option<Instant>,
    ) {
        self.send_with(finding, guards, Resend::NotToSinksThatHaveIt, received)
    }

    fn send_with(
        self: &Arc<Self>,
        finding: Finding,
        guards: Vec<InputHandle>,
        resend: Resend,
        received: Option<Instant>,
    ) {
        let finding = Arc::new(finding);
        for (i, runner) in self.sinks.iter().enumerate() {
            if !runner.settings.accepts(&finding.rule, finding.severity) {
                continue;
            }
            let (me, finding, held) = (Arc::clone(self), Arc::clone(&finding), guards.clone());
            self.deliveries
                .spawn(async move { me.deliver(i, finding, held, resend, received).await });
        }
        guards.into_iter().for_each(InputHandle::done);
    }

    /// Sends throttle summaries as windows close, until `stop`; then closes
    /// every open window at once so the summaries go out within the grace
    /// period.
    pub async fn run_throttle(self: Arc<Self>, stop: CancellationToken) {
        let Some(t) = &self.throttle else { return };
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => false,
                _ = stop.cancelled() => true,
            };
            let (closed, windows, held, stats) = {
                let mut t = t.lock().expect("throttle lock");
                let closed = if stopping {
                    t.close_all()
                } else {
                    t.close_due(Instant::now())
                };
                (closed, t.open_windows(), t.held_inputs(), t.take_stats())
            };
            telemetry::throttle_state(windows, held, stats.evicted, stats.unheld);
            for c in closed {
                let repeats = c.summary.summary.as_ref().map_or(0, |s| s.count);
                tracing::info!(rule = %c.summary.rule, finding_id = %c.summary.finding_id, repeats, held_input = c.carrier.is_some(), "throttle window closed; sending its summary");
                self.send(c.summary, c.carrier.into_iter().collect(), None);
            }
            if stopping {
                return;
            }
        }
    }

    async fn deliver(
        &self,
        sink: usize,
        finding: Arc<Finding>,
        guards: Vec<InputHandle>,
        resend: Resend,
        received: Option<Instant>,
    ) {
        let runner = &self.sinks[sink];
        let name = runner.settings.name.as_str();
        if resend == Resend::NotToSinksThatHaveIt && self.sent.contains(&finding.finding_id, sink) {
            telemetry::alert_already_delivered(name, &finding.finding_id);
            guards.into_iter().for_each(InputHandle::done);
            return;
        }
        let _slot = tokio::select! {
            s = runner.slots.acquire() => s.expect("sink slots are never closed"),
            _ = self.abort.cancelled() => {
                telemetry::alert_failed(name, &finding.finding_id, "shutdown", &"cancelled before the first attempt");
                guards.iter().for_each(InputHandle::release);
                return;
            }
        };
        let started = std::time::Instant::now();
        if let Some(t) = received {
            telemetry::alert_starting(name, &finding.finding_id, started - t);
        }
        let result = send_with_retry(
            runner.sink.as_ref(),
            &finding,
            &runner.policy,
            &self.abort,
            |attempt, wait, err| {
                telemetry::alert_retry(name, &finding.finding_id, attempt, wait, err)
            },
        )
        .await;
        match result {
            Ok(attempts) => {
                self.sent.insert(&finding.finding_id, sink);
                telemetry::alert_delivered(name, &finding.finding_id, started.elapsed(), attempts);
                guards.into_iter().for_each(InputHandle::done);
            }
            // Only a delivery acknowledges: a receiver that refuses the
            // alert leaves the input unacknowledged (SQS redrives it to its
            // DLQ) unless its source keeps a dead-letter file.
            Err(DeliveryError::Rejected { error, status }) => {
                telemetry::alert_failed(name, &finding.finding_id, "rejected", &error);
                self.undeliverable(runner, finding, guards, "rejected", status, &error)
                    .await;
            }
            Err(e @ DeliveryError::GaveUp { .. }) => {
                telemetry::alert_failed(name, &finding.finding_id, "deadline", &e);
                self.undeliverable(runner, finding, guards, "deadline", None, &e.to_string())
                    .await;
            }
            Err(e @ DeliveryError::Cancelled { .. }) => {
                telemetry::alert_failed(name, &finding.finding_id, "shutdown", &e);
                guards.iter().for_each(InputHandle::release);
            }
        }
    }

    /// A delivery that failed for good (`reason`: `rejected`, `deadline`):
    /// each guard whose input has a dead-letter file taking this failure
    /// gets the finding written there (fsynced) and ends done; every other
    /// guard fails with `reason`. A dead letter that cannot be written
    /// fails its guard too: nothing is acknowledged unrecorded.
    async fn undeliverable(
        &self,
        runner: &SinkRunner,
        finding: Arc<Finding>,
        guards: Vec<InputHandle>,
        reason: &'static str,
        status: Option<u16>,
        error: &str,
    ) {
        let sink = runner.settings.name.clone();
        let error = runner.secrets.scrub(error);
        for g in guards {
            let Some(target) = g.dead_letter().filter(|t| t.takes(reason)).cloned() else {
                g.fail(reason);
                self.hand_back_failed_carriers();
                continue;
            };
            let written = target
                .store
                .write(&Entry {
                    input: &target.input,
                    sink: &sink,
                    reason,
                    status,
                    error: &error,
                    finding: &finding,
                })
                .await;
            let place = target.store.describe();
            match written {
                Ok(()) => {
                    telemetry::dead_lettered(
                        &sink,
                        &finding.finding_id,
                        &target.input,
                        reason,
                        &place,
                    );
                    g.done();
                }
                Err(e) => {
                    telemetry::dead_letter_error(&sink, &finding.finding_id, &place, &e);
                    g.fail("dead_letter");
                    self.hand_back_failed_carriers();
                }
            }
        }
    }

    /// A throttle window's carrier whose event failed is not acknowledged
    /// anyway: the throttle lets go of it, so the input comes back now (and
    /// its failed alerts are tried again), not when the window ends.
    fn hand_back_failed_carriers(&self) {
        let Some(t) = &self.throttle else { return };
        let failed = t
            .lock()
            .expect("throttle lock")
            .take_failed_carriers(InputHandle::is_failed);
        // Ending a failed unit's handle changes nothing but lets it finish.
        failed.into_iter().for_each(InputHandle::done);
    }

    /// Waits until every delivery started so far (and any started while
    /// waiting) has ended.
    pub async fn deliveries_finished(&self) {
        self.deliveries.close();
        self.deliveries.wait().await;
    }

    pub fn deliveries_in_progress(&self) -> usize {
        self.deliveries.len()
    }
}

/// Whether a finding already delivered to a sink goes to it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// A returning input alerts only the sinks that did not take it.
    NotToSinksThatHaveIt,
    /// A posture realert: the same finding id, alerted again on purpose.
    Always,
}

/// Runs the rules on one record and keeps its findings.
fn scan_record(d: &Detector, rec: &Record<'_>, now: SystemTime, scan: &mut Scan) {
    event_lag(rec.time(), now);
    let mut findings = Vec::new();
    d.evaluate(rec, &mut findings);
    if !findings.is_empty() {
        scan.groups.push(EventFindings {
            key: rec.event_key(),
            findings,
            received: scan.received,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Outcome;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    const ROOT_CALL: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE","sessionContext":{"attributes":{"mfaAuthenticated":"true"}}},"eventTime":"2024-05-01T12:00:00Z","eventSource":"iam.amazonaws.com","eventName":"DeleteUser","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"aws-cli/2.15.0","eventID":"EVENT","eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#;

    fn settings(sinks: &[(&str, &str)], retry_max_secs: u64) -> Settings {
        let mut toml = String::from("[throttle]\nwindow_secs = 0\n");
        for (name, url) in sinks {
            toml.push_str(&format!(
                "[[sinks]]\ntype = \"webhook\"\nname = \"{name}\"\nurl = \"{url}\"\nretry_max_secs = {retry_max_secs}\n"
            ));
        }
        let raw = crate::config::parse(&toml, &|_| None).unwrap();
        crate::config::validate(&raw).unwrap()
    }

    /// A receiver on 127.0.0.1 answering the n-th request (from 0) with
    /// `status(n)`; returns its URL and the request count.
    async fn receiver(
        status: impl Fn(usize) -> u16 + Send + Sync + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let (c, status) = (Arc::clone(&count), Arc::new(status));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                let code = status(n);
                async move { axum::http::StatusCode::from_u16(code).unwrap() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, count)
    }

    fn groups(p: &Pipeline, event_id: &str) -> Vec<EventFindings> {
        let mut scan = Scan::default();
        p.scan_body(&ROOT_CALL.replace("EVENT", event_id), &mut scan);
        assert_eq!(scan.groups.len(), 1);
        scan.groups
    }

    fn input() -> (InputHandle, mpsc::Receiver<Outcome>) {
        let (tx, rx) = mpsc::channel();
        (
            InputHandle::new(move |o| {
                let _ = tx.send(o);
            }),
            rx,
        )
    }

    /// Dispatches one event under a fresh input unit and waits for the
    /// input's outcome.
    async fn run_input(
        p: &Arc<Pipeline>,
        unit: InputHandle,
        rx: mpsc::Receiver<Outcome>,
        id: &str,
    ) -> Outcome {
        p.dispatch(&unit, groups(p, id));
        unit.done();
        tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("the input ends")
    }

    fn gzip(text: &str) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    /// A log file of a million `{}` elements between two root calls: a few
    /// KB of gzip that once made a million errors, all held at once.
    #[test]
    fn a_million_bad_records_keep_a_hundred_errors_and_count_them_all() {
        let p = Pipeline::new(&settings(&[], 5), CancellationToken::new());
        let mut text = format!(r#"{{"Records":[{},"#, ROOT_CALL.replace("EVENT", "first"));
        text.push_str(&"{},".repeat(1_000_000));
        text.push_str(&ROOT_CALL.replace("EVENT", "last"));
        text.push_str("]}");
        let gz = gzip(&text);
        assert!(gz.len() < 64 * 1024, "{}", gz.len());
        let mut scan = Scan::default();
        p.scan_reader(&gz[..], &mut scan);
        assert_eq!(scan.events, 2);
        assert_eq!(scan.groups.len(), 2, "the records around them still alert");
        assert_eq!(scan.errors.kept().len(), decode::MAX_KEPT_ERRORS);
        assert_eq!(scan.errors.total(), 1_000_000);
        assert_eq!(scan.errors.by_kind()["not_a_record"], 1_000_000);
        assert_eq!(scan.errors.not_kept()["not_a_record"], 999_900);
        // The kept ones are the first, with their positions.
        assert!(
            scan.errors.kept()[0].to_string().contains("element 1:"),
            "{}",
            scan.errors.kept()[0]
        );
    }

    /// An S3 event notification naming a thousand objects.
    #[test]
    fn object_references_are_kept_up_to_the_cap() {
        let p = Pipeline::new(&settings(&[], 5), CancellationToken::new());
        let refs: Vec<String> = (0..1000)
            .map(|i| {
                format!(
                    r#"{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"trail"}},"object":{{"key":"AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/f{i}.json.gz"}}}}}}"#
                )
            })
            .collect();
        let body = format!(r#"{{"Records":[{}]}}"#, refs.join(","));
        let mut scan = Scan::default();
        p.scan_body(&body, &mut scan);
        assert_eq!(scan.objects.kept().len(), MAX_KEPT_OBJECTS);
        assert_eq!(scan.objects.named(), 1000);
        assert!(scan.objects.kept()[0].key.ends_with("/f0.json.gz"));

        let mut scan = Scan {
            objects: ObjectRefs::with_cap(1000),
            ..Scan::default()
        };
        p.scan_body(&body, &mut scan);
        assert_eq!(scan.objects.kept().len(), 1000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_acknowledges_and_a_rejection_does_not() {
        let (ok, _) = receiver(|_| 200).await;
        let p = Arc::new(Pipeline::new(
            &settings(&[("ok", &ok)], 5),
            CancellationToken::new(),
        ));
        let (u, rx) = input();
        assert_eq!(run_input(&p, u, rx, "delivered").await, Outcome::Done);

        for status in [400, 401, 403, 404, 410, 413, 301] {
            let (bad, count) = receiver(move |_| status).await;
            let p = Arc::new(Pipeline::new(
                &settings(&[("bad", &bad)], 5),
                CancellationToken::new(),
            ));
            let (u, rx) = input();
            assert_eq!(
                run_input(&p, u, rx, "refused").await,
                Outcome::Failed("rejected"),
                "HTTP {status}"
            );
            assert_eq!(count.load(Ordering::SeqCst), 1, "not retried: {status}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_cut_short_by_shutdown_releases_the_input() {
        let (down, count) = receiver(|_| 503).await;
        let abort = CancellationToken::new();
        let p = Arc::new(Pipeline::new(
            &settings(&[("down", &down)], 600),
            abort.clone(),
        ));
        let (u, rx) = input();
        p.dispatch(&u, groups(&p, "cut-short"));
        u.done();
        while count.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        abort.cancel();
        let got = tokio::task::spawn_blocking(move || {
            rx.recv_timeout(std::time::Duration::from_secs(30))
        })
        .await
        .unwrap();
        assert_eq!(got, Ok(Outcome::Released));
    }

    /// A delivery task dropped while the receiver has not answered (its
    /// runtime shut down) ended nothing: the input is not acknowledged.
    #[test]
    fn a_delivery_dropped_mid_flight_does_not_acknowledge() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (u, rx) = input();
        rt.block_on(async {
            // Accepts the connection and never answers.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/hook", listener.local_addr().unwrap());
            let p = Arc::new(Pipeline::new(
                &settings(&[("silent", &url)], 600),
                CancellationToken::new(),
            ));
            p.dispatch(&u, groups(&p, "never-answered"));
            let (_conn, _) = listener.accept().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            assert_eq!(p.deliveries_in_progress(), 1);
        });
        u.done();
        assert!(rx.try_recv().is_err(), "the delivery task still holds it");
        drop(rt);
        assert_eq!(rx.try_recv(), Ok(Outcome::Failed(crate::ack::ABANDONED)));
    }

    /// The input comes back after one of two sinks refused it: the sink
    /// that took it is not sent it again; the other is, once fixed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_returning_input_alerts_only_the_sinks_that_did_not_take_it() {
        let (ok, ok_count) = receiver(|_| 200).await;
        let (fixed, fixed_count) = receiver(|n| if n == 0 { 400 } else { 200 }).await;
        let p = Arc::new(Pipeline::new(
            &settings(&[("ok", &ok), ("fixed", &fixed)], 5),
            CancellationToken::new(),
        ));
        let (u, rx) = input();
        assert_eq!(
            run_input(&p, u, rx, "comes-back").await,
            Outcome::Failed("rejected")
        );
        let (u, rx) = input();
        assert_eq!(run_input(&p, u, rx, "comes-back").await, Outcome::Done);
        assert_eq!(
            ok_count.load(Ordering::SeqCst),
            1,
            "the OK sink got it once"
        );
        assert_eq!(fixed_count.load(Ordering::SeqCst), 2);
        // Delivered everywhere now: a third copy is a duplicate.
        let (u, rx) = input();
        assert_eq!(run_input(&p, u, rx, "comes-back").await, Outcome::Done);
        assert_eq!(
            ok_count.load(Ordering::SeqCst) + fixed_count.load(Ordering::SeqCst),
            3
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rejection_goes_to_the_dead_letter_file_when_the_source_has_one() {
        let (bad, _) = receiver(|_| 400).await;
        let (down, _) = receiver(|_| 503).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let file = Arc::new(crate::dead_letter::DeadLetterStore::file(
            crate::dead_letter::DeadLetterFile::new(&path, "logs"),
        ));
        let target = |deadline_too| crate::dead_letter::Target {
            store: Arc::clone(&file),
            input: "event-42".into(),
            deadline_too,
        };
        let with_dl = |t| {
            let (tx, rx) = mpsc::channel();
            (
                InputHandle::with_dead_letter(
                    move |o| {
                        let _ = tx.send(o);
                    },
                    t,
                ),
                rx,
            )
        };
        let p = Arc::new(Pipeline::new(
            &settings(&[("bad", &bad)], 1),
            CancellationToken::new(),
        ));
        let (u, rx) = with_dl(target(false));
        assert_eq!(run_input(&p, u, rx, "dl-rejected").await, Outcome::Done);

        // Out of retry time: failed while the source still retries the
        // input itself, dead-lettered on its last attempt.
        let p = Arc::new(Pipeline::new(
            &settings(&[("down", &down)], 1),
            CancellationToken::new(),
        ));
        let (u, rx) = with_dl(target(false));
        assert_eq!(
            run_input(&p, u, rx, "dl-deadline").await,
            Outcome::Failed("deadline")
        );
        let (u, rx) = with_dl(target(true));
        assert_eq!(run_input(&p, u, rx, "dl-deadline").await, Outcome::Done);

        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["sink"], "bad");
        assert_eq!(lines[0]["reason"], "rejected");
        assert_eq!(lines[0]["status"], 400);
        assert_eq!(lines[0]["input"], "event-42");
        assert_eq!(lines[0]["finding"]["event_id"], "dl-rejected");
        assert!(!lines[0]["error"].as_str().unwrap().contains("127.0.0.1"));
        assert_eq!(lines[1]["sink"], "down");
        assert_eq!(lines[1]["reason"], "deadline");
        assert_eq!(lines[1]["finding"]["event_id"], "dl-deadline");
    }
}
