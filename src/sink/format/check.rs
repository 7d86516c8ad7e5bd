//! What every alert payload must satisfy, whatever text the event carried:
//! each service's documented size limits, and no event text that could act
//! on the reader's screen (control characters, bidirectional overrides,
//! Slack mentions, links anywhere but the AWS console). Pure; used by the
//! fuzz targets (`fuzz/`) and the property tests, so a payload that breaks a
//! rule is found from any finding, not only hand-picked ones.

use serde_json::Value;

use super::escape::is_console_url;
use super::{alertmanager, ocsf, opsgenie, pagerduty, slack, teams, webhook};
use crate::finding::Finding;

/// The one URL rootwatch writes that is not a console link: the Adaptive
/// Card `$schema` of the Teams payload.
const ADAPTIVE_CARD_SCHEMA: &str = "http://adaptivecards.io/schemas/adaptive-card.json";

/// A PagerDuty routing key of the documented shape, for building bodies.
const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

/// Builds every format's payload for `f` and checks it; the error names the
/// format and the broken rule.
pub fn all_formats(f: &Finding) -> Result<(), String> {
    // The runbook URL comes from the operator's config, not the event: the
    // one link besides the console's that a payload may hold.
    let runbook: Vec<String> = super::escape::runbook_url(f).into_iter().collect();
    with_allowed_links(runbook, || {
        slack_body(&slack::body(f)).map_err(|e| format!("slack: {e}"))?;
        pagerduty_body(&pagerduty::body(f, ROUTING_KEY)).map_err(|e| format!("pagerduty: {e}"))?;
        teams_body(&teams::body(f)).map_err(|e| format!("teams: {e}"))?;
        opsgenie_body(&opsgenie::body(f)).map_err(|e| format!("opsgenie: {e}"))?;
        ocsf_body(f, &ocsf::body(f, 0)).map_err(|e| format!("ocsf: {e}"))?;
        alertmanager_body(&alertmanager::body(
            f,
            std::time::Duration::from_secs(3600),
            chrono::Utc::now(),
        ))
        .map_err(|e| format!("alertmanager: {e}"))?;
        webhook_body(f, &webhook::body(f)).map_err(|e| format!("webhook: {e}"))
    })
}

/// Alertmanager API v2: an array of one alert whose label names match
/// `[a-zA-Z_][a-zA-Z0-9_]*` and whose values are non-empty strings, and
/// nothing that could act on the reader's screen.
pub fn alertmanager_body(v: &Value) -> Result<(), String> {
    let alerts = v.as_array().ok_or("not an array")?;
    if alerts.len() != 1 {
        return Err(format!("{} alerts", alerts.len()));
    }
    let labels = alerts[0]["labels"].as_object().ok_or("no labels")?;
    for (k, val) in labels {
        let ok_name = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_name {
            return Err(format!("label name {k:?}"));
        }
        if val.as_str().is_none_or(str::is_empty) {
            return Err(format!("label {k} is not a non-empty string"));
        }
    }
    for key in ["startsAt", "endsAt"] {
        let t = alerts[0][key].as_str().ok_or(format!("no {key}"))?;
        chrono::DateTime::parse_from_rfc3339(t).map_err(|e| format!("{key}: {e}"))?;
    }
    inert(v)
}

thread_local! {
    /// Links a check accepts besides console links, for the finding being
    /// checked (its configured runbook).
    static ALLOWED_LINKS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `check` with `links` accepted as well as console links.
pub fn with_allowed_links<T>(links: Vec<String>, check: impl FnOnce() -> T) -> T {
    let before = ALLOWED_LINKS.with(|a| std::mem::replace(&mut *a.borrow_mut(), links));
    let out = check();
    ALLOWED_LINKS.with(|a| *a.borrow_mut() = before);
    out
}

fn chars(v: &Value, what: &str) -> Result<usize, String> {
    v.as_str()
        .map(|s| s.chars().count())
        .ok_or_else(|| format!("{what} is not a string"))
}

fn at_most(v: &Value, max: usize, what: &str) -> Result<(), String> {
    let n = chars(v, what)?;
    if n > max {
        return Err(format!("{what} has {n} characters, more than {max}"));
    }
    Ok(())
}

/// Slack Block Kit limits (api.slack.com/reference/block-kit/blocks) and no
/// mention or channel-wide ping built from event text.
pub fn slack_body(v: &Value) -> Result<(), String> {
    let blocks = v["blocks"].as_array().ok_or("no blocks")?;
    if blocks.is_empty() || blocks.len() > slack::MAX_BLOCKS {
        return Err(format!("{} blocks", blocks.len()));
    }
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => at_most(&b["text"]["text"], slack::HEADER_TEXT_MAX, "header")?,
            Some("section") => {
                if b.get("text").is_some() {
                    at_most(&b["text"]["text"], slack::SECTION_TEXT_MAX, "section text")?;
                }
                let fields = b["fields"].as_array().map_or(&[][..], Vec::as_slice);
                if fields.len() > slack::MAX_FIELDS {
                    return Err(format!("{} fields in a section", fields.len()));
                }
                for x in fields {
                    at_most(&x["text"], slack::FIELD_TEXT_MAX, "field")?;
                }
            }
            Some("context") => {
                let n = b["elements"].as_array().map_or(0, Vec::len);
                if n == 0 || n > slack::MAX_CONTEXT_ELEMENTS {
                    return Err(format!("{n} context elements"));
                }
            }
            other => return Err(format!("unexpected block type {other:?}")),
        }
    }
    for s in strings(v) {
        for ping in ["<!", "<@", "<#"] {
            if s.contains(ping) {
                return Err(format!("`{ping}` (a mention or ping) in {s:.200}"));
            }
        }
    }
    inert(v)
}

/// PagerDuty Events API v2 limits (developer.pagerduty.com, "Send an Alert
/// Event"): summary 1,024 characters, dedup_key 255, the whole event 512 KB.
pub fn pagerduty_body(v: &Value) -> Result<(), String> {
    at_most(
        &v["payload"]["summary"],
        pagerduty::SUMMARY_MAX,
        "payload.summary",
    )?;
    at_most(&v["dedup_key"], pagerduty::DEDUP_KEY_MAX, "dedup_key")?;
    let size = v.to_string().len();
    if size > 512 * 1024 {
        return Err(format!("{size} bytes, more than 512 KB"));
    }
    inert(v)
}

/// Opsgenie Alert API v2 limits (docs.opsgenie.com, "Create Alert"):
/// message 130 characters, alias 512, description 15,000, at most 20 tags
/// of 50, details 8,000 in total with string values, entity 512, source and
/// user 100, priority P1..P5.
pub fn opsgenie_body(v: &Value) -> Result<(), String> {
    let message = chars(&v["message"], "message")?;
    if message == 0 || message > opsgenie::MESSAGE_MAX {
        return Err(format!("message has {message} characters"));
    }
    at_most(&v["alias"], opsgenie::ALIAS_MAX, "alias")?;
    at_most(&v["description"], opsgenie::DESCRIPTION_MAX, "description")?;
    let tags = v["tags"].as_array().ok_or("tags is not a list")?;
    if tags.len() > opsgenie::MAX_TAGS {
        return Err(format!("{} tags", tags.len()));
    }
    for t in tags {
        at_most(t, opsgenie::TAG_MAX, "a tag")?;
    }
    let details = v["details"].as_object().ok_or("details is not an object")?;
    let mut total = 0;
    for (k, d) in details {
        total += k.chars().count() + chars(d, &format!("details.{k}"))?;
    }
    if total > opsgenie::DETAILS_MAX {
        return Err(format!(
            "details hold {total} characters, more than {}",
            opsgenie::DETAILS_MAX
        ));
    }
    if v.get("entity").is_some() {
        at_most(&v["entity"], opsgenie::ENTITY_MAX, "entity")?;
    }
    at_most(&v["source"], opsgenie::SOURCE_MAX, "source")?;
    at_most(&v["user"], opsgenie::USER_MAX, "user")?;
    if !v["priority"]
        .as_str()
        .is_some_and(|p| opsgenie::PRIORITIES.contains(&p))
    {
        return Err(format!("priority {}", v["priority"]));
    }
    inert(v)
}

/// The Teams message size limit and at most one action (the console link).
pub fn teams_body(v: &Value) -> Result<(), String> {
    let size = v.to_string().len();
    if size > teams::MESSAGE_MAX_BYTES {
        return Err(format!(
            "{size} bytes, more than {}",
            teams::MESSAGE_MAX_BYTES
        ));
    }
    let card = &v["attachments"][0]["content"];
    // The console link and the configured runbook.
    let actions = card["actions"].as_array().map_or(0, Vec::len);
    if actions > 2 {
        return Err(format!("{actions} actions"));
    }
    inert(v)
}

/// The generic webhook body is the finding's own JSON: it must parse back
/// to the same finding id.
pub fn webhook_body(f: &Finding, body: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v["finding_id"].as_str() != Some(f.finding_id.as_str()) {
        return Err("finding_id does not round-trip".into());
    }
    Ok(())
}

/// An OCSF Detection Finding: its classification, the finding id as
/// `finding_info.uid`, an integer `time`, the raw event as JSON text, and
/// prose (`message`, `finding_info`) as inert as in the chat formats.
pub fn ocsf_body(f: &Finding, v: &Value) -> Result<(), String> {
    for (k, want) in [
        ("class_uid", ocsf::CLASS_UID),
        ("category_uid", ocsf::CATEGORY_UID),
        ("activity_id", ocsf::ACTIVITY_CREATE),
        ("type_uid", ocsf::TYPE_UID),
    ] {
        if v[k].as_u64() != Some(u64::from(want)) {
            return Err(format!("{k} is {}, not {want}", v[k]));
        }
    }
    if !matches!(v["severity_id"].as_u64(), Some(2..=5)) {
        return Err(format!("severity_id {}", v["severity_id"]));
    }
    if !v["time"].is_i64() {
        return Err(format!("time {} is not an integer", v["time"]));
    }
    if v["finding_info"]["uid"].as_str() != Some(f.finding_id.as_str()) {
        return Err("finding_info.uid is not the finding id".into());
    }
    let raw = v["raw_data"].as_str().ok_or("raw_data is not a string")?;
    serde_json::from_str::<Value>(raw).map_err(|e| format!("raw_data is not JSON: {e}"))?;
    inert(&v["message"])?;
    inert(&v["finding_info"])
}

/// No string of `v` holds a control character other than a line break, a
/// bidirectional control (which could reorder what is shown), or a URL
/// other than a console link.
fn inert(v: &Value) -> Result<(), String> {
    for s in strings(v) {
        if let Some(c) = s.chars().find(|&c| is_dangerous(c)) {
            return Err(format!("character U+{:04X} in {s:.200}", c as u32));
        }
    }
    links_are_console_only(v)
}

/// Every URL in the strings of `v` is an AWS console link (or the Adaptive
/// Card schema).
pub fn links_are_console_only(v: &Value) -> Result<(), String> {
    for s in strings(v) {
        for url in urls(s) {
            if url != ADAPTIVE_CARD_SCHEMA
                && !is_console_url(url)
                && !ALLOWED_LINKS.with(|a| a.borrow().iter().any(|l| l == url))
            {
                return Err(format!("a link that is not a console link: {url:.200}"));
            }
        }
    }
    Ok(())
}

fn is_dangerous(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// Each `scheme://...` in `s`, from the start of its scheme to the first
/// character that ends a link in these formats.
fn urls(s: &str) -> impl Iterator<Item = &str> {
    s.match_indices("://").map(move |(i, _)| {
        let start = s[..i]
            .rfind(|c: char| !c.is_ascii_alphanumeric())
            .map_or(0, |p| p + 1);
        let end = s[i..]
            .find(|c: char| c.is_whitespace() || "|<>\"'`)]".contains(c))
            .map_or(s.len(), |e| i + e);
        &s[start..end]
    })
}

/// Every string in `v`, object keys excluded.
pub fn strings(v: &Value) -> Vec<&str> {
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::escape::testing::{golden_findings, hostile, hostile_burst};

    #[test]
    fn the_shipped_formats_pass_for_real_and_hostile_findings() {
        for (name, f) in golden_findings() {
            all_formats(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        all_formats(&hostile()).unwrap();
        all_formats(&hostile_burst()).unwrap();
    }

    #[test]
    fn each_check_catches_what_it_is_for() {
        let ping = serde_json::json!({"blocks": [{"type": "section", "text": {"type": "plain_text", "text": "hi <!channel>"}}]});
        assert!(slack_body(&ping).unwrap_err().contains("mention"));
        let long = serde_json::json!({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x".repeat(151)}}]});
        assert!(slack_body(&long).unwrap_err().contains("151"));
        let rlo = serde_json::json!({"blocks": [{"type": "section", "text": {"type": "plain_text", "text": "a\u{202e}b"}}]});
        assert!(slack_body(&rlo).unwrap_err().contains("U+202E"));
        let esc = serde_json::json!({"blocks": [{"type": "section", "text": {"type": "plain_text", "text": "a\u{1b}[31mb"}}]});
        assert!(slack_body(&esc).unwrap_err().contains("U+001B"));
        let link = serde_json::json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "<https://evil.example/x|console>"}}]});
        assert!(slack_body(&link).unwrap_err().contains("evil.example"));
        let console = serde_json::json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "<https://us-east-1.console.aws.amazon.com/cloudtrailv2/home|open>"}}]});
        slack_body(&console).unwrap();
        let pd = serde_json::json!({"dedup_key": "k", "payload": {"summary": "s".repeat(1025)}});
        assert!(pagerduty_body(&pd).unwrap_err().contains("1025"));
        let og = |tags: Value, details: Value| {
            serde_json::json!({"message": "m", "alias": "a", "description": "d", "tags": tags,
                "details": details, "source": "rootwatch", "user": "rootwatch", "priority": "P1"})
        };
        opsgenie_body(&og(serde_json::json!(["a"]), serde_json::json!({"k": "v"}))).unwrap();
        let many: Vec<String> = (0..21).map(|i| i.to_string()).collect();
        assert!(
            opsgenie_body(&og(serde_json::json!(many), serde_json::json!({})))
                .unwrap_err()
                .contains("21 tags")
        );
        assert!(
            opsgenie_body(&og(
                serde_json::json!(["t".repeat(51)]),
                serde_json::json!({})
            ))
            .unwrap_err()
            .contains("51")
        );
        let big = serde_json::json!({"a": "x".repeat(4000), "b": "y".repeat(4000)});
        assert!(
            opsgenie_body(&og(serde_json::json!([]), big))
                .unwrap_err()
                .contains("8002")
        );
        let link = serde_json::json!({"k": "see http://evil.example/"});
        assert!(
            opsgenie_body(&og(serde_json::json!([]), link))
                .unwrap_err()
                .contains("evil.example")
        );
    }
}
