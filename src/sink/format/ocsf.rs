//! OCSF Detection Finding (class 2004, schema [`VERSION`]): the finding as
//! a SIEM or data lake that speaks the Open Cybersecurity Schema Framework
//! ingests it (Security Lake, Splunk, Sentinel and the like).
//!
//! The mapping (docs/outputs.md, "OCSF"):
//!
//! * classification: `activity_id` 1 (Create), `category_uid` 2 (Findings),
//!   `class_uid` 2004, `type_uid` 200401, `status_id` 1 (New),
//!   `severity_id` low 2, medium 3, high 4, critical 5;
//! * `time`: the event's time in milliseconds since the epoch;
//! * `finding_info`: `uid` = finding id, `title`, `desc` = the reason,
//!   `types` and `analytic` (type Rule) = the rule id;
//! * `cloud` (cloud profile): provider AWS, the account and region;
//!   `api`: the call's operation and service;
//! * `evidences[0]`: the actor (`actor.user`: ARN as `uid`, user name,
//!   CloudTrail identity type mapped to the user type, the account), the
//!   caller's address (`src_endpoint.ip`) and the call (`api`). Detection
//!   Finding carries actor and endpoint in its evidence, not at the top;
//! * `raw_data`: the CloudTrail record as JSON text; `message`: the reason;
//! * `unmapped`: what has no OCSF attribute (event ID, user agent, MFA,
//!   error code, a throttled burst's event names).
//!
//! Pure: the finding in, a JSON value out. Event text is carried as data,
//! not markup: OCSF consumers index it, so identifiers (ARNs, names, IPs)
//! keep their value, made one line and cut to the per-field limits; the
//! prose fields (`message`, `finding_info.desc`) are defanged as in every
//! other format, since SIEM consoles show them to analysts.

use chrono::DateTime;
use serde_json::{Map, Value, json};

use super::escape::{self, limit};
use crate::finding::{Finding, Severity, Technique};

/// The OCSF schema version the payload declares and is validated against.
pub const VERSION: &str = "1.7.0";
pub const CLASS_UID: u32 = 2004;
pub const CATEGORY_UID: u32 = 2;
pub const ACTIVITY_CREATE: u32 = 1;
pub const TYPE_UID: u32 = CLASS_UID * 100 + ACTIVITY_CREATE;

/// OCSF `severity_id`.
pub fn severity_id(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

pub fn severity_caption(s: Severity) -> &'static str {
    match s {
        Severity::Info => "Informational",
        Severity::Low => "Low",
        Severity::Medium => "Medium",
        Severity::High => "High",
        Severity::Critical => "Critical",
    }
}

/// OCSF user `type_id` and caption for a CloudTrail `userIdentity.type`.
fn user_type(principal_type: Option<&str>) -> (u8, &'static str) {
    match principal_type {
        // The account's root user holds every permission.
        Some("Root") => (2, "Admin"),
        Some("IAMUser" | "AssumedRole" | "FederatedUser" | "IdentityCenterUser") => (1, "User"),
        Some("AWSService" | "AWSAccount") => (3, "System"),
        _ => (0, "Unknown"),
    }
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn epoch_ms(t: Option<&str>) -> Option<i64> {
    DateTime::parse_from_rfc3339(t?)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A data value: one line, cut to `max`; `None` when absent or empty.
fn data(v: &Option<String>, max: usize) -> Option<Value> {
    v.as_deref()
        .map(|s| escape::truncate(&escape::one_line(s), max))
        .filter(|s| !s.is_empty())
        .map(Value::String)
}

/// Inserts `v` under `k` when it is present.
fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.to_owned(), v);
    }
}

fn account(f: &Finding) -> Option<Value> {
    let mut a =
        json!({"uid": data(&f.account_id, limit::VALUE)?, "type_id": 10, "type": "AWS Account"});
    if let Some(n) = data(&f.account_name, limit::VALUE) {
        a["name"] = n;
    }
    // `[enrich.accounts]` tags (environment and owner among them), and the
    // OU path, as `key:value` labels.
    let mut labels: Vec<Value> = Vec::new();
    if let Some(ou) = &f.account_ou {
        labels.push(escape::display(&format!("ou:{ou}"), limit::VALUE).into());
    }
    for (k, v) in f.account_tags.iter().flatten() {
        labels.push(escape::display(&format!("{k}:{v}"), limit::VALUE).into());
    }
    if !labels.is_empty() {
        a["labels"] = Value::Array(labels);
    }
    Some(a)
}

fn api(f: &Finding) -> Option<Value> {
    let operation = data(&f.event_name, limit::EVENT_NAME)?;
    let mut api = Map::new();
    api.insert("operation".into(), operation);
    if let Some(service) = data(&f.event_source, limit::VALUE) {
        api.insert("service".into(), json!({ "name": service }));
    }
    if let Some(code) = data(&f.error_code, limit::VALUE) {
        api.insert("response".into(), json!({ "error": code }));
    }
    Some(Value::Object(api))
}

fn actor(f: &Finding) -> Option<Value> {
    let mut user = Map::new();
    put(&mut user, "uid", data(&f.principal_arn, limit::PRINCIPAL));
    put(&mut user, "name", data(&f.user_name, limit::PRINCIPAL));
    put(&mut user, "account", account(f));
    if user.is_empty() && f.principal_type.is_none() {
        return None;
    }
    let (type_id, caption) = user_type(f.principal_type.as_deref());
    user.insert("type_id".into(), type_id.into());
    user.insert("type".into(), caption.into());
    Some(json!({ "user": user }))
}

/// The caller's address; only a value that parses as an IP address goes
/// in `ip` (CloudTrail also writes service names and `AWS Internal`).
fn src_endpoint(f: &Finding) -> Option<Value> {
    let ip: std::net::IpAddr = f.source_ip.as_deref()?.parse().ok()?;
    let mut e = json!({ "ip": ip.to_string() });
    if let Some(c) = &f.source_ip_context {
        let mut loc = Map::new();
        put(
            &mut loc,
            "country",
            c.country
                .as_deref()
                .map(|v| escape::display(v, limit::VALUE).into()),
        );
        put(
            &mut loc,
            "city",
            c.city
                .as_deref()
                .map(|v| escape::display(v, limit::VALUE).into()),
        );
        if !loc.is_empty() {
            e["location"] = Value::Object(loc);
        }
        if let Some(n) = c.asn {
            let mut asys = json!({ "number": n });
            if let Some(o) = &c.as_org {
                asys["name"] = escape::display(o, limit::VALUE).into();
            }
            e["autonomous_system"] = asys;
        }
    }
    Some(e)
}

fn evidence(f: &Finding) -> Option<Value> {
    let mut e = Map::new();
    put(&mut e, "actor", actor(f));
    put(&mut e, "src_endpoint", src_endpoint(f));
    put(&mut e, "api", api(f));
    (!e.is_empty()).then_some(Value::Object(e))
}

fn finding_info(f: &Finding) -> Value {
    let rule = escape::truncate(&escape::one_line(&f.rule), limit::VALUE);
    let mut info = Map::new();
    info.insert("uid".into(), f.finding_id.clone().into());
    info.insert(
        "title".into(),
        escape::display(&f.title, limit::VALUE).into(),
    );
    info.insert("desc".into(), escape::reason(f).into());
    info.insert("types".into(), json!([rule]));
    let mut analytic = json!({"uid": rule, "name": rule, "type_id": 1, "type": "Rule"});
    if let Some(s) = &f.sigma {
        analytic["name"] = escape::display(&f.title, limit::VALUE).into();
        analytic["desc"] = format!("Sigma rule by {}", escape::sigma_author(s)).into();
    }
    info.insert("analytic".into(), analytic);
    info.insert("data_sources".into(), json!(["AWS CloudTrail"]));
    if let Some(s) = &f.summary {
        put(
            &mut info,
            "first_seen_time",
            epoch_ms(s.first_event_time.as_deref()).map(Value::from),
        );
        put(
            &mut info,
            "last_seen_time",
            epoch_ms(s.last_event_time.as_deref()).map(Value::from),
        );
    }
    put(
        &mut info,
        "attacks",
        f.mitre_attack.as_ref().map(|t| json!([attack(t)])),
    );
    Value::Object(info)
}

/// The rule's ATT&CK technique as an OCSF `attack`: `T1078.004` "Valid
/// Accounts: Cloud Accounts" is technique T1078 "Valid Accounts" with
/// sub-technique T1078.004 "Cloud Accounts". The tactic is left out: these
/// techniques serve several tactics and the rule does not say which. No
/// `src_url`: the only links rootwatch writes are console links (the
/// payload check holds every format to that).
fn attack(t: &Technique) -> Value {
    let (technique_uid, _) = t.id.split_once('.').unwrap_or((&t.id, ""));
    let (technique_name, sub_name) = t.name.split_once(": ").unwrap_or((&t.name, ""));
    // A Sigma rule's tag gives the id alone: no name then.
    let named = |uid: &str, name: &str| {
        if name.is_empty() {
            json!({"uid": uid})
        } else {
            json!({"uid": uid, "name": name})
        }
    };
    let mut a = Map::new();
    a.insert("technique".into(), named(technique_uid, technique_name));
    if technique_uid != t.id {
        a.insert("sub_technique".into(), named(&t.id, sub_name));
    }
    Value::Object(a)
}

fn unmapped(f: &Finding) -> Value {
    let mut u = Map::new();
    put(&mut u, "event_id", data(&f.event_id, limit::EVENT_ID));
    put(&mut u, "event_time", data(&f.event_time, limit::VALUE));
    put(
        &mut u,
        "principal_type",
        data(&f.principal_type, limit::VALUE),
    );
    put(
        &mut u,
        "source_ip_address",
        data(&f.source_ip, limit::VALUE),
    );
    put(&mut u, "user_agent", data(&f.user_agent, limit::USER_AGENT));
    put(&mut u, "error_code", data(&f.error_code, limit::VALUE));
    u.insert("mfa".into(), f.mfa.map_or(Value::Null, Value::Bool));
    if let Some(r) = f.requires_root {
        u.insert("requires_root".into(), r.into());
    }
    if let Some(c) = &f.source_ip_context {
        u.insert(
            "source_ip_kind".into(),
            escape::display(&c.kind, limit::VALUE).into(),
        );
    }
    if let Some(e) = &f.expected {
        u.insert(
            "expected".into(),
            json!({
                "reason": escape::display(&e.reason, limit::REASON),
                "ticket": escape::display(&e.ticket, limit::VALUE),
                "until": escape::display(&e.until, limit::VALUE),
            }),
        );
    }
    if let Some(s) = &f.summary {
        let (mut names, more) = escape::burst_event_names(s);
        if more > 0 {
            names.push(format!("and {more} more"));
        }
        u.insert(
            "summary".into(),
            json!({
                "count": s.count,
                "window_secs": s.window_secs,
                "first_event_time": data(&s.first_event_time, limit::VALUE),
                "last_event_time": data(&s.last_event_time, limit::VALUE),
                "event_names": names,
            }),
        );
    }
    Value::Object(u)
}

/// The Detection Finding for `f`. `fallback_time` (ms since the epoch) is
/// `time` when the event's own time does not parse: OCSF requires one.
pub fn body(f: &Finding, fallback_time: i64) -> Value {
    let time = epoch_ms(f.event_time.as_deref()).unwrap_or(fallback_time);
    let mut v = Map::new();
    v.insert("activity_id".into(), ACTIVITY_CREATE.into());
    v.insert("activity_name".into(), "Create".into());
    v.insert("category_uid".into(), CATEGORY_UID.into());
    v.insert("category_name".into(), "Findings".into());
    v.insert("class_uid".into(), CLASS_UID.into());
    v.insert("class_name".into(), "Detection Finding".into());
    v.insert("type_uid".into(), TYPE_UID.into());
    v.insert("type_name".into(), "Detection Finding: Create".into());
    v.insert("severity_id".into(), severity_id(f.severity).into());
    v.insert("severity".into(), severity_caption(f.severity).into());
    v.insert("status_id".into(), 1.into());
    v.insert("status".into(), "New".into());
    v.insert("is_alert".into(), true.into());
    v.insert("time".into(), time.into());
    if let Some(s) = &f.summary {
        v.insert("count".into(), s.count.into());
        put(
            &mut v,
            "start_time",
            epoch_ms(s.first_event_time.as_deref()).map(Value::from),
        );
        put(
            &mut v,
            "end_time",
            epoch_ms(s.last_event_time.as_deref()).map(Value::from),
        );
    }
    v.insert("message".into(), escape::reason(f).into());
    v.insert(
        "metadata".into(),
        json!({
            "version": VERSION,
            "profiles": ["cloud"],
            "uid": f.finding_id,
            "product": {
                "name": "rootwatch",
                "vendor_name": "rootwatch",
                "version": env!("CARGO_PKG_VERSION"),
            },
        }),
    );
    v.insert("finding_info".into(), finding_info(f));
    let mut cloud = Map::new();
    cloud.insert("provider".into(), "AWS".into());
    put(&mut cloud, "account", account(f));
    put(&mut cloud, "region", data(&f.region, limit::VALUE));
    v.insert("cloud".into(), Value::Object(cloud));
    put(&mut v, "api", api(f));
    if let Some(e) = evidence(f) {
        v.insert("evidences".into(), json!([e]));
    }
    if let Some(url) = escape::runbook_url(f) {
        v.insert(
            "remediation".into(),
            json!({"desc": "The runbook for this rule", "references": [url]}),
        );
    }
    v.insert("raw_data".into(), f.event.get().into());
    v.insert("unmapped".into(), unmapped(f));
    Value::Object(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::check;
    use crate::sink::format::escape::testing::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn techniques_map_to_attacks_with_their_sub_technique() {
        let mut f = golden_findings().remove(0).1;
        f.mitre_attack = Some(Technique::new(
            "T1078.004",
            "Valid Accounts: Cloud Accounts",
        ));
        assert_eq!(
            body(&f, NOW)["finding_info"]["attacks"],
            json!([{
                "technique": {"uid": "T1078", "name": "Valid Accounts"},
                "sub_technique": {"uid": "T1078.004", "name": "Cloud Accounts"},
            }])
        );
        f.mitre_attack = Some(Technique::new("T1110", "Brute Force"));
        assert_eq!(
            body(&f, NOW)["finding_info"]["attacks"],
            json!([{"technique": {"uid": "T1110", "name": "Brute Force"}}])
        );
        f.mitre_attack = None;
        assert!(body(&f, NOW)["finding_info"].get("attacks").is_none());
    }

    #[test]
    fn golden_cases_map_every_field() {
        for (name, f) in golden_findings() {
            let v = body(&f, NOW);
            check::ocsf_body(&f, &v).unwrap_or_else(|e| panic!("{name}: {e}"));
            check_golden("ocsf", name, &v);
        }
        let (_, login) = golden_findings().remove(0);
        let v = body(&login, NOW);
        assert_eq!(v["class_uid"], 2004);
        assert_eq!(v["type_uid"], 200401);
        assert_eq!(v["severity_id"], 5);
        // 2024-05-14T08:21:37Z
        assert_eq!(v["time"], 1_715_674_897_000i64);
        assert_eq!(v["finding_info"]["uid"], login.finding_id);
        assert_eq!(v["cloud"]["account"]["uid"], "111122223333");
        assert_eq!(v["cloud"]["region"], "us-east-1");
        let user = &v["evidences"][0]["actor"]["user"];
        assert_eq!(user["uid"], "arn:aws:iam::111122223333:root");
        assert_eq!(user["type"], "Admin");
        assert_eq!(v["evidences"][0]["src_endpoint"]["ip"], "203.0.113.45");
        assert_eq!(v["api"]["operation"], "ConsoleLogin");
        assert_eq!(v["api"]["service"]["name"], "signin.amazonaws.com");
        let raw: serde_json::Value = serde_json::from_str(v["raw_data"].as_str().unwrap()).unwrap();
        assert_eq!(raw["eventID"], "3b5c2f8e-7d1a-4c9e-9f0b-2a6d8e4c1f73");
    }

    #[test]
    fn severities_map() {
        let mut f = golden_findings().remove(0).1;
        for (s, id) in [
            (Severity::Low, 2),
            (Severity::Medium, 3),
            (Severity::High, 4),
            (Severity::Critical, 5),
        ] {
            f.severity = s;
            assert_eq!(body(&f, NOW)["severity_id"], id);
        }
    }

    #[test]
    fn a_time_that_does_not_parse_falls_back_and_a_non_ip_source_is_unmapped() {
        let mut f = golden_findings().remove(1).1;
        f.event_time = Some("yesterday".into());
        f.source_ip = Some("AWS Internal".into());
        f.principal_type = Some("Something".into());
        let v = body(&f, NOW);
        check::ocsf_body(&f, &v).unwrap();
        assert_eq!(v["time"], NOW);
        assert_eq!(v["unmapped"]["event_time"], "yesterday");
        assert!(v["evidences"][0].get("src_endpoint").is_none());
        assert_eq!(v["unmapped"]["source_ip_address"], "AWS Internal");
        assert_eq!(v["evidences"][0]["actor"]["user"]["type_id"], 0);
    }

    #[test]
    fn hostile_values_are_one_line_cut_and_defanged_in_prose() {
        for f in [hostile(), hostile_burst(), hostile_linked()] {
            let v = body(&f, NOW);
            check::ocsf_body(&f, &v).unwrap();
            assert_no_hostile_urls(&v["message"]);
            assert_no_hostile_urls(&v["finding_info"]);
            let ua = v["unmapped"]["user_agent"].as_str().unwrap();
            assert!(ua.ends_with(escape::TRUNCATED));
            assert_eq!(ua.chars().count(), limit::USER_AGENT);
            // The hostile source IP is not an address.
            assert!(v.get("evidences").is_some());
            assert!(v["evidences"][0].get("src_endpoint").is_none());
        }
    }
}
