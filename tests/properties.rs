//! Properties over generated input: any record the decoder accepts can be
//! evaluated by every rule, and every finding, whatever its text, formats
//! for every receiver within that receiver's limits.

use proptest::prelude::*;
use rootwatch::decode::{Item, decode_body};
use rootwatch::detect::{AllowList, CidrSet, Context, DetectSettings, Detector, Scope};
use rootwatch::finding::{Finding, Summary};
use rootwatch::sink::format::check;

fn detector() -> Detector {
    Detector::new(DetectSettings {
        context: Context {
            allowlist: AllowList {
                cidrs: CidrSet::new([
                    "203.0.113.0/24".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap(),
                ]),
                asns: Default::default(),
                geoip: None,
                scope: Scope::All,
            },
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Text with what makes formats and truncation fail: multi-byte and
/// combining characters, markup, control characters, long runs.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[<>&|*_~`\\[\\]()#!\\\\{}\\n\\r\\t\u{202e}\u{0301}é😀-]{0,60}",
        Just("<!channel> <@U0123> <http://evil.example|x> [a](http://evil.example)".to_owned()),
        "😀{300,1500}",
        "[a-z]{2000,5000}",
    ]
}

fn field(v: Option<String>) -> serde_json::Value {
    v.map(serde_json::Value::from)
        .unwrap_or(serde_json::Value::Null)
}

prop_compose! {
    fn record()(
        kind in prop_oneof![Just("Root"), Just("IAMUser"), Just("AssumedRole"), Just("AWSService")],
        name in prop_oneof![Just("ConsoleLogin".to_owned()), Just("CreateAccessKey".to_owned()), nasty()],
        ip in prop_oneof![Just("198.51.100.7".to_owned()), Just("203.0.113.1".to_owned()), Just("2001:db9::1".to_owned()), nasty()],
        agent in proptest::option::of(nasty()),
        user in proptest::option::of(nasty()),
        region in prop_oneof![Just("eu-west-1".to_owned()), nasty()],
        id in prop_oneof![Just("e1".to_owned()), nasty()],
        mfa in prop_oneof![Just("Yes"), Just("no"), Just("YES"), Just("")],
        login in prop_oneof![Just("Success"), Just("Failure")],
        key in prop_oneof![Just("AKIAIOSFODNN7EXAMPLE"), Just("ASIAEXAMPLE")],
        assumed in any::<bool>(),
        time in prop_oneof![Just("2024-05-01T12:00:00Z".to_owned()), Just("2022-09-15 13:45:24".to_owned()), nasty()],
    ) -> (String, bool, String, &'static str) {
        let raw = serde_json::json!({
            "eventVersion": "1.08",
            "userIdentity": {
                "type": kind, "arn": field(user.clone()), "userName": field(user), "accountId": "111122223333",
                "accessKeyId": key,
                "sessionContext": {"assumedRoot": if assumed { "true" } else { "false" }, "attributes": {"mfaAuthenticated": "false"}}
            },
            "eventTime": time, "eventName": name, "eventSource": "iam.amazonaws.com", "awsRegion": region,
            "sourceIPAddress": ip.clone(), "userAgent": field(agent), "eventID": id, "eventType": "AwsApiCall",
            "responseElements": {"ConsoleLogin": login}, "additionalEventData": {"MFAUsed": mfa},
            "requestParameters": null, "recipientAccountId": "111122223333"
        })
        .to_string();
        // Every root event fires some rule: login, login failure, API call
        // or privileged session.
        (raw, kind == "Root", ip, kind)
    }
}

/// Every format within its service's limits, nothing active in it (the
/// checks the fuzz targets use too).
fn check_formats(f: &Finding) -> Result<(), TestCaseError> {
    check::all_formats(f).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_decodable_record_evaluates_and_every_finding_formats((raw, root, ip, kind) in record(), summarised in any::<bool>()) {
        let d = detector();
        let mut findings = Vec::new();
        decode_body(&raw, &mut |item| {
            if let Ok(Item::Record(r)) = item {
                d.evaluate(&r, &mut findings);
            }
        });
        prop_assert!(!root || !findings.is_empty(), "a root event fired no rule: {raw}");
        // The allow-list rule fires only for an address outside the list,
        // and always for a person's call from one.
        let outside = ip.parse::<std::net::IpAddr>().ok().filter(|a| {
            !["203.0.113.0/24", "2001:db8::/32"]
                .iter()
                .any(|n| n.parse::<ipnet::IpNet>().unwrap().contains(a))
        });
        let ip_rule = findings.iter().any(|f| f.rule == "source-ip-not-allowed");
        prop_assert!(!ip_rule || outside.is_some(), "fired for {ip:?}: {raw}");
        if matches!(kind, "Root" | "IAMUser") && ip == "198.51.100.7" {
            prop_assert!(ip_rule, "a call from outside the list passed: {raw}");
        }
        for mut f in findings {
            if summarised {
                f.summary = Some(Summary {
                    count: 3,
                    escalated: 0,
                    first_event_time: f.event_time.clone(),
                    last_event_time: f.event_time.clone(),
                    event_names: vec![f.event_name.clone().unwrap_or_default(); 3],
                    window_secs: 300,
                });
            }
            check_formats(&f)?;
            let again: Finding = serde_json::from_str(&f.to_json()).unwrap();
            prop_assert_eq!(again.finding_id, f.finding_id.clone());
        }
    }
}
