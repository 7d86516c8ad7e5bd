//! The detector against CloudTrail data nobody on this project wrote
//! (tests/fixtures/third_party, each set with its licence and provenance).

mod common;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use rootwatch::decode::{Item, decode_body};
use rootwatch::detect::{DetectSettings, Detector};
use rootwatch::event::Record;

fn fixture(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/third_party")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every record file decodes: no panic, no decode error, one record a line.
#[test]
fn every_corpus_record_decodes() {
    let d = Detector::new(DetectSettings::default());
    for file in [
        "aws-docs-examples/records.jsonl",
        "invictus-aws-dataset/records.jsonl",
        "panther-analysis/all_test_logs_records.jsonl",
        "stratus-red-team/detonation_logs.jsonl",
    ] {
        let text = fixture(file);
        let mut lines = 0;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            lines += 1;
            let mut records = 0;
            decode_body(line, &mut |item| match item {
                Ok(Item::Record(r)) => {
                    records += 1;
                    let mut out = Vec::new();
                    d.evaluate(&r, &mut out);
                    for f in &out {
                        serde_json::to_string(f).unwrap();
                    }
                }
                other => panic!("{file}:{}: {other:?}", i + 1),
            });
            assert_eq!(records, 1, "{file}:{}", i + 1);
        }
        assert!(lines > 0, "{file} is empty");
    }
}

/// The records inside Panther's and the AWS docs' wrappers decode too.
#[test]
fn wrapped_corpus_records_decode() {
    for (file, key) in [
        ("panther-analysis/all_cloudtrail_rule_tests.jsonl", "log"),
        (
            "aws-docs-examples/doc_examples_with_context.jsonl",
            "record",
        ),
    ] {
        for (i, line) in fixture(file).lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let raw = v[key].to_string();
            Record::parse(&raw).unwrap_or_else(|e| panic!("{file}:{}: {e}", i + 1));
        }
    }
}

/// Panther's rule tests for the rules that map onto rootwatch's. The expected
/// verdicts under rootwatch's semantics were derived independently
/// (derive_expectations.py); where they differ from Panther's, the
/// difference is named here.
#[test]
fn panther_conformance() {
    let documented: BTreeMap<(&str, &str), &str> = BTreeMap::from([
        (
            ("AWS.Console.LoginWithoutMFA", "No MFA Login - New User"),
            "Panther skips users and accounts under three days old (a mocked look-up); rootwatch alerts on every IAM login without MFA",
        ),
        (
            (
                "AWS.Root.Activity",
                "Root Activity - CreateServiceLinkedRole",
            ),
            "Panther allow-lists CreateServiceLinkedRole; rootwatch reports every root call unless configured in detect.root_api_call_exclude_events",
        ),
        (
            ("AWS.Root.Activity", "Root User Failed Activity"),
            "rootwatch includes failed root calls (at low severity); Panther only successful ones",
        ),
        (
            ("AWS.Root.Activity", "Root Read-Only Enumeration"),
            "rootwatch includes read-only root calls (at low severity); Panther excludes them",
        ),
        (
            ("AWS.Root.Activity", "Successful Root Login"),
            "rootwatch reports root sign-ins as root-console-login, not as a root API call",
        ),
    ]);

    let tests: BTreeMap<(String, String), serde_json::Value> =
        fixture("panther-analysis/all_cloudtrail_rule_tests.jsonl")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| {
                (
                    (
                        v["rule"].as_str().unwrap().to_owned(),
                        v["name"].as_str().unwrap().to_owned(),
                    ),
                    v,
                )
            })
            .collect();
    let d = Detector::new(DetectSettings::default());
    let mut checked = 0;
    let mut differing: Vec<(String, String)> = Vec::new();
    for line in fixture("panther-analysis/conformance_expectations.jsonl").lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let (prule, name) = (
            e["panther_rule"].as_str().unwrap(),
            e["test_name"].as_str().unwrap(),
        );
        let test = &tests[&(prule.to_owned(), name.to_owned())];
        let raw = test["log"].to_string();
        let rec = Record::parse(&raw).unwrap();
        let mut out = Vec::new();
        d.evaluate(&rec, &mut out);
        let rule = e["rootwatch_rule"].as_str().unwrap();
        let fired = out.iter().any(|f| f.rule == rule);
        let want = e["rootwatch_expected"].as_bool().unwrap();
        assert_eq!(fired, want, "{prule} / {name}: {rule}");
        let panther = test["expected"].as_bool().unwrap();
        assert_eq!(e["panther_expected"].as_bool().unwrap(), panther);
        if panther != fired {
            assert!(
                documented.contains_key(&(prule, name)),
                "{prule} / {name}: rootwatch says {fired}, Panther {panther}, and no documented difference explains it"
            );
            differing.push((prule.to_owned(), name.to_owned()));
        }
        checked += 1;
    }
    assert_eq!(checked, 24, "every mapped Panther test is checked");
    assert_eq!(
        differing.len(),
        documented.len(),
        "a documented difference no longer differs: {differing:?}"
    );
    let mapped = [
        "AWS.Console.RootLogin",
        "AWS.Console.RootLoginFailed",
        "AWS.Root.Activity",
        "AWS.CloudTrail.RootAccessKeyCreated",
        "AWS.Console.LoginWithoutMFA",
    ];
    let in_corpus = tests
        .keys()
        .filter(|(r, _)| mapped.contains(&r.as_str()))
        .count();
    assert_eq!(
        in_corpus, checked,
        "the expectations cover every test of the mapped rules"
    );
}

/// The record files of every third-party set, one record a line.
const RECORD_FILES: [&str; 4] = [
    "aws-docs-examples/records.jsonl",
    "invictus-aws-dataset/records.jsonl",
    "panther-analysis/all_test_logs_records.jsonl",
    "stratus-red-team/detonation_logs.jsonl",
];

/// Replays `lines` written to a file; returns the finding lines, sorted,
/// and the summary.
fn replay_lines(lines: &[String]) -> (Vec<String>, rootwatch::replay::ReplaySummary) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    // An allow list that most corpus addresses are outside of, so the IP
    // rule fires on most human calls and the comparison covers every rule.
    let mut settings = DetectSettings::default();
    settings.context.allowlist = rootwatch::detect::AllowList {
        cidrs: rootwatch::detect::CidrSet::new(
            ["10.0.0.0/8", "192.0.2.0/24"]
                .iter()
                .map(|c| rootwatch::detect::allowlist::parse_cidr(c).unwrap()),
        ),
        asns: Default::default(),
        geoip: None,
        scope: rootwatch::detect::Scope::All,
    };
    let d = Detector::new(settings);
    let mut replay = rootwatch::replay::Replay::new(&d, NonZeroUsize::new(100_000).unwrap());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    replay.run(&[path], &mut out, &mut err).unwrap();
    let summary = replay.finish();
    assert!(!summary.had_errors(), "{}", String::from_utf8_lossy(&err));
    let mut findings: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    findings.sort();
    (findings, summary)
}

/// Every record the project ships, wrapped one per EventBridge event as AWS
/// builds it (and SNS around that), gives exactly the findings of the bare
/// records: the envelope must never decide whether root activity alerts.
#[test]
fn eventbridge_wrapped_corpus_gives_the_same_findings() {
    let bare: Vec<String> = RECORD_FILES
        .iter()
        .flat_map(|f| {
            fixture(f)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let (want, bare_summary) = replay_lines(&bare);
    assert!(
        want.len() > 500,
        "the corpus gives many findings: {}",
        want.len()
    );
    let sources: std::collections::BTreeSet<String> = bare
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_str(&common::eventbridge_as_aws(r)).unwrap();
            v["source"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        sources.contains("aws.s3") && sources.contains("aws.signin") && sources.len() > 10,
        "{sources:?}"
    );

    let wrapped: Vec<String> = bare.iter().map(|r| common::eventbridge_as_aws(r)).collect();
    let (got, summary) = replay_lines(&wrapped);
    assert_eq!(summary.events, bare_summary.events);
    assert_eq!(summary.findings_by_rule, bare_summary.findings_by_rule);
    assert_eq!(got, want, "EventBridge-wrapped findings differ");

    let in_sns: Vec<String> = wrapped.iter().map(|b| common::sns_wrap(b)).collect();
    let (got, summary) = replay_lines(&in_sns);
    assert_eq!(summary.events, bare_summary.events);
    assert_eq!(got, want, "SNS(EventBridge)-wrapped findings differ");
}
