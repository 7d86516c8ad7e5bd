//! Context for the responder: the account map, address context from
//! MaxMind's test databases (tests/fixtures/third_party/maxmind), ASNs in
//! the allow list, expected root use, root-only tasks and runbooks, through
//! `replay` and through SQS on moto to a real webhook receiver.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/third_party/maxmind")
        .join(name)
        .display()
        .to_string()
}

/// A root event as CloudTrail writes it.
fn root_event(id: &str, source: &str, name: &str, ip: &str, extra: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"ASIAEXAMPLEROOTSESS","sessionContext":{{"attributes":{{"creationDate":"2024-05-14T09:00:00Z","mfaAuthenticated":"true"}}}}}},"eventTime":"2024-05-14T09:12:40Z","eventSource":"{source}","eventName":"{name}","awsRegion":"eu-north-1","sourceIPAddress":"{ip}","userAgent":"aws-cli/2.15.40","requestParameters":{extra},"responseElements":null,"requestID":"0b5e1c2d-3f4a-4b5c-8d6e-{id:0>12}","eventID":"6a1d3c5e-7b9f-4e2a-8c4d-{id:0>12}","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#
    )
}

/// An IAM user's call from `ip`.
fn user_event(id: &str, ip: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","principalId":"AIDAEXAMPLEUSER00001","arn":"arn:aws:iam::111122223333:user/ci","accountId":"111122223333","accessKeyId":"AKIAEXAMPLEUSERKEY01","userName":"ci"}},"eventTime":"2024-05-14T09:13:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-north-1","sourceIPAddress":"{ip}","userAgent":"aws-cli/2.15.40","requestParameters":null,"responseElements":null,"eventID":"7b2e4d6f-8c0a-4f3b-9d5e-{id:0>12}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#
    )
}

fn enrich_config() -> String {
    format!(
        r#"
[enrich.accounts."111122223333"]
name = "prod-payments"
environment = "production"
owner = "payments-oncall"
ou = "Root/Workloads/Prod"
tags = {{ "cost-centre" = "4711" }}

[enrich.geoip]
city_db = "{}"
asn_db = "{}"

[detect.runbooks]
"root-*" = "https://wiki.example.com/runbooks/root"
"root-api-call" = "https://wiki.example.com/runbooks/root-api-call"
"#,
        fixture("GeoLite2-City-Test.mmdb"),
        fixture("GeoLite2-ASN-Test.mmdb")
    )
}

struct Replayed {
    code: Option<i32>,
    findings: Vec<Value>,
    stderr: String,
}

fn replay(config: &str, records: &[String]) -> Replayed {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rootwatch.toml"), config).unwrap();
    let trail = dir.path().join("trail.jsonl");
    std::fs::write(&trail, records.join("\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rootwatch"))
        .args(["replay", "--jobs", "1", "--config"])
        .arg(dir.path().join("rootwatch.toml"))
        .arg(&trail)
        .output()
        .unwrap();
    Replayed {
        code: out.status.code(),
        findings: String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn by_rule<'a>(findings: &'a [Value], rule: &str, id_tail: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["rule"] == rule && f["event_id"].as_str().unwrap().ends_with(id_tail))
        .unwrap_or_else(|| panic!("no {rule} for {id_tail} in {findings:#?}"))
}

#[test]
fn replay_adds_the_account_the_address_the_root_task_and_the_runbook() {
    let records = [
        root_event(
            "1",
            "ec2.amazonaws.com",
            "RunInstances",
            "89.160.20.130",
            "null",
        ),
        root_event(
            "2",
            "iam.amazonaws.com",
            "CreateAccessKey",
            "10.1.2.3",
            "null",
        ),
        root_event(
            "3",
            "iam.amazonaws.com",
            "CreateAccessKey",
            "81.2.69.142",
            r#"{"userName":"alice"}"#,
        ),
        root_event(
            "4",
            "s3.amazonaws.com",
            "PutBucketPolicy",
            "AWS Internal",
            r#"{"bucketName":"locked"}"#,
        ),
    ];
    let r = replay(&enrich_config(), &records);
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    let f = by_rule(&r.findings, "root-api-call", "000000000001");
    assert_eq!(f["account_name"], "prod-payments");
    assert_eq!(f["account_ou"], "Root/Workloads/Prod");
    assert_eq!(
        f["account_tags"],
        serde_json::json!({"cost-centre": "4711", "environment": "production", "owner": "payments-oncall"})
    );
    // MaxMind's test data: 89.160.20.128/25 is Linköping, SE, AS29518.
    assert_eq!(
        f["source_ip_context"],
        serde_json::json!({"kind": "public", "country": "SE", "country_name": "Sweden", "city": "Linköping", "asn": 29518, "as_org": "Bredband2 AB"})
    );
    assert_eq!(f["requires_root"], false, "RunInstances is an ordinary API");
    // The exact rule id wins over the pattern.
    assert_eq!(
        f["runbook_url"],
        "https://wiki.example.com/runbooks/root-api-call"
    );

    let own_key = by_rule(&r.findings, "root-api-call", "000000000002");
    assert_eq!(own_key["requires_root"], true, "root's own access key");
    assert_eq!(
        own_key["source_ip_context"],
        serde_json::json!({"kind": "private"})
    );
    let others_key = by_rule(&r.findings, "root-api-call", "000000000003");
    assert_eq!(
        others_key["requires_root"], false,
        "an IAM admin could make alice's key"
    );
    assert_eq!(others_key["source_ip_context"]["city"], "London");
    assert_eq!(others_key["source_ip_context"]["country"], "GB");
    let bucket = by_rule(&r.findings, "root-api-call", "000000000004");
    assert_eq!(bucket["requires_root"], true, "unlocking a bucket policy");
    assert_eq!(
        bucket["source_ip_context"],
        serde_json::json!({"kind": "aws_service"})
    );
    // Other root rules get the pattern's runbook.
    for f in r.findings.iter().filter(|f| f["rule"] != "root-api-call") {
        assert_eq!(
            f["runbook_url"], "https://wiki.example.com/runbooks/root",
            "{f}"
        );
    }
}

#[test]
fn without_enrichment_findings_carry_no_context_fields_but_the_root_task() {
    let r = replay(
        "",
        &[root_event(
            "1",
            "ec2.amazonaws.com",
            "RunInstances",
            "89.160.20.130",
            "null",
        )],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let f = by_rule(&r.findings, "root-api-call", "000000000001");
    for key in [
        "account_name",
        "account_tags",
        "source_ip_context",
        "runbook_url",
        "expected",
    ] {
        assert!(f.get(key).is_none(), "{key}: {f}");
    }
    assert_eq!(f["requires_root"], false);
}

#[test]
fn asns_in_the_allow_list_allow_their_addresses() {
    let config = format!(
        "{}\n[detect.ip_allowlist]\ncidrs = [\"203.0.113.0/24\"]\nasns = [29518]\nscope = \"all\"\n",
        enrich_config()
    );
    let r = replay(
        &config,
        &[
            user_event("1", "89.160.20.130"), // AS29518: allowed
            user_event("2", "81.2.69.142"),   // not in the ASN or CIDR list
            user_event("3", "203.0.113.5"),   // in the CIDR list
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let outside: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f["rule"] == "source-ip-not-allowed")
        .map(|f| f["source_ip"].as_str().unwrap())
        .collect();
    assert_eq!(outside, ["81.2.69.142"]);
}

#[test]
fn expected_root_use_is_still_reported_capped_at_low_and_said() {
    let config = format!(
        r#"{}
[[detect.expected]]
accounts = ["111122223333"]
rules = ["root-*"]
from = "2024-05-14T08:00:00Z"
until = "2024-05-14T18:00:00Z"
reason = "closing the legacy billing setup"
ticket = "CHG-1234"
"#,
        enrich_config()
    );
    let mut late = root_event(
        "2",
        "ec2.amazonaws.com",
        "TerminateInstances",
        "89.160.20.130",
        "null",
    );
    late = late.replace("2024-05-14T09:12:40Z", "2024-05-14T19:00:00Z");
    let r = replay(
        &config,
        &[
            root_event(
                "1",
                "ec2.amazonaws.com",
                "TerminateInstances",
                "89.160.20.130",
                "null",
            ),
            late,
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let inside = by_rule(&r.findings, "root-api-call", "000000000001");
    assert_eq!(inside["severity"], "low", "capped");
    assert_eq!(
        inside["expected"],
        serde_json::json!({"reason": "closing the legacy billing setup", "ticket": "CHG-1234", "until": "2024-05-14T18:00:00Z"})
    );
    let after = by_rule(&r.findings, "root-api-call", "000000000002");
    assert!(after.get("expected").is_none(), "after `until`: {after}");
    assert_eq!(after["severity"], "medium", "the rule's own severity");
}

fn check_config(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("rootwatch.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rootwatch"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_enrichment_settings_are_config_errors_naming_the_key() {
    let expected = |from: &str, until: &str, rules: &str| {
        format!(
            "[[detect.expected]]\nrules = [{rules}]\nfrom = \"{from}\"\nuntil = \"{until}\"\nreason = \"r\"\nticket = \"T-1\"\n"
        )
    };
    for (config, want) in [
        (
            "[detect.ip_allowlist]\nasns = [16509]\n".to_owned(),
            "`detect.ip_allowlist.asns`: needs an ASN database",
        ),
        (
            format!(
                "[enrich.geoip]\ncity_db = \"{}\"\n",
                fixture("GeoLite2-ASN-Test.mmdb")
            ),
            "is a `GeoLite2-ASN` database, not a City database",
        ),
        (
            "[enrich.geoip]\nasn_db = \"/nonexistent/asn.mmdb\"\n".to_owned(),
            "cannot be read as an MMDB",
        ),
        (
            "[enrich.accounts.\"12345\"]\nname = \"x\"\n".to_owned(),
            "`12345` is not a 12-digit AWS account id",
        ),
        (
            expected("2024-05-01T00:00:00Z", "2024-05-09T00:00:00Z", "\"root-*\""),
            "is more than 7 days after `from`",
        ),
        (
            expected(
                "2024-05-01T00:00:00Z",
                "2024-05-02T00:00:00Z",
                "\"root-consol-login\"",
            ),
            "detect.expected[0].rules[0]",
        ),
        (
            "[detect.runbooks]\n\"root-api-call\" = \"ftp://wiki/x\"\n".to_owned(),
            "is not an http(s) URL",
        ),
    ] {
        let (code, stderr) = check_config(&config);
        assert_eq!(code, Some(78), "{config}\n{stderr}");
        assert!(stderr.contains(want), "{config}\nwanted {want}\n{stderr}");
    }
    let (code, stderr) = check_config(&enrich_config());
    assert_eq!(code, Some(0), "{stderr}");
}

/// Through SQS (an EventBridge envelope) on moto to a real receiver: the
/// alert as the webhook got it carries the context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_alert_reaches_the_webhook_with_its_context() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    let now = chrono::Utc::now();
    let record = root_event(
        "9",
        "ec2.amazonaws.com",
        "RunInstances",
        "89.160.20.130",
        "null",
    )
    .replace(
        "2024-05-14T09:12:40Z",
        &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    aws.send(&queue, &eventbridge(&record)).await;
    let config = format!(
        r#"{}
[[detect.expected]]
accounts = ["111122223333"]
from = "{}"
until = "{}"
reason = "quarterly break-glass drill"
ticket = "SEC-77"
{}"#,
        enrich_config(),
        (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (now + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        sqs_to_webhook(&queue, 30, &hook.url(), "")
    );
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(30),
        "the alert and an empty queue",
        || async { !hook.delivered().is_empty() && aws.depth(&queue).await == 0 },
    )
    .await;
    d.stop().await;
    let got = hook.delivered();
    let f = got
        .iter()
        .find(|f| f["rule"] == "root-api-call")
        .expect("the root call");
    assert_eq!(f["account_name"], "prod-payments");
    assert_eq!(f["source_ip_context"]["asn"], 29518);
    assert_eq!(f["requires_root"], false);
    assert_eq!(f["expected"]["ticket"], "SEC-77");
    assert_eq!(f["severity"], "low");
    assert_eq!(
        f["runbook_url"],
        "https://wiki.example.com/runbooks/root-api-call"
    );
}

/// `[[detect.expected]]` (like all of `[detect]` and `[enrich]`) is read
/// again on SIGHUP: announced work takes effect without a restart.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_entries_reload_on_sighup() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let base = sqs_to_webhook(&queue, 30, &hook.url(), "");
    let mut child = spawn_rootwatch(&base, dir.path());
    let now = chrono::Utc::now();
    let stamp =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let call = |id: &str| {
        eventbridge(
            &root_event(
                id,
                "ec2.amazonaws.com",
                "RunInstances",
                "198.51.100.7",
                "null",
            )
            .replace("2024-05-14T09:12:40Z", &stamp(now)),
        )
    };
    let severity_of = |tail: &str| {
        hook.delivered()
            .iter()
            .find(|f| f["event_id"].as_str().unwrap_or("").ends_with(tail))
            .map(|f| {
                (
                    f["severity"].as_str().unwrap().to_owned(),
                    f.get("expected").is_some(),
                )
            })
    };
    aws.send(&queue, &call("21")).await;
    eventually(Duration::from_secs(30), "the first alert", || async {
        severity_of("000000000021").is_some()
    })
    .await;
    assert_eq!(severity_of("000000000021"), Some(("medium".into(), false)));

    let with_entry = format!(
        "{base}\n[[detect.expected]]\nrules = [\"root-api-call\"]\nfrom = \"{}\"\nuntil = \"{}\"\nreason = \"drill\"\nticket = \"SEC-9\"\n",
        stamp(now - chrono::Duration::hours(1)),
        stamp(now + chrono::Duration::hours(1))
    );
    std::fs::write(dir.path().join("rootwatch.toml"), with_entry).unwrap();
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP");
    let log = || std::fs::read_to_string(dir.path().join("rootwatch.log")).unwrap_or_default();
    eventually(Duration::from_secs(15), "the reload logged", || async {
        log().contains("SIGHUP: rules reloaded")
    })
    .await;
    aws.send(&queue, &call("22")).await;
    eventually(Duration::from_secs(30), "the second alert", || async {
        severity_of("000000000022").is_some()
    })
    .await;
    assert_eq!(severity_of("000000000022"), Some(("low".into(), true)));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(0));
}

/// An organization in moto: Root/Workloads/Prod holding a tagged account.
/// Returns the account id. Reuses the organization when one exists (a
/// second run on the same emulator).
async fn organization(config: &aws_config::SdkConfig) -> String {
    use aws_sdk_organizations::types::{OrganizationFeatureSet, Tag};
    let org = aws_sdk_organizations::Client::new(config);
    if org.describe_organization().send().await.is_err() {
        org.create_organization()
            .feature_set(OrganizationFeatureSet::All)
            .send()
            .await
            .unwrap();
    }
    let root = org.list_roots().send().await.unwrap().roots()[0]
        .id()
        .unwrap()
        .to_owned();
    let name = unique("ou");
    let workloads = org
        .create_organizational_unit()
        .parent_id(&root)
        .name(format!("Workloads-{name}"))
        .send()
        .await
        .unwrap();
    let workloads = workloads
        .organizational_unit()
        .unwrap()
        .id()
        .unwrap()
        .to_owned();
    let prod = org
        .create_organizational_unit()
        .parent_id(&workloads)
        .name("Prod")
        .send()
        .await
        .unwrap();
    let prod = prod.organizational_unit().unwrap().id().unwrap().to_owned();
    let created = org
        .create_account()
        .email(format!("{name}@example.com"))
        .account_name(format!("payments-{name}"))
        .send()
        .await
        .unwrap();
    let account = created
        .create_account_status()
        .and_then(|s| s.account_id())
        .expect("moto creates the account at once")
        .to_owned();
    org.move_account()
        .account_id(&account)
        .source_parent_id(&root)
        .destination_parent_id(&prod)
        .send()
        .await
        .unwrap();
    org.tag_resource()
        .resource_id(&account)
        .tags(
            Tag::builder()
                .key("owner")
                .value("payments-oncall")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    account
}

/// `[enrich.organizations]`: the daemon reads names, OU paths and tags in
/// the background, and alerts of that account carry them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_names_the_account_in_the_alert() {
    let aws = Aws::new().await;
    let account = organization(&aws.config).await;
    // The directory as one refresh reads it.
    let dir = rootwatch::enrich::organizations::OrgDirectory::default();
    let n = rootwatch::enrich::organizations::refresh(
        &aws_sdk_organizations::Client::new(&aws.config),
        &dir,
        10_000,
    )
    .await
    .unwrap();
    assert!(n >= 2, "the management account and ours: {n}");
    let info = dir.get(&account).unwrap();
    assert!(
        info.name.as_deref().unwrap().starts_with("payments-"),
        "{info:?}"
    );
    let ou = info.ou.as_deref().unwrap();
    assert!(
        ou.starts_with("Root/Workloads-") && ou.ends_with("/Prod"),
        "{ou}"
    );
    assert_eq!(
        info.tags.get("owner").map(String::as_str),
        Some("payments-oncall")
    );

    // Through the binary, SQS on moto and a webhook: wait for the first
    // refresh, then send the root call.
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[enrich.organizations]\nenabled = true\n[enrich.accounts.\"{account}\"]\nenvironment = \"production\"\n{}",
        sqs_to_webhook(&queue, 30, &hook.url(), "")
    );
    let mut child = spawn_rootwatch(&config, dir.path());
    let log = || std::fs::read_to_string(dir.path().join("rootwatch.log")).unwrap_or_default();
    eventually(Duration::from_secs(30), "the organization read", || async {
        log().contains("AWS Organizations accounts read")
    })
    .await;
    let record = root_event(
        "31",
        "ec2.amazonaws.com",
        "RunInstances",
        "198.51.100.7",
        "null",
    )
    .replace("111122223333", &account);
    aws.send(&queue, &eventbridge(&record)).await;
    eventually(Duration::from_secs(30), "the alert", || async {
        !hook.delivered().is_empty()
    })
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(0));
    let got = hook.delivered();
    let f = got.iter().find(|f| f["rule"] == "root-api-call").unwrap();
    assert!(
        f["account_name"].as_str().unwrap().starts_with("payments-"),
        "{f}"
    );
    assert!(f["account_ou"].as_str().unwrap().ends_with("/Prod"), "{f}");
    // Organizations' tag and the static map's, merged.
    assert_eq!(f["account_tags"]["owner"], "payments-oncall");
    assert_eq!(f["account_tags"]["environment"], "production");
}

/// `[enrich] accounts_file`: the map as a CSV export; a table in the
/// config wins for its account; bad rows are config errors naming the line.
#[test]
fn an_accounts_file_names_accounts_and_bad_rows_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("accounts.csv");
    std::fs::write(
        &csv,
        "account_id,name,environment,owner,ou,cost-centre\n111122223333,prod-payments,production,payments-oncall,Root/Workloads/Prod,4711\n444455556666,sandbox,,,,\n",
    )
    .unwrap();
    let config = format!("[enrich]\naccounts_file = \"{}\"\n", csv.display());
    let other = root_event(
        "2",
        "ec2.amazonaws.com",
        "RunInstances",
        "198.51.100.7",
        "null",
    )
    .replace("111122223333", "444455556666");
    let r = replay(
        &config,
        &[
            root_event(
                "1",
                "ec2.amazonaws.com",
                "RunInstances",
                "198.51.100.7",
                "null",
            ),
            other,
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let f = by_rule(&r.findings, "root-api-call", "000000000001");
    assert_eq!(f["account_name"], "prod-payments");
    assert_eq!(f["account_ou"], "Root/Workloads/Prod");
    assert_eq!(
        f["account_tags"],
        serde_json::json!({"cost-centre": "4711", "environment": "production", "owner": "payments-oncall"})
    );
    let g = by_rule(&r.findings, "root-api-call", "000000000002");
    assert_eq!(g["account_name"], "sandbox");
    assert!(
        g.get("account_tags").is_none(),
        "empty cells are left out: {g}"
    );
    // A table for the same account wins.
    let r = replay(
        &format!("{config}[enrich.accounts.\"444455556666\"]\nname = \"sandbox-eu\"\n"),
        &[root_event(
            "2",
            "ec2.amazonaws.com",
            "RunInstances",
            "198.51.100.7",
            "null",
        )
        .replace("111122223333", "444455556666")],
    );
    assert_eq!(
        by_rule(&r.findings, "root-api-call", "000000000002")["account_name"],
        "sandbox-eu"
    );

    for (text, want) in [
        ("name\nprod\n", "no `account_id` column"),
        (
            "account_id,name\n1234,x\n",
            "line 2: `1234` is not a 12-digit AWS account id",
        ),
        (
            "account_id,name\n111122223333,a\n111122223333,b\n",
            "line 3: account 111122223333 is listed twice",
        ),
    ] {
        std::fs::write(&csv, text).unwrap();
        let (code, stderr) = check_config(&config);
        assert_eq!(code, Some(78), "{text}: {stderr}");
        assert!(
            stderr.contains("`enrich.accounts_file`") && stderr.contains(want),
            "{text}\nwanted {want}\n{stderr}"
        );
    }
}
