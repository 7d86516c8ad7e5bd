//! Alertmanager API v2 (`POST /api/v2/alerts`): one alert per finding, in
//! the array the API takes.
//!
//! Labels identify the alert and drive Alertmanager's routing and
//! grouping: `alertname` (the rule id), `rule`, `severity`, `account_id`,
//! `principal`, `source` (`rootwatch`) and `finding_id` (so two findings
//! are two alerts, never one overwritten by the other). Annotations carry
//! what a person reads: `summary`, `description`, the console link, the
//! runbook and the context. `startsAt` is the event's time; `endsAt` is
//! `resolve_after` from now, so an alert nobody resolves ages out instead
//! of staying active for ever (Alertmanager's own default for alerts
//! without `endsAt` is its `resolve_timeout`).
//!
//! Label and annotation values built from the event go through
//! [`escape::display`] like every other format: one line, cut, defanged.
//! Shapes from the Alertmanager OpenAPI specification (api/v2/openapi.yaml:
//! `postableAlerts`).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::escape::{self, limit};
use crate::finding::Finding;

fn put(m: &mut Map<String, Value>, k: &str, v: Option<String>) {
    if let Some(v) = v.filter(|v| !v.is_empty()) {
        m.insert(k.to_owned(), Value::String(v));
    }
}

fn shown(v: &Option<String>, max: usize) -> Option<String> {
    v.as_deref().map(|s| escape::display(s, max))
}

/// The request body: `[alert]`.
pub fn body(f: &Finding, resolve_after: std::time::Duration, now: DateTime<Utc>) -> Value {
    let mut labels = Map::new();
    put(
        &mut labels,
        "alertname",
        Some(escape::display(&f.rule, limit::VALUE)),
    );
    put(
        &mut labels,
        "rule",
        Some(escape::display(&f.rule, limit::VALUE)),
    );
    put(
        &mut labels,
        "severity",
        Some(f.severity.as_str().to_owned()),
    );
    put(
        &mut labels,
        "account_id",
        shown(&f.account_id, limit::VALUE),
    );
    put(
        &mut labels,
        "principal",
        shown(&f.principal_arn, limit::PRINCIPAL),
    );
    put(
        &mut labels,
        "finding_id",
        Some(escape::display(&f.finding_id, limit::VALUE)),
    );
    put(&mut labels, "source", Some("rootwatch".to_owned()));
    if f.expected.is_some() {
        put(&mut labels, "expected", Some("true".to_owned()));
    }

    let mut notes = Map::new();
    put(
        &mut notes,
        "summary",
        Some(format!(
            "{}{} in account {}",
            escape::one_line(&f.title),
            escape::burst_suffix(f),
            escape::account_label(f)
        )),
    );
    let mut description = escape::reason(f);
    if let Some(line) = escape::expected_line(f) {
        description = format!("{line}. {description}");
    }
    put(&mut notes, "description", Some(description));
    put(&mut notes, "runbook_url", escape::runbook_url(f));
    put(
        &mut notes,
        "cloudtrail_url",
        escape::cloudtrail_event_url(f),
    );
    put(&mut notes, "event_id", shown(&f.event_id, limit::EVENT_ID));
    put(
        &mut notes,
        "event_name",
        shown(&f.event_name, limit::EVENT_NAME),
    );
    put(
        &mut notes,
        "source_ip",
        Some(escape::source_label(f)).filter(|_| f.source_ip.is_some()),
    );
    put(&mut notes, "mfa", Some(escape::mfa_word(f.mfa).to_owned()));
    if let Some(r) = f.requires_root {
        put(&mut notes, "requires_root", Some(r.to_string()));
    }

    // The event's time when it is a real one and not ahead of the clock.
    let starts = f
        .event_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| *t <= now)
        .unwrap_or(now);
    let ends =
        now + chrono::Duration::from_std(resolve_after).unwrap_or(chrono::Duration::hours(1));
    let mut alert = json!({
        "labels": labels,
        "annotations": notes,
        "startsAt": starts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    if let Some(url) = escape::cloudtrail_event_url(f) {
        alert["generatorURL"] = Value::String(url);
    }
    json!([alert])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::escape::testing::*;

    #[test]
    fn an_enriched_finding_is_one_alert_with_its_labels_and_context() {
        let f = enriched();
        let v = body(&f, std::time::Duration::from_secs(3600), now());
        let a = &v[0];
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(a["labels"]["alertname"], "root-api-call");
        assert_eq!(a["labels"]["severity"], "low");
        assert_eq!(a["labels"]["account_id"], "111122223333");
        assert_eq!(a["labels"]["principal"], "arn:aws:iam::111122223333:root");
        assert_eq!(a["labels"]["finding_id"], f.finding_id);
        assert_eq!(a["labels"]["expected"], "true");
        assert_eq!(a["startsAt"], "2024-05-14T09:12:40.000Z");
        assert_eq!(a["endsAt"], "2024-05-14T11:00:00.000Z");
        let n = &a["annotations"];
        assert!(
            n["summary"].as_str().unwrap().contains("prod-payments"),
            "{n}"
        );
        assert!(
            n["description"]
                .as_str()
                .unwrap()
                .starts_with("Expected root use"),
            "{n}"
        );
        assert_eq!(
            n["runbook_url"],
            "https://wiki.example.com/runbooks/root-api-call"
        );
        assert_eq!(
            n["source_ip"],
            "89.160.20.130 (Linköping, SE; AS29518 Bredband2 AB)"
        );
        assert_eq!(n["requires_root"], "false");
        assert!(
            a["generatorURL"]
                .as_str()
                .unwrap()
                .starts_with("https://eu-north-1.console.aws.amazon.com/")
        );
    }

    #[test]
    fn hostile_values_stay_inert_and_a_future_time_is_not_used() {
        for f in [hostile(), hostile_burst(), hostile_linked()] {
            let v = body(&f, std::time::Duration::from_secs(60), now());
            assert_no_hostile_urls(&v);
            for s in strings(&v) {
                assert!(!s.contains('\n'), "{s:.100}");
            }
            // The hostile event time does not parse: the alert starts now.
            assert_eq!(v[0]["startsAt"], "2024-05-14T10:00:00.000Z");
        }
        let mut f = enriched();
        f.event_time = Some("2030-01-01T00:00:00Z".into());
        assert_eq!(
            body(&f, std::time::Duration::from_secs(60), now())[0]["startsAt"],
            "2024-05-14T10:00:00.000Z"
        );
    }
}
