//! Wiring for `rootwatch run`: admin server, pipeline, sinks, sources and
//! the shutdown sequence. `run` takes its shutdown future so tests drive
//! the whole daemon in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, SourceSettings};
use crate::pipeline::Pipeline;
use crate::server::{self, Readiness};
use crate::source::SourceError;
use crate::source::cloudwatch_logs::CloudwatchLogsSource;
use crate::source::file::FileSource;
use crate::source::sqs::SqsSource;
use crate::telemetry;

/// After the grace period, how long sources get to hand back what they had
/// not finished (SQS visibility reset) before the process exits anyway.
const HAND_BACK: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("nothing to read: the config has no [[sources]]")]
    NoSources,
    #[error("nowhere to alert: the config has no [[sinks]]")]
    NoSinks,
    #[error("admin server: cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A CloudWatch Logs checkpoint that cannot be read or written: a
    /// configuration problem (exit 78), never a silent restart.
    #[error(transparent)]
    Checkpoint(#[from] crate::source::checkpoint::CheckpointError),
}

/// What tests and embedders can pass in.
#[derive(Default)]
pub struct Options {
    /// AWS configuration; loaded from the standard chain when absent.
    pub aws: Option<aws_config::SdkConfig>,
    /// Told the admin server's address once it listens.
    pub admin_bound: Option<oneshot::Sender<SocketAddr>>,
    pub readiness: Option<Arc<Readiness>>,
}

pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    run_with(settings, Options::default(), shutdown).await
}

pub async fn run_with(
    settings: Settings,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    if settings.sources.is_empty() {
        return Err(RunError::NoSources);
    }
    if settings.sinks.is_empty() {
        return Err(RunError::NoSinks);
    }
    let sources: Vec<&str> = settings.sources.iter().map(|s| s.name()).collect();
    let sinks: Vec<&str> = settings.sinks.iter().map(|s| s.name.as_str()).collect();
    telemetry::register(&sources, &sinks, &crate::detect::rule_ids());
    let readiness = opts.readiness.unwrap_or_default();
    let server_stop = CancellationToken::new();
    if let Some(addr) = settings.server_listen {
        let (local, serve) = server::bind(addr, Arc::clone(&readiness), server_stop.clone())
            .await
            .map_err(|error| RunError::Listen { addr, error })?;
        tracing::info!(address = %local, "admin server listening");
        if let Some(tx) = opts.admin_bound {
            let _ = tx.send(local);
        }
        tokio::spawn(serve);
    }
    let result = run_sources(&settings, opts.aws, &readiness, shutdown).await;
    server_stop.cancel();
    result
}

async fn run_sources(
    settings: &Settings,
    aws: Option<aws_config::SdkConfig>,
    readiness: &Readiness,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let abort = CancellationToken::new();
    let pipeline = Arc::new(Pipeline::new(settings, abort.clone()));
    let needs_aws = settings.sources.iter().any(|s| {
        matches!(
            s,
            SourceSettings::Sqs(_) | SourceSettings::CloudwatchLogs(_)
        )
    });
    let aws = match (aws, needs_aws) {
        (Some(c), _) => Some(c),
        (None, true) => {
            Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
        }
        (None, false) => None,
    };

    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    // A signal while sources are still starting (a slow AWS endpoint) ends
    // the start: nothing has been received yet, so nothing is in flight.
    let starting = tokio::select! {
        s = start_sources(settings, aws.as_ref(), &pipeline) => s?,
        _ = &mut shutdown => {
            tracing::info!("stopped before every source had started");
            return Ok(());
        }
    };
    let throttle = tokio::spawn(Arc::clone(&pipeline).run_throttle(stop.clone()));
    for s in starting {
        let stop = stop.clone();
        match s {
            Starting::Sqs(src) => tasks.spawn(src.run(stop)),
            Starting::File(src) => tasks.spawn(src.run(stop)),
            Starting::CloudwatchLogs(src) => tasks.spawn(src.run(stop)),
        };
    }
    readiness.set_ready();
    tracing::info!(
        sources = settings.sources.len(),
        sinks = settings.sinks.len(),
        "rootwatch running"
    );

    (&mut shutdown).await;
    readiness.set_draining();
    stop.cancel();
    tracing::info!(
        grace_secs = settings.shutdown_grace.as_secs(),
        "draining: finishing deliveries and acknowledgements"
    );
    let _ = throttle.await;
    let finished = tokio::time::timeout(settings.shutdown_grace, join_all(&mut tasks)).await;
    if finished.is_err() {
        tracing::warn!(
            deliveries = pipeline.deliveries_in_progress(),
            "grace period over: cancelling deliveries; their input stays unacknowledged"
        );
        abort.cancel();
        if tokio::time::timeout(HAND_BACK, join_all(&mut tasks))
            .await
            .is_err()
        {
            tracing::warn!(
                "sources did not finish handing back their input; exiting anyway (nothing unacknowledged is lost)"
            );
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Builds and checks every source, in order, before any of them runs.
async fn start_sources(
    settings: &Settings,
    aws: Option<&aws_config::SdkConfig>,
    pipeline: &Arc<Pipeline>,
) -> Result<Vec<Starting>, RunError> {
    let mut starting = Vec::new();
    for source in &settings.sources {
        match source {
            SourceSettings::Sqs(s) => {
                let src = SqsSource::new(
                    s.clone(),
                    aws.expect("loaded for SQS"),
                    Arc::clone(pipeline),
                );
                src.check().await?;
                starting.push(Starting::Sqs(src));
            }
            SourceSettings::File(s) => starting.push(Starting::File(FileSource::new(
                s.clone(),
                Arc::clone(pipeline),
            ))),
            SourceSettings::CloudwatchLogs(s) => {
                let mut src = CloudwatchLogsSource::new(
                    s.clone(),
                    &settings.detect,
                    aws.expect("loaded for CloudWatch Logs"),
                    Arc::clone(pipeline),
                );
                // The checkpoint is read before any network call, so a
                // corrupt file is reported even when AWS is unreachable.
                src.load_checkpoint()?;
                src.check().await?;
                src.init_checkpoint()?;
                starting.push(Starting::CloudwatchLogs(src));
            }
        }
    }
    Ok(starting)
}

enum Starting {
    Sqs(SqsSource),
    File(FileSource),
    CloudwatchLogs(CloudwatchLogsSource),
}

async fn join_all(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}
