//! Per-source AWS settings against the moto emulator: sources reading
//! queues in different regions, and sources acting through an assumed role.
//!
//! moto serves every region on one endpoint and keeps them apart (it reads
//! the region from the request's signature): a queue created in eu-west-1
//! does not exist for a client in us-east-1. Alerts from queues in two
//! regions therefore prove each source signs for its own region.

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
