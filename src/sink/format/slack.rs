//! Slack incoming-webhook payload: a short `text` fallback (notifications,
//! clients without Block Kit) and Block Kit `blocks`.
//!
//! Layout: a header (severity and rule title, `(×N)` for a throttled burst);
//! for a burst, a section saying how many occurrences between which times
//! and which event names; a section with the `reason` sentence and the facts
//! as fields; the "View in CloudTrail" link; a context line with the event
//! and finding IDs.
//!
//! Attacker-controlled text (see [`super::escape`]): every value taken from
//! the event goes only into `plain_text` text objects with `emoji: false`, so
//! Slack parses no mrkdwn and no emoji codes in it, and is escaped with
//! [`escape::slack`] (`&`, `<`, `>` as entities, `|` replaced) because Slack
//! parses `<...>` control sequences (`<!channel>`, `<@U123>`, `<url|label>`)
//! in text objects. mrkdwn is used only for text rootwatch writes itself: the
//! link (built by [`escape::cloudtrail_event_url`] from a checked region and a
//! percent-encoded event ID) and the fallback `text`, which names the
//! account only when it is a 12-digit account ID. Unfurling is off, so Slack
//! fetches no URL on its own.
//!
//! Limits, from Slack's Block Kit reference (docs.slack.dev/reference/block-kit):
//! at most 50 blocks per message (blocks); header text is `plain_text`, at
//! most 150 characters (header-block); section text at most 3000 characters,
//! at most 10 fields of at most 2000 characters each (section-block); at most
//! 10 context elements (context-block).

use serde_json::{Value, json};

use super::escape::{self, limit};
use crate::finding::{Finding, Severity};

pub const MAX_BLOCKS: usize = 50;
pub const HEADER_TEXT_MAX: usize = 150;
pub const SECTION_TEXT_MAX: usize = 3000;
pub const MAX_FIELDS: usize = 10;
pub const FIELD_TEXT_MAX: usize = 2000;
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// Context elements have no documented per-text limit; this keeps them short.
const CONTEXT_TEXT_MAX: usize = 300;

fn emoji(s: Severity) -> &'static str {
    match s {
        Severity::Critical => ":rotating_light:",
        Severity::High => ":red_circle:",
        Severity::Medium => ":large_orange_circle:",
        Severity::Low => ":large_blue_circle:",
        Severity::Info => ":white_circle:",
    }
}

/// A `plain_text` object for text that may hold event values: escaped, cut
/// to `max`, emoji codes left as typed.
fn plain(s: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": escape::slack(s, max), "emoji": false})
}

/// The account for the mrkdwn fallback: only a 12-digit account ID is
/// written there, so no event text is ever parsed as mrkdwn.
fn fallback_account(f: &Finding) -> String {
    match f.account_id.as_deref() {
        Some(a) if crate::aws::is_account_id(a) => format!("account {a}"),
        Some(_) => "an account with an unexpected ID".to_owned(),
        None => "an unknown account".to_owned(),
    }
}

/// The request body for a Slack incoming webhook.
pub fn body(f: &Finding) -> Value {
    let sev = escape::severity_label(f.severity);
    let burst = escape::burst_suffix(f);
    let title = escape::one_line(&f.title);
    let mut blocks = Vec::new();

    let header = format!(
        "{} {sev}: {title}{burst}{}",
        emoji(f.severity),
        escape::account_suffix(f)
    );
    blocks.push(json!({
        "type": "header",
        "text": {"type": "plain_text", "text": escape::slack(&header, HEADER_TEXT_MAX), "emoji": true},
    }));

    if let Some(s) = &f.summary {
        let half = (SECTION_TEXT_MAX - 1) / 2;
        let text = format!(
            "{}\n{}",
            escape::slack(&escape::burst_headline(s), half),
            escape::slack(&escape::burst_names_line(s), half)
        );
        // Already escaped and within the limit: written as is.
        blocks.push(json!({
            "type": "section",
            "text": {"type": "plain_text", "text": text, "emoji": false},
        }));
    }

    if let Some(line) = escape::expected_line(f) {
        blocks.push(json!({
            "type": "section",
            "text": plain(&line, SECTION_TEXT_MAX),
        }));
    }

    let fields: Vec<Value> = escape::facts(f)
        .iter()
        .map(|fact| plain(&format!("{}: {}", fact.label, fact.value), FIELD_TEXT_MAX))
        .collect();
    blocks.push(json!({
        "type": "section",
        "text": plain(&escape::reason(f), SECTION_TEXT_MAX),
        "fields": fields,
    }));

    let link = escape::cloudtrail_event_url(f);
    if let Some(url) = &link {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*<{url}|View in CloudTrail>*")},
        }));
    }
    // The runbook URL is the operator's (config), checked and encoded by
    // escape::runbook_url; its own block, so each mrkdwn text is one link.
    if let Some(url) = escape::runbook_url(f) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*<{url}|Runbook>*")},
        }));
    }

    let mut context = vec![
        plain(
            &format!("Event ID: {}", escape::event_id(f)),
            CONTEXT_TEXT_MAX,
        ),
        plain(
            &format!(
                "Finding ID: {}",
                escape::display(&f.finding_id, limit::VALUE)
            ),
            CONTEXT_TEXT_MAX,
        ),
    ];
    // A section holds at most 10 fields, which the facts fill: the Sigma
    // rule's author (which its licence asks every alert to name) goes here.
    if let Some(s) = &f.sigma {
        context.push(plain(
            &format!("Sigma rule by {}", escape::sigma_author(s)),
            CONTEXT_TEXT_MAX,
        ));
    }
    if link.is_none() {
        context.push(plain(
            "No CloudTrail link: the event's region or event ID cannot be used in a console URL.",
            CONTEXT_TEXT_MAX,
        ));
    }
    blocks.push(json!({"type": "context", "elements": context}));

    let text = format!("{sev}: {title}{burst} in {}", fallback_account(f));
    json!({
        "text": escape::slack(&text, SECTION_TEXT_MAX),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::escape::testing::*;
    use crate::sink::format::escape::{TRUNCATED, cloudtrail_event_url, is_console_url};

    fn chars(v: &Value) -> usize {
        v.as_str().expect("a string").chars().count()
    }

    /// Slack's documented limits and required fields (see the module docs).
    fn assert_schema(v: &Value) {
        assert!(v["text"].as_str().is_some_and(|t| !t.is_empty()), "text");
        let blocks = v["blocks"].as_array().expect("blocks");
        assert!(!blocks.is_empty() && blocks.len() <= MAX_BLOCKS);
        for b in blocks {
            match b["type"].as_str().unwrap() {
                "header" => {
                    assert_eq!(b["text"]["type"], "plain_text");
                    assert!(chars(&b["text"]["text"]) <= HEADER_TEXT_MAX);
                }
                "section" => {
                    let has_text = b.get("text").is_some();
                    if has_text {
                        assert!(
                            ["plain_text", "mrkdwn"].contains(&b["text"]["type"].as_str().unwrap())
                        );
                        assert!(chars(&b["text"]["text"]) <= SECTION_TEXT_MAX);
                        assert!(chars(&b["text"]["text"]) > 0);
                    }
                    if let Some(fields) = b.get("fields") {
                        let fields = fields.as_array().unwrap();
                        assert!(!fields.is_empty() && fields.len() <= MAX_FIELDS);
                        for x in fields {
                            assert!(chars(&x["text"]) <= FIELD_TEXT_MAX);
                        }
                    } else {
                        assert!(has_text, "a section needs text or fields");
                    }
                }
                "context" => {
                    let els = b["elements"].as_array().unwrap();
                    assert!(!els.is_empty() && els.len() <= MAX_CONTEXT_ELEMENTS);
                }
                other => panic!("unexpected block type {other}"),
            }
        }
    }

    /// Event text never lands in mrkdwn: the only mrkdwn is the link.
    fn assert_mrkdwn_is_only_the_link(v: &Value) {
        for b in v["blocks"].as_array().unwrap() {
            for t in [&b["text"]]
                .into_iter()
                .chain(b["fields"].as_array().into_iter().flatten())
            {
                if t["type"] == "mrkdwn" {
                    let s = t["text"].as_str().unwrap();
                    let inner = s
                        .strip_prefix("*<")
                        .unwrap_or_else(|| panic!("unexpected mrkdwn {s:.200}"));
                    if let Some(url) = inner.strip_suffix("|View in CloudTrail>*") {
                        assert!(is_console_url(url), "{url}");
                        assert!(!url.contains(['<', '>', '|', '&', ' ']), "{url}");
                    } else {
                        // The configured runbook, nothing from the event.
                        let url = inner
                            .strip_suffix("|Runbook>*")
                            .unwrap_or_else(|| panic!("unexpected mrkdwn {s:.200}"));
                        assert_eq!(url, "https://wiki.example.com/runbooks/root-api-call");
                    }
                } else if t["type"] == "plain_text" {
                    assert!(t.get("emoji").is_some());
                }
            }
        }
    }

    #[test]
    fn golden() {
        for (name, f) in golden_findings() {
            let v = body(&f);
            assert_schema(&v);
            assert_mrkdwn_is_only_the_link(&v);
            check_golden("slack", name, &v);
        }
    }

    #[test]
    fn burst_is_said_first() {
        let (_, f) = golden_findings().remove(2);
        let v = body(&f);
        assert!(
            v["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .ends_with("(×37)")
        );
        let burst = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            burst.starts_with(
                "37 occurrences between 2024-05-14T10:15:02Z and 2024-05-14T10:19:47Z"
            )
        );
        assert!(burst.contains("DescribeSecurityGroups"));
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .contains("(×37) in account 444455556666")
        );
    }

    #[test]
    fn hostile_text_is_inert() {
        for f in [hostile(), hostile_burst(), hostile_linked()] {
            let v = body(&f);
            assert_schema(&v);
            assert_mrkdwn_is_only_the_link(&v);
            let mut wire = serde_json::to_string(&v).unwrap();
            // Apart from rootwatch's own link to the console...
            if let Some(url) = cloudtrail_event_url(&f) {
                wire = wire.replace(&format!("*<{url}|View in CloudTrail>*"), "");
            }
            for bad in ["<!", "<@", "<http", "|click", "|x>", "<#", "<mailto"] {
                assert!(!wire.contains(bad), "{bad} in the payload");
            }
            // The only `<` anywhere opens the console link.
            for s in strings(&v) {
                for (i, _) in s.match_indices('<') {
                    assert!(s[i..].starts_with("<https://"), "{:.80}", &s[i..]);
                }
            }
            assert_no_hostile_urls(&v);
            // Single-line values cannot fake extra lines or fields.
            let main = v["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b.get("fields").is_some())
                .unwrap();
            for x in main["fields"].as_array().unwrap() {
                assert!(!x["text"].as_str().unwrap().contains('\n'));
            }
            assert!(!main["text"]["text"].as_str().unwrap().contains('\n'));
            let ua = main["fields"][8]["text"].as_str().unwrap();
            assert!(ua.starts_with("User agent: &lt;!channel&gt;"), "{ua:.80}");
            assert!(ua.ends_with(TRUNCATED));
            assert!(main["text"]["text"].as_str().unwrap().ends_with(TRUNCATED));
            assert!(
                v["text"]
                    .as_str()
                    .unwrap()
                    .contains("an account with an unexpected ID")
            );
            assert!(!wire.contains("evil.example"), "an undefanged host");
        }
        // A burst's section holds exactly one line break: rootwatch's own.
        let v = body(&hostile_burst());
        assert_eq!(
            v["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .matches('\n')
                .count(),
            1
        );
        // A bad region: no link at all, and the context says why.
        let v = body(&hostile());
        assert!(
            !serde_json::to_string(&v)
                .unwrap()
                .contains("View in CloudTrail")
        );
        assert!(
            serde_json::to_string(&v)
                .unwrap()
                .contains("No CloudTrail link")
        );
        // A good region: the link, with the hostile event ID percent-encoded.
        let v = body(&hostile_linked());
        assert!(
            serde_json::to_string(&v)
                .unwrap()
                .contains("#/events/%3Chttp%3A%2F%2Fevil")
        );
    }
}
