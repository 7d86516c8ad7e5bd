//! `[[sources]]`: the raw keys of every source type, and the checks they
//! share. Each type's settings, defaults and checks are in a file of its
//! own: `sqs.rs`, `file.rs`, `cloudwatch_logs.rs`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::names::{default_name, last_part};
use super::{ConfigError, invalid};

pub(super) mod cloudwatch_logs;
pub(super) mod file;
pub(super) mod sqs;

use cloudwatch_logs::CloudwatchLogsSettings;
use file::FileSettings;
use sqs::SqsSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSource {
    Sqs {
        name: Option<String>,
        queue_url: String,
        #[serde(default = "sqs::default_concurrency")]
        concurrency: usize,
        #[serde(default = "sqs::default_wait_time")]
        wait_time_secs: u64,
        #[serde(default = "sqs::default_visibility")]
        visibility_timeout_secs: u64,
        #[serde(default = "sqs::default_max_in_flight")]
        max_in_flight_messages: usize,
        /// Decompressed bytes one S3 object may hold.
        #[serde(default = "sqs::default_max_object_bytes")]
        max_object_bytes: u64,
        /// Bytes one record (or one JSON document that is not a `Records`
        /// file) may take in an S3 object.
        #[serde(default = "sqs::default_max_record_bytes")]
        max_record_bytes: u64,
        /// S3 objects one message may name.
        #[serde(default = "sqs::default_max_objects_per_message")]
        max_objects_per_message: usize,
        /// Bytes one S3 object may take as stored (compressed, for gzip).
        #[serde(default = "sqs::default_max_compressed_object_bytes")]
        max_compressed_object_bytes: u64,
        /// Seconds reading one S3 object may take, from the GetObject
        /// call to its last byte, waits for delivery room not counted.
        #[serde(default = "sqs::default_max_object_read_secs")]
        max_object_read_secs: u64,
        /// The only buckets notifications may send rootwatch to; unset:
        /// any bucket the credentials can read.
        allowed_buckets: Option<Vec<String>>,
        /// The account that must own every bucket read (S3 refuses the
        /// GetObject otherwise).
        expected_bucket_owner: Option<String>,
        /// AWS region of the source's clients; default: the one the
        /// queue URL names, else the credential chain's.
        region: Option<String>,
        /// A role assumed through STS for this source's calls.
        role_arn: Option<String>,
        external_id: Option<String>,
        session_name: Option<String>,
    },
    File {
        name: Option<String>,
        paths: Vec<String>,
        #[serde(default)]
        watch: bool,
        #[serde(default = "file::default_poll")]
        poll_interval_secs: u64,
        /// Where undeliverable findings are written; none by default.
        dead_letter_path: Option<String>,
    },
    CloudwatchLogs {
        name: Option<String>,
        /// Log group names; exactly one of this and `log_group_prefix`.
        log_groups: Option<Vec<String>>,
        /// Every log group whose name starts with this, rediscovered.
        log_group_prefix: Option<String>,
        #[serde(default = "cloudwatch_logs::default_cwl_discovery")]
        discovery_interval_secs: u64,
        #[serde(default = "cloudwatch_logs::default_cwl_poll")]
        poll_interval_secs: u64,
        #[serde(default = "cloudwatch_logs::default_cwl_lookback")]
        lookback_secs: u64,
        #[serde(default = "cloudwatch_logs::default_cwl_full_read")]
        full_read_interval_secs: u64,
        /// A local checkpoint file; exactly one of this and
        /// `checkpoint_table`. An Option so a missing value names the key.
        checkpoint_path: Option<String>,
        /// A DynamoDB table shared by replicas, with leases per group.
        checkpoint_table: Option<String>,
        #[serde(default = "cloudwatch_logs::default_lease_duration")]
        lease_duration_secs: u64,
        /// "now" or an RFC 3339 time: where a group without a checkpoint begins.
        #[serde(default = "cloudwatch_logs::default_cwl_start")]
        start: String,
        #[serde(default = "cloudwatch_logs::default_cwl_rate")]
        max_requests_per_sec: u32,
        filter_pattern: Option<String>,
        /// Where undeliverable findings are written; by default next to
        /// the checkpoint.
        dead_letter_path: Option<String>,
        /// Or an SQS queue they are sent to, which needs no volume.
        dead_letter_queue_url: Option<String>,
        /// AWS region of the source's clients; default: the credential
        /// chain's.
        region: Option<String>,
        /// A role assumed through STS for this source's calls.
        role_arn: Option<String>,
        external_id: Option<String>,
        session_name: Option<String>,
    },
}

impl RawSource {
    /// The name rootwatch gives it when it has none (see [`default_name`]).
    pub fn default_name(&self) -> String {
        match self {
            RawSource::Sqs { queue_url, .. } => default_name("sqs", last_part(queue_url)),
            RawSource::File { paths, .. } => {
                default_name("file", paths.first().and_then(|p| last_part(p)))
            }
            RawSource::CloudwatchLogs {
                log_groups,
                log_group_prefix,
                ..
            } => default_name(
                "cloudwatch_logs",
                log_groups
                    .as_ref()
                    .and_then(|g| g.first())
                    .or(log_group_prefix.as_ref())
                    .and_then(|g| last_part(g)),
            ),
        }
    }

    /// Whether it leaves its name to rootwatch.
    pub(super) fn default_named(&self) -> bool {
        match self {
            RawSource::Sqs { name, .. }
            | RawSource::File { name, .. }
            | RawSource::CloudwatchLogs { name, .. } => name.is_none(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum SourceSettings {
    Sqs(SqsSettings),
    File(FileSettings),
    CloudwatchLogs(CloudwatchLogsSettings),
}

impl SourceSettings {
    pub fn name(&self) -> &str {
        match self {
            SourceSettings::Sqs(s) => &s.name,
            SourceSettings::File(s) => &s.name,
            SourceSettings::CloudwatchLogs(s) => &s.name,
        }
    }
}

/// Where a source without a dead-letter queue of its own writes the
/// findings no sink took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterDest {
    /// A file appended to (a persistent volume on a single host).
    File(PathBuf),
    /// An SQS queue in rootwatch's own account and region (no volume).
    Queue(String),
}

pub(super) fn validate_source(key: &str, s: &RawSource) -> Result<SourceSettings, ConfigError> {
    Ok(match s {
        RawSource::Sqs { .. } => SourceSettings::Sqs(sqs::validate_sqs(key, s)?),
        RawSource::File { .. } => SourceSettings::File(file::validate_file(key, s)?),
        RawSource::CloudwatchLogs { .. } => {
            SourceSettings::CloudwatchLogs(cloudwatch_logs::validate_cloudwatch_logs(key, s)?)
        }
    })
}

/// An SQS queue URL: http(s), with the account and the queue's name in
/// its path.
fn check_queue_url(key: &str, queue_url: &str) -> Result<(), ConfigError> {
    let url = reqwest::Url::parse(queue_url)
        .map_err(|e| invalid(key, format!("`{queue_url}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https")
        || url
            .path_segments()
            .is_none_or(|s| s.filter(|p| !p.is_empty()).count() < 2)
    {
        return Err(invalid(
            key,
            format!(
                "`{queue_url}` is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
            ),
        ));
    }
    Ok(())
}

/// `dead_letter_path`: a file, not empty, not a directory.
pub(super) fn dead_letter(key: &str, path: Option<&str>) -> Result<Option<PathBuf>, ConfigError> {
    let k = || format!("{key}.dead_letter_path");
    match path {
        None => Ok(None),
        Some("") => Err(invalid(k(), "is empty")),
        Some(p) if p.ends_with('/') || Path::new(p).file_name().is_none() => Err(invalid(
            k(),
            format!("`{p}` is a directory; name the dead-letter file"),
        )),
        Some(p) => Ok(Some(PathBuf::from(p))),
    }
}
