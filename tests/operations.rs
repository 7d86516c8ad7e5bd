//! Running it in production: the admin server (/metrics, /healthz, /readyz)
//! and what must never reach logs or metrics.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use rootwatch::server::Readiness;

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Checks Prometheus text exposition: every sample line is `name{labels} value`
/// with a TYPE declared for its family; returns the sample names.
fn parse_exposition(text: &str) -> BTreeSet<String> {
    let mut typed = BTreeSet::new();
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "{line}");
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "{line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let labels = &series[name.len()..];
        assert!(
            labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.contains(*f))
            .unwrap_or(name);
        assert!(typed.contains(family), "no TYPE for {name}");
        names.insert(name.to_owned());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_every_name_the_dashboard_and_alerts_use() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("e.jsonl"),
        format!("{}\n", root_call("metrics-1")),
    )
    .unwrap();
    let hook = Webhook::ok().await;
    // A CloudWatch Logs source too, so its checkpoint-age gauge exists.
    let aws = Aws::new().await;
    let group = unique("metrics-group");
    aws_sdk_cloudwatchlogs::Client::new(&aws.config)
        .create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    let config = format!(
        "[[sources]]\ntype = \"file\"\nname = \"metrics-files\"\npaths = [\"{dir}\"]\n[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"{group}\"]\npoll_interval_secs = 1\ncheckpoint_path = \"{dir}/cwl.json\"\n[[sinks]]\ntype = \"webhook\"\nname = \"metrics-hook\"\nurl = \"{hook}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[audit]\nenabled = true\naccounts = [{{ name = \"metrics\", role_arn = \"arn:aws:iam::000000004242:role/audit\" }}]\n",
        dir = dir.path().display(),
        hook = hook.url()
    );
    let (d, addr) = Daemon::with_admin(&config, Some(aws.config.clone()), None).await;
    eventually(Duration::from_secs(10), "the alert", || async {
        hook.delivered().len() == 1
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "a CloudWatch Logs poll",
        || async {
            get(addr, "/metrics")
                .await
                .1
                .contains("rootwatch_cloudwatch_checkpoint_age_seconds{")
        },
    )
    .await;
    let (code, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    let exported = parse_exposition(&text);
    let used = include_str!("../deploy/metric-names.txt");
    let missing: Vec<&str> = used
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !exported.contains(*l))
        .collect();
    assert!(
        missing.is_empty(),
        "used by deploy/ but not exported: {missing:?}\n{text}"
    );
    // The process_* series, read from /proc at the scrape.
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series}: {text}"))
    };
    assert!(value("process_resident_memory_bytes ") > 1e6, "{text}");
    assert!(value("process_open_fds ") >= 3.0, "{text}");
    let started = value("process_start_time_seconds ");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(started <= now && now - started < 3600.0, "{started} {now}");
    for name in rootwatch::telemetry::ALL {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help text"
        );
        assert!(
            exported.iter().any(|e| e.starts_with(name)),
            "{name} not exported"
        );
    }
    assert!(
        text.contains(r#"rootwatch_alerts_delivered_total{sink="metrics-hook"} 1"#),
        "{text}"
    );
    // Other tests in this process count findings too: at least ours.
    let findings = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"rootwatch_findings_total{rule="root-api-call",severity="medium"} "#)
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert!(findings.is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        text.contains(&format!(
            r#"rootwatch_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_starting_and_draining_and_200_in_between() {
    // Starting: an SQS endpoint that accepts connections and never answers
    // keeps the source check (and so readiness) pending.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole = blackhole.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = blackhole.accept().await {
            conns.push(c);
        }
    });
    let config = format!(
        "{}[[sinks]]\ntype = \"stdout\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
        sqs_source(&format!("http://{hole}/111122223333/q"), 30)
    );
    let (d, addr) =
        Daemon::with_admin(&config, Some(aws_at(&format!("http://{hole}")).await), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(addr, "/readyz").await, (503, "starting\n".to_owned()));
    assert_eq!(get(addr, "/healthz").await.0, 200);
    // A signal during a start that hangs ends it at once, cleanly.
    d.stop_within(Duration::from_secs(5)).await;
    held.abort();

    // Running, then draining while a delivery is still retrying.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("e.jsonl"),
        format!("{}\n", root_call("drain-1")),
    )
    .unwrap();
    let hook = Webhook::start(|_| (StatusCode::SERVICE_UNAVAILABLE, vec![])).await;
    let config = format!(
        "[[sources]]\ntype = \"file\"\npaths = [\"{}\"]\n[[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[shutdown]\ngrace_secs = 3\n",
        dir.path().display(),
        hook.url()
    );
    let readiness = Arc::new(Readiness::default());
    let (mut d, addr) = Daemon::with_admin(&config, None, Some(Arc::clone(&readiness))).await;
    eventually(Duration::from_secs(10), "ready", || async {
        get(addr, "/readyz").await.0 == 200
    })
    .await;
    eventually(Duration::from_secs(10), "a failing delivery", || async {
        !hook.requests().is_empty()
    })
    .await;
    d.signal();
    eventually(Duration::from_secs(2), "draining", || async {
        readiness.state() == "draining"
    })
    .await;
    assert_eq!(get(addr, "/readyz").await, (503, "draining\n".to_owned()));
    assert_eq!(get(addr, "/healthz").await.0, 200, "alive while draining");
    d.stop_within(Duration::from_secs(15)).await;
}

/// A receiver that echoes the request back in its error page, as many web
/// servers do (`Cannot POST /path?query` and the headers): 503 for the
/// first two requests, then 404. Records the headers it was sent.
async fn echoing_receiver() -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<axum::http::HeaderMap>>>,
) {
    use axum::http::{HeaderMap, Uri};
    let seen: Arc<std::sync::Mutex<Vec<HeaderMap>>> = Arc::default();
    let s = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let s = Arc::clone(&s);
        async move {
            let mut page = format!("Cannot POST {uri}\n");
            for (k, v) in &headers {
                page.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
            }
            let n = {
                let mut seen = s.lock().unwrap();
                seen.push(headers);
                seen.len()
            };
            let status = if n <= 2 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::NOT_FOUND
            };
            (status, page)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// The binary at debug level, with every kind of sink secret, against a
/// receiver that echoes them all back in its error pages: none reaches the
/// log or /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("e.jsonl"),
        format!("{}\n", root_call("secret-1")),
    )
    .unwrap();
    let (echo, seen) = echoing_receiver().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secrets = [
        ("RW_PATH_TOKEN", "pathtoken9f8e7d6c5b4a"),
        ("RW_QUERY_TOKEN", "querytoken3c4d5e6f7a8b"),
        ("RW_HMAC", "hmacsecret1a2b3c4d5e6f"),
        ("RW_BEARER", "bearertoken0a9b8c7d6e5f"),
        ("RW_HEADER", "headersecret5f4e3d2c1b"),
        ("RW_SLACK_TOKEN", "slacktoken7a6b5c4d3e2f"),
        ("RW_PD_KEY", "pdkey0123456789abcdef0123456789a"),
    ];
    let config = format!(
        r#"[[sources]]
type = "file"
paths = ["{dir}"]
[[sinks]]
type = "webhook"
url = "http://{echo}/hooks/${{RW_PATH_TOKEN}}?token=${{RW_QUERY_TOKEN}}"
hmac_secret = "${{RW_HMAC}}"
bearer_token = "${{RW_BEARER}}"
headers = {{ "X-Api-Key" = "${{RW_HEADER}}" }}
retry_max_secs = 2
[[sinks]]
type = "slack"
url = "http://127.0.0.1:{refused}/services/T0/B0/${{RW_SLACK_TOKEN}}"
retry_max_secs = 2
[[sinks]]
type = "pagerduty"
url = "http://127.0.0.1:{refused}/v2/enqueue"
routing_key = "${{RW_PD_KEY}}"
retry_max_secs = 2
[server]
listen = "127.0.0.1:{port}"
[shutdown]
grace_secs = 2
"#,
        dir = dir.path().display(),
    );
    let path = dir.path().join("rootwatch.toml");
    std::fs::write(&path, config).unwrap();
    let log_path = dir.path().join("log.txt");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rootwatch"))
        .args(["run", "--config"])
        .arg(&path)
        .envs(secrets)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(
        Duration::from_secs(20),
        "deliveries tried, retried and rejected",
        || async {
            // The daemon may not listen yet: not an answer, so try again.
            let Ok(r) = reqwest::get(format!("http://{addr}/metrics")).await else {
                return false;
            };
            let m = r.text().await.unwrap_or_default();
            m.contains(
                r#"rootwatch_alerts_failed_total{sink="webhook-127.0.0.1",reason="rejected"} 1"#,
            ) && m.contains(
                r#"rootwatch_alerts_failed_total{sink="slack-127.0.0.1",reason="deadline"} 1"#,
            ) && m.contains(
                r#"rootwatch_alerts_failed_total{sink="pagerduty-127.0.0.1",reason="deadline"} 1"#,
            )
        },
    )
    .await;
    let metrics = get(addr, "/metrics").await.1;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let logs = std::fs::read_to_string(&log_path).unwrap();
    // The echoed pages were logged (scrubbed): the test would prove
    // nothing otherwise.
    assert!(
        logs.contains("delivery failed; retrying")
            && logs.contains("alert not delivered")
            && logs.contains("HTTP 404: Cannot POST ")
            && logs.contains("x-api-key: <redacted>"),
        "{logs}"
    );
    for (_, secret) in secrets {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
    // The receiver did get them, and echoed them back.
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "{}", seen.len());
    assert_eq!(seen[0]["x-api-key"], "headersecret5f4e3d2c1b");
    assert_eq!(seen[0]["authorization"], "Bearer bearertoken0a9b8c7d6e5f");
    assert!(seen[0].contains_key("x-rootwatch-signature"));
}

/// The admin server answers while every delivery slot is taken by a
/// receiver that does not answer, and thousands of alerts wait behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_server_answers_while_the_pipeline_is_saturated() {
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_addr = stalled.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let holder = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = stalled.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            conns.push(c);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for i in 0..2000 {
        lines.push_str(
            &root_call(&format!("saturate-{i}"))
                .replace("203.0.113.9", &format!("198.51.{}.{}", i / 250, i % 250)),
        );
        lines.push('\n');
    }
    std::fs::write(dir.path().join("burst.jsonl"), lines).unwrap();
    let config = format!(
        "[[sources]]\ntype = \"file\"\npaths = [\"{}\"]\n[[sinks]]\ntype = \"webhook\"\nurl = \"http://{stalled_addr}/hook\"\ntimeout_secs = 300\n[throttle]\nwindow_secs = 0\n[server]\nlisten = \"127.0.0.1:0\"\n[shutdown]\ngrace_secs = 1\n",
        dir.path().display()
    );
    let (d, addr) = Daemon::with_admin(&config, None, None).await;
    eventually(
        Duration::from_secs(20),
        "every delivery slot stuck on the stalled receiver",
        || async { accepted.load(std::sync::atomic::Ordering::SeqCst) >= 16 },
    )
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..5 {
        for path in ["/healthz", "/readyz", "/metrics"] {
            let r = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .expect("the admin server answers");
            assert_eq!(r.status(), 200, "{path}");
        }
    }
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("rootwatch_alerts_delivered_total{sink=\"webhook-127.0.0.1\"} 0"),
        "nothing got through"
    );
    d.stop_within(Duration::from_secs(20)).await;
    holder.abort();
}
