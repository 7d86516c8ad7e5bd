//! Findings in flight from one SQS source share one bound, whatever they
//! came from: a large S3 object, a small one, or a message body. Its own
//! test binary: it reads the process-wide findings counter.

mod common;

use std::time::Duration;

use common::*;

/// Findings dispatched so far, every rule and severity.
fn findings() -> u64 {
    let text = rootwatch::telemetry::prometheus().render();
    text.lines()
        .filter(|l| l.starts_with("rootwatch_findings_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn received(source: &str) -> u64 {
    let text = rootwatch::telemetry::prometheus().render();
    metric_in(
        &text,
        "rootwatch_messages_received_total",
        &format!("source=\"{source}\""),
    ) as u64
}

/// The source has room for 10,000 events with findings in flight. A log
/// file of exactly that many fills it while the receiver holds every
/// delivery; a small object (under one 64-event chunk) and a root call in
/// a message body must then wait too, not go out around the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_objects_and_message_bodies_wait_for_room_like_large_ones() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let b = unique("room");
    aws.s3.create_bucket().bucket(&b).send().await.unwrap();
    let fill: Vec<String> = (0..10_000)
        .map(|i| root_call(&format!("fill-{i}")))
        .collect();
    aws.put_gz(
        &b,
        "AWSLogs/fill.json.gz",
        &format!(r#"{{"Records":[{}]}}"#, fill.join(",")),
    )
    .await;
    aws.put_gz(
        &b,
        "AWSLogs/small.json.gz",
        &format!(
            r#"{{"Records":[{},{}]}}"#,
            root_call("small-0"),
            root_call("small-1")
        ),
    )
    .await;
    let hook = GatedHook::start().await;
    let name = unique("room").replace('-', "_");
    let config = named(sqs_to_webhook(&queue, 30, &hook.url(), ""), &name);
    aws.send(&queue, &s3_notification(&b, "AWSLogs/fill.json.gz"))
        .await;
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(60),
        "the large object's findings dispatched",
        || async { findings() >= 10_000 },
    )
    .await;
    aws.send(&queue, &s3_notification(&b, "AWSLogs/small.json.gz"))
        .await;
    aws.send(&queue, &root_call("body")).await;
    eventually(
        Duration::from_secs(30),
        "both further messages received",
        || async { received(&name) == 3 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        findings(),
        10_000,
        "no room: nothing more goes out while the deliveries are held"
    );
    hook.open();
    eventually(
        Duration::from_secs(120),
        "every alert delivered and the queue empty",
        || async { hook.delivered().len() >= 10_003 && aws.depth(&queue).await == 0 },
    )
    .await;
    d.stop().await;
    assert_eq!(findings(), 10_003);
}
