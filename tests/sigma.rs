//! Sigma rules: SigmaHQ's CloudTrail rules load, refusals name their file,
//! and the matches on the third-party corpora equal those of an independent
//! evaluator (pySigma's DuckDB backend, scripts/sigma_oracle.py).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::http::StatusCode;
use common::{Aws, Daemon, Webhook, eventually};

const RULES: &str = "tests/fixtures/third_party/sigmahq/rules";
const CORPORA: [&str; 4] = [
    "tests/fixtures/third_party/aws-docs-examples/records.jsonl",
    "tests/fixtures/third_party/stratus-red-team/detonation_logs.jsonl",
    "tests/fixtures/third_party/invictus-aws-dataset/records.jsonl",
    "tests/fixtures/third_party/panther-analysis/all_test_logs_records.jsonl",
];

fn rootwatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rootwatch"))
        .args(args)
        .output()
        .expect("run rootwatch")
}

/// A config with Sigma rules from `rules` and `extra` TOML after them.
fn config(dir: &Path, rules: &[&Path], extra: &str) -> PathBuf {
    let list: Vec<String> = rules
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let path = dir.join("rootwatch.toml");
    std::fs::write(
        &path,
        format!("[detect.sigma]\nrules = [{}]\n{extra}", list.join(", ")),
    )
    .unwrap();
    path
}

fn python() -> String {
    std::env::var("ROOTWATCH_TEST_PYTHON").expect(
        "ROOTWATCH_TEST_PYTHON is not set: run the suite with scripts/test.sh, which installs pySigma (scripts/test-requirements.txt) and sets it",
    )
}

#[test]
fn every_sigmahq_cloudtrail_rule_loads() {
    let rules = rootwatch::detect::SigmaRules::load(&[PathBuf::from(RULES)], false).unwrap();
    assert_eq!(rules.len(), 57);
    let names: Vec<&str> = rules.rule_names().collect();
    assert!(names.iter().all(|n| n.starts_with("sigma:")), "{names:?}");
    // Each keeps its author: the licence asks every match to show it.
    let no_author: Vec<_> = rules
        .rules()
        .filter(|r| r.reference.author.is_none())
        .map(|r| r.path.display().to_string())
        .collect();
    assert!(no_author.is_empty(), "{no_author:?}");
}

/// The matches of all 57 rules on four corpora (3,700 records), as (rule
/// id, eventID) pairs, equal the independent evaluator's. Built-in rules are
/// off so that de-duplication is decided by the Sigma findings alone, as in
/// the oracle.
#[test]
fn matches_on_the_corpora_equal_an_independent_evaluator() {
    let dir = tempfile::tempdir().unwrap();
    let builtins: Vec<String> = rootwatch::detect::rule_ids()
        .iter()
        .map(|id| format!("{id:?}"))
        .collect();
    let cfg = config(
        dir.path(),
        &[Path::new(RULES)],
        &format!("[detect]\ndisabled = [{}]\n", builtins.join(", ")),
    );
    let mut args = vec!["replay", "-c", cfg.to_str().unwrap()];
    args.extend(CORPORA);
    let out = rootwatch(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: BTreeSet<(String, Option<String>)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: serde_json::Value = serde_json::from_str(l).unwrap();
            let rule = f["rule"].as_str().unwrap();
            let id = rule
                .strip_prefix("sigma:")
                .expect("only Sigma rules are on");
            (id.to_owned(), f["event_id"].as_str().map(str::to_owned))
        })
        .collect();

    let oracle = Command::new(python())
        .arg("scripts/sigma_oracle.py")
        .arg(RULES)
        .args(CORPORA)
        .output()
        .expect("run the oracle");
    assert!(
        oracle.status.success(),
        "{}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    let theirs: BTreeSet<(String, Option<String>)> = String::from_utf8(oracle.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                m["rule"].as_str().unwrap().to_owned(),
                m["eventID"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let only_ours: Vec<_> = ours.difference(&theirs).collect();
    let only_theirs: Vec<_> = theirs.difference(&ours).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "only rootwatch: {only_ours:?}\nonly the oracle: {only_theirs:?}"
    );
    // Not an empty agreement: most rules fire somewhere in the corpora.
    let rules: BTreeSet<&String> = ours.iter().map(|(r, _)| r).collect();
    assert!(
        ours.len() > 300 && rules.len() >= 30,
        "{} {}",
        ours.len(),
        rules.len()
    );
}

#[test]
fn a_finding_carries_the_rule_its_author_and_techniques() {
    let dir = tempfile::tempdir().unwrap();
    let rule = Path::new(RULES).join("aws_cloudtrail_disable_logging.yml");
    let cfg = config(dir.path(), &[&rule], "");
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        r#"{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","userName":"alice"},"eventTime":"2026-12-01T10:00:00Z","eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.7","userAgent":"aws-cli/2.15.0","requestParameters":{"name":"arn:aws:cloudtrail:us-east-1:111122223333:trail/main"},"responseElements":null,"requestID":"r-1","eventID":"e-stop-1","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333"}
{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333"},"eventTime":"2026-12-01T10:00:01Z","eventSource":"cloudtrail.amazonaws.com","eventName":"DescribeTrails","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.7","eventID":"e-describe-1","readOnly":true,"eventType":"AwsApiCall","recipientAccountId":"111122223333"}
"#,
    )
    .unwrap();
    let out = rootwatch(&[
        "replay",
        "-c",
        cfg.to_str().unwrap(),
        events.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let f = &lines[0];
    assert_eq!(f["rule"], "sigma:4db60cc0-36fb-42b7-9b58-a5b53019fb74");
    assert_eq!(f["title"], "AWS CloudTrail Important Change");
    assert_eq!(f["severity"], "medium");
    assert_eq!(f["event_id"], "e-stop-1");
    assert_eq!(f["sigma"]["id"], "4db60cc0-36fb-42b7-9b58-a5b53019fb74");
    assert_eq!(f["sigma"]["level"], "medium");
    assert_eq!(f["sigma"]["author"], "vitaliy0x1");
    assert_eq!(f["sigma"]["techniques"], serde_json::json!(["T1685.002"]));
    assert_eq!(f["mitre_attack"]["id"], "T1685.002");
    assert!(
        f["sigma"]["references"][0]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{f}"
    );
    let reason = f["reason"].as_str().unwrap();
    assert!(
        reason.contains("by vitaliy0x1") && reason.contains("StopLogging"),
        "{reason}"
    );
}

/// Each bad rule file is refused by `check-config` with the file named and
/// the reason, before anything runs.
#[test]
fn bad_rule_files_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let windows = write(
        "windows.yml",
        "title: Not CloudTrail\nid: 11111111-1111-4111-8111-111111111111\nlogsource:\n  product: windows\n  service: security\ndetection:\n  sel:\n    EventID: 4624\n  condition: sel\nlevel: low\n",
    );
    let no_id = write(
        "no_id.yml",
        "title: No id\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName: StopLogging\n  condition: sel\n",
    );
    let broken = write(
        "broken.yml",
        "title: Broken\nid: 22222222-2222-4222-8222-222222222222\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName: StopLogging\n  condition: sel and missing\n",
    );
    let copy = write(
        "copy.yml",
        &std::fs::read_to_string(Path::new(RULES).join("aws_cloudtrail_disable_logging.yml"))
            .unwrap(),
    );
    // A good rule, then one with an unknown modifier, in one file.
    let second = write(
        "second.yml",
        &format!(
            "{}---\ntitle: Modified\nid: 33333333-3333-4333-8333-333333333333\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName|bogus: StopLogging\n  condition: sel\n",
            std::fs::read_to_string(&broken)
                .unwrap()
                .replace("sel and missing", "sel")
        ),
    );
    let yaml = write(
        "yaml.yml",
        "title: Bad YAML\nid: 44444444-4444-4444-8444-444444444444\nlogsource:\n  product: aws\n   service: cloudtrail\n",
    );
    let original = Path::new(RULES).join("aws_cloudtrail_disable_logging.yml");
    // Each error names the file and, where the problem is in it, the line:
    // the key it is about, or the line holding the word it quotes.
    for (files, line, want) in [
        (
            vec![windows.as_path()],
            Some(3),
            "is for log source product: windows, service: security",
        ),
        (vec![no_id.as_path()], Some(1), "rule `No id` has no id"),
        (
            vec![broken.as_path()],
            Some(9),
            "unknown detection identifier: missing",
        ),
        (vec![second.as_path()], Some(18), "Unknown modifier 'bogus'"),
        (vec![yaml.as_path()], Some(5), "YAML parse error"),
        (
            vec![original.as_path(), copy.as_path()],
            Some(2),
            "is also the id of a rule in",
        ),
        (
            vec![Path::new("/nonexistent/rules")],
            None,
            "cannot read it",
        ),
    ] {
        let cfg = config(dir.path(), &files, "");
        let out = rootwatch(&["check-config", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{err}");
        let named = files.last().unwrap().display().to_string();
        let named = match line {
            Some(n) => format!("{named}:{n}: "),
            None => format!("{named}: "),
        };
        assert!(err.contains(&named) && err.contains(want), "{want}: {err}");
    }
    // Other log sources can be passed over instead.
    let cfg = config(
        dir.path(),
        &[windows.as_path(), original.as_path()],
        "skip_other_logsources = true\n",
    );
    let out = rootwatch(&["check-config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A sink's `rules` takes `sigma:*`; a pattern that matches no rule is an
/// error, not a sink that never alerts.
#[test]
fn sinks_route_sigma_findings_by_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let rule = Path::new(RULES).join("aws_cloudtrail_disable_logging.yml");
    let sink = "[[sinks]]\ntype = \"stdout\"\nrules = [\"sigma:*\"]\n";
    let cfg = config(dir.path(), &[&rule], sink);
    let out = rootwatch(&["check-config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = config(
        dir.path(),
        &[&rule],
        "[[sinks]]\ntype = \"stdout\"\nrules = [\"sigma:nothing-*\"]\n",
    );
    let out = rootwatch(&["check-config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`sigma:nothing-*` matches no rule id"),
        "{err}"
    );
}

/// Findings of every loaded rule on the corpora: every format's payload
/// keeps to its limits, shows the rule's author, and the OCSF payload
/// validates against the published schema.
#[test]
fn every_format_shows_the_author_and_ocsf_validates() {
    use rootwatch::detect::{DetectSettings, Detector, SigmaRules};
    use rootwatch::sink::format::{check, ocsf, opsgenie, pagerduty, slack, teams, webhook};
    let sigma = SigmaRules::load(&[PathBuf::from(RULES)], false).unwrap();
    let detector = Detector::new(DetectSettings {
        sigma: Some(std::sync::Arc::new(sigma)),
        ..Default::default()
    });
    let mut first = std::collections::BTreeMap::new();
    for file in CORPORA {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let Ok(rec) = rootwatch::event::Record::parse(line) else {
                continue;
            };
            let mut out = Vec::new();
            detector.evaluate(&rec, &mut out);
            for f in out {
                if f.sigma.is_some() {
                    first.entry(f.rule.clone()).or_insert(f);
                }
            }
        }
    }
    assert!(first.len() >= 30, "{}", first.len());
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, f) in first.values().enumerate() {
        check::all_formats(f).unwrap_or_else(|e| panic!("{}: {e}", f.rule));
        let author = f.sigma.as_ref().unwrap().author.clone().unwrap();
        // Every format shows the author: its leading words, which no
        // format's escaping changes.
        let short: String = author
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == ' ')
            .take(20)
            .collect();
        let short = short.trim().to_owned();
        assert!(!short.is_empty(), "{author}");
        for (name, body) in [
            ("slack", slack::body(f).to_string()),
            ("teams", teams::body(f).to_string()),
            (
                "pagerduty",
                pagerduty::body(f, "0123456789abcdef0123456789abcdef").to_string(),
            ),
            ("opsgenie", opsgenie::body(f).to_string()),
            ("ocsf", ocsf::body(f, 0).to_string()),
            ("webhook", String::from_utf8(webhook::body(f)).unwrap()),
        ] {
            let shown = serde_json::to_string(&short).unwrap();
            let shown = shown.trim_matches('"');
            assert!(
                body.contains(shown),
                "{name} of {} lacks {short:?}: {body}",
                f.rule
            );
        }
        let path = dir.path().join(format!("{i}.json"));
        std::fs::write(&path, ocsf::body(f, 0).to_string()).unwrap();
        files.push(path);
    }
    let out = Command::new(python())
        .arg("scripts/ocsf_validate.py")
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("{} valid, 0 invalid", files.len())),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------ correlations

const ROOT_LOGIN_RULE: &str = "title: Root console sign-in
id: 0d5ab9a1-4e5b-4c31-9c55-1f0a3c2b7e01
author: rootwatch tests
logsource:
  product: aws
  service: cloudtrail
detection:
  selection:
    eventName: ConsoleLogin
    userIdentity.type: Root
  condition: selection
level: low
";

const ROOT_KEY_RULE: &str = "title: Access key created
id: 0d5ab9a1-4e5b-4c31-9c55-1f0a3c2b7e02
author: rootwatch tests
logsource:
  product: aws
  service: cloudtrail
detection:
  selection:
    eventSource: iam.amazonaws.com
    eventName: CreateAccessKey
  condition: selection
level: low
";

/// A root sign-in, then within 10 minutes a new access key and CloudTrail
/// logging stopped (SigmaHQ's rule), in one account; and five failed
/// sign-ins of one user in 10 minutes (SigmaHQ's rule).
const CORRELATIONS: &str = "title: Root sign-in, new access key and logging stopped
id: 0d5ab9a1-4e5b-4c31-9c55-1f0a3c2b7e10
author: rootwatch tests
correlation:
  type: temporal
  rules:
    - 0d5ab9a1-4e5b-4c31-9c55-1f0a3c2b7e01
    - 0d5ab9a1-4e5b-4c31-9c55-1f0a3c2b7e02
    - 4db60cc0-36fb-42b7-9b58-a5b53019fb74
  group-by:
    - recipientAccountId
  timespan: 10m
level: critical
---
title: Five failed sign-ins of one user
id: 0d5ab9a1-4e5b-4c31-9c55-1f0a3c2b7e11
author: rootwatch tests
correlation:
  type: event_count
  rules:
    - 6393e346-1977-46ef-8987-ad414a145fad
  group-by:
    - userIdentity.userName
  timespan: 10m
  condition:
    gte: 5
level: high
";

/// The rule files of the correlation scenario in `dir`.
fn correlation_rules(dir: &Path) -> Vec<PathBuf> {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for (name, text) in [
        ("root_login.yml", ROOT_LOGIN_RULE),
        ("root_key.yml", ROOT_KEY_RULE),
        ("correlations.yml", CORRELATIONS),
    ] {
        std::fs::write(rules.join(name), text).unwrap();
    }
    vec![
        rules,
        Path::new(RULES).join("aws_cloudtrail_disable_logging.yml"),
        Path::new(RULES).join("aws_cloudtrail_console_login_failed_authentication.yml"),
    ]
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// CloudTrail records as AWS writes them, at `t`, in `account`.
fn root_login(id: &str, account: &str, t: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"Root","principalId":"{account}","arn":"arn:aws:iam::{account}:root","accountId":"{account}","accessKeyId":""}},"eventTime":"{}","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.23","userAgent":"Mozilla/5.0","requestParameters":null,"responseElements":{{"ConsoleLogin":"Success"}},"additionalEventData":{{"LoginTo":"https://console.aws.amazon.com/console/home","MobileVersion":"No","MFAUsed":"Yes"}},"eventID":"{id}","readOnly":false,"eventType":"AwsConsoleSignIn","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management"}}"#,
        time(t)
    )
}

fn root_call(
    id: &str,
    account: &str,
    t: chrono::DateTime<chrono::Utc>,
    source: &str,
    name: &str,
) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"Root","principalId":"{account}","arn":"arn:aws:iam::{account}:root","accountId":"{account}","accessKeyId":"ASIAEXAMPLEROOTSESSN","sessionContext":{{"attributes":{{"creationDate":"{}","mfaAuthenticated":"true"}}}}}},"eventTime":"{}","eventSource":"{source}","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.23","userAgent":"aws-internal/3","requestParameters":{{}},"responseElements":null,"requestID":"r-{id}","eventID":"{id}","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management"}}"#,
        time(t),
        time(t)
    )
}

fn failed_login(id: &str, user: &str, t: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","principalId":"AIDAEXAMPLE{user}","accountId":"111122223333","accessKeyId":"","userName":"{user}"}},"eventTime":"{}","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.50","userAgent":"Mozilla/5.0","errorMessage":"Failed authentication","requestParameters":null,"responseElements":{{"ConsoleLogin":"Failure"}},"additionalEventData":{{"LoginTo":"https://console.aws.amazon.com/console/home","MobileVersion":"No","MFAUsed":"No"}},"eventID":"{id}","readOnly":false,"eventType":"AwsConsoleSignIn","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#,
        time(t)
    )
}

fn sigma_findings(d: &rootwatch::detect::Detector, record: &str) -> Vec<String> {
    let rec = rootwatch::event::Record::parse(record).unwrap();
    let mut out = Vec::new();
    d.evaluate(&rec, &mut out);
    out.into_iter()
        .filter(|f| f.rule.starts_with("sigma:"))
        .map(|f| f.rule)
        .collect()
}

const TEMPORAL: &str = "sigma:0d5ab9a1-4e5b-4c31-9c55-1f0a3c2b7e10";
const FIVE_FAILURES: &str = "sigma:0d5ab9a1-4e5b-4c31-9c55-1f0a3c2b7e11";

/// The correlations fire on the event that completes them, once; other
/// accounts and events too far apart do not combine; a copy of an event is
/// not counted again, and gets the same correlation finding back.
#[test]
fn correlations_fire_once_on_the_event_that_completes_them() {
    use rootwatch::detect::{DetectSettings, Detector, SigmaRules};
    let dir = tempfile::tempdir().unwrap();
    let sigma = SigmaRules::load(&correlation_rules(dir.path()), false).unwrap();
    assert!(sigma.has_correlations());
    let d = Detector::new(DetectSettings {
        sigma: Some(std::sync::Arc::new(sigma)),
        ..Default::default()
    });
    let t0 = chrono::Utc::now() - chrono::Duration::hours(1);
    let min = |m: i64| t0 + chrono::Duration::minutes(m);
    let (a, b) = ("111122223333", "444455556666");

    assert!(
        !sigma_findings(&d, &root_login("t-login-a", a, min(0))).contains(&TEMPORAL.to_owned())
    );
    // Another account's steps do not complete account A's sequence.
    for (id, source, name) in [
        ("t-key-b", "iam.amazonaws.com", "CreateAccessKey"),
        ("t-stop-b", "cloudtrail.amazonaws.com", "StopLogging"),
    ] {
        let got = sigma_findings(&d, &root_call(id, b, min(1), source, name));
        assert!(!got.contains(&TEMPORAL.to_owned()), "{got:?}");
    }
    let key = root_call("t-key-a", a, min(2), "iam.amazonaws.com", "CreateAccessKey");
    assert!(!sigma_findings(&d, &key).contains(&TEMPORAL.to_owned()));
    let stop = root_call(
        "t-stop-a",
        a,
        min(5),
        "cloudtrail.amazonaws.com",
        "StopLogging",
    );
    let got = sigma_findings(&d, &stop);
    assert_eq!(
        got,
        [
            "sigma:4db60cc0-36fb-42b7-9b58-a5b53019fb74".to_owned(),
            TEMPORAL.to_owned()
        ],
        "the base finding and the correlation"
    );
    // The same StopLogging again (a redelivered message): the same
    // correlation finding, not a second count.
    assert_eq!(sigma_findings(&d, &stop), got);
    // A new sequence in account B, too spread out: the stop comes 11
    // minutes after the key.
    sigma_findings(&d, &root_login("t-login-b2", b, min(20)));
    sigma_findings(
        &d,
        &root_call(
            "t-key-b2",
            b,
            min(21),
            "iam.amazonaws.com",
            "CreateAccessKey",
        ),
    );
    let late = root_call(
        "t-stop-b2",
        b,
        min(32),
        "cloudtrail.amazonaws.com",
        "StopLogging",
    );
    assert!(!sigma_findings(&d, &late).contains(&TEMPORAL.to_owned()));

    // Five failures of one user: the fifth fires, a sixth does not; the
    // other user's failures count apart.
    for i in 0..4 {
        let got = sigma_findings(&d, &failed_login(&format!("f-bob-{i}"), "bob", min(40 + i)));
        assert_eq!(
            got,
            ["sigma:6393e346-1977-46ef-8987-ad414a145fad".to_owned()]
        );
        sigma_findings(&d, &failed_login(&format!("f-eve-{i}"), "eve", min(40 + i)));
    }
    let fifth = sigma_findings(&d, &failed_login("f-bob-4", "bob", min(45)));
    assert!(fifth.contains(&FIVE_FAILURES.to_owned()), "{fifth:?}");
    let sixth = sigma_findings(&d, &failed_login("f-bob-5", "bob", min(46)));
    assert!(!sixth.contains(&FIVE_FAILURES.to_owned()), "{sixth:?}");
}

/// The scenario through SQS with the shipped throttle: the temporal
/// correlation alerts once, the five-failures count once, and while the
/// webhook refuses, no message is deleted: a redelivered message brings
/// its correlation finding back, and it is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlations_through_sqs_alert_once_and_acknowledge_after_delivery() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<String> = correlation_rules(dir.path())
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let started = std::time::Instant::now();
    let hook = Webhook::start(move |_| {
        if started.elapsed() < Duration::from_secs(8) {
            (StatusCode::SERVICE_UNAVAILABLE, vec![])
        } else {
            (StatusCode::OK, vec![])
        }
    })
    .await;
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(30);
    let min = |m: i64| t0 + chrono::Duration::minutes(m);
    let a = "111122223333";
    let mut records = vec![
        root_login("q-login", a, min(0)),
        root_call("q-key", a, min(2), "iam.amazonaws.com", "CreateAccessKey"),
        root_call(
            "q-stop",
            a,
            min(5),
            "cloudtrail.amazonaws.com",
            "StopLogging",
        ),
    ];
    records.extend((0..5).map(|i| failed_login(&format!("q-fail-{i}"), "bob", min(10 + i))));
    for r in &records {
        aws.send(&queue, &common::eventbridge_as_aws(r)).await;
    }
    // The configuration a user ships: the default throttle, no window set.
    let config = format!(
        "[[sources]]\ntype = \"sqs\"\nqueue_url = \"{queue}\"\nwait_time_secs = 1\nvisibility_timeout_secs = 5\n[[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\nretry_max_secs = 3\n[server]\nlisten = \"\"\n[detect.sigma]\nrules = [{}]\n",
        hook.url(),
        rules.join(", ")
    );
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(8),
        "the first refused deliveries",
        || async { !hook.requests().is_empty() },
    )
    .await;
    assert!(hook.delivered().is_empty());
    assert!(
        aws.depth(&queue).await > 0,
        "messages whose alerts were refused stay in the queue"
    );
    let count = |rule: &str| {
        hook.delivered()
            .iter()
            .filter(|f| f["rule"] == rule)
            .count()
    };
    // Every message is deleted once its alerts are delivered, except the
    // throttle windows' carriers: the root calls' window (the StopLogging
    // call folded into it) and the failed sign-ins' window (four folded),
    // held until their summaries go out.
    eventually(
        Duration::from_secs(60),
        "both correlations delivered and all but the carriers deleted",
        || async {
            count(TEMPORAL) >= 1 && count(FIVE_FAILURES) >= 1 && aws.depth(&queue).await <= 2
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.stop().await;
    assert_eq!(count(TEMPORAL), 1, "{:?}", hook.delivered());
    assert_eq!(count(FIVE_FAILURES), 1, "{:?}", hook.delivered());
    let temporal = hook
        .delivered()
        .into_iter()
        .find(|f| f["rule"] == TEMPORAL)
        .unwrap();
    assert_eq!(temporal["event_id"], "q-stop");
    assert_eq!(temporal["severity"], "critical");
    assert_eq!(temporal["correlation"]["type"], "temporal");
    assert_eq!(temporal["correlation"]["group_by"]["recipientAccountId"], a);
    assert!(
        hook.requests().len() > hook.delivered().len(),
        "deliveries were refused and tried again"
    );
}

/// `replay` over the scenario, whatever `--jobs` says: one thread, in input
/// order, the same correlation findings.
#[test]
fn replay_runs_correlations_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let rules = correlation_rules(dir.path());
    let refs: Vec<&Path> = rules.iter().map(PathBuf::as_path).collect();
    let cfg = config(dir.path(), &refs, "");
    let t0 = chrono::Utc::now() - chrono::Duration::hours(2);
    let min = |m: i64| t0 + chrono::Duration::minutes(m);
    let a = "111122223333";
    let mut records = vec![
        root_login("r-login", a, min(0)),
        root_call("r-key", a, min(2), "iam.amazonaws.com", "CreateAccessKey"),
        root_call(
            "r-stop",
            a,
            min(5),
            "cloudtrail.amazonaws.com",
            "StopLogging",
        ),
    ];
    records.extend((0..6).map(|i| failed_login(&format!("r-fail-{i}"), "bob", min(10 + i))));
    // Enough records that two threads would take them in several chunks.
    for i in 0..3_000 {
        records.push(failed_login(
            &format!("r-other-{i}"),
            &format!("user{i}"),
            min(20),
        ));
    }
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, records.join("\n")).unwrap();
    for jobs in ["1", "2"] {
        let out = rootwatch(&[
            "replay",
            "-c",
            cfg.to_str().unwrap(),
            "--jobs",
            jobs,
            events.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fired: Vec<(String, String)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|f| f["rule"] == TEMPORAL || f["rule"] == FIVE_FAILURES)
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_owned(),
                    f["event_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            fired,
            [
                (TEMPORAL.to_owned(), "r-stop".to_owned()),
                (FIVE_FAILURES.to_owned(), "r-fail-4".to_owned())
            ],
            "--jobs {jobs}"
        );
    }
}

/// The prefilter with SigmaHQ's rules loaded never passes over a record
/// that one of them matches, in any letter case (Unicode's too) or spelling
/// of `/`, and still passes over most records of the corpora.
#[test]
fn the_prefilter_passes_over_no_record_a_sigma_rule_matches() {
    use rootwatch::detect::{DetectSettings, Detector, SigmaRules};
    let sigma = SigmaRules::load(&[PathBuf::from(RULES)], false).unwrap();
    let d = Detector::new(DetectSettings {
        sigma: Some(std::sync::Arc::new(sigma)),
        ..Default::default()
    });
    let (mut matched, mut skipped, mut total) = (0, 0, 0);
    for file in CORPORA {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            // As written, with every `/` written `\/` (as some JSON
            // writers do), and with the event name in capitals (Sigma
            // compares values regardless of case).
            let upper = v["eventName"].as_str().map(str::to_ascii_uppercase);
            let mut variants = vec![line.to_owned(), line.replace('/', "\\/")];
            // And with the Kelvin sign for every `k` of the event name and
            // user agent: Sigma's Unicode lower case makes it a `k`.
            let mut kelvin = v.clone();
            for key in ["eventName", "userAgent"] {
                if let Some(text) = v[key].as_str() {
                    kelvin[key] = text.replace(['k', 'K'], "\u{212A}").into();
                }
            }
            variants.push(kelvin.to_string());
            if let Some(u) = upper {
                v["eventName"] = u.into();
                variants.push(v.to_string());
            }
            for body in variants {
                total += 1;
                let rec = rootwatch::event::Record::parse(&body).unwrap();
                let mut out = Vec::new();
                d.evaluate(&rec, &mut out);
                let sigma = out.iter().filter(|f| f.rule.starts_with("sigma:")).count();
                let may = d.may_alert(body.as_bytes());
                assert!(
                    sigma == 0 || may,
                    "{sigma} Sigma finding(s) passed over: {body}"
                );
                matched += usize::from(sigma > 0);
                skipped += usize::from(!may);
            }
        }
    }
    assert!(matched > 300, "{matched}");
    assert!(skipped * 2 > total, "only {skipped} of {total} passed over");
}

/// `rules list` names every rule, the loaded Sigma rules with their author
/// and file; `rules test` says which events each rule matched, and fails
/// when a rule misses an event it says it matches.
#[test]
fn rules_list_and_rules_test_serve_a_rule_author() {
    let dir = tempfile::tempdir().unwrap();
    let disable = Path::new(RULES).join("aws_cloudtrail_disable_logging.yml");
    let cfg = config(dir.path(), &[&disable], "");
    let out = rootwatch(&["rules", "list", "-c", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for id in rootwatch::detect::rule_ids() {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{id}\t"))),
            "{id}: {text}"
        );
    }
    let sigma = text
        .lines()
        .find(|l| l.starts_with("sigma:4db60cc0-36fb-42b7-9b58-a5b53019fb74\t"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        sigma.contains("AWS CloudTrail Important Change") && sigma.contains("by vitaliy0x1"),
        "{sigma}"
    );

    // A rule that says which events it matches.
    let rule = std::fs::read_to_string(&disable)
        .unwrap()
        .replace("level: medium", "level: medium\nrootwatch_expected_events:\n    - ee73c230-44bc-4492-8542-cfb189eae287\n    - 10163ed2-2253-469d-a5ee-cbc6651f8934");
    let good = dir.path().join("good.yml");
    std::fs::write(&good, &rule).unwrap();
    let events = "tests/fixtures/third_party/stratus-red-team/detonation_logs.jsonl";
    let out = rootwatch(&["rules", "test", good.to_str().unwrap(), events]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("match\tsigma:4db60cc0-36fb-42b7-9b58-a5b53019fb74\t10163ed2-2253-469d-a5ee-cbc6651f8934\tStopLogging"),
        "{text}"
    );
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        rule.replace(
            "    - 10163ed2-2253-469d-a5ee-cbc6651f8934",
            "    - not-in-the-events",
        ),
    )
    .unwrap();
    let out = rootwatch(&["rules", "test", bad.to_str().unwrap(), events]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "FAIL\tsigma:4db60cc0-36fb-42b7-9b58-a5b53019fb74\texpected to match not-in-the-events"
        ),
        "{text}"
    );
    // A rule that does not load: the file is named, exit 78.
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "title: x\n").unwrap();
    let out = rootwatch(&["rules", "test", broken.to_str().unwrap(), events]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&broken.display().to_string()));
}

/// `rules test --config` loads and runs the rules as the daemon would:
/// `skip_other_logsources` passes over a rule for Windows that the plain
/// command refuses, and a `[[detect.suppress]]` entry hides the matches it
/// would hide in the daemon.
#[test]
fn rules_test_with_a_config_loads_and_runs_rules_as_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let disable = Path::new(RULES).join("aws_cloudtrail_disable_logging.yml");
    let rule = std::fs::read_to_string(&disable).unwrap().replace(
        "level: medium",
        "level: medium\nrootwatch_expected_events:\n    - 10163ed2-2253-469d-a5ee-cbc6651f8934",
    );
    std::fs::write(rules.join("stop.yml"), rule).unwrap();
    std::fs::write(
        rules.join("windows.yml"),
        "title: Not CloudTrail\nid: 11111111-1111-4111-8111-111111111111\nlogsource:\n  product: windows\n  service: security\ndetection:\n  sel:\n    EventID: 4624\n  condition: sel\nlevel: low\n",
    )
    .unwrap();
    let events = "tests/fixtures/third_party/stratus-red-team/detonation_logs.jsonl";
    let run = |extra: &[&str]| {
        let mut args = vec!["rules", "test"];
        args.extend_from_slice(extra);
        args.extend([rules.to_str().unwrap(), events]);
        let out = rootwatch(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&[]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("windows.yml"), "{err}");

    let skip = config(dir.path(), &[], "skip_other_logsources = true\n");
    let (code, out, err) = run(&["--config", skip.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("match\tsigma:4db60cc0-36fb-42b7-9b58-a5b53019fb74\t10163ed2-2253-469d-a5ee-cbc6651f8934\tStopLogging"),
        "{out}"
    );

    // A suppression may name a Sigma rule only when the config loads it.
    let suppressed = config(
        dir.path(),
        &[&rules],
        "skip_other_logsources = true\n[[detect.suppress]]\nrule = \"sigma:4db60cc0-36fb-42b7-9b58-a5b53019fb74\"\nevent_name = \"StopLogging\"\n",
    );
    let (code, out, err) = run(&["-c", suppressed.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("FAIL\tsigma:4db60cc0-36fb-42b7-9b58-a5b53019fb74\texpected to match 10163ed2-2253-469d-a5ee-cbc6651f8934"),
        "{out}"
    );
}

/// SIGHUP reloads the rules of a running daemon: a rule added to the rules
/// directory alerts after it; a rule file that does not load keeps the
/// running rules (and says so), and nothing in between is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules_and_a_bad_file_keeps_the_running_ones() {
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    let hook = Webhook::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let copy = |name: &str| {
        std::fs::copy(Path::new(RULES).join(name), rules.join(name)).unwrap();
    };
    copy("aws_cloudtrail_disable_logging.yml");
    // The throttle is off: the root calls here share one throttle key, and
    // a folded one would keep its message in the queue, where the test
    // waits for it to be handled.
    let config = format!(
        "[throttle]\nwindow_secs = 0\n[[sources]]\ntype = \"sqs\"\nqueue_url = \"{queue}\"\nwait_time_secs = 1\n[[sinks]]\ntype = \"webhook\"\nurl = \"{}\"\n[server]\nlisten = \"\"\n[detect.sigma]\nrules = [{:?}]\n",
        hook.url(),
        rules.display().to_string()
    );
    let mut child = common::spawn_rootwatch(&config, dir.path());
    let log = || std::fs::read_to_string(dir.path().join("rootwatch.log")).unwrap_or_default();
    let hup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    };
    let t = chrono::Utc::now();
    let a = "111122223333";
    let sigma_alerts = |rule: &str| {
        hook.delivered()
            .iter()
            .filter(|f| f["rule"] == rule)
            .map(|f| f["event_id"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    const GUARDDUTY: &str = "sigma:d2656e78-c069-4571-8220-9e0ab5913f19";
    aws.send(
        &queue,
        &common::eventbridge_as_aws(&root_call(
            "h-stop",
            a,
            t,
            "cloudtrail.amazonaws.com",
            "StopLogging",
        )),
    )
    .await;
    eventually(Duration::from_secs(30), "the StopLogging alert", || async {
        sigma_alerts("sigma:4db60cc0-36fb-42b7-9b58-a5b53019fb74") == ["h-stop"]
    })
    .await;
    // Not loaded yet: a deleted detector alerts only through the built-in
    // root rules.
    aws.send(
        &queue,
        &common::eventbridge_as_aws(&root_call(
            "h-gd-before",
            a,
            t,
            "guardduty.amazonaws.com",
            "DeleteDetector",
        )),
    )
    .await;
    eventually(Duration::from_secs(30), "the message handled", || async {
        aws.depth(&queue).await == 0
    })
    .await;
    assert!(sigma_alerts(GUARDDUTY).is_empty());

    copy("aws_cloudtrail_guardduty_detector_deleted_or_updated.yml");
    hup(child.id());
    eventually(Duration::from_secs(15), "the reload logged", || async {
        log().contains("rules reloaded")
    })
    .await;
    aws.send(
        &queue,
        &common::eventbridge_as_aws(&root_call(
            "h-gd-after",
            a,
            t,
            "guardduty.amazonaws.com",
            "DeleteDetector",
        )),
    )
    .await;
    eventually(Duration::from_secs(30), "the new rule's alert", || async {
        sigma_alerts(GUARDDUTY) == ["h-gd-after"]
    })
    .await;

    std::fs::write(
        rules.join("broken.yml"),
        "title: broken\nid: x\ndetection: [\n",
    )
    .unwrap();
    hup(child.id());
    eventually(
        Duration::from_secs(15),
        "the failed reload logged",
        || async { log().contains("rules not reloaded") },
    )
    .await;
    assert!(log().contains("broken.yml"), "{}", log());
    aws.send(
        &queue,
        &common::eventbridge_as_aws(&root_call(
            "h-gd-kept",
            a,
            t,
            "guardduty.amazonaws.com",
            "DeleteDetector",
        )),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the running rules still alert",
        || async { sigma_alerts(GUARDDUTY) == ["h-gd-after", "h-gd-kept"] },
    )
    .await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        common::wait_exit(&mut child, Duration::from_secs(30)),
        Some(0)
    );
}
