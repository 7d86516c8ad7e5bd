//! Syslog messages: RFC 5424 with octet-counting framing (RFC 6587 §3.4.1
//! over TCP, RFC 5425 over TLS), the message either the finding JSON or a
//! CEF record (ArcSight Common Event Format 0, as QRadar's and Sentinel's
//! CEF connectors read it).
//!
//! The header fields are rootwatch's own and checked printable ASCII; the
//! event's text goes only into the message, where JSON escapes it, or
//! CEF's escaping does (`\` `|` in the header, `\` `=` and line breaks in
//! extensions) after [`escape::one_line`] took control characters out.

use chrono::{DateTime, Utc};

use super::escape;
use crate::finding::{Finding, Severity};

/// RFC 5424 facility numbers by name (section 6.2.1).
pub const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// What follows the syslog header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Json,
    Cef,
}

/// RFC 5424 severity of a finding: critical 2 (crit), high 3 (err),
/// medium 4 (warning), low 5 (notice), info 6 (informational).
pub fn severity(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

/// CEF severity (0 to 10).
fn cef_severity(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 8,
        Severity::Critical => 10,
    }
}

/// PRINTUSASCII, at most `max` characters, `-` when empty (RFC 5424 NILVALUE).
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

fn cef_header(s: &str) -> String {
    escape::one_line(s)
        .replace('\\', "\\\\")
        .replace('|', "\\|")
}

fn cef_value(s: &str) -> String {
    escape::one_line(s)
        .replace('\\', "\\\\")
        .replace('=', "\\=")
}

/// The CEF record of a finding.
pub fn cef(f: &Finding) -> String {
    let mut ext: Vec<(&str, String)> = Vec::new();
    let mut put = |k: &'static str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            ext.push((k, cef_value(v)));
        }
    };
    let time = f
        .event_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis().to_string());
    put("rt", time.as_deref());
    // `src` takes an IP address only.
    put(
        "src",
        f.source_ip
            .as_deref()
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok()),
    );
    put("suser", f.principal_arn.as_deref());
    put("requestClientApplication", f.user_agent.as_deref());
    put("act", f.event_name.as_deref());
    put("msg", Some(&escape::reason(f)));
    put("externalId", Some(&f.finding_id));
    put("cs1Label", Some("accountId"));
    put("cs1", f.account_id.as_deref());
    put("cs2Label", Some("region"));
    put("cs2", f.region.as_deref());
    put("cs3Label", Some("eventId"));
    put("cs3", f.event_id.as_deref());
    put("cs4Label", Some("accountName"));
    put("cs4", f.account_name.as_deref());
    put("cs5Label", Some("runbook"));
    let runbook = escape::runbook_url(f);
    put("cs5", runbook.as_deref());
    put("cs6Label", Some("expected"));
    let expected = escape::expected_line(f);
    put("cs6", expected.as_deref());
    put(
        "outcome",
        Some(f.error_code.as_deref().unwrap_or("success")),
    );
    // Drop labels whose value was absent.
    let present: Vec<&str> = ext.iter().map(|(k, _)| *k).collect();
    let ext: Vec<String> = ext
        .iter()
        .filter(|(k, _)| !k.ends_with("Label") || present.contains(&k.trim_end_matches("Label")))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "CEF:0|rootwatch|rootwatch|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header(&f.rule),
        cef_header(&format!("{}{}", f.title, escape::account_suffix(f))),
        cef_severity(f.severity),
        ext.join(" ")
    )
}

/// One framed syslog message: `LEN SP <PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG`.
pub fn frame(
    f: &Finding,
    message: Message,
    facility: u8,
    hostname: &str,
    now: DateTime<Utc>,
) -> Vec<u8> {
    let pri = u16::from(facility) * 8 + u16::from(severity(f.severity));
    let msg = match message {
        Message::Json => f.to_json(),
        Message::Cef => cef(f),
    };
    let line = format!(
        "<{pri}>1 {} {} rootwatch {} {} - {msg}",
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        header_field(hostname, 255),
        std::process::id(),
        header_field(&f.rule, 32),
    );
    let mut out = format!("{} ", line.len()).into_bytes();
    out.extend_from_slice(line.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::escape::testing::*;

    #[test]
    fn a_frame_is_counted_and_the_header_is_rfc5424() {
        let f = enriched();
        let framed = frame(&f, Message::Json, 10, "collector-1", now());
        let text = String::from_utf8(framed).unwrap();
        let (len, rest) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        // authpriv (10) * 8 + notice (5, low)
        assert!(
            rest.starts_with("<85>1 2024-05-14T10:00:00.000Z collector-1 rootwatch "),
            "{rest}"
        );
        let msg = rest.split_once(" root-api-call - ").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(msg).unwrap();
        assert_eq!(v["finding_id"], f.finding_id);
    }

    #[test]
    fn cef_escapes_what_it_must_and_names_the_fields() {
        let f = enriched();
        let c = cef(&f);
        assert!(c.starts_with("CEF:0|rootwatch|rootwatch|"), "{c}");
        let header: Vec<&str> = c.splitn(8, '|').collect();
        assert_eq!(header[4], "root-api-call");
        assert_eq!(header[5], "Root user API call — prod-payments");
        assert_eq!(header[6], "3");
        assert!(c.contains(" src=89.160.20.130 "), "{c}");
        assert!(
            c.contains(" cs4Label=accountName cs4=prod-payments "),
            "{c}"
        );
        assert!(c.contains("rt=1715677960000 "), "{c}");
        // A hostile event: one line, `|` in the header and `=` in values escaped.
        let h = hostile();
        let c = cef(&h);
        assert!(!c.contains('\n') && !c.contains('\r'), "{c:.200}");
        let mut f = enriched();
        f.title = "a|b\\c".into();
        f.reason = "x=y".into();
        let c = cef(&f);
        assert!(c.contains("|a\\|b\\\\c — prod-payments|"), "{c}");
        assert!(c.contains("msg=x\\=y "), "{c}");
        // No label without its value.
        let mut bare = enriched();
        bare.account_name = None;
        assert!(!cef(&bare).contains("cs4Label"), "{}", cef(&bare));
    }
}
