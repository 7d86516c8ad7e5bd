//! Sinks: where findings go. Each sink sends one finding per call; the retry
//! loop around it (retry.rs) decides what to do with failures.

pub mod aws;
pub mod eventbridge;
pub mod format;
pub mod http;
pub mod retry;
pub mod sns;
pub mod stdout;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::{SinkKind, SinkSettings};
use crate::finding::Finding;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why one attempt failed. Error text never holds the sink's URL or secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again (408, 429, 5xx, connection errors).
    #[error("{error}")]
    Retriable {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The receiver refused the alert; sending it again would not help.
    /// `status` is the HTTP status, when there was one.
    #[error("{error}")]
    Permanent { error: String, status: Option<u16> },
}

pub trait Sink: Send + Sync {
    fn send<'a>(&'a self, finding: &'a Finding) -> BoxFuture<'a, Result<(), SendError>>;
}

/// Builds the sink a config entry describes (not an SNS or EventBridge
/// one: those need the AWS configuration, see [`build_with`]).
pub fn build(settings: &SinkSettings, client: &reqwest::Client) -> Box<dyn Sink> {
    build_with(settings, client, None)
}

/// Builds the sink a config entry describes; SNS and EventBridge sinks
/// build their clients from `aws`.
///
/// # Panics
///
/// When an SNS or EventBridge sink is given no AWS configuration: `run`
/// loads it whenever a sink needs it.
pub fn build_with(
    settings: &SinkSettings,
    client: &reqwest::Client,
    aws: Option<&aws_config::SdkConfig>,
) -> Box<dyn Sink> {
    const NEEDS_AWS: &str = "the AWS configuration is loaded for AWS sinks";
    match &settings.kind {
        SinkKind::Sns(s) => Box::new(sns::SnsSink::new(
            aws.expect(NEEDS_AWS),
            s,
            settings.timeout,
        )),
        SinkKind::EventBridge(s) => Box::new(eventbridge::EventBridgeSink::new(
            aws.expect(NEEDS_AWS),
            s,
            settings.timeout,
        )),
        SinkKind::Stdout => Box::new(stdout::StdoutSink),
        SinkKind::Webhook(w) => {
            Box::new(http::HttpSink::webhook(client.clone(), w, settings.timeout))
        }
        SinkKind::Slack { url } => Box::new(http::HttpSink::new(
            client.clone(),
            url.clone(),
            http::Format::Slack,
            settings.timeout,
        )),
        SinkKind::Teams { url } => Box::new(http::HttpSink::new(
            client.clone(),
            url.clone(),
            http::Format::Teams,
            settings.timeout,
        )),
        SinkKind::PagerDuty { url, routing_key } => Box::new(http::HttpSink::new(
            client.clone(),
            crate::config::Secret::new(url.clone()),
            http::Format::PagerDuty {
                routing_key: routing_key.clone(),
            },
            settings.timeout,
        )),
    }
}

/// The shared HTTP client: rustls, connection pooling, no redirects (a
/// redirect from a SOC endpoint is a misconfiguration, not a place to send
/// alerts to).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("rootwatch/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("the HTTP client builds with static settings")
}
