//! Fetching the CloudTrail log files that S3 and CloudTrail notifications
//! name. The object is streamed (gzip decoded on the fly) through the
//! decoder on a blocking thread, so memory stays bounded by one record.

use std::sync::Arc;

use tokio_util::io::SyncIoBridge;

use crate::decode::ObjectRef;
use crate::pipeline::{Pipeline, Scan};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{object}: GetObject failed: {error}")]
    Get { object: ObjectRef, error: String },
    #[error("{object}: reading failed: {error}")]
    Read { object: ObjectRef, error: String },
}

/// Fetches one object and scans its records into `scan`. Decode errors
/// inside the object land in `scan.errors`.
pub async fn scan_object(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    pipeline: &Arc<Pipeline>,
) -> Result<Scan, FetchError> {
    let out = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|e| FetchError::Get {
            object: object.clone(),
            error: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        })?;
    let reader = SyncIoBridge::new(out.body.into_async_read());
    let p = Arc::clone(pipeline);
    tokio::task::spawn_blocking(move || {
        let mut scan = Scan::default();
        p.scan_reader(reader, &mut scan);
        scan
    })
    .await
    .map_err(|e| FetchError::Read {
        object: object.clone(),
        error: e.to_string(),
    })
}
