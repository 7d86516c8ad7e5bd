//! What the AWS sinks (SNS, EventBridge) share: their clients built from
//! the process's AWS configuration, and SDK errors mapped to
//! retriable or permanent failures (the decision itself is
//! [`super::retry::classify_aws`]).

use std::error::Error;
use std::time::Duration;

use aws_sdk_sns::config::http::HttpResponse;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};

use super::SendError;
use super::retry::classify_aws;

/// An SDK client made at the first send: with a role, its credentials come
/// from STS through the process's configuration (asynchronously, so not
/// when the sink is built), cached and refreshed by the SDK from then on.
pub struct LazyClient<C> {
    base: aws_config::SdkConfig,
    aws: crate::aws::AwsSettings,
    make: fn(&aws_config::SdkConfig) -> C,
    client: tokio::sync::OnceCell<C>,
}

impl<C> LazyClient<C> {
    pub fn new(
        base: &aws_config::SdkConfig,
        aws: &crate::aws::AwsSettings,
        make: fn(&aws_config::SdkConfig) -> C,
    ) -> Self {
        LazyClient {
            base: base.clone(),
            aws: aws.clone(),
            make,
            client: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn get(&self) -> &C {
        self.client
            .get_or_init(|| async {
                // The sink's own loop (`sink::retry`) retries within the
                // sink's deadline; the SDK's retries inside each attempt
                // would multiply it.
                let config = crate::aws::sdk_config(&self.base, &self.aws)
                    .await
                    .to_builder()
                    .retry_config(aws_config::retry::RetryConfig::disabled())
                    .build();
                (self.make)(&config)
            })
            .await
    }
}

/// SNS and EventBridge both take at most 256 KiB per message or entry.
pub const MAX_BYTES: usize = 256 * 1024;

/// An SDK error as a sink failure. Nothing from the request (the message,
/// the topic's subscribers) is in the text; URLs in the service's message
/// are replaced.
pub fn send_error<E>(e: &SdkError<E, HttpResponse>) -> SendError
where
    E: ProvideErrorMetadata + Error + 'static,
{
    let retriable = |error: String| SendError::Retriable {
        error: crate::secret::scrub_urls(&error),
        retry_after: None,
        status: None,
    };
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            classify_aws(
                err.code(),
                Some(s.raw().status().as_u16()),
                err.message().unwrap_or_default(),
            )
        }
        SdkError::TimeoutError(_) => retriable("timed out".into()),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "connection failed"
            } else {
                "request not sent"
            };
            retriable(format!(
                "{kind}: {}",
                aws_sdk_sns::error::DisplayErrorContext(e)
            ))
        }
        // A response that could not be read, or a request that could not
        // be built (credentials not loaded yet): the next attempt may do.
        other => retriable(format!(
            "{}",
            aws_sdk_sns::error::DisplayErrorContext(other)
        )),
    }
}

/// Runs `call` for at most `timeout`, a deadline overrun being retriable.
pub async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, SendError>>,
) -> Result<T, SendError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(SendError::Retriable {
                error: format!("no answer within {}s", timeout.as_secs()),
                retry_after: None,
                status: None,
            })
        })
}

/// The current time in ms since the epoch, for OCSF `time` when an
/// event's own does not parse.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
