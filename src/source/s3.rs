//! Fetching the CloudTrail log files that S3 and CloudTrail notifications
//! name. The object is streamed (gzip decoded on the fly) through the
//! decoder on a blocking thread, so memory stays bounded by one record; the
//! decompressed stream passes through [`Limited`], which stops it at the
//! source's object and record limits (a gzip bomb inflates to gigabytes
//! from a few KB). The stored bytes pass through [`Metered`] first, which
//! stops them at the stored-size limit and at the read's deadline (empty
//! gzip members inflate to nothing, and a connection can drip or stall).

use std::io::{BufRead, Read};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
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
    #[error("{object}: {size} bytes stored: over max_compressed_object_bytes = {limit}; not read")]
    StoredTooLarge {
        object: ObjectRef,
        size: u64,
        limit: u64,
    },
    #[error("{object}: not read within max_object_read_secs = {secs} ({read} stored bytes read)")]
    TooSlow {
        object: ObjectRef,
        secs: u64,
        read: u64,
    },
}

impl FetchError {
    /// The decode-error kind of an object over one of the source's limits;
    /// `None` for a failure of S3 or of the connection.
    pub fn limit_kind(&self) -> Option<&'static str> {
        match self {
            FetchError::TooLarge { .. } | FetchError::StoredTooLarge { .. } => Some("too_large"),
            FetchError::TooSlow { .. } => Some("too_slow"),
            FetchError::Get { .. } | FetchError::Read { .. } => None,
        }
    }
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
const STORED: u8 = 3;
const LATE: u8 = 4;

/// Byte counts shared between [`Metered`] and [`Limited`] (which count)
/// and the decoder's item callback (which marks where each record ended).
#[derive(Default)]
struct Counter {
    /// Stored (possibly compressed) bytes received.
    stored: AtomicU64,
    /// Decompressed bytes read.
    read: AtomicU64,
    mark: AtomicU64,
    tripped: AtomicU8,
}

impl Counter {
    fn trip(&self, why: u8) -> std::io::Error {
        self.tripped.store(why, Ordering::Relaxed);
        std::io::Error::other("input over its limit")
    }

    /// The error a reader's limit caused, in place of the I/O error the
    /// decoder saw; `None` while no limit was reached.
    fn over(&self, object: &ObjectRef, limits: ObjectLimits) -> Option<FetchError> {
        let (what, setting, limit, read) = match self.tripped.load(Ordering::Relaxed) {
            UNDER => return None,
            OBJECT => (
                "object",
                "max_object_bytes",
                limits.max_object_bytes,
                self.read.load(Ordering::Relaxed),
            ),
            RECORD => (
                "record",
                "max_record_bytes",
                limits.max_record_bytes,
                self.read.load(Ordering::Relaxed),
            ),
            STORED => (
                "stored object",
                "max_compressed_object_bytes",
                limits.max_compressed_object_bytes,
                self.stored.load(Ordering::Relaxed),
            ),
            _ => {
                return Some(FetchError::TooSlow {
                    object: object.clone(),
                    secs: limits.max_object_read.as_secs(),
                    read: self.stored.load(Ordering::Relaxed),
                });
            }
        };
        Some(FetchError::TooLarge {
            object: object.clone(),
            what,
            setting,
            limit,
            read,
        })
    }
}

/// When reading an object must have ended. Time its reader spends waiting
/// for room to hand findings on moves it later: that wait is the sinks'
/// backpressure, not the object's slowness.
struct Deadline(Mutex<tokio::time::Instant>);

impl Deadline {
    fn at(&self) -> tokio::time::Instant {
        *self.0.lock().expect("not poisoned")
    }

    fn push(&self, by: Duration) {
        *self.0.lock().expect("not poisoned") += by;
    }
}

/// The object's body as received: fails once more than
/// `max_stored` bytes came, or once the deadline passed, whether bytes
/// still trickle in or none come at all.
struct Metered<R> {
    inner: Pin<Box<R>>,
    max_stored: u64,
    deadline: Arc<Deadline>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    counter: Arc<Counter>,
}

impl<R: AsyncRead> AsyncRead for Metered<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let at = me.deadline.at();
        if tokio::time::Instant::now() >= at {
            return Poll::Ready(Err(me.counter.trip(LATE)));
        }
        let before = buf.filled().len();
        match me.inner.as_mut().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = (buf.filled().len() - before) as u64;
                let stored = me.counter.stored.fetch_add(n, Ordering::Relaxed) + n;
                if stored > me.max_stored {
                    // A read that fails hands over no bytes.
                    buf.set_filled(before);
                    return Poll::Ready(Err(me.counter.trip(STORED)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if me.sleep.deadline() != at {
                    me.sleep.as_mut().reset(at);
                }
                match me.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(me.counter.trip(LATE))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
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
        Err(c.trip(tripped))
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
    let deadline = Arc::new(Deadline(Mutex::new(
        tokio::time::Instant::now() + limits.max_object_read,
    )));
    let out = get_object(client, object, expected_owner, limits, &deadline).await?;
    let counter = Arc::new(Counter::default());
    let body = SyncIoBridge::new(Metered {
        inner: Box::pin(out.body.into_async_read()),
        max_stored: limits.max_compressed_object_bytes,
        deadline: Arc::clone(&deadline),
        sleep: Box::pin(tokio::time::sleep_until(deadline.at())),
        counter: Arc::clone(&counter),
    });
    let p = Arc::clone(pipeline);
    let o = object.clone();
    let read_err = move |error: String| FetchError::Read {
        object: o.clone(),
        error,
    };
    let read_err2 = read_err.clone();
    let object = object.clone();
    tokio::task::spawn_blocking(move || {
        let over = |c: &Counter| c.over(&object, limits);
        let failed = |e: std::io::Error| over(&counter).unwrap_or_else(|| read_err(e.to_string()));
        let mut plain = decode::maybe_gunzip(body).map_err(failed)?;
        // The decoder would inflate a second layer without this reader's
        // limits in between; CloudTrail never writes one.
        if plain
            .fill_buf()
            .map_err(failed)?
            .starts_with(&crate::decode::GZIP_MAGIC)
        {
            return Err(read_err("gzip inside gzip is not read".into()));
        }
        let reader = Limited {
            inner: plain,
            limits,
            counter: Arc::clone(&counter),
        };
        let mut dispatch = |groups: Vec<EventFindings>| {
            let waited = std::time::Instant::now();
            dispatch(groups);
            deadline.push(waited.elapsed());
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
        match (over(&counter), stream) {
            // The I/O error the limit caused is this error, not another one.
            (Some(e), _) => Err(e),
            (None, Err(e)) => {
                scan.errors.push(e);
                Ok(scan)
            }
            (None, Ok(())) => Ok(scan),
        }
    })
    .await
    .map_err(|e| read_err2(e.to_string()))?
}

/// GetObject, answered within the read's deadline. An object S3 says is
/// stored larger than `max_compressed_object_bytes` is refused before a
/// byte of it is read; the count in [`Metered`] holds when S3 does not say.
async fn get_object(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    expected_owner: Option<&str>,
    limits: ObjectLimits,
    deadline: &Deadline,
) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, FetchError> {
    let get = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_expected_bucket_owner(expected_owner.map(str::to_owned))
        .send();
    let out = tokio::time::timeout_at(deadline.at(), get)
        .await
        .map_err(|_| FetchError::TooSlow {
            object: object.clone(),
            secs: limits.max_object_read.as_secs(),
            read: 0,
        })?
        .map_err(|e| FetchError::Get {
            object: object.clone(),
            error: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        })?;
    if let Some(size) = out.content_length().and_then(|n| u64::try_from(n).ok())
        && size > limits.max_compressed_object_bytes
    {
        return Err(FetchError::StoredTooLarge {
            object: object.clone(),
            size,
            limit: limits.max_compressed_object_bytes,
        });
    }
    Ok(out)
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
                max_compressed_object_bytes: 1 << 40,
                max_object_read: Duration::from_secs(3600),
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

    fn metered<R: AsyncRead>(
        inner: R,
        max_stored: u64,
        within: Duration,
    ) -> (Metered<R>, Arc<Counter>, Arc<Deadline>) {
        let counter = Arc::new(Counter::default());
        let at = tokio::time::Instant::now() + within;
        let deadline = Arc::new(Deadline(Mutex::new(at)));
        let m = Metered {
            inner: Box::pin(inner),
            max_stored,
            deadline: Arc::clone(&deadline),
            sleep: Box::pin(tokio::time::sleep_until(at)),
            counter: Arc::clone(&counter),
        };
        (m, counter, deadline)
    }

    /// The count that holds when S3 does not say the size up front.
    #[tokio::test]
    async fn stops_past_the_stored_limit() {
        use tokio::io::AsyncReadExt;
        let data = vec![0u8; 300_000];
        let (mut m, c, _) = metered(&data[..], 200_000, Duration::from_secs(60));
        assert!(m.read_to_end(&mut Vec::new()).await.is_err());
        assert_eq!(c.tripped.load(Ordering::Relaxed), STORED);
        let (mut m, c, _) = metered(&data[..], 300_000, Duration::from_secs(60));
        m.read_to_end(&mut Vec::new()).await.unwrap();
        assert_eq!(c.tripped.load(Ordering::Relaxed), UNDER);
    }

    /// A body that stops sending fails at the deadline, and a deadline
    /// pushed back (the reader waited for delivery room) is honoured.
    #[tokio::test]
    async fn stops_at_the_deadline_of_a_stalled_body() {
        use tokio::io::AsyncReadExt;
        let (_writer, stalled) = tokio::io::duplex(64);
        let (mut m, c, deadline) = metered(stalled, 1 << 40, Duration::from_millis(100));
        deadline.push(Duration::from_millis(200));
        let started = std::time::Instant::now();
        assert!(m.read(&mut [0u8; 16]).await.is_err());
        assert_eq!(c.tripped.load(Ordering::Relaxed), LATE);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(290), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
