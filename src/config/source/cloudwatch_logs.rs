//! `[[sources]] type = "cloudwatch_logs"`: log groups followed with
//! FilterLogEvents, their checkpoints in a file or a DynamoDB table.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{DeadLetterDest, RawSource, check_queue_url, dead_letter};
use crate::config::aws::{RawAws, aws_settings};
use crate::config::names::name_or;
use crate::config::{ConfigError, all, invalid, keep, secs};

#[derive(Debug, Clone)]
pub struct CloudwatchLogsSettings {
    pub name: String,
    pub log_groups: LogGroups,
    /// How often `log_group_prefix` is listed again for new groups.
    pub discovery_interval: Duration,
    pub poll_interval: Duration,
    /// How late an event may become searchable and still be read: what a
    /// full read reaches back (polls in between reach back less, by how
    /// late events have been arriving).
    pub lookback: Duration,
    /// How often a read goes back the whole lookback.
    pub full_read_interval: Duration,
    pub checkpoint: CheckpointStore,
    pub start: Start,
    /// Shared by every group of the source.
    pub max_requests_per_sec: std::num::NonZeroU32,
    pub filter_pattern: Option<String>,
    /// Where undeliverable findings go before the checkpoint passes their
    /// event.
    pub dead_letter: DeadLetterDest,
    pub aws: crate::aws::AwsSettings,
}

/// Where a cloudwatch_logs source keeps its positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointStore {
    /// A local file, for a single instance.
    File(PathBuf),
    /// A DynamoDB table shared by replicas that split the groups between
    /// them by leases of `lease_duration`.
    Table {
        table: String,
        lease_duration: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogGroups {
    Names(Vec<String>),
    Prefix(String),
}

/// Where a log group without a checkpoint begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// When the source starts.
    Now,
    At(chrono::DateTime<chrono::Utc>),
}

pub(super) fn default_cwl_discovery() -> u64 {
    300
}
pub(super) fn default_cwl_poll() -> u64 {
    10
}
pub(super) fn default_cwl_lookback() -> u64 {
    300
}
pub(super) fn default_cwl_full_read() -> u64 {
    60
}
pub(super) fn default_cwl_start() -> String {
    "now".into()
}
pub(super) fn default_lease_duration() -> u64 {
    30
}
pub(super) fn default_cwl_rate() -> u32 {
    4
}

/// The `cloudwatch_logs` source at `key`.
pub(super) fn validate_cloudwatch_logs(
    key: &str,
    s: &RawSource,
) -> Result<CloudwatchLogsSettings, ConfigError> {
    let RawSource::CloudwatchLogs {
        name,
        log_groups,
        log_group_prefix,
        discovery_interval_secs,
        poll_interval_secs,
        lookback_secs,
        full_read_interval_secs,
        checkpoint_path,
        checkpoint_table,
        lease_duration_secs,
        start,
        max_requests_per_sec,
        filter_pattern,
        dead_letter_path,
        dead_letter_queue_url,
        region,
        role_arn,
        external_id,
        session_name,
    } = s
    else {
        unreachable!("validate_source passes a cloudwatch_logs source")
    };
    // Every key is checked; the problems come back together.
    let e = &mut Vec::new();
    let aws = keep(
        e,
        aws_settings(
            key,
            RawAws {
                region,
                role_arn,
                external_id,
                session_name,
            },
            None,
        ),
    );
    let groups = keep(e, groups(key, log_groups, log_group_prefix));
    let checkpoint = keep(
        e,
        checkpoint_store(
            key,
            checkpoint_path.as_deref(),
            checkpoint_table.as_deref(),
            *lease_duration_secs,
            dead_letter_path.is_some() || dead_letter_queue_url.is_some(),
        ),
    );
    let start = keep(e, start_at(key, start));
    let max_requests_per_sec = keep(e, request_rate(key, *max_requests_per_sec));
    let filter_pattern = keep(e, pattern(key, filter_pattern));
    let name = keep(e, name_or(key, name, s.default_name()));
    let interval = |e: &mut Vec<ConfigError>, field: &str, v: u64, max: u64| {
        keep(e, secs(&format!("{key}.{field}"), v, 1, max))
    };
    let discovery_interval = interval(
        e,
        "discovery_interval_secs",
        *discovery_interval_secs,
        86_400,
    );
    let poll_interval = interval(e, "poll_interval_secs", *poll_interval_secs, 3600);
    let lookback = keep(e, lookback(key, *lookback_secs));
    let full_read_interval = interval(
        e,
        "full_read_interval_secs",
        *full_read_interval_secs,
        86_400,
    );
    // Where dead letters may go depends on the checkpoint store.
    let dead_letter = checkpoint.as_ref().and_then(|c| {
        keep(
            e,
            dead_letter_dest(key, dead_letter_path.as_deref(), dead_letter_queue_url, c),
        )
    });
    let (
        Some(aws),
        Some(log_groups),
        Some(checkpoint),
        Some(start),
        Some(max_requests_per_sec),
        Some(filter_pattern),
        Some(name),
        Some(discovery_interval),
        Some(poll_interval),
        Some(lookback),
        Some(full_read_interval),
        Some(dead_letter),
    ) = (
        aws,
        groups,
        checkpoint,
        start,
        max_requests_per_sec,
        filter_pattern,
        name,
        discovery_interval,
        poll_interval,
        lookback,
        full_read_interval,
        dead_letter,
    )
    else {
        return Err(all(std::mem::take(e)));
    };
    Ok(CloudwatchLogsSettings {
        aws,
        name,
        log_groups,
        discovery_interval,
        poll_interval,
        lookback,
        full_read_interval,
        start,
        max_requests_per_sec,
        filter_pattern,
        dead_letter,
        checkpoint,
    })
}

/// CloudWatch Logs group names: 1 to 512 of [A-Za-z0-9_-/.#].
fn group_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 512
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-/.#".contains(c))
}

fn not_a_group(n: &str) -> String {
    format!("`{n}` is not a log group name (1 to 512 letters, digits, `_`, `-`, `/`, `.` or `#`)")
}

/// `log_groups` or `log_group_prefix`: exactly one of them.
fn groups(
    key: &str,
    log_groups: &Option<Vec<String>>,
    log_group_prefix: &Option<String>,
) -> Result<LogGroups, ConfigError> {
    match (log_groups, log_group_prefix) {
        (Some(_), Some(_)) => Err(invalid(
            format!("{key}.log_group_prefix"),
            "cannot be combined with `log_groups`: set exactly one of them",
        )),
        (None, None) => Err(invalid(
            format!("{key}.log_groups"),
            "is required for a cloudwatch_logs source (or set `log_group_prefix`)",
        )),
        (Some(names), None) => group_names(key, names),
        (None, Some(prefix)) => {
            let k = format!("{key}.log_group_prefix");
            if prefix.is_empty() {
                return Err(invalid(
                    k,
                    "is empty: it would follow every log group in the account and region",
                ));
            }
            if !group_name_ok(prefix) {
                return Err(invalid(k, not_a_group(prefix)));
            }
            Ok(LogGroups::Prefix(prefix.clone()))
        }
    }
}

/// `log_groups`: at least one, each a group name, none twice.
fn group_names(key: &str, names: &[String]) -> Result<LogGroups, ConfigError> {
    if names.is_empty() {
        return Err(invalid(
            format!("{key}.log_groups"),
            "needs at least one log group name",
        ));
    }
    let mut seen = HashSet::new();
    for (j, n) in names.iter().enumerate() {
        let k = format!("{key}.log_groups[{j}]");
        if !group_name_ok(n) {
            return Err(invalid(k, not_a_group(n)));
        }
        if !seen.insert(n.as_str()) {
            return Err(invalid(k, format!("`{n}` is listed twice")));
        }
    }
    Ok(LogGroups::Names(names.to_vec()))
}

/// `checkpoint_path` or `checkpoint_table`: exactly one of them. A table
/// needs a dead-letter destination set (`has_dead_letter`).
fn checkpoint_store(
    key: &str,
    path: Option<&str>,
    table: Option<&str>,
    lease_duration_secs: u64,
    has_dead_letter: bool,
) -> Result<CheckpointStore, ConfigError> {
    match (path, table) {
        (Some(_), Some(_)) => Err(invalid(
            format!("{key}.checkpoint_table"),
            "cannot be combined with `checkpoint_path`: set exactly one of them",
        )),
        (None, None) => Err(invalid(
            format!("{key}.checkpoint_path"),
            "is required for a cloudwatch_logs source (or set `checkpoint_table`)",
        )),
        (Some(""), None) => Err(invalid(format!("{key}.checkpoint_path"), "is empty")),
        (Some(p), None) if p.ends_with('/') || Path::new(p).file_name().is_none() => Err(invalid(
            format!("{key}.checkpoint_path"),
            format!("`{p}` is a directory; name the checkpoint file"),
        )),
        (Some(p), None) => Ok(CheckpointStore::File(PathBuf::from(p))),
        (None, Some(t)) => {
            // DynamoDB table names: 3 to 255 of [A-Za-z0-9_.-].
            if !(3..=255).contains(&t.len())
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                return Err(invalid(
                    format!("{key}.checkpoint_table"),
                    format!(
                        "`{t}` is not a DynamoDB table name (3 to 255 letters, digits, `_`, `.` or `-`)"
                    ),
                ));
            }
            if !has_dead_letter {
                return Err(invalid(
                    format!("{key}.dead_letter_queue_url"),
                    "(or `dead_letter_path`) is required with `checkpoint_table`: undeliverable alerts need a durable place, an SQS queue or a file on a persistent volume",
                ));
            }
            Ok(CheckpointStore::Table {
                table: t.to_owned(),
                lease_duration: secs(
                    &format!("{key}.lease_duration_secs"),
                    lease_duration_secs,
                    10,
                    3600,
                )?,
            })
        }
    }
}

/// `start`: "now" or an RFC 3339 time.
fn start_at(key: &str, start: &str) -> Result<Start, ConfigError> {
    Ok(match start.trim() {
        "now" => Start::Now,
        s => Start::At(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    invalid(
                        format!("{key}.start"),
                        format!(
                            "`{s}` is not \"now\" or an RFC 3339 time such as 2024-05-01T00:00:00Z"
                        ),
                    )
                })?
                .with_timezone(&chrono::Utc),
        ),
    })
}

fn request_rate(key: &str, max_requests_per_sec: u32) -> Result<NonZeroU32, ConfigError> {
    NonZeroU32::new(max_requests_per_sec)
        .filter(|n| n.get() <= 50)
        .ok_or_else(|| {
            invalid(
                format!("{key}.max_requests_per_sec"),
                format!("{max_requests_per_sec} is out of range (1 to 50)"),
            )
        })
}

fn pattern(key: &str, filter_pattern: &Option<String>) -> Result<Option<String>, ConfigError> {
    match filter_pattern {
        Some(p) if p.trim().is_empty() => Err(invalid(
            format!("{key}.filter_pattern"),
            "is empty; leave it out to read every event",
        )),
        p => Ok(p.clone()),
    }
}

fn lookback(key: &str, lookback_secs: u64) -> Result<Duration, ConfigError> {
    match lookback_secs {
        // CloudWatch Logs makes an event searchable seconds to
        // minutes after its timestamp: with no lookback, every
        // event that arrives late is passed over unread.
        0 => Err(invalid(
            format!("{key}.lookback_secs"),
            "0 would pass over every event made searchable after its own time; give at least 1 (the default, 300, covers CloudTrail's usual delivery delay)".to_owned(),
        )),
        l => secs(&format!("{key}.lookback_secs"), l, 1, 86_400),
    }
}

/// Where undeliverable findings go: `dead_letter_path` or
/// `dead_letter_queue_url`, by default next to the checkpoint file.
fn dead_letter_dest(
    key: &str,
    dead_letter_path: Option<&str>,
    dead_letter_queue_url: &Option<String>,
    checkpoint: &CheckpointStore,
) -> Result<DeadLetterDest, ConfigError> {
    Ok(
        match (
            dead_letter(key, dead_letter_path)?,
            dead_letter_queue_url,
            checkpoint,
        ) {
            (Some(_), Some(_), _) => {
                return Err(invalid(
                    format!("{key}.dead_letter_queue_url"),
                    "give either it or `dead_letter_path`, not both",
                ));
            }
            (None, Some(url), _) => {
                check_queue_url(&format!("{key}.dead_letter_queue_url"), url)?;
                DeadLetterDest::Queue(url.clone())
            }
            (Some(p), None, _) => DeadLetterDest::File(p),
            (None, None, CheckpointStore::File(path)) => {
                DeadLetterDest::File(path.with_extension("dead-letter.jsonl"))
            }
            (None, None, CheckpointStore::Table { .. }) => unreachable!("required above"),
        },
    )
}
