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
//!
//! `following.rs` is the poll loop of one group and its supervisor;
//! `leases.rs` shares the groups between replicas through the DynamoDB
//! `checkpoint_table` (`checkpoint_table.rs`), while a single instance
//! keeps a checkpoint file (`checkpoint.rs`, with the per-group progress
//! both stores save, and `handled.rs`, the handled-event keys they keep);
//! `limiter.rs` spaces the requests of all groups.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use checkpoint::{CheckpointError, CheckpointFile, GroupCheckpoint, Progress, Reach};
use checkpoint_table::{self as table, CheckpointTable};

use super::SourceError;
use crate::config::{CheckpointStore, CloudwatchLogsSettings, DeadLetterDest, LogGroups, Start};
use crate::dead_letter::{DeadLetterFile, DeadLetterQueue, DeadLetterStore};
use crate::detect::{DetectSettings, Scope};
use crate::pipeline::Pipeline;
use crate::telemetry;

pub mod checkpoint;
pub mod checkpoint_table;
mod following;
pub mod handled;
mod leases;
mod limiter;

pub use following::DELIVERY_ATTEMPTS;
pub use limiter::RateLimiter;

/// One API call, including the SDK's connection attempts.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// DescribeLogGroups is eventually consistent: a group created this long
/// before a listing that missed it still counts as new.
const DISCOVERY_SLACK_MS: i64 = 60_000;
const ALLOWLIST_RULE: &str = "source-ip-not-allowed";
const IAM_LOGIN_RULE: &str = "iam-console-login-without-mfa";

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
