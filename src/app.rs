//! Wiring for `rootwatch run`: admin server, pipeline, sinks, sources and
//! the shutdown sequence. `run` takes its shutdown future so tests drive
//! the whole daemon in-process.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinSet};
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

/// On SIGHUP, reads the config file again and puts its `[detect]` settings
/// (Sigma rule files included) in place as a whole. Inputs being scanned
/// keep the rules they started with, and nothing in flight is dropped. A
/// file that does not load keeps the running rules and is reported
/// (`rootwatch_rule_reloads_total{result="failed"}`). Other sections need a
/// restart; correlation windows start empty.
async fn reload_rules(path: std::path::PathBuf, pipeline: Arc<Pipeline>, stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: rules reload only with a restart");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            let p = path.clone();
            let loaded = tokio::task::spawn_blocking(move || crate::config::load(&p)).await;
            match loaded {
                Ok(Ok((_, mut settings))) => {
                    // The running refresh task fills the directory it was
                    // started with: a reload keeps using it.
                    let old = pipeline.detector();
                    if let (Some((_, running)), Some(_)) = (
                        &old.enrichment().organizations,
                        &settings.detect.enrichment.organizations,
                    ) {
                        let e = Arc::make_mut(&mut settings.detect.enrichment);
                        if let Some((_, dir)) = &mut e.organizations {
                            *dir = Arc::clone(running);
                        }
                    }
                    let detector = crate::detect::Detector::new(settings.detect);
                    let sigma = detector.sigma().map_or(0, |s| s.len());
                    pipeline.replace_detector(detector);
                    telemetry::rules_reloaded(true);
                    tracing::info!(config = %path.display(), sigma_rules = sigma, "SIGHUP: rules reloaded");
                }
                Ok(Err(e)) => {
                    telemetry::rules_reloaded(false);
                    tracing::error!(config = %path.display(), error = %e, "SIGHUP: rules not reloaded; the running rules stay");
                }
                Err(e) => {
                    telemetry::rules_reloaded(false);
                    tracing::error!(config = %path.display(), error = %e, "SIGHUP: rules not reloaded; the running rules stay");
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, pipeline);
        stop.cancelled().await;
    }
}

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
    Checkpoint(#[from] crate::source::cloudwatch_logs::checkpoint::CheckpointError),
    /// A source task panicked: the daemon drained the others and stops, so
    /// the orchestrator restarts it rather than leave a source unwatched.
    #[error("source `{name}` stopped unexpectedly: {error}")]
    TaskFailed { name: String, error: String },
}

/// What tests and embedders can pass in.
#[derive(Default)]
pub struct Options {
    /// AWS configuration; loaded from the standard chain when absent.
    pub aws: Option<aws_config::SdkConfig>,
    /// Told the admin server's address once it listens.
    pub admin_bound: Option<oneshot::Sender<SocketAddr>>,
    pub readiness: Option<Arc<Readiness>>,
    /// The config file, read again for its rules on SIGHUP.
    pub config_path: Option<std::path::PathBuf>,
}

pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    run_with(settings, Options::default(), shutdown).await
}

pub async fn run_with(
    settings: Settings,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // A daemon that only audits posture needs no event source.
    if settings.sources.is_empty() && !settings.audit.enabled {
        return Err(RunError::NoSources);
    }
    if settings.sinks.is_empty() {
        return Err(RunError::NoSinks);
    }
    let sources: Vec<&str> = settings.sources.iter().map(|s| s.name()).collect();
    let sinks: Vec<&str> = settings.sinks.iter().map(|s| s.name.as_str()).collect();
    telemetry::register(&sources, &sinks, &crate::detect::rule_ids());
    if settings.audit.enabled {
        let accounts: Vec<(&str, &str)> = settings
            .audit
            .accounts
            .iter()
            .map(|a| (a.name.as_str(), a.account_id.as_str()))
            .collect();
        telemetry::register_audit(&accounts, &crate::audit::RULE_IDS);
    }
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
    let result = run_sources(&settings, opts.aws, opts.config_path, &readiness, shutdown).await;
    server_stop.cancel();
    result
}

async fn run_sources(
    settings: &Settings,
    aws: Option<aws_config::SdkConfig>,
    config_path: Option<std::path::PathBuf>,
    readiness: &Readiness,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let abort = CancellationToken::new();
    let needs_aws = settings.audit.enabled
        || settings.sources.iter().any(|s| {
            matches!(
                s,
                SourceSettings::Sqs(_) | SourceSettings::CloudwatchLogs(_)
            )
        })
        || settings.sinks.iter().any(|s| s.kind.uses_aws())
        || settings.detect.enrichment.organizations.is_some();
    let aws = match (aws, needs_aws) {
        (Some(c), _) => Some(c),
        (None, true) => Some(crate::aws::load_defaults().await),
        (None, false) => None,
    };
    let pipeline = Arc::new(Pipeline::with_aws(settings, abort.clone(), aws.as_ref()));

    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    // A signal while sources are still starting (a slow AWS endpoint) ends
    // the start: nothing has been received yet, so nothing is in flight.
    let starting = tokio::select! {
        s = start_sources(settings, aws.as_ref(), &pipeline, readiness) => s?,
        _ = &mut shutdown => {
            tracing::info!("stopped before every source had started");
            return Ok(());
        }
    };
    let throttle = tokio::spawn(Arc::clone(&pipeline).run_throttle(stop.clone()));
    if let (Some((org, dir)), Some(aws)) = (&settings.detect.enrichment.organizations, &aws) {
        // In the background: alerts never wait for Organizations.
        tokio::spawn(crate::enrich::organizations::run(
            org.clone(),
            aws.clone(),
            Arc::clone(dir),
            stop.clone(),
        ));
    }
    if let Some(path) = config_path {
        tokio::spawn(reload_rules(path, Arc::clone(&pipeline), stop.clone()));
    }
    let mut names = HashMap::new();
    for (s, name) in starting
        .into_iter()
        .zip(settings.sources.iter().map(|s| s.name()))
    {
        let stop = stop.clone();
        let handle = match s {
            Starting::Sqs(src) => tasks.spawn(src.run(stop)),
            Starting::File(src) => tasks.spawn(src.run(stop)),
            Starting::CloudwatchLogs(src) => tasks.spawn(src.run(stop)),
        };
        names.insert(handle.id(), name.to_owned());
    }
    let audit = settings.audit.enabled.then(|| {
        tokio::spawn(crate::audit::runner::run_schedule(
            settings.audit.clone(),
            aws.clone().expect("loaded for the audit"),
            Arc::clone(&pipeline),
            stop.clone(),
        ))
    });
    readiness.set_ready();
    tracing::info!(
        sources = settings.sources.len(),
        sinks = settings.sinks.len(),
        "rootwatch running"
    );

    // A source task that dies (a panic) is noticed at once: not ready any
    // more, the others drain, and the process exits non-zero so the
    // orchestrator restarts it. Its unacknowledged input comes back.
    let failed = tokio::select! {
        _ = &mut shutdown => None,
        f = first_failure(&mut tasks, &names) => Some(f),
    };
    match &failed {
        Some(_) => readiness.set_failed(),
        None => readiness.set_draining(),
    }
    stop.cancel();
    tracing::info!(
        grace_secs = settings.shutdown_grace.as_secs(),
        "draining: finishing deliveries and acknowledgements"
    );
    if let Err(e) = throttle.await {
        telemetry::task_failed("throttle", "throttle", &e);
    }
    if let Some(Err(e)) = match audit {
        Some(a) => Some(a.await),
        None => None,
    } {
        telemetry::task_failed("audit", "audit", &e);
    }
    let finished = tokio::time::timeout(settings.shutdown_grace, async {
        join_all(&mut tasks, &names).await;
        // Deliveries no input waits for (a throttle summary whose window
        // held no input) finish within the grace period too.
        pipeline.deliveries_finished().await;
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            deliveries = pipeline.deliveries_in_progress(),
            "grace period over: cancelling deliveries; their input stays unacknowledged"
        );
        abort.cancel();
        if tokio::time::timeout(HAND_BACK, join_all(&mut tasks, &names))
            .await
            .is_err()
        {
            tracing::warn!(
                "sources did not finish handing back their input; exiting anyway (nothing unacknowledged is lost)"
            );
        }
    }
    tracing::info!("stopped");
    match failed {
        Some((name, error)) => Err(RunError::TaskFailed { name, error }),
        None => Ok(()),
    }
}

/// Waits for the first source task that ends by panicking (or being
/// cancelled), logging and counting it; returns its name and error. A
/// source that simply finished (a file source read once) is not a failure.
/// Never returns while every task ends well.
async fn first_failure(
    tasks: &mut JoinSet<()>,
    names: &HashMap<tokio::task::Id, String>,
) -> (String, String) {
    while let Some(r) = tasks.join_next_with_id().await {
        if let Err(e) = r {
            return report(&e, names);
        }
    }
    std::future::pending().await
}

fn report(e: &JoinError, names: &HashMap<tokio::task::Id, String>) -> (String, String) {
    let name = names.get(&e.id()).cloned().unwrap_or_default();
    let error = if e.is_panic() {
        "panicked".to_owned()
    } else {
        "cancelled".to_owned()
    };
    telemetry::task_failed("source", &name, &error);
    (name, error)
}

/// Builds and checks every source, in order, before any of them runs.
async fn start_sources(
    settings: &Settings,
    aws: Option<&aws_config::SdkConfig>,
    pipeline: &Arc<Pipeline>,
    readiness: &Readiness,
) -> Result<Vec<Starting>, RunError> {
    let mut starting = Vec::new();
    for source in &settings.sources {
        match source {
            SourceSettings::Sqs(s) => {
                let aws = crate::aws::sdk_config(aws.expect("loaded for SQS"), &s.aws).await;
                let src = SqsSource::new(s.clone(), &aws, Arc::clone(pipeline))
                    .with_health(readiness.health());
                src.check().await?;
                starting.push(Starting::Sqs(src));
            }
            SourceSettings::File(s) => starting.push(Starting::File(FileSource::new(
                s.clone(),
                Arc::clone(pipeline),
            ))),
            SourceSettings::CloudwatchLogs(s) => {
                let base = aws.expect("loaded for CloudWatch Logs");
                let own = crate::aws::sdk_config(base, &s.aws).await;
                let mut src = CloudwatchLogsSource::new(
                    s.clone(),
                    &settings.detect,
                    &own,
                    base,
                    Arc::clone(pipeline),
                )
                .with_health(readiness.health());
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

async fn join_all(tasks: &mut JoinSet<()>, names: &HashMap<tokio::task::Id, String>) {
    while let Some(r) = tasks.join_next_with_id().await {
        if let Err(e) = r {
            report(&e, names);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_source_task_is_reported_by_name() {
        telemetry::prometheus();
        let mut tasks = JoinSet::new();
        let mut names = HashMap::new();
        let quiet = tasks.spawn(async {});
        names.insert(quiet.id(), "file-0".to_owned());
        let bad = tasks.spawn(async {
            tokio::task::yield_now().await;
            panic!("a source bug");
        });
        names.insert(bad.id(), "sqs-1".to_owned());
        let (name, error) = first_failure(&mut tasks, &names).await;
        assert_eq!((name.as_str(), error.as_str()), ("sqs-1", "panicked"));
        let text = telemetry::prometheus().render();
        assert!(
            text.contains(r#"rootwatch_task_failures_total{task="source"} 1"#),
            "{text}"
        );
        // Tasks that end well never count as a failure.
        let mut fine = JoinSet::new();
        fine.spawn(async {});
        let r = tokio::time::timeout(
            Duration::from_millis(200),
            first_failure(&mut fine, &HashMap::new()),
        )
        .await;
        assert!(r.is_err(), "no failure to report");
    }
}
