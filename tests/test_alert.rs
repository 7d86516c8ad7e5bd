//! `rootwatch test-alert` as a user runs it, against receivers on
//! 127.0.0.1: one that accepts, one that rejects with a page echoing a
//! secret, one port where nothing listens.

mod common;

use std::path::Path;
use std::process::Output;

use axum::http::{HeaderMap, StatusCode};
use common::*;

const GENIE_KEY: &str = "eb243592-faa2-4ba2-a551-1afdf565c889";
const TOKEN: &str = "BearerSecretToken8642";

/// Runs the binary off the runtime, so the in-process receivers keep
/// answering while it waits.
async fn test_alert(config: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rootwatch.toml");
    std::fs::write(&path, config).unwrap();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || run(&path, &args))
        .await
        .unwrap()
}

fn run(path: &Path, args: &[String]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rootwatch"))
        .arg("test-alert")
        .arg("--config")
        .arg(path)
        .args(args)
        .env_remove("ROOTWATCH_CONFIG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A receiver that refuses every request with 400 and a page echoing the
/// request's headers (the bearer token among them) and its own URL.
async fn echoing_rejecter() -> String {
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let auth = headers["authorization"].to_str().unwrap_or("").to_owned();
        (
            StatusCode::BAD_REQUEST,
            format!(
                "invalid request; got Authorization: {auth} at https://soc.example/in?k={TOKEN}"
            ),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/in")
}

fn line<'a>(stdout: &'a str, sink: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{sink} (")))
        .unwrap_or_else(|| panic!("no line for {sink} in:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_each_sink_and_exits_69_unless_all_delivered() {
    let ok = Webhook::start(|_| (StatusCode::ACCEPTED, vec![])).await;
    let rejecting = echoing_rejecter().await;
    let down = format!("http://127.0.0.1:{}/hook", free_port());
    let config = format!(
        "[[sinks]]\ntype = \"opsgenie\"\nname = \"genie\"\nurl = \"{}\"\napi_key = \"{GENIE_KEY}\"\nmin_severity = \"critical\"\n\
         [[sinks]]\ntype = \"webhook\"\nname = \"soc\"\nurl = \"{rejecting}\"\nbearer_token = \"{TOKEN}\"\n\
         [[sinks]]\ntype = \"slack\"\nname = \"chat\"\nurl = \"{down}\"\ntimeout_secs = 2\n",
        ok.url()
    );
    let out = test_alert(&config, &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(69), "{stdout}{}", text(&out.stderr));

    // Routing ignored by default: the critical-only sink got the low test.
    assert_eq!(
        line(&stdout, "genie"),
        "genie (opsgenie): delivered (1 attempt)"
    );
    let reqs = ok.requests();
    assert_eq!(reqs.len(), 1);
    let body = reqs[0].json();
    assert!(
        body["message"].as_str().unwrap().starts_with("[TEST]"),
        "{body}"
    );
    assert_eq!(body["priority"], "P4");
    assert_eq!(body["details"]["rule"], "rootwatch-test");
    assert_eq!(
        reqs[0].headers["authorization"],
        format!("GenieKey {GENIE_KEY}").as_str()
    );

    let soc = line(&stdout, "soc");
    assert!(
        soc.starts_with("soc (webhook): rejected (status 400): HTTP 400: invalid request"),
        "{soc}"
    );
    assert!(!stdout.contains(TOKEN), "a secret in the output:\n{stdout}");
    assert!(!stdout.contains("soc.example"), "{stdout}");
    assert!(soc.contains("<redacted>"), "{soc}");

    let chat = line(&stdout, "chat");
    assert!(
        chat.starts_with("chat (slack): unreachable after 2 attempts: "),
        "{chat}"
    );
    assert!(!chat.contains(&down), "{chat}");
    // The cause, not only "error sending request": refused, not a timeout.
    assert!(chat.to_lowercase().contains("connection refused"), "{chat}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_selects_and_routing_is_respected_only_when_asked() {
    let a = Webhook::ok().await;
    let b = Webhook::ok().await;
    let config = format!(
        "[[sinks]]\ntype = \"webhook\"\nname = \"a\"\nurl = \"{}\"\nmin_severity = \"critical\"\n\
         [[sinks]]\ntype = \"webhook\"\nname = \"b\"\nurl = \"{}\"\nrules = [\"root-console-login\"]\n",
        a.url(),
        b.url()
    );

    let out = test_alert(&config, &["--sink", "a"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout, "a (webhook): delivered (1 attempt)\n");
    assert_eq!(b.requests().len(), 0);
    let f = &a.delivered()[0];
    assert_eq!(f["rule"], "rootwatch-test");
    assert_eq!(f["severity"], "low");
    assert!(f["title"].as_str().unwrap().starts_with("[TEST]"));
    assert!(f["reason"].as_str().unwrap().contains("test alert"));

    // Neither sink's routing takes a low rootwatch-test finding.
    let out = test_alert(&config, &["--respect-routing"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("no chosen sink takes"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(a.requests().len(), 1);

    let out = test_alert(&config, &["--respect-routing", "--severity", "critical"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(line(&stdout, "a"), "a (webhook): delivered (1 attempt)");
    assert!(
        line(&stdout, "b").starts_with("b (webhook): skipped"),
        "{stdout}"
    );
    assert_eq!(a.delivered()[1]["severity"], "critical");
    assert_ne!(
        a.delivered()[0]["finding_id"],
        a.delivered()[1]["finding_id"]
    );
    assert_eq!(b.requests().len(), 0);

    let out = test_alert(&config, &["--sink", "nope"]).await;
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert!(
        err.contains("no sink is named `nope` (configured: a, b)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_503_has_failed_after_two_attempts() {
    let busy = Webhook::start(|_| (StatusCode::SERVICE_UNAVAILABLE, vec![])).await;
    let config = format!("[[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\n", busy.url());
    let out = test_alert(&config, &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(69), "{stdout}");
    assert_eq!(
        stdout,
        "webhook-127.0.0.1 (webhook): failed after 2 attempts: HTTP 503\n"
    );
    assert_eq!(busy.requests().len(), 2);

    let out = test_alert("[[sinks]]\ntype = \"opsgenie\"\napi_key = \"nope\"\n", &[]).await;
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("sinks[0].api_key"));
}

/// A receiver that takes the connection and never answers: the sink's
/// timeout ends the attempt, and since a retry would start past the budget
/// (the same timeout), it is unreachable after one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_is_unreachable_after_its_timeout() {
    // Bound but never accepted from: the kernel completes the connection,
    // nothing reads the request or answers it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let config = format!(
        "[[sinks]]\ntype = \"teams\"\nname = \"quiet\"\nurl = \"http://{addr}/wf\"\ntimeout_secs = 1\n"
    );
    let out = test_alert(&config, &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(69), "{stdout}");
    let quiet = line(&stdout, "quiet");
    assert!(
        quiet.starts_with("quiet (teams): unreachable after 1 attempt: "),
        "{quiet}"
    );
    assert!(quiet.contains("timed out"), "{quiet}");
    drop(silent);
}
