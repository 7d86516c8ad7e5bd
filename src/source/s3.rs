//! Fetching the CloudTrail log files that S3 and CloudTrail notifications
//! name. The object is streamed (gzip decoded on the fly) through the
//! decoder on a blocking thread, so memory stays bounded by one record; the
//! decompressed stream passes through [`Limited`], which stops it at the
//! source's object and record limits (a gzip bomb inflates to gigabytes
//! from a few KB).

use std::io::{BufRead, Read};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::io::SyncIoBridge;

use crate::config::ObjectLimits;
use crate::decode::{self, ObjectRef};
use crate::pipeline::{EventFindings, Pipeline, Scan};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{object}: GetObject failed: {error}")]
    Get { object: ObjectRef, error: String },
    #[error("{object}: reading failed: {error}")]
    Read { object: ObjectRef, error: String },
    #[error("{object}: {what} after {read} bytes: over {setting} = {limit}")]
    TooLarge {
        object: ObjectRef,
        what: &'static str,
        setting: &'static str,
        limit: u64,
        read: u64,
    },
}

/// Regions and buckets remembered per source. Notifications are input, so
/// both maps are bounded: a flood of made-up names evicts, never grows.
const REGION_CLIENTS: usize = 64;
const BUCKET_REGIONS: usize = 4096;

/// S3 clients of one source, one per region: an object is read from its
/// bucket's own region, which need not be the queue's. The region comes
/// from the notification when it names one, else from `GetBucketLocation`,
/// asked once per bucket and remembered.
pub struct S3Clients {
    /// The source's own configuration (credentials, role, endpoint).
    aws: aws_config::SdkConfig,
    /// In the source's region: asks for bucket locations, and reads
    /// buckets whose location could not be learned.
    default: aws_sdk_s3::Client,
    by_region: Mutex<lru::LruCache<String, aws_sdk_s3::Client>>,
    bucket_regions: Mutex<lru::LruCache<String, String>>,
}

impl S3Clients {
    pub fn new(aws: &aws_config::SdkConfig) -> Self {
        S3Clients {
            aws: aws.clone(),
            default: client(aws),
            by_region: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(REGION_CLIENTS).expect("non-zero"),
            )),
            bucket_regions: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(BUCKET_REGIONS).expect("non-zero"),
            )),
        }
    }

    /// The client for `object`'s bucket. `on_lookup_error` hears a failed
    /// `GetBucketLocation` (no permission, say); the object is then read in
    /// the source's region, and the lookup is tried again next time.
    pub async fn for_object(
        &self,
        object: &ObjectRef,
        on_lookup_error: impl FnOnce(String),
    ) -> aws_sdk_s3::Client {
        let named = object
            .region
            .as_deref()
            .filter(|r| crate::aws::is_region(r));
        if let Some(r) = named {
            return self.in_region(r);
        }
        let known = self
            .bucket_regions
            .lock()
            .expect("not poisoned")
            .get(&object.bucket)
            .cloned();
        if let Some(r) = known {
            return self.in_region(&r);
        }
        match self
            .default
            .get_bucket_location()
            .bucket(&object.bucket)
            .send()
            .await
        {
            Ok(out) => {
                let region =
                    bucket_region(out.location_constraint().map(|c| c.as_str()).unwrap_or(""));
                self.bucket_regions
                    .lock()
                    .expect("not poisoned")
                    .put(object.bucket.clone(), region.clone());
                self.in_region(&region)
            }
            Err(e) => {
                on_lookup_error(aws_sdk_s3::error::DisplayErrorContext(&e).to_string());
                self.default.clone()
            }
        }
    }

    fn in_region(&self, region: &str) -> aws_sdk_s3::Client {
        if self.aws.region().is_some_and(|r| r.as_ref() == region) {
            return self.default.clone();
        }
        let mut clients = self.by_region.lock().expect("not poisoned");
        if let Some(c) = clients.get(region) {
            return c.clone();
        }
        let c = client(
            &self
                .aws
                .to_builder()
                .region(aws_config::Region::new(region.to_owned()))
                .build(),
        );
        clients.put(region.to_owned(), c.clone());
        c
    }
}

fn client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let mut s3 = aws_sdk_s3::config::Builder::from(aws);
    if aws.endpoint_url().is_some() {
        // Emulators serve buckets by path, not by virtual host.
        s3 = s3.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(s3.build())
}

/// `GetBucketLocation`'s answer as a region: empty is us-east-1, and `EU`
/// the old name of eu-west-1.
fn bucket_region(constraint: &str) -> String {
    match constraint {
        "" => "us-east-1".to_owned(),
        "EU" => "eu-west-1".to_owned(),
        r => r.to_owned(),
    }
}

/// The decoder reads through a 64 KiB buffer, so the bytes pulled since the
/// last record came out may run up to that far ahead of the record itself.
const READ_AHEAD: u64 = 64 * 1024;

const UNDER: u8 = 0;
const OBJECT: u8 = 1;
const RECORD: u8 = 2;

/// Byte counts shared between [`Limited`] (which counts) and the decoder's
/// item callback (which marks where each record ended).
#[derive(Default)]
struct Counter {
    read: AtomicU64,
    mark: AtomicU64,
    tripped: AtomicU8,
}

/// A reader that fails once more than `max_object` bytes passed through it,
/// or more than `max_record` (plus the decoder's read-ahead) since the last
/// mark. Nothing is buffered: the limit costs no memory.
struct Limited<R> {
    inner: R,
    limits: ObjectLimits,
    counter: Arc<Counter>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let c = &self.counter;
        let read = c.read.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let tripped = if read > self.limits.max_object_bytes {
            OBJECT
        } else if read - c.mark.load(Ordering::Relaxed) > self.limits.max_record_bytes + READ_AHEAD
        {
            RECORD
        } else {
            return Ok(n);
        };
        c.tripped.store(tripped, Ordering::Relaxed);
        Err(std::io::Error::other("input over its size limit"))
    }
}

/// Findings of one object are handed to the caller in groups of this many
/// events as they are found, not collected for the whole object.
const CHUNK: usize = 64;

/// Fetches one object and scans its records. Decode errors inside the
/// object land in the returned scan's `errors`. Events with findings go to
/// `dispatch` while the object is read (from a blocking thread), in chunks
/// and then the last few, so the returned scan holds none: the caller's
/// bound on findings in flight applies to every one of them.
pub async fn scan_object(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    expected_owner: Option<&str>,
    limits: ObjectLimits,
    pipeline: &Arc<Pipeline>,
    mut dispatch: impl FnMut(Vec<EventFindings>) + Send + 'static,
) -> Result<Scan, FetchError> {
    let out = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_expected_bucket_owner(expected_owner.map(str::to_owned))
        .send()
        .await
        .map_err(|e| FetchError::Get {
            object: object.clone(),
            error: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        })?;
    let body = SyncIoBridge::new(out.body.into_async_read());
    let p = Arc::clone(pipeline);
    let o = object.clone();
    let read_err = move |error: String| FetchError::Read {
        object: o.clone(),
        error,
    };
    let read_err2 = read_err.clone();
    let object = object.clone();
    tokio::task::spawn_blocking(move || {
        let mut plain = decode::maybe_gunzip(body).map_err(|e| read_err(e.to_string()))?;
        // The decoder would inflate a second layer without this reader's
        // limits in between; CloudTrail never writes one.
        if plain
            .fill_buf()
            .map_err(|e| read_err(e.to_string()))?
            .starts_with(&crate::decode::GZIP_MAGIC)
        {
            return Err(read_err("gzip inside gzip is not read".into()));
        }
        let counter = Arc::new(Counter::default());
        let reader = Limited {
            inner: plain,
            limits,
            counter: Arc::clone(&counter),
        };
        let mut scan = Scan::default();
        let stream = p.scan_reader_with(reader, &mut scan, &mut |scan| {
            counter
                .mark
                .store(counter.read.load(Ordering::Relaxed), Ordering::Relaxed);
            if scan.groups.len() >= CHUNK {
                dispatch(std::mem::take(&mut scan.groups));
            }
        });
        // What was found before the end, or before a limit, goes out
        // through `dispatch` too.
        if !scan.groups.is_empty() {
            dispatch(std::mem::take(&mut scan.groups));
        }
        let (what, setting, limit) = match counter.tripped.load(Ordering::Relaxed) {
            UNDER => {
                if let Err(e) = stream {
                    scan.errors.push(e);
                }
                return Ok(scan);
            }
            OBJECT => ("object", "max_object_bytes", limits.max_object_bytes),
            _ => ("record", "max_record_bytes", limits.max_record_bytes),
        };
        // The I/O error the limit caused (`stream`'s) is this error, not
        // another one.
        Err(FetchError::TooLarge {
            object,
            what,
            setting,
            limit,
            read: counter.read.load(Ordering::Relaxed),
        })
    })
    .await
    .map_err(|e| read_err2(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(data: &[u8], max_object: u64, max_record: u64) -> (Limited<&[u8]>, Arc<Counter>) {
        let counter = Arc::new(Counter::default());
        let l = Limited {
            inner: data,
            limits: ObjectLimits {
                max_object_bytes: max_object,
                max_record_bytes: max_record,
                max_objects_per_message: 1,
            },
            counter: Arc::clone(&counter),
        };
        (l, counter)
    }

    #[test]
    fn bucket_location_answers_as_regions() {
        assert_eq!(bucket_region(""), "us-east-1");
        assert_eq!(bucket_region("EU"), "eu-west-1");
        assert_eq!(bucket_region("ap-south-1"), "ap-south-1");
    }

    #[test]
    fn stops_past_the_object_limit() {
        let data = vec![b' '; 300_000];
        let (mut l, c) = limited(&data, 200_000, 1 << 40);
        let mut sink = Vec::new();
        assert!(l.read_to_end(&mut sink).is_err());
        assert_eq!(c.tripped.load(Ordering::Relaxed), OBJECT);
        assert!(sink.len() <= 200_000 + 8192, "{}", sink.len());
        let (mut l, c) = limited(&data, 300_000, 1 << 40);
        l.read_to_end(&mut Vec::new()).unwrap();
        assert_eq!(c.tripped.load(Ordering::Relaxed), UNDER);
    }

    #[test]
    fn stops_past_the_record_limit_unless_marked() {
        let data = vec![b' '; 300_000];
        let (mut l, c) = limited(&data, 1 << 40, 100_000);
        assert!(l.read_to_end(&mut Vec::new()).is_err());
        assert_eq!(c.tripped.load(Ordering::Relaxed), RECORD);
        let (mut l, c) = limited(&data, 1 << 40, 100_000);
        let mut buf = [0u8; 1000];
        while l.read(&mut buf).unwrap() > 0 {
            c.mark
                .store(c.read.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        assert_eq!(c.tripped.load(Ordering::Relaxed), UNDER);
    }
}
