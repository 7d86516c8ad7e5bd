//! The SQS source: long-polling workers, S3 fetches for notifications,
//! batched deletes after delivery, visibility kept extended while work on a
//! message is still going on. A message that cannot be fully handled is
//! never deleted: the queue's redrive policy moves it to its dead-letter
//! queue after `maxReceiveCount` receives.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    QueueAttributeName,
};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::health::SourceHealth;
use super::{SourceError, backoff, s3};
use crate::ack::{InputHandle, Outcome};
use crate::config::SqsSettings;
use crate::decode::ObjectRef;
use crate::pipeline::{EventFindings, ObjectRefs, Pipeline, Scan};
use crate::telemetry;

/// Most messages one ReceiveMessage returns (an SQS limit), and most entries
/// in one batch request.
const BATCH: usize = 10;

/// ChangeMessageVisibilityBatch calls in progress at once: 10,000 messages
/// in flight are 1,000 calls, which must all be done well inside the
/// visibility timeout, without flooding the SQS endpoint.
const EXTEND_CONCURRENCY: usize = 16;

/// A received message whose visibility is kept extended until it is
/// deleted, left or released.
struct InFlight {
    message_id: String,
    extended_at: Instant,
}

/// Keyed by receipt handle, not message id: a copy of a message received
/// again (after its visibility lapsed, or from a second consumer) is its own
/// receive with its own receipt, and only that receipt can extend or delete it.
type Registry = Arc<Mutex<HashMap<String, InFlight>>>;

/// Events with findings whose deliveries may be in progress at once, per
/// source, whether they came from S3 objects or from message bodies: an
/// object full of findings waits for deliveries instead of holding them
/// all in memory, and so do many small inputs.
const MAX_OBJECT_EVENTS_IN_FLIGHT: usize = 10_000;

/// The batch position a DeleteMessageBatch entry id (`m<position>`) names,
/// if the request being answered sent it.
fn sent_position(id: &str, pending: &[usize]) -> Option<usize> {
    id.strip_prefix('m')
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|i| pending.contains(i))
}

/// Permits of the findings room for `groups`: one per event, and never
/// more than the room holds, so any one message can always go on once the
/// deliveries before it ended.
fn permits_for(groups: &[EventFindings]) -> u32 {
    groups.len().min(MAX_OBJECT_EVENTS_IN_FLIGHT) as u32
}

/// Dispatches `groups` found in an object under a unit nested in the
/// message's `unit`, holding one permit of `room` per event until their
/// deliveries end. Blocks until there is room: call it from a blocking
/// thread of the runtime.
fn dispatch_bounded(
    pipeline: &Arc<Pipeline>,
    unit: &InputHandle,
    room: &Arc<Semaphore>,
    groups: Vec<EventFindings>,
) {
    if groups.is_empty() {
        return;
    }
    let permit = tokio::runtime::Handle::current()
        .block_on(Arc::clone(room).acquire_many_owned(permits_for(&groups)))
        .expect("never closed");
    dispatch_holding(pipeline, unit, permit, groups);
}

/// Dispatches `groups` under a unit nested in `unit` that gives `permit`
/// back once every delivery of them ended.
fn dispatch_holding(
    pipeline: &Arc<Pipeline>,
    unit: &InputHandle,
    permit: tokio::sync::OwnedSemaphorePermit,
    groups: Vec<EventFindings>,
) {
    let parent = unit.clone();
    let chunk = InputHandle::new(move |outcome| {
        drop(permit);
        parent.end(outcome);
    });
    pipeline.dispatch(&chunk, groups);
    chunk.done();
}

/// The message's unit as the blocking S3 reader holds it. The reader's own
/// failures mark the unit where they happen, so a reader that finishes ends
/// its handle as done; one that unwinds from a panic leaves it unsettled,
/// which fails the message as abandoned.
struct ReaderHold(Option<InputHandle>);

impl Drop for ReaderHold {
    fn drop(&mut self) {
        if let Some(unit) = self.0.take()
            && !std::thread::panicking()
        {
            unit.done();
        }
    }
}

/// A message received and registered, with the unit that decides its fate.
struct Received {
    id: String,
    /// When the receive call returned, for the alert latency histogram.
    at: Instant,
    body: Option<String>,
    unit: InputHandle,
}

/// The messages of one receive not yet handled. Dropped with some left (a
/// panic unwinding the worker), those are failed: never deleted unread.
struct Batch(VecDeque<Received>);

impl Drop for Batch {
    fn drop(&mut self) {
        for r in self.0.drain(..) {
            r.unit.fail("panic");
        }
    }
}

struct Ack {
    id: String,
    receipt: String,
    outcome: Outcome,
}

#[derive(Clone)]
pub struct SqsSource {
    settings: Arc<SqsSettings>,
    sqs: aws_sdk_sqs::Client,
    s3: Arc<s3::S3Clients>,
    pipeline: Arc<Pipeline>,
    /// Events with findings from S3 objects that are still being delivered.
    findings_room: Arc<Semaphore>,
    /// Where receive successes and failures are reported, for `/readyz`.
    health: Arc<SourceHealth>,
}

impl SqsSource {
    /// `aws` is the source's own configuration: its region and role
    /// already applied ([`crate::aws::sdk_config`]).
    pub fn new(
        settings: SqsSettings,
        aws: &aws_config::SdkConfig,
        pipeline: Arc<Pipeline>,
    ) -> Self {
        SqsSource {
            settings: Arc::new(settings),
            sqs: aws_sdk_sqs::Client::new(aws),
            s3: Arc::new(s3::S3Clients::new(aws)),
            pipeline,
            findings_room: Arc::new(Semaphore::new(MAX_OBJECT_EVENTS_IN_FLIGHT)),
            health: Arc::default(),
        }
    }

    /// Reports receive successes and failures to `health` (the daemon's
    /// readiness) instead of a private record.
    pub fn with_health(mut self, health: Arc<SourceHealth>) -> Self {
        self.health = health;
        self
    }

    fn name(&self) -> &str {
        &self.settings.name
    }

    /// Checks the queue exists and can be read before the daemon reports
    /// ready, so a typo or a missing permission is an error at start.
    pub async fn check(&self) -> Result<(), SourceError> {
        let err = |message: String| SourceError {
            source_name: self.name().to_owned(),
            message,
        };
        let call = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.settings.queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send();
        let out = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .map_err(|_| {
                err(format!(
                    "queue {}: no answer within 30 s",
                    self.settings.queue_url
                ))
            })?
            .map_err(|e| {
                err(format!(
                    "queue {}: {}",
                    self.settings.queue_url,
                    DisplayErrorContext(&e)
                ))
            })?;
        let has_redrive = out
            .attributes()
            .is_some_and(|a| a.contains_key(&QueueAttributeName::RedrivePolicy));
        if self.settings.allowed_buckets.is_none() {
            tracing::warn!(source = self.name(), queue_url = %self.settings.queue_url, "no allowed_buckets: whoever can send to this queue chooses which S3 objects rootwatch reads with its credentials");
        }
        if !has_redrive {
            tracing::warn!(source = self.name(), queue_url = %self.settings.queue_url, "queue has no redrive policy: messages that cannot be handled will be received again and again instead of moving to a dead-letter queue");
        }
        Ok(())
    }

    /// Receives until `stop`, then waits for every received message to be
    /// deleted, kept or released.
    pub async fn run(self, stop: CancellationToken) {
        let registry: Registry = Arc::default();
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let acker = tokio::spawn(self.clone().acker(ack_rx, Arc::clone(&registry)));
        let extender_stop = CancellationToken::new();
        let extender = tokio::spawn(
            self.clone()
                .extender(Arc::clone(&registry), extender_stop.clone()),
        );
        let permits = Arc::new(Semaphore::new(self.settings.max_in_flight.get()));
        let worker = || {
            self.clone().worker(
                stop.clone(),
                Arc::clone(&permits),
                ack_tx.clone(),
                Arc::clone(&registry),
            )
        };
        supervise(self.name(), &stop, self.settings.concurrency.get(), worker).await;
        drop(ack_tx);
        tracing::info!(
            source = self.name(),
            "stopped receiving; finishing messages in flight"
        );
        let _ = acker.await;
        extender_stop.cancel();
        let _ = extender.await;
        telemetry::in_flight(self.name(), 0);
    }

    async fn worker(
        self,
        stop: CancellationToken,
        permits: Arc<Semaphore>,
        acks: mpsc::UnboundedSender<Ack>,
        registry: Registry,
    ) {
        let mut errors = 0u32;
        let batch = BATCH.min(self.settings.max_in_flight.get()) as u32;
        loop {
            // Room for a full batch first: when sinks are slow, stop pulling.
            let mut room = tokio::select! {
                p = Arc::clone(&permits).acquire_many_owned(batch) => p.expect("never closed"),
                _ = stop.cancelled() => return,
            };
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&self.settings.queue_url)
                .max_number_of_messages(batch as i32)
                .wait_time_seconds(self.settings.wait_time.as_secs() as i32)
                .visibility_timeout(self.settings.visibility_timeout.as_secs() as i32)
                .send();
            let result = tokio::select! {
                r = receive => r,
                _ = stop.cancelled() => return,
            };
            let messages = match result {
                Ok(out) => {
                    errors = 0;
                    self.health.receive_ok(self.name(), Instant::now());
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    errors += 1;
                    let error = DisplayErrorContext(&e);
                    telemetry::source_error(self.name(), "receive", &error);
                    let code = aws_sdk_sqs::error::ProvideErrorMetadata::code(&e);
                    self.health.receive_failed(
                        self.name(),
                        super::health::error_kind(code),
                        &error.to_string(),
                        Instant::now(),
                    );
                    let wait = backoff(errors, Duration::from_millis(500), Duration::from_secs(60));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
            };
            // Every message of the batch is registered for visibility
            // extension now, not when its turn comes: the ones behind a slow
            // S3 object would otherwise reappear and be received again.
            let received_at = Instant::now();
            let mut batch = Batch(VecDeque::with_capacity(messages.len()));
            for m in messages {
                let permit = room.split(1).expect("one permit per message received");
                if let Some(r) = self.register(m, permit, &acks, &registry, received_at) {
                    batch.0.push_back(r);
                }
            }
            while let Some(r) = batch.0.pop_front() {
                self.handle(r).await;
            }
        }
    }

    /// Registers a received message in the in-flight registry and makes its
    /// unit; `None` for a message without a receipt handle (nothing can be
    /// done with it).
    fn register(
        &self,
        m: Message,
        permit: tokio::sync::OwnedSemaphorePermit,
        acks: &mpsc::UnboundedSender<Ack>,
        registry: &Registry,
        received_at: Instant,
    ) -> Option<Received> {
        let id = m.message_id.unwrap_or_default();
        let Some(receipt) = m.receipt_handle else {
            telemetry::source_error(
                self.name(),
                "receive",
                &format!("message {id} has no receipt handle"),
            );
            return None;
        };
        telemetry::message_received(self.name(), &id);
        {
            let mut r = registry.lock().expect("registry lock");
            r.insert(
                receipt.clone(),
                InFlight {
                    message_id: id.clone(),
                    extended_at: Instant::now(),
                },
            );
            telemetry::in_flight(self.name(), r.len());
        }
        let tx = acks.clone();
        let (ack_id, ack_receipt) = (id.clone(), receipt);
        let unit = InputHandle::new(move |outcome| {
            drop(permit);
            let _ = tx.send(Ack {
                id: ack_id,
                receipt: ack_receipt,
                outcome,
            });
        });
        Some(Received {
            id,
            at: received_at,
            body: m.body,
            unit,
        })
    }

    async fn handle(&self, r: Received) {
        // A panic half-way drops `unit` without an outcome: the message
        // fails as abandoned, never taken as handled.
        let Received { id, at, body, unit } = r;
        let limits = self.settings.limits;
        let mut scan = Scan {
            received: Some(at),
            // Each object up to the most a message may name is read; past
            // that the count alone refuses the message.
            objects: ObjectRefs::with_cap(limits.max_objects_per_message),
            ..Scan::default()
        };
        self.pipeline
            .scan_body(body.as_deref().unwrap_or(""), &mut scan);
        let objects = std::mem::take(&mut scan.objects);
        if objects.named() > limits.max_objects_per_message as u64 {
            // Refused whole: reading some of them would hide the rest.
            telemetry::decode_error(
                self.name(),
                &id,
                "too_large",
                &format!(
                    "the message names {} S3 objects: over max_objects_per_message = {}; none read",
                    objects.named(),
                    limits.max_objects_per_message
                ),
            );
            unit.fail("decode");
        } else {
            for object in objects.kept() {
                self.scan_object(&id, object, &unit, &mut scan).await;
            }
        }
        telemetry::decode_errors(self.name(), &id, &scan.errors);
        if !scan.errors.is_empty() {
            unit.fail("decode");
        }
        telemetry::events_processed(self.name(), scan.events);
        let groups = std::mem::take(&mut scan.groups);
        if !groups.is_empty() {
            // The message's own findings wait for room like an object's.
            // The wait cannot be on this message itself: the permits its
            // objects took come back as their deliveries end, and those
            // wait on nothing the message still has to do.
            let permit = Arc::clone(&self.findings_room)
                .acquire_many_owned(permits_for(&groups))
                .await
                .expect("never closed");
            dispatch_holding(&self.pipeline, &unit, permit, groups);
        }
        unit.done();
    }

    /// Reads one object the message names, if its bucket is allowed, into
    /// `scan`; failures mark `unit`.
    async fn scan_object(&self, id: &str, object: &ObjectRef, unit: &InputHandle, scan: &mut Scan) {
        if let Some(allowed) = &self.settings.allowed_buckets
            && !allowed.contains(&object.bucket)
        {
            telemetry::object_refused(self.name(), id, &object.to_string());
            unit.fail("refused");
            return;
        }
        let dispatch = {
            let (pipeline, hold, room) = (
                Arc::clone(&self.pipeline),
                ReaderHold(Some(unit.clone())),
                Arc::clone(&self.findings_room),
            );
            move |groups: Vec<EventFindings>| {
                if let Some(unit) = &hold.0 {
                    dispatch_bounded(&pipeline, unit, &room, groups)
                }
            }
        };
        let client = self
            .s3
            .for_object(object, |e| {
                telemetry::source_error(
                    self.name(),
                    "bucket_location",
                    &format!(
                        "{}: GetBucketLocation failed, reading it in the source's region: {e}",
                        object.bucket
                    ),
                )
            })
            .await;
        let result = s3::scan_object(
            &client,
            object,
            self.settings.expected_bucket_owner.as_deref(),
            self.settings.limits,
            &self.pipeline,
            dispatch,
        )
        .await;
        match result {
            Ok(mut s) => {
                scan.events += s.events;
                scan.skipped += s.skipped;
                scan.groups.append(&mut s.groups);
                scan.errors.append(s.errors);
                if !s.objects.is_empty() {
                    scan.errors.push(crate::decode::DecodeError::Malformed {
                        envelope: crate::decode::Envelope::Records,
                        problem: format!("{object} names further objects; not followed"),
                    });
                }
            }
            Err(e) => match e.limit_kind() {
                Some(kind) => {
                    telemetry::decode_error(self.name(), id, kind, &e);
                    unit.fail("decode");
                }
                None => {
                    telemetry::source_error(self.name(), "s3", &e);
                    unit.fail("s3");
                }
            },
        }
    }

    /// Deletes done messages in batches; leaves failed ones for redrive;
    /// makes released ones visible again at once. Up to one delete call per
    /// worker is in progress at once: with one at a time, a busy queue is
    /// drained only as fast as the round trips of a single call allow.
    async fn acker(self, mut rx: mpsc::UnboundedReceiver<Ack>, registry: Registry) {
        let mut calls = JoinSet::new();
        let most = self.settings.concurrency.get();
        loop {
            let Some(first) = rx.recv().await else { break };
            let (mut done, mut released) = (Vec::new(), Vec::new());
            let mut next = Some(first);
            // Gather what arrives within a moment into one batch.
            let gather_until = tokio::time::Instant::now() + Duration::from_millis(50);
            while let Some(ack) = next.take() {
                match ack.outcome {
                    Outcome::Done => done.push(ack),
                    Outcome::Released => released.push(ack),
                    Outcome::Failed(reason) => {
                        self.forget(&registry, &ack.receipt);
                        telemetry::message_left_for_redrive(
                            self.name(),
                            &ack.id,
                            reason,
                            "not all of it was handled",
                        );
                    }
                }
                if done.len() >= BATCH || released.len() >= BATCH {
                    break;
                }
                next = tokio::time::timeout_at(gather_until, rx.recv())
                    .await
                    .ok()
                    .flatten();
            }
            if done.is_empty() && released.is_empty() {
                continue;
            }
            while calls.len() >= most {
                calls.join_next().await;
            }
            let (me, registry) = (self.clone(), Arc::clone(&registry));
            calls.spawn(async move { me.flush(done, released, &registry).await });
        }
        while calls.join_next().await.is_some() {}
    }

    async fn flush(&self, mut done: Vec<Ack>, mut released: Vec<Ack>, registry: &Registry) {
        while !done.is_empty() {
            let batch: Vec<Ack> = done.drain(..done.len().min(BATCH)).collect();
            self.delete(&batch).await;
            for a in &batch {
                self.forget(registry, &a.receipt);
            }
        }
        while !released.is_empty() {
            let batch: Vec<Ack> = released.drain(..released.len().min(BATCH)).collect();
            let receipts: Vec<(String, String)> = batch
                .iter()
                .map(|a| (a.id.clone(), a.receipt.clone()))
                .collect();
            self.set_visibility(&receipts, 0, "release").await;
            for a in &batch {
                self.forget(registry, &a.receipt);
                telemetry::message_left_for_redrive(
                    self.name(),
                    &a.id,
                    "shutdown",
                    "released at shutdown; it will be received again",
                );
            }
        }
    }

    /// DeleteMessageBatch with retries of whole-call errors and of entries
    /// that failed on the server side.
    async fn delete(&self, batch: &[Ack]) {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(backoff(
                    attempt,
                    Duration::from_millis(200),
                    Duration::from_secs(5),
                ))
                .await;
            }
            let entries = pending.iter().map(|&i| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(&batch[i].receipt)
                    .build()
                    .expect("id and receipt are set")
            });
            let out = match self
                .sqs
                .delete_message_batch()
                .queue_url(&self.settings.queue_url)
                .set_entries(Some(entries.collect()))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    telemetry::source_error(self.name(), "delete", &DisplayErrorContext(&e));
                    continue;
                }
            };
            telemetry::messages_deleted(self.name(), out.successful().len() as u64);
            let mut retry = Vec::new();
            for f in out.failed() {
                // An id this request did not send (a malformed or hostile
                // answer) names no message: reported, never indexed.
                let Some(i) = sent_position(f.id(), &pending) else {
                    telemetry::source_error(
                        self.name(),
                        "delete",
                        &format!(
                            "DeleteMessageBatch answered for an entry id it was not sent ({:?}); ignored",
                            f.id().chars().take(64).collect::<String>()
                        ),
                    );
                    continue;
                };
                let detail = format!(
                    "message {}: {} {}",
                    batch[i].id,
                    f.code(),
                    f.message().unwrap_or("")
                );
                telemetry::source_error(self.name(), "delete", &detail);
                if !f.sender_fault() && !retry.contains(&i) {
                    retry.push(i);
                }
            }
            pending = retry;
            if pending.is_empty() {
                return;
            }
        }
        for &i in &pending {
            telemetry::source_error(
                self.name(),
                "delete",
                &format!(
                    "message {}: still not deleted after retries; it will be received again and de-duplicated",
                    batch[i].id
                ),
            );
        }
    }

    fn forget(&self, registry: &Registry, receipt: &str) {
        let mut r = registry.lock().expect("registry lock");
        r.remove(receipt);
        telemetry::in_flight(self.name(), r.len());
    }

    /// Keeps messages that are still being worked on invisible to other
    /// consumers, so a slow delivery does not turn into a duplicate. A
    /// message is extended once a quarter of the timeout has passed since
    /// its last extension, so even a tick that just misses it leaves half
    /// the timeout to spare.
    async fn extender(self, registry: Registry, stop: CancellationToken) {
        let visibility = self.settings.visibility_timeout;
        let period = (visibility / 4).max(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.cancelled() => return,
            }
            let due: Vec<(String, String)> = {
                let mut r = registry.lock().expect("registry lock");
                let now = Instant::now();
                r.iter_mut()
                    .filter(|(_, f)| now.duration_since(f.extended_at) >= period)
                    .map(|(receipt, f)| {
                        f.extended_at = now;
                        (f.message_id.clone(), receipt.clone())
                    })
                    .collect()
            };
            if due.is_empty() {
                continue;
            }
            tracing::debug!(
                source = self.name(),
                count = due.len(),
                "extending visibility"
            );
            let secs = visibility.as_secs() as i32;
            let mut calls = JoinSet::new();
            for chunk in due.chunks(BATCH) {
                if calls.len() >= EXTEND_CONCURRENCY {
                    calls.join_next().await;
                }
                let (me, receipts) = (self.clone(), chunk.to_vec());
                calls.spawn(async move {
                    me.set_visibility(&receipts, secs, "extend_visibility")
                        .await
                });
            }
            while calls.join_next().await.is_some() {}
        }
    }

    /// ChangeMessageVisibilityBatch for up to ten (message id, receipt)
    /// pairs. Entries that fail (the message is already gone) are logged; a
    /// failed call is counted as a source error of `kind`.
    async fn set_visibility(&self, receipts: &[(String, String)], secs: i32, kind: &'static str) {
        let entries = receipts.iter().enumerate().map(|(i, (_, receipt))| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .receipt_handle(receipt)
                .visibility_timeout(secs)
                .build()
                .expect("id and receipt are set")
        });
        match self
            .sqs
            .change_message_visibility_batch()
            .queue_url(&self.settings.queue_url)
            .set_entries(Some(entries.collect()))
            .send()
            .await
        {
            Ok(out) => {
                for f in out.failed() {
                    let message_id = f
                        .id()
                        .strip_prefix('m')
                        .and_then(|n| n.parse::<usize>().ok())
                        .and_then(|i| receipts.get(i))
                        .map_or("", |(id, _)| id.as_str());
                    tracing::debug!(
                        source = self.name(),
                        kind,
                        message_id,
                        code = f.code(),
                        "visibility not changed (message already gone?)"
                    );
                }
                tracing::debug!(
                    source = self.name(),
                    kind,
                    count = receipts.len(),
                    visibility_secs = secs,
                    "visibility changed"
                );
            }
            Err(e) => telemetry::source_error(self.name(), kind, &DisplayErrorContext(&e)),
        }
    }
}

/// Runs `count` workers made by `worker` until each returns (they return
/// once `stop` is cancelled). A worker that panics is logged and counted,
/// and replaced while the source is still receiving: a panic must not
/// silently shrink the source to nothing.
async fn supervise<F, Fut>(source: &str, stop: &CancellationToken, count: usize, worker: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut workers = JoinSet::new();
    for _ in 0..count {
        workers.spawn(worker());
    }
    while let Some(result) = workers.join_next().await {
        let Err(e) = result else { continue };
        if !e.is_panic() {
            continue;
        }
        let detail = super::panic_text(e.into_panic());
        let restart = !stop.is_cancelled();
        telemetry::worker_panicked(source, &detail, restart);
        if restart {
            workers.spawn(worker());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_delete_answer_names_only_entries_it_was_sent() {
        let pending = [0, 3, 7];
        assert_eq!(sent_position("m3", &pending), Some(3));
        assert_eq!(sent_position("m7", &pending), Some(7));
        for hostile in ["m1", "m99", "m18446744073709551616", "3", "", "m-1", "m٣"] {
            assert_eq!(sent_position(hostile, &pending), None, "{hostile}");
        }
    }

    #[tokio::test]
    async fn a_panicking_worker_is_replaced_until_stop() {
        telemetry::prometheus();
        let stop = CancellationToken::new();
        let started = Arc::new(AtomicUsize::new(0));
        let (s, st) = (Arc::clone(&started), stop.clone());
        let worker = move || {
            let n = s.fetch_add(1, Ordering::SeqCst);
            let st = st.clone();
            async move {
                if n < 3 {
                    panic!("worker {n} fails");
                }
                // The replacement of the third panic ends the source.
                st.cancel();
            }
        };
        supervise("supervise-test", &stop, 2, worker).await;
        // Two started, three panicked and were replaced; the first
        // replacement that returns ends it, and the last one still runs to
        // its end before supervise returns.
        assert!(started.load(Ordering::SeqCst) >= 4, "{started:?}");
        let text = telemetry::prometheus().render();
        assert!(
            text.contains(
                r#"rootwatch_source_errors_total{source="supervise-test",kind="worker_panic"} 3"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_panic_after_stop_is_not_replaced() {
        let stop = CancellationToken::new();
        stop.cancel();
        let started = Arc::new(AtomicUsize::new(0));
        let s = Arc::clone(&started);
        supervise("supervise-stopped", &stop, 1, move || {
            s.fetch_add(1, Ordering::SeqCst);
            async { panic!("late") }
        })
        .await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn unhandled_messages_of_a_dropped_batch_fail() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut batch = Batch(VecDeque::new());
        for i in 0..2 {
            let tx = tx.clone();
            batch.0.push_back(Received {
                id: format!("m{i}"),
                at: Instant::now(),
                body: None,
                unit: InputHandle::new(move |o| tx.send(o).unwrap()),
            });
        }
        drop(batch);
        assert_eq!(rx.try_recv().unwrap(), Outcome::Failed("panic"));
        assert_eq!(rx.try_recv().unwrap(), Outcome::Failed("panic"));
    }
}
