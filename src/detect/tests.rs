use super::*;
use crate::decode::{Item, decode_body};

/// AWS's own documentation examples, with the heading that says what each shows.
const DOC_EXAMPLES: &str = include_str!(
    "../../tests/fixtures/third_party/aws-docs-examples/doc_examples_with_context.jsonl"
);

fn detector(settings: DetectSettings) -> Detector {
    Detector::new(settings)
}

fn fired(d: &Detector, raw: &str) -> Vec<(String, Severity)> {
    let rec = Record::parse(raw).expect("record parses");
    let mut out = Vec::new();
    d.evaluate(&rec, &mut out);
    out.into_iter().map(|f| (f.rule, f.severity)).collect()
}

fn ids(d: &Detector, raw: &str) -> Vec<String> {
    fired(d, raw).into_iter().map(|(r, _)| r).collect()
}

fn allow(cidrs: &[&str], scope: Scope) -> DetectSettings {
    DetectSettings {
        context: Context {
            allowlist: AllowList {
                cidrs: CidrSet::new(cidrs.iter().map(|c| allowlist::parse_cidr(c).unwrap())),
                asns: Default::default(),
                geoip: None,
                scope,
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn aws_documentation_examples() {
    let d = detector(DetectSettings::default());
    let docs: Vec<serde_json::Value> = DOC_EXAMPLES
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 28);
    for doc in &docs {
        let heading = doc["heading"].as_str().unwrap();
        let raw = doc["record"].to_string();
        let got = ids(&d, &raw);
        let want: &[&str] = match heading {
            "IAM user, successful sign-in without MFA" | "Step 3: View your log files" => {
                &["iam-console-login-without-mfa"]
            }
            "Root user, successful sign-in without MFA" => {
                &["root-console-login", "root-console-login-without-mfa"]
            }
            // AWS writes "MFAUsed": "YES" here; matched case-insensitively.
            "Root user, successful sign-in with MFA" => &["root-console-login"],
            "Root user, unsuccessful sign-in" => &["root-console-login-failure"],
            // Root actions outside sign-in are root credential use; neither
            // example carries an MFA-authenticated session.
            "Root user, MFA changed" | "Root user, password changed" => {
                &["root-api-call", "root-api-call-without-mfa"]
            }
            _ => &[],
        };
        assert_eq!(got, want, "{heading}");
    }
}

#[test]
fn mfa_state_is_in_the_finding() {
    let d = detector(DetectSettings::default());
    for doc in DOC_EXAMPLES
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
    {
        let raw = doc["record"].to_string();
        let rec = Record::parse(&raw).unwrap();
        let mut out = Vec::new();
        d.evaluate(&rec, &mut out);
        for f in out.iter().filter(|f| f.rule == "root-console-login") {
            let want = doc["heading"].as_str().unwrap().contains("with MFA");
            assert_eq!(f.mfa, Some(want), "{}", doc["heading"]);
        }
    }
}

const ROOT_CALL: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"ASIAEXAMPLEKEY123456","sessionContext":{"sessionIssuer":{},"webIdFederationData":{},"attributes":{"creationDate":"2024-05-01T11:58:02Z","mfaAuthenticated":"true"}}},"eventTime":"2024-05-01T12:00:00Z","eventSource":"iam.amazonaws.com","eventName":"CreateUser","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15.0 Python/3.11.6","requestParameters":{"userName":"backdoor"},"responseElements":{"user":{"userName":"backdoor"}},"requestID":"r1","eventID":"11111111-2222-3333-4444-555555555555","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}"#;

fn with(raw: &str, edits: &[(&str, serde_json::Value)]) -> String {
    let mut v: serde_json::Value = serde_json::from_str(raw).unwrap();
    for (path, value) in edits {
        let mut cur = &mut v;
        let parts: Vec<&str> = path.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            cur = cur.get_mut(*p).unwrap();
        }
        let last = parts[parts.len() - 1];
        if value.is_null() && last.starts_with('-') {
            cur.as_object_mut().unwrap().remove(&last[1..]);
        } else {
            cur[last] = value.clone();
        }
    }
    v.to_string()
}

#[test]
fn root_api_call_with_mfa_session() {
    let d = detector(DetectSettings::default());
    assert_eq!(
        fired(&d, ROOT_CALL),
        vec![("root-api-call".into(), Severity::Medium)]
    );
}

#[test]
fn root_api_call_without_mfa_and_missing_mfa_attribute() {
    let d = detector(DetectSettings::default());
    let no = with(
        ROOT_CALL,
        &[(
            "userIdentity.sessionContext.attributes.mfaAuthenticated",
            "false".into(),
        )],
    );
    assert_eq!(ids(&d, &no), ["root-api-call", "root-api-call-without-mfa"]);
    let missing = with(
        ROOT_CALL,
        &[("userIdentity.-sessionContext", serde_json::Value::Null)],
    );
    assert_eq!(
        ids(&d, &missing),
        ["root-api-call", "root-api-call-without-mfa"]
    );
}

#[test]
fn read_only_and_failed_root_calls_are_included_at_low_severity() {
    let d = detector(DetectSettings::default());
    let ro = with(
        ROOT_CALL,
        &[("readOnly", true.into()), ("eventName", "ListUsers".into())],
    );
    assert_eq!(
        fired(&d, &ro),
        vec![("root-api-call".into(), Severity::Low)]
    );
    let failed = with(ROOT_CALL, &[("errorCode", "AccessDenied".into())]);
    assert_eq!(
        fired(&d, &failed),
        vec![("root-api-call".into(), Severity::Low)]
    );
    let ro_string = with(ROOT_CALL, &[("readOnly", "true".into())]);
    assert_eq!(fired(&d, &ro_string)[0].1, Severity::Low);
}

#[test]
fn root_access_key_used_only_for_long_term_keys() {
    let d = detector(DetectSettings::default());
    let akia = with(
        ROOT_CALL,
        &[
            ("userIdentity.accessKeyId", "AKIAIOSFODNN7EXAMPLE".into()),
            ("userIdentity.-sessionContext", serde_json::Value::Null),
        ],
    );
    assert_eq!(
        fired(&d, &akia),
        vec![
            ("root-api-call".into(), Severity::Medium),
            ("root-api-call-without-mfa".into(), Severity::High),
            ("root-access-key-used".into(), Severity::Critical),
        ]
    );
    assert!(!ids(&d, ROOT_CALL).contains(&"root-access-key-used".to_string()));
}

#[test]
fn service_events_are_not_root_calls() {
    let d = detector(allow(&["203.0.113.0/24"], Scope::All));
    let via_cfn = with(
        ROOT_CALL,
        &[
            (
                "userIdentity.invokedBy",
                "cloudformation.amazonaws.com".into(),
            ),
            ("sourceIPAddress", "cloudformation.amazonaws.com".into()),
        ],
    );
    assert!(ids(&d, &via_cfn).is_empty());
    let service_event = with(ROOT_CALL, &[("eventType", "AwsServiceEvent".into())]);
    assert!(ids(&d, &service_event).is_empty());
    let internal = with(
        ROOT_CALL,
        &[("userIdentity.invokedBy", "AWS Internal".into())],
    );
    assert!(ids(&d, &internal).is_empty());
}

#[test]
fn console_actions_by_root_are_the_person() {
    let d = detector(DetectSettings::default());
    let console_key = with(
        ROOT_CALL,
        &[
            ("eventName", "CreateAccessKey".into()),
            ("userIdentity.invokedBy", "signin.amazonaws.com".into()),
            ("requestParameters", serde_json::Value::Null),
        ],
    );
    assert_eq!(
        ids(&d, &console_key),
        ["root-api-call", "root-access-key-created"]
    );
    let cli_key = with(
        ROOT_CALL,
        &[
            ("eventName", "CreateAccessKey".into()),
            ("requestParameters", serde_json::json!({})),
        ],
    );
    assert_eq!(
        fired(&d, &cli_key)[1],
        ("root-access-key-created".into(), Severity::Critical)
    );
    let for_user = with(ROOT_CALL, &[("eventName", "CreateAccessKey".into())]);
    assert_eq!(
        ids(&d, &for_user),
        ["root-api-call"],
        "a key for IAM user `backdoor` is not a root key"
    );
    let failed = with(&cli_key, &[("errorCode", "LimitExceeded".into())]);
    assert_eq!(
        fired(&d, &failed)[1],
        ("root-access-key-created".into(), Severity::High)
    );
}

#[test]
fn assume_root_sessions_are_reported_as_privileged_sessions() {
    let d = detector(DetectSettings::default());
    let assumed = with(
        ROOT_CALL,
        &[
            ("eventName", "DeleteLoginProfile".into()),
            ("userIdentity.sessionContext.assumedRoot", "true".into()),
            ("userIdentity.accessKeyId", "ASIAEXAMPLEKEY999999".into()),
        ],
    );
    assert_eq!(
        fired(&d, &assumed),
        vec![("root-privileged-session".into(), Severity::Medium)]
    );
}

#[test]
fn iam_login_variants() {
    let d = detector(DetectSettings::default());
    let base = r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","userName":"alice"},"eventTime":"2024-05-01T12:00:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"Mozilla/5.0","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/","MobileVersion":"No","MFAUsed":"No"},"eventID":"e-iam","eventType":"AwsConsoleSignIn","recipientAccountId":"111122223333"}"#;
    assert_eq!(ids(&d, base), ["iam-console-login-without-mfa"]);
    let saml = with(
        base,
        &[(
            "additionalEventData.SamlProviderArn",
            "arn:aws:iam::111122223333:saml-provider/Okta".into(),
        )],
    );
    assert!(ids(&d, &saml).is_empty());
    let mfa = with(base, &[("additionalEventData.MFAUsed", "Yes".into())]);
    assert!(ids(&d, &mfa).is_empty());
    let failed = with(base, &[("responseElements.ConsoleLogin", "Failure".into())]);
    assert!(ids(&d, &failed).is_empty());
    let assumed = with(base, &[("userIdentity.type", "AssumedRole".into())]);
    assert!(ids(&d, &assumed).is_empty());
    let no_data = with(base, &[("-additionalEventData", serde_json::Value::Null)]);
    assert_eq!(ids(&d, &no_data), ["iam-console-login-without-mfa"]);
}

#[test]
fn source_ip_allow_list_scopes() {
    let all = detector(allow(&["203.0.113.0/24", "2001:db8::/32"], Scope::All));
    let root_only = detector(allow(&["203.0.113.0/24"], Scope::Root));
    let user_call = with(ROOT_CALL, &[("userIdentity.type", "IAMUser".into())]);
    assert_eq!(
        fired(&all, &user_call),
        vec![("source-ip-not-allowed".into(), Severity::Medium)]
    );
    assert!(ids(&root_only, &user_call).is_empty());
    let root_outside = fired(&root_only, ROOT_CALL);
    assert!(root_outside.contains(&("source-ip-not-allowed".into(), Severity::High)));
    let inside = with(&user_call, &[("sourceIPAddress", "203.0.113.44".into())]);
    assert!(ids(&all, &inside).is_empty());
    let v6_inside = with(&user_call, &[("sourceIPAddress", "2001:db8::8".into())]);
    assert!(ids(&all, &v6_inside).is_empty());
    let v6_outside = with(&user_call, &[("sourceIPAddress", "2001:db9::8".into())]);
    assert_eq!(ids(&all, &v6_outside), ["source-ip-not-allowed"]);
    for not_ip in ["AWS Internal", "s3.amazonaws.com", ""] {
        let r = with(&user_call, &[("sourceIPAddress", not_ip.into())]);
        assert!(ids(&all, &r).is_empty(), "{not_ip}");
    }
    let no_list = detector(DetectSettings::default());
    assert!(
        ids(&no_list, &user_call).is_empty(),
        "no allow list, no check"
    );
}

#[test]
fn disabled_rules_severity_overrides_and_suppressions() {
    let mut s = DetectSettings::default();
    s.disabled.insert("root-api-call".into());
    s.severity
        .insert("root-api-call-without-mfa".into(), Severity::Critical);
    let d = detector(s);
    let no_mfa = with(
        ROOT_CALL,
        &[(
            "userIdentity.sessionContext.attributes.mfaAuthenticated",
            "false".into(),
        )],
    );
    assert_eq!(
        fired(&d, &no_mfa),
        vec![("root-api-call-without-mfa".into(), Severity::Critical)]
    );
    assert!(d.enabled_rules().all(|r| r.id() != "root-api-call"));

    let s = DetectSettings {
        suppressions: vec![Suppression {
            rule: Some("root-api-call".into()),
            principal_arns: vec![Glob::new("arn:aws:iam::111122223333:root")],
            event_names: vec!["CreateUser".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let d = detector(s);
    let rec = Record::parse(&no_mfa).unwrap();
    let mut out = Vec::new();
    let eval = d.evaluate(&rec, &mut out);
    assert_eq!(
        eval,
        Evaluation {
            findings: 1,
            suppressed: 1
        }
    );
    assert_eq!(out[0].rule, "root-api-call-without-mfa");
}

#[test]
fn excluded_root_event_names() {
    let mut s = DetectSettings::default();
    s.context
        .root_api_call_excluded_events
        .insert("CreateUser".into());
    let d = detector(s);
    assert!(ids(&d, ROOT_CALL).is_empty());
}

#[test]
fn findings_through_an_envelope_carry_the_record() {
    let d = detector(DetectSettings::default());
    let body = format!(
        r#"{{"version":"0","detail-type":"AWS API Call via CloudTrail","source":"aws.iam","detail":{ROOT_CALL}}}"#
    );
    let mut findings = Vec::new();
    decode_body(&body, &mut |i| {
        if let Ok(Item::Record(r)) = i {
            d.evaluate(&r, &mut findings);
        }
    });
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(
        f.event_id.as_deref(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(
        f.principal_arn.as_deref(),
        Some("arn:aws:iam::111122223333:root")
    );
    assert_eq!(f.source_ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(f.mfa, Some(true));
    assert_eq!(f.event.get(), ROOT_CALL);
}

/// Every rule names its ATT&CK technique, and the finding carries it, on
/// AWS's own example records: root sign-in and root calls are use of valid
/// cloud credentials (T1078.004); root creating its own access key adds a
/// cloud credential (T1098.001).
#[test]
fn findings_carry_their_mitre_technique() {
    for r in builtin_rules() {
        let t = r.technique();
        let (base, sub) = t.id.split_once('.').unwrap_or((&t.id, "001"));
        assert!(
            base.len() == 5
                && base.starts_with('T')
                && base[1..].bytes().all(|b| b.is_ascii_digit())
                && sub.len() == 3
                && sub.bytes().all(|b| b.is_ascii_digit()),
            "{}: {}",
            r.id(),
            t.id
        );
        assert!(!t.name.is_empty(), "{}", r.id());
        assert_eq!(technique_of(r.id()), Some(t));
    }
    assert_eq!(technique_of("posture-root-no-mfa"), None);
    let d = detector(DetectSettings::default());
    let docs: Vec<serde_json::Value> = DOC_EXAMPLES
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut seen = std::collections::BTreeMap::new();
    for doc in &docs {
        let raw = doc["record"].to_string();
        let rec = Record::parse(&raw).unwrap();
        let mut out = Vec::new();
        d.evaluate(&rec, &mut out);
        for f in out {
            let t = f
                .mitre_attack
                .clone()
                .expect("every detection finding has one");
            seen.insert(f.rule.clone(), t.id.to_string());
            let json: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
            assert_eq!(json["mitre_attack"]["id"], t.id.as_ref());
            assert_eq!(json["mitre_attack"]["name"], t.name.as_ref());
        }
    }
    assert_eq!(seen["root-console-login"], "T1078.004");
    assert_eq!(seen["root-console-login-without-mfa"], "T1078.004");
    assert_eq!(seen["root-api-call"], "T1078.004");
    let created = r#"{"eventVersion":"1.09","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE0000000001"},"eventTime":"2024-05-14T09:02:11Z","eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.23","userAgent":"AWS Internal","requestParameters":null,"responseElements":{"accessKey":{"accessKeyId":"AKIAIOSFODNN7EXAMPLE","status":"Active","userName":"root"}},"eventID":"0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333"}"#;
    let rec = Record::parse(created).unwrap();
    let mut out = Vec::new();
    d.evaluate(&rec, &mut out);
    let f = out
        .iter()
        .find(|f| f.rule == "root-access-key-created")
        .unwrap();
    let t = f.mitre_attack.as_ref().unwrap();
    assert_eq!(t.id, "T1098.001");
    assert_eq!(t.name, "Account Manipulation: Additional Cloud Credentials");
}
