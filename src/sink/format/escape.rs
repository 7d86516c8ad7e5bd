//! Attacker-controlled text, made inert for each medium and cut to size, plus
//! the presentation pieces the Slack, Teams and PagerDuty formats share.
//!
//! Every value taken from a CloudTrail event (user agent, user name, ARN,
//! event name, source IP, region, account, event ID, event time, the `reason`
//! sentence that quotes them, the event names of a summary) is chosen by
//! whoever made the call. On its way to a receiver it goes through:
//!
//! 1. [`display`]: one line ([`one_line`]: CR, LF, tab and the other line
//!    breaks become spaces, remaining control characters and bidirectional
//!    overrides become U+FFFD, so a value can neither fake extra lines or
//!    fields nor reorder what is shown), URLs defanged ([`defang`]:
//!    `http://evil.example/x` becomes `hxxp[:]//evil[.]example/x`, the form
//!    SOC tools use for indicators, so no client turns it into a link), then
//!    cut to a per-field limit ([`limit`]) counted in characters of the value.
//! 2. The medium's escaper, which also cuts to the service's own limit,
//!    counted in the characters actually sent: [`slack`], [`teams`];
//!    PagerDuty shows plain text and only needs [`truncate`].
//!
//! Cutting never splits a UTF-8 character or an escape sequence and always
//! leaves the visible marker [`TRUNCATED`].
//!
//! Links: the only URL any format emits is [`cloudtrail_event_url`], built
//! from a region that has the shape of an AWS region and a percent-encoded
//! event ID. Event text never goes into a URL.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::aws::is_region;
use crate::finding::{Finding, Severity, Summary, Technique};

/// Appended wherever a value was cut.
pub const TRUNCATED: &str = "…[truncated]";

/// Per-field limits, in characters of the value before escaping. The
/// services' own limits (counted in characters sent) live in each format.
pub mod limit {
    /// User agents: long enough for an SDK's full `md/...` list.
    pub const USER_AGENT: usize = 300;
    /// The `reason` sentence.
    pub const REASON: usize = 2000;
    /// Principal ARNs and user names (IAM ARNs reach 2048 in theory; real
    /// ones are far shorter).
    pub const PRINCIPAL: usize = 512;
    /// Event IDs: CloudTrail's are 36-character UUIDs. Longer ones are shown
    /// cut and never linked.
    pub const EVENT_ID: usize = 128;
    /// One event name.
    pub const EVENT_NAME: usize = 128;
    /// Short values: account, region, source IP, event time, error code,
    /// event source, principal type.
    pub const VALUE: usize = 256;
    /// A summary's event names, joined.
    pub const EVENT_NAMES: usize = 1000;
    /// At most this many of a summary's event names are listed.
    pub const MAX_EVENT_NAMES: usize = 20;
}

// ---------------------------------------------------------------------------
// Cutting
// ---------------------------------------------------------------------------

/// One source character as sent: itself, a fixed replacement, or itself
/// behind a backslash. Cutting keeps whole units, so an escape sequence is
/// never split.
#[derive(Clone, Copy)]
enum Piece {
    Char(char),
    Str(&'static str),
    Backslashed(char),
}

impl Piece {
    fn len(self) -> usize {
        match self {
            Piece::Char(_) => 1,
            Piece::Str(s) => s.chars().count(),
            Piece::Backslashed(_) => 2,
        }
    }

    fn push(self, out: &mut String) {
        match self {
            Piece::Char(c) => out.push(c),
            Piece::Str(s) => out.push_str(s),
            Piece::Backslashed(c) => {
                out.push('\\');
                out.push(c);
            }
        }
    }
}

/// Joins `units`, keeping the result within `max` characters: when they do
/// not all fit, the longest prefix of whole units that leaves room for
/// `marker` (already escaped) is kept and the marker appended.
fn fit(units: &[Piece], max: usize, marker: &[Piece]) -> String {
    let mut out = String::new();
    let total: usize = units.iter().map(|u| u.len()).sum();
    if total <= max {
        units.iter().for_each(|u| u.push(&mut out));
        return out;
    }
    let marker_len: usize = marker.iter().map(|u| u.len()).sum();
    let budget = max.saturating_sub(marker_len);
    let mut used = 0;
    for u in units {
        let l = u.len();
        if used + l > budget {
            break;
        }
        used += l;
        u.push(&mut out);
    }
    if marker_len <= max {
        marker.iter().for_each(|u| u.push(&mut out));
    }
    out
}

/// `s` cut to at most `max` characters (not bytes), ending in [`TRUNCATED`]
/// when it was cut.
pub fn truncate(s: &str, max: usize) -> String {
    let units: Vec<Piece> = s.chars().map(Piece::Char).collect();
    let marker: Vec<Piece> = TRUNCATED.chars().map(Piece::Char).collect();
    fit(&units, max, &marker)
}

// ---------------------------------------------------------------------------
// Medium-independent cleaning
// ---------------------------------------------------------------------------

/// Characters that change the display order of the text around them
/// (the "Trojan Source" set).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` on one line, trimmed: line breaks and tabs become spaces; other
/// control characters and bidirectional overrides become U+FFFD, visibly.
pub fn one_line(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}' => ' ',
            c if c.is_control() || is_bidi_control(c) => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// May appear in the host part of a URL (and so has its dots defanged).
fn is_authority_char(c: char) -> bool {
    c.is_alphanumeric() || "-._~%:@!$&'()*+,;=".contains(c)
}

fn starts_with_at(cs: &[char], i: usize, pat: &str) -> bool {
    let mut k = i;
    for p in pat.chars() {
        match cs.get(k) {
            Some(c) if c.eq_ignore_ascii_case(&p) => k += 1,
            _ => return false,
        }
    }
    true
}

/// Copies the host part starting at `*i` into `out` with every `.` written
/// `[.]`, stopping at the path, whitespace or another `://`.
fn defang_authority(cs: &[char], i: &mut usize, out: &mut String) {
    while *i < cs.len() && is_authority_char(cs[*i]) && !starts_with_at(cs, *i, "://") {
        if cs[*i] == '.' {
            out.push_str("[.]");
        } else {
            out.push(cs[*i]);
        }
        *i += 1;
    }
}

/// `evil.example/...` at `i`: a dotted host name whose last label is
/// letters, directly followed by a path, which clients may auto-link
/// without a scheme. Versions (`Chrome/124.0.0.0`) and bare names
/// (`iam.amazonaws.com`) do not match.
fn is_host_with_path(cs: &[char], i: usize) -> bool {
    let end = cs[i..]
        .iter()
        .position(|c| !(c.is_alphanumeric() || *c == '-' || *c == '.'))
        .map_or(cs.len(), |p| i + p);
    let host: String = cs[i..end].iter().collect();
    let last = host.rsplit('.').next().unwrap_or("");
    cs.get(end) == Some(&'/')
        && host.contains('.')
        && last.len() >= 2
        && last.chars().all(|c| c.is_alphabetic())
}

/// Defangs URLs the way SOC tooling writes indicators, so that no chat client
/// auto-links them: every `://` becomes `[:]//`, an `http`/`https` scheme
/// becomes `hxxp`/`hxxps`, and the dots of the host that follows (or of a
/// `www.` host, or of a host name directly followed by a path, without a
/// scheme) become `[.]`. Paths, user agents, ARNs and
/// addresses without a scheme are left alone, so analysts can still copy
/// them.
pub fn defang(s: &str) -> String {
    let cs: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 16);
    let mut i = 0;
    while i < cs.len() {
        if starts_with_at(&cs, i, "://") {
            // The scheme is the run of scheme characters just written.
            let scheme_len = out
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
                .count();
            // Scheme characters are ASCII: one byte each.
            let start = out.len() - scheme_len;
            let replacement = match &out[start..] {
                s if s.eq_ignore_ascii_case("http") => Some("hxxp"),
                s if s.eq_ignore_ascii_case("https") => Some("hxxps"),
                _ => None,
            };
            if let Some(r) = replacement {
                out.truncate(start);
                out.push_str(r);
            }
            out.push_str("[:]//");
            i += 3;
            defang_authority(&cs, &mut i, &mut out);
            continue;
        }
        let at_token_start = i == 0 || !is_authority_char(cs[i - 1]);
        if at_token_start && (starts_with_at(&cs, i, "www.") || is_host_with_path(&cs, i)) {
            defang_authority(&cs, &mut i, &mut out);
            continue;
        }
        out.push(cs[i]);
        i += 1;
    }
    out
}

/// An event value ready for any medium: [`one_line`], [`defang`], then cut to
/// `max` characters.
pub fn display(s: &str, max: usize) -> String {
    truncate(&defang(&one_line(s)), max)
}

// ---------------------------------------------------------------------------
// Slack
// ---------------------------------------------------------------------------

fn slack_unit(c: char) -> Piece {
    match c {
        // Slack's control characters, which it asks senders to write as these
        // three entities (and only these): https://docs.slack.dev/messaging/formatting-message-text#escaping
        '&' => Piece::Str("&amp;"),
        '<' => Piece::Str("&lt;"),
        '>' => Piece::Str("&gt;"),
        // `|` separates URL and label inside `<...>`. With `<` escaped it is
        // already inert; it is replaced as well (by U+00A6 BROKEN BAR) so no
        // value can ever supply half of a `<url|label>` link.
        '|' => Piece::Char('¦'),
        c => Piece::Char(c),
    }
}

/// Slack text-object text: `&`, `<`, `>` escaped as entities, `|` replaced,
/// cut to at most `max` characters as sent.
///
/// Event values only ever go into `plain_text` objects (no mrkdwn parsing,
/// emoji codes off); the escaping keeps them inert even so, because Slack
/// parses `<...>` control sequences in every text object.
pub fn slack(s: &str, max: usize) -> String {
    let units: Vec<Piece> = s.chars().map(slack_unit).collect();
    let marker: Vec<Piece> = TRUNCATED.chars().map(slack_unit).collect();
    fit(&units, max, &marker)
}

// ---------------------------------------------------------------------------
// Microsoft Teams (Adaptive Cards)
// ---------------------------------------------------------------------------

/// Backslash-escaped wherever they appear. CommonMark lets any ASCII
/// punctuation be escaped this way; these are the ones that start markup in
/// Adaptive Cards' Markdown subset or CommonMark (emphasis `* _ ~`, code
/// `` ` ``, links and images `[ ] ( ) !`, autolinks `< >`, headings `#`,
/// entity references `&`, the escape itself `\`) and the `{{DATE()}}` /
/// `{{TIME()}}` functions of TextBlock (`{ }`).
const TEAMS_ALWAYS: &str = "\\*_~`[]()<>#!&{}";

fn teams_units(s: &str) -> Vec<Piece> {
    let cs: Vec<char> = s.chars().collect();
    let leading_digits = cs.iter().take_while(|c| c.is_ascii_digit()).count();
    cs.iter()
        .enumerate()
        .map(|(i, &c)| {
            let list_marker = i == 0 && matches!(c, '-' | '+');
            // `1. ` starts an ordered list only when a space or the end
            // follows, so addresses like `198.51.100.7` stay as they are.
            let ordered_list = i == leading_digits
                && i > 0
                && c == '.'
                && cs.get(i + 1).is_none_or(|n| n.is_whitespace());
            if TEAMS_ALWAYS.contains(c) || list_marker || ordered_list {
                Piece::Backslashed(c)
            } else {
                Piece::Char(c)
            }
        })
        .collect()
}

/// Adaptive Card TextBlock / Fact text: every Markdown character
/// backslash-escaped (see `TEAMS_ALWAYS`; `-` and `+` also at the start,
/// where they would begin a list or a rule, and the `.` of a leading `1. `), cut to at most `max` characters as
/// sent. Every string the Teams format puts in a card goes through this, its
/// own labels included, so nothing in a card is ever Markdown.
///
/// Backslash escapes are CommonMark, which Adaptive Cards' Markdown follows
/// (https://learn.microsoft.com/adaptive-cards/authoring-cards/text-features).
/// Some Teams clients have mishandled them (microsoft/AdaptiveCards#5758,
/// #4677): there a backslash may show, or `\*x\*` may still turn italic, but a
/// link cannot form, because `\]\(` is never `](`, and the URL inside would be
/// defanged anyway. Look-alike substitutes would be reliable everywhere but
/// would change the indicators analysts copy (`x86_64`, ARNs), so they are
/// not used.
pub fn teams(s: &str, max: usize) -> String {
    let marker = teams_units(TRUNCATED);
    fit(&teams_units(s), max, &marker)
}

// ---------------------------------------------------------------------------
// The CloudTrail console link
// ---------------------------------------------------------------------------

/// The console's domain for the region's partition. The isolated partitions
/// (`us-iso-east-1`, `us-isob-east-1`, `eu-isoe-west-1`) have no public
/// console: no link.
fn console_domain(region: &str) -> Option<&'static str> {
    if !is_region(region) {
        None
    } else if region.starts_with("cn-") {
        Some("console.amazonaws.cn")
    } else if region.starts_with("us-gov-") {
        Some("console.amazonaws-us-gov.com")
    } else if region.split('-').any(|p| p.starts_with("iso")) {
        None
    } else {
        Some("console.aws.amazon.com")
    }
}

/// Every byte of an event ID except `[A-Za-z0-9-]` is percent-encoded.
const EVENT_ID_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-');

/// The event in the CloudTrail console's Event history, for its region:
/// `https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}#/events/{event_id}`
/// (China and GovCloud regions use their partition's console domain).
/// `None` unless the region has the shape of an AWS region and the event ID
/// is non-empty and at most [`limit::EVENT_ID`] bytes. Event history keeps
/// 90 days of management events.
pub fn cloudtrail_event_url(f: &Finding) -> Option<String> {
    let region = f.region.as_deref()?;
    let domain = console_domain(region)?;
    let id = f
        .event_id
        .as_deref()
        .filter(|id| !id.is_empty() && id.len() <= limit::EVENT_ID)?;
    let id = utf8_percent_encode(id, EVENT_ID_ENCODE);
    Some(format!(
        "https://{region}.{domain}/cloudtrailv2/home?region={region}#/events/{id}"
    ))
}

/// Is `url` a link [`cloudtrail_event_url`] could have made (https, on an
/// AWS console domain)? For the payload checks of every format.
pub(crate) fn is_console_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    [
        ".console.aws.amazon.com",
        ".console.amazonaws.cn",
        ".console.amazonaws-us-gov.com",
    ]
    .iter()
    .any(|d| host.strip_suffix(d).is_some_and(is_region))
}

// ---------------------------------------------------------------------------
// Shared presentation
// ---------------------------------------------------------------------------

/// `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`.
pub fn severity_label(s: Severity) -> String {
    s.as_str().to_ascii_uppercase()
}

/// `yes`, `no`, or `unknown` when the event does not say.
pub fn mfa_word(mfa: Option<bool>) -> &'static str {
    match mfa {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

/// A [`display`]ed optional value, or `unknown`.
fn shown(v: &Option<String>, max: usize) -> String {
    non_empty(v).map_or_else(|| "unknown".to_owned(), |s| display(s, max))
}

/// Who acted: the principal ARN, else the user name, with the principal
/// type after it. Displayed.
pub fn principal(f: &Finding) -> String {
    let who = non_empty(&f.principal_arn).or(non_empty(&f.user_name));
    let who = who.map_or_else(|| "unknown".to_owned(), |s| display(s, limit::PRINCIPAL));
    match non_empty(&f.principal_type) {
        Some(t) => format!("{who} ({})", display(t, limit::VALUE)),
        None => who,
    }
}

/// One labelled value of an alert. `value` is [`display`]ed but not escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

/// The facts Slack and Teams show, in order.
pub fn facts(f: &Finding) -> Vec<Fact> {
    let mut event = shown(&f.event_name, limit::EVENT_NAME);
    if let Some(t) = non_empty(&f.event_time) {
        event.push_str(" at ");
        event.push_str(&display(t, limit::VALUE));
    }
    if let Some(code) = non_empty(&f.error_code) {
        event.push_str(", failed with ");
        event.push_str(&display(code, limit::VALUE));
    }
    match f.requires_root {
        Some(true) => event.push_str("; a task that needs root credentials"),
        Some(false) => {
            event.push_str("; not a task that needs root (an IAM user or role could do it)")
        }
        None => {}
    }
    let fact = |label, value| Fact { label, value };
    let mut facts = vec![
        fact("Severity", severity_label(f.severity)),
        fact("Rule", display(&f.rule, limit::VALUE)),
        fact("Account", account_label(f)),
        fact("Region", shown(&f.region, limit::VALUE)),
        fact("Principal", principal(f)),
        fact("Source IP", source_label(f)),
        fact("Event", event),
        fact("MFA", mfa_word(f.mfa).to_owned()),
        fact("User agent", shown(&f.user_agent, limit::USER_AGENT)),
    ];
    if let Some(t) = &f.mitre_attack {
        facts.push(fact("MITRE ATT&CK", technique(t)));
    }
    facts
}

/// `111122223333 prod-payments (OU Root/Prod; environment production;
/// owner payments-oncall)`: the id, and what `[enrich.accounts]` says.
pub fn account_label(f: &Finding) -> String {
    let mut s = shown(&f.account_id, limit::VALUE);
    if let Some(n) = non_empty(&f.account_name) {
        s.push(' ');
        s.push_str(&display(n, limit::VALUE));
    }
    let mut parts = Vec::new();
    if let Some(ou) = non_empty(&f.account_ou) {
        parts.push(format!("OU {}", display(ou, limit::VALUE)));
    }
    if let Some(tags) = &f.account_tags {
        for k in ["environment", "owner"] {
            if let Some(v) = tags.get(k) {
                parts.push(format!("{k} {}", display(v, limit::VALUE)));
            }
        }
    }
    if !parts.is_empty() {
        s.push_str(&format!(" ({})", parts.join("; ")));
    }
    s
}

/// ` — prod-payments` after a title when the account has a name.
pub fn account_suffix(f: &Finding) -> String {
    non_empty(&f.account_name)
        .map(|n| format!(" — {}", display(n, limit::VALUE)))
        .unwrap_or_default()
}

/// `89.160.20.130 (Linköping, SE; AS29518 Bredband2 AB)`.
pub fn source_label(f: &Finding) -> String {
    let mut s = shown(&f.source_ip, limit::VALUE);
    if let Some(c) = &f.source_ip_context {
        s.push_str(&format!(" ({})", display(&c.describe(), limit::VALUE)));
    }
    s
}

/// `Expected root use: closing the account (ticket CHG-1234, until
/// 2024-06-03T18:00:00Z)`, when an entry matched.
pub fn expected_line(f: &Finding) -> Option<String> {
    f.expected.as_ref().map(|e| {
        format!(
            "Expected root use: {} (ticket {}, until {})",
            display(&e.reason, limit::REASON),
            display(&e.ticket, limit::VALUE),
            display(&e.until, limit::VALUE)
        )
    })
}

/// The runbook URL, checked again for the link formats: http(s) only, and
/// the characters Slack and Markdown treat as link syntax percent-encoded.
pub fn runbook_url(f: &Finding) -> Option<String> {
    let url = f.runbook_url.as_deref()?;
    let parsed = reqwest::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return None;
    }
    Some(
        parsed
            .as_str()
            .replace('|', "%7C")
            .replace('<', "%3C")
            .replace('>', "%3E")
            .replace('(', "%28")
            .replace(')', "%29")
            .replace(' ', "%20"),
    )
}

/// A Sigma rule's author, displayed; the Detection Rule License asks every
/// alert based on a SigmaHQ rule to name it.
pub fn sigma_author(s: &crate::finding::SigmaRuleRef) -> String {
    s.author
        .as_deref()
        .map_or_else(|| "not given".to_owned(), |a| display(a, limit::VALUE))
}

/// `T1078.004 Valid Accounts: Cloud Accounts`, displayed (rootwatch's own
/// text, but it goes through the same path as every value).
pub fn technique(t: &Technique) -> String {
    display(&t.to_string(), limit::VALUE)
}

/// The event ID, displayed, or `unknown`.
pub fn event_id(f: &Finding) -> String {
    shown(&f.event_id, limit::EVENT_ID)
}

/// The `reason` sentence, displayed; the rule title when it is empty.
pub fn reason(f: &Finding) -> String {
    if f.reason.trim().is_empty() {
        display(&f.title, limit::REASON)
    } else {
        display(&f.reason, limit::REASON)
    }
}

/// ` (×37)` after a title for a summary; empty otherwise.
pub fn burst_suffix(f: &Finding) -> String {
    f.summary
        .as_ref()
        .map(|s| format!(" (×{})", s.count))
        .unwrap_or_default()
}

/// `37 occurrences between FIRST and LAST (...)`, displayed.
pub fn burst_headline(s: &Summary) -> String {
    let time = |t: &Option<String>| shown(t, limit::VALUE);
    let noun = if s.count == 1 {
        "occurrence"
    } else {
        "occurrences"
    };
    format!(
        "{} {noun} between {} and {} (repeats within {} s were throttled into this one alert)",
        s.count,
        time(&s.first_event_time),
        time(&s.last_event_time),
        s.window_secs
    )
}

/// The distinct event names of a summary, in order, displayed, at most
/// [`limit::MAX_EVENT_NAMES`] of them within [`limit::EVENT_NAMES`]
/// characters, and how many more there were.
pub fn burst_event_names(s: &Summary) -> (Vec<String>, usize) {
    let mut distinct: Vec<&str> = Vec::new();
    for n in &s.event_names {
        if !distinct.contains(&n.as_str()) {
            distinct.push(n);
        }
    }
    let mut shown = Vec::new();
    let mut used = 0;
    for n in &distinct {
        let d = display(n, limit::EVENT_NAME);
        let len = d.chars().count() + 2;
        if shown.len() == limit::MAX_EVENT_NAMES || used + len > limit::EVENT_NAMES {
            break;
        }
        used += len;
        shown.push(d);
    }
    let more = distinct.len() - shown.len();
    (shown, more)
}

/// `Event names (3 distinct): A, B, C` (`, and 4 more` when cut).
pub fn burst_names_line(s: &Summary) -> String {
    let (names, more) = burst_event_names(s);
    let total = names.len() + more;
    let mut line = format!("Event names ({total} distinct): ");
    if names.is_empty() && more == 0 {
        line.push_str("none recorded");
    }
    line.push_str(&names.join(", "));
    if more > 0 {
        line.push_str(&format!(", and {more} more"));
    }
    line
}

/// Shared by the tests of every format: the golden findings, hostile
/// findings, and golden-file comparison.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    use serde_json::Value;

    use crate::event::Record;
    use crate::finding::{Finding, Severity, Summary};

    /// Every trick at once: Slack mentions and links, Markdown links,
    /// emphasis and images, a fake quote line.
    pub const HOSTILE: &str = "<!channel> <!here|x> <@U0123ABC> <http://evil.example|click here> \
        [click](http://evil.example) *bold* _it_ ~s~ `code`\n> fake quote \
        ![img](http://evil.example/x.png)";

    /// The "now" the formatters' tests render at: after the fixtures'
    /// events.
    pub fn now() -> chrono::DateTime<chrono::Utc> {
        "2024-05-14T10:00:00Z".parse().unwrap()
    }

    /// A 10,000-character value after the tricks.
    pub fn long() -> String {
        format!("{HOSTILE} {}", "A".repeat(10_000))
    }

    const CONSOLE_LOGIN: &str = r#"{"eventVersion":"1.09","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":""},"eventTime":"2024-05-14T08:21:37Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.45","userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_us-east-1_c63b8ad5d4ad4cb2","MobileVersion":"No","MFAUsed":"No"},"eventID":"3b5c2f8e-7d1a-4c9e-9f0b-2a6d8e4c1f73","readOnly":false,"eventType":"AwsConsoleSignIn","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"signin.aws.amazon.com"}}"#;

    const ACCESS_KEY_CALL: &str = r#"{"eventVersion":"1.09","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"AKIAIOSFODNN7EXAMPLE"},"eventTime":"2024-05-14T09:02:11Z","eventSource":"iam.amazonaws.com","eventName":"CreateUser","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.23","userAgent":"aws-cli/2.15.40 md/awscrt#0.19.19 ua/2.0 os/linux#6.5.0-1018-aws md/arch#x86_64 lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.22 md/prompt#off md/command#iam.create-user","requestParameters":{"userName":"backup-admin"},"responseElements":{"user":{"path":"/","userName":"backup-admin","userId":"AIDAEXAMPLEUSERID1234","arn":"arn:aws:iam::111122223333:user/backup-admin","createDate":"May 14, 2024 9:02:11 AM"}},"requestID":"5f0e3c1a-8b2d-4e6f-9a7c-1d3b5e7f9a2c","eventID":"9e2f4a1c-58b3-4d07-a6e2-7c1b0d3f5e88","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"iam.amazonaws.com"}}"#;

    const BURST_CALL: &str = r#"{"eventVersion":"1.09","userIdentity":{"type":"Root","principalId":"444455556666","arn":"arn:aws:iam::444455556666:root","accountId":"444455556666","accessKeyId":"ASIAEXAMPLESESSION01","sessionContext":{"attributes":{"creationDate":"2024-05-14T10:01:40Z","mfaAuthenticated":"false"}}},"eventTime":"2024-05-14T10:15:02Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"eu-west-1","sourceIPAddress":"192.0.2.77","userAgent":"Boto3/1.34.84 md/Botocore#1.34.84 ua/2.0 os/linux#5.15.0-1057-aws md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.84","requestParameters":{"instancesSet":{},"filterSet":{}},"responseElements":null,"requestID":"c2b7a0e4-1f3d-4a5b-8c6d-7e8f9a0b1c2d","eventID":"d41f6b27-0c9e-4b8a-93f5-6a2e1c7d8b04","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"444455556666","eventCategory":"Management"}"#;

    fn finding(
        raw: &str,
        rule: &str,
        title: &str,
        severity: Severity,
        reason: &str,
        mfa: Option<bool>,
    ) -> Finding {
        let rec = Record::parse(raw).expect("test records are valid JSON");
        let f = Finding::new(&rec, rule, title, severity, reason.to_owned(), mfa);
        match crate::detect::technique_of(rule) {
            Some(t) => f.with_technique(t),
            None => f,
        }
    }

    /// The golden cases: (file name, finding). Titles and reasons are worded
    /// as the rules word them (src/detect/rules.rs).
    pub fn golden_findings() -> Vec<(&'static str, Finding)> {
        let login = finding(
            CONSOLE_LOGIN,
            "root-console-login-without-mfa",
            "Root user signed in without MFA",
            Severity::Critical,
            "The root user signed in to the console from 203.0.113.45 without MFA.",
            Some(false),
        );
        let key = finding(
            ACCESS_KEY_CALL,
            "root-access-key-used",
            "Root access key used",
            Severity::Critical,
            "The root user's long-term access key AKIAIOSFODNN7EXAMPLE called CreateUser \
             (iam.amazonaws.com) from 198.51.100.23.",
            None,
        );
        let mut burst = finding(
            BURST_CALL,
            "root-api-call-without-mfa",
            "Root user API call without MFA",
            Severity::High,
            "The root user called DescribeInstances (ec2.amazonaws.com) from 192.0.2.77 \
             without an MFA-authenticated session.",
            Some(false),
        );
        burst.summary = Some(Summary {
            count: 37,
            escalated: 0,
            first_event_time: Some("2024-05-14T10:15:02Z".into()),
            last_event_time: Some("2024-05-14T10:19:47Z".into()),
            event_names: [
                "DescribeInstances",
                "DescribeSecurityGroups",
                "DescribeInstances",
                "DescribeVpcs",
                "DescribeKeyPairs",
                "GetCallerIdentity",
            ]
            .map(String::from)
            .to_vec(),
            window_secs: 300,
        });
        vec![
            ("root-console-login-without-mfa", login),
            ("root-access-key-used", key),
            ("throttled-burst", burst),
            ("enriched-root-call", enriched()),
        ]
    }

    const ENRICHED_CALL: &str = r#"{"eventVersion":"1.09","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","sessionContext":{"attributes":{"creationDate":"2024-05-14T09:00:02Z","mfaAuthenticated":"true"}}},"eventTime":"2024-05-14T09:12:40Z","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","awsRegion":"eu-north-1","sourceIPAddress":"89.160.20.130","userAgent":"aws-cli/2.15.40 md/command#ec2.run-instances","requestParameters":{"instanceType":"p4d.24xlarge"},"responseElements":null,"requestID":"0b5e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4","eventID":"6a1d3c5e-7b9f-4e2a-8c4d-0e1f2a3b4c5d","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}"#;

    /// A root API call with every kind of context: the account's name, OU
    /// and tags, the address's place and network, an ordinary API (not a
    /// root-only task), announced work and a runbook.
    pub fn enriched() -> Finding {
        let mut f = finding(
            ENRICHED_CALL,
            "root-api-call",
            "Root user API call",
            Severity::Low,
            "The root user called RunInstances (ec2.amazonaws.com) from 89.160.20.130.",
            Some(true),
        );
        f.account_name = Some("prod-payments".into());
        f.account_ou = Some("Root/Workloads/Prod".into());
        f.account_tags = Some(
            [
                ("environment", "production"),
                ("owner", "payments-oncall"),
                ("cost-centre", "4711"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into_iter()
            .collect(),
        );
        f.source_ip_context = Some(crate::enrich::SourceContext {
            kind: "public".into(),
            country: Some("SE".into()),
            country_name: Some("Sweden".into()),
            city: Some("Linköping".into()),
            asn: Some(29518),
            as_org: Some("Bredband2 AB".into()),
        });
        f.requires_root = Some(false);
        f.expected = Some(crate::enrich::expected::ExpectedMark {
            reason: "closing the legacy billing setup".into(),
            ticket: "CHG-1234".into(),
            until: "2024-05-15T18:00:00Z".into(),
        });
        f.runbook_url = Some("https://wiki.example.com/runbooks/root-api-call".into());
        f
    }

    /// Every event-derived field hostile, the region shaped to smuggle a
    /// host into the console link.
    pub fn hostile() -> Finding {
        let h = || Some(HOSTILE.to_owned());
        Finding {
            rule: "root-api-call".into(),
            severity: Severity::High,
            title: "Root user API call".into(),
            reason: format!("The root user called {} from {HOSTILE}.", long()),
            finding_id: "00112233445566778899aabbccddeeff".into(),
            event_id: Some(long()),
            event_time: h(),
            event_name: h(),
            event_source: h(),
            account_id: h(),
            region: Some("us-east-1.evil.example/".into()),
            principal_type: h(),
            principal_arn: Some(long()),
            user_name: h(),
            source_ip: h(),
            user_agent: Some(long()),
            error_code: h(),
            mfa: None,
            summary: None,
            mitre_attack: Some(crate::detect::mitre::VALID_CLOUD_ACCOUNTS),
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
            event: crate::finding::RawEvent::from_string("{}".into()).unwrap(),
        }
    }

    /// [`hostile`] as a throttled summary with hostile times and names.
    pub fn hostile_burst() -> Finding {
        let mut f = hostile();
        let mut names = vec![HOSTILE.to_owned(), long()];
        names.extend((0..40).map(|i| format!("{HOSTILE}{i}")));
        f.summary = Some(Summary {
            count: 42,
            escalated: 0,
            first_event_time: Some(HOSTILE.to_owned()),
            last_event_time: Some(long()),
            event_names: names,
            window_secs: 300,
        });
        f
    }

    /// [`hostile`] with a real region: the link exists, with the hostile
    /// event ID percent-encoded.
    pub fn hostile_linked() -> Finding {
        let mut f = hostile();
        f.region = Some("us-east-1".into());
        f.event_id = Some("<http://evil.example|x> [a](http://evil.example) ?#/&".into());
        f
    }

    pub use crate::sink::format::check::strings;

    /// The host of every `scheme://host` in `s`, lowercased, without user
    /// info or port.
    pub fn url_hosts(s: &str) -> Vec<String> {
        s.match_indices("://")
            .map(|(i, _)| {
                let rest = &s[i + 3..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || "/?#|<>\"'\\".contains(c))
                    .unwrap_or(rest.len());
                let authority = &rest[..end];
                let host = authority.rsplit('@').next().unwrap_or("");
                let host = host.split(':').next().unwrap_or("");
                host.to_ascii_lowercase()
            })
            .collect()
    }

    /// Asserts no URL anywhere in `v` points at the hostile host, and every
    /// URL is a console link (or the card schema): the payload check of
    /// [`crate::sink::format::check`].
    pub fn assert_no_hostile_urls(v: &Value) {
        for s in strings(v) {
            for host in url_hosts(s) {
                assert!(
                    host != "evil.example" && !host.ends_with(".evil.example"),
                    "URL with host {host} in {s:.200}"
                );
            }
        }
        if let Err(e) = crate::sink::format::check::links_are_console_only(v) {
            panic!("{e}");
        }
    }

    /// Markdown characters not behind a backslash, as (index, char); the
    /// oracle for every Teams string.
    pub fn unescaped_markdown(s: &str) -> Option<(usize, char)> {
        let cs: Vec<char> = s.chars().collect();
        let digits = cs.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut i = 0;
        while i < cs.len() {
            let c = cs[i];
            if c == '\\' {
                if i + 1 == cs.len() {
                    return Some((i, c));
                }
                i += 2;
                continue;
            }
            let special = "*_~`[]()<>#!&{}".contains(c)
                || (i == 0 && (c == '-' || c == '+'))
                || (i == digits
                    && i > 0
                    && c == '.'
                    && cs.get(i + 1).is_none_or(|n| n.is_whitespace()));
            if special {
                return Some((i, c));
            }
            i += 1;
        }
        None
    }

    /// Compares `actual` with tests/fixtures/golden/{format}/{name}.json.
    ///
    /// To accept a change on purpose, run the tests with
    /// `ROOTWATCH_UPDATE_GOLDEN=1` (e.g.
    /// `ROOTWATCH_UPDATE_GOLDEN=1 cargo test --lib sink::format`): the files
    /// are rewritten instead of compared. Review the diff before committing.
    pub fn check_golden(format: &str, name: &str, actual: &Value) {
        let path: PathBuf = [
            env!("CARGO_MANIFEST_DIR"),
            "tests/fixtures/golden",
            format,
            &format!("{name}.json"),
        ]
        .iter()
        .collect();
        if std::env::var("ROOTWATCH_UPDATE_GOLDEN").as_deref() == Ok("1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
            return;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with ROOTWATCH_UPDATE_GOLDEN=1 to create it",
                path.display()
            )
        });
        let expected: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            &expected,
            actual,
            "{} differs (run with ROOTWATCH_UPDATE_GOLDEN=1 to accept); actual:\n{}",
            path.display(),
            serde_json::to_string_pretty(actual).unwrap()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn truncate_counts_chars_and_marks_the_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        let long = "é".repeat(50);
        let cut = truncate(&long, 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with(TRUNCATED));
        assert!(cut.starts_with(&"é".repeat(20 - TRUNCATED.chars().count())));
        // Four-byte characters are never split.
        let emoji = "🔥".repeat(1000);
        let cut = truncate(&emoji, 300);
        assert_eq!(cut.chars().count(), 300);
        assert!(cut.trim_end_matches(TRUNCATED).chars().all(|c| c == '🔥'));
        // A limit below the marker's length still holds.
        assert!(truncate(&emoji, 5).chars().count() <= 5);
    }

    #[test]
    fn one_line_removes_line_breaks_controls_and_bidi_overrides() {
        assert_eq!(one_line("  a\nb\r\nc\td  "), "a b  c d");
        assert_eq!(one_line("x\u{2028}y\u{85}z"), "x y z");
        assert_eq!(one_line("a\u{0}b\u{1b}[31mc"), "a\u{fffd}b\u{fffd}[31mc");
        assert_eq!(one_line("admin\u{202e}txt.exe"), "admin\u{fffd}txt.exe");
        assert_eq!(one_line("\n> fake quote"), "> fake quote");
    }

    #[test]
    fn defang_breaks_every_url_and_leaves_other_text() {
        assert_eq!(
            defang("<http://evil.example|click>"),
            "<hxxp[:]//evil[.]example|click>"
        );
        assert_eq!(
            defang("HTTPS://a.b.example:8443/x.png?q=1"),
            "hxxps[:]//a[.]b[.]example:8443/x.png?q=1"
        );
        assert_eq!(defang("ftp://files.example"), "ftp[:]//files[.]example");
        assert_eq!(defang("://x.y"), "[:]//x[.]y");
        assert_eq!(defang("1http://a.b"), "1http[:]//a[.]b");
        assert_eq!(
            defang("go to www.evil.example now"),
            "go to www[.]evil[.]example now"
        );
        assert_eq!(defang("http://a.b://c.d"), "hxxp[:]//a[.]b[:]//c[.]d");
        assert_eq!(
            defang("us-east-1.evil.example/"),
            "us-east-1[.]evil[.]example/"
        );
        assert_eq!(defang("see evil.example/x.png"), "see evil[.]example/x.png");
        for kept in [
            "aws-cli/2.15.40 md/arch#x86_64 lang/python#3.11.8",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com",
            "203.0.113.45",
            "2001:db8::1",
            "CreateUser (iam.amazonaws.com) from 198.51.100.23.",
            "Chrome/124.0.0.0 Safari/537.36 Linux/4.14.301-224.520.amzn2.x86_64",
            "s3.amazonaws.com",
        ] {
            assert_eq!(defang(kept), kept);
        }
        // Defanging twice changes nothing more.
        let once = defang(HOSTILE);
        assert_eq!(defang(&once), once);
        assert!(!once.contains("://"));
    }

    #[test]
    fn display_is_one_line_defanged_and_cut() {
        let d = display(&long(), limit::USER_AGENT);
        assert_eq!(d.chars().count(), limit::USER_AGENT);
        assert!(d.ends_with(TRUNCATED));
        assert!(!d.contains('\n') && !d.contains("://"));
    }

    #[test]
    fn slack_escapes_control_characters_and_fits_after_escaping() {
        assert_eq!(
            slack("<!channel> a&b <@U1> <http://x|y>", 100),
            "&lt;!channel&gt; a&amp;b &lt;@U1&gt; &lt;http://x¦y&gt;"
        );
        // The limit counts the escaped text and never splits an entity.
        let s = slack(&"<".repeat(1000), 100);
        assert!(s.chars().count() <= 100);
        assert!(s.ends_with(TRUNCATED));
        assert_eq!(s.trim_end_matches(TRUNCATED), "&lt;".repeat(22));
    }

    #[test]
    fn teams_escapes_every_markdown_character() {
        assert_eq!(
            teams(
                "[click](http://evil.example) *b* _i_ ~s~ `c` ![x](y) # h",
                200
            ),
            r"\[click\]\(http://evil.example\) \*b\* \_i\_ \~s\~ \`c\` \!\[x\]\(y\) \# h"
        );
        assert_eq!(teams("- item", 20), r"\- item");
        assert_eq!(teams("+ item", 20), r"\+ item");
        assert_eq!(teams("12. item", 20), r"12\. item");
        assert_eq!(teams("12.", 20), r"12\.");
        assert_eq!(teams("198.51.100.7", 20), "198.51.100.7");
        assert_eq!(teams("a-b 1.2", 20), "a-b 1.2");
        assert_eq!(teams(r"a\*b", 20), r"a\\\*b");
        assert_eq!(
            teams("{{DATE(2024-01-01T00:00:00Z)}}", 80),
            r"\{\{DATE\(2024-01-01T00:00:00Z\)\}\}"
        );
        assert_eq!(teams("&#91;", 20), r"\&\#91;");
        for s in [HOSTILE, &long(), "-x", "3. x", "3.", "\\"] {
            let t = teams(&one_line(s), 5000);
            assert_eq!(unescaped_markdown(&t), None, "{t:.100}");
        }
        // Cutting keeps escapes whole, and the marker is escaped too.
        let t = teams(&"*".repeat(1000), 50);
        assert!(t.chars().count() <= 50);
        assert!(t.ends_with(r"…\[truncated\]"));
        assert_eq!(unescaped_markdown(&t), None);
    }

    #[test]
    fn region_shape() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "ap-southeast-4",
            "us-gov-west-1",
            "cn-north-1",
            "cn-northwest-1",
            "il-central-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us-east-1.evil.example/",
            "us-east-1/",
            "US-EAST-1",
            "us-east",
            "useast-1",
            "u-east-1",
            "us--1",
            "us-east-1a",
            "us-east-1 ",
            "us-east-١",
            "evil.example",
            "us-east-1#",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    fn with(region: Option<&str>, id: Option<&str>) -> Finding {
        let mut f = hostile();
        f.region = region.map(str::to_owned);
        f.event_id = id.map(str::to_owned);
        f
    }

    #[test]
    fn console_url_only_for_real_regions_with_encoded_ids() {
        let id = "3b5c2f8e-7d1a-4c9e-9f0b-2a6d8e4c1f73";
        assert_eq!(
            cloudtrail_event_url(&with(Some("us-east-1"), Some(id))).unwrap(),
            format!(
                "https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events/{id}"
            )
        );
        assert_eq!(
            cloudtrail_event_url(&with(Some("cn-north-1"), Some("e1"))).unwrap(),
            "https://cn-north-1.console.amazonaws.cn/cloudtrailv2/home?region=cn-north-1#/events/e1"
        );
        assert_eq!(
            cloudtrail_event_url(&with(Some("us-gov-west-1"), Some("e1"))).unwrap(),
            "https://us-gov-west-1.console.amazonaws-us-gov.com/cloudtrailv2/home?region=us-gov-west-1#/events/e1"
        );
        assert_eq!(
            cloudtrail_event_url(&with(Some("eu-west-1"), Some("<a|b> é/?#&"))).unwrap(),
            "https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1#/events/%3Ca%7Cb%3E%20%C3%A9%2F%3F%23%26"
        );
        for f in [
            with(Some("us-east-1.evil.example/"), Some(id)),
            with(Some("evil.example#"), Some(id)),
            with(Some("us-iso-east-1"), Some(id)),
            with(None, Some(id)),
            with(Some("us-east-1"), None),
            with(Some("us-east-1"), Some("")),
            with(Some("us-east-1"), Some(&"a".repeat(129))),
        ] {
            assert_eq!(
                cloudtrail_event_url(&f),
                None,
                "{:?} {:.40?}",
                f.region,
                f.event_id
            );
        }
        let url = cloudtrail_event_url(&hostile_linked()).unwrap();
        assert!(is_console_url(&url), "{url}");
        assert_eq!(url_hosts(&url), ["us-east-1.console.aws.amazon.com"]);
    }

    #[test]
    fn facts_are_displayed_values() {
        let f = hostile();
        for fact in facts(&f) {
            assert!(!fact.value.contains('\n'), "{}", fact.label);
            assert!(!fact.value.contains("://"), "{}", fact.label);
            assert!(
                fact.value.chars().count()
                    <= 3 * limit::VALUE + limit::EVENT_NAME + limit::PRINCIPAL
            );
        }
        let ua = facts(&f)
            .into_iter()
            .find(|x| x.label == "User agent")
            .unwrap();
        assert_eq!(ua.value.chars().count(), limit::USER_AGENT);
        assert!(ua.value.ends_with(TRUNCATED));
        let (names, more) = burst_event_names(hostile_burst().summary.as_ref().unwrap());
        assert!(names.len() <= limit::MAX_EVENT_NAMES);
        assert_eq!(names.len() + more, 42);
    }

    #[test]
    fn burst_names_are_distinct_and_in_order() {
        let (_, f) = golden_findings().remove(2);
        let s = f.summary.unwrap();
        assert_eq!(
            burst_names_line(&s),
            "Event names (5 distinct): DescribeInstances, DescribeSecurityGroups, DescribeVpcs, \
             DescribeKeyPairs, GetCallerIdentity"
        );
        assert!(
            burst_headline(&s).starts_with(
                "37 occurrences between 2024-05-14T10:15:02Z and 2024-05-14T10:19:47Z"
            )
        );
    }
}
