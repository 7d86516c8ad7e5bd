//! The OCSF format against the published OCSF schema: one golden Detection
//! Finding per rule, each from a real CloudTrail record of the third-party
//! corpus, and every golden OCSF payload validated by the pinned validator
//! (scripts/ocsf_validate.py on pydantic-ocsf, installed by scripts/test.sh
//! from scripts/test-requirements.txt).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rootwatch::decode::{Item, decode_body};
use rootwatch::detect::{AllowList, CidrSet, Context, DetectSettings, Detector, Scope};
use rootwatch::finding::Finding;
use rootwatch::sink::format::ocsf;

/// Record files, then files of wrapped records: (file, key of the record).
const WRAPPED: &[(&str, &str)] = &[
    ("panther-analysis/all_cloudtrail_rule_tests.jsonl", "log"),
    (
        "aws-docs-examples/doc_examples_with_context.jsonl",
        "record",
    ),
];

const CORPUS: &[&str] = &[
    "aws-docs-examples/records.jsonl",
    "invictus-aws-dataset/records.jsonl",
    "panther-analysis/all_test_logs_records.jsonl",
    "stratus-red-team/detonation_logs.jsonl",
];

/// The `time` of a payload whose event time does not parse; fixed so the
/// golden files are stable.
const FALLBACK_MS: i64 = 1_700_000_000_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first finding of each rule over the corpus, in file and line order.
/// Every rule on; an allow list of documentation ranges only, so the IP
/// rule fires on real addresses.
fn first_finding_per_rule() -> BTreeMap<String, Finding> {
    let detector = Detector::new(DetectSettings {
        context: Context {
            allowlist: AllowList {
                cidrs: CidrSet::new(["192.0.2.0/24".parse().unwrap()]),
                asns: Default::default(),
                geoip: None,
                scope: Scope::All,
            },
            ..Default::default()
        },
        ..Default::default()
    });
    let mut first = BTreeMap::new();
    let read = |file: &str| {
        std::fs::read_to_string(root().join("tests/fixtures/third_party").join(file)).unwrap()
    };
    let mut bodies: Vec<String> = Vec::new();
    for file in CORPUS {
        bodies.extend(read(file).lines().map(str::to_owned));
    }
    // No third-party record fires root-access-key-used or
    // root-privileged-session: these two are written in the shape AWS
    // documents for a root access-key call and an sts:AssumeRoot session.
    bodies.extend(
        std::fs::read_to_string(root().join("tests/fixtures/ocsf/records.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_owned),
    );
    for (file, key) in WRAPPED {
        for line in read(file).lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            bodies.push(v[*key].to_string());
        }
    }
    {
        for line in bodies.iter().filter(|l| !l.trim().is_empty()) {
            decode_body(line, &mut |item| {
                if let Ok(Item::Record(r)) = item {
                    let mut out = Vec::new();
                    detector.evaluate(&r, &mut out);
                    for f in out {
                        first.entry(f.rule.clone()).or_insert(f);
                    }
                }
            });
        }
    }
    first
}

fn check_golden(path: &Path, actual: &serde_json::Value) {
    if std::env::var("ROOTWATCH_UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
        std::fs::write(path, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with ROOTWATCH_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        &expected,
        actual,
        "{} differs (run with ROOTWATCH_UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

/// One golden payload per rule, every rule covered by a real record.
#[test]
fn a_golden_detection_finding_per_rule_from_real_records() {
    let found = first_finding_per_rule();
    let dir = root().join("tests/fixtures/golden/ocsf/rules");
    let missing: Vec<&str> = rootwatch::detect::rule_ids()
        .into_iter()
        .filter(|r| !found.contains_key(*r))
        .collect();
    assert!(missing.is_empty(), "no corpus record fires {missing:?}");
    for rule in rootwatch::detect::rule_ids() {
        let f = &found[rule];
        let v = ocsf::body(f, FALLBACK_MS);
        rootwatch::sink::format::check::ocsf_body(f, &v).unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert_eq!(v["finding_info"]["analytic"]["name"], rule);
        check_golden(&dir.join(format!("{rule}.json")), &v);
    }
}

/// The Python that has the validator: scripts/test.sh sets
/// ROOTWATCH_TEST_PYTHON to its test virtualenv's interpreter.
fn python() -> String {
    std::env::var("ROOTWATCH_TEST_PYTHON").expect(
        "ROOTWATCH_TEST_PYTHON is not set: run the suite with scripts/test.sh, which installs the OCSF validator (scripts/test-requirements.txt) and sets it",
    )
}

fn golden_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("tests/fixtures/golden/ocsf")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn validate(files: &[PathBuf]) -> std::process::Output {
    std::process::Command::new(python())
        .arg(root().join("scripts/ocsf_validate.py"))
        .args(files)
        .output()
        .expect("the test Python runs")
}

/// Every golden OCSF payload (per rule, and the format's own cases)
/// validates against the published schema.
#[test]
fn every_golden_payload_validates_against_the_ocsf_schema() {
    let files = golden_files();
    assert!(
        files.len() > rootwatch::detect::rule_ids().len(),
        "{files:?}"
    );
    let out = validate(&files);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("{} valid, 0 invalid", files.len())),
        "{text}"
    );
}

/// The validator is not a rubber stamp: a payload with an attribute the
/// class does not define, or a wrong enum value, fails.
#[test]
fn the_validator_rejects_what_the_schema_does_not_allow() {
    let good = golden_files().remove(0);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut bad = Vec::new();
    for (name, edit) in [
        (
            "unknown-top",
            &(|v: &mut serde_json::Value| v["actor"] = serde_json::json!({"user": {"name": "x"}}))
                as &dyn Fn(&mut serde_json::Value),
        ),
        ("unknown-nested", &|v| v["finding_info"]["bogus"] = 1.into()),
        ("severity", &|v| v["severity_id"] = 7.into()),
        ("missing-info", &|v| {
            v.as_object_mut().unwrap().remove("finding_info");
        }),
        ("time", &|v| v["time"] = "yesterday".into()),
    ] {
        let mut e = v.clone();
        edit(&mut e);
        let p = dir.path().join(format!("{name}.json"));
        std::fs::write(&p, e.to_string()).unwrap();
        bad.push(p);
    }
    let out = validate(&bad);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("0 valid, {} invalid", bad.len())),
        "{text}"
    );
}
