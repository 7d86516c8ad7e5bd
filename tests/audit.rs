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
            // both keys were just made: a rotation in progress (info);
            // they were made with the user, but an API-only user's keys are
            // not initial setup keys (CIS 1.11 concerns console users)
            (USER_TWO_ACTIVE_KEYS, &s.two_keys),
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
    // sign-in, so the clean user's password counts as unused too). Each
    // user's every credential is idle: one whole-user finding each.
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
        .filter(|(r, _)| r == USER_UNUSED)
        .map(|(_, u)| u.as_str())
        .collect();
    assert_eq!(
        unused,
        [s.clean.as_str(), s.console.as_str(), s.two_keys.as_str()]
    );
    assert!(!got.iter().any(|(r, _)| r == CREDENTIALS_UNUSED), "{got:?}");
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
    let out = rootwatch_at_emulator(&["audit", "--config"])
        .arg(&path)
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

/// Findings the receiver accepted about `user`, by rule.
fn delivered_about(hook: &Webhook, user: &str) -> Vec<String> {
    let mut v: Vec<String> = hook
        .delivered()
        .iter()
        .filter(|f| f["user_name"] == user)
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn an_undelivered_posture_alert_is_sent_again_and_a_delivered_one_waits_for_realert() {
    use std::sync::atomic::Ordering;
    let aws = aws().await;
    let s = seed(&aws_sdk_iam::Client::new(&aws)).await;
    let (hook, up) = Webhook::switchable(false).await;
    let settings = settings(&format!(
        r#"
[audit]
report_timeout_secs = 60
[[sinks]]
type = "webhook"
url = "{}"
retry_max_secs = 1
rules = ["posture-user-console-without-mfa"]
"#,
        hook.url()
    ));
    let abort = tokio_util::sync::CancellationToken::new();
    let pipeline = std::sync::Arc::new(rootwatch::pipeline::Pipeline::new(&settings, abort));
    let state = Default::default();
    let idle = || async {
        eventually(Duration::from_secs(30), "deliveries end", || async {
            pipeline.deliveries_in_progress() == 0
        })
        .await
    };

    // The receiver is down: the alert fails and is not marked sent.
    rootwatch::audit::runner::audit_round(&settings.audit, &aws, &pipeline, &state).await;
    idle().await;
    let tries = hook
        .requests()
        .iter()
        .filter(|r| r.json()["user_name"] == s.console.as_str())
        .count();
    assert!(tries >= 1);
    assert!(delivered_about(&hook, &s.console).is_empty());

    // Up again: the next audit sends it, routed to this sink by rule.
    up.store(true, Ordering::SeqCst);
    rootwatch::audit::runner::audit_round(&settings.audit, &aws, &pipeline, &state).await;
    idle().await;
    assert_eq!(
        delivered_about(&hook, &s.console),
        [USER_CONSOLE_WITHOUT_MFA]
    );
    assert!(
        delivered_about(&hook, &s.two_keys).is_empty(),
        "not routed here"
    );

    // Delivered: the next audit, inside the realert period, stays quiet.
    let before = hook.requests().len();
    rootwatch::audit::runner::audit_round(&settings.audit, &aws, &pipeline, &state).await;
    idle().await;
    let again = hook.requests()[before..]
        .iter()
        .filter(|r| r.json()["user_name"] == s.console.as_str())
        .count();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn the_daemon_audits_posture_and_exports_the_violation_gauge() {
    let aws = aws().await;
    let s = seed(&aws_sdk_iam::Client::new(&aws)).await;
    let hook = Webhook::ok().await;
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[audit]
enabled = true
report_timeout_secs = 60
[[sinks]]
type = "webhook"
url = "{}"
"#,
        hook.url()
    );
    let (daemon, admin) = Daemon::with_admin(&toml, Some(aws), None).await;
    eventually(
        Duration::from_secs(60),
        "posture alerts delivered",
        || async { delivered_about(&hook, &s.two_keys).contains(&USER_TWO_ACTIVE_KEYS.to_owned()) },
    )
    .await;
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = metrics
        .lines()
        .find(|l| {
            l.starts_with("rootwatch_posture_violations{")
                && l.contains(r#"check="posture-user-two-active-keys""#)
                && l.contains(r#"account="123456789012""#)
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    let n: f64 = gauge.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{gauge}");
    assert!(
        metrics.contains(r#"rootwatch_posture_violations{check="posture-root-access-key",account="123456789012"} 0"#),
        "{metrics}"
    );
    // moto's report says it was generated in 2015: years old, and said.
    let age = metrics
        .lines()
        .find(|l| l.starts_with(r#"rootwatch_posture_report_age_seconds{account="123456789012"}"#))
        .unwrap_or_else(|| panic!("{metrics}"));
    let age: f64 = age.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(age > 4.0 * 3600.0, "{age}");
    daemon.stop().await;
}

/// The password policy is read through GetAccountPasswordPolicy (moto
/// implements it); ListOrganizationsFeatures is not in moto, so its check
/// is skipped and the reason is kept for the summary.
#[tokio::test]
async fn the_password_policy_is_read_and_an_unanswered_organizations_call_is_said() {
    let aws = aws().await;
    let iam = aws_sdk_iam::Client::new(&aws);
    // The only test that sets the account's policy.
    iam.update_account_password_policy()
        .minimum_password_length(10)
        .password_reuse_prevention(24)
        .send()
        .await
        .unwrap();
    let inv = IamReader::new(&aws, Duration::from_secs(60))
        .inventory()
        .await
        .unwrap();
    assert_eq!(
        inv.password_policy,
        PasswordPolicyState::Set(PasswordPolicy {
            minimum_length: Some(10),
            reuse_prevention: Some(24),
        })
    );
    let e = evaluate(&inv, &Thresholds::default(), Utc::now());
    let policy: Vec<(&str, &str)> = e
        .findings
        .iter()
        .filter(|f| f.rule.starts_with("posture-password-policy"))
        .map(|f| (f.rule.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(
        policy,
        [(
            PASSWORD_MIN_LENGTH,
            "the password policy's MinimumPasswordLength is 10, below 14"
        )]
    );
    assert!(
        e.findings.iter().all(|f| f.report_age_seconds.is_some()),
        "every posture finding says its report's age"
    );
    match &inv.organization {
        OrgView::NotRead => assert!(
            inv.notes
                .iter()
                .any(|n| n.contains("ListOrganizationsFeatures failed")),
            "{:?}",
            inv.notes
        ),
        // A newer moto may answer: then it is one of the views the rules take.
        other => assert!(inv.notes.is_empty(), "{other:?} {:?}", inv.notes),
    }
}

#[tokio::test]
async fn member_accounts_are_audited_through_assume_role() {
    let aws = aws().await;
    // Seed a user in a member account, through the role the audit assumes.
    let member = rootwatch::audit::AccountTarget {
        name: "member".into(),
        account_id: "111111111111".into(),
        role_arn: "arn:aws:iam::111111111111:role/rootwatch-audit".into(),
        external_id: Some(rootwatch::secret::Secret::new("ext-1")),
    };
    let assumed = aws_config::sts::AssumeRoleProvider::builder(&member.role_arn)
        .session_name("seed")
        .configure(&aws)
        .build()
        .await;
    let member_aws = aws
        .to_builder()
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(assumed))
        .build();
    let s = seed(&aws_sdk_iam::Client::new(&member_aws)).await;
    let other = rootwatch::audit::AccountTarget {
        name: "other".into(),
        account_id: "222222222222".into(),
        role_arn: "arn:aws:iam::222222222222:role/rootwatch-audit".into(),
        external_id: None,
    };
    let settings = rootwatch::audit::AuditSettings {
        accounts: vec![member, other],
        concurrency: std::num::NonZeroUsize::new(1).unwrap(),
        ..Default::default()
    };
    let results = rootwatch::audit::runner::audit_all(&settings, &aws, Utc::now).await;
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["member", "other"]);
    let member = results[0].result.as_ref().unwrap();
    assert_eq!(member.account_id, "111111111111");
    assert!(
        member
            .findings
            .iter()
            .any(|f| f.user_name.as_deref() == Some(s.console.as_str())
                && f.account_id.as_deref() == Some("111111111111"))
    );
    let other = results[1].result.as_ref().unwrap();
    assert_eq!(other.account_id, "222222222222");
    assert!(
        !other
            .findings
            .iter()
            .any(|f| f.user_name.as_deref() == Some(s.console.as_str()))
    );
}

#[test]
fn rootwatch_audit_exits_69_with_a_clear_message_when_it_cannot_audit() {
    // Nothing listens on port 9 of loopback (discard, never served here).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rootwatch.toml");
    std::fs::write(&path, "[audit]\nreport_timeout_secs = 10\n").unwrap();
    let out = rootwatch_at_emulator(&["audit", "--config"])
        .arg(&path)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr
            .contains("could not be audited: cannot tell which account the credentials belong to"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
