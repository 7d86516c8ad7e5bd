//! The `rootwatch run` binary under faults, on the moto emulator with real
//! HTTP receivers on 127.0.0.1: a webhook outage under continuous input, a
//! `kill -9` in the middle of deliveries (SQS and CloudWatch Logs), a slow
//! sink in front of a large backlog, and SIGTERM with deliveries in flight.
//!
//! Each test knows the alerts its input must produce and checks every one
//! arrived, by event id, counting repeats: a crash may repeat an alert but
//! never lose one; without a crash nothing repeats.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rootwatch::source::cloudwatch_logs::handled::EventKey;

/// An SQS source and a webhook sink for the spawned binary: `source_extra`
/// goes into the `[[sources]]` table, `sink_extra` into `[[sinks]]`;
/// `admin` turns the admin server on.
fn sqs_config(
    queue: &str,
    visibility_secs: u64,
    source_extra: &str,
    hook: &Receiver,
    sink_extra: &str,
    admin: Option<SocketAddr>,
    grace_secs: u64,
) -> String {
    let listen = admin.map(|a| a.to_string()).unwrap_or_default();
    format!(
        "[[sources]]\ntype = \"sqs\"\nqueue_url = \"{queue}\"\nconcurrency = 2\nwait_time_secs = 1\nvisibility_timeout_secs = {visibility_secs}\n{source_extra}\n[[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\n{sink_extra}\n[throttle]\nwindow_secs = 0\n[server]\nlisten = \"{listen}\"\n[shutdown]\ngrace_secs = {grace_secs}\n",
        hook.url()
    )
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

fn bodies(ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| eventbridge(&root_call(id))).collect()
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("rootwatch.log")).unwrap_or_default()
}

/// Every expected event alerted at least once and nothing else alerted;
/// returns the events alerted more than once, with their counts.
fn assert_all_arrived(
    hook: &Receiver,
    expected: &[String],
    context: &str,
) -> BTreeMap<String, usize> {
    let (counts, unexpected) = tally(expected, &hook.accepted_by_event());
    let missing: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| id)
        .collect();
    assert!(missing.is_empty(), "lost alerts {missing:?}\n{context}");
    assert!(unexpected.is_empty(), "unexpected alerts {unexpected:?}");
    // One finding (root-api-call) per event: as many distinct finding ids
    // as events.
    assert_eq!(hook.finding_ids().len(), expected.len(), "{context}");
    counts.into_iter().filter(|(_, n)| *n > 1).collect()
}

async fn wait_exit_async(mut child: std::process::Child, limit: Duration) -> Option<i32> {
    tokio::task::spawn_blocking(move || wait_exit(&mut child, limit))
        .await
        .unwrap()
}

async fn queue_drained(aws: &Aws, queue: &str) {
    eventually(Duration::from_secs(60), "the queue is empty", || async {
        aws.depth(queue).await == 0
    })
    .await;
}

// ---------------------------------------------------------------- outage

/// The receiver answers 503, then refuses connections, then comes back,
/// while a producer keeps sending root calls. Retrying spans the outage:
/// every alert arrives exactly once and the queue ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_outage_under_continuous_input_loses_and_repeats_nothing() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Receiver::start().await;
    hook.set_status(503);
    let dir = tempfile::tempdir().unwrap();
    let config = sqs_config(&queue, 5, "", &hook, "retry_max_secs = 120", None, 25);
    let child = spawn_rootwatch(&config, dir.path());

    // 5 a second for 10 s.
    let expected = ids("outage", 50);
    let producer = {
        let (sqs, queue, bodies) = (aws.sqs.clone(), queue.clone(), bodies(&expected));
        tokio::spawn(async move {
            for body in bodies {
                sqs.send_message()
                    .queue_url(&queue)
                    .message_body(body)
                    .send()
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    eventually(Duration::from_secs(30), "attempts answered 503", || async {
        hook.arrived() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    hook.down().await;
    let refused_at = hook.arrived();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        hook.arrived(),
        refused_at,
        "nothing gets through while down"
    );
    hook.set_status(200);
    hook.up().await;
    producer.await.unwrap();

    eventually(
        Duration::from_secs(90),
        "every alert after the outage",
        || async { hook.accepted_by_event().len() == expected.len() },
    )
    .await;
    queue_drained(&aws, &queue).await;
    // Anything that would repeat would do so within a visibility timeout.
    tokio::time::sleep(Duration::from_secs(6)).await;
    sigterm(&child);
    let code = wait_exit_async(child, Duration::from_secs(40)).await;
    let log = log(dir.path());
    assert_eq!(code, Some(0), "{log}");
    let repeated = assert_all_arrived(&hook, &expected, &log);
    println!(
        "outage: {} alerts, {} attempts answered 503 before the refusal, {} repeated",
        expected.len(),
        refused_at,
        repeated.len()
    );
    assert!(repeated.is_empty(), "no crash, no repeat: {repeated:?}");
    assert!(
        log.contains("delivery failed; retrying"),
        "the outage was retried through"
    );
    assert!(!log.contains("panicked"), "{log}");
}

// ---------------------------------------------------------------- kill -9

/// SIGKILL while a slow receiver is taking alerts, then a new process on
/// the same queue: every alert at least once; only messages in flight at
/// the kill (at most `max_in_flight_messages`) may alert twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_no_sqs_alert() {
    const IN_FLIGHT: usize = 40;
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let expected = ids("kill-sqs", 200);
    aws.send_all(&queue, &bodies(&expected)).await;
    let hook = Receiver::start().await;
    hook.set_delay(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let config = sqs_config(
        &queue,
        4,
        &format!("max_in_flight_messages = {IN_FLIGHT}"),
        &hook,
        "retry_max_secs = 60",
        None,
        25,
    );
    let mut first = spawn_rootwatch(&config, dir.path());
    eventually(Duration::from_secs(60), "50 alerts delivered", || async {
        hook.accepted().len() >= 50
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    // Nothing of the first process can arrive any more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = hook.accepted_by_event();
    assert!(before.len() < expected.len(), "killed mid-stream");

    let second_dir = tempfile::tempdir().unwrap();
    hook.set_delay(Duration::ZERO);
    let second = spawn_rootwatch(&config, second_dir.path());
    eventually(Duration::from_secs(90), "every alert", || async {
        hook.accepted_by_event().len() == expected.len()
    })
    .await;
    queue_drained(&aws, &queue).await;
    sigterm(&second);
    let code = wait_exit_async(second, Duration::from_secs(40)).await;
    assert_eq!(code, Some(0), "{}", log(second_dir.path()));

    let repeated = assert_all_arrived(&hook, &expected, &log(second_dir.path()));
    println!(
        "kill -9 (sqs): {} alerts before the kill, {} of {} alerted twice",
        before.values().sum::<usize>(),
        repeated.len(),
        expected.len()
    );
    assert!(
        repeated.len() <= IN_FLIGHT,
        "only messages in flight at the kill repeat: {repeated:?}"
    );
    for (id, n) in &repeated {
        assert_eq!(*n, 2, "{id}: one crash, at most one repeat");
        assert!(before.contains_key(id), "{id} repeated without a crash");
    }
}

/// A log group holding root calls `ids`, 100 ms apart from `first_ms`.
async fn group_with_root_calls(aws: &Aws, ids: &[String], first_ms: i64) -> LogGroup {
    let group = LogGroup::create(aws, unique("fault-group")).await;
    let events: Vec<(i64, &str)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (first_ms + i as i64 * 100, id.as_str()))
        .collect();
    group.put(&events).await;
    group
}

/// CloudWatch Logs event id -> the CloudTrail eventID in its message.
async fn event_ids(group: &LogGroup) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = group
            .logs
            .filter_log_events()
            .log_group_name(&group.name)
            .set_next_token(token.take())
            .send()
            .await
            .unwrap();
        for e in page.events() {
            let v: serde_json::Value = serde_json::from_str(e.message().unwrap()).unwrap();
            out.insert(
                e.event_id().unwrap().to_owned(),
                v["eventID"].as_str().unwrap().to_owned(),
            );
        }
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return out,
        }
    }
}

/// The CloudTrail eventIDs the checkpoint file records as handled, after
/// checking the file is whole, valid JSON.
fn checkpointed(
    path: &Path,
    group: &LogGroup,
    cw_ids: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let bytes = std::fs::read(path).unwrap();
    let c: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "checkpoint is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let handled = c["groups"][&group.name]["handled"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    // The file keeps each handled event as the key of its CloudWatch Logs
    // event id.
    let by_key: BTreeMap<String, &String> = cw_ids
        .iter()
        .map(|(id, event)| (EventKey::of(id).to_string(), event))
        .collect();
    handled
        .keys()
        .map(|k| {
            by_key
                .get(k)
                .map(|e| (*e).clone())
                .unwrap_or_else(|| panic!("unknown event key {k}"))
        })
        .collect()
}

/// SIGKILL while alerts of a log group are being delivered, then a restart
/// with the same checkpoint file: the file is valid after the kill, every
/// alert arrives at least once, and nothing the checkpoint recorded as
/// handled is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_no_cloudwatch_logs_alert() {
    let aws = Aws::new().await;
    let expected = ids("kill-cw", 80);
    let now = chrono::Utc::now().timestamp_millis();
    let group = group_with_root_calls(&aws, &expected, now - 120_000).await;
    let cw_ids = event_ids(&group).await;
    assert_eq!(cw_ids.len(), expected.len());
    let hook = Receiver::start().await;
    hook.set_delay(Duration::from_millis(700));
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let start = chrono::DateTime::from_timestamp_millis(now - 600_000)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let config = format!(
        "[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"{}\"]\npoll_interval_secs = 1\nlookback_secs = 300\ncheckpoint_path = \"{}\"\nstart = \"{start}\"\n[[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\nretry_max_secs = 60\n[throttle]\nwindow_secs = 0\n[server]\nlisten = \"\"\n",
        group.name,
        cp.display(),
        hook.url()
    );
    let first_dir = tempfile::tempdir().unwrap();
    let mut first = spawn_rootwatch(&config, first_dir.path());
    // Killed when the checkpoint has passed some alerts and more were
    // delivered since: those may repeat, the checkpointed ones may not.
    eventually(
        Duration::from_secs(60),
        "a checkpoint past some alerts, and more delivered since",
        || async {
            let handled = std::fs::read(&cp)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|c| {
                    c["groups"][&group.name]["handled"]
                        .as_object()
                        .map(|h| h.len())
                })
                .unwrap_or(0);
            let delivered = hook.accepted().len();
            handled > 0 && delivered > handled && delivered < expected.len()
        },
    )
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = hook.accepted_by_event();
    let saved = checkpointed(&cp, &group, &cw_ids);
    assert!(
        before.len() < expected.len(),
        "killed mid-stream: {} delivered",
        before.len()
    );
    for id in &saved {
        assert!(
            before.contains_key(id),
            "{id} checkpointed, never delivered"
        );
    }

    hook.set_delay(Duration::ZERO);
    let second_dir = tempfile::tempdir().unwrap();
    let second = spawn_rootwatch(&config, second_dir.path());
    eventually(Duration::from_secs(60), "every alert", || async {
        hook.accepted_by_event().len() == expected.len()
    })
    .await;
    // Polls re-read the lookback window: give repeats the chance to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    sigterm(&second);
    let code = wait_exit_async(second, Duration::from_secs(40)).await;
    let log = log(second_dir.path());
    assert_eq!(code, Some(0), "{log}");

    let repeated = assert_all_arrived(&hook, &expected, &log);
    let resent: Vec<&String> = saved
        .iter()
        .filter(|id| repeated.contains_key(*id))
        .collect();
    println!(
        "kill -9 (cloudwatch logs): {} alerts before the kill, {} of them checkpointed; {} alerted twice, {} of those checkpointed",
        before.len(),
        saved.len(),
        repeated.len(),
        resent.len()
    );
    assert!(
        resent.is_empty(),
        "checkpointed alerts sent again: {resent:?}"
    );
    for (id, n) in &repeated {
        assert_eq!(*n, 2, "{id}: one crash, at most one repeat");
        assert!(before.contains_key(id), "{id} repeated without a crash");
    }
    assert!(saved.len() + repeated.len() >= before.len());
}

// ---------------------------------------------------------------- slow sink

/// A receiver that holds every answer, in front of ten times
/// `max_in_flight_messages` queued: receiving pauses at the limit (the
/// queue's in-flight count and the daemon's gauge stay there), resident
/// memory stays small; once released, everything is delivered once.
///
/// 500 messages, not thousands: the emulator's SQS cost per call grows
/// with the queue's length (enqueueing 2,000 takes minutes), and ten times
/// the limit already shows that the backlog stays in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_pauses_receiving_and_memory_stays_bounded() {
    const LIMIT: u64 = 50;
    const RSS_BOUND_KIB: u64 = 200 * 1024;
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let expected = ids("slow", 500);
    aws.send_all(&queue, &bodies(&expected)).await;
    let hook = Receiver::start().await;
    hook.hold();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = sqs_config(
        &queue,
        10,
        &format!("max_in_flight_messages = {LIMIT}"),
        &hook,
        "retry_max_secs = 120\ntimeout_secs = 60",
        Some(admin),
        25,
    );
    let child = spawn_rootwatch(&config, dir.path());
    let pid = child.id();
    let name = format!("sqs-{}", queue.rsplit('/').next().unwrap());
    let gauge = format!("rootwatch_in_flight_messages{{source=\"{name}\"}}");
    let received = format!("rootwatch_messages_received_total{{source=\"{name}\"}}");
    eventually(
        Duration::from_secs(60),
        "the in-flight limit reached",
        || async { scrape(admin, &gauge).await == Some(LIMIT as f64) },
    )
    .await;
    let baseline = rss_kib(pid).unwrap();

    // Held for 6 s: nothing more is received.
    let mut peak_hidden = 0;
    let mut peak_rss = baseline;
    let received_at_limit = scrape(admin, &received).await.unwrap();
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let (_, hidden) = aws.visible_and_hidden(&queue).await;
        peak_hidden = peak_hidden.max(hidden);
        peak_rss = peak_rss.max(rss_kib(pid).unwrap());
        assert!(scrape(admin, &gauge).await.unwrap() <= LIMIT as f64);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let received_after = scrape(admin, &received).await.unwrap();
    let log_text = log(dir.path());
    assert!(hook.accepted().is_empty());
    assert!(
        peak_hidden <= LIMIT + 10,
        "in flight on the queue: {peak_hidden}\n{log_text}"
    );
    assert_eq!(
        received_after, received_at_limit,
        "receiving paused while the sink held everything"
    );
    assert!(received_after <= LIMIT as f64 + 10.0, "{received_after}");
    let held_rss = peak_rss;

    hook.release();
    let started = Instant::now();
    let mut done = false;
    while started.elapsed() < Duration::from_secs(180) {
        peak_rss = peak_rss.max(rss_kib(pid).unwrap_or(0));
        if hook.accepted_by_event().len() == expected.len() {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        done,
        "{} of {} delivered after release",
        hook.accepted_by_event().len(),
        expected.len()
    );
    let drain = started.elapsed();
    queue_drained(&aws, &queue).await;
    sigterm(&child);
    let code = wait_exit_async(child, Duration::from_secs(40)).await;
    let log_text = log(dir.path());
    assert_eq!(code, Some(0), "{log_text}");
    let repeated = assert_all_arrived(&hook, &expected, &log_text);
    println!(
        "slow sink: in flight on the queue at most {peak_hidden} (limit {LIMIT}); received {received_after} while held; VmRSS {baseline} KiB at the limit, {held_rss} KiB peak while held, {peak_rss} KiB peak overall; {} delivered in {drain:?} after release; {} repeated",
        expected.len(),
        repeated.len()
    );
    assert!(
        peak_rss < RSS_BOUND_KIB,
        "resident memory {peak_rss} KiB over {RSS_BOUND_KIB} KiB"
    );
    assert!(repeated.is_empty(), "no crash, no repeat: {repeated:?}");
}

// ---------------------------------------------------------------- SIGTERM

/// SIGTERM with many messages in flight behind a slow receiver: exit 0
/// within grace + hand-back; each message was either delivered and deleted
/// or handed back (visible at once, long before its visibility timeout);
/// a second process delivers the rest. Only handed-back messages may repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_delivers_or_hands_back_every_message() {
    const GRACE: u64 = 2;
    const HAND_BACK: u64 = 5;
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let expected = ids("term", 40);
    aws.send_all(&queue, &bodies(&expected)).await;
    let hook = Receiver::start().await;
    hook.set_delay(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let config = sqs_config(&queue, 60, "", &hook, "retry_max_secs = 60", None, GRACE);
    let child = spawn_rootwatch(&config, dir.path());
    eventually(Duration::from_secs(60), "a first delivery", || async {
        !hook.accepted().is_empty()
    })
    .await;
    assert!(
        hook.arrived() > hook.accepted().len(),
        "deliveries in progress at SIGTERM"
    );
    let signalled = Instant::now();
    sigterm(&child);
    let code = wait_exit_async(child, Duration::from_secs(GRACE + HAND_BACK + 20)).await;
    let took = signalled.elapsed();
    let log_text = log(dir.path());
    assert_eq!(code, Some(0), "{log_text}");
    assert!(
        took < Duration::from_secs(GRACE + HAND_BACK + 3),
        "exit took {took:?}"
    );
    let delivered: BTreeSet<String> = hook.accepted_by_event().into_keys().collect();

    // Handed back: receivable at once, not after the 60 s timeout.
    let mut returned: BTreeMap<String, String> = BTreeMap::new();
    let want = expected.len() - delivered.len();
    let until = Instant::now() + Duration::from_secs(10);
    while returned.len() < want && Instant::now() < until {
        let got = aws
            .sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in got.messages.unwrap_or_default() {
            let body: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let id = body["detail"]["eventID"].as_str().unwrap().to_owned();
            returned.insert(id, m.receipt_handle.unwrap());
        }
    }
    let returned_ids: BTreeSet<String> = returned.keys().cloned().collect();
    let lost: Vec<&String> = expected
        .iter()
        .filter(|id| !delivered.contains(*id) && !returned_ids.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "neither delivered nor handed back: {lost:?}\n{log_text}"
    );
    // What was delivered was deleted: only the handed-back messages remain.
    assert_eq!(
        aws.depth(&queue).await,
        returned.len() as u64,
        "delivered messages were deleted"
    );
    assert!(!returned.is_empty(), "some deliveries were cut short");

    // Make them visible again for the next process.
    for receipt in returned.values() {
        aws.sqs
            .change_message_visibility()
            .queue_url(&queue)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    hook.set_delay(Duration::ZERO);
    let second_dir = tempfile::tempdir().unwrap();
    let second = spawn_rootwatch(&config, second_dir.path());
    eventually(Duration::from_secs(60), "every alert", || async {
        hook.accepted_by_event().len() == expected.len()
    })
    .await;
    queue_drained(&aws, &queue).await;
    sigterm(&second);
    assert_eq!(
        wait_exit_async(second, Duration::from_secs(40)).await,
        Some(0)
    );
    let repeated = assert_all_arrived(&hook, &expected, &log_text);
    println!(
        "sigterm under load: exit 0 after {took:?}; {} delivered before exit, {} handed back, {} repeated",
        delivered.len(),
        returned.len(),
        repeated.len()
    );
    for id in repeated.keys() {
        assert!(
            returned_ids.contains(id),
            "{id} repeated though it was not handed back"
        );
    }
    assert!(!log_text.contains("panicked"), "{log_text}");
}
