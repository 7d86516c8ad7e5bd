//! `[[sources]] type = "sqs"`: a queue of S3 notifications (or of
//! CloudTrail records themselves), and the limits on what one message may
//! make rootwatch read from S3.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::Duration;

use super::{RawSource, check_queue_url};
use crate::config::aws::{RawAws, aws_settings};
use crate::config::names::name_or;
use crate::config::{ConfigError, all, invalid, keep, nonzero, secs};

#[derive(Debug, Clone)]
pub struct SqsSettings {
    pub name: String,
    pub queue_url: String,
    pub concurrency: NonZeroUsize,
    pub wait_time: Duration,
    pub visibility_timeout: Duration,
    pub max_in_flight: NonZeroUsize,
    pub limits: ObjectLimits,
    /// `None`: any bucket (a warning is logged at start).
    pub allowed_buckets: Option<HashSet<String>>,
    pub expected_bucket_owner: Option<String>,
    /// Region and role of the queue's (and its S3 fetches') clients.
    pub aws: crate::aws::AwsSettings,
}

/// Bounds on what one SQS message may make rootwatch read from S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLimits {
    /// Decompressed bytes per object.
    pub max_object_bytes: u64,
    pub max_record_bytes: u64,
    pub max_objects_per_message: usize,
    /// Stored bytes per object, as S3 sends them.
    pub max_compressed_object_bytes: u64,
    /// Wall time reading one object may take, waits for delivery room
    /// not counted.
    pub max_object_read: Duration,
}

pub(super) fn default_concurrency() -> usize {
    4
}
pub(super) fn default_wait_time() -> u64 {
    20
}
pub(super) fn default_visibility() -> u64 {
    120
}
pub(super) fn default_max_in_flight() -> usize {
    10_000
}
/// CloudTrail writes a log file per account and region about every five
/// minutes; even busy accounts' files are tens of MB uncompressed. 256 MiB
/// leaves ample room for them while a gzip bomb stops after at most this
/// much decompression work (memory never holds the object either way).
pub(super) fn default_max_object_bytes() -> u64 {
    256 * 1024 * 1024
}
/// CloudTrail records are a few KB and EventBridge events at most 256 KB.
/// The largest document that legitimately comes whole is a CloudWatch Logs
/// subscription batch (up to 1 MiB of messages, each escaped as a JSON
/// string, which adds to it), hence 2 MiB.
pub(super) fn default_max_record_bytes() -> u64 {
    2 * 1024 * 1024
}
/// An S3 event notification names one object, CloudTrail's own SNS notice
/// a handful.
pub(super) fn default_max_objects_per_message() -> usize {
    100
}
/// CloudTrail and Firehose write gzip, and CloudTrail JSON compresses
/// about tenfold: a log file at the 256 MiB decompressed default is some
/// 25 MiB stored. 64 MiB leaves room for files that compress worse, while
/// an object that inflates to little (empty gzip members) or that S3
/// already says is huge is refused before it costs minutes of transfer.
/// An object stored uncompressed is held to the smaller of this and
/// `max_object_bytes`.
pub(super) fn default_max_compressed_object_bytes() -> u64 {
    64 * 1024 * 1024
}
/// 64 MiB at even 1 MB/s from S3 takes about a minute, and inflating and
/// scanning 256 MiB a few seconds more; five minutes is then a connection
/// that stalls or drips bytes, not a slow object. It is also how often
/// CloudTrail writes a new file per account and region: a worker held
/// longer falls behind the trail.
pub(super) fn default_max_object_read_secs() -> u64 {
    300
}

/// The `sqs` source at `key`.
pub(super) fn validate_sqs(key: &str, s: &RawSource) -> Result<SqsSettings, ConfigError> {
    let RawSource::Sqs {
        name,
        queue_url,
        concurrency,
        wait_time_secs,
        visibility_timeout_secs,
        max_in_flight_messages,
        max_object_bytes,
        max_record_bytes,
        max_objects_per_message,
        max_compressed_object_bytes,
        max_object_read_secs,
        allowed_buckets,
        expected_bucket_owner,
        region,
        role_arn,
        external_id,
        session_name,
    } = s
    else {
        unreachable!("validate_source passes an sqs source")
    };
    // Every key is checked; the problems come back together.
    let e = &mut Vec::new();
    let queue_ok = keep(e, check_queue_url(&format!("{key}.queue_url"), queue_url));
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
            crate::aws::region_from_queue_url(queue_url).map(|r| ("queue_url", r)),
        ),
    );
    let name = keep(e, name_or(key, name, s.default_name()));
    let concurrency = keep(e, nonzero(&format!("{key}.concurrency"), *concurrency, 64));
    let wait_time = keep(
        e,
        secs(&format!("{key}.wait_time_secs"), *wait_time_secs, 0, 20),
    );
    let visibility_timeout = keep(
        e,
        secs(
            &format!("{key}.visibility_timeout_secs"),
            *visibility_timeout_secs,
            1,
            43_200,
        ),
    );
    let max_in_flight = keep(
        e,
        nonzero(
            &format!("{key}.max_in_flight_messages"),
            *max_in_flight_messages,
            100_000,
        ),
    );
    let limits = keep(
        e,
        object_limits(
            key,
            RawLimits {
                max_object_bytes: *max_object_bytes,
                max_record_bytes: *max_record_bytes,
                max_objects_per_message: *max_objects_per_message,
                max_compressed_object_bytes: *max_compressed_object_bytes,
                max_object_read_secs: *max_object_read_secs,
            },
        ),
    );
    let allowed_buckets = keep(
        e,
        allowed_buckets
            .as_ref()
            .map(|list| bucket_names(&format!("{key}.allowed_buckets"), list))
            .transpose(),
    );
    let expected_bucket_owner = keep(e, bucket_owner(key, expected_bucket_owner));
    let (
        Some(()),
        Some(aws),
        Some(name),
        Some(concurrency),
        Some(wait_time),
        Some(visibility_timeout),
        Some(max_in_flight),
        Some(limits),
        Some(allowed_buckets),
        Some(expected_bucket_owner),
    ) = (
        queue_ok,
        aws,
        name,
        concurrency,
        wait_time,
        visibility_timeout,
        max_in_flight,
        limits,
        allowed_buckets,
        expected_bucket_owner,
    )
    else {
        return Err(all(std::mem::take(e)));
    };
    Ok(SqsSettings {
        aws,
        name,
        queue_url: queue_url.clone(),
        concurrency,
        wait_time,
        visibility_timeout,
        max_in_flight,
        limits,
        allowed_buckets,
        expected_bucket_owner,
    })
}

/// `expected_bucket_owner`: an account id, when set.
fn bucket_owner(key: &str, owner: &Option<String>) -> Result<Option<String>, ConfigError> {
    match owner {
        Some(a) if !crate::aws::is_account_id(a) => Err(invalid(
            format!("{key}.expected_bucket_owner"),
            format!("`{a}` is not an AWS account id (12 digits)"),
        )),
        a => Ok(a.clone()),
    }
}

/// The SQS source's `max_*` keys, as the raw config spells them.
struct RawLimits {
    max_object_bytes: u64,
    max_record_bytes: u64,
    max_objects_per_message: usize,
    max_compressed_object_bytes: u64,
    max_object_read_secs: u64,
}

fn object_limits(key: &str, raw: RawLimits) -> Result<ObjectLimits, ConfigError> {
    let RawLimits {
        max_object_bytes,
        max_record_bytes,
        max_objects_per_message,
        max_compressed_object_bytes,
        max_object_read_secs,
    } = raw;
    const MIB: u64 = 1024 * 1024;
    for (name, bytes) in [
        ("max_object_bytes", max_object_bytes),
        ("max_compressed_object_bytes", max_compressed_object_bytes),
    ] {
        if !(MIB..=64 * 1024 * MIB).contains(&bytes) {
            return Err(invalid(
                format!("{key}.{name}"),
                format!("{bytes} is out of range (1 MiB = {MIB} to 64 GiB)"),
            ));
        }
    }
    if max_record_bytes < 64 * 1024 || max_record_bytes > max_object_bytes {
        return Err(invalid(
            format!("{key}.max_record_bytes"),
            format!(
                "{max_record_bytes} is out of range (64 KiB = 65536 to max_object_bytes = {max_object_bytes})"
            ),
        ));
    }
    Ok(ObjectLimits {
        max_object_bytes,
        max_record_bytes,
        max_objects_per_message: nonzero(
            &format!("{key}.max_objects_per_message"),
            max_objects_per_message,
            10_000,
        )?
        .get(),
        max_compressed_object_bytes,
        max_object_read: secs(
            &format!("{key}.max_object_read_secs"),
            max_object_read_secs,
            1,
            3600,
        )?,
    })
}

/// S3 bucket names: 3 to 63 lowercase letters, digits, `.` and `-`,
/// beginning and ending with a letter or digit.
fn bucket_names(key: &str, list: &[String]) -> Result<HashSet<String>, ConfigError> {
    if list.is_empty() {
        return Err(invalid(
            key,
            "is empty: it would refuse every object; leave it out to allow any bucket",
        ));
    }
    let mut set = HashSet::new();
    for (j, b) in list.iter().enumerate() {
        let ok = (3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
            && b.starts_with(|c: char| c.is_ascii_alphanumeric())
            && b.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(invalid(
                format!("{key}[{j}]"),
                format!("`{b}` is not an S3 bucket name"),
            ));
        }
        set.insert(b.clone());
    }
    Ok(set)
}
