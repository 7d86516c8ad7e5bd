//! Per-source AWS settings against the moto emulator: sources reading
//! queues in different regions, and sources acting through an assumed role.
//!
//! moto serves every region on one endpoint and keeps them apart (it reads
//! the region from the request's signature): a queue created in eu-west-1
//! does not exist for a client in us-east-1. Alerts from queues in two
//! regions therefore prove each source signs for its own region. S3 is the
//! exception (moto serves a bucket to a client in any region), so S3 reads
//! are checked by the region their signature names, through a recording
//! proxy in front of moto.

mod common;

use std::time::Duration;

use common::*;

async fn queue_in(aws: &Aws, region: &str) -> (aws_sdk_sqs::Client, String) {
    let conf = aws
        .config
        .to_builder()
        .region(aws_config::Region::new(region.to_owned()))
        .build();
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let url = sqs
        .create_queue()
        .queue_name(unique("regional"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (sqs, url)
}

fn two_sources(a: &str, b: &str, hook: &str) -> String {
    format!(
        "[[sources]]\ntype = \"sqs\"\nname = \"ireland\"\nqueue_url = \"{a}\"\nregion = \"eu-west-1\"\nwait_time_secs = 1\n\
         [[sources]]\ntype = \"sqs\"\nname = \"sydney\"\nqueue_url = \"{b}\"\nregion = \"ap-southeast-2\"\nwait_time_secs = 1\n\
         [throttle]\nwindow_secs = 0\n[[sinks]]\ntype = \"webhook\"\nurl = \"{hook}\"\nretry_max_secs = 60\n[server]\nlisten = \"\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_in_two_regions_are_each_read_in_their_own_region() {
    let aws = Aws::new().await;
    let (eu, eu_url) = queue_in(&aws, "eu-west-1").await;
    let (ap, ap_url) = queue_in(&aws, "ap-southeast-2").await;
    // The premise: the process-wide region (us-east-1) does not see them.
    assert!(
        aws.sqs
            .get_queue_attributes()
            .queue_url(&eu_url)
            .send()
            .await
            .is_err(),
        "moto must keep regions apart for this test to mean anything"
    );
    for (sqs, url, id) in [(&eu, &eu_url, "ev-eu"), (&ap, &ap_url, "ev-ap")] {
        sqs.send_message()
            .queue_url(url)
            .message_body(eventbridge(&root_call(id)))
            .send()
            .await
            .unwrap();
    }
    let hook = Webhook::ok().await;
    let d = Daemon::start(&two_sources(&eu_url, &ap_url, &hook.url()), &aws.config).await;
    eventually(
        Duration::from_secs(30),
        "an alert from each region",
        || async { hook.delivered().len() >= 2 },
    )
    .await;
    d.stop().await;
    let mut ids: Vec<String> = hook
        .delivered()
        .iter()
        .map(|f| f["event_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["ev-ap", "ev-eu"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_in_the_wrong_region_fails_at_start_naming_it() {
    let aws = Aws::new().await;
    let (_, eu_url) = queue_in(&aws, "eu-west-1").await;
    let toml = format!(
        "[[sources]]\ntype = \"sqs\"\nname = \"misplaced\"\nqueue_url = \"{eu_url}\"\nregion = \"us-west-2\"\n\
         [[sinks]]\ntype = \"stdout\"\n[server]\nlisten = \"\"\n"
    );
    let opts = rootwatch::app::Options {
        aws: Some(aws.config.clone()),
        ..Default::default()
    };
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        rootwatch::app::run_with(settings(&toml), opts, std::future::pending()),
    )
    .await
    .expect("start fails instead of running");
    let e = r.unwrap_err().to_string();
    assert!(e.starts_with("source `misplaced`"), "{e}");
}

/// moto's STS answers `AssumeRole` for any role (it does not enforce IAM),
/// and it serves calls made with the credentials it returned from the
/// role's account. So a role in the queue's own account reads the queue,
/// and the same source with a role in another account finds no such queue:
/// proof that the calls carry the role's credentials, not the process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_a_role_reads_through_it() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let account = queue.split('/').nth(3).unwrap().to_owned();
    aws.send(&queue, &eventbridge(&root_call("ev-role"))).await;
    let hook = Webhook::ok().await;
    let with_role = |account: &str| {
        sqs_to_webhook(&queue, 30, &hook.url(), "").replace(
            "wait_time_secs = 1\n",
            &format!("wait_time_secs = 1\nrole_arn = \"arn:aws:iam::{account}:role/rootwatch-reader\"\nexternal_id = \"tenant-42\"\nsession_name = \"rootwatch-test\"\n"),
        )
    };
    let elsewhere = with_role("444455556666");
    assert!(elsewhere.contains("444455556666"), "{elsewhere}");
    let opts = rootwatch::app::Options {
        aws: Some(aws.config.clone()),
        ..Default::default()
    };
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        rootwatch::app::run_with(settings(&elsewhere), opts, std::future::pending()),
    )
    .await
    .expect("start fails instead of running");
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("NonExistentQueue") || e.contains("does not exist"),
        "{e}"
    );

    let d = Daemon::start(&with_role(&account), &aws.config).await;
    eventually(Duration::from_secs(30), "the alert", || async {
        hook.delivered().len() == 1 && aws.depth(&queue).await == 0
    })
    .await;
    d.stop().await;
}

/// A role that cannot be assumed (STS unreachable) stops the source at
/// start with a credentials error; it never falls back to the process's
/// own credentials, which would read the queue as the wrong principal.
/// The same configuration without the role runs, so STS is what failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_cannot_be_assumed_fails_the_source_instead_of_falling_back() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    aws.send(&queue, &eventbridge(&root_call("ev-no-role")))
        .await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let base = sqs_to_webhook(&queue, 30, &hook.url(), "").replace(
        "type = \"sqs\"\n",
        "type = \"sqs\"\nname = \"cross-account\"\n",
    );
    let with_role = base.replace(
        "wait_time_secs = 1\n",
        "wait_time_secs = 1\nrole_arn = \"arn:aws:iam::444455556666:role/rootwatch-reader\"\n",
    );
    assert!(with_role.contains("role_arn") && base.contains("cross-account"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sts = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = |config: &str| {
        let path = dir.path().join("rootwatch.toml");
        std::fs::write(&path, config).unwrap();
        rootwatch_at_emulator(&["run", "--config"])
            .arg(&path)
            .env("AWS_ENDPOINT_URL_STS", &sts)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = run(&with_role);
    let code = tokio::task::block_in_place(|| wait_exit(&mut child, Duration::from_secs(90)));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(matches!(code, Some(c) if c != 0), "{code:?}\n{stderr}");
    assert!(
        stderr.contains("cross-account") && stderr.to_lowercase().contains("credentials"),
        "{stderr}"
    );
    assert!(
        hook.delivered().is_empty(),
        "nothing read with the wrong credentials"
    );
    assert_eq!(aws.depth(&queue).await, 1);

    // Without the role the same STS endpoint is never needed: it alerts.
    let mut child = run(&base);
    eventually(
        Duration::from_secs(30),
        "the alert without the role",
        || async { hook.delivered().len() == 1 },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// S3 requests (by the region their signature names) that passed through
/// [`Recorder`], as `(region, method, path and query)`.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// A pass-through proxy in front of moto that notes the region each S3
/// request is signed for: moto serves every bucket to a client in any
/// region, so only the signature shows which regional client was used.
async fn recorder() -> (String, Seen) {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, Uri};
    let seen: Seen = Default::default();
    let upstream = endpoint();
    let client = reqwest::Client::new();
    let handler =
        async move |State((seen, client, upstream)): State<(Seen, reqwest::Client, String)>,
                    method: Method,
                    uri: Uri,
                    headers: HeaderMap,
                    body: Bytes| {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            // AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, ...
            let scope: Vec<&str> = auth
                .split("Credential=")
                .nth(1)
                .unwrap_or("")
                .split(',')
                .next()
                .unwrap_or("")
                .split('/')
                .collect();
            if scope.get(3) == Some(&"s3") {
                seen.lock().unwrap().push((
                    scope[2].to_owned(),
                    method.to_string(),
                    uri.path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                ));
            }
            let mut req = client.request(
                method,
                format!("{upstream}{}", uri.path_and_query().unwrap()),
            );
            for (k, v) in &headers {
                if k != "host" {
                    req = req.header(k, v);
                }
            }
            let resp = req.body(body).send().await.unwrap();
            let status = resp.status();
            let mut out = HeaderMap::new();
            for (k, v) in resp.headers() {
                if k != "transfer-encoding" && k != "content-length" {
                    out.insert(k, v.clone());
                }
            }
            (status, out, resp.bytes().await.unwrap())
        };
    let app = axum::Router::new()
        .fallback(handler)
        .with_state((seen.clone(), client, upstream));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn bucket_in(aws: &Aws, region: &str) -> String {
    use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
    let conf = aws
        .config
        .to_builder()
        .region(aws_config::Region::new(region.to_owned()))
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("regional-trail");
    s3.create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        )
        .send()
        .await
        .unwrap();
    bucket
}

/// Objects are fetched from their bucket's region: the one an S3 event
/// notification names, else the one GetBucketLocation answers, asked once
/// per bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_read_in_their_buckets_region() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let eu = bucket_in(&aws, "eu-west-1").await;
    let ap = bucket_in(&aws, "ap-southeast-2").await;
    let log = |id: &str| format!(r#"{{"Records":[{}]}}"#, root_call(id));
    aws.put_gz(&eu, "AWSLogs/eu.json.gz", &log("ev-eu-object"))
        .await;
    aws.put_gz(&ap, "AWSLogs/ap-1.json.gz", &log("ev-ap-object-1"))
        .await;
    aws.put_gz(&ap, "AWSLogs/ap-2.json.gz", &log("ev-ap-object-2"))
        .await;
    let notification = format!(
        r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1","eventTime":"2024-05-01T12:00:00.000Z","eventName":"ObjectCreated:Put","s3":{{"s3SchemaVersion":"1.0","bucket":{{"name":"{eu}","arn":"arn:aws:s3:::{eu}"}},"object":{{"key":"AWSLogs/eu.json.gz","size":1}}}}}}]}}"#
    );
    aws.send(&queue, &notification).await;
    // CloudTrail's own notices name no region.
    for key in ["AWSLogs/ap-1.json.gz", "AWSLogs/ap-2.json.gz"] {
        aws.send(
            &queue,
            &format!(r#"{{"s3Bucket":"{ap}","s3ObjectKey":["{key}"]}}"#),
        )
        .await;
    }
    let (proxy, seen) = recorder().await;
    let through = aws_at(&proxy).await;
    let hook = Webhook::ok().await;
    let d = Daemon::start(
        // One worker: the two notices for one bucket come one after the
        // other, so the second finds the bucket's region remembered.
        &sqs_to_webhook(&queue, 30, &hook.url(), "")
            .replace("concurrency = 2\n", "concurrency = 1\n"),
        &through,
    )
    .await;
    eventually(Duration::from_secs(30), "three alerts", || async {
        hook.delivered().len() == 3 && aws.depth(&queue).await == 0
    })
    .await;
    d.stop().await;
    let seen = seen.lock().unwrap().clone();
    let of = |bucket: &str| -> Vec<(String, String, String)> {
        seen.iter()
            .filter(|(_, _, p)| p.starts_with(&format!("/{bucket}")))
            .cloned()
            .collect()
    };
    let eu_calls = of(&eu);
    assert_eq!(eu_calls.len(), 1, "{seen:?}");
    assert_eq!(eu_calls[0].0, "eu-west-1", "{seen:?}");
    assert!(eu_calls[0].2.contains("eu.json.gz"), "{seen:?}");
    let ap_calls = of(&ap);
    let lookups: Vec<_> = ap_calls
        .iter()
        .filter(|c| c.2.contains("location"))
        .collect();
    assert_eq!(lookups.len(), 1, "looked up once: {seen:?}");
    let gets: Vec<_> = ap_calls
        .iter()
        .filter(|c| c.2.contains(".json.gz"))
        .collect();
    assert_eq!(gets.len(), 2, "{seen:?}");
    assert!(gets.iter().all(|c| c.0 == "ap-southeast-2"), "{seen:?}");
}
