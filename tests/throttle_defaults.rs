//! The shipped defaults under load: `config/example.toml`'s throttle,
//! dedup, shutdown, source and sink settings, as an operator runs them,
//! against SQS, S3 and CloudWatch Logs in the moto emulator. One noisy key
//! must never hold back a root alert behind it, and the noisy key's summary
//! (with its count) must still reach the sink.

mod common;

use std::time::Duration;

use common::*;

const EXAMPLE: &str = include_str!("../config/example.toml");

/// The allow list these tests run: the IAM user's address is outside it.
const ALLOW: &str = "[detect.ip_allowlist]\ncidrs = [\"203.0.113.0/24\"]\nscope = \"all\"\n";

fn example() -> toml::Table {
    EXAMPLE.parse().expect("config/example.toml parses")
}

/// The example's `section` table.
fn example_table(section: &str) -> toml::Table {
    example()[section].as_table().unwrap().clone()
}

/// The example's first entry of `kind` in the array of tables `list`
/// (`sources`, `sinks`).
fn example_entry(list: &str, kind: &str) -> toml::Table {
    example()[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_table().unwrap())
        .find(|s| s["type"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("config/example.toml has a {kind} entry in {list}"))
        .clone()
}

/// A configuration made of the example's own `[dedup]`, `[throttle]` and
/// `[shutdown]`, `source`, and the example's webhook sink pointed at `hook`
/// (with a literal HMAC secret for its `${...}`), the admin server off.
/// `sink_extra` is added to the sink.
fn shipped_with(source: toml::Table, hook: &str, sink_extra: &str) -> String {
    let mut doc = toml::Table::new();
    for s in ["dedup", "throttle", "shutdown"] {
        doc.insert(s.into(), toml::Value::Table(example_table(s)));
    }
    doc.insert(
        "sources".into(),
        toml::Value::Array(vec![toml::Value::Table(source)]),
    );
    let mut sink = example_entry("sinks", "webhook");
    sink.insert("url".into(), hook.into());
    sink.insert("hmac_secret".into(), "test-secret".into());
    doc.insert(
        "sinks".into(),
        toml::Value::Array(vec![toml::Value::Table(sink)]),
    );
    let mut server = toml::Table::new();
    server.insert("listen".into(), "".into());
    doc.insert("server".into(), toml::Value::Table(server));
    let text = toml::to_string(&doc).unwrap();
    // Inserted after the tables so the sink's keys stay in its own table.
    let text = text.replacen("[[sinks]]\n", &format!("[[sinks]]\n{sink_extra}\n"), 1);
    format!("{ALLOW}{text}")
}

/// [`shipped_with`] the example's SQS source, pointed at `queue`.
fn shipped(queue: &str, hook: &str, sink_extra: &str) -> String {
    let mut source = example_entry("sources", "sqs");
    source.insert("queue_url".into(), queue.into());
    shipped_with(source, hook, sink_extra)
}

#[test]
fn these_tests_run_the_shipped_throttle() {
    assert_eq!(
        example_table("throttle")["window_secs"].as_integer(),
        Some(300)
    );
    let s = settings(&shipped(
        "http://127.0.0.1:1/123456789012/q",
        "http://127.0.0.1:2/hook",
        "",
    ));
    assert_eq!(s.throttle_window, Some(Duration::from_secs(300)));
    let rootwatch::config::SourceSettings::Sqs(q) = &s.sources[0] else {
        panic!("an SQS source")
    };
    assert_eq!(q.max_in_flight.get(), 10_000);
}

/// One API call by an IAM user from 198.51.100.7 (outside the allow list).
fn noisy_call(n: usize) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","principalId":"AIDACKCEVSQ6C2EXAMPLE","arn":"arn:aws:iam::111122223333:user/ci-deployer","accountId":"111122223333","accessKeyId":"AKIAIOSFODNN7EXAMPLE","userName":"ci-deployer"}},"eventTime":"2024-05-01T12:{:02}:{:02}Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15.0","requestParameters":null,"responseElements":null,"requestID":"req-{n}","eventID":"noisy-{n:06}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#,
        (n / 60) % 60,
        n % 60
    )
}

/// A root console sign-in with MFA, as CloudTrail writes it.
fn root_login(id: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":""}},"eventTime":"2024-05-01T12:30:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.50","userAgent":"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/124.0","requestParameters":null,"responseElements":{{"ConsoleLogin":"Success"}},"additionalEventData":{{"LoginTo":"https://console.aws.amazon.com/console/home","MobileVersion":"No","MFAIdentifier":"arn:aws:iam::111122223333:mfa/root-account-mfa-device","MFAUsed":"Yes"}},"eventID":"{id}","readOnly":false,"eventType":"AwsConsoleSignIn","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#
    )
}

fn rules_of(hook: &Webhook, rule: &str) -> Vec<serde_json::Value> {
    hook.delivered()
        .into_iter()
        .filter(|f| f["rule"] == rule)
        .collect()
}

/// The issue's scenario as CloudTrail delivers it to S3: one log file of
/// 30,000 calls by one IAM user from one address outside the allow list,
/// a root console login at position 15,000. Every fold used to hold its
/// 64-event chunk's permits, so intake stopped after ~10,000 events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_key_in_a_log_file_never_holds_back_the_root_login_behind_it() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let bucket = aws.trail_bucket(&queue, false).await;
    let mut records: Vec<String> = (0..30_000).map(noisy_call).collect();
    records.insert(15_000, root_login("root-login-15000"));
    aws.put_gz(
        &bucket,
        "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T1200Z_noisy.json.gz",
        &format!(r#"{{"Records":[{}]}}"#, records.join(",")),
    )
    .await;
    let hook = Webhook::ok().await;
    let config = shipped(&queue, &hook.url(), "")
        .replace(
            "[[sources]]\n",
            &format!("[[sources]]\nname = \"s3-noisy\"\nallowed_buckets = [\"{bucket}\"]\n"),
        )
        .replace("listen = \"\"", "listen = \"127.0.0.1:0\"");
    let (d, admin) = Daemon::with_admin(&config, Some(aws.config.clone()), None).await;
    eventually(
        Duration::from_secs(60),
        "the root login's alert behind 15,000 noisy calls",
        || async { !rules_of(&hook, "root-console-login").is_empty() },
    )
    .await;
    // The noisy key alerted once, its repeats are folded, not sent.
    let noisy = rules_of(&hook, "source-ip-not-allowed");
    let by_user: Vec<_> = noisy
        .iter()
        .filter(|f| f["user_name"] == "ci-deployer")
        .collect();
    assert_eq!(by_user.len(), 1, "{by_user:?}");
    assert!(by_user[0]["summary"].is_null());

    eventually(
        Duration::from_secs(60),
        "the whole log file read while the window is open",
        || async {
            scrape(
                admin,
                "rootwatch_events_processed_total{source=\"s3-noisy\"}",
            )
            .await
                == Some(30_001.0)
        },
    )
    .await;
    // Shutdown ends the window early: its summary counts every repeat, and
    // once it is delivered the notification is deleted.
    d.stop().await;
    let summaries: Vec<_> = rules_of(&hook, "source-ip-not-allowed")
        .into_iter()
        .filter(|f| f["user_name"] == "ci-deployer" && !f["summary"].is_null())
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0]["summary"]["count"], 29_999);
    assert_eq!(summaries[0]["summary"]["window_secs"], 300);
    assert_eq!(aws.depth(&queue).await, 0, "the notification was deleted");
}

/// The scenario through SQS messages, one EventBridge event each (scaled
/// to what the emulator holds: it slows to seconds a call with thousands
/// of messages queued): while the noisy key's window is open, every
/// message but the one carrying its summary is deleted, and a root login
/// sent behind them alerts. Every folded message used to stay in flight
/// until the window's summary, so 10,000 of them stopped intake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_key_in_sqs_never_holds_its_messages() {
    const NOISY: usize = 300;
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let mut bodies: Vec<String> = (0..NOISY)
        .map(|n| eventbridge_as_aws(&noisy_call(n)))
        .collect();
    bodies.push(eventbridge_as_aws(&root_login("root-login-sqs")));
    aws.send_all(&queue, &bodies).await;
    let hook = Webhook::ok().await;
    let d = Daemon::start(&shipped(&queue, &hook.url(), ""), &aws.config).await;
    eventually(
        Duration::from_secs(60),
        "the root login's alert behind 300 noisy messages",
        || async { !rules_of(&hook, "root-console-login").is_empty() },
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "the queue drained to the summary's carrier while the window is open",
        || async { aws.depth(&queue).await <= 1 },
    )
    .await;
    let noisy = || {
        rules_of(&hook, "source-ip-not-allowed")
            .into_iter()
            .filter(|f| f["user_name"] == "ci-deployer")
            .collect::<Vec<_>>()
    };
    assert_eq!(noisy().len(), 1, "one alert while the window is open");
    d.stop().await;
    let sent = noisy();
    assert_eq!(sent.len(), 2, "the first alert and the summary: {sent:?}");
    assert_eq!(sent[1]["summary"]["count"], (NOISY - 1) as u64);
    assert_eq!(aws.depth(&queue).await, 0);
}

/// A root CreateAccessKey that failed (high), then one that succeeded
/// (critical), inside one window: the critical one reaches a
/// `min_severity = "critical"` sink at once, not with the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_inside_a_window_goes_out_at_once() {
    let key = |id: &str, error: &str| {
        format!(
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"ASIAEXAMPLEROOTSESSN","sessionContext":{{"attributes":{{"creationDate":"2024-05-01T11:58:02Z","mfaAuthenticated":"true"}}}}}},"eventTime":"2024-05-01T12:00:0{}Z","eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"aws-cli/2.15.0","requestParameters":null,{error}"requestID":"r-{id}","eventID":"{id}","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#,
            id.len() % 10
        )
    };
    let failed = key(
        "key-failed",
        r#""errorCode":"LimitExceededException","errorMessage":"Cannot exceed quota for AccessKeysPerUser: 2","responseElements":null,"#,
    );
    let created = key(
        "key-created-ok",
        r#""responseElements":{"accessKey":{"accessKeyId":"AKIAIOSFODNN7EXAMPLE","status":"Active","userName":"root","createDate":"May 1, 2024 12:00:02 PM"}},"#,
    );
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    let d = Daemon::start(
        &shipped(&queue, &hook.url(), "min_severity = \"critical\""),
        &aws.config,
    )
    .await;
    aws.send(&queue, &eventbridge_as_aws(&failed)).await;
    eventually(
        Duration::from_secs(30),
        "the failed call handled",
        || async { aws.depth(&queue).await == 0 },
    )
    .await;
    aws.send(&queue, &eventbridge_as_aws(&created)).await;
    eventually(
        Duration::from_secs(30),
        "the successful CreateAccessKey at the critical sink",
        || async {
            rules_of(&hook, "root-access-key-created")
                .iter()
                .any(|f| f["event_id"] == "key-created-ok" && f["severity"] == "critical")
        },
    )
    .await;
    assert!(
        rules_of(&hook, "root-access-key-created")
            .iter()
            .all(|f| f["summary"].is_null()),
        "sent as itself, not as a summary"
    );
    d.stop().await;
    let s: Vec<_> = rules_of(&hook, "root-access-key-created")
        .into_iter()
        .filter(|f| !f["summary"].is_null())
        .collect();
    assert_eq!(s.len(), 1, "{s:?} {:#?}", hook.delivered());
    assert_eq!(s[0]["summary"]["count"], 1);
    assert_eq!(s[0]["summary"]["escalated"], 1);
}

/// A webhook down for a few seconds, with retries shorter than the outage:
/// the alerts that failed come back with their messages and go out then,
/// not with the window's summary five minutes later. The first alert of a
/// key (a retry is not a repeat), and an alert on a message that carries
/// a window (the window lets go of a message whose alert failed). Retries
/// and the visibility timeout are shortened from the example's so the
/// messages come back within the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_that_failed_go_out_when_their_messages_come_back() {
    let call = |id: &str, name: &str, second: u32| {
        format!(
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"ASIAEXAMPLEROOTSESSN","sessionContext":{{"attributes":{{"creationDate":"2024-05-01T11:58:02Z","mfaAuthenticated":"true"}}}}}},"eventTime":"2024-05-01T12:00:{second:02}Z","eventSource":"iam.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"aws-cli/2.15.0","requestParameters":null,"responseElements":null,"requestID":"r-{id}","eventID":"{id}","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#
        )
    };
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let started = std::time::Instant::now();
    let hook = Webhook::start(move |_| {
        if started.elapsed() < Duration::from_secs(6) {
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, vec![])
        } else {
            (axum::http::StatusCode::OK, vec![])
        }
    })
    .await;
    let config = shipped(&queue, &hook.url(), "")
        .replace(
            "visibility_timeout_secs = 120",
            "visibility_timeout_secs = 3",
        )
        .replace("retry_max_secs = 300", "retry_max_secs = 2");
    assert!(
        config.contains("visibility_timeout_secs = 3") && config.contains("retry_max_secs = 2"),
        "{config}"
    );
    // The first root call opens the window of (root-api-call, root,
    // 203.0.113.9); the second folds into it and carries it, and its
    // CreateAccessKey alert is a rule of its own.
    aws.send(
        &queue,
        &eventbridge_as_aws(&call("first-call", "DeleteUser", 0)),
    )
    .await;
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(10),
        "the first call refused",
        || async { !hook.requests().is_empty() },
    )
    .await;
    aws.send(
        &queue,
        &eventbridge_as_aws(&call("carrier-call", "CreateAccessKey", 5)),
    )
    .await;
    eventually(
        Duration::from_secs(40),
        "both alerts delivered after the outage",
        || async {
            let got = hook.delivered();
            got.iter()
                .any(|f| f["rule"] == "root-api-call" && f["event_id"] == "first-call")
                && got.iter().any(|f| {
                    f["rule"] == "root-access-key-created" && f["event_id"] == "carrier-call"
                })
        },
    )
    .await;
    d.stop().await;
    let folded: Vec<_> = rules_of(&hook, "root-api-call")
        .into_iter()
        .filter(|f| f["event_id"] == "carrier-call" && f["summary"].is_null())
        .collect();
    assert!(folded.is_empty(), "a repeat is still folded: {folded:?}");
}

/// SIGKILL inside an open window: the message carrying the window's
/// summary comes back, and the key alerts again after the restart; nothing
/// else is lost. The visibility timeout is shortened from the example's
/// 120 s only so the killed process's messages come back within the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_a_window_loses_at_most_the_count() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let config = shipped(&queue, &hook.url(), "").replace(
        "visibility_timeout_secs = 120",
        "visibility_timeout_secs = 3",
    );
    assert!(config.contains("visibility_timeout_secs = 3"), "{config}");
    let bodies: Vec<String> = (0..50)
        .map(|n| eventbridge_as_aws(&noisy_call(n)))
        .collect();
    aws.send_all(&queue, &bodies).await;
    aws.send(
        &queue,
        &eventbridge_as_aws(&root_login("root-login-before-kill")),
    )
    .await;
    let mut child = spawn_rootwatch(&config, dir.path());
    eventually(
        Duration::from_secs(60),
        "the first alerts, and every message but the carrier deleted",
        || async {
            rules_of(&hook, "root-console-login").len() == 1
                && rules_of(&hook, "source-ip-not-allowed")
                    .iter()
                    .any(|f| f["user_name"] == "ci-deployer")
                && aws.depth(&queue).await == 1
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let before = rules_of(&hook, "source-ip-not-allowed")
        .into_iter()
        .filter(|f| f["user_name"] == "ci-deployer")
        .count();
    assert_eq!(before, 1);

    let mut child = spawn_rootwatch(&config, dir.path());
    eventually(
        Duration::from_secs(60),
        "the carrier back, alerting as a first finding, and the queue empty",
        || async {
            rules_of(&hook, "source-ip-not-allowed")
                .iter()
                .filter(|f| f["user_name"] == "ci-deployer")
                .count()
                == 2
                && aws.depth(&queue).await == 0
        },
    )
    .await;
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(0));
    let after: Vec<_> = rules_of(&hook, "source-ip-not-allowed")
        .into_iter()
        .filter(|f| f["user_name"] == "ci-deployer")
        .collect();
    assert!(after[1]["summary"].is_null(), "{after:?}");
    assert_ne!(after[0]["event_id"], after[1]["event_id"]);
    assert_eq!(rules_of(&hook, "root-console-login").len(), 1);
}

/// CloudWatch Logs with its defaults (poll interval, lookback, request
/// rate): 12,000 noisy events, more than the 10,000 a log group keeps in
/// flight, then a root login. Every folded event used to stay in flight,
/// so the group stopped reading before the login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_key_in_cloudwatch_logs_never_stops_reading() {
    const NOISY: usize = 12_000;
    let aws = Aws::new().await;
    let group = LogGroup::new(&aws).await;
    let t0 = now_ms() - 120_000;
    let mut events: Vec<(i64, String)> = (0..NOISY)
        .map(|n| (t0 + (n as i64) * 5, noisy_call(n)))
        .collect();
    events.push((t0 + 70_000, root_login("root-login-cwl")));
    group.put_messages(&events).await;
    let dir = tempfile::tempdir().unwrap();
    let mut source = toml::Table::new();
    source.insert("type".into(), "cloudwatch_logs".into());
    source.insert(
        "log_groups".into(),
        toml::Value::Array(vec![group.name.clone().into()]),
    );
    source.insert(
        "checkpoint_path".into(),
        dir.path().join("cp.json").display().to_string().into(),
    );
    source.insert("start".into(), rfc3339(t0 - 1000).into());
    let hook = Webhook::ok().await;
    let d = Daemon::start(&shipped_with(source, &hook.url(), ""), &aws.config).await;
    eventually(
        Duration::from_secs(180),
        "the root login's alert behind 12,000 noisy events",
        || async { !rules_of(&hook, "root-console-login").is_empty() },
    )
    .await;
    d.stop().await;
    let noisy: Vec<_> = rules_of(&hook, "source-ip-not-allowed")
        .into_iter()
        .filter(|f| f["user_name"] == "ci-deployer")
        .collect();
    assert_eq!(noisy.len(), 2, "the first alert and the summary");
    assert_eq!(noisy[1]["summary"]["count"], (NOISY - 1) as u64);
}
