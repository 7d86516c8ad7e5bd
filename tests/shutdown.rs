//! The `rootwatch run` binary as an orchestrator runs it: SIGTERM while an
//! alert is still being retried, and start-up errors.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_retrying_exits_0_within_the_grace_period_and_keeps_the_message() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    aws.send(&queue, &eventbridge(&root_call("sigterm"))).await;
    let hook = Webhook::start(|_| (StatusCode::BAD_GATEWAY, vec![])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\nretry_max_secs = 600\n[server]\nlisten = \"\"\n[shutdown]\ngrace_secs = 2\n",
        sqs_source(&queue, 30),
        hook.url()
    );
    let mut child = spawn_rootwatch(&config, dir.path());
    eventually(Duration::from_secs(30), "a delivery attempt", || async {
        !hook.requests().is_empty()
    })
    .await;

    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(15)))
        .await
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("rootwatch.log")).unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2 + 5 + 2),
        "took {:?}",
        signalled.elapsed()
    );
    assert!(hook.delivered().is_empty());

    // Released at shutdown: visible again at once, not after the 30 s timeout.
    let got = aws
        .sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    let bodies: Vec<String> = got
        .messages
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.body)
        .collect();
    assert_eq!(bodies.len(), 1, "{log}");
    assert!(bodies[0].contains("\"eventID\":\"sigterm\""));
    assert!(
        log.contains("SIGTERM") && log.contains("grace period over"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_is_a_clear_error_naming_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[[sinks]]\ntype = \"stdout\"\n[server]\nlisten = \"\"\n",
        sqs_source(
            &format!("{}/111122223333/rootwatch-missing-queue", endpoint()),
            30
        )
        .replace("type = \"sqs\"", "type = \"sqs\"\nname = \"trail-queue\"")
    );
    let mut child = spawn_rootwatch(&config, dir.path());
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(60)))
        .await
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("rootwatch.log")).unwrap();
    assert_eq!(code, Some(69), "{log}");
    assert!(
        log.contains("rootwatch: source `trail-queue`: queue"),
        "{log}"
    );
    assert!(log.contains("rootwatch-missing-queue"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    let mut child = spawn_rootwatch("[[sinks]]\ntype = \"stdout\"\n", dir.path());
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(78));
}
