//! Outbound proxies: the SDK's clients (SQS here) and the webhook sinks go
//! through the proxy `HTTP_PROXY` names, and past it to the hosts
//! `NO_PROXY` lists, as in a VPC whose only way out is an egress proxy.
//! The daemon runs as a process with the variables set.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use common::*;

const LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct ProxyState {
    /// Host name in a request's absolute URI -> the base URL it is relayed
    /// to. A host not listed is answered 502, as a proxy that cannot
    /// reach it would.
    routes: Arc<HashMap<String, String>>,
    /// Every request line's URI, as the client sent it.
    seen: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

/// A forward HTTP proxy on 127.0.0.1: clients send it requests with
/// absolute URIs (`POST http://host/path HTTP/1.1`).
struct ForwardProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl ForwardProxy {
    async fn start(routes: &[(&str, String)]) -> ForwardProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            routes: Arc::new(
                routes
                    .iter()
                    .map(|(h, u)| ((*h).to_owned(), u.clone()))
                    .collect(),
            ),
            seen: Arc::clone(&seen),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        let (addr, stop) = serve(axum::Router::new().fallback(relay).with_state(state)).await;
        ForwardProxy { addr, seen, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn relay(
    State(p): State<ProxyState>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    p.seen.lock().unwrap().push(uri.to_string());
    let Some(base) = uri.host().and_then(|h| p.routes.get(h)) else {
        return (StatusCode::BAD_GATEWAY, "no route").into_response();
    };
    headers.remove(axum::http::header::HOST);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let resp = match p
        .client
        .request(method, format!("{base}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let mut out = resp.headers().clone();
    out.remove(axum::http::header::TRANSFER_ENCODING);
    out.remove(axum::http::header::CONTENT_LENGTH);
    let bytes = resp.bytes().await.unwrap_or_default();
    (status, out, bytes).into_response()
}

/// An SQS source feeding a webhook sink with the shipped throttle (the
/// first alert of a key goes out at once) and no admin server.
fn config(queue: &str, hook_url: &str, extra: &str) -> String {
    format!(
        "[[sources]]\ntype = \"sqs\"\nqueue_url = \"{queue}\"\nwait_time_secs = 1\n[[sinks]]\ntype = \"webhook\"\nurl = \"{hook_url}\"\n{extra}[server]\nlisten = \"\"\n"
    )
}

/// `rootwatch run` on `config` with the proxy variables given (and no
/// other proxy variable inherited), its AWS endpoint `endpoint`.
fn spawn_with_proxy(
    config: &str,
    dir: &std::path::Path,
    endpoint: &str,
    vars: &[(&str, &str)],
) -> std::process::Child {
    let path = dir.join("rootwatch.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("rootwatch.log")).unwrap();
    let mut c = rootwatch_at_emulator(&["run", "--config"]);
    c.arg(&path).env("AWS_ENDPOINT_URL", endpoint);
    for v in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
        c.env_remove(v).env_remove(v.to_lowercase());
    }
    for (k, v) in vars {
        c.env(k, v);
    }
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits until `hook` has a delivery and `queue` is empty; fails with the
/// daemon's log after [`LIMIT`].
async fn wait_delivered(aws: &Aws, queue: &str, hook: &Webhook, dir: &std::path::Path) {
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        if !hook.delivered().is_empty() && aws.depth(queue).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.join("rootwatch.log")).unwrap_or_default();
    panic!("no delivery within {LIMIT:?}; the daemon's log:\n{log}");
}

fn stop(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(wait_exit(child, LIMIT), Some(0));
}

/// Both the SQS calls and the alert reach their hosts only through the
/// proxy: the names end in `.invalid`, which never resolve, and the proxy
/// relays them to the emulator and the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_calls_and_alerts_go_through_http_proxy() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    let proxy = ForwardProxy::start(&[
        ("sqs.egress.invalid", endpoint()),
        ("alerts.egress.invalid", format!("http://{}", hook.addr)),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        &queue,
        "http://alerts.egress.invalid/hook",
        "allow_insecure_http = true\n",
    );
    let mut child = spawn_with_proxy(
        &config,
        dir.path(),
        "http://sqs.egress.invalid",
        &[("HTTP_PROXY", &proxy.url())],
    );
    aws.send(&queue, &eventbridge(&root_call("proxied-1")))
        .await;
    wait_delivered(&aws, &queue, &hook, dir.path()).await;
    stop(&mut child);

    let got = hook.delivered();
    assert_eq!(got[0]["event_id"], "proxied-1", "{got:?}");
    let seen = proxy.seen();
    assert!(
        seen.iter()
            .any(|u| u.starts_with("http://sqs.egress.invalid/")),
        "the SDK's calls went through the proxy: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|u| u == "http://alerts.egress.invalid/hook"),
        "the alert went through the proxy: {seen:?}"
    );
}

/// Hosts in `NO_PROXY` are reached directly: here the proxy refuses
/// everything, so a call that went to it would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_hosts_are_reached_directly() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    let proxy = ForwardProxy::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&queue, &hook.url(), "");
    let mut child = spawn_with_proxy(
        &config,
        dir.path(),
        &endpoint(),
        &[
            ("HTTP_PROXY", &proxy.url()),
            ("HTTPS_PROXY", &proxy.url()),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    aws.send(&queue, &eventbridge(&root_call("direct-1"))).await;
    wait_delivered(&aws, &queue, &hook, dir.path()).await;
    stop(&mut child);

    assert_eq!(hook.delivered()[0]["event_id"], "direct-1");
    assert_eq!(proxy.seen(), Vec::<String>::new());
}
