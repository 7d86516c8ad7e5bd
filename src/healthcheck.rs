//! `rootwatch healthcheck`: asks a running daemon's `/readyz` whether it is
//! ready, for orchestrators whose image has no shell and no curl (ECS
//! `healthCheck` in the distroless image).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The admin server's default address (`[server] listen = "0.0.0.0:9102"`),
/// seen from inside the same container.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9102/readyz";

/// Long enough for a busy daemon on a shared CPU, short enough to answer
/// well inside an orchestrator's own health-check timeout.
pub const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{url}: answered {status}, not 200")]
    Status { url: String, status: u16 },
    #[error("{url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The `/readyz` URL of an admin server listening on `listen`: a wildcard
/// address is reached through the loopback of the same family.
pub fn readyz_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, listen.port()))
}

/// What a passing check saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Healthy {
    /// `/readyz` answered 200.
    Ready,
    /// `/readyz` answered 503 `degraded` (a source cannot reach its upstream
    /// and keeps retrying), accepted with `allow_degraded`; the problem
    /// lines the daemon gave.
    Degraded(Vec<String>),
}

/// One GET of `url` within `timeout` (connect included). `Ok` for a 200,
/// and with `allow_degraded` also for a 503 whose body says `degraded`:
/// replacing a task does not bring back a queue it cannot reach, so an
/// orchestrator that only knows "healthy or replace" (ECS) should wait an
/// upstream outage out. `starting`, `draining` and `failed` never pass.
pub fn check(url: &str, timeout: Duration, allow_degraded: bool) -> Result<Healthy, HealthError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HealthError::Runtime)?;
    runtime.block_on(async {
        let request = |source| HealthError::Request {
            url: url.to_owned(),
            source,
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect is not an answer from this daemon.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(request)?;
        let response = client.get(url).send().await.map_err(request)?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(Healthy::Ready);
        }
        let refused = HealthError::Status {
            url: url.to_owned(),
            status,
        };
        if !(allow_degraded && status == 503) {
            return Err(refused);
        }
        // The body is a few short lines; an unreadable one is not degraded.
        let Ok(body) = response.text().await else {
            return Err(refused);
        };
        let mut lines = body.lines();
        match lines.next() {
            Some("degraded") => Ok(Healthy::Degraded(lines.map(str::to_owned).collect())),
            _ => Err(refused),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_is_reached_through_loopback() {
        assert_eq!(
            readyz_url("0.0.0.0:9102".parse().unwrap()),
            "http://127.0.0.1:9102/readyz"
        );
        assert_eq!(
            readyz_url("[::]:9200".parse().unwrap()),
            "http://[::1]:9200/readyz"
        );
        assert_eq!(
            readyz_url("10.0.0.5:9102".parse().unwrap()),
            "http://10.0.0.5:9102/readyz"
        );
    }
}
