//! Credential reports written as AWS documents them (the column set of
//! the IAM User Guide, root row in both forms), evaluated at a fixed time.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::report::{Flag, ReportError, Stamp, parse};
use super::rules::*;

const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

/// A report as downloaded from a real account: an older root row
/// (`not_supported`), a console user without MFA whose password was never
/// used, a user with two keys, and an API-only user.
const REPORT: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated
<root_account>,arn:aws:iam::111122223333:root,2016-02-03T10:04:17+00:00,not_supported,2024-05-28T08:31:12+00:00,not_supported,not_supported,TRUE,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A
alice,arn:aws:iam::111122223333:user/alice,2024-01-10T09:00:00+00:00,true,no_information,2024-01-10T09:00:05+00:00,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A
deploy,arn:aws:iam::111122223333:user/ci/deploy,2021-06-01T12:00:00+00:00,false,N/A,N/A,N/A,false,True,2021-06-01T12:00:03+00:00,2024-05-31T23:00:00+00:00,us-east-1,s3,true,2023-11-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,false,N/A
";

fn now() -> DateTime<Utc> {
    "2024-06-01T00:00:00Z".parse().unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// An ISO 8601 time as the report writes it.
fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// `now` minus `days` days and `secs` seconds, as the report writes it.
fn ago(days: i64, secs: i64) -> String {
    iso(now() - Duration::days(days) - Duration::seconds(secs))
}

#[derive(Clone)]
struct Row {
    user: &'static str,
    created: String,
    password_enabled: &'static str,
    password_last_used: String,
    password_last_changed: String,
    mfa: &'static str,
    keys: [(&'static str, String, String); 2],
}

fn user(name: &'static str) -> Row {
    Row {
        user: name,
        created: ago(30, 0),
        password_enabled: "false",
        password_last_used: "N/A".into(),
        password_last_changed: "N/A".into(),
        mfa: "false",
        keys: [
            ("false", "N/A".into(), "N/A".into()),
            ("false", "N/A".into(), "N/A".into()),
        ],
    }
}

fn root() -> Row {
    Row {
        user: "<root_account>",
        created: "2016-02-03T10:04:17+00:00".into(),
        password_enabled: "true",
        password_last_used: ago(300, 0),
        password_last_changed: "not_supported".into(),
        mfa: "true",
        ..user("<root_account>")
    }
}

fn line(r: &Row) -> String {
    let arn = if r.user == "<root_account>" {
        "arn:aws:iam::111122223333:root".to_owned()
    } else {
        format!("arn:aws:iam::111122223333:user/{}", r.user)
    };
    let key = |k: &(&str, String, String)| {
        let (region, service) = if k.2 == "N/A" {
            ("N/A", "N/A")
        } else {
            ("eu-west-1", "sts")
        };
        format!("{},{},{},{region},{service}", k.0, k.1, k.2)
    };
    let next_rotation = if r.user == "<root_account>" {
        "not_supported"
    } else {
        "N/A"
    };
    format!(
        "{},{arn},{},{},{},{},{next_rotation},{},{},{},false,N/A,false,N/A",
        r.user,
        r.created,
        r.password_enabled,
        r.password_last_used,
        r.password_last_changed,
        r.mfa,
        key(&r.keys[0]),
        key(&r.keys[1]),
    )
}

fn inventory(rows: &[Row], summary: &[(&str, i64)]) -> Inventory {
    let mut csv = format!("{HEADER}\n");
    for r in rows {
        csv.push_str(&line(r));
        csv.push('\n');
    }
    Inventory {
        account_id: "111122223333".into(),
        generated: now() - Duration::hours(2),
        rows: parse(csv.as_bytes()).expect("the report parses"),
        summary: summary.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        virtual_mfa: Vec::new(),
        password_policy: PasswordPolicyState::NotRead,
        organization: OrgView::NotRead,
        notes: Vec::new(),
    }
}

fn rules_fired(inv: &Inventory) -> Vec<(String, String)> {
    evaluate(inv, &Thresholds::default(), now())
        .findings
        .iter()
        .map(|f| (f.rule.clone(), f.principal_arn.clone().unwrap_or_default()))
        .collect()
}

fn fired(inv: &Inventory, rule: &str) -> usize {
    rules_fired(inv).iter().filter(|(r, _)| r == rule).count()
}

// ------------------------------------------------------------- parsing

#[test]
fn a_real_report_parses_with_every_special_value() {
    let rows = parse(REPORT.as_bytes()).unwrap();
    assert_eq!(rows.len(), 3);
    let root = &rows[0];
    assert!(root.is_root());
    assert_eq!(root.password_enabled, Flag::NotSupported);
    assert_eq!(root.password_last_changed, Stamp::NotSupported);
    assert_eq!(
        root.password_last_used,
        Stamp::At(t("2024-05-28T08:31:12Z"))
    );
    assert!(root.mfa_active, "TRUE in capitals is true");
    assert_eq!(root.keys[0].last_rotated, Stamp::NotApplicable);
    let alice = &rows[1];
    assert_eq!(alice.password_enabled, Flag::Yes);
    assert_eq!(alice.password_last_used, Stamp::NoInformation);
    assert!(!alice.mfa_active);
    let deploy = &rows[2];
    assert_eq!(deploy.arn, "arn:aws:iam::111122223333:user/ci/deploy");
    assert!(deploy.keys[0].active && deploy.keys[1].active, "True");
    assert_eq!(deploy.keys[1].last_used, Stamp::NotApplicable);
    assert_eq!(
        deploy
            .raw
            .iter()
            .find(|(k, _)| k == "access_key_1_last_used_service"),
        Some(&("access_key_1_last_used_service".into(), "s3".into()))
    );
}

#[test]
fn the_newer_root_row_form_reads_true_or_false() {
    let inv = inventory(&[root()], &[]);
    assert_eq!(inv.rows[0].password_enabled, Flag::Yes);
    let mut r = root();
    r.password_enabled = "false";
    let inv = inventory(&[r], &[]);
    assert_eq!(inv.rows[0].password_enabled, Flag::No);
}

#[test]
fn bad_reports_are_errors_naming_line_and_column() {
    let bad = REPORT.replace("2021-06-01T12:00:00+00:00", "yesterday");
    match parse(bad.as_bytes()) {
        Err(ReportError::BadValue {
            line,
            column,
            value,
            ..
        }) => {
            assert_eq!(
                (line, column, value.as_str()),
                (4, "user_creation_time", "yesterday")
            );
        }
        other => panic!("{other:?}"),
    }
    let no_mfa_column = REPORT.replacen("mfa_active", "mfa", 1);
    assert_eq!(
        parse(no_mfa_column.as_bytes()),
        Err(ReportError::MissingColumn("mfa_active"))
    );
    let bad_bool = REPORT.replacen(",TRUE,", ",maybe,", 1);
    assert!(matches!(
        parse(bad_bool.as_bytes()),
        Err(ReportError::BadValue {
            column: "mfa_active",
            ..
        })
    ));
    assert!(matches!(
        parse(b"user,arn\n\"unterminated"),
        Err(ReportError::MissingColumn(_) | ReportError::Csv { .. })
    ));
}

#[test]
fn the_real_report_gives_the_expected_findings() {
    let inv = Inventory {
        account_id: "111122223333".into(),
        generated: t("2024-05-31T22:00:00Z"),
        rows: parse(REPORT.as_bytes()).unwrap(),
        summary: HashMap::from([
            ("AccountPasswordPresent".into(), 1),
            ("AccountMFAEnabled".into(), 1),
            ("AccountAccessKeysPresent".into(), 0),
        ]),
        virtual_mfa: vec![],
        password_policy: PasswordPolicyState::NotRead,
        organization: OrgView::NotRead,
        notes: Vec::new(),
    };
    let mut got = rules_fired(&inv);
    got.sort();
    let root = "arn:aws:iam::111122223333:root".to_owned();
    let alice = "arn:aws:iam::111122223333:user/alice".to_owned();
    let deploy = "arn:aws:iam::111122223333:user/ci/deploy".to_owned();
    let mut want = vec![
        (ROOT_RECENTLY_USED.to_owned(), root),
        (USER_CONSOLE_WITHOUT_MFA.to_owned(), alice.clone()),
        // never used since set in January (counted from password_last_changed),
        // and her only credential: the whole user is unused
        (USER_UNUSED.to_owned(), alice),
        // key 1 was made 3 s after the user, but deploy has no console
        // password: not an initial setup key (CIS 1.11 is about console users)
        (USER_TWO_ACTIVE_KEYS.to_owned(), deploy.clone()),
        // key 1: three years old (tier 1y); key 2: 213 days (tier max_age)
        (ACCESS_KEY_NOT_ROTATED.to_owned(), deploy.clone()),
        (ACCESS_KEY_NOT_ROTATED.to_owned(), deploy.clone()),
        // key 2 never used since it was made in November
        (CREDENTIALS_UNUSED.to_owned(), deploy),
    ];
    want.sort();
    assert_eq!(got, want);
}

// ------------------------------------------------------------- root

#[test]
fn root_recently_used_fires_within_the_window_on_the_newest_credential() {
    let mut r = root();
    r.password_last_used = ago(7, 0);
    assert_eq!(fired(&inventory(&[r.clone()], &[]), ROOT_RECENTLY_USED), 1);
    r.password_last_used = ago(7, 1);
    assert_eq!(fired(&inventory(&[r.clone()], &[]), ROOT_RECENTLY_USED), 0);
    // An old password date must not hide a key used today.
    r.password_last_used = ago(900, 0);
    r.keys[1] = ("true", ago(800, 0), ago(0, 3600));
    let inv = inventory(&[r.clone()], &[]);
    let e = evaluate(&inv, &Thresholds::default(), now());
    let f = e
        .findings
        .iter()
        .find(|f| f.rule == ROOT_RECENTLY_USED)
        .unwrap();
    assert!(f.reason.contains("access_key_2"), "{}", f.reason);
    // Nothing used, nothing recent.
    let mut quiet = root();
    quiet.password_last_used = "no_information".into();
    assert_eq!(fired(&inventory(&[quiet], &[]), ROOT_RECENTLY_USED), 0);
}

#[test]
fn root_access_key_fires_on_an_active_key_or_the_summary() {
    let mut r = root();
    assert_eq!(fired(&inventory(&[r.clone()], &[]), ROOT_ACCESS_KEY), 0);
    r.keys[0] = ("false", ago(400, 0), "N/A".into());
    assert_eq!(
        fired(&inventory(&[r.clone()], &[]), ROOT_ACCESS_KEY),
        0,
        "inactive"
    );
    r.keys[0].0 = "true";
    assert_eq!(fired(&inventory(&[r.clone()], &[]), ROOT_ACCESS_KEY), 1);
    assert_eq!(
        fired(
            &inventory(&[root()], &[("AccountAccessKeysPresent", 1)]),
            ROOT_ACCESS_KEY
        ),
        1
    );
}

#[test]
fn root_without_mfa_fires_only_when_root_has_a_credential() {
    let mut r = root();
    assert_eq!(fired(&inventory(&[r.clone()], &[]), ROOT_NO_MFA), 0);
    r.mfa = "false";
    assert_eq!(fired(&inventory(&[r.clone()], &[]), ROOT_NO_MFA), 1);
    assert_eq!(
        fired(
            &inventory(&[root()], &[("AccountMFAEnabled", 0)]),
            ROOT_NO_MFA
        ),
        1,
        "the summary says no MFA"
    );
    // Older report form: the summary says whether root has a password.
    let mut old = root();
    old.password_enabled = "not_supported";
    old.mfa = "false";
    assert_eq!(
        fired(
            &inventory(&[old.clone()], &[("AccountPasswordPresent", 1)]),
            ROOT_NO_MFA
        ),
        1
    );
    let inv = inventory(&[old.clone()], &[("AccountPasswordPresent", 0)]);
    let e = evaluate(&inv, &Thresholds::default(), now());
    assert_eq!(e.root, RootCredentials::Absent);
    assert!(e.findings.is_empty(), "{:?}", e.findings);
}

#[test]
fn centralised_root_access_has_no_root_findings() {
    // A member account whose root credentials were removed: no password,
    // no keys, no MFA; the password was last used long ago.
    let mut r = root();
    r.password_enabled = "false";
    r.mfa = "false";
    r.password_last_used = ago(200, 0);
    let mut inv = inventory(&[r, user("bob")], &[("AccountMFAEnabled", 0)]);
    inv.virtual_mfa.push(VirtualMfa {
        serial_number: "arn:aws:iam::111122223333:mfa/root-account-mfa-device".into(),
        user_arn: Some("arn:aws:iam::111122223333:root".into()),
    });
    let e = evaluate(&inv, &Thresholds::default(), now());
    assert_eq!(e.root, RootCredentials::Absent);
    assert!(
        e.findings
            .iter()
            .all(|f| !f.rule.starts_with("posture-root")),
        "{:?}",
        e.findings
    );
}

#[test]
fn root_virtual_mfa_fires_on_a_device_assigned_to_root() {
    let mut inv = inventory(&[root()], &[]);
    inv.virtual_mfa.push(VirtualMfa {
        serial_number: "arn:aws:iam::111122223333:mfa/alice".into(),
        user_arn: Some("arn:aws:iam::111122223333:user/alice".into()),
    });
    inv.virtual_mfa.push(VirtualMfa {
        serial_number: "arn:aws:iam::111122223333:mfa/unassigned".into(),
        user_arn: None,
    });
    assert_eq!(fired(&inv, ROOT_VIRTUAL_MFA), 0);
    inv.virtual_mfa.push(VirtualMfa {
        serial_number: "arn:aws:iam::111122223333:mfa/root-account-mfa-device".into(),
        user_arn: Some("arn:aws:iam::111122223333:root".into()),
    });
    assert_eq!(fired(&inv, ROOT_VIRTUAL_MFA), 1);
}

// ------------------------------------------------------------- users

#[test]
fn console_without_mfa_needs_a_password_and_no_mfa() {
    let mut u = user("carol");
    u.password_last_used = ago(1, 0);
    u.password_last_changed = ago(20, 0);
    assert_eq!(
        fired(&inventory(&[u.clone()], &[]), USER_CONSOLE_WITHOUT_MFA),
        0
    );
    u.password_enabled = "true";
    assert_eq!(
        fired(&inventory(&[u.clone()], &[]), USER_CONSOLE_WITHOUT_MFA),
        1
    );
    u.mfa = "true";
    assert_eq!(fired(&inventory(&[u], &[]), USER_CONSOLE_WITHOUT_MFA), 0);
}

#[test]
fn initial_access_key_fires_on_never_used_keys_of_console_users_only() {
    let mut u = user("dave");
    u.password_enabled = "true";
    u.password_last_used = ago(1, 0);
    u.password_last_changed = ago(30, 0);
    u.mfa = "true";
    u.keys[0] = ("true", ago(20, 0), "N/A".into());
    assert_eq!(
        fired(&inventory(&[u.clone()], &[]), USER_INITIAL_ACCESS_KEY),
        1
    );
    u.keys[0].2 = ago(2, 0);
    assert_eq!(
        fired(&inventory(&[u.clone()], &[]), USER_INITIAL_ACCESS_KEY),
        0,
        "used"
    );
    // A key made with a console user and never used is the same finding,
    // its reason says so.
    u.keys[0] = ("true", ago(30, -10), "N/A".into());
    let e = evaluate(&inventory(&[u.clone()], &[]), &Thresholds::default(), now());
    let f = e
        .findings
        .iter()
        .find(|f| f.rule == USER_INITIAL_ACCESS_KEY)
        .unwrap();
    assert!(f.reason.contains("created with the user"), "{}", f.reason);
    // Without a password a key is never an initial setup key, made with the
    // user or not (see a_key_made_with_an_api_only_user_is_not_an_initial_setup_key).
    let mut api = user("erin");
    api.keys[0] = ("true", ago(30, -10), "N/A".into());
    assert_eq!(
        fired(&inventory(&[api.clone()], &[]), USER_INITIAL_ACCESS_KEY),
        0
    );
    u.keys[0].0 = "false";
    assert_eq!(
        fired(&inventory(&[u], &[]), USER_INITIAL_ACCESS_KEY),
        0,
        "inactive"
    );
}

#[test]
fn two_active_keys_fires_only_when_both_are_active() {
    let mut u = user("frank");
    u.keys[0] = ("true", ago(20, 0), ago(1, 0));
    u.keys[1] = ("false", ago(10, 0), ago(1, 0));
    assert_eq!(
        fired(&inventory(&[u.clone()], &[]), USER_TWO_ACTIVE_KEYS),
        0
    );
    u.keys[1].0 = "true";
    assert_eq!(fired(&inventory(&[u], &[]), USER_TWO_ACTIVE_KEYS), 1);
}

#[test]
fn key_not_rotated_fires_past_the_limit_with_its_tier() {
    let title = |days: i64| {
        let mut u = user("gina");
        u.created = ago(3000, 0);
        u.keys[0] = ("true", ago(days, 0), ago(1, 0));
        let inv = inventory(&[u], &[]);
        evaluate(&inv, &Thresholds::default(), now())
            .findings
            .into_iter()
            .find(|f| f.rule == ACCESS_KEY_NOT_ROTATED)
            .map(|f| (f.title, f.severity))
    };
    assert_eq!(title(90), None);
    assert_eq!(title(89), None);
    use crate::finding::Severity;
    assert_eq!(
        title(91),
        Some((
            "Access key not rotated in over 90 days".into(),
            Severity::Medium
        ))
    );
    assert_eq!(
        title(366),
        Some((
            "Access key not rotated in over 1 year".into(),
            Severity::Medium
        ))
    );
    assert_eq!(
        title(5 * 365 + 1),
        Some((
            "Access key not rotated in over 5 years".into(),
            Severity::High
        ))
    );
    assert_eq!(
        key_age_tier(91, 30),
        Some(("over 30 days".into(), Severity::Medium))
    );
    assert_eq!(key_age_tier(30, 30), None);
    assert_eq!(
        key_age_tier(3651, 3650),
        Some(("over 3650 days".into(), Severity::High))
    );
    // An inactive old key is not a risk.
    let mut u = user("hank");
    u.keys[0] = ("false", ago(500, 0), ago(400, 0));
    assert_eq!(fired(&inventory(&[u], &[]), ACCESS_KEY_NOT_ROTATED), 0);
}

#[test]
fn unused_credentials_fire_past_the_limit_never_used_keys_included() {
    // Each user also has a credential in use, so the whole user is not
    // unused and each idle credential is its own finding.
    let mut u = user("ivy");
    u.created = ago(400, 0);
    u.keys[0] = ("true", ago(30, 0), ago(1, 0));
    u.password_enabled = "true";
    u.mfa = "true";
    u.password_last_changed = ago(300, 0);
    u.password_last_used = ago(45, 0);
    assert_eq!(fired(&inventory(&[u.clone()], &[]), CREDENTIALS_UNUSED), 0);
    u.password_last_used = ago(46, 0);
    assert_eq!(fired(&inventory(&[u.clone()], &[]), CREDENTIALS_UNUSED), 1);
    // never used: counted from when it was set
    u.password_last_used = "no_information".into();
    u.password_last_changed = ago(44, 0);
    assert_eq!(fired(&inventory(&[u.clone()], &[]), CREDENTIALS_UNUSED), 0);
    u.password_last_changed = ago(46, 0);
    assert_eq!(fired(&inventory(&[u.clone()], &[]), CREDENTIALS_UNUSED), 1);

    let mut k = user("jack");
    k.created = ago(400, 0);
    k.password_enabled = "true";
    k.mfa = "true";
    k.password_last_used = ago(1, 0);
    k.keys[0] = ("true", ago(44, 0), "N/A".into());
    assert_eq!(fired(&inventory(&[k.clone()], &[]), CREDENTIALS_UNUSED), 0);
    k.keys[0].1 = ago(46, 0);
    assert_eq!(
        fired(&inventory(&[k.clone()], &[]), CREDENTIALS_UNUSED),
        1,
        "never used"
    );
    k.keys[0].2 = ago(10, 0);
    assert_eq!(
        fired(&inventory(&[k.clone()], &[]), CREDENTIALS_UNUSED),
        0,
        "used lately"
    );
    k.keys[0].2 = ago(46, 0);
    assert_eq!(fired(&inventory(&[k], &[]), CREDENTIALS_UNUSED), 1);

    // Root is excluded: the fix for an unused root is not to log in.
    let mut r = root();
    r.password_last_used = ago(700, 0);
    r.keys[0] = ("true", ago(60, 0), ago(60, 0));
    assert_eq!(fired(&inventory(&[r], &[]), CREDENTIALS_UNUSED), 0);
}

#[test]
fn thresholds_are_configurable() {
    let mut u = user("kim");
    u.keys[0] = ("true", ago(20, 0), ago(20, 0));
    let inv = inventory(&[u], &[]);
    let strict = Thresholds {
        root_recent_days: 1,
        key_max_age_days: 10,
        unused_days: 15,
        ..Thresholds::default()
    };
    let rules: Vec<String> = evaluate(&inv, &strict, now())
        .findings
        .into_iter()
        .map(|f| f.rule)
        .collect();
    assert_eq!(rules, [USER_UNUSED, ACCESS_KEY_NOT_ROTATED]);
}

// ------------------------------------------------------------- findings

#[test]
fn posture_findings_keep_the_finding_json_contract() {
    let mut u = user("lee");
    u.password_enabled = "true";
    u.password_last_used = ago(1, 0);
    u.password_last_changed = ago(20, 0);
    let inv = inventory(&[root(), u], &[]);
    let e = evaluate(&inv, &Thresholds::default(), now());
    assert_eq!(e.users, 1);
    assert_eq!(e.root, RootCredentials::Present);
    let f = e
        .findings
        .iter()
        .find(|f| f.rule == USER_CONSOLE_WITHOUT_MFA)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
    assert_eq!(v["account_id"], "111122223333");
    assert_eq!(v["principal_arn"], "arn:aws:iam::111122223333:user/lee");
    assert_eq!(v["user_name"], "lee");
    assert_eq!(v["principal_type"], "IAMUser");
    assert_eq!(v["severity"], "high");
    assert_eq!(v["mfa"], false);
    // The report's GeneratedTime, so a stale report shows.
    assert_eq!(v["event_time"], "2024-05-31T22:00:00Z");
    assert_eq!(v["event"]["report_generated_time"], "2024-05-31T22:00:00Z");
    assert_eq!(v["event"]["row"]["user"], "lee");
    for null in [
        "event_id",
        "event_name",
        "event_source",
        "region",
        "source_ip",
        "user_agent",
        "error_code",
    ] {
        assert_eq!(v[null], serde_json::Value::Null, "{null}");
    }
    // Stable across audits (a later report, a later time) and distinct per
    // credential.
    let later = Inventory {
        generated: now(),
        ..inv.clone()
    };
    let again = evaluate(&later, &Thresholds::default(), now() + Duration::hours(5));
    let same = again
        .findings
        .iter()
        .find(|g| g.rule == USER_CONSOLE_WITHOUT_MFA)
        .unwrap();
    assert_eq!(same.finding_id, f.finding_id);
    let ids: std::collections::HashSet<_> = e.findings.iter().map(|f| &f.finding_id).collect();
    assert_eq!(ids.len(), e.findings.len());
}

#[test]
fn every_alert_format_takes_posture_findings() {
    // User names come from IAM and may carry `+=,.@-`: formats escape them
    // like event text.
    let mut u = user("eve+ops@example.com");
    u.password_enabled = "true";
    u.password_last_used = "no_information".into();
    u.password_last_changed = ago(400, 0);
    u.keys = [
        ("true", ago(2000, 0), "N/A".into()),
        ("true", ago(30, 0), ago(1, 0)),
    ];
    let mut r = root();
    r.password_last_used = ago(1, 0);
    r.mfa = "false";
    r.keys[0] = ("true", ago(700, 0), ago(0, 60));
    let e = evaluate(&inventory(&[r, u], &[]), &Thresholds::default(), now());
    assert!(e.findings.len() >= 8, "{:?}", e.findings);
    for f in &e.findings {
        crate::sink::format::check::all_formats(f).unwrap_or_else(|m| panic!("{}: {m}", f.rule));
    }
}

// ------------------------------------------------------------- defects

#[test]
fn a_limit_above_one_year_is_the_limit_and_tiers_only_raise_severity() {
    let th = Thresholds {
        key_max_age_days: 400,
        ..Thresholds::default()
    };
    let found = |days: i64| {
        let mut u = user("nora");
        u.created = ago(3000, 0);
        u.keys[0] = ("true", ago(days, 0), ago(1, 0));
        let inv = inventory(&[u], &[]);
        evaluate(&inv, &th, now())
            .findings
            .into_iter()
            .find(|f| f.rule == ACCESS_KEY_NOT_ROTATED)
            .map(|f| (f.title, f.severity))
    };
    use crate::finding::Severity;
    assert_eq!(found(380), None, "younger than the limit");
    assert_eq!(found(400), None, "exactly the limit");
    assert_eq!(
        found(401),
        Some((
            "Access key not rotated in over 400 days".into(),
            Severity::Medium
        ))
    );
    assert_eq!(
        found(5 * 365 + 1),
        Some((
            "Access key not rotated in over 5 years".into(),
            Severity::High
        ))
    );
}

#[test]
fn a_key_made_with_an_api_only_user_is_not_an_initial_setup_key() {
    // A CI user and its key from one apply: no password, key used daily.
    let mut ci = user("ci-deploy");
    ci.keys[0] = ("true", ago(30, -3), ago(0, 600));
    assert_eq!(
        fired(&inventory(&[ci.clone()], &[]), USER_INITIAL_ACCESS_KEY),
        0
    );
    // Never used either: still not CIS 1.11's case without a password.
    ci.keys[0].2 = "N/A".into();
    assert_eq!(fired(&inventory(&[ci], &[]), USER_INITIAL_ACCESS_KEY), 0);
}

#[test]
fn root_used_recently_counts_after_its_credentials_were_removed() {
    let mut r = root();
    r.password_enabled = "false";
    r.mfa = "false";
    r.password_last_used = ago(2, 0);
    let inv = inventory(&[r.clone()], &[("AccountMFAEnabled", 0)]);
    let e = evaluate(&inv, &Thresholds::default(), now());
    assert_eq!(e.root, RootCredentials::Absent);
    let rules: Vec<&str> = e.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules, [ROOT_RECENTLY_USED]);
    r.password_last_used = ago(30, 0);
    assert!(
        evaluate(&inventory(&[r], &[]), &Thresholds::default(), now())
            .findings
            .is_empty()
    );
}

// ------------------------------------------------------------- second pass

fn found(
    inv: &Inventory,
    th: &Thresholds,
    rule: &str,
) -> Vec<(String, crate::finding::Severity, String)> {
    evaluate(inv, th, now())
        .findings
        .into_iter()
        .filter(|f| f.rule == rule)
        .map(|f| (f.title, f.severity, f.reason))
        .collect()
}

#[test]
fn unused_credentials_come_in_tiers_of_45_days_90_days_and_a_year() {
    use crate::finding::Severity;
    let sev = |days: i64| {
        let mut u = user("olga");
        u.created = ago(3000, 0);
        u.password_enabled = "true";
        u.mfa = "true";
        u.password_last_used = ago(1, 0);
        u.keys[0] = ("true", ago(2000, 0), ago(days, 0));
        found(
            &inventory(&[u], &[]),
            &Thresholds::default(),
            CREDENTIALS_UNUSED,
        )
        .into_iter()
        .map(|(t, s, _)| (t, s))
        .next()
    };
    assert_eq!(sev(45), None);
    assert_eq!(
        sev(46),
        Some((
            "IAM user credential unused for over 45 days".into(),
            Severity::Low
        ))
    );
    assert_eq!(
        sev(90),
        Some((
            "IAM user credential unused for over 45 days".into(),
            Severity::Low
        ))
    );
    assert_eq!(
        sev(91),
        Some((
            "IAM user credential unused for over 90 days".into(),
            Severity::Medium
        ))
    );
    assert_eq!(
        sev(366),
        Some((
            "IAM user credential unused for over 1 year".into(),
            Severity::High
        ))
    );
    // A limit above a tier: the limit flags, the tier only raises severity.
    assert_eq!(
        unused_tier(120, 100),
        Some(("over 100 days".into(), Severity::Medium))
    );
    assert_eq!(unused_tier(100, 100), None);
    assert_eq!(
        unused_tier(400, 380),
        Some(("over 380 days".into(), Severity::High))
    );
}

#[test]
fn a_user_whose_every_credential_is_unused_is_one_finding() {
    use crate::finding::Severity;
    let mut u = user("pat");
    u.created = ago(800, 0);
    u.password_enabled = "true";
    u.mfa = "true";
    u.password_last_used = ago(100, 0);
    u.password_last_changed = ago(700, 0);
    u.keys[0] = ("true", ago(700, 0), ago(400, 0));
    u.keys[1] = ("true", ago(600, 0), "N/A".into());
    let inv = inventory(&[u.clone()], &[]);
    let th = Thresholds::default();
    assert!(
        found(&inv, &th, CREDENTIALS_UNUSED).is_empty(),
        "folded into the user"
    );
    let user_unused = found(&inv, &th, USER_UNUSED);
    assert_eq!(user_unused.len(), 1);
    let (title, severity, reason) = &user_unused[0];
    // The most recently used credential sets the tier: the password, 100 days.
    assert_eq!(title, "IAM user unused for over 90 days");
    assert_eq!(*severity, Severity::Medium);
    for part in [
        "password was last used",
        "access_key_1 was last used",
        "access_key_2 was created and never used since",
        "remove the user",
    ] {
        assert!(reason.contains(part), "{part}: {reason}");
    }
    // One credential in use: each idle one is its own finding instead.
    u.keys[1].2 = ago(3, 0);
    let inv = inventory(&[u], &[]);
    assert!(found(&inv, &th, USER_UNUSED).is_empty());
    assert_eq!(found(&inv, &th, CREDENTIALS_UNUSED).len(), 2);
    // A user with no credential at all is not an unused user.
    assert_eq!(fired(&inventory(&[user("quinn")], &[]), USER_UNUSED), 0);
}

#[test]
fn a_key_being_rotated_is_info_until_the_grace_has_passed() {
    use crate::finding::Severity;
    let th = Thresholds::default();
    let mut u = user("rita");
    u.created = ago(500, 0);
    u.keys[0] = ("true", ago(200, 0), ago(0, 60));
    u.keys[1] = ("true", ago(6, 0), ago(0, 30));
    let got = found(&inventory(&[u.clone()], &[]), &th, USER_TWO_ACTIVE_KEYS);
    assert_eq!(got.len(), 1);
    let (title, severity, reason) = &got[0];
    assert_eq!(title, "IAM user is rotating an access key");
    assert_eq!(*severity, Severity::Info);
    assert!(
        reason.contains("the older access_key_1 was created"),
        "{reason}"
    );
    assert!(reason.contains("(200 days ago)"), "{reason}");
    // The same finding (same id) once the grace is over.
    let id_before = evaluate(&inventory(&[u.clone()], &[]), &th, now())
        .findings
        .into_iter()
        .find(|f| f.rule == USER_TWO_ACTIVE_KEYS)
        .unwrap()
        .finding_id;
    u.keys[1].1 = ago(7, 0);
    let e = evaluate(&inventory(&[u.clone()], &[]), &th, now());
    let f = e
        .findings
        .iter()
        .find(|f| f.rule == USER_TWO_ACTIVE_KEYS)
        .unwrap();
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.title, "IAM user has two active access keys");
    assert_eq!(f.finding_id, id_before);
    // The newer key can be either slot.
    u.keys = [
        ("true", ago(2, 0), ago(0, 60)),
        ("true", ago(300, 0), ago(0, 60)),
    ];
    let got = found(&inventory(&[u], &[]), &th, USER_TWO_ACTIVE_KEYS);
    assert!(got[0].2.contains("the older access_key_2"), "{}", got[0].2);
    assert_eq!(got[0].1, Severity::Info);
}
