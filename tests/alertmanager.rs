//! The `alertmanager` sink against the real Alertmanager (Debian's
//! `prometheus-alertmanager`, which scripts/test.sh installs), started here
//! on a loopback port: alerts from SQS on moto must be visible in its
//! `GET /api/v2/alerts`, and a refusal is a failure, not a delivery.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const BINARY: &str = "prometheus-alertmanager";

struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Alertmanager with one receiver that sends nowhere, and waits
/// (bounded) until it answers `/-/ready`.
async fn alertmanager() -> Alertmanager {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("am.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(BINARY)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("am.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{BINARY} could not be started ({e}): run the suite with scripts/test.sh, which installs it")
        });
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let ready = format!("{}/-/ready", am.url);
    eventually(Duration::from_secs(30), "Alertmanager ready", || async {
        reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    am
}

async fn alerts(am: &Alertmanager) -> Vec<Value> {
    let text = reqwest::get(format!("{}/api/v2/alerts", am.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_alert_from_sqs_is_in_alertmanager_with_its_labels() {
    if common::skip_without(BINARY) {
        return;
    }
    let am = alertmanager().await;
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    aws.send(&queue, &eventbridge(&root_call("am-root-1")))
        .await;
    let config = format!(
        "{}[[sinks]]\ntype = \"alertmanager\"\nurl = \"{}\"\nresolve_after_secs = 600\nretry_max_secs = 30\n[detect.runbooks]\n\"root-*\" = \"https://wiki.example.com/runbooks/root\"\n[server]\nlisten = \"\"\n",
        sqs_source(&queue, 30),
        am.url
    );
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(30),
        "the alert in Alertmanager and an empty queue",
        || async { !alerts(&am).await.is_empty() && aws.depth(&queue).await == 0 },
    )
    .await;
    d.stop().await;
    let got = alerts(&am).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let a = &got[0];
    assert_eq!(a["labels"]["alertname"], "root-api-call");
    assert_eq!(a["labels"]["rule"], "root-api-call");
    assert_eq!(a["labels"]["source"], "rootwatch");
    assert_eq!(a["labels"]["account_id"], "111122223333");
    assert!(
        a["labels"]["principal"]
            .as_str()
            .unwrap()
            .ends_with(":root"),
        "{a}"
    );
    assert!(a["labels"]["severity"].is_string());
    assert_eq!(
        a["annotations"]["runbook_url"],
        "https://wiki.example.com/runbooks/root"
    );
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Root user API call"),
        "{a}"
    );
    assert_eq!(a["status"]["state"], "active");
    // endsAt is about resolve_after_secs away: the alert ages out by itself.
    let ends = chrono::DateTime::parse_from_rfc3339(a["endsAt"].as_str().unwrap()).unwrap();
    let left = ends.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        left > chrono::Duration::seconds(500) && left <= chrono::Duration::seconds(600),
        "{left}"
    );
}

/// `rootwatch test-alert` through the sink: delivered to a running
/// Alertmanager; a URL that is not an Alertmanager (404) is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_alert_reaches_alertmanager_and_a_wrong_path_is_a_rejection() {
    if common::skip_without(BINARY) {
        return;
    }
    let am = alertmanager().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |url: &str| {
        let (code, out, _) = test_alert(
            dir.path(),
            &format!("[[sinks]]\ntype = \"alertmanager\"\nname = \"am\"\nurl = \"{url}\"\n"),
        );
        (code, out)
    };
    let (code, out) = run(&am.url);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("am (alertmanager): delivered"), "{out}");
    let got = alerts(&am).await;
    assert!(
        got.iter().any(|a| a["labels"]["rule"] == "rootwatch-test"),
        "{got:#?}"
    );
    // Alertmanager's own page, not its API: 404, refused at once.
    let (code, out) = run(&format!("{}/api/v2/nothing-here", am.url));
    assert_eq!(code, Some(69), "{out}");
    assert!(out.contains("rejected"), "{out}");
}
