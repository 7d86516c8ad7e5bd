//! `rootwatch run` against SQS and S3 in the moto emulator, alerting a real
//! HTTP receiver on 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;

fn by_event(findings: &[serde_json::Value]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in findings {
        m.entry(f["event_id"].as_str().unwrap_or("").to_owned())
            .or_default()
            .push(f["rule"].as_str().unwrap().to_owned());
    }
    m.values_mut().for_each(|v| v.sort());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_kind_alerts_once_and_is_deleted() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    aws.send(&queue, &eventbridge(&root_call("ev-eventbridge")))
        .await;
    aws.send(&queue, &sns_wrap(&eventbridge(&root_call("ev-sns"))))
        .await;
    aws.send(&queue, &root_call("ev-raw")).await;
    aws.send(
        &queue,
        &format!(
            r#"{{"Records":[{},{}]}}"#,
            root_call("ev-records-1"),
            root_call("ev-records-2")
        ),
    )
    .await;

    let config = sqs_to_webhook(
        &queue,
        30,
        &hook.url(),
        "hmac_secret = \"test-secret\"\nheaders = { \"X-Team\" = \"secops\" }",
    );
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(30),
        "five alerts and an empty queue",
        || async { hook.delivered().len() >= 5 && aws.depth(&queue).await == 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.stop().await;

    let got = by_event(&hook.delivered());
    assert_eq!(got.len(), 5, "{got:?}");
    for (id, rules) in &got {
        assert_eq!(rules, &["root-api-call"], "{id}");
    }
    for r in hook.requests() {
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["x-team"], "secops");
        let ts = r.headers["x-rootwatch-timestamp"]
            .to_str()
            .unwrap()
            .parse::<i64>()
            .unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 120);
        let want = rootwatch::sink::format::webhook::signature(b"test-secret", ts, &r.body);
        assert_eq!(r.headers["x-rootwatch-signature"].to_str().unwrap(), want);
        assert_eq!(
            r.headers["x-rootwatch-finding-id"].to_str().unwrap(),
            r.json()["finding_id"].as_str().unwrap()
        );
    }
}

fn log_file() -> String {
    let outside = root_call("s3-outside").replace("203.0.113.9", "198.51.100.200");
    let user = r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","accessKeyId":"AKIAEXAMPLEALICE","userName":"alice"},"eventTime":"2024-05-01T12:01:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.201","userAgent":"aws-cli/2.15.0","eventID":"s3-user-outside","readOnly":true,"eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#;
    format!(
        r#"{{"Records":[{},{outside},{user}]}}"#,
        root_call("s3-inside")
    )
}

async fn expect_s3_findings(hook: &Webhook) {
    let got = by_event(&hook.delivered());
    assert_eq!(got["s3-inside"], ["root-api-call"]);
    assert_eq!(
        got["s3-outside"],
        ["root-api-call", "source-ip-not-allowed"]
    );
    assert_eq!(got["s3-user-outside"], ["source-ip-not-allowed"]);
    assert_eq!(got.len(), 3, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_log_files_via_bucket_notifications_directly_and_through_sns() {
    let aws = Aws::new().await;
    let allow = "[detect.ip_allowlist]\ncidrs = [\"203.0.113.0/24\"]\n";
    // A key with a space and a `+`: S3 notifications URL-encode both.
    let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T1200Z_a b+c.json.gz";
    for through_sns in [false, true] {
        let (queue, _) = aws.queue(None).await;
        let bucket = aws.trail_bucket(&queue, through_sns).await;
        aws.put_gz(&bucket, key, &log_file()).await;
        let hook = Webhook::ok().await;
        let config = format!("{allow}{}", sqs_to_webhook(&queue, 30, &hook.url(), ""));
        let d = Daemon::start(&config, &aws.config).await;
        eventually(
            Duration::from_secs(30),
            "S3 findings and an empty queue (the s3:TestEvent included)",
            || async { hook.delivered().len() >= 4 && aws.depth(&queue).await == 0 },
        )
        .await;
        d.stop().await;
        expect_s3_findings(&hook).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_queue_and_good_ones_still_alert() {
    let aws = Aws::new().await;
    let (queue, dlq) = aws.queue(Some(2)).await;
    let dlq = dlq.unwrap();
    let missing = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-05-01T12:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","bucket":{"name":"no-such-bucket-rootwatch","arn":"arn:aws:s3:::no-such-bucket-rootwatch"},"object":{"key":"AWSLogs%2Fmissing.json.gz","size":10}}}]}"#;
    aws.send(&queue, &root_call("before-poison")).await;
    aws.send(&queue, "this is not json").await;
    aws.send(&queue, missing).await;
    aws.send(&queue, &root_call("after-poison")).await;

    let hook = Webhook::ok().await;
    let d = Daemon::start(&sqs_to_webhook(&queue, 1, &hook.url(), ""), &aws.config).await;
    eventually(
        Duration::from_secs(45),
        "both poison messages in the dead-letter queue, the main queue empty",
        || async { aws.depth(&dlq).await == 2 && aws.depth(&queue).await == 0 },
    )
    .await;
    d.stop().await;
    let got = by_event(&hook.delivered());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["after-poison", "before-poison"]
    );
    let bodies = aws.receive_bodies(&dlq).await;
    assert!(bodies.iter().any(|b| b == "this is not json"), "{bodies:?}");
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("no-such-bucket-rootwatch")),
        "{bodies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_delays_the_delete_and_the_message_stays_invisible() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    aws.send(&queue, &eventbridge(&root_call("slow-hook")))
        .await;
    let started = std::time::Instant::now();
    let hook = Webhook::start(move |_| {
        if started.elapsed() < Duration::from_secs(6) {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![("Retry-After", "1".to_owned())],
            )
        } else {
            (StatusCode::OK, vec![])
        }
    })
    .await;
    // Visibility 2 s: without extension the message would be visible again
    // three times over before the webhook recovers.
    let d = Daemon::start(&sqs_to_webhook(&queue, 2, &hook.url(), ""), &aws.config).await;
    eventually(Duration::from_secs(10), "first failed attempt", || async {
        !hook.requests().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(hook.delivered().is_empty(), "still failing");
    assert_eq!(aws.depth(&queue).await, 1, "not deleted while undelivered");
    let other = aws
        .sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(
        other.messages.unwrap_or_default().is_empty(),
        "another consumer got the message while delivery was retrying"
    );

    eventually(
        Duration::from_secs(30),
        "delivered, then deleted",
        || async { hook.delivered().len() == 1 && aws.depth(&queue).await == 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.stop().await;
    assert_eq!(hook.delivered().len(), 1, "one alert, no redelivery");
    assert!(
        hook.requests().len() >= 3,
        "it retried: {}",
        hook.requests().len()
    );
}

/// Only a delivery acknowledges: a rejected alert (a rotated Slack URL, a
/// bad PagerDuty key) leaves its message in the queue, and the redrive
/// policy moves it to the dead-letter queue, where it waits for the sink to
/// be fixed and the operator to redrive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_alert_is_not_acknowledged_and_lands_in_the_dead_letter_queue() {
    let aws = Aws::new().await;
    let (queue, dlq) = aws.queue(Some(2)).await;
    let dlq = dlq.unwrap();
    aws.send(&queue, &root_call("rejected")).await;
    let hook = Webhook::start(|_| (StatusCode::BAD_REQUEST, vec![])).await;
    let d = Daemon::start(&sqs_to_webhook(&queue, 1, &hook.url(), ""), &aws.config).await;
    eventually(
        Duration::from_secs(45),
        "the rejected message in the dead-letter queue",
        || async { aws.depth(&dlq).await == 1 && aws.depth(&queue).await == 0 },
    )
    .await;
    d.stop().await;
    let n = hook.requests().len();
    assert!(
        n == 2,
        "one rejected attempt per receive, no retry loop inside a receive: {n}"
    );
    assert!(hook.delivered().is_empty());
}

/// Two sinks, one of which refuses the alert until it is fixed: the message
/// comes back (visibility timeout) and only the refusing sink is sent the
/// alert again; the sink that took it the first time gets it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_message_alerts_only_the_sink_that_refused_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let aws = Aws::new().await;
    let (queue, dlq) = aws.queue(Some(10)).await;
    let dlq = dlq.unwrap();
    aws.send(&queue, &eventbridge(&root_call("two-sinks")))
        .await;
    let ok = Webhook::ok().await;
    let fixed = std::sync::Arc::new(AtomicBool::new(false));
    let f = std::sync::Arc::clone(&fixed);
    let flaky = Webhook::start(move |_| {
        if f.load(Ordering::SeqCst) {
            (StatusCode::OK, vec![])
        } else {
            (StatusCode::GONE, vec![])
        }
    })
    .await;
    let config = format!(
        "{}[[sinks]]\ntype = \"webhook\"\nname = \"soc-ok\"\nurl = \"{}\"\n[[sinks]]\ntype = \"slack\"\nname = \"slack-rotated\"\nurl = \"{}\"\n[server]\nlisten = \"\"\n",
        sqs_source(&queue, 1),
        ok.url(),
        flaky.url()
    );
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(30),
        "refused twice: the message came back",
        || async { flaky.requests().len() >= 2 },
    )
    .await;
    assert_eq!(ok.delivered().len(), 1, "the OK sink got it once");
    assert_eq!(aws.depth(&queue).await, 1, "not deleted while refused");
    fixed.store(true, Ordering::SeqCst);
    eventually(
        Duration::from_secs(30),
        "delivered to the fixed sink, then deleted",
        || async { flaky.delivered().len() == 1 && aws.depth(&queue).await == 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.stop().await;
    assert_eq!(ok.delivered().len(), 1, "the OK sink got it exactly once");
    assert_eq!(ok.requests().len(), 1);
    assert_eq!(flaky.delivered().len(), 1);
    assert_eq!(aws.depth(&dlq).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sources_fail_fast_with_a_clear_error() {
    let aws = Aws::new().await;
    let hook = Webhook::ok().await;
    let missing = format!("{}/111122223333/rootwatch-no-such-queue", endpoint());
    let first = settings(&sqs_to_webhook(&missing, 30, &hook.url(), ""));
    let opts = rootwatch::app::Options {
        aws: Some(aws.config.clone()),
        ..Default::default()
    };
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        rootwatch::app::run_with(first, opts, std::future::pending()),
    )
    .await
    .expect("no hang")
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("source `sqs-rootwatch-no-such-queue`: queue "),
        "{err}"
    );
    assert!(
        err.contains("rootwatch-no-such-queue") && err.contains("NonExistentQueue"),
        "{err}"
    );

    let unreachable = aws_at("http://127.0.0.1:9").await;
    let second = settings(&sqs_to_webhook(
        "http://127.0.0.1:9/111122223333/q",
        30,
        &hook.url(),
        "",
    ));
    let opts = rootwatch::app::Options {
        aws: Some(unreachable),
        ..Default::default()
    };
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        rootwatch::app::run_with(second, opts, std::future::pending()),
    )
    .await
    .expect("no hang")
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("source `sqs-q`: queue http://127.0.0.1:9/"),
        "{err}"
    );
}

/// Receive errors (the queue deleted under a running daemon) are counted
/// and backed off; the workers survive and carry on once the queue is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_receive_errors_and_resume() {
    let aws = Aws::new().await;
    let name = unique("flaky");
    let queue = aws
        .sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let hook = Webhook::ok().await;
    let config = sqs_to_webhook(&queue, 30, &hook.url(), "")
        .replace("type = \"sqs\"", "type = \"sqs\"\nname = \"flaky-queue\"");
    let d = Daemon::start(&config, &aws.config).await;
    aws.send(&queue, &root_call("before-outage")).await;
    eventually(Duration::from_secs(20), "the first alert", || async {
        hook.delivered().len() == 1
    })
    .await;

    aws.sqs
        .delete_queue()
        .queue_url(&queue)
        .send()
        .await
        .unwrap();
    let errors = || {
        let text = rootwatch::telemetry::prometheus().render();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(
                    r#"rootwatch_source_errors_total{source="flaky-queue",kind="receive"} "#,
                )
            })
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    eventually(
        Duration::from_secs(20),
        "receive errors counted",
        || async { errors() >= 2 },
    )
    .await;

    let again = aws
        .sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    assert_eq!(again, queue, "a queue of the same name has the same URL");
    aws.send(&queue, &root_call("after-outage")).await;
    eventually(
        Duration::from_secs(90),
        "an alert after the queue came back",
        || async { hook.delivered().len() == 2 },
    )
    .await;
    d.stop().await;
    let got = by_event(&hook.delivered());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["after-outage", "before-outage"]
    );
}
