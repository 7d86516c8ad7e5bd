//! Several `rootwatch run` processes sharing CloudWatch Logs groups through
//! checkpoints and leases in a DynamoDB table (moto), alerting one receiver
//! on 127.0.0.1.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use common::*;
use rootwatch::source::cloudwatch_logs::checkpoint_table::checkpoint_of;

const LEASE_SECS: u64 = 10;
const REPLICAS: usize = 3;
const GROUPS: usize = 5;

/// A table as the CloudFormation template makes it: `pk` (string) only.
async fn table(aws: &Aws) -> (aws_sdk_dynamodb::Client, String) {
    let ddb = aws_sdk_dynamodb::Client::new(&aws.config);
    let name = unique("checkpoints");
    ddb.create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    (ddb, name)
}

/// log group -> (lease owner, number of handled ids) of the shared source.
async fn leases(ddb: &aws_sdk_dynamodb::Client, table: &str) -> HashMap<String, (String, usize)> {
    let items = ddb
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let text = |i: &HashMap<String, AttributeValue>, k: &str| {
        i.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    items
        .items()
        .iter()
        .filter(|i| text(i, "kind") == "group")
        .map(|i| {
            let handled = checkpoint_of(i).unwrap().map_or(0, |c| c.handled.len());
            (text(i, "log_group"), (text(i, "lease_owner"), handled))
        })
        .collect()
}

/// The replicas, killed if the test ends early (a failed assertion), so
/// none outlives it.
struct Replicas(Vec<Option<std::process::Child>>);

impl Drop for Replicas {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn alerts(hook: &Webhook) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in hook.delivered() {
        *m.entry(f["event_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    m
}

/// Three replicas split five groups; every event alerts exactly once. One
/// replica is killed with SIGKILL: the others take its groups over from
/// their last checkpoints once its leases expire, and every event put
/// after the kill alerts exactly once too.
///
/// moto evaluates a conditional write and applies it without holding off a
/// concurrent one (DynamoDB serialises writes to an item), so two replicas
/// asking for the same free lease in the same few milliseconds may both get
/// it there. The replicas therefore start one after another (a rolling
/// start: the first takes every group, the others get theirs handed back),
/// and the jittered lease rounds keep the two survivors from asking for an
/// expired lease at the same instant. Exactly once is the claim for this
/// sequence; in general a takeover may repeat an alert, never lose one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_groups_and_take_over_a_killed_ones() {
    let aws = Aws::new().await;
    let (ddb, table) = table(&aws).await;
    let hook = Webhook::ok().await;
    let mut groups = Vec::new();
    for _ in 0..GROUPS {
        groups.push(LogGroup::new(&aws).await);
    }
    let t = now_ms();
    let mut expected = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        let ids = [format!("before-{i}-a"), format!("before-{i}-b")];
        g.put(&[(t - 60_000, &ids[0]), (t - 30_000, &ids[1])]).await;
        for id in ids {
            expected.insert(id, 1);
        }
    }
    let names: Vec<String> = groups.iter().map(|g| format!("\"{}\"", g.name)).collect();
    let dirs: Vec<_> = (0..REPLICAS)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let config = |dir: &std::path::Path| {
        format!(
            "[[sources]]\ntype = \"cloudwatch_logs\"\nname = \"shared\"\nlog_groups = [{}]\npoll_interval_secs = 1\nlookback_secs = 300\nstart = \"{}\"\ncheckpoint_table = \"{table}\"\nlease_duration_secs = {LEASE_SECS}\ndead_letter_path = \"{}\"\n\
             [[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\nretry_max_secs = 60\n[server]\nlisten = \"\"\n[shutdown]\ngrace_secs = 5\n[throttle]\nwindow_secs = 0\n",
            names.join(", "),
            rfc3339(t - 600_000),
            dir.join("dead-letter.jsonl").display(),
            hook.url()
        )
    };
    let spawn = |i: usize| {
        let dir = dirs[i].path();
        let path = dir.join("rootwatch.toml");
        std::fs::write(&path, config(dir)).unwrap();
        let log = std::fs::File::create(dir.join("rootwatch.log")).unwrap();
        Some(
            rootwatch_at_emulator(&["run", "--config"])
                .arg(&path)
                .env("HOSTNAME", format!("replica-{i}"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let logs = || {
        dirs.iter()
            .map(|d| std::fs::read_to_string(d.path().join("rootwatch.log")).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    // The first replica alone takes every group (its share of one live
    // replica) and alerts what was put before it started.
    let mut replicas = Replicas(vec![spawn(0)]);
    let children = &mut replicas.0;
    let limit = Duration::from_secs(60);
    let start = Instant::now();
    loop {
        let l = leases(&ddb, &table).await;
        if l.len() == GROUPS
            && l.values().all(|(o, _)| o.starts_with("replica-0-"))
            && alerts(&hook).len() == expected.len()
        {
            break;
        }
        assert!(
            start.elapsed() < limit,
            "the first replica did not take every group within {limit:?}: {l:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Two more join: the first hands groups back (after their last
    // checkpoint) until each holds at most ceil(5 / 3) = 2, and every
    // checkpoint records its group's two alerted events.
    children.push(spawn(1));
    children.push(spawn(2));
    // Every group is leased by some replica, the replicas spread the
    // groups (at most ceil(5 / 3) = 2 each), and every event put before
    // the start alerted and is recorded in its group's checkpoint.
    let limit = Duration::from_secs(90);
    let start = Instant::now();
    loop {
        let l = leases(&ddb, &table).await;
        let mut per_owner: HashMap<&str, usize> = HashMap::new();
        for (owner, _) in l.values() {
            *per_owner.entry(owner.as_str()).or_default() += 1;
        }
        let spread = l.len() == GROUPS
            && l.values()
                .all(|(o, handled)| !o.is_empty() && *handled == 2)
            && per_owner.len() == REPLICAS
            && per_owner.values().all(|&n| n <= GROUPS.div_ceil(REPLICAS));
        if spread && alerts(&hook).len() == expected.len() {
            break;
        }
        assert!(
            start.elapsed() < limit,
            "groups not shared out within {limit:?}: {l:?}\n{:?}\n{}",
            alerts(&hook),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(alerts(&hook), expected, "{}", logs());

    // SIGKILL a replica that holds groups: no clean shutdown, no release.
    let l = leases(&ddb, &table).await;
    let victim = (0..REPLICAS)
        .find(|i| {
            l.values()
                .any(|(o, _)| o.starts_with(&format!("replica-{i}-")))
        })
        .unwrap();
    let victim_prefix = format!("replica-{victim}-");
    let orphaned: Vec<String> = l
        .iter()
        .filter(|(_, (o, _))| o.starts_with(&victim_prefix))
        .map(|(g, _)| g.clone())
        .collect();
    let mut child = children[victim].take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = Instant::now();

    let t2 = now_ms();
    for (i, g) in groups.iter().enumerate() {
        let id = format!("after-{i}");
        g.put(&[(t2, &id)]).await;
        expected.insert(id, 1);
    }
    // A lease expires LEASE_SECS after its last renewal; the others look every
    // third of it, then poll the group: well inside three lease durations.
    let limit = Duration::from_secs(LEASE_SECS * 3);
    loop {
        let l = leases(&ddb, &table).await;
        let taken = orphaned.iter().all(|g| {
            l.get(g)
                .is_some_and(|(o, _)| !o.starts_with(&victim_prefix))
        });
        if taken && alerts(&hook).len() == expected.len() {
            eprintln!(
                "taken over and alerted {:?} after the kill",
                killed_at.elapsed()
            );
            break;
        }
        assert!(
            killed_at.elapsed() < limit,
            "{orphaned:?} not taken over within {limit:?}: {l:?}\n{:?}\n{}",
            alerts(&hook),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Polls re-read the lookback window: give a repeat time to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(alerts(&hook), expected, "{}", logs());
    let text = logs();
    assert!(
        text.contains("took over an expired log group lease"),
        "{text}"
    );

    for c in children.iter_mut().flatten() {
        sigterm(c);
    }
    for c in children.iter_mut().flatten() {
        let code = tokio::task::block_in_place(|| wait_exit(c, Duration::from_secs(60)));
        assert_eq!(code, Some(0), "{}", logs());
    }
    // A clean stop releases the leases for the next replica at once.
    let l = leases(&ddb, &table).await;
    assert!(
        l.values()
            .all(|(o, _)| o.is_empty() || o.starts_with(&victim_prefix)),
        "{l:?}"
    );
}

/// The lease rules on the table itself, with the clock passed in: a held
/// lease cannot be taken; an expired one is taken over with the checkpoint
/// its owner last wrote; the old owner's renewals and checkpoint writes are
/// refused from then on, and its release leaves the new owner's lease be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_refuses_a_lost_lease_and_hands_over_the_last_checkpoint() {
    use rootwatch::source::cloudwatch_logs::checkpoint::GroupCheckpoint;
    use rootwatch::source::cloudwatch_logs::checkpoint_table::{CheckpointTable, TableError};
    use rootwatch::source::cloudwatch_logs::handled::EventKey;
    let aws = Aws::new().await;
    let (_, table) = table(&aws).await;
    let lease = Duration::from_secs(10);
    let a = CheckpointTable::new(&aws.config, &table, "src", "replica-a".into(), lease);
    let b = CheckpointTable::new(&aws.config, &table, "src", "replica-b".into(), lease);
    let t = 1_800_000_000_000;

    let got = a.acquire("g", t, 1_000).await.unwrap().unwrap();
    assert_eq!(
        got.checkpoint.position_ms, 1_000,
        "a new group begins at its start"
    );
    assert_eq!(got.from, None);
    assert!(
        b.acquire("g", t + 1_000, 5).await.unwrap().is_none(),
        "held"
    );
    let written = GroupCheckpoint {
        position_ms: 2_000,
        handled: [(EventKey::of("ev-1"), 1_990)].into(),
    };
    a.save("g", &written).await.unwrap();
    assert!(a.renew("g", t + 5_000).await.is_ok());
    // Renewed until t + 15 s: still held at t + 14 s, expired after.
    assert!(b.acquire("g", t + 14_000, 5).await.unwrap().is_none());
    let took = b.acquire("g", t + 15_001, 5).await.unwrap().unwrap();
    assert_eq!(took.checkpoint, written);
    assert_eq!(took.from.as_deref(), Some("replica-a"));

    let stale = GroupCheckpoint {
        position_ms: 3_000,
        handled: Default::default(),
    };
    assert!(matches!(
        a.save("g", &stale).await,
        Err(TableError::Lost { .. })
    ));
    assert!(matches!(
        a.renew("g", t + 16_000).await,
        Err(TableError::Lost { .. })
    ));
    a.release("g").await.unwrap();
    assert!(
        a.acquire("g", t + 16_000, 5).await.unwrap().is_none(),
        "b holds it still"
    );

    // b releases: the lease is free at once, with b's checkpoint.
    let later = GroupCheckpoint {
        position_ms: 4_000,
        handled: Default::default(),
    };
    b.save("g", &later).await.unwrap();
    b.release("g").await.unwrap();
    let back = a.acquire("g", t + 16_500, 5).await.unwrap().unwrap();
    assert_eq!(back.checkpoint, later);
    assert_eq!(back.from, None, "a released lease is not a takeover");
}

/// A DynamoDB item's size as DynamoDB counts it against its 400 KB limit:
/// attribute names plus values (a number counted by its digits, which is
/// more than DynamoDB's own count).
fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    other => panic!("an attribute rootwatch does not write: {other:?}"),
                }
        })
        .sum()
}

/// Every item of the table, by `pk`.
async fn items(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> BTreeMap<String, HashMap<String, AttributeValue>> {
    let mut out = BTreeMap::new();
    let mut start = None;
    loop {
        let page = ddb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        for i in page.items() {
            let pk = i["pk"].as_s().unwrap().clone();
            out.insert(pk, i.clone());
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return out,
        }
    }
}

const MANY: usize = 20_000;

/// 20,000 alerted events inside the lookback: their handled ids would be
/// far more than one 400 KB item could hold as text. The first replica
/// alerts each once and stops; a second replica takes the lease over from
/// the checkpoint it left, which must let it skip every one of them. The
/// checkpoint item stays under DynamoDB's item limit (moto refuses larger
/// writes, as DynamoDB does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_alerts_in_the_lookback_fit_the_item_and_a_new_replica_repeats_none() {
    let aws = Aws::new().await;
    let (ddb, table) = table(&aws).await;
    let receiver = Receiver::start().await;
    let group = LogGroup::new(&aws).await;
    let t = now_ms();
    let ids: Vec<String> = (0..MANY).map(|i| format!("many-{i:05}")).collect();
    // Spread over the last 40 s, a few per millisecond apart.
    let events: Vec<(i64, &str)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (t - 40_000 + (i as i64) * 2, id.as_str()))
        .collect();
    // About 900 bytes an event: 1,000 a call stays under PutLogEvents' 1 MB.
    for batch in events.chunks(1_000) {
        group.put(batch).await;
    }
    // window_secs = 0 turns throttling off, so each of the events is its
    // own alert (and a repeat of any of them shows). The lookback (an
    // hour) keeps every event inside the window both replicas re-read,
    // however long the first one takes to deliver them.
    let config = format!(
        "[[sources]]\ntype = \"cloudwatch_logs\"\nname = \"many\"\nlog_groups = [\"{}\"]\npoll_interval_secs = 2\nlookback_secs = 3600\nstart = \"{}\"\ncheckpoint_table = \"{table}\"\nlease_duration_secs = {LEASE_SECS}\ndead_letter_path = \"{}\"\n\
         [[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\nretry_max_secs = 60\n[server]\nlisten = \"\"\n[shutdown]\ngrace_secs = 30\n[throttle]\nwindow_secs = 0\n",
        group.name,
        rfc3339(t - 600_000),
        std::env::temp_dir()
            .join(format!("{}.jsonl", unique("dead-letter")))
            .display(),
        receiver.url()
    );
    let started = Instant::now();
    let first = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(900),
        "the first replica alerts all 20,000 events",
        || async { receiver.accepted().len() >= MANY },
    )
    .await;
    eprintln!("{MANY} alerts in {:?}", started.elapsed());
    first.stop().await;
    let once = receiver.accepted_by_event();
    assert_eq!(once.len(), MANY);
    assert!(once.values().all(|&n| n == 1));
    let pk = format!("many#{}", group.name);
    let sizes = |items: &BTreeMap<String, HashMap<String, AttributeValue>>| {
        items
            .iter()
            .filter(|(k, _)| k.starts_with(&pk))
            .map(|(k, i)| (k.clone(), item_size(i)))
            .collect::<Vec<_>>()
    };
    let written = items(&ddb, &table).await;
    eprintln!(
        "checkpoint items after the first replica: {:?}",
        sizes(&written)
    );
    let position = |items: &BTreeMap<String, HashMap<String, AttributeValue>>| {
        items[&pk]["position_ms"]
            .as_n()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let first_position = position(&written);
    // Every alerted event is in the item, none left out.
    let kept = checkpoint_of(&written[&pk]).unwrap().unwrap().handled.len();
    assert_eq!(kept, MANY);

    // A new replica takes the lease over. An event put after it started is
    // read after all the earlier ones (a read goes in time order): once its
    // alert arrived, the new replica has read the whole lookback.
    let second = Daemon::start(&config, &aws.config).await;
    group.put(&[(now_ms(), "after-restart")]).await;
    eventually(
        Duration::from_secs(300),
        "the second replica alerts the event put after it started",
        || async { receiver.accepted_by_event().contains_key("after-restart") },
    )
    .await;
    // Polls re-read the lookback every 2 s: give a repeat time to show.
    tokio::time::sleep(Duration::from_secs(8)).await;
    second.stop().await;
    let all = receiver.accepted_by_event();
    let repeated = all.values().filter(|&&n| n > 1).count();
    assert_eq!(
        repeated, 0,
        "the second replica alerted {repeated} events again"
    );
    assert_eq!(all.len(), MANY + 1);
    // The first replica's checkpoint passed every event it alerted.
    assert!(
        first_position >= t - 40_000 + 2 * (MANY as i64 - 1),
        "the first replica left its checkpoint at {first_position}"
    );
    let after = items(&ddb, &table).await;
    for (k, size) in sizes(&after) {
        assert!(size < 400_000, "item {k} holds {size} bytes");
    }
}

/// An item written before handled events were keys (`handled` as a JSON
/// map of event ids) is read as it is, and the first checkpoint write
/// replaces it with `handled_keys`: a deployment upgrades in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_with_handled_ids_as_json_is_read_and_rewritten_with_keys() {
    use rootwatch::source::cloudwatch_logs::checkpoint_table::CheckpointTable;
    use rootwatch::source::cloudwatch_logs::handled::EventKey;
    let aws = Aws::new().await;
    let (ddb, table) = table(&aws).await;
    let id = "37000000000000000000000000000000000000000000000000000001";
    ddb.put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("src#g".into()))
        .item("source", AttributeValue::S("src".into()))
        .item("kind", AttributeValue::S("group".into()))
        .item("log_group", AttributeValue::S("g".into()))
        .item("position_ms", AttributeValue::N("2000".into()))
        .item("handled", AttributeValue::S(format!(r#"{{"{id}":1990}}"#)))
        .item("lease_counter", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let a = CheckpointTable::new(
        &aws.config,
        &table,
        "src",
        "replica-a".into(),
        Duration::from_secs(10),
    );
    let got = a.acquire("g", 1_800_000_000_000, 5).await.unwrap().unwrap();
    assert_eq!(got.checkpoint.position_ms, 2_000);
    assert_eq!(got.checkpoint.handled, [(EventKey::of(id), 1_990)].into());
    let saved = a.save("g", &got.checkpoint).await.unwrap();
    assert_eq!((saved.kept, saved.dropped), (1, 0));
    let item = &items(&ddb, &table).await["src#g"];
    assert!(item.contains_key("handled_keys"), "{item:?}");
    assert!(!item.contains_key("handled"), "{item:?}");
    assert_eq!(checkpoint_of(item).unwrap(), Some(got.checkpoint));
}

/// Past the size bound the write still succeeds on moto (which refuses
/// items over the limit, counting binary by its base64): the oldest handled
/// events are left out and said so, and the next owner gets the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_bound_a_checkpoint_is_written_without_its_oldest_events() {
    use rootwatch::source::cloudwatch_logs::checkpoint::GroupCheckpoint;
    use rootwatch::source::cloudwatch_logs::checkpoint_table::CheckpointTable;
    use rootwatch::source::cloudwatch_logs::handled::EventKey;
    let aws = Aws::new().await;
    let (ddb, table) = table(&aws).await;
    let lease = Duration::from_secs(10);
    let a = CheckpointTable::new(&aws.config, &table, "src", "replica-a".into(), lease);
    let b = CheckpointTable::new(&aws.config, &table, "src", "replica-b".into(), lease);
    let t = 1_800_000_000_000;
    a.acquire("g", t, 0).await.unwrap().unwrap();
    // 40,000 events over a day (the longest lookback), about 2 s apart:
    // 10 bytes each, more than the bound holds.
    let c = GroupCheckpoint {
        position_ms: t,
        handled: (0..40_000i64)
            .map(|i| (EventKey::of(&format!("ev-{i}")), t - 86_400_000 + i * 2_160))
            .collect(),
    };
    let saved = a.save("g", &c).await.unwrap();
    assert!(saved.dropped > 0, "{saved:?}");
    assert_eq!(saved.kept + saved.dropped, 40_000);
    let item = &items(&ddb, &table).await["src#g"];
    assert!(item_size(item) < 400_000, "{}", item_size(item));
    a.release("g").await.unwrap();
    let took = b.acquire("g", t + 1_000, 0).await.unwrap().unwrap();
    assert_eq!(took.checkpoint.position_ms, t);
    assert_eq!(took.checkpoint.handled.len(), saved.kept);
    let newest = c.handled.values().max().unwrap();
    let oldest_kept = took.checkpoint.handled.values().min().unwrap();
    assert_eq!(took.checkpoint.handled.values().max(), Some(newest));
    for (k, ts) in &c.handled {
        assert_eq!(took.checkpoint.handled.contains_key(k), ts >= oldest_kept);
    }
}

/// A log group created while every replica was down is new: the next
/// replica reads it from its creation (the table keeps when the prefix was
/// last listed), as a file checkpoint does, not from that replica's start.
/// The lookback is short so that reading from the start would miss the
/// event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_created_while_every_replica_was_down_is_read_from_its_creation() {
    let aws = Aws::new().await;
    let (ddb, table) = table(&aws).await;
    let prefix = unique("lease-discovery");
    let _first = LogGroup::create(&aws, format!("{prefix}-a")).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[sources]]\ntype = \"cloudwatch_logs\"\nname = \"discovery\"\nlog_group_prefix = \"{prefix}\"\npoll_interval_secs = 1\nlookback_secs = 5\ncheckpoint_table = \"{table}\"\nlease_duration_secs = {LEASE_SECS}\ndead_letter_path = \"{}\"\n\
         [[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\nretry_max_secs = 60\n[server]\nlisten = \"\"\n[shutdown]\ngrace_secs = 5\n",
        dir.path().join("dead-letter.jsonl").display(),
        hook.url()
    );
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(60),
        "the first group's lease",
        || async { !leases(&ddb, &table).await.is_empty() },
    )
    .await;
    d.stop().await;

    // Every replica down: a new group, with an event just after its
    // creation, then longer than the lookback, and than the minute a
    // group's creation may precede a listing and still count as new,
    // before the next start.
    let second = LogGroup::create(&aws, format!("{prefix}-b")).await;
    second.put(&[(now_ms() + 500, "made-while-down")]).await;
    tokio::time::sleep(Duration::from_secs(66)).await;
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(60),
        "the event of the group made while every replica was down",
        || async { alerts(&hook).contains_key("made-while-down") },
    )
    .await;
    d.stop().await;
    assert_eq!(alerts(&hook)["made-while-down"], 1);
}
