//! What reaches the SOC: throttled bursts, duplicates, redelivery.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_session_of_hundreds_of_calls_gives_the_first_alert_and_one_summary_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["ListUsers", "ListRoles", "GetAccountSummary", "ListBuckets"];
    let mut lines = String::new();
    for i in 0..300 {
        let rec = root_call(&format!("burst-{i:03}"))
            .replace("\"DeleteUser\"", &format!("\"{}\"", names[i % names.len()]))
            .replace(
                "2024-05-01T12:00:00Z",
                &format!("2024-05-01T12:{:02}:{:02}Z", i / 60, i % 60),
            );
        lines.push_str(&rec);
        lines.push('\n');
    }
    // A second source address is a second key.
    lines.push_str(&root_call("other-ip").replace("203.0.113.9", "198.51.100.77"));
    lines.push('\n');
    std::fs::write(dir.path().join("session.jsonl"), lines).unwrap();

    let hook = Webhook::ok().await;
    let config = format!(
        "[[sources]]\ntype = \"file\"\npaths = [\"{}\"]\n[[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\n[throttle]\nwindow_secs = 3\n[server]\nlisten = \"\"\n",
        dir.path().display(),
        hook.url()
    );
    let aws = aws_at("http://127.0.0.1:9").await; // no AWS source: never contacted
    let d = Daemon::start(&config, &aws).await;
    eventually(
        Duration::from_secs(20),
        "first alerts and the summary",
        || async { hook.delivered().len() >= 3 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    d.stop().await;

    let got = hook.delivered();
    assert_eq!(got.len(), 3, "{got:#?}");
    let firsts: Vec<&serde_json::Value> =
        got.iter().filter(|f| f.get("summary").is_none()).collect();
    let summaries: Vec<&serde_json::Value> =
        got.iter().filter(|f| f.get("summary").is_some()).collect();
    assert_eq!(firsts.len(), 2);
    assert!(firsts.iter().any(|f| f["event_id"] == "burst-000"));
    assert!(firsts.iter().any(|f| f["event_id"] == "other-ip"));
    assert_eq!(summaries.len(), 1);
    let s = &summaries[0]["summary"];
    assert_eq!(s["count"], 299);
    assert_eq!(s["first_event_time"], "2024-05-01T12:00:01Z");
    assert_eq!(s["last_event_time"], "2024-05-01T12:04:59Z");
    assert_eq!(
        s["event_names"],
        serde_json::json!(["GetAccountSummary", "ListBuckets", "ListRoles", "ListUsers"])
    );
    assert_eq!(summaries[0]["rule"], "root-api-call");
    assert_ne!(summaries[0]["finding_id"], firsts[0]["finding_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_record_through_s3_and_eventbridge_alerts_once() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let bucket = aws.trail_bucket(&queue, false).await;
    let record = root_call("shipped-twice");
    aws.send(&queue, &eventbridge(&record)).await;
    aws.put_gz(
        &bucket,
        "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/dup.json.gz",
        &format!(r#"{{"Records":[{record}]}}"#),
    )
    .await;
    aws.send(&queue, &sns_wrap(&record)).await;

    let hook = Webhook::ok().await;
    let d = Daemon::start(&sqs_to_webhook(&queue, 30, &hook.url(), ""), &aws.config).await;
    eventually(Duration::from_secs(30), "every copy consumed", || async {
        !hook.delivered().is_empty() && aws.depth(&queue).await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.stop().await;
    assert_eq!(hook.delivered().len(), 1, "{:#?}", hook.delivered());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_failed_alerts_when_the_message_comes_back() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    aws.send(&queue, &eventbridge(&root_call("comes-back")))
        .await;
    let started = std::time::Instant::now();
    let hook = Webhook::start(move |_| {
        if started.elapsed() < Duration::from_secs(4) {
            (StatusCode::INTERNAL_SERVER_ERROR, vec![])
        } else {
            (StatusCode::OK, vec![])
        }
    })
    .await;
    // Retries give up after 1 s, so the first receive fails for good and the
    // message is left in the queue; it comes back after the 1 s visibility.
    let d = Daemon::start(
        &sqs_to_webhook(&queue, 1, &hook.url(), "retry_max_secs = 1"),
        &aws.config,
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "delivered after redelivery, then deleted",
        || async { hook.delivered().len() == 1 && aws.depth(&queue).await == 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.stop().await;
    assert_eq!(hook.delivered().len(), 1);
    assert!(hook.requests().iter().any(|r| r.status == 500));
}

/// The SQS path gives what replay of the bare records gives: every root or
/// S3 record of the third-party corpora, each in an EventBridge event as AWS
/// builds it (a root S3 call arrives with `"source": "aws.s3"`), every
/// second one inside SNS too. Each finding arrives exactly once and every
/// message is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventbridge_events_from_sqs_alert_as_the_bare_records_do() {
    use std::collections::BTreeMap;
    let root =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/third_party");
    let mut records = Vec::new();
    // Some test corpora reuse an event id for different records; dedup would
    // keep whichever copy comes first, which differs between a file and a
    // queue read by two workers. One record per event key.
    let mut keys = std::collections::HashSet::new();
    for f in [
        "aws-docs-examples/records.jsonl",
        "invictus-aws-dataset/records.jsonl",
        "panther-analysis/all_test_logs_records.jsonl",
        "stratus-red-team/detonation_logs.jsonl",
    ] {
        for line in std::fs::read_to_string(root.join(f)).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = ["eventID", "eventTime", "eventName", "recipientAccountId"]
                .map(|k| v[k].to_string());
            if (v["userIdentity"]["type"] == "Root" || v["eventSource"] == "s3.amazonaws.com")
                && keys.insert(key)
            {
                records.push(line.to_owned());
            }
        }
    }
    assert!(records.len() > 300, "{}", records.len());

    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    let detect = "[detect.ip_allowlist]\ncidrs = [\"10.0.0.0/8\"]\nscope = \"all\"\n";
    let config = format!("{detect}{}", sqs_to_webhook(&queue, 30, &hook.url(), ""));

    // What the bare records give, offline.
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.jsonl");
    std::fs::write(&bare, records.join("\n")).unwrap();
    let settings = settings(&config);
    let detector = rootwatch::detect::Detector::new(settings.detect.clone());
    let mut replay = rootwatch::replay::Replay::new(&detector, settings.dedup_capacity);
    let mut out = Vec::new();
    replay.run(&[bare], &mut out, &mut Vec::new()).unwrap();
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for l in String::from_utf8(out).unwrap().lines() {
        let f: serde_json::Value = serde_json::from_str(l).unwrap();
        *want
            .entry(f["finding_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(want.len() > 100, "{}", want.len());

    let bodies: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let body = eventbridge_as_aws(r);
            if i % 2 == 1 { sns_wrap(&body) } else { body }
        })
        .collect();
    aws.send_all(&queue, &bodies).await;

    let d = Daemon::start(&config, &aws.config).await;
    let expected: usize = want.values().sum();
    let started = std::time::Instant::now();
    let (mut delivered, mut depth) = (0, u64::MAX);
    while started.elapsed() < Duration::from_secs(60) {
        (delivered, depth) = (hook.delivered().len(), aws.depth(&queue).await);
        if delivered >= expected && depth == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.stop().await;
    assert_eq!(
        (hook.delivered().len(), depth),
        (expected, 0),
        "findings delivered and messages left (after {delivered} delivered)"
    );
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for f in hook.delivered() {
        *got.entry(f["finding_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(got, want);
}
