//! Sinks: where findings go. Each sink sends one finding per call; the retry
//! loop around it (retry.rs) decides what to do with failures.

pub mod aws;
pub mod eventbridge;
pub mod format;
pub mod http;
pub mod retry;
pub mod sns;
pub mod stdout;
pub mod syslog;

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
        /// The HTTP status, when the receiver answered (408, 429, 5xx).
        status: Option<u16>,
    },
    /// The receiver refused the alert; sending it again would not help.
    /// `status` is the HTTP status, when there was one.
    #[error("{error}")]
    Permanent { error: String, status: Option<u16> },
}

pub trait Sink: Send + Sync {
    fn send<'a>(&'a self, finding: &'a Finding) -> BoxFuture<'a, Result<(), SendError>>;
}

/// Builds the sink a config entry describes. SNS and EventBridge sinks
/// need the AWS configuration: built here without it, they refuse every
/// finding (see [`build_with`]).
pub fn build(settings: &SinkSettings, client: &reqwest::Client) -> Box<dyn Sink> {
    build_with(settings, client, None)
}

/// Builds the sink a config entry describes; SNS and EventBridge sinks
/// build their clients from `aws` (`run` loads it whenever a sink needs
/// it).
pub fn build_with(
    settings: &SinkSettings,
    client: &reqwest::Client,
    aws: Option<&aws_config::SdkConfig>,
) -> Box<dyn Sink> {
    let secrets = crate::secret::Secrets::of_sink(&settings.kind);
    match &settings.kind {
        SinkKind::Sns(s) => match aws {
            Some(aws) => Box::new(sns::SnsSink::new(aws, s, settings.timeout)),
            None => Box::new(NoAwsConfig),
        },
        SinkKind::EventBridge(s) => match aws {
            Some(aws) => Box::new(eventbridge::EventBridgeSink::new(aws, s, settings.timeout)),
            None => Box::new(NoAwsConfig),
        },
        SinkKind::Stdout => Box::new(stdout::StdoutSink),
        SinkKind::Webhook(w) => Box::new(http::HttpSink::webhook(
            client.clone(),
            w,
            secrets,
            settings.timeout,
        )),
        SinkKind::Slack { url } => Box::new(http::HttpSink::new(
            client.clone(),
            url.clone(),
            secrets,
            http::Format::Slack,
            settings.timeout,
        )),
        SinkKind::Teams { url } => Box::new(http::HttpSink::new(
            client.clone(),
            url.clone(),
            secrets,
            http::Format::Teams,
            settings.timeout,
        )),
        SinkKind::PagerDuty { url, routing_key } => Box::new(http::HttpSink::new(
            client.clone(),
            crate::secret::Secret::new(url.clone()),
            secrets,
            http::Format::PagerDuty {
                routing_key: routing_key.clone(),
            },
            settings.timeout,
        )),
        SinkKind::Syslog(s) => match syslog::SyslogSink::new(s.clone(), settings.timeout) {
            Ok(sink) => Box::new(sink),
            // Checked with the config; a CA file changed since is refused
            // on every alert, so the input stays unacknowledged.
            Err(error) => Box::new(Refuses(error)),
        },
        SinkKind::SplunkHec { url, token, meta } => Box::new(http::HttpSink::new(
            client.clone(),
            url.clone(),
            secrets,
            http::Format::SplunkHec {
                token: token.clone(),
                meta: meta.clone(),
            },
            settings.timeout,
        )),
        SinkKind::Alertmanager { url, resolve_after } => Box::new(http::HttpSink::new(
            client.clone(),
            url.clone(),
            secrets,
            http::Format::Alertmanager {
                resolve_after: *resolve_after,
            },
            settings.timeout,
        )),
        SinkKind::Opsgenie { url, api_key } => Box::new(http::HttpSink::new(
            client.clone(),
            url.clone(),
            secrets,
            http::Format::Opsgenie {
                api_key: api_key.clone(),
            },
            settings.timeout,
        )),
    }
}

/// A sink that could not be built: every alert is refused, with the reason.
struct Refuses(String);

impl Sink for Refuses {
    fn send<'a>(&'a self, _: &'a Finding) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async {
            Err(SendError::Permanent {
                error: self.0.clone(),
                status: None,
            })
        })
    }
}

/// An AWS sink built without the AWS configuration: a wiring mistake,
/// reported as a rejection on every finding rather than a crash, so the
/// input stays unacknowledged.
struct NoAwsConfig;

impl Sink for NoAwsConfig {
    fn send<'a>(&'a self, _: &'a Finding) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async {
            Err(SendError::Permanent {
                error: "this AWS sink was built without the AWS configuration".into(),
                status: None,
            })
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::escape::testing::golden_findings;

    /// Built without the AWS configuration, an AWS sink refuses (the input
    /// stays unacknowledged) instead of bringing the process down.
    #[tokio::test]
    async fn an_aws_sink_without_aws_configuration_refuses() {
        let raw = crate::config::parse(
            "[[sinks]]\ntype = \"sns\"\ntopic_arn = \"arn:aws:sns:us-east-1:111122223333:t\"\n[[sinks]]\ntype = \"eventbridge\"\nevent_bus = \"default\"\n",
            &|_| None,
        )
        .unwrap();
        let settings = crate::config::validate(&raw).unwrap();
        let f = golden_findings().remove(0).1;
        for s in &settings.sinks {
            let sink = build(s, &http_client());
            assert!(matches!(
                sink.send(&f).await,
                Err(SendError::Permanent { .. })
            ));
        }
    }
}
