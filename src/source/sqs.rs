//! The SQS source: long-polling workers, S3 fetches for notifications,
//! batched deletes after delivery, visibility kept extended while work on a
//! message is still going on. A message that cannot be fully handled is
//! never deleted: the queue's redrive policy moves it to its dead-letter
//! queue after `maxReceiveCount` receives.

use std::collections::HashMap;
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

use super::{SourceError, backoff, s3};
use crate::ack::{Outcome, Unit};
use crate::config::SqsSettings;
use crate::pipeline::{Pipeline, Scan};
use crate::telemetry;

/// Most messages one ReceiveMessage returns (an SQS limit), and most entries
/// in one batch request.
const BATCH: usize = 10;

struct InFlight {
    receipt: String,
    extended_at: Instant,
}

type Registry = Arc<Mutex<HashMap<String, InFlight>>>;

struct Ack {
    id: String,
    receipt: String,
    outcome: Outcome,
}

#[derive(Clone)]
pub struct SqsSource {
    settings: Arc<SqsSettings>,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    pipeline: Arc<Pipeline>,
}

impl SqsSource {
    pub fn new(
        settings: SqsSettings,
        aws: &aws_config::SdkConfig,
        pipeline: Arc<Pipeline>,
    ) -> Self {
        let mut s3 = aws_sdk_s3::config::Builder::from(aws);
        if aws.endpoint_url().is_some() {
            // Emulators serve buckets by path, not by virtual host.
            s3 = s3.force_path_style(true);
        }
        SqsSource {
            settings: Arc::new(settings),
            sqs: aws_sdk_sqs::Client::new(aws),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            pipeline,
        }
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
        let mut workers = JoinSet::new();
        for _ in 0..self.settings.concurrency.get() {
            workers.spawn(self.clone().worker(
                stop.clone(),
                Arc::clone(&permits),
                ack_tx.clone(),
                Arc::clone(&registry),
            ));
        }
        drop(ack_tx);
        while workers.join_next().await.is_some() {}
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
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    errors += 1;
                    telemetry::source_error(self.name(), "receive", &DisplayErrorContext(&e));
                    let wait = backoff(errors, Duration::from_millis(500), Duration::from_secs(60));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
            };
            for m in messages {
                let permit = room.split(1).expect("one permit per message received");
                self.handle(m, permit, &acks, &registry).await;
            }
        }
    }

    async fn handle(
        &self,
        m: Message,
        permit: tokio::sync::OwnedSemaphorePermit,
        acks: &mpsc::UnboundedSender<Ack>,
        registry: &Registry,
    ) {
        let id = m.message_id.unwrap_or_default();
        let Some(receipt) = m.receipt_handle else {
            telemetry::source_error(
                self.name(),
                "receive",
                &format!("message {id} has no receipt handle"),
            );
            return;
        };
        telemetry::message_received(self.name(), &id);
        {
            let mut r = registry.lock().expect("registry lock");
            r.insert(
                id.clone(),
                InFlight {
                    receipt: receipt.clone(),
                    extended_at: Instant::now(),
                },
            );
            telemetry::in_flight(self.name(), r.len());
        }
        let tx = acks.clone();
        let (ack_id, ack_receipt) = (id.clone(), receipt);
        let unit = Unit::new(move |outcome| {
            drop(permit);
            let _ = tx.send(Ack {
                id: ack_id,
                receipt: ack_receipt,
                outcome,
            });
        });

        let mut scan = Scan::default();
        self.pipeline
            .scan_body(m.body.as_deref().unwrap_or(""), &mut scan);
        let objects = std::mem::take(&mut scan.objects);
        for object in &objects {
            match s3::scan_object(&self.s3, object, &self.pipeline).await {
                Ok(mut s) => {
                    scan.events += s.events;
                    scan.skipped += s.skipped;
                    scan.groups.append(&mut s.groups);
                    scan.errors.append(&mut s.errors);
                    if !s.objects.is_empty() {
                        scan.errors.push(crate::decode::DecodeError::Malformed {
                            envelope: crate::decode::Envelope::Records,
                            problem: format!("{object} names further objects; not followed"),
                        });
                    }
                }
                Err(e) => {
                    telemetry::source_error(self.name(), "s3", &e);
                    unit.fail("s3");
                }
            }
        }
        for e in &scan.errors {
            telemetry::decode_error(self.name(), &id, e.kind(), e);
            unit.fail("decode");
        }
        telemetry::events_processed(self.name(), scan.events);
        self.pipeline.dispatch(&unit, scan.groups);
        unit.done();
    }

    /// Deletes done messages in batches; leaves failed ones for redrive;
    /// makes released ones visible again at once.
    async fn acker(self, mut rx: mpsc::UnboundedReceiver<Ack>, registry: Registry) {
        let mut done = Vec::new();
        let mut released = Vec::new();
        loop {
            let Some(first) = rx.recv().await else { break };
            let mut next = Some(first);
            // Gather what arrives within a moment into one batch.
            let gather_until = tokio::time::Instant::now() + Duration::from_millis(50);
            while let Some(ack) = next.take() {
                match ack.outcome {
                    Outcome::Done => done.push(ack),
                    Outcome::Released => released.push(ack),
                    Outcome::Failed(reason) => {
                        self.forget(&registry, &ack.id);
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
            self.flush(&mut done, &mut released, &registry).await;
        }
        self.flush(&mut done, &mut released, &registry).await;
    }

    async fn flush(&self, done: &mut Vec<Ack>, released: &mut Vec<Ack>, registry: &Registry) {
        while !done.is_empty() {
            let batch: Vec<Ack> = done.drain(..done.len().min(BATCH)).collect();
            self.delete(&batch).await;
            for a in &batch {
                self.forget(registry, &a.id);
            }
        }
        while !released.is_empty() {
            let batch: Vec<Ack> = released.drain(..released.len().min(BATCH)).collect();
            let receipts: Vec<&str> = batch.iter().map(|a| a.receipt.as_str()).collect();
            self.set_visibility(&receipts, 0, "release").await;
            for a in &batch {
                self.forget(registry, &a.id);
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
                let Some(i) = f
                    .id()
                    .strip_prefix('m')
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                let detail = format!(
                    "message {}: {} {}",
                    batch[i].id,
                    f.code(),
                    f.message().unwrap_or("")
                );
                telemetry::source_error(self.name(), "delete", &detail);
                if !f.sender_fault() {
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

    fn forget(&self, registry: &Registry, id: &str) {
        let mut r = registry.lock().expect("registry lock");
        r.remove(id);
        telemetry::in_flight(self.name(), r.len());
    }

    /// Keeps messages that are still being worked on invisible to other
    /// consumers, so a slow delivery does not turn into a duplicate.
    async fn extender(self, registry: Registry, stop: CancellationToken) {
        let visibility = self.settings.visibility_timeout;
        let period = (visibility / 3).max(Duration::from_secs(1));
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
                    .map(|(id, f)| {
                        f.extended_at = now;
                        (id.clone(), f.receipt.clone())
                    })
                    .collect()
            };
            for chunk in due.chunks(BATCH) {
                let receipts: Vec<&str> = chunk.iter().map(|(_, r)| r.as_str()).collect();
                self.set_visibility(&receipts, visibility.as_secs() as i32, "extend_visibility")
                    .await;
            }
        }
    }

    /// ChangeMessageVisibilityBatch for up to ten receipts. Entries that
    /// fail (the message is already gone) are logged; a failed call is
    /// counted as a source error of `kind`.
    async fn set_visibility(&self, receipts: &[&str], secs: i32, kind: &'static str) {
        let entries = receipts.iter().enumerate().map(|(i, receipt)| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .receipt_handle(*receipt)
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
                    tracing::debug!(
                        source = self.name(),
                        kind,
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
