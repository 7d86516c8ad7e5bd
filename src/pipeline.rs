//! decode -> detect -> dedup -> deliver, with acknowledgement tokens.
//!
//! Sources call [`Pipeline::scan_body`] / [`Pipeline::scan_reader`] to turn
//! input into findings grouped by event, then [`Pipeline::dispatch`] with
//! the input's [`Unit`]. Each delivery holds the unit (through its event's
//! event's unit) until it ends, so the source acknowledges the input only once
//! every finding reached every sink that takes it.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ack::{Outcome, Unit};
use crate::config::{Settings, SinkSettings};
use crate::decode::{self, DecodeError, Item, ObjectRef};
use crate::dedup::{Claim, Dedup};
use crate::detect::Detector;
use crate::event::{EventKey, Record};
use crate::finding::Finding;
use crate::sink::retry::{DeliveryError, Policy, send_with_retry};
use crate::sink::{self, Sink};
use crate::telemetry;
use crate::throttle::{Admit, Throttle};

/// Findings of one event.
#[derive(Debug)]
pub struct EventFindings {
    pub key: Option<EventKey>,
    pub findings: Vec<Finding>,
}

/// What scanning some input found.
#[derive(Debug, Default)]
pub struct Scan {
    pub events: u64,
    pub groups: Vec<EventFindings>,
    pub objects: Vec<ObjectRef>,
    pub errors: Vec<DecodeError>,
    pub skipped: u64,
}

pub struct SinkRunner {
    pub settings: SinkSettings,
    sink: Box<dyn Sink>,
    policy: Policy,
    /// Deliveries in progress for this sink at most.
    slots: Semaphore,
}

/// Concurrent deliveries per sink: enough to absorb a burst, few enough not
/// to hammer a SOC endpoint.
const SINK_CONCURRENCY: usize = 16;

pub struct Pipeline {
    detector: Detector,
    dedup: Dedup,
    throttle: Option<Mutex<Throttle<Unit>>>,
    sinks: Vec<SinkRunner>,
    deliveries: TaskTracker,
    /// Cancels deliveries still retrying when the shutdown grace ends.
    abort: CancellationToken,
}

impl Pipeline {
    pub fn new(settings: &Settings, abort: CancellationToken) -> Pipeline {
        let client = sink::http_client();
        let sinks = settings
            .sinks
            .iter()
            .map(|s| SinkRunner {
                settings: s.clone(),
                sink: sink::build(s, &client),
                policy: Policy::with_deadline(s.retry_max),
                slots: Semaphore::new(SINK_CONCURRENCY),
            })
            .collect();
        Pipeline {
            detector: Detector::new(settings.detect.clone()),
            dedup: Dedup::new(settings.dedup_capacity),
            throttle: settings
                .throttle_window
                .map(|w| Mutex::new(Throttle::new(w))),
            sinks,
            deliveries: TaskTracker::new(),
            abort,
        }
    }

    /// Decodes one message body and runs the rules on its records.
    pub fn scan_body(&self, body: &str, scan: &mut Scan) {
        let now = SystemTime::now();
        decode::decode_body(body, &mut |item| self.scan_item(item, now, scan));
    }

    /// Decodes a stream (an S3 object, a file), one record at a time.
    /// Blocking: call it from a blocking thread.
    pub fn scan_reader(&self, reader: impl Read, scan: &mut Scan) {
        let now = SystemTime::now();
        if let Err(e) = decode::decode_reader(reader, &mut |item| self.scan_item(item, now, scan)) {
            scan.errors.push(e);
        }
    }

    /// Like [`Pipeline::scan_reader`], calling `after` after each item, so
    /// the caller can take findings out as they are found (and bound how
    /// many are in flight) rather than hold a whole object's, and can
    /// track where each record ended in the stream.
    pub fn scan_reader_with(
        &self,
        reader: impl Read,
        scan: &mut Scan,
        after: &mut dyn FnMut(&mut Scan),
    ) {
        let now = SystemTime::now();
        if let Err(e) = decode::decode_reader(reader, &mut |item| {
            self.scan_item(item, now, scan);
            after(scan);
        }) {
            scan.errors.push(e);
        }
    }

    /// `now` is read once per input, not once per record.
    fn scan_item(&self, item: Result<Item<'_>, DecodeError>, now: SystemTime, scan: &mut Scan) {
        match item {
            Ok(Item::Record(rec)) => {
                scan.events += 1;
                self.scan_record(&rec, now, scan);
            }
            Ok(Item::Object(o)) => scan.objects.push(o),
            Ok(Item::Skipped(_)) => scan.skipped += 1,
            Err(e) => scan.errors.push(e),
        }
    }

    fn scan_record(&self, rec: &Record<'_>, now: SystemTime, scan: &mut Scan) {
        if let Some(t) = rec.time()
            && let Ok(lag) = now.duration_since(t.into())
        {
            telemetry::event_lag(lag);
        }
        let mut findings = Vec::new();
        self.detector.evaluate(rec, &mut findings);
        if !findings.is_empty() {
            scan.groups.push(EventFindings {
                key: rec.event_key(),
                findings,
            });
        }
    }

    /// Sends each event's findings to every sink that takes them. `unit` is
    /// held until every delivery ended; duplicates of delivered events are
    /// dropped, and copies of events being delivered wait on that delivery.
    pub fn dispatch(self: &Arc<Self>, unit: &Unit, groups: Vec<EventFindings>) {
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
                        guard.clone(),
                        Instant::now(),
                    );
                    if admit == Admit::Folded {
                        telemetry::throttle_suppressed(&finding.rule, &finding.finding_id);
                        continue;
                    }
                }
                self.send(finding, Arc::new(vec![guard.clone()]));
            }
        }
    }

    /// A unit for one event's deliveries, inside the input's `unit`. When
    /// it ends, the event's key leaves the in-flight set (entering the
    /// delivered cache only if it was delivered, and taking copies that
    /// waited on it along), and a failure or release passes to the input.
    fn event_unit(self: &Arc<Self>, key: Option<EventKey>, unit: &Unit) -> Unit {
        let (me, input) = (Arc::clone(self), unit.clone());
        Unit::new(move |outcome| {
            if let Some(k) = key {
                me.dedup.complete(k, outcome);
            }
            match outcome {
                Outcome::Done => {}
                Outcome::Failed(reason) => input.fail(reason),
                Outcome::Released => input.release(),
            }
        })
    }

    /// Starts a delivery of `finding` to every sink that takes it; `guards`
    /// live until each delivery ended.
    fn send(self: &Arc<Self>, finding: Finding, guards: Held) {
        let finding = Arc::new(finding);
        for (i, runner) in self.sinks.iter().enumerate() {
            if !runner.settings.accepts(&finding.rule, finding.severity) {
                continue;
            }
            let (me, finding, guards) =
                (Arc::clone(self), Arc::clone(&finding), Arc::clone(&guards));
            self.deliveries
                .spawn(async move { me.deliver(i, &finding, &guards).await });
        }
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
            let closed = {
                let mut t = t.lock().expect("throttle lock");
                if stopping {
                    t.close_all()
                } else {
                    t.close_due(Instant::now())
                }
            };
            for c in closed {
                tracing::info!(rule = %c.summary.rule, finding_id = %c.summary.finding_id, repeats = c.held.len(), "throttle window closed; sending its summary");
                self.send(c.summary, Arc::new(c.held));
            }
            if stopping {
                return;
            }
        }
    }

    async fn deliver(&self, sink: usize, finding: &Finding, guards: &[Unit]) {
        let runner = &self.sinks[sink];
        let name = runner.settings.name.as_str();
        let _slot = tokio::select! {
            s = runner.slots.acquire() => s.expect("sink slots are never closed"),
            _ = self.abort.cancelled() => {
                telemetry::alert_failed(name, &finding.finding_id, "shutdown", &"cancelled before the first attempt");
                guards.iter().for_each(|g| g.release());
                return;
            }
        };
        let started = std::time::Instant::now();
        let result = send_with_retry(
            runner.sink.as_ref(),
            finding,
            &runner.policy,
            &self.abort,
            |attempt, wait, err| {
                telemetry::alert_retry(name, &finding.finding_id, attempt, wait, err)
            },
        )
        .await;
        match result {
            Ok(attempts) => {
                telemetry::alert_delivered(name, &finding.finding_id, started.elapsed(), attempts)
            }
            // A receiver that refuses the payload must not wedge the queue:
            // recorded, and the input is still acknowledged.
            Err(e @ DeliveryError::Rejected(_)) => {
                telemetry::alert_failed(name, &finding.finding_id, "rejected", &e)
            }
            Err(e @ DeliveryError::GaveUp { .. }) => {
                telemetry::alert_failed(name, &finding.finding_id, "deadline", &e);
                guards.iter().for_each(|g| g.fail("delivery"));
            }
            Err(e @ DeliveryError::Cancelled { .. }) => {
                telemetry::alert_failed(name, &finding.finding_id, "shutdown", &e);
                guards.iter().for_each(|g| g.release());
            }
        }
    }

    pub fn deliveries_in_progress(&self) -> usize {
        self.deliveries.len()
    }
}

/// What a delivery keeps alive: the units of the events it reports on (one,
/// or all the repeats a throttle summary counts).
type Held = Arc<Vec<Unit>>;
