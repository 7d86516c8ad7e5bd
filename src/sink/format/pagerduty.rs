//! PagerDuty Events API v2 `trigger` event
//! (developer.pagerduty.com/docs/events-api-v2/trigger-events/).
//!
//! `dedup_key` is the finding ID, so a redelivered finding updates the same
//! alert instead of opening another. `payload.summary` (the alert title,
//! also read out in calls and SMS) says what happened where; the finding's
//! fields go in `custom_details` (everything except the raw record); `links`
//! holds the CloudTrail console link when there is one.
//!
//! Attacker-controlled text: PagerDuty shows these fields as plain text, so
//! nothing is escaped. Values are still put on one line, defanged
//! (`hxxp[:]//evil[.]example`, as in the chat formats, so no viewer turns an
//! attacker's URL into a link) and cut to the limits in [`escape::limit`].
//!
//! Limits, from the same page: `dedup_key` at most 255 characters;
//! `payload.summary` at most 1024 characters; `payload.summary`,
//! `payload.source` and `payload.severity` required; severity one of
//! `critical`, `error`, `warning`, `info`; `routing_key` and `event_action`
//! required.

use serde_json::{Map, Value, json};

use super::escape::{self, limit};
use crate::finding::{Finding, Severity};

pub const SUMMARY_MAX: usize = 1024;
pub const DEDUP_KEY_MAX: usize = 255;
/// `source` has no documented limit; an account and a region need far less.
const SOURCE_MAX: usize = 255;

/// PagerDuty's severities: critical→critical, high→error, medium→warning,
/// low→info.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Info | Severity::Low => "info",
    }
}

fn value(v: &Option<String>, max: usize) -> Option<String> {
    v.as_deref()
        .map(|s| escape::display(s, max))
        .filter(|s| !s.is_empty())
}

/// `[37 occurrences] Root user signed in without MFA in account 1111…
/// (us-east-1): <reason>`, at most [`SUMMARY_MAX`] characters.
fn summary(f: &Finding, account: Option<&str>, region: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(b) = &f.summary {
        s.push_str(&format!("[{} occurrences] ", b.count));
    }
    s.push_str(&escape::one_line(&f.title));
    match account {
        Some(a) => s.push_str(&format!(" in account {a}")),
        None => s.push_str(" in an unknown account"),
    }
    if let Some(n) = value(&f.account_name, limit::VALUE) {
        s.push_str(&format!(" ({n})"));
    }
    if let Some(r) = region {
        s.push_str(&format!(" ({r})"));
    }
    s.push_str(": ");
    s.push_str(&escape::reason(f));
    escape::truncate(&s, SUMMARY_MAX)
}

fn custom_details(f: &Finding) -> Value {
    let mut d = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            d.insert(k.to_owned(), Value::String(v));
        }
    };
    put("rule", Some(escape::display(&f.rule, limit::VALUE)));
    put("title", Some(escape::display(&f.title, limit::VALUE)));
    put("severity", Some(f.severity.as_str().to_owned()));
    put("reason", Some(escape::reason(f)));
    put(
        "finding_id",
        Some(escape::display(&f.finding_id, limit::VALUE)),
    );
    put("event_id", value(&f.event_id, limit::EVENT_ID));
    put("event_time", value(&f.event_time, limit::VALUE));
    put("event_name", value(&f.event_name, limit::EVENT_NAME));
    put("event_source", value(&f.event_source, limit::VALUE));
    put("account_id", value(&f.account_id, limit::VALUE));
    put("region", value(&f.region, limit::VALUE));
    put("principal", Some(escape::principal(f)));
    put("principal_type", value(&f.principal_type, limit::VALUE));
    put("principal_arn", value(&f.principal_arn, limit::PRINCIPAL));
    put("user_name", value(&f.user_name, limit::PRINCIPAL));
    put("source_ip", value(&f.source_ip, limit::VALUE));
    put("user_agent", value(&f.user_agent, limit::USER_AGENT));
    put("error_code", value(&f.error_code, limit::VALUE));
    put("mfa", Some(escape::mfa_word(f.mfa).to_owned()));
    put("account_name", value(&f.account_name, limit::VALUE));
    put("account_ou", value(&f.account_ou, limit::VALUE));
    if f.source_ip_context.is_some() {
        put("source_ip_context", Some(escape::source_label(f)));
    }
    put("requires_root", f.requires_root.map(|r| r.to_string()));
    put("expected", escape::expected_line(f));
    put("runbook_url", escape::runbook_url(f));
    if let Some(s) = &f.sigma {
        put("sigma_rule_id", Some(escape::display(&s.id, limit::VALUE)));
        put("sigma_rule_author", Some(escape::sigma_author(s)));
    }
    if let Some(tags) = &f.account_tags {
        let tags: Map<String, Value> = tags
            .iter()
            .take(20)
            .map(|(k, v)| {
                (
                    escape::display(k, limit::VALUE),
                    Value::String(escape::display(v, limit::VALUE)),
                )
            })
            .collect();
        d.insert("account_tags".to_owned(), Value::Object(tags));
    }
    if let Some(t) = &f.mitre_attack {
        d.insert(
            "mitre_attack".to_owned(),
            json!({
                "id": escape::display(&t.id, limit::VALUE),
                "name": escape::display(&t.name, limit::VALUE),
            }),
        );
    }
    if let Some(s) = &f.summary {
        let (mut names, more) = escape::burst_event_names(s);
        if more > 0 {
            names.push(format!("and {more} more"));
        }
        d.insert(
            "summary".to_owned(),
            json!({
                "count": s.count,
                "first_event_time": value(&s.first_event_time, limit::VALUE),
                "last_event_time": value(&s.last_event_time, limit::VALUE),
                "window_secs": s.window_secs,
                "event_names": names,
            }),
        );
    }
    Value::Object(d)
}

/// The request body for PagerDuty's Events API v2
/// ([`crate::config::PAGERDUTY_DEFAULT_URL`] unless the sink sets a `url`).
pub fn body(f: &Finding, routing_key: &str) -> Value {
    let account = value(&f.account_id, limit::VALUE);
    let region = value(&f.region, limit::VALUE);
    // Joined from the raw values and made inert as a whole: two values that
    // are harmless apart (`x http:` and `/evil.example`) can join into a link.
    let source = match (&f.account_id, &f.region) {
        (Some(a), Some(r)) if account.is_some() && region.is_some() => {
            escape::display(&format!("{a}/{r}"), SOURCE_MAX)
        }
        _ => account.clone().unwrap_or_else(|| "rootwatch".to_owned()),
    };
    let mut payload = json!({
        "summary": summary(f, account.as_deref(), region.as_deref()),
        "source": escape::truncate(&source, SOURCE_MAX),
        "severity": severity(f.severity),
        "class": escape::display(&f.rule, limit::VALUE),
        "custom_details": custom_details(f),
    });
    // Only a time PagerDuty can read; the record's own text stays in details.
    if let Some(t) = f
        .event_time
        .as_deref()
        .filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
    {
        payload["timestamp"] = json!(t);
    }
    if let Some(c) = value(&f.event_source, limit::VALUE) {
        payload["component"] = json!(c);
    }
    if let Some(a) = &account {
        payload["group"] = json!(a);
    }

    // The finding ID is 32 hex characters; a longer one is cut, unmarked,
    // since a marker in a key would only make it longer.
    let dedup_key: String = f.finding_id.chars().take(DEDUP_KEY_MAX).collect();
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "rootwatch",
        "payload": payload,
    });
    let mut links = Vec::new();
    if let Some(url) = escape::cloudtrail_event_url(f) {
        links.push(json!({"href": url, "text": "View in CloudTrail"}));
    }
    if let Some(url) = escape::runbook_url(f) {
        links.push(json!({"href": url, "text": "Runbook"}));
    }
    if !links.is_empty() {
        event["links"] = Value::Array(links);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::escape::testing::*;
    use crate::sink::format::escape::{TRUNCATED, is_console_url};

    const KEY: &str = "R0UT1NGKEY0123456789ABCDEFGHIJKL";

    /// PagerDuty's required fields and limits (see the module docs).
    fn assert_schema(v: &Value) {
        assert_eq!(v["routing_key"], KEY);
        assert!(["trigger"].contains(&v["event_action"].as_str().unwrap()));
        let dedup = v["dedup_key"].as_str().unwrap();
        assert!(!dedup.is_empty() && dedup.chars().count() <= DEDUP_KEY_MAX);
        let p = &v["payload"];
        let summary = p["summary"].as_str().unwrap();
        assert!(!summary.is_empty() && summary.chars().count() <= SUMMARY_MAX);
        assert!(p["source"].as_str().is_some_and(|s| !s.trim().is_empty()));
        assert!(
            ["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap())
        );
        if let Some(t) = p.get("timestamp") {
            assert!(chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap()).is_ok());
        }
        assert!(p["custom_details"].is_object());
        assert!(p["custom_details"].get("event").is_none());
        for l in v["links"].as_array().into_iter().flatten() {
            let href = l["href"].as_str().unwrap();
            // The console, or the configured runbook.
            assert!(
                is_console_url(href)
                    || (l["text"] == "Runbook" && href.starts_with("https://wiki.example.com/")),
                "{href}"
            );
        }
    }

    #[test]
    fn golden() {
        for (name, f) in golden_findings() {
            let v = body(&f, KEY);
            assert_schema(&v);
            assert_eq!(v["dedup_key"], f.finding_id);
            assert_eq!(
                v["links"].as_array().unwrap().len(),
                1 + usize::from(f.runbook_url.is_some())
            );
            check_golden("pagerduty", name, &v);
        }
    }

    #[test]
    fn severities_map() {
        let mut f = golden_findings().remove(0).1;
        for (s, want) in [
            (Severity::Critical, "critical"),
            (Severity::High, "error"),
            (Severity::Medium, "warning"),
            (Severity::Low, "info"),
        ] {
            f.severity = s;
            assert_eq!(body(&f, KEY)["payload"]["severity"], want);
        }
    }

    #[test]
    fn missing_values_fall_back() {
        let mut f = golden_findings().remove(0).1;
        f.account_id = None;
        f.region = None;
        f.event_time = Some("yesterday".into());
        f.event_source = None;
        let v = body(&f, KEY);
        assert_schema(&v);
        assert_eq!(v["payload"]["source"], "rootwatch");
        assert!(v["payload"].get("timestamp").is_none());
        assert!(v["payload"].get("group").is_none());
        assert!(v["payload"].get("component").is_none());
        assert!(v.get("links").is_none());
        assert_eq!(v["payload"]["custom_details"]["event_time"], "yesterday");
    }

    #[test]
    fn hostile_values_are_cut_and_defanged() {
        for f in [hostile(), hostile_burst(), hostile_linked()] {
            let v = body(&f, KEY);
            assert_schema(&v);
            assert_no_hostile_urls(&v);
            let summary = v["payload"]["summary"].as_str().unwrap();
            assert!(summary.ends_with(TRUNCATED));
            assert_eq!(summary.chars().count(), SUMMARY_MAX);
            let d = &v["payload"]["custom_details"];
            let ua = d["user_agent"].as_str().unwrap();
            assert_eq!(ua.chars().count(), limit::USER_AGENT);
            assert!(ua.ends_with(TRUNCATED));
            for s in strings(&v) {
                assert!(!s.contains('\n'));
                assert!(!s.contains("evil.example"), "an undefanged host");
            }
        }
        assert!(body(&hostile(), KEY).get("links").is_none());
        let s = body(&hostile_burst(), KEY);
        let names = s["payload"]["custom_details"]["summary"]["event_names"]
            .as_array()
            .unwrap();
        assert!(names.len() <= limit::MAX_EVENT_NAMES + 1);
        assert!(names.last().unwrap().as_str().unwrap().starts_with("and "));
    }
}
