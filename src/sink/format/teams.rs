//! Microsoft Teams workflow payload: the message a Workflows flow built on
//! "Post to a channel when a webhook request is received" (trigger "When a
//! Teams webhook request is received") posts, one Adaptive Card attachment.
//! Workflows accept Adaptive Cards only, not the old connector MessageCard
//! (learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using).
//!
//! Card: a title TextBlock (severity and rule title, `(×N)` for a throttled
//! burst); for a burst, how many occurrences between which times and which
//! event names; the `reason` sentence; a FactSet with the facts Slack shows
//! plus the event and finding IDs; one `Action.OpenUrl` "View in CloudTrail"
//! when [`escape::cloudtrail_event_url`] gives a link.
//!
//! Attacker-controlled text (see [`super::escape`]): Teams renders Markdown
//! in TextBlock text and in Fact titles and values
//! (learn.microsoft.com/microsoftteams/platform/task-modules-and-cards/cards/cards-format).
//! Every string this format puts there, event values and its own labels
//! alike, goes through [`escape::teams`], which backslash-escapes every
//! Markdown character, so no link, image, emphasis, list or heading can form.
//! Values go only into text, never into a URL or an action; the only action
//! is the console link. Colours and weight come from TextBlock properties,
//! not Markdown.
//!
//! Limits: a Teams message posted by a workflow may be about 28 KB
//! (learn.microsoft.com/connectors/teams, "Message size limit"); the
//! per-field limits in [`escape::limit`] keep even a card of 10,000-character
//! values well under it. Card version 1.4.

use serde_json::{Value, json};

use super::escape::{self, limit};
use crate::finding::{Finding, Severity};

pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
pub const CARD_VERSION: &str = "1.4";
/// Workflow posts fail above about 28 KB.
pub const MESSAGE_MAX_BYTES: usize = 28 * 1024;

/// Escapes everything: the per-field limits already bound the length.
fn md(s: &str) -> String {
    escape::teams(s, usize::MAX)
}

fn color(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "Attention",
        Severity::Medium => "Warning",
        Severity::Info | Severity::Low => "Default",
    }
}

fn fact(title: &str, value: &str) -> Value {
    json!({"title": md(title), "value": md(value)})
}

/// The request body for a Teams workflow webhook.
pub fn body(f: &Finding) -> Value {
    let sev = escape::severity_label(f.severity);
    let title = format!(
        "{sev}: {}{}{}",
        escape::one_line(&f.title),
        escape::burst_suffix(f),
        escape::account_suffix(f)
    );
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": md(&title),
        "size": "Large",
        "weight": "Bolder",
        "color": color(f.severity),
        "wrap": true,
    })];

    if let Some(s) = &f.summary {
        body.push(json!({
            "type": "TextBlock",
            "text": md(&escape::burst_headline(s)),
            "weight": "Bolder",
            "color": "Attention",
            "wrap": true,
        }));
        body.push(json!({
            "type": "TextBlock",
            "text": md(&escape::burst_names_line(s)),
            "wrap": true,
        }));
    }

    body.push(json!({"type": "TextBlock", "text": md(&escape::reason(f)), "wrap": true}));
    if let Some(line) = escape::expected_line(f) {
        body.push(json!({"type": "TextBlock", "text": md(&line), "color": "Good", "wrap": true}));
    }

    let mut facts: Vec<Value> = escape::facts(f)
        .iter()
        .map(|x| fact(x.label, &x.value))
        .collect();
    if let Some(s) = &f.sigma {
        facts.push(fact("Sigma rule author", &escape::sigma_author(s)));
    }
    facts.push(fact("Event ID", &escape::event_id(f)));
    facts.push(fact(
        "Finding ID",
        &escape::display(&f.finding_id, limit::VALUE),
    ));
    body.push(json!({"type": "FactSet", "facts": facts}));

    let mut actions = match escape::cloudtrail_event_url(f) {
        Some(url) => vec![json!({
            "type": "Action.OpenUrl",
            "title": "View in CloudTrail",
            "url": url,
        })],
        None => {
            body.push(json!({
                "type": "TextBlock",
                "text": md("No CloudTrail link: the event's region or event ID cannot be used in a console URL."),
                "isSubtle": true,
                "wrap": true,
            }));
            Vec::new()
        }
    };
    if let Some(url) = escape::runbook_url(f) {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Runbook", "url": url}));
    }

    json!({
        "type": "message",
        "attachments": [{
            "contentType": CONTENT_TYPE,
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": CARD_VERSION,
                "msteams": {"width": "Full"},
                "body": body,
                "actions": actions,
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::escape::testing::*;
    use crate::sink::format::escape::{TRUNCATED, is_console_url};

    fn card(v: &Value) -> &Value {
        &v["attachments"][0]["content"]
    }

    /// The workflow envelope and the Adaptive Card's required fields.
    fn assert_schema(v: &Value) {
        assert_eq!(v["type"], "message");
        let atts = v["attachments"].as_array().unwrap();
        assert_eq!(atts.len(), 1);
        assert_eq!(atts[0]["contentType"], CONTENT_TYPE);
        assert!(atts[0]["contentUrl"].is_null());
        let c = card(v);
        assert_eq!(c["type"], "AdaptiveCard");
        let version: f64 = c["version"].as_str().unwrap().parse().unwrap();
        assert!(version <= 1.4);
        assert!(!c["body"].as_array().unwrap().is_empty());
        for el in c["body"].as_array().unwrap() {
            match el["type"].as_str().unwrap() {
                "TextBlock" => assert!(el["text"].as_str().is_some_and(|t| !t.is_empty())),
                "FactSet" => {
                    for x in el["facts"].as_array().unwrap() {
                        assert!(x["title"].is_string() && x["value"].is_string());
                    }
                }
                other => panic!("unexpected element {other}"),
            }
        }
        let actions = c["actions"].as_array().unwrap();
        assert!(actions.len() <= 2);
        for a in actions {
            assert_eq!(a["type"], "Action.OpenUrl");
            let url = a["url"].as_str().unwrap();
            // The console, or the configured runbook (its own title).
            assert!(
                url.starts_with("https://") && (is_console_url(url) || a["title"] == "Runbook"),
                "{url}"
            );
        }
        assert!(serde_json::to_vec(v).unwrap().len() < MESSAGE_MAX_BYTES);
    }

    /// Every string a Teams client renders as Markdown.
    fn rendered(v: &Value) -> Vec<&str> {
        let mut out = Vec::new();
        for el in card(v)["body"].as_array().unwrap() {
            if let Some(t) = el["text"].as_str() {
                out.push(t);
            }
            for x in el["facts"].as_array().into_iter().flatten() {
                out.push(x["title"].as_str().unwrap());
                out.push(x["value"].as_str().unwrap());
            }
        }
        out
    }

    #[test]
    fn golden() {
        for (name, f) in golden_findings() {
            let v = body(&f);
            assert_schema(&v);
            let actions = card(&v)["actions"].as_array().unwrap();
            assert_eq!(actions.len(), 1 + usize::from(f.runbook_url.is_some()));
            assert!(actions[0]["url"].as_str().unwrap().starts_with(&format!(
                "https://{}.console.aws.amazon.com/",
                f.region.as_deref().unwrap()
            )));
            if let Some(url) = &f.runbook_url {
                assert_eq!(actions[1]["title"], "Runbook");
                assert_eq!(actions[1]["url"], url.as_str());
            }
            for s in rendered(&v) {
                assert_eq!(unescaped_markdown(s), None, "{s}");
            }
            check_golden("teams", name, &v);
        }
    }

    #[test]
    fn hostile_text_is_escaped_and_the_only_action_is_the_console() {
        for f in [hostile(), hostile_burst(), hostile_linked()] {
            let v = body(&f);
            assert_schema(&v);
            for s in rendered(&v) {
                assert_eq!(unescaped_markdown(s), None, "{s:.200}");
                assert!(!s.contains('\n'));
            }
            assert_no_hostile_urls(&v);
            let wire = serde_json::to_string(&v).unwrap();
            for bad in [
                "[click](",
                "![img]",
                "](http",
                "*bold*",
                "_it_",
                "`code`",
                "{{",
                "evil.example",
            ] {
                assert!(!wire.contains(bad), "{bad}");
            }
            let facts = &card(&v)["body"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["type"] == "FactSet")
                .unwrap()["facts"];
            let ua = facts[8]["value"].as_str().unwrap();
            assert!(
                ua.starts_with(r"\<\!channel\> \<\!here|x\> \<@U0123ABC\>"),
                "{ua:.80}"
            );
            assert!(ua.ends_with(&escape::teams(TRUNCATED, 100)));
        }
        assert!(
            card(&body(&hostile()))["actions"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let linked = body(&hostile_linked());
        let url = card(&linked)["actions"][0]["url"].as_str().unwrap();
        assert!(url.starts_with("https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events/%3C"));
    }
}
