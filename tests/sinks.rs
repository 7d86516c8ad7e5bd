//! Every sink kind against an in-process receiver on 127.0.0.1: what is
//! retried (429 with Retry-After, 5xx, connection refused), what is not
//! (400), and what each receiver is sent.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use rootwatch::finding::Finding;
use rootwatch::sink::retry::{DeliveryError, Policy, send_with_retry};
use tokio_util::sync::CancellationToken;

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";
const GENIE_KEY: &str = "eb243592-faa2-4ba2-a551-1afdf565c889";

fn finding() -> Finding {
    root_call_finding(&root_call("sink-test"))
}

fn sink_toml(kind: &str, url: &str) -> String {
    match kind {
        "pagerduty" => format!(
            "[[sinks]]\ntype = \"pagerduty\"\nurl = \"{url}\"\nrouting_key = \"{ROUTING_KEY}\"\n"
        ),
        "opsgenie" => {
            format!("[[sinks]]\ntype = \"opsgenie\"\nurl = \"{url}\"\napi_key = \"{GENIE_KEY}\"\n")
        }
        other => format!("[[sinks]]\ntype = \"{other}\"\nurl = \"{url}\"\n"),
    }
}

fn build(kind: &str, url: &str) -> Box<dyn rootwatch::sink::Sink> {
    let s = settings(&sink_toml(kind, url));
    rootwatch::sink::build(&s.sinks[0], &rootwatch::sink::http_client())
}

const KINDS: [&str; 5] = ["webhook", "slack", "pagerduty", "teams", "opsgenie"];

fn check_body(kind: &str, req: &Request, f: &Finding) {
    let body = &req.json();
    match kind {
        "webhook" => assert_eq!(body["finding_id"], f.finding_id.as_str()),
        "slack" => assert!(
            body["blocks"].is_array() && body["text"].is_string(),
            "{body}"
        ),
        "pagerduty" => {
            assert_eq!(body["routing_key"], ROUTING_KEY);
            assert_eq!(body["event_action"], "trigger");
            assert_eq!(body["dedup_key"], f.finding_id.as_str());
            assert_eq!(body["payload"]["severity"], "error");
        }
        "teams" => assert_eq!(
            body["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        ),
        "opsgenie" => {
            assert_eq!(
                req.headers["authorization"],
                format!("GenieKey {GENIE_KEY}").as_str()
            );
            assert_eq!(body["alias"], f.finding_id.as_str());
            assert_eq!(body["priority"], "P2");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Root user API call")
            );
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn retries_429_honouring_retry_after() {
    for kind in KINDS {
        let hook = Webhook::start(|n| match n {
            0 => (
                StatusCode::TOO_MANY_REQUESTS,
                vec![("Retry-After", "1".to_owned())],
            ),
            _ => (StatusCode::OK, vec![]),
        })
        .await;
        let f = finding();
        let started = Instant::now();
        let attempts = send_with_retry(
            build(kind, &hook.url()).as_ref(),
            &f,
            &Policy::with_deadline(Duration::from_secs(10)),
            &CancellationToken::new(),
            |_, _, _| {},
        )
        .await;
        assert_eq!(attempts.unwrap(), 2, "{kind}");
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "{kind}: Retry-After: 1 was not honoured"
        );
        let reqs = hook.requests();
        assert_eq!(reqs.len(), 2);
        check_body(kind, &reqs[1], &f);
        check_body(kind, &reqs[0], &f);
    }
}

/// A `Retry-After` beyond the deadline (the largest number a receiver can
/// send, or a date far ahead) ends retrying at once as a failure: no
/// overflow, no wait of centuries. The first answer asks for one second,
/// so the huge value comes when time has already passed since the start.
#[tokio::test]
async fn a_retry_after_past_the_deadline_gives_up_at_once() {
    for (status, value) in [
        (StatusCode::TOO_MANY_REQUESTS, "18446744073709551615"),
        (StatusCode::SERVICE_UNAVAILABLE, "18446744073709551615"),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ),
    ] {
        let hook = Webhook::start(move |n| match n {
            0 => (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![("Retry-After", "1".to_owned())],
            ),
            _ => (status, vec![("Retry-After", value.to_owned())]),
        })
        .await;
        let mut retries = 0;
        let r = send_with_retry(
            build("webhook", &hook.url()).as_ref(),
            &finding(),
            &Policy::with_deadline(Duration::from_secs(10)),
            &CancellationToken::new(),
            |_, _, _| retries += 1,
        )
        .await;
        assert!(
            matches!(r, Err(DeliveryError::GaveUp { attempts: 2, ref last, .. }) if last.contains(status.as_str())),
            "{status} {value}: {r:?}"
        );
        assert_eq!(retries, 1, "{value}");
        assert_eq!(hook.requests().len(), 2, "{value}");
    }
}

#[tokio::test]
async fn retries_5xx_until_it_succeeds() {
    for kind in KINDS {
        let hook = Webhook::start(|n| {
            if n < 2 {
                (StatusCode::SERVICE_UNAVAILABLE, vec![])
            } else {
                (StatusCode::ACCEPTED, vec![])
            }
        })
        .await;
        let f = finding();
        let mut retries = Vec::new();
        let attempts = send_with_retry(
            build(kind, &hook.url()).as_ref(),
            &f,
            &Policy::with_deadline(Duration::from_secs(10)),
            &CancellationToken::new(),
            |a, _, e| retries.push((a, e.to_string())),
        )
        .await;
        assert_eq!(attempts.unwrap(), 3, "{kind}");
        assert_eq!(retries.len(), 2);
        assert!(retries[0].1.contains("503"), "{retries:?}");
        check_body(kind, &hook.requests()[2], &f);
    }
}

#[tokio::test]
async fn retries_connection_refused_until_the_deadline() {
    for kind in KINDS {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/hook");
        let r = send_with_retry(
            build(kind, &url).as_ref(),
            &finding(),
            &Policy::with_deadline(Duration::from_secs(2)),
            &CancellationToken::new(),
            |_, _, _| {},
        )
        .await;
        match r {
            Err(DeliveryError::GaveUp { attempts, last, .. }) => {
                assert!(attempts >= 2, "{kind}: {attempts}");
                assert!(
                    !last.contains(&port.to_string()),
                    "{kind}: the error must not carry the URL: {last}"
                );
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn gives_up_on_400_at_once() {
    for kind in KINDS {
        let hook = Webhook::start(|_| (StatusCode::BAD_REQUEST, vec![])).await;
        let r = send_with_retry(
            build(kind, &hook.url()).as_ref(),
            &finding(),
            &Policy::with_deadline(Duration::from_secs(10)),
            &CancellationToken::new(),
            |_, _, _| {},
        )
        .await;
        assert!(
            matches!(r, Err(DeliveryError::Rejected { ref error, status: Some(400) }) if error.contains("400")),
            "{kind}: {r:?}"
        );
        assert_eq!(hook.requests().len(), 1, "{kind}");
    }
}

#[tokio::test]
async fn shutdown_cancels_a_retrying_delivery() {
    let hook = Webhook::start(|_| (StatusCode::BAD_GATEWAY, vec![])).await;
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        c.cancel();
    });
    let r = send_with_retry(
        build("webhook", &hook.url()).as_ref(),
        &finding(),
        &Policy::with_deadline(Duration::from_secs(600)),
        &cancel,
        |_, _, _| {},
    )
    .await;
    assert!(matches!(r, Err(DeliveryError::Cancelled { .. })), "{r:?}");
}

/// Through the daemon: a 4xx is given up at once and counted by sink and
/// reason. A file source without a dead-letter file leaves the file
/// unacknowledged (only a delivery acknowledges); with one, the finding is
/// written there with the sink, status and error, and the file is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_is_recorded_in_the_metrics_and_the_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, dead_lettered) = (dir.path().join("kept"), dir.path().join("dl"));
    for (d, id) in [(&kept, "rejected-kept"), (&dead_lettered, "rejected-dl")] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("r.jsonl"), format!("{}\n", root_call(id))).unwrap();
    }
    let dead = dir.path().join("dead-letter.jsonl");
    let hook = Webhook::start(|_| (StatusCode::UNPROCESSABLE_ENTITY, vec![])).await;
    let config = format!(
        "[[sources]]\ntype = \"file\"\nname = \"rejects\"\npaths = [\"{}\"]\n[[sources]]\ntype = \"file\"\nname = \"rejects-dl\"\npaths = [\"{}\"]\ndead_letter_path = \"{}\"\n[[sinks]]\ntype = \"slack\"\nname = \"slack-rejecting\"\nurl = \"{}\"\n[throttle]\nwindow_secs = 0\n[server]\nlisten = \"\"\n",
        kept.display(),
        dead_lettered.display(),
        dead.display(),
        hook.url()
    );
    let d = Daemon::start(&config, &aws_at("http://127.0.0.1:9").await).await;
    eventually(
        Duration::from_secs(10),
        "both rejections counted",
        || async {
            rootwatch::telemetry::prometheus().render().contains(
                r#"rootwatch_alerts_failed_total{sink="slack-rejecting",reason="rejected"} 2"#,
            )
        },
    )
    .await;
    d.stop().await;
    assert_eq!(hook.requests().len(), 2);
    let metrics = rootwatch::telemetry::prometheus().render();
    assert!(
        metrics.contains(r#"rootwatch_messages_deleted_total{source="rejects"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"rootwatch_messages_deleted_total{source="rejects-dl"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"rootwatch_alerts_dead_lettered_total{sink="slack-rejecting",reason="rejected"} 1"#
        ),
        "{metrics}"
    );
    let text = std::fs::read_to_string(&dead).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["source"], "rejects-dl");
    assert_eq!(lines[0]["sink"], "slack-rejecting");
    assert_eq!(lines[0]["status"], 422);
    assert_eq!(lines[0]["error"], "HTTP 422");
    assert_eq!(lines[0]["finding"]["event_id"], "rejected-dl");
    assert!(lines[0]["input"].as_str().unwrap().ends_with("r.jsonl"));
}

/// A receiver that fails and recovers within the sink's retry time: the
/// alert is delivered and nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_recovers_within_the_retries_leaves_no_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(
        input.join("r.jsonl"),
        format!("{}\n", root_call("recovers")),
    )
    .unwrap();
    let dead = dir.path().join("dead-letter.jsonl");
    let hook = Webhook::start(|n| {
        if n < 2 {
            (StatusCode::SERVICE_UNAVAILABLE, vec![])
        } else {
            (StatusCode::OK, vec![])
        }
    })
    .await;
    let config = format!(
        "[[sources]]\ntype = \"file\"\nname = \"recovers\"\npaths = [\"{}\"]\ndead_letter_path = \"{}\"\n[[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\nretry_max_secs = 30\n[server]\nlisten = \"\"\n",
        input.display(),
        dead.display(),
        hook.url()
    );
    let d = Daemon::start(&config, &aws_at("http://127.0.0.1:9").await).await;
    eventually(Duration::from_secs(20), "delivered", || async {
        hook.delivered().len() == 1
    })
    .await;
    d.stop().await;
    assert_eq!(hook.requests().len(), 3);
    assert!(!dead.exists(), "nothing dead-lettered");
    assert!(
        rootwatch::telemetry::prometheus()
            .render()
            .contains(r#"rootwatch_messages_deleted_total{source="recovers"} 1"#)
    );
}

/// A receiver that answers 404 with a page echoing the request path, query
/// and headers, as many web servers do: none of the sink's secrets may
/// reach the error text that is logged.
#[tokio::test]
async fn error_text_from_an_echoing_receiver_holds_no_secret() {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let app = axum::Router::new().fallback(|uri: Uri, headers: HeaderMap| async move {
        let mut page = format!("Cannot POST {uri}\n");
        for (k, v) in &headers {
            page.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
        }
        page.push_str(&"x".repeat(100_000));
        (StatusCode::NOT_FOUND, page)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let token = "XoXoTokenPart0123456789";
    let query = "sigQuerySecret987654";
    let toml = format!(
        "[[sinks]]\ntype = \"webhook\"\nurl = \"http://{addr}/services/T0000/B0000/{token}?sig={query}\"\nbearer_token = \"BearerSecret55555\"\nhmac_secret = \"HmacSecret4444\"\nheaders = {{ \"X-Api-Key\" = \"HeaderSecret3333\" }}\n"
    );
    let settings =
        rootwatch::config::validate(&rootwatch::config::parse(&toml, &|_| None).unwrap()).unwrap();
    let sink = rootwatch::sink::build(&settings.sinks[0], &rootwatch::sink::http_client());
    let finding = finding();
    let err = sink.send(&finding).await.unwrap_err().to_string();
    assert!(err.starts_with("HTTP 404: Cannot POST"), "{err}");
    for secret in [
        token,
        query,
        "BearerSecret55555",
        "HeaderSecret3333",
        "T0000/B0000",
    ] {
        assert!(!err.contains(secret), "{secret} in {err}");
    }
    assert!(err.contains("<redacted>"), "{err}");
}

/// Opsgenie answers 202 for a queued alert; a 401 (a wrong or revoked key)
/// whose page echoes the request headers is a rejection, and the key is
/// not in the error text.
#[tokio::test]
async fn opsgenie_202_delivers_and_an_echoed_key_is_scrubbed() {
    use axum::http::{HeaderMap, StatusCode};
    let hook = Webhook::start(|_| (StatusCode::ACCEPTED, vec![])).await;
    let r = send_with_retry(
        build("opsgenie", &hook.url()).as_ref(),
        &finding(),
        &Policy::with_deadline(Duration::from_secs(10)),
        &CancellationToken::new(),
        |_, _, _| {},
    )
    .await;
    assert_eq!(r.unwrap(), 1);

    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let auth = headers["authorization"].to_str().unwrap().to_owned();
        (
            StatusCode::UNAUTHORIZED,
            format!("{{\"message\":\"Key is not valid: {auth}\",\"took\":0.001}}"),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let r = send_with_retry(
        build("opsgenie", &format!("http://{addr}/v2/alerts")).as_ref(),
        &finding(),
        &Policy::with_deadline(Duration::from_secs(10)),
        &CancellationToken::new(),
        |_, _, _| {},
    )
    .await;
    let Err(DeliveryError::Rejected { error, status }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(status, Some(401));
    assert!(!error.contains(GENIE_KEY), "{error}");
    assert!(
        error.contains("Key is not valid: GenieKey <redacted>"),
        "{error}"
    );
}
