//! The `splunk_hec` sink against a receiver on 127.0.0.1 that answers as
//! Splunk's HTTP Event Collector documents (no Splunk server installs
//! here): `POST /services/collector/event` with `Authorization: Splunk
//! <token>`; 200 `{"text":"Success","code":0}`; 403 `{"text":"Invalid
//! token","code":4}`; 400 `{"text":"No data","code":5}` for a body without
//! an event; 503 `{"text":"Server is busy","code":9}` while busy.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "5a1b3c7d-2e4f-4a6b-8c9d-0e1f2a3b4c5d";

#[derive(Default)]
struct Hec {
    events: Mutex<Vec<(HeaderMap, Value)>>,
    /// Answer 503 to this many requests first.
    busy: AtomicU32,
}

async fn collector(
    axum::extract::State(hec): axum::extract::State<Arc<Hec>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    if hec.busy.load(Ordering::SeqCst) > 0 {
        hec.busy.fetch_sub(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"text": "Server is busy", "code": 9}).to_string(),
        );
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Splunk {TOKEN}") {
        return (
            StatusCode::FORBIDDEN,
            json!({"text": "Invalid token", "code": 4}).to_string(),
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            json!({"text": "Invalid data format", "code": 6}).to_string(),
        );
    };
    if v.get("event").is_none() {
        return (
            StatusCode::BAD_REQUEST,
            json!({"text": "No data", "code": 5}).to_string(),
        );
    }
    hec.events.lock().unwrap().push((headers, v));
    (
        StatusCode::OK,
        json!({"text": "Success", "code": 0}).to_string(),
    )
}

async fn hec(busy: u32) -> (Arc<Hec>, String) {
    let state = Arc::new(Hec {
        busy: AtomicU32::new(busy),
        ..Hec::default()
    });
    let app = axum::Router::new()
        .route("/services/collector/event", axum::routing::post(collector))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, format!("http://{addr}"))
}

fn sink(url: &str, token: &str) -> String {
    format!(
        "[[sinks]]\ntype = \"splunk_hec\"\nname = \"splunk\"\nurl = \"{url}\"\ntoken = \"{token}\"\nindex = \"security\"\nretry_max_secs = 30\n[server]\nlisten = \"\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_alert_from_sqs_reaches_the_collector_in_its_documented_shape() {
    // Busy twice first: retried, then delivered.
    let (hec, url) = hec(2).await;
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    aws.send(&queue, &eventbridge(&root_call("hec-1"))).await;
    let d = Daemon::start(
        &format!("{}{}", sqs_source(&queue, 30), sink(&url, TOKEN)),
        &aws.config,
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the event and an empty queue",
        || async { !hec.events.lock().unwrap().is_empty() && aws.depth(&queue).await == 0 },
    )
    .await;
    d.stop().await;
    let events = hec.events.lock().unwrap();
    assert_eq!(events.len(), 1);
    let (headers, v) = &events[0];
    assert_eq!(headers["content-type"], "application/json");
    // 2024-05-01T12:00:00Z, the record's eventTime.
    assert_eq!(v["time"], 1_714_564_800.0);
    assert_eq!(v["sourcetype"], "rootwatch:finding");
    assert_eq!(v["source"], "rootwatch");
    assert_eq!(v["index"], "security");
    assert_eq!(v["host"], "111122223333");
    assert_eq!(v["event"]["rule"], "root-api-call");
    assert_eq!(v["event"]["event_id"], "hec-1");
}

/// A wrong token is a rejection (403), reported by test-alert, and the
/// token never appears in what rootwatch prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_a_rejection_and_stays_secret() {
    let (hec, url) = hec(0).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |token: &str| {
        let (code, out, err) = test_alert(dir.path(), &sink(&url, token));
        (code, format!("{out}{err}"))
    };
    let wrong = "00000000-1111-2222-3333-444444444444";
    // The receiver runs on this runtime: the child process is waited for
    // off its worker.
    let (code, out) = tokio::task::block_in_place(|| run(wrong));
    assert_eq!(code, Some(69), "{out}");
    assert!(out.contains("splunk (splunk_hec): rejected"), "{out}");
    assert!(!out.contains(wrong), "{out}");
    let (code, out) = tokio::task::block_in_place(|| run(TOKEN));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(hec.events.lock().unwrap().len(), 1);
    assert_eq!(
        hec.events.lock().unwrap()[0].1["event"]["rule"],
        "rootwatch-test"
    );
}

#[test]
fn a_token_that_is_not_a_guid_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rootwatch.toml");
    std::fs::write(
        &path,
        sink("https://splunk.example.com:8088", "not-a-token"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rootwatch"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`sinks[0].token`: is not a Splunk HEC token"),
        "{err}"
    );
    assert!(
        !err.contains("not-a-token"),
        "the value stays out of the message: {err}"
    );
}
