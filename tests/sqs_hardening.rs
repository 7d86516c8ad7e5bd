//! The SQS source under hostile or awkward input, on the moto emulator:
//! slow objects in a batch, oversized objects and records, notifications
//! naming buckets it was not told to read.

mod common;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use common::*;

/// A counter's value for `source` from the process-wide /metrics text.
fn metric(name: &str, labels: &str) -> u64 {
    let text = rootwatch::telemetry::prometheus().render();
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

fn received(source: &str) -> u64 {
    metric(
        "rootwatch_messages_received_total",
        &format!("source=\"{source}\""),
    )
}

#[derive(Clone)]
struct Proxy {
    client: reqwest::Client,
    upstream: String,
    delay: Duration,
}

/// A proxy on 127.0.0.1 in front of the emulator that holds back the
/// answer to every GET whose path contains `slow` by `delay`.
async fn slow_proxy(delay: Duration) -> String {
    let state = Proxy {
        client: reqwest::Client::new(),
        upstream: endpoint(),
        delay,
    };
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn forward(
    State(p): State<Proxy>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    headers.remove(axum::http::header::HOST);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let resp = p
        .client
        .request(method.clone(), format!("{}{path}", p.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let mut out = resp.headers().clone();
    out.remove(axum::http::header::TRANSFER_ENCODING);
    out.remove(axum::http::header::CONTENT_LENGTH);
    let bytes = resp.bytes().await.unwrap();
    if method == Method::GET && uri.path().contains("slow") {
        tokio::time::sleep(p.delay).await;
    }
    (status, out, bytes)
}

fn s3_notification(bucket: &str, key: &str) -> String {
    format!(
        r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-05-01T12:00:00.000Z","eventName":"ObjectCreated:Put","s3":{{"s3SchemaVersion":"1.0","bucket":{{"name":"{bucket}","arn":"arn:aws:s3:::{bucket}"}},"object":{{"key":"{key}","size":10}}}}}}]}}"#
    )
}

async fn bucket(aws: &Aws) -> String {
    let b = unique("trail");
    aws.s3.create_bucket().bucket(&b).send().await.unwrap();
    b
}

fn named(config: String, name: &str) -> String {
    config.replace(
        "type = \"sqs\"",
        &format!("type = \"sqs\"\nname = \"{name}\""),
    )
}

/// Messages 2 to 10 of a batch wait while message 1's object is fetched:
/// their visibility must be kept extended from the moment they were
/// received, or they reappear and are received a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_object_does_not_expose_the_rest_of_its_batch() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let b = bucket(&aws).await;
    let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/slow.json.gz";
    aws.put_gz(
        &b,
        key,
        &format!(r#"{{"Records":[{}]}}"#, root_call("batch-slow")),
    )
    .await;
    aws.send(&queue, &s3_notification(&b, key)).await;
    for i in 0..9 {
        aws.send(&queue, &root_call(&format!("batch-{i}"))).await;
    }
    let proxy = slow_proxy(Duration::from_secs(6)).await;
    let hook = Webhook::ok().await;
    let name = unique("batch").replace('-', "_");
    let config = named(sqs_to_webhook(&queue, 2, &hook.url(), ""), &name);
    let d = Daemon::start(&config, &aws_at(&proxy).await).await;
    eventually(
        Duration::from_secs(40),
        "ten alerts and an empty queue",
        || async { hook.delivered().len() >= 10 && aws.depth(&queue).await == 0 },
    )
    .await;
    d.stop().await;
    assert_eq!(received(&name), 10, "a message was received twice");
    assert_eq!(hook.delivered().len(), 10);
}
