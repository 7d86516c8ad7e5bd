//! Following one log group: the poll loop that reads its window with
//! FilterLogEvents, hands each event with findings to the pipeline under a
//! unit of its own, settles the outcomes and saves the group's checkpoint;
//! and the supervisor that starts a crashed follower again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{GroupCheckpoint, Progress, Settled};
use super::{CALL_TIMEOUT, CallError, GroupInfo, Shared, Update, is_throttling, now_ms};
use crate::ack::{InputHandle, Outcome};
use crate::config::LogGroups;
use crate::dead_letter::Target;
use crate::pipeline::Scan;
use crate::source::{backoff, panic_text};
use crate::telemetry;

/// Most events with alerts a group may have awaiting delivery (including
/// repeats a throttle window holds until its summary is delivered); beyond
/// it the group stops reading until deliveries end (backpressure, bounded
/// memory: each keeps its message for a retry). As the SQS source's default.
const MAX_IN_FLIGHT: usize = 10_000;
/// A group far behind (an old `start`, a long outage) is read in steps of
/// this, so the ids it remembers stay bounded; each step that finds nothing
/// new doubles the next one, so empty time costs few calls.
const CATCH_UP_SPAN: Duration = Duration::from_secs(15 * 60);
/// Share of `lookback` at which a late event is worth a warning.
const LATE_WARNING_SHARE: f64 = 0.8;
/// At most one late-event warning per group in this time.
const LATE_WARNING_EVERY: Duration = Duration::from_secs(600);
/// DescribeLogGroups returns at most 50 groups a page.
const DESCRIBE_PAGE: i32 = 50;
/// Delivery rounds for an event whose alerts ran out of retry time (each
/// round is a sink's whole `retry_max_secs`), after which its undelivered
/// findings go to the dead-letter file. Without a bound, one sink down for
/// good would hold the group's checkpoint back forever and fill its
/// in-flight budget; five rounds ride out an outage of five retry periods
/// plus polls. A rejection is dead-lettered at once: sending the same
/// alert again cannot change the answer.
pub const DELIVERY_ATTEMPTS: u32 = 5;

enum Read {
    CaughtUp,
    /// Read up to a step short of now: read on at once.
    Behind,
    /// Too many deliveries pending: wait for them.
    Paused,
}

impl Shared {
    fn name(&self) -> &str {
        &self.settings.name
    }

    /// One API call: waits for a slot from the limiter, gives up after
    /// [`CALL_TIMEOUT`], and returns at once on `stop`.
    pub(super) async fn call<T, E>(
        &self,
        stop: &CancellationToken,
        kind: &'static str,
        request: impl Future<Output = Result<T, E>>,
    ) -> Result<T, CallError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        tokio::select! {
            _ = self.limiter.acquire() => {}
            _ = stop.cancelled() => return Err(CallError::Stopped),
        }
        let result = tokio::select! {
            r = tokio::time::timeout(CALL_TIMEOUT, request) => r,
            _ = stop.cancelled() => return Err(CallError::Stopped),
        };
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CallError::Api {
                kind: if is_throttling(e.code()) {
                    "throttled"
                } else {
                    kind
                },
                code: e.code().map(str::to_owned),
                message: DisplayErrorContext(&e).to_string(),
            }),
            Err(_) => Err(CallError::Api {
                kind,
                code: None,
                message: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
            }),
        }
    }

    /// The groups this source follows now: each named group (which must
    /// exist), or every group matching the prefix.
    /// Errors carry the `source_error` kind (`discover`, `throttled`).
    pub(super) async fn resolve(
        &self,
        stop: &CancellationToken,
    ) -> Result<Vec<GroupInfo>, (&'static str, String)> {
        match &self.settings.log_groups {
            LogGroups::Prefix(prefix) => self.list(prefix, None, stop).await,
            LogGroups::Names(names) => {
                let mut out = Vec::new();
                for n in names {
                    let found = self.list(n, Some(n), stop).await?;
                    match found.into_iter().find(|g| &g.name == n) {
                        Some(g) => out.push(g),
                        None => {
                            return Err(("discover", format!("log group `{n}` does not exist")));
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// DescribeLogGroups by prefix, every page; stops early at `exact`.
    async fn list(
        &self,
        prefix: &str,
        exact: Option<&str>,
        stop: &CancellationToken,
    ) -> Result<Vec<GroupInfo>, (&'static str, String)> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let request = self
                .client
                .describe_log_groups()
                .log_group_name_prefix(prefix)
                .limit(DESCRIBE_PAGE)
                .set_next_token(token.take())
                .send();
            let page = match self.call(stop, "discover", request).await {
                Ok(p) => p,
                Err(CallError::Stopped) => return Err(("discover", "stopped".into())),
                Err(CallError::Api { kind, message, .. }) => {
                    return Err((kind, format!("listing log groups `{prefix}*`: {message}")));
                }
            };
            for g in page.log_groups() {
                if let Some(name) = g.log_group_name() {
                    out.push(GroupInfo {
                        name: name.to_owned(),
                        created_ms: g.creation_time(),
                    });
                }
            }
            if exact.is_some_and(|e| out.iter().any(|g| g.name == e)) {
                return Ok(out);
            }
            match page.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(out),
            }
        }
    }

    /// Sets every followed group's checkpoint age once per poll interval,
    /// from its last saved checkpoint, until `stop`: a follower that no
    /// longer saves (stuck, crashed, backing off) shows a growing age, so
    /// `RootwatchCheckpointStale` can fire.
    pub(super) async fn report_ages(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = stop.cancelled() => return,
            }
            let now = now_ms();
            for (group, c) in self.saved.lock().expect("saved lock").iter() {
                let age = (now - c.position_ms).max(0) as u64;
                telemetry::checkpoint_age(group, Duration::from_millis(age));
            }
        }
    }

    /// Stops reporting `group`'s checkpoint age (its lease went to
    /// another replica).
    pub(super) fn forget(&self, group: &str) {
        self.saved.lock().expect("saved lock").remove(group);
    }

    /// [`Shared::follow`] under [`supervise_follower`]: a crashed
    /// follower starts again from the group's last saved checkpoint.
    pub(super) async fn follow_supervised(
        self: Arc<Self>,
        group: String,
        progress: Progress,
        stop: CancellationToken,
        updates: mpsc::Sender<Update>,
    ) {
        let mut first = Some(progress);
        let (me, g, st) = (Arc::clone(&self), group.clone(), stop.clone());
        supervise_follower(
            self.name(),
            &group,
            &stop,
            Duration::from_secs(1),
            move || {
                let progress = first.take().unwrap_or_else(|| {
                    let saved = me.saved.lock().expect("saved lock").get(&g).cloned();
                    match saved {
                        Some(c) => Progress::resume(&c, me.reach),
                        None => Progress::new(now_ms() - me.reach.lookback_ms, me.reach),
                    }
                });
                Arc::clone(&me).follow(g.clone(), progress, st.clone(), updates.clone())
            },
        )
        .await
    }

    /// Polls one group until `stop`, then settles what is in flight and
    /// saves the final position.
    pub(super) async fn follow(
        self: Arc<Self>,
        group: String,
        mut progress: Progress,
        stop: CancellationToken,
        updates: mpsc::Sender<Update>,
    ) {
        // Outcomes of this group's units. Unbounded is bounded here: one
        // message per unit, and at most MAX_IN_FLIGHT units are out.
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Outcome)>();
        let mut saved = None;
        let mut errors = 0u32;
        let mut late = LateEvents::default();
        loop {
            while let Ok((id, outcome)) = rx.try_recv() {
                self.settle(&group, &mut progress, &id, outcome);
            }
            if stop.is_cancelled() {
                break;
            }
            self.retry_failed(&group, &mut progress, &tx);
            let mut wait = self.settings.poll_interval;
            if progress.in_flight() < MAX_IN_FLIGHT {
                match self
                    .read(&group, &mut progress, &tx, &stop, &mut late)
                    .await
                {
                    Ok(read) => {
                        errors = 0;
                        self.health
                            .receive_ok(self.name(), std::time::Instant::now());
                        if matches!(read, Read::Behind) {
                            wait = Duration::ZERO;
                        }
                    }
                    Err(CallError::Stopped) => break,
                    Err(CallError::Api {
                        kind,
                        code,
                        message,
                    }) => {
                        errors += 1;
                        self.health.receive_failed(
                            self.name(),
                            crate::source::health::error_kind(code.as_deref()),
                            &format!("log group {group}: {message}"),
                            std::time::Instant::now(),
                        );
                        telemetry::source_error(
                            self.name(),
                            kind,
                            &format!("log group {group}: {message}"),
                        );
                        wait = backoff(errors, Duration::from_secs(1), Duration::from_secs(300));
                    }
                }
            }
            self.save(&group, &mut progress, &updates, &mut saved).await;
            let until = Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    Some((id, outcome)) = rx.recv() => self.settle(&group, &mut progress, &id, outcome),
                    _ = stop.cancelled() => break,
                }
            }
        }
        // Every unit holds a sender: the channel ends when the last of them
        // has reported, delivered or cut short by the app's grace period.
        drop(tx);
        if progress.in_flight() > 0 {
            tracing::info!(source = self.name(), log_group = %group, in_flight = progress.in_flight(), "stopping: waiting for alerts in flight");
        }
        while let Some((id, outcome)) = rx.recv().await {
            self.settle(&group, &mut progress, &id, outcome);
        }
        self.save(&group, &mut progress, &updates, &mut saved).await;
    }

    /// Reads the group's window, page by page. The frontier moves only when
    /// every page was read. A window widened over empty time stops at its
    /// first page with new events: those are handled (and known, so not
    /// handled twice), and the read goes on at once with the base span.
    async fn read(
        &self,
        group: &str,
        progress: &mut Progress,
        tx: &mpsc::UnboundedSender<(String, Outcome)>,
        stop: &CancellationToken,
        late: &mut LateEvents,
    ) -> Result<Read, CallError> {
        let now = now_ms();
        let window = progress.window(now, CATCH_UP_SPAN.as_millis() as i64);
        let widened = progress.window_is_widened();
        let mut new_events = 0;
        let mut token: Option<String> = None;
        loop {
            if progress.in_flight() >= MAX_IN_FLIGHT {
                return Ok(Read::Paused);
            }
            // startTime and endTime are inclusive, in ms since the epoch; a
            // page holds up to 1 MB or 10,000 events, and a partial or
            // empty page with a nextToken does not end the search
            // (FilterLogEvents API reference).
            let request = self
                .client
                .filter_log_events()
                .log_group_name(group)
                .start_time(window.start)
                .end_time(window.end)
                .set_filter_pattern(self.filter.clone())
                .set_next_token(token.take())
                .send();
            let page = self.call(stop, "filter", request).await?;
            telemetry::cloudwatch_page(self.name(), window.full, page.events().len());
            for event in page.events() {
                if self.handle(group, event, progress, tx) {
                    new_events += 1;
                    late.observe(self, group, event, progress, now);
                    if window.full && event.timestamp().is_some_and(|t| t < window.poll_start) {
                        telemetry::full_read_find(self.name());
                    }
                }
            }
            if widened && new_events > 0 {
                progress.read_found(new_events);
                return Ok(Read::Behind);
            }
            match page.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        progress.read_found(new_events);
        progress.finish_read(&window);
        Ok(if window.end < now {
            Read::Behind
        } else {
            Read::CaughtUp
        })
    }

    /// Handles one event read from the group; returns whether it was new.
    fn handle(
        &self,
        group: &str,
        event: &FilteredLogEvent,
        progress: &mut Progress,
        tx: &mpsc::UnboundedSender<(String, Outcome)>,
    ) -> bool {
        let Some(ts) = event.timestamp() else {
            telemetry::source_error(
                self.name(),
                "filter",
                &format!("log group {group}: an event without a timestamp was skipped"),
            );
            return false;
        };
        let message = event.message().unwrap_or("");
        // Every real event has an id; without one, the stream, time and
        // text identify it well enough to skip it when read again.
        let id = match event.event_id() {
            Some(id) => id.to_owned(),
            None => format!(
                "{}/{ts}/{:016x}",
                event.log_stream_name().unwrap_or(""),
                fxhash(message)
            ),
        };
        if progress.is_known(&id) {
            return false;
        }
        telemetry::message_received(self.name(), &id);
        self.dispatch(group, id, ts, message.to_owned(), progress, tx, 1);
        true
    }

    /// Scans one event and dispatches its findings under a unit of its own.
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        group: &str,
        id: String,
        ts: i64,
        message: String,
        progress: &mut Progress,
        tx: &mpsc::UnboundedSender<(String, Outcome)>,
        attempt: u32,
    ) {
        let mut scan = Scan::default();
        self.pipeline.scan_body(&message, &mut scan);
        if attempt == 1 {
            // Reading the event again cannot change it: reported once, and
            // its records that did decode still alert (as the file source).
            telemetry::decode_errors(self.name(), &id, &scan.errors);
            crate::source::report_unfetched(
                self.name(),
                &format!("log group {group}, event {id}"),
                "the cloudwatch_logs source",
                &scan.objects,
            );
            telemetry::events_processed(self.name(), scan.events);
        }
        if scan.groups.is_empty() {
            progress.handled_quietly(id, ts);
            return;
        }
        progress.dispatched_again(id.clone(), ts, message, attempt);
        let tx = tx.clone();
        let target = Target {
            store: Arc::clone(&self.dead_letter),
            input: format!("{group}/{id}").into(),
            deadline_too: attempt >= DELIVERY_ATTEMPTS,
        };
        let unit_id = id;
        let unit = InputHandle::with_dead_letter(
            move |outcome| {
                let _ = tx.send((unit_id, outcome));
            },
            target,
        );
        self.pipeline.dispatch(&unit, scan.groups);
        unit.done();
    }

    fn retry_failed(
        &self,
        group: &str,
        progress: &mut Progress,
        tx: &mpsc::UnboundedSender<(String, Outcome)>,
    ) {
        for (id, u) in progress.take_failed() {
            let attempt = u.attempts.saturating_add(1);
            tracing::info!(source = self.name(), log_group = %group, event_id = %id, attempt, "retrying an event whose alerts were not delivered");
            self.dispatch(group, id, u.ts, u.message, progress, tx, attempt);
        }
    }

    fn settle(&self, group: &str, progress: &mut Progress, id: &str, outcome: Outcome) {
        match progress.settle(id, outcome) {
            Settled::Done => telemetry::messages_deleted(self.name(), 1),
            Settled::Failed(reason) => tracing::warn!(
                source = self.name(),
                log_group = %group,
                event_id = %id,
                reason,
                "not every alert of this event was delivered: the checkpoint stays before it and it is retried on the next poll (undeliverable alerts go to the dead-letter file after the last round)"
            ),
            Settled::Released => tracing::info!(
                source = self.name(),
                log_group = %group,
                event_id = %id,
                "alert cut short by shutdown: the checkpoint stays before the event, which is read again after a restart"
            ),
            Settled::Unknown => {}
        }
    }

    async fn save(
        &self,
        group: &str,
        progress: &mut Progress,
        updates: &mpsc::Sender<Update>,
        saved: &mut Option<GroupCheckpoint>,
    ) {
        let position = progress.advance();
        let age = (now_ms() - position).max(0) as u64;
        telemetry::checkpoint_age(group, Duration::from_millis(age));
        let c = progress.checkpoint();
        if saved.as_ref() != Some(&c) {
            *saved = Some(c.clone());
            self.saved
                .lock()
                .expect("saved lock")
                .insert(group.to_owned(), c.clone());
            let _ = updates.send(Update::Group(group.to_owned(), c)).await;
        }
    }
}

/// Crashes in a row after which a group's follower is not started again
/// and the source fails (a crash after a follower ran for
/// [`FOLLOWER_HEALTHY_AFTER`] starts the count again).
pub(super) const FOLLOWER_CRASHES: u32 = 5;
pub(super) const FOLLOWER_HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Runs the follower `start` makes until one returns (they return after
/// `stop`). One that panics is logged and counted
/// (`rootwatch_task_failures_total{task="follower"}`) and started again
/// after a backoff; while none runs, no one reads the group. After
/// [`FOLLOWER_CRASHES`] crashes in a row this panics, failing the source.
async fn supervise_follower<F, Fut>(
    source: &str,
    group: &str,
    stop: &CancellationToken,
    backoff_base: Duration,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut crashes = 0u32;
    loop {
        let started = Instant::now();
        let Err(e) = tokio::spawn(start()).await else {
            return;
        };
        if !e.is_panic() {
            return;
        }
        if started.elapsed() >= FOLLOWER_HEALTHY_AFTER {
            crashes = 0;
        }
        crashes += 1;
        let detail = panic_text(e.into_panic());
        telemetry::task_failed(
            "follower",
            &format!("{source}/{group}"),
            &format!("crash {crashes} in a row: {detail}"),
        );
        if stop.is_cancelled() {
            return;
        }
        if crashes >= FOLLOWER_CRASHES {
            panic!("log group {group}: its follower crashed {crashes} times in a row ({detail})");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff(crashes, backoff_base, Duration::from_secs(60))) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Watches how late events become searchable (`ingestionTime -
/// timestamp`): recorded for every new event, and a warning (at most one per
/// group every [`LATE_WARNING_EVERY`]) when one comes close to `lookback`,
/// so an operator raises the lookback before events fall outside it.
#[derive(Default)]
struct LateEvents {
    warned_at: Option<Instant>,
}

impl LateEvents {
    /// Also tells `progress`, whose polls reach back by the delays seen.
    fn observe(
        &mut self,
        shared: &Shared,
        group: &str,
        event: &FilteredLogEvent,
        progress: &mut Progress,
        now: i64,
    ) {
        let (Some(ts), Some(ingested)) = (event.timestamp(), event.ingestion_time()) else {
            return;
        };
        let delay_ms = ingested.saturating_sub(ts).max(0);
        progress.observe_delay(now, delay_ms);
        let delay = Duration::from_millis(delay_ms as u64);
        telemetry::ingestion_delay(shared.name(), delay);
        let lookback = shared.settings.lookback;
        if delay > lookback {
            telemetry::late_event(shared.name());
        }
        if delay.as_secs_f64() >= lookback.as_secs_f64() * LATE_WARNING_SHARE
            && self
                .warned_at
                .is_none_or(|t| t.elapsed() >= LATE_WARNING_EVERY)
        {
            self.warned_at = Some(Instant::now());
            telemetry::late_event_warning(shared.name(), group, delay, lookback);
        }
    }
}

/// A stable 64-bit FNV-1a hash, for the rare event without an id.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(10);

    /// A follower that panics is counted and started again after a
    /// backoff; one that returns ends its supervision.
    #[tokio::test]
    async fn a_crashed_follower_starts_again_after_a_backoff() {
        telemetry::prometheus();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let r = Arc::clone(&runs);
        let before = Instant::now();
        supervise_follower("cwl", "g", &CancellationToken::new(), MS, move || {
            let n = r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("follower bug {n}");
                }
            }
        })
        .await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Two backoffs: at least half of 2 and half of 4 times the base.
        assert!(before.elapsed() >= MS * 3, "{:?}", before.elapsed());
        let metrics = telemetry::prometheus().render();
        let failures = metrics
            .lines()
            .find_map(|l| l.strip_prefix(r#"rootwatch_task_failures_total{task="follower"} "#))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(failures.is_some_and(|n| n >= 2.0), "{metrics}");
    }

    /// Crashing again and again fails the source (which makes `/readyz`
    /// say `failed` and the daemon exit 70) instead of leaving a group
    /// unread.
    #[tokio::test]
    async fn a_follower_crashing_again_and_again_fails_the_source() {
        telemetry::prometheus();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let r = Arc::clone(&runs);
        let task = tokio::spawn(async move {
            supervise_follower("cwl", "g", &CancellationToken::new(), MS, move || {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { panic!("always") }
            })
            .await
        });
        let e = task.await.unwrap_err();
        assert!(e.is_panic());
        assert!(panic_text(e.into_panic()).contains("crashed 5 times in a row"));
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            FOLLOWER_CRASHES
        );
    }

    /// A stop during the backoff ends supervision without another start.
    #[tokio::test]
    async fn a_stop_during_the_backoff_starts_nothing_more() {
        let stop = CancellationToken::new();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (r, st) = (Arc::clone(&runs), stop.clone());
        let supervised = tokio::spawn(async move {
            supervise_follower("cwl", "g", &st, Duration::from_secs(1), move || {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { panic!("once") }
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.cancel();
        supervised.await.unwrap();
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
