//! `rootwatch audit --report`: credential reports written the way AWS
//! writes them (`N/A`, `no_information`, `not_supported`, ISO dates with
//! `+00:00`), audited offline at a fixed `--now`, one test per check of
//! the posture audit's second pass, each through the binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

const NOW: &str = "2024-06-01T00:00:00Z";

const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

fn now() -> DateTime<Utc> {
    NOW.parse().unwrap()
}

/// `days` days before NOW, as the report writes it.
fn ago(days: i64) -> String {
    (now() - Duration::days(days))
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

/// A key: (active, last_rotated, last_used).
type Key = (&'static str, String, String);

fn no_key() -> Key {
    ("false", "N/A".into(), "N/A".into())
}

fn key_cols(k: &Key) -> String {
    let (region, service) = if k.2 == "N/A" {
        ("N/A", "N/A")
    } else {
        ("us-east-1", "s3")
    };
    format!("{},{},{},{region},{service}", k.0, k.1, k.2)
}

/// The root row: password (enabled, last used), MFA, keys.
fn root_row(password: &str, last_used: &str, mfa: &str, keys: [Key; 2]) -> String {
    format!(
        "<root_account>,arn:aws:iam::111122223333:root,2016-02-03T10:04:17+00:00,{password},{last_used},not_supported,not_supported,{mfa},{},{},false,N/A,false,N/A",
        key_cols(&keys[0]),
        key_cols(&keys[1])
    )
}

/// A user row: created, password (enabled, last used, last changed), MFA, keys.
#[allow(clippy::too_many_arguments)]
fn user_row(
    name: &str,
    created: &str,
    password: &str,
    last_used: &str,
    changed: &str,
    mfa: &str,
    keys: [Key; 2],
) -> String {
    format!(
        "{name},arn:aws:iam::111122223333:user/{name},{created},{password},{last_used},{changed},N/A,{mfa},{},{},false,N/A,false,N/A",
        key_cols(&keys[0]),
        key_cols(&keys[1])
    )
}

/// A quiet root: password with MFA, used long ago.
fn quiet_root() -> String {
    root_row("true", &ago(300), "true", [no_key(), no_key()])
}

fn report(rows: &[String]) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn findings(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// (rule, severity, user or principal) of each finding, sorted.
    fn rules(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = self
            .findings()
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_owned(),
                    f["severity"].as_str().unwrap().to_owned(),
                    f["user_name"]
                        .as_str()
                        .or(f["principal_type"].as_str())
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn of(&self, rule: &str) -> Vec<Value> {
        self.findings()
            .into_iter()
            .filter(|f| f["rule"] == rule)
            .collect()
    }
}

fn rootwatch(dir: &Path, args: &[&str]) -> Run {
    let out: Output = std::process::Command::new(env!("CARGO_BIN_EXE_rootwatch"))
        .current_dir(dir)
        .env_remove("ROOTWATCH_CONFIG")
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Audits `csv` at NOW with `extra` arguments; the report is said to be
/// generated an hour before NOW.
fn audit(csv: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "report.csv", csv);
    let mut args = vec![
        "audit",
        "--report",
        "report.csv",
        "--now",
        NOW,
        "--generated",
        "2024-05-31T23:00:00Z",
    ];
    args.extend_from_slice(extra);
    let run = rootwatch(dir.path(), &args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    run
}

fn triple(rule: &str, severity: &str, who: &str) -> (String, String, String) {
    (rule.into(), severity.into(), who.into())
}

// ------------------------------------------------------------- item 1

#[test]
fn a_rotation_limit_above_a_year_flags_only_keys_older_than_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rootwatch.toml",
        "[audit]\nkey_max_age_days = 400\n",
    );
    let keys = |days: i64| [("true", ago(days), ago(1)), no_key()];
    let csv = report(&[
        quiet_root(),
        user_row(
            "k380",
            &ago(3000),
            "false",
            "N/A",
            "N/A",
            "false",
            keys(380),
        ),
        user_row(
            "k400",
            &ago(3000),
            "false",
            "N/A",
            "N/A",
            "false",
            keys(400),
        ),
        user_row(
            "k401",
            &ago(3000),
            "false",
            "N/A",
            "N/A",
            "false",
            keys(401),
        ),
        user_row(
            "k2000",
            &ago(3000),
            "false",
            "N/A",
            "N/A",
            "false",
            keys(2000),
        ),
    ]);
    write(dir.path(), "report.csv", &csv);
    let run = rootwatch(
        dir.path(),
        &[
            "audit",
            "-c",
            "rootwatch.toml",
            "--report",
            "report.csv",
            "--now",
            NOW,
            "--generated",
            NOW,
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let rotated: Vec<(String, String)> = run
        .of("posture-access-key-not-rotated")
        .iter()
        .map(|f| {
            (
                f["user_name"].as_str().unwrap().to_owned(),
                f["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rotated,
        [
            (
                "k401".into(),
                "Access key not rotated in over 400 days".into()
            ),
            (
                "k2000".into(),
                "Access key not rotated in over 5 years".into()
            ),
        ]
    );
}

// ------------------------------------------------------------- item 2

#[test]
fn keys_made_with_an_api_only_user_are_not_initial_setup_keys() {
    let created = ago(200);
    let with_user = (now() - Duration::days(200) + Duration::seconds(2))
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    let run = audit(
        &report(&[
            quiet_root(),
            // a CI user and its key from one apply, used daily
            user_row(
                "ci",
                &created,
                "false",
                "N/A",
                "N/A",
                "false",
                [("true", with_user.clone(), ago(0)), no_key()],
            ),
            // a console user whose setup key was never used
            user_row(
                "dana",
                &created,
                "true",
                &ago(1),
                &created,
                "true",
                [("true", with_user, "N/A".into()), no_key()],
            ),
        ]),
        &[],
    );
    let who: Vec<String> = run
        .of("posture-user-initial-access-key")
        .iter()
        .map(|f| f["user_name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(who, ["dana"]);
}

// ------------------------------------------------------------- item 3

#[test]
fn every_form_of_a_downloaded_report_gives_the_same_findings() {
    let csv = report(&[
        root_row("true", &ago(2), "false", [no_key(), no_key()]),
        user_row(
            "alice",
            &ago(400),
            "true",
            "no_information",
            &ago(400),
            "false",
            [no_key(), no_key()],
        ),
    ]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&csv);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "plain.csv", &csv);
    // The CLI wraps base64 in lines of 76 for `--output text`.
    let wrapped: String = b64
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    write(dir.path(), "report.b64", &wrapped);
    write(
        dir.path(),
        "report.json",
        &serde_json::json!({
            "Content": b64,
            "ReportFormat": "text/csv",
            "GeneratedTime": "2024-05-31T23:00:00+00:00",
        })
        .to_string(),
    );
    let mut seen = Vec::new();
    for file in ["plain.csv", "report.b64", "report.json"] {
        let run = rootwatch(
            dir.path(),
            &[
                "audit",
                "--report",
                file,
                "--now",
                NOW,
                "--generated",
                "2024-05-31T23:00:00Z",
            ],
        );
        assert_eq!(run.code, Some(0), "{file}: {}", run.stderr);
        assert!(
            run.stderr.contains("audit: account 111122223333"),
            "{}",
            run.stderr
        );
        let mut ids: Vec<String> = run
            .findings()
            .iter()
            .map(|f| f["finding_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        seen.push((file, run.rules(), ids));
    }
    assert_eq!(
        seen[0].1,
        [
            triple("posture-root-no-mfa", "critical", "Root"),
            triple("posture-root-recently-used", "high", "Root"),
            triple("posture-user-console-without-mfa", "high", "alice"),
            triple("posture-user-unused", "high", "alice"),
        ]
    );
    assert_eq!((&seen[0].1, &seen[0].2), (&seen[1].1, &seen[1].2));
    assert_eq!((&seen[0].1, &seen[0].2), (&seen[2].1, &seen[2].2));
}

#[test]
fn bad_inputs_exit_65_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "notes.txt", "hello, this is not a report\n");
    write(dir.path(), "good.csv", &report(&[quiet_root()]));
    write(
        dir.path(),
        "summary.json",
        r#"{"SummaryMap": {"AccountMFAEnabled": "yes"}}"#,
    );
    write(
        dir.path(),
        "bad-date.csv",
        &report(&[quiet_root()]).replace("2016-02-03T10:04:17+00:00", "last tuesday"),
    );
    for (args, want) in [
        (
            vec!["--report", "notes.txt"],
            "notes.txt is not a credential report",
        ),
        (vec!["--report", "missing.csv"], "cannot read missing.csv"),
        (
            vec!["--report", "good.csv", "--account-summary", "summary.json"],
            "summary.json: SummaryMap.AccountMFAEnabled is \"yes\", not a whole number",
        ),
        (
            vec!["--report", "bad-date.csv"],
            "bad-date.csv: credential report line 2, column `user_creation_time`: `last tuesday` is not an ISO 8601 time",
        ),
        (
            vec!["--report", "good.csv", "--account-id", "1234"],
            "--account-id `1234` is not a 12-digit AWS account id",
        ),
    ] {
        let mut all = vec!["audit"];
        all.extend(args);
        let run = rootwatch(dir.path(), &all);
        assert_eq!(run.code, Some(65), "{all:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{all:?}: {}", run.stderr);
        assert!(run.stdout.is_empty());
    }
    // Neither a config nor a report: clap says what is missing.
    let run = rootwatch(dir.path(), &["audit"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--config"), "{}", run.stderr);
}

// ------------------------------------------------------------- item 4

#[test]
fn every_finding_says_how_old_its_report_is_and_a_stale_one_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let csv = report(&[root_row("true", &ago(1), "false", [no_key(), no_key()])]);
    write(dir.path(), "report.csv", &csv);
    for (generated, age, stale) in [
        ("2024-05-31T21:00:00Z", 10_800, false),
        ("2024-05-31T19:00:00Z", 18_000, true),
    ] {
        let run = rootwatch(
            dir.path(),
            &[
                "audit",
                "--report",
                "report.csv",
                "--now",
                NOW,
                "--generated",
                generated,
            ],
        );
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let findings = run.findings();
        assert_eq!(findings.len(), 2, "{findings:?}");
        for f in &findings {
            assert_eq!(f["report_age_seconds"], age, "{f}");
            assert_eq!(f["event_time"], generated.to_string());
        }
        assert_eq!(
            run.stderr
                .contains("warning   the credential report is 5 h 0 min old"),
            stale,
            "{}",
            run.stderr
        );
    }
    // A plain file says nothing of its time: the file's is used, and said.
    let run = rootwatch(
        dir.path(),
        &["audit", "--report", "report.csv", "--now", NOW],
    );
    assert!(run.stderr.contains("modification time"), "{}", run.stderr);
}

// ------------------------------------------------------------- item 5

#[test]
fn centralised_root_access_is_checked_in_the_management_and_member_accounts() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "off.json",
        r#"{"OrganizationId": "o-a1b2c3d4e5", "EnabledFeatures": []}"#,
    );
    write(
        dir.path(),
        "on.json",
        r#"{"OrganizationId": "o-a1b2c3d4e5", "EnabledFeatures": ["RootCredentialsManagement", "RootSessions"]}"#,
    );
    let with_root = report(&[quiet_root()]);
    let without_root = report(&[root_row(
        "false",
        "no_information",
        "false",
        [no_key(), no_key()],
    )]);
    write(dir.path(), "with-root.csv", &with_root);
    write(dir.path(), "without-root.csv", &without_root);
    let run = |report: &str, extra: &[&str]| {
        let mut args = vec![
            "audit",
            "--report",
            report,
            "--now",
            NOW,
            "--generated",
            NOW,
        ];
        args.extend_from_slice(extra);
        let r = rootwatch(dir.path(), &args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r
    };
    // The management account with the feature off.
    let r = run("with-root.csv", &["--organizations-features", "off.json"]);
    let f = r.of("posture-root-credentials-management-disabled");
    assert_eq!(f.len(), 1, "{}", r.stdout);
    assert_eq!(f[0]["principal_type"], "Account");
    assert!(f[0]["reason"].as_str().unwrap().contains("o-a1b2c3d4e5"));
    // On: nothing to say about the management account's own root.
    let r = run("with-root.csv", &["--organizations-features", "on.json"]);
    assert!(r.findings().is_empty(), "{}", r.stdout);
    // A member with root credentials although the organization manages them.
    let r = run(
        "with-root.csv",
        &["--organizations-features", "on.json", "--member-account"],
    );
    assert_eq!(
        r.rules(),
        [triple("posture-member-root-credentials", "high", "Root")]
    );
    // A member without root credentials is what the feature is for.
    let r = run(
        "without-root.csv",
        &["--organizations-features", "on.json", "--member-account"],
    );
    assert!(r.findings().is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("root credentials absent"), "{}", r.stderr);
    // Without the file the check is skipped, and that is said.
    let r = run("with-root.csv", &[]);
    assert!(
        r.stderr.contains("centralised root access checks skipped"),
        "{}",
        r.stderr
    );
}

// ------------------------------------------------------------- item 6

#[test]
fn root_used_two_days_ago_counts_although_its_password_is_gone() {
    let run = audit(
        &report(&[root_row("false", &ago(2), "false", [no_key(), no_key()])]),
        &[],
    );
    assert_eq!(
        run.rules(),
        [triple("posture-root-recently-used", "high", "Root")]
    );
    assert!(
        run.stderr.contains("root credentials absent"),
        "{}",
        run.stderr
    );
}

// ------------------------------------------------------------- item 7

#[test]
fn unused_credentials_come_in_tiers_and_a_wholly_unused_user_is_one_finding() {
    let used = |days: i64| [("true", ago(1000), ago(days)), no_key()];
    let run = audit(
        &report(&[
            quiet_root(),
            // a console password in use and a key idle for 50, 100, 400 days
            user_row(
                "u50",
                &ago(1000),
                "true",
                &ago(1),
                &ago(900),
                "true",
                used(50),
            ),
            user_row(
                "u100",
                &ago(1000),
                "true",
                &ago(1),
                &ago(900),
                "true",
                used(100),
            ),
            user_row(
                "u400",
                &ago(1000),
                "true",
                &ago(1),
                &ago(900),
                "true",
                used(400),
            ),
            // every credential idle: password 60 days, key never used
            user_row(
                "gone",
                &ago(1000),
                "true",
                &ago(60),
                &ago(900),
                "true",
                [("true", ago(700), "N/A".into()), no_key()],
            ),
        ]),
        &[],
    );
    let unused: Vec<_> = run
        .rules()
        .into_iter()
        .filter(|(r, _, _)| r.contains("unused"))
        .collect();
    assert_eq!(
        unused,
        [
            triple("posture-credentials-unused", "high", "u400"),
            triple("posture-credentials-unused", "low", "u50"),
            triple("posture-credentials-unused", "medium", "u100"),
            triple("posture-user-unused", "low", "gone"),
        ]
    );
    let gone = &run.of("posture-user-unused")[0];
    assert!(
        gone["reason"].as_str().unwrap().contains("remove the user"),
        "{gone}"
    );
}

// ------------------------------------------------------------- item 8

#[test]
fn a_key_being_rotated_is_info_with_the_older_keys_age_then_medium() {
    let rows = |newer: i64| {
        report(&[
            quiet_root(),
            user_row(
                "rot",
                &ago(500),
                "false",
                "N/A",
                "N/A",
                "false",
                [("true", ago(80), ago(0)), ("true", ago(newer), ago(0))],
            ),
        ])
    };
    let run = audit(&rows(3), &[]);
    let f = run.of("posture-user-two-active-keys");
    assert_eq!(f[0]["severity"], "info");
    assert!(
        f[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the older access_key_1 was created"),
        "{}",
        f[0]
    );
    assert!(
        f[0]["reason"].as_str().unwrap().contains("(80 days ago)"),
        "{}",
        f[0]
    );
    let run = audit(&rows(8), &[]);
    assert_eq!(
        run.of("posture-user-two-active-keys")[0]["severity"],
        "medium"
    );
    // The grace is a setting.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rootwatch.toml",
        "[audit]\nrotation_grace_days = 10\n",
    );
    write(dir.path(), "report.csv", &rows(8));
    let r = rootwatch(
        dir.path(),
        &[
            "audit",
            "-c",
            "rootwatch.toml",
            "--report",
            "report.csv",
            "--now",
            NOW,
            "--generated",
            NOW,
        ],
    );
    assert_eq!(
        r.of("posture-user-two-active-keys")[0]["severity"],
        "info",
        "{}",
        r.stderr
    );
}

// ------------------------------------------------------------- item 9

#[test]
fn the_password_policy_needs_14_characters_and_24_remembered() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "report.csv", &report(&[quiet_root()]));
    write(
        dir.path(),
        "weak.json",
        r#"{"PasswordPolicy": {"MinimumPasswordLength": 8, "RequireSymbols": true, "RequireNumbers": true, "RequireUppercaseCharacters": true, "RequireLowercaseCharacters": true, "AllowUsersToChangePassword": true, "ExpirePasswords": false}}"#,
    );
    write(
        dir.path(),
        "strong.json",
        r#"{"PasswordPolicy": {"MinimumPasswordLength": 14, "PasswordReusePrevention": 24, "AllowUsersToChangePassword": true, "ExpirePasswords": false}}"#,
    );
    write(
        dir.path(),
        "short.json",
        r#"{"PasswordPolicy": {"MinimumPasswordLength": 12, "PasswordReusePrevention": 24}}"#,
    );
    let run = |policy: &str| {
        let r = rootwatch(
            dir.path(),
            &[
                "audit",
                "--report",
                "report.csv",
                "--now",
                NOW,
                "--generated",
                NOW,
                "--password-policy",
                policy,
            ],
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r
    };
    let both = [
        triple("posture-password-policy-length", "medium", "Account"),
        triple("posture-password-policy-reuse", "medium", "Account"),
    ];
    let r = run("none");
    assert_eq!(r.rules(), both);
    assert!(
        r.of("posture-password-policy-length")[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no password policy")
    );
    assert_eq!(run("weak.json").rules(), both);
    assert!(run("strong.json").findings().is_empty());
    let r = run("short.json");
    assert_eq!(
        r.rules(),
        [triple(
            "posture-password-policy-length",
            "medium",
            "Account"
        )]
    );
    assert!(
        r.findings()[0]["reason"]
            .as_str()
            .unwrap()
            .contains("is 12, below 14")
    );
}

// ------------------------------------------------------------- item 10

fn busy_report() -> String {
    report(&[
        root_row(
            "true",
            &ago(1),
            "false",
            [("true", ago(700), ago(0)), no_key()],
        ),
        user_row(
            "pipe|name",
            &ago(400),
            "true",
            "no_information",
            &ago(400),
            "false",
            [("true", ago(2000), "N/A".into()), ("true", ago(30), ago(1))],
        ),
    ])
}

#[test]
fn csv_and_markdown_carry_every_finding() {
    let json = audit(&busy_report(), &["--password-policy", "none"]);
    let n = json.findings().len();
    assert!(n >= 8, "{}", json.stdout);

    let csv = audit(
        &busy_report(),
        &["--password-policy", "none", "--format", "csv"],
    );
    let mut reader = csv::Reader::from_reader(csv.stdout.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), n);
    let mut from_csv: Vec<String> = rows
        .iter()
        .map(|r| r[col("finding_id")].to_owned())
        .collect();
    let mut from_json: Vec<String> = json
        .findings()
        .iter()
        .map(|f| f["finding_id"].as_str().unwrap().to_owned())
        .collect();
    from_csv.sort();
    from_json.sort();
    assert_eq!(from_csv, from_json);
    let rotated = rows
        .iter()
        .find(|r| {
            &r[col("rule")] == "posture-access-key-not-rotated"
                && &r[col("user_name")] == "pipe|name"
        })
        .unwrap();
    assert_eq!(&rotated[col("cis_control")], "1.14");
    assert_eq!(&rotated[col("credential")], "access_key_1");
    assert_eq!(&rotated[col("severity")], "high");
    assert_eq!(&rotated[col("report_age_seconds")], "3600");

    let md = audit(
        &busy_report(),
        &["--password-policy", "none", "--format", "markdown"],
    );
    let table: Vec<&str> = md
        .stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Severity"))
        .collect();
    assert_eq!(table.len(), n, "{}", md.stdout);
    assert!(
        md.stdout.contains("## Account 111122223333"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("pipe\\|name"),
        "a | in a name is escaped: {}",
        md.stdout
    );
    assert!(
        table.iter().all(|l| l.matches(" | ").count() == 5),
        "{table:?}"
    );
    assert!(
        table[0].starts_with("| critical |"),
        "most severe first: {}",
        table[0]
    );
}

#[test]
fn ocsf_compliance_findings_validate_against_the_schema() {
    let run = audit(
        &busy_report(),
        &["--password-policy", "none", "--format", "ocsf"],
    );
    let events: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() >= 8);
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            assert_eq!(e["class_uid"], 2003);
            assert_eq!(e["compliance"]["status"], "Fail");
            write(dir.path(), &format!("{i}.json"), &e.to_string())
        })
        .collect();
    let rotated = events
        .iter()
        .find(|e| e["unmapped"]["rule"] == "posture-access-key-not-rotated")
        .unwrap();
    assert_eq!(rotated["compliance"]["control"], "1.14");
    assert_eq!(rotated["cloud"]["account"]["uid"], "111122223333");
    let python = std::env::var("ROOTWATCH_TEST_PYTHON").expect(
        "ROOTWATCH_TEST_PYTHON is not set: run the suite with scripts/test.sh, which installs the OCSF validator",
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(python)
        .arg(root.join("scripts/ocsf_validate.py"))
        .args(&files)
        .output()
        .unwrap();
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
