//! Opsgenie Alert API v2 "create alert" request
//! (docs.opsgenie.com/docs/alert-api#create-alert).
//!
//! `alias` is the finding ID: Opsgenie de-duplicates open alerts on it, so a
//! redelivered finding adds to the count of the same alert instead of paging
//! again. `priority` comes from the severity (critical→P1, high→P2,
//! medium→P3, low→P4). `message` (the alert title shown in notifications)
//! says what happened in which account; `description` holds the reason, the
//! facts one per line and the CloudTrail console link; `details` holds the
//! finding's fields (everything except the raw record) as strings; `tags`
//! hold only text rootwatch writes itself (rule id, severity, technique,
//! a 12-digit account ID).
//!
//! Attacker-controlled text: Opsgenie shows these fields as text and turns
//! URLs into links, so, as for PagerDuty, values are put on one line,
//! defanged (`hxxp[:]//evil[.]example`) and cut; nothing an event carries
//! can become a link, and control and bidirectional characters are
//! replaced.
//!
//! Limits, from the same page: message 130 characters, alias 512,
//! description 15,000, at most 20 tags of at most 50 characters, details
//! 8,000 characters in total (keys and values), entity 512, source 100,
//! user 100; priority one of P1..P5. Opsgenie answers 202 Accepted once it
//! has queued the request.

use serde_json::{Map, Value, json};

use super::escape::{self, limit};
use crate::finding::{Finding, Severity};

pub const MESSAGE_MAX: usize = 130;
pub const ALIAS_MAX: usize = 512;
pub const DESCRIPTION_MAX: usize = 15_000;
pub const MAX_TAGS: usize = 20;
pub const TAG_MAX: usize = 50;
/// Keys and values together.
pub const DETAILS_MAX: usize = 8_000;
pub const ENTITY_MAX: usize = 512;
pub const SOURCE_MAX: usize = 100;
pub const USER_MAX: usize = 100;
pub const PRIORITIES: [&str; 5] = ["P1", "P2", "P3", "P4", "P5"];

/// critical→P1, high→P2, medium→P3, low→P4; P5 (informational) is unused.
pub fn priority(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "P1",
        Severity::High => "P2",
        Severity::Medium => "P3",
        Severity::Low => "P4",
        Severity::Info => "P5",
    }
}

fn value(v: &Option<String>, max: usize) -> Option<String> {
    v.as_deref()
        .map(|s| escape::display(s, max))
        .filter(|s| !s.is_empty())
}

/// A 12-digit account ID, the only event value trusted as a tag.
fn account_id(f: &Finding) -> Option<&str> {
    f.account_id
        .as_deref()
        .filter(|a| crate::aws::is_account_id(a))
}

/// `[×37] Root user signed in without MFA in account 111122223333`, at most
/// [`MESSAGE_MAX`] characters.
fn message(f: &Finding) -> String {
    let mut s = String::new();
    if let Some(b) = &f.summary {
        s.push_str(&format!("[×{}] ", b.count));
    }
    s.push_str(&escape::one_line(&f.title));
    match &f.account_id {
        Some(a) if !a.trim().is_empty() => {
            s.push_str(" in account ");
            s.push_str(&escape::display(a, limit::VALUE));
        }
        _ => s.push_str(" in an unknown account"),
    }
    if let Some(n) = f.account_name.as_deref().filter(|n| !n.trim().is_empty()) {
        s.push_str(&format!(" ({})", escape::display(n, limit::VALUE)));
    }
    escape::truncate(&s, MESSAGE_MAX)
}

/// The reason, a burst's summary, the facts one per line, the IDs and the
/// console link.
fn description(f: &Finding) -> String {
    let mut lines = vec![escape::reason(f), String::new()];
    if let Some(line) = escape::expected_line(f) {
        lines.push(line);
        lines.push(String::new());
    }
    if let Some(s) = &f.summary {
        lines.push(escape::burst_headline(s));
        lines.push(escape::burst_names_line(s));
        lines.push(String::new());
    }
    for fact in escape::facts(f) {
        lines.push(format!("{}: {}", fact.label, fact.value));
    }
    lines.push(format!("Event ID: {}", escape::event_id(f)));
    lines.push(format!(
        "Finding ID: {}",
        escape::display(&f.finding_id, limit::VALUE)
    ));
    if let Some(url) = escape::cloudtrail_event_url(f) {
        lines.push(format!("View in CloudTrail: {url}"));
    }
    if let Some(url) = escape::runbook_url(f) {
        lines.push(format!("Runbook: {url}"));
    }
    escape::truncate(&lines.join("\n"), DESCRIPTION_MAX)
}

fn tags(f: &Finding) -> Vec<String> {
    let mut t = vec![
        "rootwatch".to_owned(),
        format!("severity:{}", f.severity.as_str()),
        escape::truncate(&escape::display(&f.rule, TAG_MAX), TAG_MAX),
    ];
    if let Some(m) = &f.mitre_attack {
        t.push(escape::truncate(&escape::display(&m.id, TAG_MAX), TAG_MAX));
    }
    if let Some(a) = account_id(f) {
        t.push(format!("account:{a}"));
    }
    t.truncate(MAX_TAGS);
    t
}

/// Adds entries to a details map while keeping keys and values within
/// [`DETAILS_MAX`] characters in total: a value that does not fit whole is
/// cut to the room left; once no room is left, later entries are dropped
/// (the most useful ones come first).
struct Details {
    map: Map<String, Value>,
    used: usize,
}

impl Details {
    fn put(&mut self, key: &str, v: Option<String>) {
        let Some(v) = v else { return };
        let room = DETAILS_MAX.saturating_sub(self.used + key.chars().count());
        // Less room than the marker: nothing readable would fit.
        if room <= escape::TRUNCATED.chars().count() {
            return;
        }
        let v = escape::truncate(&v, room);
        self.used += key.chars().count() + v.chars().count();
        self.map.insert(key.to_owned(), Value::String(v));
    }
}

fn details(f: &Finding) -> Value {
    let mut d = Details {
        map: Map::new(),
        used: 0,
    };
    d.put("rule", Some(escape::display(&f.rule, limit::VALUE)));
    d.put("severity", Some(f.severity.as_str().to_owned()));
    if let Some(t) = &f.mitre_attack {
        d.put(
            "mitre_technique_id",
            Some(escape::display(&t.id, limit::VALUE)),
        );
        d.put(
            "mitre_technique",
            Some(escape::display(&t.name, limit::VALUE)),
        );
    }
    if let Some(s) = &f.sigma {
        d.put("sigma_rule_author", Some(escape::sigma_author(s)));
    }
    d.put(
        "finding_id",
        Some(escape::display(&f.finding_id, limit::VALUE)),
    );
    d.put("account_id", value(&f.account_id, limit::VALUE));
    d.put("account_name", value(&f.account_name, limit::VALUE));
    d.put("region", value(&f.region, limit::VALUE));
    d.put("principal", Some(escape::principal(f)));
    d.put("source_ip", value(&f.source_ip, limit::VALUE));
    if f.source_ip_context.is_some() {
        d.put("source_ip_context", Some(escape::source_label(f)));
    }
    d.put("expected", escape::expected_line(f));
    d.put("runbook_url", escape::runbook_url(f));
    d.put("requires_root", f.requires_root.map(|r| r.to_string()));
    d.put("event_name", value(&f.event_name, limit::EVENT_NAME));
    d.put("event_time", value(&f.event_time, limit::VALUE));
    d.put("mfa", Some(escape::mfa_word(f.mfa).to_owned()));
    d.put("event_id", value(&f.event_id, limit::EVENT_ID));
    d.put("event_source", value(&f.event_source, limit::VALUE));
    d.put("error_code", value(&f.error_code, limit::VALUE));
    d.put("principal_type", value(&f.principal_type, limit::VALUE));
    d.put("user_name", value(&f.user_name, limit::PRINCIPAL));
    if let Some(s) = &f.summary {
        d.put("burst_count", Some(s.count.to_string()));
        d.put("burst_window_secs", Some(s.window_secs.to_string()));
        d.put(
            "burst_first_event_time",
            value(&s.first_event_time, limit::VALUE),
        );
        d.put(
            "burst_last_event_time",
            value(&s.last_event_time, limit::VALUE),
        );
        let (mut names, more) = escape::burst_event_names(s);
        if more > 0 {
            names.push(format!("and {more} more"));
        }
        d.put("burst_event_names", Some(names.join(", ")));
    }
    d.put("user_agent", value(&f.user_agent, limit::USER_AGENT));
    d.put("principal_arn", value(&f.principal_arn, limit::PRINCIPAL));
    d.put("reason", Some(escape::reason(f)));
    if let Some(url) = escape::cloudtrail_event_url(f) {
        d.put("cloudtrail_url", Some(url));
    }
    Value::Object(d.map)
}

/// The request body for Opsgenie's create-alert endpoint.
pub fn body(f: &Finding) -> Value {
    // Joined from the raw values and made inert as a whole, as PagerDuty's
    // `source`: two harmless halves can join into a link.
    let entity = match (&f.account_id, &f.region) {
        (Some(a), Some(r)) => escape::display(&format!("{a}/{r}"), ENTITY_MAX),
        (Some(a), None) => escape::display(a, ENTITY_MAX),
        _ => String::new(),
    };
    // The finding ID is 32 hex characters; a longer one is cut, unmarked,
    // since a marker in a key would only make it longer.
    let alias: String = f.finding_id.chars().take(ALIAS_MAX).collect();
    let mut v = json!({
        "message": message(f),
        "alias": alias,
        "description": description(f),
        "tags": tags(f),
        "details": details(f),
        "source": "rootwatch",
        "user": "rootwatch",
        "priority": priority(f.severity),
    });
    if !entity.trim().is_empty() {
        v["entity"] = json!(escape::truncate(&entity, ENTITY_MAX));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::check;
    use crate::sink::format::escape::TRUNCATED;
    use crate::sink::format::escape::testing::*;

    #[test]
    fn golden() {
        for (name, f) in golden_findings() {
            let v = body(&f);
            let runbook = crate::sink::format::escape::runbook_url(&f)
                .into_iter()
                .collect();
            check::with_allowed_links(runbook, || check::opsgenie_body(&v))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(v["alias"], f.finding_id);
            assert!(
                v["description"].as_str().unwrap().contains(&format!(
                    "View in CloudTrail: https://{}.console",
                    f.region.as_deref().unwrap_or("")
                )) || name == "throttled-burst",
                "{name}"
            );
            check_golden("opsgenie", name, &v);
        }
    }

    #[test]
    fn severities_map_to_priorities() {
        let mut f = golden_findings().remove(0).1;
        for (s, want) in [
            (Severity::Critical, "P1"),
            (Severity::High, "P2"),
            (Severity::Medium, "P3"),
            (Severity::Low, "P4"),
        ] {
            f.severity = s;
            let v = body(&f);
            assert_eq!(v["priority"], want);
            assert!(
                v["tags"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("severity:{s}")))
            );
        }
    }

    #[test]
    fn missing_values_fall_back() {
        let mut f = golden_findings().remove(0).1;
        f.account_id = None;
        f.region = None;
        f.mitre_attack = None;
        let v = body(&f);
        check::opsgenie_body(&v).unwrap();
        assert!(v.get("entity").is_none());
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .ends_with("in an unknown account")
        );
        assert_eq!(v["tags"], json!(["rootwatch", "severity:critical", f.rule]));
        assert!(v["details"].get("mitre_technique_id").is_none());
        assert!(v["details"].get("cloudtrail_url").is_none());
    }

    #[test]
    fn hostile_values_are_cut_and_defanged() {
        for f in [hostile(), hostile_burst(), hostile_linked()] {
            let v = body(&f);
            check::opsgenie_body(&v).unwrap();
            assert_no_hostile_urls(&v);
            let message = v["message"].as_str().unwrap();
            assert!(message.ends_with(TRUNCATED), "{message}");
            assert_eq!(message.chars().count(), MESSAGE_MAX);
            let ua = v["details"]["user_agent"].as_str().unwrap();
            assert!(ua.ends_with(TRUNCATED));
            assert!(ua.chars().count() <= limit::USER_AGENT);
            for s in strings(&v) {
                assert!(!s.contains("evil.example"), "an undefanged host: {s:.200}");
            }
            for s in v["tags"].as_array().unwrap() {
                assert!(
                    !s.as_str().unwrap().contains(HOSTILE),
                    "event text in a tag"
                );
            }
            // Only line breaks rootwatch puts between lines; none from the event.
            assert!(!v["message"].as_str().unwrap().contains('\n'));
            for (k, d) in v["details"].as_object().unwrap() {
                assert!(!d.as_str().unwrap().contains('\n'), "{k}");
            }
        }
        let linked = body(&hostile_linked());
        let url = linked["details"]["cloudtrail_url"].as_str().unwrap();
        assert!(url.starts_with("https://us-east-1.console.aws.amazon.com/"));
        assert!(body(&hostile()).get("entity").is_some());
    }

    /// Every value at its largest (a burst, long names): the details map
    /// stays inside Opsgenie's total, cutting the last values first.
    #[test]
    fn details_stay_within_the_total() {
        let mut f = hostile_burst();
        let big = "B".repeat(5000);
        f.principal_arn = Some(big.clone());
        f.reason = big.clone();
        f.user_agent = Some(big);
        let v = body(&f);
        check::opsgenie_body(&v).unwrap();
        let d = v["details"].as_object().unwrap();
        let total: usize = d
            .iter()
            .map(|(k, v)| k.chars().count() + v.as_str().unwrap().chars().count())
            .sum();
        assert!(total <= DETAILS_MAX, "{total}");
        assert!(d.contains_key("rule") && d.contains_key("finding_id"));
    }
}
