//! The CloudWatch Logs source: follows the log groups CloudTrail writes to
//! with `FilterLogEvents`, one task per group, all sharing one request rate
//! limiter. Each log event's message is one CloudTrail record.
//!
//! CloudWatch Logs makes events searchable late and out of order, so reads
//! overlap and skip events already handled, by their event id: each poll
//! reaches back by how late events have lately been arriving, and once per
//! `full_read_interval` a full read reaches back the whole `lookback` (see
//! [`checkpoint::Progress`]). Each event with findings is its own
//! acknowledgement [`InputHandle`]: the checkpoint of a group (see
//! [`checkpoint::Progress`]) moves past an event only when its
//! alerts were delivered, and a failed event is retried alone instead of
//! holding back a whole page. Events without findings need no unit.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use checkpoint::{CheckpointError, CheckpointFile, GroupCheckpoint, Progress, Reach, Settled};
use checkpoint_table::{self as table, CheckpointTable, TableError};

use super::{SourceError, backoff, panic_text};
use crate::ack::{InputHandle, Outcome};
use crate::config::{CheckpointStore, CloudwatchLogsSettings, DeadLetterDest, LogGroups, Start};
use crate::dead_letter::{DeadLetterFile, DeadLetterQueue, DeadLetterStore, Target};
use crate::detect::{DetectSettings, Scope};
use crate::pipeline::{Pipeline, Scan};
use crate::telemetry;

pub mod checkpoint;
pub mod checkpoint_table;
pub mod handled;
mod limiter;

pub use limiter::RateLimiter;

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
/// One API call, including the SDK's connection attempts.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// DescribeLogGroups is eventually consistent: a group created this long
/// before a listing that missed it still counts as new.
const DISCOVERY_SLACK_MS: i64 = 60_000;
/// DescribeLogGroups returns at most 50 groups a page.
const DESCRIBE_PAGE: i32 = 50;
const ALLOWLIST_RULE: &str = "source-ip-not-allowed";
const IAM_LOGIN_RULE: &str = "iam-console-login-without-mfa";
/// Delivery rounds for an event whose alerts ran out of retry time (each
/// round is a sink's whole `retry_max_secs`), after which its undelivered
/// findings go to the dead-letter file. Without a bound, one sink down for
/// good would hold the group's checkpoint back forever and fill its
/// in-flight budget; five rounds ride out an outage of five retry periods
/// plus polls. A rejection is dead-lettered at once: sending the same
/// alert again cannot change the answer.
pub const DELIVERY_ATTEMPTS: u32 = 5;

// ---------------------------------------------------------------- decisions

/// Whether `filter_pattern` is passed to FilterLogEvents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFilter {
    /// No pattern configured: every event is read.
    Off,
    /// The pattern is sent; `caveat` says what it may hide from a rule.
    Apply {
        pattern: String,
        caveat: Option<&'static str>,
    },
    /// A pattern is configured but every event is read, and why.
    Ignored { reason: &'static str },
}

/// Decides about the server-side filter. The IP allow-list rule with scope
/// `all` must see every human call, not only root's: a pattern that passes
/// only root events would let every other call from outside the allow list
/// through unchecked. So with allow-list CIDRs set, the rule enabled and
/// scope `all`, the pattern is ignored. With scope `root` (or the rule off
/// or no CIDRs) a root-only pattern hides nothing the allow-list rule needs.
/// Loaded Sigma rules may need any event: the pattern is ignored too (the
/// decision is made when the source starts; a reload does not revisit it).
pub fn server_filter(pattern: Option<&str>, detect: &DetectSettings) -> ServerFilter {
    let Some(pattern) = pattern else {
        return ServerFilter::Off;
    };
    if detect.sigma.as_ref().is_some_and(|s| !s.is_empty()) {
        return ServerFilter::Ignored {
            reason: "Sigma rules ([detect.sigma]) may match any event, so every event must be read; filter_pattern would hide the events they need",
        };
    }
    let allowlist = &detect.context.allowlist;
    if !allowlist.cidrs.is_empty()
        && !detect.disabled.contains(ALLOWLIST_RULE)
        && allowlist.scope == Scope::All
    {
        return ServerFilter::Ignored {
            reason: "detect.ip_allowlist checks every human call (scope \"all\") against the allow list, so every event must be read; filter_pattern would hide the non-root calls it has to check",
        };
    }
    let caveat = (!detect.disabled.contains(IAM_LOGIN_RULE)).then_some(
        "rule iam-console-login-without-mfa looks at IAM users' console logins: the pattern must let them through (or disable the rule), or they go unchecked",
    );
    ServerFilter::Apply {
        pattern: pattern.to_owned(),
        caveat,
    }
}

/// Where a log group that has no checkpoint begins. A group created after
/// the source last listed its prefix is new: it is read from its creation
/// (or from `start`, if earlier), so nothing written between its creation
/// and its discovery is skipped. Any other group begins at `start`.
pub fn initial_position(start_ms: i64, created_ms: Option<i64>, listed_before: Option<i64>) -> i64 {
    match (created_ms, listed_before) {
        (Some(c), Some(l)) if c >= l - DISCOVERY_SLACK_MS => start_ms.min(c),
        _ => start_ms,
    }
}

/// Error codes CloudWatch Logs uses when a request is over its quota
/// (`ThrottlingException`, `RateExceeded`, ...), as every source reads them.
pub use super::health::is_throttling;

// ---------------------------------------------------------------- source

#[derive(Debug)]
enum CallError {
    Stopped,
    Api {
        kind: &'static str,
        /// The service's error code, when it answered.
        code: Option<String>,
        message: String,
    },
}

enum Read {
    CaughtUp,
    /// Read up to a step short of now: read on at once.
    Behind,
    /// Too many deliveries pending: wait for them.
    Paused,
}

#[derive(Debug, Clone)]
struct GroupInfo {
    name: String,
    created_ms: Option<i64>,
}

enum Update {
    Group(String, GroupCheckpoint),
    Discovered(i64),
    /// Give the group's lease up, after its last checkpoint (sent before
    /// this on the same channel) is written. Table store only.
    Release(String),
}

struct Shared {
    dead_letter: Arc<DeadLetterStore>,
    settings: CloudwatchLogsSettings,
    client: aws_sdk_cloudwatchlogs::Client,
    pipeline: Arc<Pipeline>,
    limiter: RateLimiter,
    filter: Option<String>,
    reach: Reach,
    /// Where poll successes and failures are reported, for `/readyz` and
    /// `rootwatch_source_up`.
    health: Arc<super::health::SourceHealth>,
    /// Each group's last checkpoint handed to the writer: where a follower
    /// that crashed starts again.
    saved: Mutex<HashMap<String, GroupCheckpoint>>,
}

pub struct CloudwatchLogsSource {
    shared: Arc<Shared>,
    /// What `start` means for this run, ms since the epoch.
    start_ms: i64,
    file: CheckpointFile,
    /// Whether `file` was read from disk (false: first start).
    resumed: bool,
    groups: Vec<GroupInfo>,
    listed_at: Option<i64>,
    /// With `checkpoint_table`: the shared checkpoints and leases.
    table: Option<Arc<CheckpointTable>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

impl CloudwatchLogsSource {
    /// `aws` is the source's configuration (its region and role applied);
    /// `table_aws` reaches the `checkpoint_table`: the process's own
    /// credentials and region, since the table lives where rootwatch runs,
    /// not in the account whose logs a role reads.
    pub fn new(
        settings: CloudwatchLogsSettings,
        detect: &DetectSettings,
        aws: &aws_config::SdkConfig,
        table_aws: &aws_config::SdkConfig,
        pipeline: Arc<Pipeline>,
    ) -> Self {
        let name = settings.name.clone();
        let filter = match server_filter(settings.filter_pattern.as_deref(), detect) {
            ServerFilter::Off => None,
            ServerFilter::Apply { pattern, caveat } => {
                tracing::info!(source = %name, filter_pattern = %pattern, "reading only events that match filter_pattern");
                if let Some(caveat) = caveat {
                    tracing::warn!(source = %name, filter_pattern = %pattern, "{caveat}");
                }
                Some(pattern)
            }
            ServerFilter::Ignored { reason } => {
                tracing::warn!(source = %name, filter_pattern = settings.filter_pattern.as_deref().unwrap_or(""), "filter_pattern ignored: {reason}");
                None
            }
        };
        // Every attempt goes through the limiter, so the SDK must not retry
        // on its own behind its back; failed calls back off here instead.
        let config = aws_sdk_cloudwatchlogs::config::Builder::from(aws)
            .retry_config(aws_sdk_cloudwatchlogs::config::retry::RetryConfig::disabled())
            .build();
        let start_ms = match settings.start {
            Start::Now => now_ms(),
            Start::At(t) => t.timestamp_millis(),
        };
        let table = match &settings.checkpoint {
            CheckpointStore::File(_) => None,
            CheckpointStore::Table {
                table,
                lease_duration,
            } => Some(Arc::new(CheckpointTable::new(
                table_aws,
                table,
                &name,
                table::owner_id(),
                *lease_duration,
            ))),
        };
        CloudwatchLogsSource {
            table,
            start_ms,
            file: CheckpointFile::new(&name),
            resumed: false,
            groups: Vec::new(),
            listed_at: None,
            shared: Arc::new(Shared {
                // A dead-letter queue lives where rootwatch runs, as the
                // checkpoint table does: the process's own credentials.
                dead_letter: Arc::new(match &settings.dead_letter {
                    DeadLetterDest::File(path) => {
                        DeadLetterStore::file(DeadLetterFile::new(path, &name))
                    }
                    DeadLetterDest::Queue(url) => {
                        DeadLetterStore::Queue(DeadLetterQueue::new(table_aws, url, &name))
                    }
                }),
                limiter: RateLimiter::new(settings.max_requests_per_sec),
                reach: Reach {
                    lookback_ms: settings.lookback.as_millis() as i64,
                    full_every_ms: settings.full_read_interval.as_millis() as i64,
                },
                settings,
                client: aws_sdk_cloudwatchlogs::Client::from_conf(config),
                pipeline,
                filter,
                health: Arc::default(),
                saved: Mutex::default(),
            }),
        }
    }

    /// Reports poll successes and failures to `health` (the daemon's
    /// readiness), as the SQS source reports its receives.
    pub fn with_health(mut self, health: Arc<super::health::SourceHealth>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("not shared before the source runs")
            .health = health;
        self
    }

    fn name(&self) -> &str {
        &self.shared.settings.name
    }

    /// Reads the checkpoint file before anything else, leaving it as it is.
    /// A missing file is a first start (logged); an unreadable or corrupt
    /// one is an error, never a silent restart.
    pub fn load_checkpoint(&mut self) -> Result<(), CheckpointError> {
        let CheckpointStore::File(path) = &self.shared.settings.checkpoint else {
            // Shared checkpoints are read group by group, with each lease.
            return Ok(());
        };
        match checkpoint::load(path, self.name())? {
            Some(file) => {
                tracing::info!(source = self.name(), checkpoint = %path.display(), groups = file.groups.len(), "resuming from checkpoint");
                self.file = file;
                self.resumed = true;
            }
            None => {
                tracing::warn!(source = self.name(), checkpoint = %path.display(), start = %rfc3339(self.start_ms), "no checkpoint file yet: every log group begins at `start`; the file is created now");
            }
        }
        Ok(())
    }

    /// Finds the log groups (each named group must exist) and checks the
    /// filter pattern, before the daemon reports ready.
    pub async fn check(&mut self) -> Result<(), SourceError> {
        let err = |message: String| SourceError {
            source_name: self.name().to_owned(),
            message,
        };
        let never = CancellationToken::new();
        let listed_at = now_ms();
        let groups = tokio::time::timeout(CALL_TIMEOUT, self.shared.resolve(&never))
            .await
            .map_err(|_| err(format!("no answer within {} s", CALL_TIMEOUT.as_secs())))?
            .map_err(|(_, message)| err(message))?;
        if groups.is_empty() {
            tracing::warn!(
                source = self.name(),
                "no log group matches log_group_prefix yet; looking again every discovery_interval_secs"
            );
        }
        if let (Some(pattern), Some(g)) = (&self.shared.filter, groups.first()) {
            // An invalid pattern would fail every poll: fail at start instead.
            let now = now_ms();
            let call = self
                .shared
                .client
                .filter_log_events()
                .log_group_name(&g.name)
                .start_time(now)
                .end_time(now)
                .limit(1)
                .filter_pattern(pattern)
                .send();
            if let Err(CallError::Api {
                kind,
                code,
                message,
            }) = self.shared.call(&never, "filter", call).await
            {
                if code.as_deref() == Some("InvalidParameterException") {
                    return Err(err(format!("filter_pattern `{pattern}`: {message}")));
                }
                telemetry::source_error(self.name(), kind, &message);
            }
        }
        self.groups = groups;
        if matches!(self.shared.settings.log_groups, LogGroups::Prefix(_)) {
            self.listed_at = Some(listed_at);
        }
        if let Some(t) = &self.table {
            // The table must exist and take writes before the daemon is ready.
            t.heartbeat(now_ms()).await.map_err(|e| SourceError {
                source_name: self.shared.settings.name.clone(),
                message: format!("checkpoint_table: {e}"),
            })?;
            tracing::info!(
                source = self.name(),
                table = t.table(),
                owner = t.owner(),
                "sharing checkpoints and log group leases through the table"
            );
        }
        Ok(())
    }

    /// Gives every group found a position and writes the checkpoint file,
    /// so that a crash before the first poll still resumes from `start` as
    /// it was, not from a later "now".
    pub fn init_checkpoint(&mut self) -> Result<(), CheckpointError> {
        let CheckpointStore::File(path) = self.shared.settings.checkpoint.clone() else {
            // A group's item is created with its first lease.
            return Ok(());
        };
        let listed_before = if self.resumed {
            self.file.discovered_at_ms
        } else {
            None
        };
        for g in &self.groups {
            if self.file.groups.contains_key(&g.name) {
                continue;
            }
            let position = initial_position(self.start_ms, g.created_ms, listed_before);
            tracing::info!(source = self.name(), log_group = %g.name, from = %rfc3339(position), "log group has no checkpoint: reading it from here");
            self.file.groups.insert(
                g.name.clone(),
                GroupCheckpoint {
                    position_ms: position,
                    handled: Default::default(),
                },
            );
        }
        if self.listed_at.is_some() {
            self.file.discovered_at_ms = self.listed_at;
        }
        let bytes = serde_json::to_vec_pretty(&self.file).expect("a checkpoint serialises");
        checkpoint::write_atomic(&path, &bytes)
            .map_err(|source| CheckpointError::Write { path, source })
    }

    /// Follows every group until `stop`, then waits for the alerts in
    /// flight to be delivered (or cancelled by the app's grace period),
    /// writes the final checkpoint and returns.
    pub async fn run(self, stop: CancellationToken) {
        let ages = tokio::spawn(Arc::clone(&self.shared).report_ages(stop.clone()));
        match self.shared.settings.checkpoint.clone() {
            CheckpointStore::File(path) => self.run_file(path, stop).await,
            CheckpointStore::Table { lease_duration, .. } => {
                self.run_leased(lease_duration, stop).await
            }
        }
        let _ = ages.await;
    }

    async fn run_file(self, path: std::path::PathBuf, stop: CancellationToken) {
        let shared = self.shared;
        let name = shared.settings.name.clone();
        let (updates, rx) = mpsc::channel(256);
        let writer = tokio::spawn(write_loop(name.clone(), path, self.file.clone(), rx));
        let mut followers = JoinSet::new();
        let mut following = HashSet::new();
        for g in &self.groups {
            let c = &self.file.groups[&g.name];
            following.insert(g.name.clone());
            followers.spawn(Arc::clone(&shared).follow_supervised(
                g.name.clone(),
                Progress::resume(c, shared.reach),
                stop.clone(),
                updates.clone(),
            ));
        }
        if matches!(shared.settings.log_groups, LogGroups::Prefix(_)) {
            let mut listed_at = self.listed_at;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(shared.settings.discovery_interval) => {}
                    _ = stop.cancelled() => break,
                }
                let at = now_ms();
                let found = match shared.resolve(&stop).await {
                    Ok(found) => found,
                    Err((kind, message)) => {
                        if !stop.is_cancelled() {
                            telemetry::source_error(&name, kind, &message);
                        }
                        continue;
                    }
                };
                for g in found {
                    if !following.insert(g.name.clone()) {
                        continue;
                    }
                    // One the first listing missed still resumes from its checkpoint.
                    let progress = match self.file.groups.get(&g.name) {
                        Some(c) => Progress::resume(c, shared.reach),
                        None => {
                            let position = initial_position(self.start_ms, g.created_ms, listed_at);
                            tracing::info!(source = %name, log_group = %g.name, from = %rfc3339(position), "new log group found");
                            Progress::new(position, shared.reach)
                        }
                    };
                    // Written before the new listing time, so a crash in
                    // between cannot make the group look old.
                    let _ = updates
                        .send(Update::Group(g.name.clone(), progress.checkpoint()))
                        .await;
                    followers.spawn(Arc::clone(&shared).follow_supervised(
                        g.name,
                        progress,
                        stop.clone(),
                        updates.clone(),
                    ));
                }
                let _ = updates.send(Update::Discovered(at)).await;
                listed_at = Some(at);
            }
        }
        while let Some(r) = followers.join_next().await {
            // A group whose follower kept crashing: the source fails as a
            // whole (`/readyz` failed, exit 70) rather than go on without it.
            if let Err(e) = r
                && e.is_panic()
            {
                drop(updates);
                let _ = writer.await;
                std::panic::resume_unwind(e.into_panic());
            }
        }
        drop(updates);
        let _ = writer.await;
        tracing::info!(source = %name, "cloudwatch_logs source stopped; checkpoint written");
    }
}

/// A group this replica follows under its lease.
struct Held {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    expires_ms: i64,
    /// Stopping to hand the group to another replica: the lease is
    /// released once the follower has written its last checkpoint.
    releasing: bool,
    started: Instant,
}

impl CloudwatchLogsSource {
    /// Follows the groups whose leases this replica holds, sharing them
    /// with the other replicas through the table, until `stop`. Every
    /// `lease_duration / 3` it renews its leases and its replica item,
    /// counts the live replicas, hands back groups beyond its fair share
    /// and takes free or expired ones up to it. A lease it cannot renew (or
    /// whose checkpoint write is refused) is lost: that group stops here at
    /// once, and its next owner reads on from the last checkpoint.
    async fn run_leased(self, lease: Duration, stop: CancellationToken) {
        let shared = self.shared;
        let table = self.table.expect("built with checkpoint_table");
        let name = shared.settings.name.clone();
        let owner = table.owner().to_owned();
        let tick = lease / 3;
        let (updates, rx) = mpsc::channel(256);
        let (lost_tx, mut lost_rx) = mpsc::unbounded_channel::<(String, TableError)>();
        let writer = tokio::spawn(table_write_loop(
            Arc::clone(&table),
            name.clone(),
            rx,
            lost_tx,
        ));
        let discovers = matches!(shared.settings.log_groups, LogGroups::Prefix(_));
        // Each group with its creation time and the source's listing before
        // the one that found it: a group created after that listing is new
        // and is read from its creation, also when it was created while
        // every replica was down (the table keeps the last listing time).
        let mut listed_before = None;
        if discovers {
            match table.discovered_at().await {
                Ok(at) => listed_before = at,
                Err(e) => telemetry::source_error(&name, "checkpoint_table", &e),
            }
        }
        let mut groups: std::collections::BTreeMap<String, (Option<i64>, Option<i64>)> = self
            .groups
            .iter()
            .map(|g| (g.name.clone(), (g.created_ms, listed_before)))
            .collect();
        if let Some(at) = self.listed_at {
            if let Err(e) = table.record_discovery(at).await {
                telemetry::source_error(&name, "checkpoint_table", &e);
            }
            listed_before = Some(at);
        }
        let mut held: HashMap<String, Held> = HashMap::new();
        // Crashes in a row of each group's follower, and groups not taken
        // again before their backoff after a crash ends.
        let mut crashes: HashMap<String, u32> = HashMap::new();
        let mut cooldown: HashMap<String, Instant> = HashMap::new();
        // Followers of lost leases, still ending their deliveries: their
        // group is not taken again until they are done.
        let mut finishing: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut next_discovery = Instant::now() + shared.settings.discovery_interval;
        telemetry::leases_held(&name, 0);
        let lose = |held: &mut HashMap<String, Held>,
                    finishing: &mut HashMap<String, tokio::task::JoinHandle<()>>,
                    group: &str,
                    why: &dyn std::fmt::Display| {
            if let Some(h) = held.remove(group) {
                h.stop.cancel();
                finishing.insert(group.to_owned(), h.task);
                telemetry::lease_lost(&name, group, &owner, why);
            }
        };
        loop {
            while let Ok((g, e)) = lost_rx.try_recv() {
                lose(&mut held, &mut finishing, &g, &e);
            }
            if stop.is_cancelled() {
                break;
            }
            finishing.retain(|g, t| {
                let done = t.is_finished();
                if done {
                    // Another replica reports the group's age from now on.
                    shared.forget(g);
                }
                !done
            });
            let now = now_ms();
            if let Err(e) = table.heartbeat(now).await {
                telemetry::source_error(&name, "checkpoint_table", &e);
            }
            // A follower that ended unasked crashed: its lease is not
            // renewed but released after its last checkpoint, and the group
            // is taken again (here or by another replica) after a backoff.
            let crashed: Vec<String> = held
                .iter()
                .filter(|(_, h)| !h.releasing && h.task.is_finished())
                .map(|(g, _)| g.clone())
                .collect();
            for g in crashed {
                let h = held.remove(&g).expect("listed above");
                let ran = h.started.elapsed();
                let detail = match h.task.await {
                    Err(e) if e.is_panic() => panic_text(e.into_panic()),
                    Err(e) => e.to_string(),
                    Ok(()) => "ended".to_owned(),
                };
                let n = crashes.entry(g.clone()).or_insert(0);
                if ran >= FOLLOWER_HEALTHY_AFTER {
                    *n = 0;
                }
                *n += 1;
                telemetry::task_failed(
                    "follower",
                    &format!("{name}/{g}"),
                    &format!("crash {n} in a row: {detail}"),
                );
                if *n >= FOLLOWER_CRASHES {
                    panic!("log group {g}: its follower crashed {n} times in a row ({detail})");
                }
                shared.forget(&g);
                cooldown.insert(
                    g.clone(),
                    Instant::now() + backoff(*n, Duration::from_secs(1), Duration::from_secs(60)),
                );
                let _ = updates.send(Update::Release(g)).await;
            }
            cooldown.retain(|_, until| *until > Instant::now());
            let mut lost = Vec::new();
            for (g, h) in held.iter_mut() {
                match table.renew(g, now_ms()).await {
                    Ok(expires) => h.expires_ms = expires,
                    Err(e @ TableError::Lost { .. }) => lost.push((g.clone(), e.to_string())),
                    Err(e) => {
                        telemetry::source_error(&name, "checkpoint_table", &e);
                        // Past its expiry another replica may hold it: stop
                        // before two replicas follow the group at once.
                        if now_ms() >= h.expires_ms {
                            lost.push((g.clone(), format!("not renewed before it expired: {e}")));
                        }
                    }
                }
            }
            for (g, why) in lost {
                lose(&mut held, &mut finishing, &g, &why);
            }
            // Handed-back groups whose follower is done: release after its
            // last checkpoint, in order on the writer's channel.
            let done: Vec<String> = held
                .iter()
                .filter(|(_, h)| h.releasing && h.task.is_finished())
                .map(|(g, _)| g.clone())
                .collect();
            for g in done {
                held.remove(&g);
                shared.forget(&g);
                let _ = updates.send(Update::Release(g)).await;
            }
            if discovers && Instant::now() >= next_discovery {
                next_discovery = Instant::now() + shared.settings.discovery_interval;
                let at = now_ms();
                match shared.resolve(&stop).await {
                    Ok(found) => {
                        for g in found {
                            groups
                                .entry(g.name)
                                .or_insert((g.created_ms, listed_before));
                        }
                        if let Err(e) = table.record_discovery(at).await {
                            telemetry::source_error(&name, "checkpoint_table", &e);
                        }
                        listed_before = Some(at);
                    }
                    Err((kind, message)) if !stop.is_cancelled() => {
                        telemetry::source_error(&name, kind, &message)
                    }
                    Err(_) => {}
                }
            }
            match table.snapshot(now_ms()).await {
                Ok(snap) => {
                    for (pk, expires) in &snap.stale {
                        let _ = table.remove_replica(Some((pk, *expires))).await;
                    }
                    let share = table::fair_share(groups.len(), snap.live_replicas);
                    let active: Vec<String> = held
                        .iter()
                        .filter(|(_, h)| !h.releasing)
                        .map(|(g, _)| g.clone())
                        .collect();
                    if active.len() > share {
                        for g in active.iter().skip(share) {
                            if let Some(h) = held.get_mut(g) {
                                tracing::info!(source = %name, log_group = %g, share, replicas = snap.live_replicas, "handing a log group lease back: more than this replica's share");
                                h.releasing = true;
                                h.stop.cancel();
                            }
                        }
                    }
                    let mut room = share.saturating_sub(active.len());
                    let now = now_ms();
                    for (g, (created, listed_before)) in &groups {
                        if room == 0 || stop.is_cancelled() {
                            break;
                        }
                        if held.contains_key(g)
                            || finishing.contains_key(g)
                            || cooldown.contains_key(g)
                        {
                            continue;
                        }
                        let free = snap.leases.get(g).is_none_or(|l| {
                            l.owner.is_none()
                                || l.expires_ms < now
                                || l.owner.as_deref() == Some(&owner)
                        });
                        if !free {
                            continue;
                        }
                        let initial = initial_position(self.start_ms, *created, *listed_before);
                        match table.acquire(g, now_ms(), initial).await {
                            Ok(Some(a)) => {
                                telemetry::lease_acquired(&name, g, &owner, a.from.as_deref());
                                let token = stop.child_token();
                                let task = tokio::spawn(Arc::clone(&shared).follow(
                                    g.clone(),
                                    Progress::resume(&a.checkpoint, shared.reach),
                                    token.clone(),
                                    updates.clone(),
                                ));
                                held.insert(
                                    g.clone(),
                                    Held {
                                        stop: token,
                                        task,
                                        expires_ms: a.expires_ms,
                                        releasing: false,
                                        started: Instant::now(),
                                    },
                                );
                                room -= 1;
                            }
                            Ok(None) => {}
                            Err(e) => telemetry::source_error(&name, "checkpoint_table", &e),
                        }
                    }
                }
                Err(e) => telemetry::source_error(&name, "checkpoint_table", &e),
            }
            telemetry::leases_held(&name, held.values().filter(|h| !h.releasing).count());
            // Jittered, so replicas started together do not go after the
            // same free lease at the same moment on every round.
            let pause = tick.mul_f64(0.8 + 0.4 * rand::random::<f64>());
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => {}
                Some((g, e)) = lost_rx.recv() => lose(&mut held, &mut finishing, &g, &e),
            }
        }
        // Stopping: the followers end their deliveries (the app's grace
        // period bounds them) while the leases are kept renewed, then each
        // lease is released after its last checkpoint, so another replica
        // takes the groups over at once instead of after they expire.
        loop {
            held.retain(|g, h| {
                if h.task.is_finished() {
                    let _ = updates.try_send(Update::Release(g.clone()));
                    false
                } else {
                    true
                }
            });
            finishing.retain(|_, t| !t.is_finished());
            if held.is_empty() && finishing.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100).min(tick)).await;
            let now = now_ms();
            for (g, h) in held.iter_mut() {
                if h.expires_ms - now < tick.as_millis() as i64
                    && let Ok(expires) = table.renew(g, now).await
                {
                    h.expires_ms = expires;
                }
            }
        }
        drop(updates);
        let _ = writer.await;
        if let Err(e) = table.remove_replica(None).await {
            telemetry::source_error(&name, "checkpoint_table", &e);
        }
        telemetry::leases_held(&name, 0);
        tracing::info!(source = %name, "cloudwatch_logs source stopped; checkpoints written and leases released");
    }
}

impl Shared {
    fn name(&self) -> &str {
        &self.settings.name
    }

    /// One API call: waits for a slot from the limiter, gives up after
    /// [`CALL_TIMEOUT`], and returns at once on `stop`.
    async fn call<T, E>(
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
    async fn resolve(
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
    async fn report_ages(self: Arc<Self>, stop: CancellationToken) {
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
    fn forget(&self, group: &str) {
        self.saved.lock().expect("saved lock").remove(group);
    }

    /// [`Shared::follow`] under [`supervise_follower`]: a crashed
    /// follower starts again from the group's last saved checkpoint.
    async fn follow_supervised(
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
    async fn follow(
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
                            super::health::error_kind(code.as_deref()),
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
            super::report_unfetched(
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
const FOLLOWER_CRASHES: u32 = 5;
const FOLLOWER_HEALTHY_AFTER: Duration = Duration::from_secs(60);

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

/// Owns the checkpoint file: applies group updates as they come and writes
/// the whole file once per batch of them. Ends, after a last write, when
/// every group and the discovery loop have finished.
async fn write_loop(
    source: String,
    path: std::path::PathBuf,
    mut file: CheckpointFile,
    mut rx: mpsc::Receiver<Update>,
) {
    let mut pending: HashMap<String, GroupCheckpoint> = HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(u) = next.take() {
            match u {
                Update::Group(g, c) => {
                    pending.insert(g, c);
                }
                Update::Discovered(at) => {
                    file.groups.extend(pending.drain());
                    file.discovered_at_ms = Some(at);
                }
                Update::Release(_) => {}
            }
            next = rx.try_recv().ok();
        }
        file.groups.extend(pending.drain());
        let bytes = serde_json::to_vec_pretty(&file).expect("a checkpoint serialises");
        let p = path.clone();
        match tokio::task::spawn_blocking(move || checkpoint::write_atomic(&p, &bytes)).await {
            Ok(Ok(())) => tracing::debug!(source = %source, "checkpoint written"),
            Ok(Err(e)) => telemetry::source_error(
                &source,
                "checkpoint",
                &format!("cannot write {}: {e}", path.display()),
            ),
            Err(e) => telemetry::source_error(&source, "checkpoint", &e),
        }
    }
}

/// Writes group checkpoints to the table, each conditional on this
/// replica's lease, and releases leases in order after them. A write the
/// table refuses is a lost lease, reported on `lost`. Writes that failed
/// otherwise are tried again (a newer checkpoint of the group replaces one
/// still waiting).
async fn table_write_loop(
    table: Arc<CheckpointTable>,
    source: String,
    mut rx: mpsc::Receiver<Update>,
    lost: mpsc::UnboundedSender<(String, TableError)>,
) {
    let mut pending: HashMap<String, GroupCheckpoint> = HashMap::new();
    // A failed write (not a refusal) comes back to be tried again.
    let flush = async |g: String, c: GroupCheckpoint| -> Option<(String, GroupCheckpoint)> {
        match table.save(&g, &c).await {
            Ok(saved) => {
                if saved.dropped > 0 {
                    telemetry::checkpoint_ids_dropped(&source, &g, saved.kept, saved.dropped);
                }
                tracing::debug!(source = %source, log_group = %g, "checkpoint written");
                None
            }
            Err(e @ TableError::Lost { .. }) => {
                let _ = lost.send((g, e));
                None
            }
            Err(e) => {
                telemetry::source_error(&source, "checkpoint_table", &e);
                Some((g, c))
            }
        }
    };
    loop {
        let next = if pending.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Ok(u) => u,
                Err(_) => {
                    for (g, c) in std::mem::take(&mut pending) {
                        if let Some((g, c)) = flush(g, c).await {
                            pending.entry(g).or_insert(c);
                        }
                    }
                    continue;
                }
            }
        };
        let Some(first) = next else { break };
        let mut next = Some(first);
        while let Some(u) = next.take() {
            match u {
                Update::Group(g, c) => {
                    pending.insert(g, c);
                }
                Update::Release(g) => {
                    if let Some(c) = pending.remove(&g) {
                        // Released all the same: the next owner reads on
                        // from the older checkpoint (repeats, no gap).
                        let _ = flush(g.clone(), c).await;
                    }
                    if let Err(e) = table.release(&g).await {
                        telemetry::source_error(&source, "checkpoint_table", &e);
                    }
                }
                Update::Discovered(_) => {}
            }
            next = rx.try_recv().ok();
        }
        for (g, c) in std::mem::take(&mut pending) {
            if let Some((g, c)) = flush(g, c).await {
                pending.entry(g).or_insert(c);
            }
        }
    }
    // Stopping: one last try for what failed.
    for (g, c) in std::mem::take(&mut pending) {
        let _ = flush(g, c).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{AllowList, CidrSet, Context};

    fn detect(cidrs: &[&str], scope: Scope, disabled: &[&str]) -> DetectSettings {
        DetectSettings {
            disabled: disabled.iter().map(|s| s.to_string()).collect(),
            context: Context {
                allowlist: AllowList {
                    cidrs: CidrSet::new(
                        cidrs
                            .iter()
                            .map(|c| crate::detect::allowlist::parse_cidr(c).unwrap()),
                    ),
                    asns: Default::default(),
                    geoip: None,
                    scope,
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const ROOT_ONLY: &str = r#"{ $.userIdentity.type = "Root" }"#;

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

    #[test]
    fn no_pattern_reads_everything() {
        assert_eq!(
            server_filter(None, &detect(&["10.0.0.0/8"], Scope::All, &[])),
            ServerFilter::Off
        );
    }

    #[test]
    fn the_allow_list_for_all_calls_disables_the_pattern() {
        let d = detect(&["10.0.0.0/8"], Scope::All, &[]);
        let ServerFilter::Ignored { reason } = server_filter(Some(ROOT_ONLY), &d) else {
            panic!("pattern must be ignored");
        };
        assert!(
            reason.contains("ip_allowlist") && reason.contains("every"),
            "{reason}"
        );
    }

    #[test]
    fn the_pattern_applies_when_the_allow_list_cannot_need_other_events() {
        for d in [
            // Scope root: only root events are checked.
            detect(&["10.0.0.0/8"], Scope::Root, &[IAM_LOGIN_RULE]),
            // The rule is off.
            detect(
                &["10.0.0.0/8"],
                Scope::All,
                &[ALLOWLIST_RULE, IAM_LOGIN_RULE],
            ),
            // No allow list: the rule checks nothing.
            detect(&[], Scope::All, &[IAM_LOGIN_RULE]),
        ] {
            assert_eq!(
                server_filter(Some(ROOT_ONLY), &d),
                ServerFilter::Apply {
                    pattern: ROOT_ONLY.into(),
                    caveat: None
                },
                "{d:?}"
            );
        }
    }

    /// Sigma rules may match any event: a pattern written for the root
    /// rules would hide the events they need.
    #[test]
    fn loaded_sigma_rules_veto_the_pattern() {
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/third_party/sigmahq/rules/aws_cloudtrail_disable_logging.yml");
        let mut d = detect(&[], Scope::All, &[IAM_LOGIN_RULE]);
        d.sigma = Some(std::sync::Arc::new(
            crate::detect::SigmaRules::load(&[rules], false).unwrap(),
        ));
        assert!(matches!(
            server_filter(Some(ROOT_ONLY), &d),
            ServerFilter::Ignored { .. }
        ));
    }

    #[test]
    fn the_iam_login_rule_gets_a_caveat_not_a_veto() {
        let d = detect(&[], Scope::All, &[]);
        let ServerFilter::Apply { pattern, caveat } = server_filter(Some(ROOT_ONLY), &d) else {
            panic!()
        };
        assert_eq!(pattern, ROOT_ONLY);
        assert!(caveat.unwrap().contains(IAM_LOGIN_RULE));
    }

    #[test]
    fn new_groups_begin_at_start_or_at_their_creation() {
        let start = 1_000_000;
        // First start, or a named group: `start`.
        assert_eq!(initial_position(start, Some(5_000_000), None), start);
        assert_eq!(initial_position(start, None, Some(900_000)), start);
        // Created before the last listing (it would have been seen): `start`.
        assert_eq!(initial_position(start, Some(100_000), Some(900_000)), start);
        // Created after the last listing, while rootwatch was down: from creation.
        assert_eq!(
            initial_position(5_000_000, Some(2_000_000), Some(1_500_000)),
            2_000_000
        );
        // Created after `start`: nothing before `start` is skipped either way.
        assert_eq!(
            initial_position(start, Some(2_000_000), Some(1_500_000)),
            start
        );
    }

    #[test]
    fn throttling_codes() {
        assert!(is_throttling(Some("ThrottlingException")));
        assert!(is_throttling(Some("RateExceeded")));
        assert!(!is_throttling(Some("ResourceNotFoundException")));
        assert!(!is_throttling(None));
    }
}
