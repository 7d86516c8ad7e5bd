//! `rootwatch run` following CloudWatch Logs groups in the moto emulator,
//! alerting a real HTTP receiver on 127.0.0.1, with checkpoints in a
//! temporary directory.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

struct Conf {
    sources: String,
    hook: String,
    retry_max_secs: u64,
    grace_secs: u64,
}

impl Conf {
    /// Throttling is off: every event's alert is sent on its own, so each
    /// test counts alerts per event.
    fn toml(&self) -> String {
        format!(
            "{}[[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\nretry_max_secs = {}\n[server]\nlisten = \"\"\n[shutdown]\ngrace_secs = {}\n[throttle]\nwindow_secs = 0\n",
            self.sources, self.hook, self.retry_max_secs, self.grace_secs
        )
    }
}

fn source(group: &LogGroup, checkpoint: &Path, start_ms: i64) -> String {
    format!(
        "[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"{}\"]\npoll_interval_secs = 1\nlookback_secs = 300\ncheckpoint_path = \"{}\"\nstart = \"{}\"\n",
        group.name,
        checkpoint.display(),
        rfc3339(start_ms)
    )
}

fn conf(sources: String, hook: &Webhook) -> Conf {
    Conf {
        sources,
        hook: hook.url(),
        retry_max_secs: 60,
        grace_secs: 5,
    }
}

/// eventID -> how many alerts the receiver accepted for it.
fn alerts(hook: &Webhook) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in hook.delivered() {
        *m.entry(f["event_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    m
}

fn once(ids: &[&str]) -> BTreeMap<String, usize> {
    ids.iter().map(|id| (id.to_string(), 1)).collect()
}

fn checkpoint(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `(position_ms, number of handled ids)` of `group` in the file.
fn position(path: &Path, group: &LogGroup) -> (i64, usize) {
    let c = checkpoint(path);
    let g = &c["groups"][&group.name];
    (
        g["position_ms"].as_i64().unwrap(),
        g["handled"].as_object().map_or(0, |h| h.len()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_alert_once_including_those_put_while_running() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let t = now_ms();
    g.put(&[(t - 60_000, "cw-before-1"), (t - 30_000, "cw-before-2")])
        .await;

    let d = Daemon::start(
        &conf(source(&g, &cp, t - 600_000), &hook).toml(),
        &aws.config,
    )
    .await;
    eventually(LIMIT, "the two events put before start", || async {
        alerts(&hook).len() == 2
    })
    .await;
    let t2 = now_ms();
    g.put(&[(t2, "cw-running-1"), (t2 + 1, "cw-running-2")])
        .await;
    eventually(LIMIT, "the two events put while running", || async {
        alerts(&hook).len() == 4
    })
    .await;
    // Every poll re-reads the lookback window: nothing may alert twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.stop().await;

    assert_eq!(
        alerts(&hook),
        once(&["cw-before-1", "cw-before-2", "cw-running-1", "cw-running-2"])
    );
    let (pos, handled) = position(&cp, &g);
    assert!(
        pos > t2 + 1,
        "checkpoint {pos} passed every delivered event"
    );
    assert_eq!(handled, 4, "{}", checkpoint(&cp));
    assert_eq!(
        checkpoint(&cp)["source"],
        format!("cloudwatch_logs-{}", g.name)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_alerts_exactly_the_events_put_while_it_was_down() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let t = now_ms();
    g.put(&[(t - 60_000, "cw-first-run")]).await;
    let first = Webhook::ok().await;
    let d = Daemon::start(
        &conf(source(&g, &cp, t - 600_000), &first).toml(),
        &aws.config,
    )
    .await;
    eventually(LIMIT, "the first event", || async {
        alerts(&first).len() == 1
    })
    .await;
    d.stop().await;
    let (pos, handled) = position(&cp, &g);
    assert!(pos >= t - 60_000 && handled == 1, "{}", checkpoint(&cp));

    // While it is down: two new events, and one timestamped before the
    // checkpoint (ingested late) but inside the lookback window.
    let t2 = now_ms();
    g.put(&[
        (t2, "cw-while-down-1"),
        (t2 + 1, "cw-while-down-2"),
        (pos - 10_000, "cw-while-down-late"),
    ])
    .await;
    let second = Webhook::ok().await;
    // Same `start`: the checkpoint, not `start`, says where to resume.
    let d = Daemon::start(
        &conf(source(&g, &cp, t - 600_000), &second).toml(),
        &aws.config,
    )
    .await;
    eventually(LIMIT, "the three events put while down", || async {
        alerts(&second).len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.stop().await;
    assert_eq!(
        alerts(&second),
        once(&["cw-while-down-1", "cw-while-down-2", "cw-while-down-late"])
    );
    assert_eq!(alerts(&first), once(&["cw-first-run"]));
}

/// Polls reach back only by the overlap (here 30 s: events arrive at
/// once), so an event made searchable 120 s after its timestamp is found by
/// the next full read of the lookback, once, and counted as such. The full
/// read comes every 5 s here instead of the default minute, to keep the
/// test short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_beyond_the_overlap_is_found_by_the_next_full_read() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let name = unique("cwl_full").replace('-', "_");
    let t = now_ms();
    g.put(&[(t, "cw-on-time")]).await;
    let src = source(&g, &cp, t - 600_000).replace(
        "type = \"cloudwatch_logs\"",
        &format!("type = \"cloudwatch_logs\"\nname = \"{name}\"\nfull_read_interval_secs = 5"),
    );
    let toml = conf(src, &hook)
        .toml()
        .replace("listen = \"\"", "listen = \"127.0.0.1:0\"");
    let (d, admin) = Daemon::with_admin(&toml, Some(aws.config.clone()), None).await;
    let metric =
        |m: &str, labels: &str| format!("rootwatch_cloudwatch_{m}{{source=\"{name}\"{labels}}}");
    eventually(LIMIT, "the on-time event", || async {
        alerts(&hook).len() == 1
    })
    .await;
    // Polls have moved the checkpoint past the moment the late event claims.
    let late_ts = now_ms() - 120_000;
    eventually(LIMIT, "the checkpoint passes the on-time event", || async {
        position(&cp, &g).0 > t + 1_000
    })
    .await;
    assert_eq!(
        scrape(admin, &metric("full_read_finds_total", "")).await,
        Some(0.0)
    );
    g.put(&[(late_ts, "cw-late")]).await;
    eventually(LIMIT, "the late event", || async {
        alerts(&hook).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let finds = scrape(admin, &metric("full_read_finds_total", "")).await;
    let polls = scrape(admin, &metric("requests_total", ",read=\"poll\"")).await;
    let fulls = scrape(admin, &metric("requests_total", ",read=\"full\"")).await;
    d.stop().await;
    assert_eq!(alerts(&hook), once(&["cw-on-time", "cw-late"]));
    assert_eq!(finds, Some(1.0));
    assert!(
        polls.unwrap() > fulls.unwrap() && fulls.unwrap() >= 2.0,
        "{polls:?} {fulls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_holds_the_checkpoint_and_a_restart_during_it_still_alerts() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let (hook, up) = Webhook::switchable(true).await;
    let t = now_ms();
    g.put(&[(t - 90_000, "cw-before-outage")]).await;
    let mut c = conf(source(&g, &cp, t - 600_000), &hook);
    // Still retrying when stopped: its unit is released, not done.
    c.retry_max_secs = 600;
    c.grace_secs = 2;
    let d = Daemon::start(&c.toml(), &aws.config).await;
    eventually(LIMIT, "the event before the outage", || async {
        alerts(&hook).len() == 1
    })
    .await;

    up.store(false, Ordering::SeqCst);
    let undelivered = now_ms();
    g.put(&[(undelivered, "cw-during-outage")]).await;
    eventually(LIMIT, "a failed attempt", || async {
        hook.requests().len() > hook.delivered().len()
    })
    .await;
    // Several polls later the checkpoint has moved on from the delivered
    // event but not past the undelivered one.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (pos, handled) = position(&cp, &g);
    assert!(pos >= t - 90_000, "{}", checkpoint(&cp));
    assert!(
        pos < undelivered,
        "passed an undelivered alert: {}",
        checkpoint(&cp)
    );
    assert_eq!(handled, 1, "{}", checkpoint(&cp));

    let stopping = Instant::now();
    d.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(2 + 5 + 2));
    let (pos, handled) = position(&cp, &g);
    assert!(pos < undelivered && handled == 1, "{}", checkpoint(&cp));
    assert_eq!(alerts(&hook), once(&["cw-before-outage"]));

    let after = Webhook::ok().await;
    let d = Daemon::start(
        &conf(source(&g, &cp, t - 600_000), &after).toml(),
        &aws.config,
    )
    .await;
    eventually(LIMIT, "the alert held back by the outage", || async {
        alerts(&after).len() == 1
    })
    .await;
    eventually(LIMIT, "the checkpoint passes it", || async {
        position(&cp, &g).0 > undelivered
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.stop().await;
    assert_eq!(alerts(&after), once(&["cw-during-outage"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_event_is_retried_on_a_later_poll_while_running() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let (hook, up) = Webhook::switchable(false).await;
    let t = now_ms();
    g.put(&[(t - 10_000, "cw-retried")]).await;
    let mut c = conf(source(&g, &cp, t - 600_000), &hook);
    // Gives up within a second: the unit fails and the source retries it.
    c.retry_max_secs = 1;
    let d = Daemon::start(&c.toml(), &aws.config).await;
    eventually(LIMIT, "two rounds of failed deliveries", || async {
        hook.requests().len() >= 4
    })
    .await;
    assert!(position(&cp, &g).0 < t - 10_000, "{}", checkpoint(&cp));
    up.store(true, Ordering::SeqCst);
    eventually(LIMIT, "delivered once the webhook is up", || async {
        alerts(&hook).len() == 1
    })
    .await;
    eventually(LIMIT, "the checkpoint passes it", || async {
        position(&cp, &g).0 > t - 10_000
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.stop().await;
    assert_eq!(alerts(&hook), once(&["cw-retried"]));
    assert_eq!(position(&cp, &g).1, 1);
    assert!(
        !dir.path().join("checkpoints.dead-letter.jsonl").exists(),
        "recovered within the retry rounds: nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_matching_the_prefix_are_found_while_running() {
    let aws = Aws::new().await;
    let prefix = format!("{}/", unique("trail"));
    let a = LogGroup::create(&aws, format!("{prefix}a")).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let t = now_ms();
    a.put(&[(t - 5_000, "cw-prefix-a")]).await;
    let sources = format!(
        "[[sources]]\ntype = \"cloudwatch_logs\"\nname = \"trails\"\nlog_group_prefix = \"{prefix}\"\ndiscovery_interval_secs = 1\npoll_interval_secs = 1\ncheckpoint_path = \"{}\"\nstart = \"{}\"\n",
        cp.display(),
        rfc3339(t - 600_000)
    );
    let d = Daemon::start(&conf(sources, &hook).toml(), &aws.config).await;
    eventually(LIMIT, "the first group's event", || async {
        alerts(&hook).len() == 1
    })
    .await;
    let b = LogGroup::create(&aws, format!("{prefix}b")).await;
    b.put(&[(now_ms() - 1_000, "cw-prefix-b")]).await;
    eventually(LIMIT, "the new group's event", || async {
        alerts(&hook).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.stop().await;
    assert_eq!(alerts(&hook), once(&["cw-prefix-a", "cw-prefix-b"]));
    let c = checkpoint(&cp);
    assert_eq!(c["source"], "trails");
    assert!(c["discovered_at_ms"].as_i64().unwrap() > t, "{c}");
    assert_eq!(c["groups"].as_object().unwrap().len(), 2, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_log_group_fails_fast() {
    let aws = Aws::new().await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let sources = format!(
        "[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"rootwatch-no-such-group\"]\ncheckpoint_path = \"{}\"\n",
        cp.display()
    );
    let opts = rootwatch::app::Options {
        aws: Some(aws.config.clone()),
        ..Default::default()
    };
    let err = tokio::time::timeout(
        LIMIT,
        rootwatch::app::run_with(
            settings(&conf(sources, &hook).toml()),
            opts,
            std::future::pending(),
        ),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert!(matches!(err, rootwatch::app::RunError::Source(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "source `cloudwatch_logs-rootwatch-no-such-group`: log group `rootwatch-no-such-group` does not exist"
    );
    assert!(
        !cp.exists(),
        "nothing written for a source that did not start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_is_a_config_error_and_stays_untouched() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let corrupt: &[u8] =
        br#"{"version":1,"source":"cloudwatch_logs-0","groups":{"x":{"position_ms":17"#;
    std::fs::write(&cp, corrupt).unwrap();
    let config = conf(source(&g, &cp, now_ms()), &hook).toml();

    let opts = rootwatch::app::Options {
        aws: Some(aws.config.clone()),
        ..Default::default()
    };
    let err = tokio::time::timeout(
        LIMIT,
        rootwatch::app::run_with(settings(&config), opts, std::future::pending()),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert!(
        matches!(err, rootwatch::app::RunError::Checkpoint(_)),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("checkpoint file {} is corrupt: ", cp.display())),
        "{msg}"
    );
    assert!(msg.contains("left untouched"), "{msg}");
    assert_eq!(std::fs::read(&cp).unwrap(), corrupt);

    // The binary exits 78, as for any configuration error.
    let mut child = spawn_rootwatch(&config, dir.path());
    let log = dir.path().join("rootwatch.log");
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, LIMIT))
        .await
        .unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(78), "{log}");
    assert!(
        log.contains(&format!("checkpoint file {} is corrupt", cp.display())),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(std::fs::read(&cp).unwrap(), corrupt);
}

fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

/// A sink that refuses an alert (400) cannot hold the checkpoint back: the
/// finding goes to the dead-letter file (next to the checkpoint by
/// default) with the sink, status and error, the checkpoint passes the
/// event, and the alert is not sent again poll after poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_alert_is_dead_lettered_and_the_checkpoint_moves_on() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let dead = dir.path().join("checkpoints.dead-letter.jsonl");
    let hook = Webhook::start(|_| (axum::http::StatusCode::BAD_REQUEST, vec![])).await;
    let t = now_ms();
    g.put(&[(t - 20_000, "cw-rejected")]).await;
    let d = Daemon::start(
        &conf(source(&g, &cp, t - 600_000), &hook).toml(),
        &aws.config,
    )
    .await;
    eventually(
        LIMIT,
        "the checkpoint passes the rejected event",
        || async { cp.exists() && position(&cp, &g).0 > t - 20_000 },
    )
    .await;
    // Several more polls: the event is not sent again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.stop().await;
    assert_eq!(hook.requests().len(), 1, "sent once, not in a loop");
    let lines = dead_letters(&dead);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["source"], format!("cloudwatch_logs-{}", g.name));
    assert_eq!(l["sink"], "webhook-127.0.0.1");
    assert_eq!(l["reason"], "rejected");
    assert_eq!(l["status"], 400);
    assert_eq!(l["error"], "HTTP 400");
    assert_eq!(l["finding"]["event_id"], "cw-rejected");
    assert_eq!(l["finding"]["rule"], "root-api-call");
    assert!(l["input"].as_str().unwrap().starts_with(&g.name), "{l}");
    // The sink is named by its host (as its metrics are), never by its URL.
    let text = std::fs::read_to_string(&dead).unwrap();
    assert!(
        !text.contains(&hook.url()) && !text.contains("127.0.0.1:"),
        "no sink URL: {text}"
    );
}

/// A sink that is down for good: each round runs out of retry time, and
/// after the last round the finding is dead-lettered (reason deadline) so
/// the checkpoint is not held back forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_out_of_retry_rounds_is_dead_lettered() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let dead = dir.path().join("dead.jsonl");
    let (hook, _up) = Webhook::switchable(false).await;
    let t = now_ms();
    g.put(&[(t - 20_000, "cw-sink-down")]).await;
    let mut c = conf(
        format!(
            "{}dead_letter_path = \"{}\"\n",
            source(&g, &cp, t - 600_000),
            dead.display()
        ),
        &hook,
    );
    c.retry_max_secs = 1;
    let d = Daemon::start(&c.toml(), &aws.config).await;
    eventually(
        Duration::from_secs(60),
        "dead-lettered after the last round",
        || async { !dead_letters(&dead).is_empty() },
    )
    .await;
    eventually(LIMIT, "the checkpoint passes it", || async {
        position(&cp, &g).0 > t - 20_000
    })
    .await;
    let sent = hook.requests().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.stop().await;
    assert_eq!(hook.requests().len(), sent, "no more attempts after");
    assert!(
        sent >= rootwatch::source::cloudwatch_logs::DELIVERY_ATTEMPTS as usize,
        "{sent} attempts"
    );
    let lines = dead_letters(&dead);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["reason"], "deadline");
    assert_eq!(lines[0]["status"], serde_json::Value::Null);
    assert!(
        lines[0]["error"].as_str().unwrap().contains("503"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[0]["finding"]["event_id"], "cw-sink-down");
}

/// A backfill from 30 days back reaches today's events in a few polls:
/// catching up over empty time widens the window instead of stepping
/// through it 15 minutes at a time (about 2,900 calls at 4 per second).
/// Events in the middle of the empty stretch still alert, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_from_30_days_back_reaches_todays_events_within_seconds() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let t = now_ms();
    const DAY: i64 = 86_400_000;
    g.put(&[
        (t - 10 * DAY, "cw-backfill-10-days"),
        (t - 10 * DAY + 1, "cw-backfill-10-days-b"),
        (t - DAY, "cw-backfill-yesterday"),
        (t - 1_000, "cw-backfill-just-now"),
    ])
    .await;
    let d = Daemon::start(
        &conf(source(&g, &cp, t - 30 * DAY), &hook).toml(),
        &aws.config,
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "every event, today's included",
        || async { alerts(&hook).len() == 4 },
    )
    .await;
    let t2 = now_ms();
    g.put(&[(t2, "cw-backfill-after-start")]).await;
    eventually(LIMIT, "the event put while running", || async {
        alerts(&hook).len() == 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.stop().await;
    assert_eq!(
        alerts(&hook),
        once(&[
            "cw-backfill-10-days",
            "cw-backfill-10-days-b",
            "cw-backfill-yesterday",
            "cw-backfill-just-now",
            "cw-backfill-after-start"
        ])
    );
}

/// A CloudWatch Logs source whose polls keep failing is degraded, as an
/// SQS source is: `/readyz` answers 503 naming the source and the kind of
/// failure (never the service's text, which names accounts and roles) and
/// `rootwatch_source_up` is 0, until a poll succeeds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_polls_degrade_the_source_without_showing_the_error_text() {
    let aws = Aws::new().await;
    let group = LogGroup::new(&aws).await;
    let proxy = FaultProxy::start().await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let name = unique("cwl_health").replace('-', "_");
    let src = source(&group, &dir.path().join("cp.json"), now_ms()).replace(
        "type = \"cloudwatch_logs\"",
        &format!("type = \"cloudwatch_logs\"\nname = \"{name}\""),
    );
    let toml = conf(src, &hook)
        .toml()
        .replace("listen = \"\"", "listen = \"127.0.0.1:0\"");
    let (d, admin) = Daemon::with_admin(&toml, Some(aws_at(&proxy.url).await), None).await;
    let up = || async {
        metric_in(
            &admin_get(admin, "/metrics").await.1,
            "rootwatch_source_up",
            &format!("source=\"{name}\""),
        )
    };
    eventually(LIMIT, "ready", || async {
        admin_get(admin, "/readyz").await.0 == 200
    })
    .await;
    assert_eq!(up().await, 1.0);

    proxy.set_logs_fault(Some((
        400,
        "AccessDeniedException",
        "User: arn:aws:sts::444455556666:assumed-role/rootwatch-reader/i-0abc is not authorized to perform: logs:FilterLogEvents on resource: arn:aws:logs:us-east-1:444455556666:log-group:trail",
    )));
    eventually(
        Duration::from_secs(60),
        "/readyz 503 naming the source and the kind of failure",
        || async {
            let (code, body) = admin_get(admin, "/readyz").await;
            code == 503
                && body.starts_with("degraded\n")
                && body.contains(&format!("source `{name}`"))
                && body.trim_end().ends_with(": denied")
        },
    )
    .await;
    let (_, body) = admin_get(admin, "/readyz").await;
    assert!(
        !body.contains("444455556666") && !body.contains("arn:"),
        "{body}"
    );
    assert_eq!(up().await, 0.0);
    assert!(proxy.answers("FilterLogEvents", 400) >= 3);

    proxy.set_logs_fault(None);
    eventually(
        Duration::from_secs(120),
        "ready again after a poll succeeds",
        || async { admin_get(admin, "/readyz").await == (200, "ready\n".to_owned()) },
    )
    .await;
    assert_eq!(up().await, 1.0);
    d.stop().await;
}

/// An event made searchable more than `lookback_secs` after its timestamp
/// is counted: read this time (the checkpoint was still before it), but
/// events as late as it can be passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_later_than_the_lookback_are_counted() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let name = unique("cwl_late").replace('-', "_");
    let start = now_ms() - 900_000;
    g.put(&[(now_ms() - 400_000, "cw-400s-late")]).await;
    let src = source(&g, &dir.path().join("cp.json"), start).replace(
        "type = \"cloudwatch_logs\"",
        &format!("type = \"cloudwatch_logs\"\nname = \"{name}\""),
    );
    let toml = conf(src, &hook)
        .toml()
        .replace("listen = \"\"", "listen = \"127.0.0.1:0\"");
    let (d, admin) = Daemon::with_admin(&toml, Some(aws.config.clone()), None).await;
    eventually(LIMIT, "the late event's alert", || async {
        alerts(&hook).contains_key("cw-400s-late")
    })
    .await;
    let late = scrape(
        admin,
        &format!("rootwatch_cloudwatch_late_events_total{{source=\"{name}\"}}"),
    )
    .await;
    d.stop().await;
    assert_eq!(late, Some(1.0));
}

/// With `dead_letter_queue_url` (no volume needed), a rejected alert is
/// sent to the queue instead of a file, and the checkpoint moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_alert_goes_to_the_dead_letter_queue() {
    let aws = Aws::new().await;
    let g = LogGroup::new(&aws).await;
    let (queue, _) = aws.queue(None).await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    let hook = Webhook::start(|_| (axum::http::StatusCode::BAD_REQUEST, vec![])).await;
    let t = now_ms();
    g.put(&[(t - 20_000, "cw-rejected-to-queue")]).await;
    let src = format!(
        "{}dead_letter_queue_url = \"{queue}\"\n",
        source(&g, &cp, t - 600_000)
    );
    let d = Daemon::start(&conf(src, &hook).toml(), &aws.config).await;
    eventually(
        LIMIT,
        "the checkpoint passes the rejected event",
        || async { cp.exists() && position(&cp, &g).0 > t - 20_000 },
    )
    .await;
    d.stop().await;
    assert_eq!(hook.requests().len(), 1, "sent once, not in a loop");
    assert!(
        !dir.path().join("checkpoints.dead-letter.jsonl").exists(),
        "no file"
    );
    let got = aws.receive_bodies(&queue).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let l: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(l["source"], format!("cloudwatch_logs-{}", g.name));
    assert_eq!(l["reason"], "rejected");
    assert_eq!(l["status"], 400);
    assert_eq!(l["finding"]["event_id"], "cw-rejected-to-queue");
    assert_eq!(l["finding"]["event"]["eventID"], "cw-rejected-to-queue");
    assert!(l["input"].as_str().unwrap().starts_with(&g.name), "{l}");
}
