//! The SQS source when its upstreams fail, on the moto emulator behind a
//! fault-injecting proxy: the SQS endpoint down with messages in flight,
//! S3 objects not yet readable, several replicas sharing one queue.
//!
//! Duplicates: the design allows an alert to repeat only after a crash. In
//! one process the delivered-event cache drops the copy of a message that
//! comes back because its delete failed, so these tests expect every alert
//! exactly once.

mod common;

use std::time::Duration;

use common::*;

/// A root call with its own source IP, wrapped in turn as a raw record, an
/// EventBridge event and an EventBridge event inside an SNS notification.
fn message(i: usize, id: &str) -> String {
    let record = root_call(id).replace("203.0.113.9", &format!("198.51.{}.{}", i / 250, i % 250));
    match i % 3 {
        0 => record,
        1 => eventbridge_as_aws(&record),
        _ => sns_wrap(&eventbridge_as_aws(&record)),
    }
}

fn with_admin(config: String, listen: &str) -> String {
    config.replace("listen = \"\"", &format!("listen = \"{listen}\""))
}

/// The SQS endpoint answers 500 to every call (receive, delete, visibility)
/// while deliveries are pending and while they complete, then comes back.
/// Nothing is lost, nothing alerts twice, the daemon stays up, and
/// `/readyz` and `rootwatch_source_up` show the outage while it lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_outage_with_messages_in_flight_loses_nothing_and_shows_in_readyz() {
    const N: usize = 30;
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let ids: Vec<String> = (0..N).map(|i| format!("outage-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        aws.send(&queue, &message(i, id)).await;
    }
    let proxy = FaultProxy::start().await;
    let hook = GatedHook::start().await;
    let name = unique("outage").replace('-', "_");
    let config = with_admin(
        named(sqs_to_webhook(&queue, 2, &hook.url(), ""), &name),
        "127.0.0.1:0",
    );
    let (d, admin) = Daemon::with_admin(&config, Some(aws_at(&proxy.url).await), None).await;
    let source_up = || async {
        metric_in(
            &admin_get(admin, "/metrics").await.1,
            "rootwatch_source_up",
            &format!("source=\"{name}\""),
        )
    };
    eventually(
        Duration::from_secs(30),
        "every message received, deliveries held at the receiver",
        || async {
            let m = admin_get(admin, "/metrics").await.1;
            metric_in(
                &m,
                "rootwatch_messages_received_total",
                &format!("source=\"{name}\""),
            ) >= N as f64
                && hook.arrived() >= 10
        },
    )
    .await;
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
    assert_eq!(source_up().await, 1.0);

    proxy.set_sqs_down(true);
    eventually(
        Duration::from_secs(30),
        "/readyz 503 naming the source and the problem",
        || async {
            let (code, body) = admin_get(admin, "/readyz").await;
            code == 503
                && body.starts_with("degraded\n")
                && body.contains(&format!("source `{name}`"))
                && body.contains("calls to its upstream failed")
                && body.trim_end().ends_with(": server_error")
        },
    )
    .await;
    assert_eq!(source_up().await, 0.0);
    assert_eq!(admin_get(admin, "/healthz").await.0, 200, "alive");
    // Deliveries complete while SQS is down: their deletes fail.
    hook.open();
    eventually(
        Duration::from_secs(60),
        "every alert delivered during the outage",
        || async { deliveries_by_event(&hook.delivered()).len() == N },
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "deletes and visibility extensions refused by the endpoint",
        || async {
            proxy.answers("DeleteMessageBatch", 500) >= 1
                && proxy.answers("ChangeMessageVisibilityBatch", 500) >= 1
                && proxy.answers("ReceiveMessage", 500) >= 3
        },
    )
    .await;
    assert_eq!(admin_get(admin, "/readyz").await.0, 503, "still down");

    proxy.set_sqs_down(false);
    eventually(
        Duration::from_secs(60),
        "ready again after a successful receive",
        || async { admin_get(admin, "/readyz").await == (200, "ready\n".to_owned()) },
    )
    .await;
    assert_eq!(source_up().await, 1.0);
    // Messages whose delete gave up come back after their visibility
    // timeout and are deleted then, without alerting again.
    eventually(Duration::from_secs(90), "the queue empty", || async {
        aws.depth(&queue).await == 0
    })
    .await;
    let metrics = admin_get(admin, "/metrics").await.1;
    d.stop().await;
    let received = metric_in(
        &metrics,
        "rootwatch_messages_received_total",
        &format!("source=\"{name}\""),
    );
    assert!(received >= N as f64, "{received}");
    let got = deliveries_by_event(&hook.delivered());
    let want: std::collections::BTreeMap<String, usize> =
        ids.iter().map(|id| (id.clone(), 1)).collect();
    assert_eq!(
        got, want,
        "every alert exactly once ({received} receives of {N} messages)"
    );
}

/// Notifications that arrive before their object can be read: one object
/// not written yet (NoSuchKey), one that S3 refuses (AccessDenied) until
/// it is allowed. Neither message is deleted while unreadable; each alerts
/// exactly once when it can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_not_yet_readable_is_retried_not_deleted_and_alerts_once() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let b = unique("trail");
    aws.s3.create_bucket().bucket(&b).send().await.unwrap();
    let prefix = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01";
    let (later, denied) = (
        format!("{prefix}/not-yet-written.json.gz"),
        format!("{prefix}/access-denied.json.gz"),
    );
    let log = |id: &str| format!(r#"{{"Records":[{}]}}"#, root_call(id));
    aws.put_gz(&b, &denied, &log("s3-denied")).await;
    let proxy = FaultProxy::start().await;
    proxy.deny_get("access-denied");
    aws.send(&queue, &s3_notification(&b, &later)).await;
    aws.send(&queue, &s3_notification(&b, &denied)).await;
    let hook = Webhook::ok().await;
    let name = unique("unreadable").replace('-', "_");
    let config = with_admin(
        named(sqs_to_webhook(&queue, 2, &hook.url(), ""), &name),
        "127.0.0.1:0",
    );
    let (d, admin) = Daemon::with_admin(&config, Some(aws_at(&proxy.url).await), None).await;
    let metric = |text: &str, name_: &str, labels: &str| metric_in(text, name_, labels);
    eventually(
        Duration::from_secs(40),
        "each object refused at least twice (received again after the visibility timeout)",
        || async { proxy.answers("GetObject", 404) >= 2 && proxy.answers("GetObject", 403) >= 2 },
    )
    .await;
    let m = admin_get(admin, "/metrics").await.1;
    assert!(
        metric(
            &m,
            "rootwatch_messages_redrive_total",
            &format!("source=\"{name}\",reason=\"s3\"")
        ) >= 4.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "rootwatch_messages_deleted_total",
            &format!("source=\"{name}\"")
        ),
        0.0
    );
    assert_eq!(aws.depth(&queue).await, 2, "both messages kept");
    assert!(hook.requests().is_empty());

    aws.put_gz(&b, &later, &log("s3-later")).await;
    proxy.allow_get("access-denied");
    eventually(
        Duration::from_secs(40),
        "both alerts and an empty queue",
        || async { hook.delivered().len() >= 2 && aws.depth(&queue).await == 0 },
    )
    .await;
    d.stop().await;
    let got = deliveries_by_event(&hook.delivered());
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [("s3-denied".to_owned(), 1), ("s3-later".to_owned(), 1)]
    );
}

/// Three `rootwatch run` processes on one queue. The delivered-event cache
/// is per process, so it cannot stop two replicas alerting the same event:
/// what does is SQS's visibility timeout (30 s here, far longer than a
/// message takes), which hides a received message from the other replicas
/// until it is deleted. SQS itself is at-least-once (and the emulator, under
/// concurrent receives from several processes, now and then hands one
/// message to two of them), so a repeated alert is allowed only where a
/// message was received twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_a_queue_and_alert_each_event_once_per_receive() {
    const N: usize = 300;
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = with_admin(
            sqs_to_webhook(&queue, 30, &hook.url(), ""),
            &format!("127.0.0.1:{port}"),
        );
        let child = spawn_rootwatch(&config, dir.path());
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        replicas.push((child, addr, dir));
    }
    for (_, addr, _) in &replicas {
        eventually(Duration::from_secs(30), "each replica ready", || async {
            admin_get(*addr, "/readyz").await.0 == 200
        })
        .await;
    }
    let ids: Vec<String> = (0..N).map(|i| format!("replica-{i}")).collect();
    let bodies: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| message(i, id))
        .collect();
    aws.send_all(&queue, &bodies).await;
    eventually(
        Duration::from_secs(120),
        "every alert and an empty queue",
        || async {
            deliveries_by_event(&hook.delivered()).len() == N && aws.depth(&queue).await == 0
        },
    )
    .await;
    let mut received = Vec::new();
    for (_, addr, _) in &replicas {
        let m = admin_get(*addr, "/metrics").await.1;
        received.push(metric_in(
            &m,
            "rootwatch_messages_received_total",
            &format!("source=\"sqs-{}\"", queue.rsplit('/').next().unwrap()),
        ));
    }
    for (child, _, dir) in &mut replicas {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let code = wait_exit(child, Duration::from_secs(30));
        let log = std::fs::read_to_string(dir.path().join("rootwatch.log")).unwrap();
        assert_eq!(code, Some(0), "{log}");
    }
    assert!(received.iter().sum::<f64>() >= N as f64, "{received:?}");
    assert!(
        received.iter().all(|&r| r > 0.0),
        "each replica took a share: {received:?}"
    );
    let got = deliveries_by_event(&hook.delivered());
    assert_eq!(got.len(), N, "every event alerted");
    // SQS is at-least-once and the dedup cache is per process: a message
    // the queue hands to two replicas (the emulator does so now and then
    // under concurrent receives) can alert twice. Every repeated alert
    // must be explained by a repeated receive, never by rootwatch itself.
    let repeats: usize = got.values().map(|n| n - 1).sum();
    let extra_receives = received.iter().sum::<f64>() as usize - N;
    assert!(
        repeats <= extra_receives,
        "{repeats} repeated alert(s) but only {extra_receives} repeated receive(s): {:?}",
        got.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
}
