//! The posture audit against moto's IAM: seeded users, the credential
//! report, the account summary and virtual MFA devices read through the
//! real SDK calls. moto's report has no root row, a GeneratedTime fixed in
//! 2015 and an account summary of zeros; the unit tests in src/audit cover
//! what it cannot show.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use rootwatch::audit::reader::IamReader;
use rootwatch::audit::rules::*;
use rootwatch::audit::{Thresholds, evaluate};

struct Seeded {
    console: String,
    two_keys: String,
    clean: String,
}

/// A console user without MFA, a user with two access keys, and a clean
/// user (console password with an MFA device, no keys).
async fn seed(iam: &aws_sdk_iam::Client) -> Seeded {
    let p = unique("audit");
    let s = Seeded {
        console: format!("{p}-console"),
        two_keys: format!("{p}-keys"),
        clean: format!("{p}-clean"),
    };
    for u in [&s.console, &s.two_keys, &s.clean] {
        iam.create_user().user_name(u).send().await.unwrap();
    }
    for u in [&s.console, &s.clean] {
        iam.create_login_profile()
            .user_name(u)
            .password("Correct-Horse-9-Battery!")
            .send()
            .await
            .unwrap();
    }
    for _ in 0..2 {
        iam.create_access_key()
            .user_name(&s.two_keys)
            .send()
            .await
            .unwrap();
    }
    let device = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(&s.clean)
        .send()
        .await
        .unwrap();
    let serial = device
        .virtual_mfa_device()
        .unwrap()
        .serial_number()
        .to_owned();
    iam.enable_mfa_device()
        .user_name(&s.clean)
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .unwrap();
    s
}

/// (rule, user name) of the findings about `users`.
fn about(e: &Evaluation, users: &[&str]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = e
        .findings
        .iter()
        .filter_map(|f| {
            let u = f.user_name.clone()?;
            users
                .contains(&u.as_str())
                .then(|| (f.rule.clone(), u.clone()))
        })
        .collect();
    v.sort();
    v
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(r, u)| (r.to_string(), u.to_string()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn each_check_fires_on_its_seeded_violation_and_not_on_the_clean_user() {
    let aws = aws().await;
    let iam = aws_sdk_iam::Client::new(&aws);
    let s = seed(&iam).await;
    let users = [s.console.as_str(), s.two_keys.as_str(), s.clean.as_str()];

    let inv = IamReader::new(&aws, Duration::from_secs(60))
        .inventory()
        .await
        .unwrap();
    assert_eq!(inv.account_id, "123456789012");
    assert!(
        inv.virtual_mfa.iter().any(|d| d
            .user_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(&format!("user/{}", s.clean)))),
        "{:?}",
        inv.virtual_mfa
    );

    // Today: the users were just made.
    let now = Utc::now();
    let e = evaluate(&inv, &Thresholds::default(), now);
    assert_eq!(
        e.root,
        RootCredentials::Absent,
        "moto has no root row and a summary of zeros"
    );
    assert_eq!(
        about(&e, &users),
        pairs(&[
            (USER_CONSOLE_WITHOUT_MFA, &s.console),
            (USER_TWO_ACTIVE_KEYS, &s.two_keys),
            // both keys were made with the user
            (USER_INITIAL_ACCESS_KEY, &s.two_keys),
            (USER_INITIAL_ACCESS_KEY, &s.two_keys),
        ])
    );
    let f = e
        .findings
        .iter()
        .find(|f| f.user_name.as_deref() == Some(s.console.as_str()))
        .unwrap();
    assert_eq!(f.account_id.as_deref(), Some("123456789012"));
    assert_eq!(
        f.principal_arn.as_deref(),
        Some(format!("arn:aws:iam::123456789012:user/{}", s.console).as_str())
    );
    assert_eq!(
        f.event_time.as_deref(),
        Some("2015-02-02T20:02:02Z"),
        "the report's GeneratedTime"
    );

    // Four months on, nothing used: the keys are old and unused, the
    // passwords never used since they were set (moto cannot record a
    // sign-in, so the clean user's password counts as unused too).
    let later = now + chrono::Duration::days(120);
    let e = evaluate(&inv, &Thresholds::default(), later);
    let got = about(&e, &users);
    let rotated: Vec<_> = got
        .iter()
        .filter(|(r, _)| r == ACCESS_KEY_NOT_ROTATED)
        .collect();
    assert_eq!(rotated.len(), 2, "{got:?}");
    assert!(rotated.iter().all(|(_, u)| *u == s.two_keys));
    let unused: Vec<_> = got
        .iter()
        .filter(|(r, _)| r == CREDENTIALS_UNUSED)
        .map(|(_, u)| u.as_str())
        .collect();
    assert_eq!(
        unused,
        [
            s.clean.as_str(),
            s.console.as_str(),
            s.two_keys.as_str(),
            s.two_keys.as_str()
        ]
    );
    assert!(
        !got.iter().any(|(r, u)| *u == s.clean
            && [
                USER_CONSOLE_WITHOUT_MFA,
                USER_TWO_ACTIVE_KEYS,
                USER_INITIAL_ACCESS_KEY,
                ACCESS_KEY_NOT_ROTATED
            ]
            .contains(&r.as_str())),
        "{got:?}"
    );
}

#[test]
fn rootwatch_audit_prints_findings_and_a_summary() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(async {
        let aws = aws().await;
        seed(&aws_sdk_iam::Client::new(&aws)).await
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rootwatch.toml");
    std::fs::write(&path, "[audit]\nreport_timeout_secs = 60\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rootwatch"))
        .args(["audit", "--config"])
        .arg(&path)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("audit: account 123456789012")
            && stderr.contains("report generated 2015-02-02T20:02:02Z")
            && stderr.contains("root credentials absent"),
        "{stderr}"
    );
    let findings: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mine = |user: &str, rule: &str| {
        findings
            .iter()
            .filter(|f| f["user_name"] == user && f["rule"] == rule)
            .count()
    };
    assert_eq!(mine(&s.console, USER_CONSOLE_WITHOUT_MFA), 1);
    assert_eq!(mine(&s.two_keys, USER_TWO_ACTIVE_KEYS), 1);
    assert_eq!(mine(&s.clean, USER_CONSOLE_WITHOUT_MFA), 0);
}
