//! Findings: what a rule reports about one event, and the finding JSON that
//! every sink and `replay` emit. Pure.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::event::Record;

mod json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Sigma's `informational`: worth a record, not a response.
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("`{s}` is not a severity (info, low, medium, high, critical)"))
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A throttled burst: repeats of one (rule, principal, source IP) key inside
/// a throttle window, reported once at the window's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Findings of the key inside the window after its first one was sent:
    /// the folded ones and the escalations.
    pub count: u64,
    /// Of `count`, findings more severe than any sent before them in the
    /// window, which went out at once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub escalated: u64,
    pub first_event_time: Option<String>,
    pub last_event_time: Option<String>,
    pub event_names: Vec<String>,
    pub window_secs: u64,
}

/// A MITRE ATT&CK technique (attack.mitre.org/techniques/), so a SOC can
/// file the alert under its own ATT&CK mapping. Written by rootwatch, never
/// taken from the event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Technique {
    /// `T1078.004`: technique, then sub-technique after the dot.
    pub id: Cow<'static, str>,
    /// `Valid Accounts: Cloud Accounts`: technique, then sub-technique.
    pub name: Cow<'static, str>,
}

impl Technique {
    pub const fn new(id: &'static str, name: &'static str) -> Technique {
        Technique {
            id: Cow::Borrowed(id),
            name: Cow::Borrowed(name),
        }
    }
}

impl fmt::Display for Technique {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            f.write_str(&self.id)
        } else {
            write!(f, "{} {}", self.id, self.name)
        }
    }
}

/// What a Sigma correlation saw when it fired, on the event that completed
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    /// `event_count`, `value_count`, `temporal`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The group-by fields and their values.
    pub group_by: std::collections::BTreeMap<String, String>,
    /// The count (or other aggregate) that met the condition.
    pub value: f64,
    pub timespan_secs: u64,
}

/// What a Sigma rule's finding carries of its rule: the author (which the
/// Detection Rule License asks every message based on a match to keep),
/// where to read more, and when it is known to fire on benign activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigmaRuleRef {
    /// The rule's `id`, as in `rule = "sigma:<id>"`.
    pub id: String,
    /// The rule's `level` as written (`informational`, `low`, ...).
    pub level: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub falsepositives: Vec<String>,
    /// ATT&CK technique ids from the rule's `attack.tNNNN` tags, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub techniques: Vec<String>,
}

/// One finding. Its JSON form is the contract the sinks and `replay` share.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub title: String,
    /// Why it fired, in one sentence built from the event.
    pub reason: String,
    /// Stable: the same rule on the same event always gives the same id.
    pub finding_id: String,
    pub event_id: Option<String>,
    /// RFC 3339 when the record's time parses; the record's own text otherwise.
    pub event_time: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub principal_type: Option<String>,
    pub principal_arn: Option<String>,
    pub user_name: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub error_code: Option<String>,
    /// true or false when the event says; null when it does not.
    pub mfa: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// The rule's ATT&CK technique; absent for posture findings, which
    /// report an exposure rather than an observed action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitre_attack: Option<Technique>,
    /// For a Sigma rule's finding, the rule's attribution and notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<std::sync::Arc<SigmaRuleRef>>,
    /// For a Sigma correlation's finding, what it counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<std::sync::Arc<Correlation>>,
    /// For a posture finding, how old the credential report was at the
    /// audit (IAM hands out a cached report for up to four hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_age_seconds: Option<u64>,
    /// From `[enrich.accounts]`: the account's name, OU path and tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ou: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_tags: Option<std::collections::BTreeMap<String, String>>,
    /// From `[enrich.geoip]`: what kind of address `source_ip` is and, for
    /// a public one, its country, city and network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip_context: Option<crate::enrich::SourceContext>,
    /// On root API calls: whether the call is one of the tasks AWS
    /// documents as needing root credentials (false: an ordinary API, the
    /// more suspicious case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_root: Option<bool>,
    /// From `[[detect.expected]]`: announced root work this finding is part of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<crate::enrich::expected::ExpectedMark>,
    /// From `[detect.runbooks]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// The raw CloudTrail record.
    pub event: RawEvent,
}

/// A record's JSON text as a finding carries it: on one line, and always
/// JSON, because it is made only from a record the decoder parsed, from a
/// JSON value, or from text it checks. A record is therefore copied, not
/// parsed again: checking it with `RawValue::from_string` was a fifth of a
/// finding-heavy replay.
#[derive(Clone, PartialEq, Eq)]
pub struct RawEvent(Box<str>);

impl RawEvent {
    /// The record's text. Findings are written as JSON lines: a
    /// pretty-printed input (an EventBridge event saved by hand) has line
    /// breaks between tokens, and only there (a JSON string holds none), so
    /// they become spaces.
    fn of_record(rec: &Record<'_>) -> RawEvent {
        RawEvent(one_line(rec.raw).into())
    }

    /// A JSON value's compact text (which has no line break).
    pub fn from_value(value: &serde_json::Value) -> RawEvent {
        RawEvent(value.to_string().into())
    }

    /// `json`, checked, without the white space around it, on one line.
    pub fn from_string(json: String) -> Result<RawEvent, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(&json)?;
        Ok(RawEvent(one_line(raw.get()).into()))
    }

    pub fn get(&self) -> &str {
        &self.0
    }
}

/// `text` with its line breaks made spaces. memchr: `str::contains` with a
/// char set walks the text a char at a time, a fifth of replay's time on a
/// finding-heavy trail.
fn one_line(text: &str) -> Cow<'_, str> {
    if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_some() {
        Cow::Owned(text.replace(['\n', '\r'], " "))
    } else {
        Cow::Borrowed(text)
    }
}

impl fmt::Debug for RawEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawEvent").field(&self.0).finish()
    }
}

impl Serialize for RawEvent {
    /// As the JSON it is, not as a string. [`Finding::write_json`] copies
    /// it without this; a serializer needs a `RawValue`, which checks it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(RawEvent(one_line(raw.get()).into()))
    }
}

/// What a posture finding is about.
#[derive(Debug, Clone)]
pub struct PostureSubject<'a> {
    pub rule: &'a str,
    pub title: String,
    pub severity: Severity,
    pub reason: String,
    pub account_id: &'a str,
    /// `Root` or `IAMUser`.
    pub principal_type: &'a str,
    pub principal_arn: &'a str,
    pub user_name: Option<&'a str>,
    /// What the finding id is derived from besides rule and account: the
    /// principal and, for per-credential rules, the credential.
    pub subject: &'a str,
    /// When the evidence was observed.
    pub observed: chrono::DateTime<chrono::Utc>,
    /// How old the evidence was when it was evaluated.
    pub report_age_seconds: Option<u64>,
    pub mfa: Option<bool>,
    /// The evidence, carried as the finding's `event`.
    pub evidence: serde_json::Value,
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

impl Finding {
    /// Builds a finding for `rule` on `rec`. The finding id hashes the rule
    /// id with the event key (or the raw record when there is no eventID).
    pub fn new(
        rec: &Record<'_>,
        rule: &str,
        title: &str,
        severity: Severity,
        reason: String,
        mfa: Option<bool>,
    ) -> Finding {
        let mut h = Sha256::new();
        h.update(rule.as_bytes());
        h.update([0]);
        match rec.event_key() {
            Some(key) => h.update(key.0),
            None => h.update(rec.raw.as_bytes()),
        }
        let finding_id = hex::encode(&h.finalize()[..16]);
        let event_time = match (rec.time(), rec.event_time.get()) {
            (Some(t), _) => Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            (None, raw) => owned(raw),
        };
        let event = RawEvent::of_record(rec);
        let ui = &rec.user_identity;
        Finding {
            rule: rule.to_owned(),
            severity,
            title: title.to_owned(),
            reason,
            finding_id,
            event_id: owned(rec.event_id.get()),
            event_time,
            event_name: owned(rec.event_name.get()),
            event_source: owned(rec.event_source.get()),
            account_id: owned(rec.account()),
            region: owned(rec.aws_region.get()),
            principal_type: owned(ui.kind.get()),
            principal_arn: owned(ui.arn.non_empty()),
            user_name: owned(ui.user_name.non_empty()),
            source_ip: owned(rec.source_ip_address.get()),
            user_agent: owned(rec.user_agent.get()),
            error_code: owned(rec.error_code.non_empty()),
            mfa,
            summary: None,
            mitre_attack: None,
            sigma: None,
            correlation: None,
            report_age_seconds: None,
            account_name: None,
            account_ou: None,
            account_tags: None,
            source_ip_context: None,
            requires_root: None,
            expected: None,
            runbook_url: None,
            event,
        }
    }

    /// The finding with the ATT&CK technique of its rule.
    pub fn with_technique(mut self, technique: Technique) -> Finding {
        self.mitre_attack = Some(technique);
        self
    }

    /// Builds a finding that comes from a posture audit rather than a
    /// CloudTrail record. The event fields that do not apply are null;
    /// `event_time` is when the evidence was observed (the credential
    /// report's GeneratedTime) and `event` holds that evidence. The finding
    /// id hashes the rule with the account and subject, so an open problem
    /// keeps its id from one audit to the next.
    pub fn posture(p: PostureSubject<'_>) -> Finding {
        let mut h = Sha256::new();
        for part in [p.rule, p.account_id, p.subject] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let finding_id = hex::encode(&h.finalize()[..16]);
        let event = RawEvent::from_value(&p.evidence);
        Finding {
            rule: p.rule.to_owned(),
            severity: p.severity,
            title: p.title,
            reason: p.reason,
            finding_id,
            event_id: None,
            event_time: Some(
                p.observed
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
            event_name: None,
            event_source: None,
            account_id: Some(p.account_id.to_owned()),
            region: None,
            principal_type: Some(p.principal_type.to_owned()),
            principal_arn: Some(p.principal_arn.to_owned()),
            user_name: p.user_name.map(str::to_owned),
            source_ip: None,
            user_agent: None,
            error_code: None,
            mfa: p.mfa,
            summary: None,
            mitre_attack: None,
            sigma: None,
            correlation: None,
            report_age_seconds: p.report_age_seconds,
            account_name: None,
            account_ou: None,
            account_tags: None,
            source_ip_context: None,
            requires_root: None,
            expected: None,
            runbook_url: None,
            event,
        }
    }

    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out);
        String::from_utf8(out).expect("the finding JSON is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REC: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"eventTime":"2022-09-15 13:45:24","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15.0","eventID":"e1","recipientAccountId":"111122223333"}"#;

    #[test]
    fn finding_json_has_the_contract_fields() {
        let rec = Record::parse(REC).unwrap();
        let f = Finding::new(
            &rec,
            "root-api-call",
            "Root API call",
            Severity::Medium,
            "r".into(),
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
        for key in [
            "rule",
            "severity",
            "title",
            "finding_id",
            "event_id",
            "event_time",
            "event_name",
            "event_source",
            "account_id",
            "region",
            "principal_type",
            "principal_arn",
            "source_ip",
            "user_agent",
            "mfa",
            "event",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["event_time"], "2022-09-15T13:45:24Z");
        assert_eq!(v["severity"], "medium");
        assert_eq!(v["mfa"], serde_json::Value::Null);
        assert_eq!(v["event"]["eventID"], "e1");
        assert!(v.get("summary").is_none());
    }

    #[test]
    fn finding_id_is_stable_and_rule_specific() {
        let rec = Record::parse(REC).unwrap();
        let a = Finding::new(
            &rec,
            "root-api-call",
            "t",
            Severity::Low,
            String::new(),
            None,
        );
        let b = Finding::new(
            &Record::parse(REC).unwrap(),
            "root-api-call",
            "other",
            Severity::High,
            "x".into(),
            None,
        );
        let c = Finding::new(
            &rec,
            "root-api-call-without-mfa",
            "t",
            Severity::Low,
            String::new(),
            None,
        );
        assert_eq!(a.finding_id, b.finding_id);
        assert_ne!(a.finding_id, c.finding_id);
        assert_eq!(a.finding_id.len(), 32);
    }

    /// A finding carries its record's text, on one line, whether the record
    /// came bare, in `Records` or as a pretty-printed EventBridge `detail`.
    #[test]
    fn the_event_is_the_record_on_one_line_however_it_came() {
        let pretty =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(REC).unwrap())
                .unwrap()
                .replace('\n', "\r\n");
        let bodies = [
            REC.to_owned(),
            format!(r#"{{"Records":[{REC}]}}"#),
            format!(r#"{{"Records":[{pretty}]}}"#),
            format!(
                r#"{{"detail-type":"AWS API Call via CloudTrail","source":"aws.iam","detail":{pretty}}}"#
            ),
        ];
        for body in &bodies {
            let mut events = Vec::new();
            crate::decode::decode_body(body, &mut |item| {
                let Ok(crate::decode::Item::Record(rec)) = item else {
                    panic!("{body}: {item:?}");
                };
                let f = Finding::new(&rec, "r", "t", Severity::Low, String::new(), None);
                events.push(f.event.get().to_owned());
            });
            assert_eq!(events.len(), 1, "{body}");
            let event = &events[0];
            assert!(!event.contains(['\n', '\r']), "{event}");
            let parsed: serde_json::Value = serde_json::from_str(event).unwrap();
            assert_eq!(
                parsed,
                serde_json::from_str::<serde_json::Value>(REC).unwrap()
            );
            if !body.contains('\n') {
                assert_eq!(event, REC);
            }
        }
    }

    /// `write_json` writes what the derived `Serialize` writes, byte for
    /// byte: for the findings of every rule on the test records, and for
    /// one with every optional field and strings that need escapes.
    #[test]
    fn the_written_json_is_the_derived_json() {
        let same = |f: &Finding| {
            let mut out = Vec::new();
            f.write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(f).unwrap()
            );
        };
        let detector = crate::detect::Detector::new(crate::detect::DetectSettings {
            context: crate::detect::Context {
                allowlist: crate::detect::AllowList {
                    cidrs: crate::detect::CidrSet::new([crate::detect::allowlist::parse_cidr(
                        "10.0.0.0/8",
                    )
                    .unwrap()]),
                    asns: Default::default(),
                    geoip: None,
                    scope: crate::detect::Scope::All,
                },
                ..Default::default()
            },
            ..Default::default()
        });
        let mut n = 0;
        for file in [
            "aws-docs-examples/records.jsonl",
            "invictus-aws-dataset/records.jsonl",
            "panther-analysis/all_test_logs_records.jsonl",
        ] {
            let text = std::fs::read_to_string(format!("tests/fixtures/third_party/{file}"))
                .expect("test records");
            for line in text.lines() {
                crate::decode::decode_body(line, &mut |item| {
                    if let Ok(crate::decode::Item::Record(rec)) = item {
                        let mut findings = Vec::new();
                        detector.evaluate(&rec, &mut findings);
                        for f in &findings {
                            same(f);
                            n += 1;
                        }
                    }
                });
            }
        }
        assert!(n > 0, "no finding from the test records");

        let rec = Record::parse(REC).unwrap();
        let mut f = Finding::new(
            &rec,
            "sigma:0f0ba3e9",
            "A \"quoted\" title\twith\u{1} controls\\ and é",
            Severity::High,
            "line\nbreak \u{7f} \u{2028}".into(),
            Some(false),
        );
        f.summary = Some(Summary {
            count: 3,
            escalated: 1,
            first_event_time: Some("2024-01-01T00:00:00Z".into()),
            last_event_time: None,
            event_names: vec!["A".into(), "B\"".into()],
            window_secs: 300,
        });
        f.mitre_attack = Some(Technique::new(
            "T1078.004",
            "Valid Accounts: Cloud Accounts",
        ));
        f.sigma = Some(std::sync::Arc::new(SigmaRuleRef {
            id: "0f0ba3e9".into(),
            level: "high".into(),
            author: Some("A. Author".into()),
            references: vec!["https://example.com/a".into()],
            falsepositives: vec!["admins".into()],
            techniques: vec!["t1078".into()],
        }));
        f.correlation = Some(std::sync::Arc::new(Correlation {
            kind: "event_count".into(),
            group_by: [("accountId".to_owned(), "1".to_owned())].into(),
            value: 5.0,
            timespan_secs: 600,
        }));
        f.report_age_seconds = Some(120);
        f.account_name = Some("prod".into());
        f.account_ou = Some("Root/Prod".into());
        f.account_tags = Some([("team".to_owned(), "sec\\ops".to_owned())].into());
        f.source_ip_context = Some(crate::enrich::SourceContext {
            kind: "public".into(),
            country: Some("SE".into()),
            asn: Some(29518),
            ..Default::default()
        });
        f.requires_root = Some(true);
        f.expected = Some(crate::enrich::expected::ExpectedMark {
            reason: "r".into(),
            ticket: "T-1".into(),
            until: "2024-01-02T00:00:00Z".into(),
        });
        f.runbook_url = Some("https://runbooks.example/root".into());
        same(&f);
        f.principal_arn = None;
        f.mfa = Some(true);
        same(&f);
    }

    #[test]
    fn a_raw_event_is_json_on_one_line() {
        let e = RawEvent::from_string(" {\"a\":\r\n [1,\n2]} \n".into()).unwrap();
        assert_eq!(e.get(), r#"{"a":   [1, 2]}"#);
        for bad in ["", "{", "{} {}", "nul", "\"open"] {
            assert!(RawEvent::from_string(bad.into()).is_err(), "{bad:?}");
        }
        let back: RawEvent = serde_json::from_str("{\n\"b\": true\n}").unwrap();
        assert_eq!(back.get(), r#"{ "b": true }"#);
        assert_eq!(serde_json::to_string(&back).unwrap(), back.get());
        let v = serde_json::json!({"k": ["x\ny"]});
        assert_eq!(RawEvent::from_value(&v).get(), r#"{"k":["x\ny"]}"#);
    }

    #[test]
    fn severity_parses_and_orders() {
        assert_eq!("CRITICAL".parse::<Severity>().unwrap(), Severity::Critical);
        assert!("urgent".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High && Severity::Medium > Severity::Low);
    }
}
