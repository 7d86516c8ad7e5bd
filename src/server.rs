//! The admin HTTP server: `/metrics` (Prometheus text), `/healthz` (the
//! process answers), `/readyz` (config loaded, every source started and
//! reaching its upstream, not draining). It runs on its own task, so it
//! answers while the pipeline is saturated.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::source::health::SourceHealth;

/// Readiness as the orchestrator sees it: the daemon's own state, and
/// whether its sources reach their upstreams. A degraded source makes the
/// daemon not ready without restarting anything (that is liveness's job,
/// and `/healthz` stays 200): the orchestrator sees the outage, the
/// workers keep retrying, and readiness returns with the first successful
/// receive.
#[derive(Debug, Default)]
pub struct Readiness {
    state: AtomicU8,
    health: Arc<SourceHealth>,
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;
const FAILED: u8 = 3;

impl Readiness {
    /// Where sources report whether they reach their upstream.
    pub fn health(&self) -> Arc<SourceHealth> {
        Arc::clone(&self.health)
    }
    pub fn set_ready(&self) {
        let _ = self
            .state
            .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
    }
    /// Draining, unless a task already failed (that stays visible).
    pub fn set_draining(&self) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s != FAILED).then_some(DRAINING)
            });
    }
    /// A task the daemon needs died: not ready, for good.
    pub fn set_failed(&self) {
        self.state.store(FAILED, Ordering::Release);
    }
    /// `degraded` when running but a source cannot reach its upstream;
    /// starting, draining and failed say more and come first.
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            STARTING => "starting",
            READY if self.health.is_degraded() => "degraded",
            READY => "ready",
            DRAINING => "draining",
            _ => "failed",
        }
    }
}

pub fn router(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn readyz(State(r): State<Arc<Readiness>>) -> impl IntoResponse {
    let state = r.state();
    let code = if state == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = format!("{state}\n");
    if state == "degraded" {
        for problem in r.health.problems(std::time::Instant::now()) {
            body.push_str(&problem);
            body.push('\n');
        }
    }
    (code, body)
}

async fn metrics() -> impl IntoResponse {
    let handle = crate::telemetry::prometheus();
    crate::telemetry::collect_process();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

/// Binds the admin server; serving starts when the returned future runs.
pub async fn bind(
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let serve = async move {
        let r = axum::serve(listener, router(readiness))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "admin server failed");
        }
    };
    Ok((local, serve))
}
