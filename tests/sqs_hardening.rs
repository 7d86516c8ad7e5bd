//! The SQS source under hostile or awkward input, on the moto emulator:
//! slow objects in a batch, oversized objects and records, notifications
//! naming buckets it was not told to read.

mod common;

use std::time::Duration;

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

async fn bucket(aws: &Aws) -> String {
    let b = unique("trail");
    aws.s3.create_bucket().bucket(&b).send().await.unwrap();
    b
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
    let proxy = FaultProxy::start().await;
    proxy.slow_get("slow", Duration::from_secs(6));
    let hook = Webhook::ok().await;
    let name = unique("batch").replace('-', "_");
    let config = named(sqs_to_webhook(&queue, 2, &hook.url(), ""), &name);
    let d = Daemon::start(&config, &aws_at(&proxy.url).await).await;
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

/// Decode errors of `kind` counted for `source` (each test names its own
/// source: tests run in one process and share the counters).
fn decode_errors(source: &str, kind: &str) -> u64 {
    metric(
        "rootwatch_decode_errors_total",
        &format!("source=\"{source}\",kind=\"{kind}\""),
    )
}

/// gzip members back to back (a valid gzip file, as MultiGzDecoder and
/// `gunzip` read it): `head`, then `filler` `times` over, then `tail`.
/// A few MB of this inflates to gigabytes.
fn gzip_bomb(head: &str, filler: &str, times: usize, tail: &str) -> Vec<u8> {
    let member = gzip(filler);
    let mut out = gzip(head);
    for _ in 0..times {
        out.extend_from_slice(&member);
    }
    out.extend_from_slice(&gzip(tail));
    out
}

async fn put(aws: &Aws, bucket: &str, key: &str, bytes: Vec<u8>) {
    aws.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
        .send()
        .await
        .unwrap();
}

/// Runs rootwatch on `queue` (dead-letter queue after one receive) with
/// `extra` source settings until the DLQ holds `dlq_depth` messages and the
/// queue is empty.
async fn expect_dead_lettered(
    aws: &Aws,
    queue: &str,
    dlq: &str,
    hook: &Webhook,
    extra: &str,
    dlq_depth: u64,
) {
    let config = sqs_to_webhook(queue, 1, &hook.url(), "").replace(
        "visibility_timeout_secs = 1\n",
        &format!("visibility_timeout_secs = 1\n{extra}"),
    );
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(60),
        "the refused message in the dead-letter queue, the queue empty",
        || async { aws.depth(dlq).await == dlq_depth && aws.depth(queue).await == 0 },
    )
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_refused_at_the_object_limit() {
    let aws = Aws::new().await;
    let (queue, dlq) = aws.queue(Some(1)).await;
    let dlq = dlq.unwrap();
    let b = bucket(&aws).await;
    // Valid records, no finding each (an IAM user, no allow list): 1 MiB a
    // member, 1 GiB in all, from about 5 MB of gzip.
    let quiet = r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","userName":"alice"},"eventTime":"2024-05-01T12:01:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.201","eventID":"quiet","eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#;
    let per_member = 1024 * 1024 / quiet.len();
    let member = format!(r#"{{"Records":[{}]}}"#, vec![quiet; per_member].join(","));
    let bomb = gzip_bomb(
        &format!(r#"{{"Records":[{}]}}"#, root_call("before-bomb")),
        &member,
        1024,
        "",
    );
    assert!(bomb.len() < 8 * 1024 * 1024, "{}", bomb.len());
    put(&aws, &b, "AWSLogs/bomb.json.gz", bomb).await;
    aws.send(&queue, &s3_notification(&b, "AWSLogs/bomb.json.gz"))
        .await;
    let hook = Webhook::ok().await;
    let name = unique("bomb").replace('-', "_");
    let extra = format!("name = \"{name}\"\nmax_object_bytes = 8388608\n");
    expect_dead_lettered(&aws, &queue, &dlq, &hook, &extra, 1).await;
    assert_eq!(decode_errors(&name, "too_large"), 1, "counted as too_large");
    // What came before the limit was still reported.
    let ids: Vec<String> = hook
        .delivered()
        .iter()
        .map(|f| f["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["before-bomb"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_is_refused_at_the_record_limit() {
    let aws = Aws::new().await;
    let (queue, dlq) = aws.queue(Some(1)).await;
    let dlq = dlq.unwrap();
    let b = bucket(&aws).await;
    // One record whose user agent is 2 GiB of `a`: buffered whole it
    // would take gigabytes.
    let bomb = gzip_bomb(
        r#"{"Records":[{"eventVersion":"1.08","userAgent":""#,
        &"a".repeat(1024 * 1024),
        2048,
        r#""}]}"#,
    );
    put(&aws, &b, "AWSLogs/record.json.gz", bomb).await;
    aws.send(&queue, &s3_notification(&b, "AWSLogs/record.json.gz"))
        .await;
    let hook = Webhook::ok().await;
    let name = unique("record").replace('-', "_");
    let extra = format!("name = \"{name}\"\n");
    expect_dead_lettered(&aws, &queue, &dlq, &hook, &extra, 1).await;
    assert_eq!(decode_errors(&name, "too_large"), 1, "counted as too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_naming_too_many_objects_is_refused_unread() {
    let aws = Aws::new().await;
    let (queue, dlq) = aws.queue(Some(1)).await;
    let dlq = dlq.unwrap();
    let b = bucket(&aws).await;
    let keys: Vec<String> = (0..3)
        .map(|i| format!("AWSLogs/many-{i}.json.gz"))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        aws.put_gz(
            &b,
            k,
            &format!(r#"{{"Records":[{}]}}"#, root_call(&format!("many-{i}"))),
        )
        .await;
    }
    let notice = serde_json::json!({"s3Bucket": b, "s3ObjectKey": keys}).to_string();
    aws.send(&queue, &notice).await;
    let hook = Webhook::ok().await;
    let name = unique("many").replace('-', "_");
    let extra = format!("name = \"{name}\"\nmax_objects_per_message = 2\n");
    expect_dead_lettered(&aws, &queue, &dlq, &hook, &extra, 1).await;
    assert!(hook.requests().is_empty(), "no object was read");
    assert_eq!(decode_errors(&name, "too_large"), 1, "counted as too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_outside_allowed_buckets_are_refused_unread() {
    let aws = Aws::new().await;
    let (queue, dlq) = aws.queue(Some(1)).await;
    let dlq = dlq.unwrap();
    let (trail, other) = (bucket(&aws).await, bucket(&aws).await);
    let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/f.json.gz";
    for (b, id) in [(&trail, "allowed-bucket"), (&other, "foreign-bucket")] {
        aws.put_gz(b, key, &format!(r#"{{"Records":[{}]}}"#, root_call(id)))
            .await;
        aws.send(&queue, &s3_notification(b, key)).await;
    }
    let name = unique("buckets").replace('-', "_");
    let hook = Webhook::ok().await;
    let extra = format!("name = \"{name}\"\nallowed_buckets = [\"{trail}\"]\n");
    expect_dead_lettered(&aws, &queue, &dlq, &hook, &extra, 1).await;
    let ids: Vec<String> = hook
        .delivered()
        .iter()
        .map(|f| f["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["allowed-bucket"]);
    assert_eq!(
        metric(
            "rootwatch_source_errors_total",
            &format!("source=\"{name}\",kind=\"bucket_not_allowed\"")
        ),
        1
    );
    let left = aws.receive_bodies(&dlq).await;
    assert!(left[0].contains(&other), "{left:?}");
}

/// A log file of a million `{}` elements: each is an error, every one is
/// counted, and the message goes to the dead-letter queue. (The memory
/// bound is checked where the errors are collected, in the pipeline's
/// unit tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_bad_records_are_counted_and_dead_lettered() {
    let aws = Aws::new().await;
    let (queue, dlq) = aws.queue(Some(1)).await;
    let dlq = dlq.unwrap();
    let b = bucket(&aws).await;
    let mut text = format!(r#"{{"Records":[{},"#, root_call("among-empties"));
    text.push_str(&"{},".repeat(1_000_000));
    text.push_str("{}]}");
    aws.put_gz(&b, "AWSLogs/empties.json.gz", &text).await;
    aws.send(&queue, &s3_notification(&b, "AWSLogs/empties.json.gz"))
        .await;
    let hook = Webhook::ok().await;
    let name = unique("empties").replace('-', "_");
    let extra = format!("name = \"{name}\"\n");
    expect_dead_lettered(&aws, &queue, &dlq, &hook, &extra, 1).await;
    assert_eq!(decode_errors(&name, "not_a_record"), 1_000_001);
    let ids: Vec<String> = hook
        .delivered()
        .iter()
        .map(|f| f["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["among-empties"], "the good record still alerts");
}

/// Empty gzip members inflate to nothing, so only the stored size bounds
/// how much of such an object is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_over_the_compressed_limit_is_refused() {
    let aws = Aws::new().await;
    let (queue, dlq) = aws.queue(Some(1)).await;
    let dlq = dlq.unwrap();
    let b = bucket(&aws).await;
    let empty = gzip("");
    let mut object = gzip(&format!(r#"{{"Records":[{}]}}"#, root_call("stored")));
    while object.len() < 2 * 1024 * 1024 {
        object.extend_from_slice(&empty);
    }
    put(&aws, &b, "AWSLogs/hollow.json.gz", object).await;
    aws.send(&queue, &s3_notification(&b, "AWSLogs/hollow.json.gz"))
        .await;
    let hook = Webhook::ok().await;
    let name = unique("hollow").replace('-', "_");
    let extra = format!("name = \"{name}\"\nmax_compressed_object_bytes = 1048576\n");
    expect_dead_lettered(&aws, &queue, &dlq, &hook, &extra, 1).await;
    assert_eq!(decode_errors(&name, "too_large"), 1, "counted as too_large");
}

/// An object whose body stops half-way (a stalled or dripping connection)
/// holds its worker no longer than `max_object_read_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_read_past_the_time_limit_is_refused() {
    let aws = Aws::new().await;
    let (queue, dlq) = aws.queue(Some(1)).await;
    let dlq = dlq.unwrap();
    let b = bucket(&aws).await;
    let records: Vec<String> = (0..200)
        .map(|i| root_call(&format!("stalled-{i}")))
        .collect();
    aws.put_gz(
        &b,
        "AWSLogs/stalled.json.gz",
        &format!(r#"{{"Records":[{}]}}"#, records.join(",")),
    )
    .await;
    aws.send(&queue, &s3_notification(&b, "AWSLogs/stalled.json.gz"))
        .await;
    let proxy = FaultProxy::start().await;
    proxy.stall_get("stalled", Duration::from_secs(300));
    let hook = Webhook::ok().await;
    let name = unique("stalled").replace('-', "_");
    let config = sqs_to_webhook(&queue, 1, &hook.url(), "").replace(
        "visibility_timeout_secs = 1\n",
        &format!("visibility_timeout_secs = 1\nname = \"{name}\"\nmax_object_read_secs = 2\n"),
    );
    let started = std::time::Instant::now();
    let d = Daemon::start(&config, &aws_at(&proxy.url).await).await;
    eventually(
        Duration::from_secs(60),
        "the stalled object's message in the dead-letter queue",
        || async { aws.depth(&dlq).await == 1 && aws.depth(&queue).await == 0 },
    )
    .await;
    d.stop().await;
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(decode_errors(&name, "too_slow"), 1, "counted as too_slow");
}
