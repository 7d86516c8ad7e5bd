//! The SNS and EventBridge sinks against the moto emulator (delivery proved
//! by what reached an SQS queue subscribed to the topic, or targeted by a
//! rule on the bus) and against a PutEvents server on 127.0.0.1 that fails
//! entries on purpose.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use rootwatch::sink::retry::{DeliveryError, Policy, send_with_retry};
use rootwatch::sink::{SendError, Sink};
use tokio_util::sync::CancellationToken;

fn sink_settings(sink_toml: &str) -> rootwatch::config::SinkSettings {
    settings(&format!("[[sinks]]\n{sink_toml}\n"))
        .sinks
        .remove(0)
}

fn build(sink_toml: &str, aws: &aws_config::SdkConfig) -> Box<dyn Sink> {
    rootwatch::sink::build_with(
        &sink_settings(sink_toml),
        &rootwatch::sink::http_client(),
        Some(aws),
    )
}

/// One delivery of the finding of `event_id` through `sink`'s retry loop.
async fn deliver(sink: &dyn Sink, event_id: &str, policy: &Policy) -> Result<u32, DeliveryError> {
    send_with_retry(
        sink,
        &root_call_finding(&root_call(event_id)),
        policy,
        &CancellationToken::new(),
        |_, _, _| {},
    )
    .await
}

/// A topic whose messages land raw (the message itself, attributes as SQS
/// message attributes) in a new queue.
async fn topic_into_queue(aws: &Aws) -> (String, String) {
    let topic = aws
        .sns
        .create_topic()
        .name(unique("alerts"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let (queue, _) = aws.queue(None).await;
    aws.sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(aws.queue_arn(&queue).await)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    (topic, queue)
}

/// Waits for one message in `queue` and returns its body and String
/// attributes.
async fn one_message(aws: &Aws, queue: &str) -> (String, Vec<(String, String)>) {
    for _ in 0..60 {
        let out = aws
            .sqs
            .receive_message()
            .queue_url(queue)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if let Some(m) = out.messages().first() {
            let mut attrs: Vec<(String, String)> = m
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
                .collect();
            attrs.sort();
            return (m.body().unwrap().to_owned(), attrs);
        }
    }
    panic!("nothing arrived in {queue}");
}

/// An SQS input queue feeding the daemon, with an SNS sink per format:
/// each topic's queue gets the alert, its attributes filterable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_delivers_the_finding_and_its_ocsf_form_with_filterable_attributes() {
    let aws = Aws::new().await;
    let (input, _) = aws.queue(None).await;
    let (json_topic, json_queue) = topic_into_queue(&aws).await;
    let (ocsf_topic, ocsf_queue) = topic_into_queue(&aws).await;
    let toml = format!(
        "{}[[sinks]]\ntype = \"sns\"\ntopic_arn = \"{json_topic}\"\nretry_max_secs = 30\n[[sinks]]\ntype = \"sns\"\ntopic_arn = \"{ocsf_topic}\"\nformat = \"ocsf\"\nregion = \"us-east-1\"\nretry_max_secs = 30\n[server]\nlisten = \"\"\n",
        sqs_source(&input, 5)
    );
    let d = Daemon::start(&toml, &aws.config).await;
    aws.send(&input, &eventbridge(&root_call("sns-1"))).await;
    let want_attrs = vec![
        ("account_id".to_owned(), "111122223333".to_owned()),
        ("rule".to_owned(), "root-api-call".to_owned()),
        ("severity".to_owned(), "medium".to_owned()),
    ];
    let (body, attrs) = one_message(&aws, &json_queue).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event_id"], "sns-1");
    assert_eq!(v["rule"], "root-api-call");
    assert_eq!(attrs, want_attrs);
    let (body, attrs) = one_message(&aws, &ocsf_queue).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["class_uid"], 2004);
    assert_eq!(v["unmapped"]["event_id"], "sns-1");
    assert_eq!(attrs, want_attrs);
    eventually(
        Duration::from_secs(30),
        "the input acknowledged",
        || async { aws.depth(&input).await == 0 },
    )
    .await;
    d.stop().await;
}

/// A record far over 256 KiB of escaping-heavy attacker text is published
/// cut under the limit, its marker saying so, the JSON intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_hostile_event_is_published_cut_under_the_limit() {
    let aws = Aws::new().await;
    let (topic, queue) = topic_into_queue(&aws).await;
    let mut rec: serde_json::Value = serde_json::from_str(&root_call("huge-1")).unwrap();
    rec["userAgent"] = "\"<!channel>\u{1}\u{202e}\\".repeat(60_000).into();
    let raw = rec.to_string();
    assert!(raw.len() > 600_000);
    let sink = build(
        &format!("type = \"sns\"\ntopic_arn = \"{topic}\""),
        &aws.config,
    );
    sink.send(&root_call_finding(&raw)).await.unwrap();
    let (body, _) = one_message(&aws, &queue).await;
    assert!(body.len() <= 256 * 1024, "{}", body.len());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event"]["rootwatch_truncated"], true);
    assert_eq!(v["event"]["original_bytes"], raw.len());
    assert_eq!(v["event_id"], "huge-1");
}

/// A topic that does not exist is a rejection: the input is not
/// acknowledged, and the queue's redrive policy moves it to its DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_a_rejection_and_the_input_goes_to_the_dead_letter_queue() {
    let aws = Aws::new().await;
    let missing = format!("arn:aws:sns:us-east-1:123456789012:{}", unique("gone"));
    let sink = build(
        &format!("type = \"sns\"\ntopic_arn = \"{missing}\""),
        &aws.config,
    );
    let err = sink
        .send(&root_call_finding(&root_call("gone-0")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SendError::Permanent { .. }),
        "a missing topic is permanent: {err:?}"
    );
    let (input, dlq) = aws.queue(Some(2)).await;
    let dlq = dlq.unwrap();
    let toml = format!(
        "{}[[sinks]]\ntype = \"sns\"\ntopic_arn = \"{missing}\"\nretry_max_secs = 30\n[server]\nlisten = \"\"\n",
        sqs_source(&input, 1)
    );
    let d = Daemon::start(&toml, &aws.config).await;
    aws.send(&input, &eventbridge(&root_call("gone-1"))).await;
    eventually(
        Duration::from_secs(45),
        "the rejected message in the dead-letter queue",
        || async { aws.depth(&dlq).await == 1 && aws.depth(&input).await == 0 },
    )
    .await;
    d.stop().await;
}

/// EventBridge: the entry reaches a queue targeted by a rule matching
/// rootwatch's source and detail-type, with the finding as its detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventbridge_puts_the_finding_on_the_bus() {
    let aws = Aws::new().await;
    let events = aws_sdk_eventbridge::Client::new(&aws.config);
    let bus = unique("soc");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let (queue, _) = aws.queue(None).await;
    let rule = unique("findings");
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["rootwatch"],"detail-type":["Rootwatch Finding"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(aws.queue_arn(&queue).await)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (input, _) = aws.queue(None).await;
    let toml = format!(
        "{}[[sinks]]\ntype = \"eventbridge\"\nevent_bus = \"{bus}\"\nformat = \"ocsf\"\nretry_max_secs = 30\n[server]\nlisten = \"\"\n",
        sqs_source(&input, 5)
    );
    let d = Daemon::start(&toml, &aws.config).await;
    aws.send(&input, &eventbridge(&root_call("eb-1"))).await;
    let (body, _) = one_message(&aws, &queue).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["source"], "rootwatch");
    assert_eq!(v["detail-type"], "Rootwatch Finding");
    assert_eq!(v["detail"]["class_uid"], 2004);
    assert_eq!(v["detail"]["unmapped"]["event_id"], "eb-1");
    eventually(
        Duration::from_secs(30),
        "the input acknowledged",
        || async { aws.depth(&input).await == 0 },
    )
    .await;
    d.stop().await;
}

/// A PutEvents endpoint on 127.0.0.1 whose answers `answer` picks by call
/// number (from 0): (status, JSON body).
async fn put_events_server(
    answer: impl Fn(usize) -> (StatusCode, String) + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&calls);
    let answer = Arc::new(answer);
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let (n, answer) = (Arc::clone(&n), Arc::clone(&answer));
        async move {
            assert_eq!(
                headers.get("x-amz-target").and_then(|v| v.to_str().ok()),
                Some("AWSEvents.PutEvents")
            );
            let (status, body) = answer(n.fetch_add(1, Ordering::SeqCst));
            (
                status,
                [("content-type", "application/x-amz-json-1.1")],
                body,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), calls)
}

const ENTRY_OK: &str = r#"{"FailedEntryCount":0,"Entries":[{"EventId":"e-1"}]}"#;

fn entry_failed(code: &str) -> String {
    format!(
        r#"{{"FailedEntryCount":1,"Entries":[{{"ErrorCode":"{code}","ErrorMessage":"entry failed"}}]}}"#
    )
}

fn quick() -> Policy {
    Policy {
        deadline: Duration::from_secs(20),
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        max_attempts: None,
    }
}

/// A 200 answer whose entry failed is not a delivery: an internal failure
/// is retried until the entry is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_entry_is_retried_like_a_server_error() {
    let (url, calls) = put_events_server(|n| match n {
        0 => (StatusCode::OK, entry_failed("InternalFailure")),
        1 => (StatusCode::OK, entry_failed("ThrottlingException")),
        _ => (StatusCode::OK, ENTRY_OK.to_owned()),
    })
    .await;
    let sink = build(
        "type = \"eventbridge\"\nevent_bus = \"default\"",
        &aws_at(&url).await,
    );
    let attempts = deliver(sink.as_ref(), "retry-1", &quick()).await.unwrap();
    assert_eq!(attempts, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// An entry refused for what it is, or a caller not allowed, ends
/// retrying at once as a rejection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_entry_or_access_denied_is_a_rejection() {
    for (status, body) in [
        (StatusCode::OK, entry_failed("MalformedDetail")),
        (
            StatusCode::BAD_REQUEST,
            r#"{"__type":"AccessDeniedException","message":"User is not authorized to perform: events:PutEvents (see https://relay.example/T0/s3cr3t-t0ken)"}"#.to_owned(),
        ),
        (
            StatusCode::BAD_REQUEST,
            r#"{"__type":"ResourceNotFoundException","message":"Event bus soc does not exist."}"#.to_owned(),
        ),
    ] {
        let b = body.clone();
        let (url, calls) = put_events_server(move |_| (status, b.clone())).await;
        let sink = build("type = \"eventbridge\"\nevent_bus = \"soc\"", &aws_at(&url).await);
        let err = deliver(sink.as_ref(), "rejected-1", &quick())
        .await
        .unwrap_err();
        let DeliveryError::Rejected { error, .. } = &err else {
            panic!("{body}: {err:?}")
        };
        // A URL the service's message echoes never reaches logs or dead
        // letters.
        assert!(!error.contains("s3cr3t"), "{error}");
        assert!(
            ["MalformedDetail", "AccessDeniedException: User is not authorized", "ResourceNotFoundException"]
                .iter()
                .any(|c| error.contains(c)),
            "the error names the code: {error}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{body}");
    }
}

/// 5xx answers and throttling are retried until the deadline, which ends
/// it as a failure, never a delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_the_deadline() {
    let (url, calls) = put_events_server(|n| {
        if n % 2 == 0 {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"__type":"InternalException","message":"oops"}"#.to_owned(),
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
            )
        }
    })
    .await;
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        // The SDK's own retries off: the sink's retry loop is under test.
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let sink = build("type = \"eventbridge\"\nevent_bus = \"default\"", &aws);
    let policy = Policy {
        deadline: Duration::from_secs(2),
        ..quick()
    };
    let err = deliver(sink.as_ref(), "down-1", &policy).await.unwrap_err();
    assert!(matches!(err, DeliveryError::GaveUp { .. }), "{err:?}");
    assert!(calls.load(Ordering::SeqCst) >= 3);
}

/// The sink's retry loop is the only one: a 5xx answer is one call per
/// attempt, not the SDK's own three tries inside each (which would
/// multiply every retry and overrun the sink's deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_attempt_is_one_call() {
    let (url, calls) = put_events_server(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"__type":"InternalException","message":"oops"}"#.to_owned(),
        )
    })
    .await;
    // The process's AWS configuration as the daemon loads it: the SDK's
    // standard retry mode on.
    let sink = build(
        "type = \"eventbridge\"\nevent_bus = \"default\"",
        &aws_at(&url).await,
    );
    let policy = Policy {
        max_attempts: Some(2),
        ..quick()
    };
    let err = deliver(sink.as_ref(), "once-1", &policy).await.unwrap_err();
    assert!(matches!(err, DeliveryError::GaveUp { .. }), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "two attempts, two calls");
}

/// `rootwatch test-alert` builds SNS sinks with the AWS configuration: the
/// test finding reaches the topic's queue, and a missing topic is reported
/// rejected (exit 69), not unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_alert_publishes_to_sns_and_reports_a_missing_topic() {
    let aws = Aws::new().await;
    let (topic, queue) = topic_into_queue(&aws).await;
    let missing = format!("arn:aws:sns:us-east-1:123456789012:{}", unique("gone"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rootwatch.toml");
    std::fs::write(
        &path,
        format!(
            "[[sinks]]\nname = \"topic\"\ntype = \"sns\"\ntopic_arn = \"{topic}\"\n\n\
             [[sinks]]\nname = \"missing\"\ntype = \"sns\"\ntopic_arn = \"{missing}\"\n"
        ),
    )
    .unwrap();
    let path_arg = path.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        rootwatch_at_emulator(&["test-alert", "--config", &path_arg])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(69), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("topic (sns): delivered"), "{stdout}");
    assert!(lines[1].starts_with("missing (sns): rejected"), "{stdout}");
    let (body, attrs) = one_message(&aws, &queue).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rule"], "rootwatch-test", "{body}");
    assert!(
        attrs.contains(&("rule".to_owned(), "rootwatch-test".to_owned())),
        "{attrs:?}"
    );
}

/// An SNS sink with `role_arn` publishes with the role's credentials
/// (moto's STS answers `AssumeRole` for any role), and never without them:
/// with STS unreachable, `test-alert` reports the sink undelivered and
/// nothing is published, while the same sink without the role delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_sink_publishes_through_its_role_or_not_at_all() {
    let aws = Aws::new().await;
    let (topic, queue) = topic_into_queue(&aws).await;
    let account = topic.split(':').nth(4).unwrap().to_owned();
    let sink = format!("type = \"sns\"\ntopic_arn = \"{topic}\"\n");
    let role = format!(
        "role_arn = \"arn:aws:iam::{account}:role/rootwatch-publish\"\nexternal_id = \"soc-7781\"\n"
    );
    build(&format!("{sink}{role}"), &aws.config)
        .send(&root_call_finding(&root_call("through-role")))
        .await
        .unwrap();
    let (body, _) = one_message(&aws, &queue).await;
    assert!(body.contains("through-role"), "{body}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sts = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let test_alert = |config: String| {
        let path = dir.path().join("rootwatch.toml");
        std::fs::write(&path, config).unwrap();
        rootwatch_at_emulator(&["test-alert", "--config"])
            .arg(&path)
            .env("AWS_ENDPOINT_URL_STS", &sts)
            .output()
            .unwrap()
    };
    let out = tokio::task::block_in_place(|| test_alert(format!("[[sinks]]\n{sink}{role}")));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(69), "{stdout}");
    assert!(!stdout.contains("delivered"), "{stdout}");
    let left = aws
        .sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    assert!(left.messages().is_empty(), "published without the role");

    let out = tokio::task::block_in_place(|| test_alert(format!("[[sinks]]\n{sink}")));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let (body, _) = one_message(&aws, &queue).await;
    assert!(body.contains("rootwatch-test"), "{body}");
}
