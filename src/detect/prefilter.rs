//! A byte scan that proves a body cannot produce a finding, so replay can
//! count it without parsing it. It must never be wrong in that direction:
//! whenever it cannot prove silence it answers "may alert" and the body is
//! parsed in full. Tests hold it against the full parse on every corpus.
//!
//! Why the proof holds, rule by rule (docs/rules.md, "What it detects"):
//! * every root rule needs `userIdentity.type = "Root"`, so the bytes
//!   `Root` appear;
//! * `iam-console-login-without-mfa` needs `eventName = "ConsoleLogin"`;
//! * `source-ip-not-allowed` needs a `sourceIPAddress` that parses as an
//!   address outside the allow list (with scope `root`, a root event).
//!
//! JSON can spell any character as `\uXXXX`, so a body with `\u` anywhere
//! is always parsed; no other escape yields a letter, digit, `.` or `:`.

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, MatchKind};

use super::allowlist::{Scope, source_ip_text};
use super::{Anchor, Context, Detector};

const SOURCE_IP_KEY: &[u8] = b"sourceIPAddress";

/// What a match of the one search means.
#[derive(Clone, Copy)]
enum Needle {
    /// A text some enabled rule needs: the body may alert.
    Alerting,
    /// `sourceIPAddress`: its value decides.
    SourceIp,
    /// A key some Sigma rule needs a whole value of: its value decides
    /// (the values are `SigmaSearch::Anchors::values[_]`).
    Key(usize),
}

/// The texts the enabled rules need, searched for in one pass over the
/// body (three substring searches, one after the other, cost about three
/// times as much on bodies that hold none of them, which is most).
pub(crate) struct Prefilter {
    search: AhoCorasick,
    needles: Vec<Needle>,
    sigma: SigmaSearch,
}

/// Texts per SIMD searcher.
const PACKED_TEXTS: usize = 16;

thread_local! {
    /// A body in lower case, for the Sigma anchors' search; reused.
    static LOWERED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What the loaded Sigma rules need of a body.
enum SigmaSearch {
    /// No Sigma rule: nothing.
    Never,
    /// A rule without anchors: every body may match.
    Always,
    /// A value of a key among its `values` (the keys are searched for with
    /// the built-in rules' texts), or one of `texts` in the body.
    Anchors {
        values: Vec<KeyValues>,
        texts: Texts,
    },
}

/// What a key's value must be, in lower case, for a rule to match: one of
/// `whole`, or holding one of `parts`.
#[derive(Default)]
struct KeyValues {
    whole: HashSet<Vec<u8>>,
    parts: Vec<memchr::memmem::Finder<'static>>,
}

impl KeyValues {
    fn matches(&self, lower: &[u8]) -> bool {
        self.whole.contains(lower) || self.parts.iter().any(|f| f.find(lower).is_some())
    }
}

/// Texts searched for in the body in lower case.
enum Texts {
    None,
    Automaton(AhoCorasick),
    /// SIMD searchers, when the texts allow them.
    Packed(Vec<aho_corasick::packed::Searcher>),
}

impl Texts {
    fn new(texts: &[&str]) -> Self {
        if texts.is_empty() {
            return Texts::None;
        }
        // The texts are lower case, and are searched for in a lower case
        // copy of the body: a case-insensitive automaton gets nothing from
        // the SIMD searchers and ran at a third of the speed of copy and
        // search together (0.45 s against 0.15 s on a 302 MB trail, one
        // core). The SIMD searcher takes a few dozen texts at most: several
        // of them, one pass each, still beat one automaton.
        let packed: Option<Vec<_>> = texts
            .chunks(PACKED_TEXTS)
            .map(|c| {
                aho_corasick::packed::Config::new()
                    .builder()
                    .extend(c)
                    .build()
            })
            .collect();
        match packed {
            Some(searchers) => Texts::Packed(searchers),
            None => {
                Texts::Automaton(AhoCorasick::new(texts).expect("literal anchors always build"))
            }
        }
    }

    /// Whether one of the texts is in `body`, ASCII case aside. A body with
    /// a non-ASCII byte always may: Sigma compares in Unicode lower case,
    /// where the Kelvin sign is a `k`.
    fn may_match(&self, body: &[u8]) -> bool {
        if matches!(self, Texts::None) {
            return false;
        }
        if !body.is_ascii() {
            return true;
        }
        LOWERED.with_borrow_mut(|buf| {
            buf.clear();
            buf.extend(body.iter().map(u8::to_ascii_lowercase));
            match self {
                Texts::None => false,
                Texts::Automaton(ac) => ac.is_match(buf.as_slice()),
                Texts::Packed(searchers) => {
                    searchers.iter().any(|s| s.find(buf.as_slice()).is_some())
                }
            }
        })
    }
}

impl Prefilter {
    /// Only the needles of `rules` enabled (by id) and of `ctx`'s allow
    /// list: a disabled rule's text is no reason to parse.
    /// `sigma`: the anchors of the loaded Sigma rules (a body holding none
    /// of them, ASCII case aside, matches none of the rules); `None` when
    /// some rule has none, and every body may alert.
    pub(crate) fn new(
        enabled: &dyn Fn(&str) -> bool,
        ctx: &Context,
        sigma: Option<&[Anchor]>,
    ) -> Self {
        let mut patterns: Vec<&[u8]> = vec![b"Root"];
        let mut needles = vec![Needle::Alerting];
        if enabled("iam-console-login-without-mfa") {
            patterns.push(b"ConsoleLogin");
            needles.push(Needle::Alerting);
        }
        let list = &ctx.allowlist;
        if enabled("source-ip-not-allowed") && !list.cidrs.is_empty() && list.scope != Scope::Root {
            // Scope `root` needs a root event: `Root` is searched already.
            patterns.push(SOURCE_IP_KEY);
            needles.push(Needle::SourceIp);
        }
        let sigma = match sigma {
            None => SigmaSearch::Always,
            Some([]) => SigmaSearch::Never,
            Some(anchors) => {
                let mut keys: Vec<&str> = Vec::new();
                let mut values: Vec<KeyValues> = Vec::new();
                let mut texts = Vec::new();
                for a in anchors {
                    let key = match a {
                        Anchor::Value { key, .. } | Anchor::Part { key, .. } => key.as_str(),
                        Anchor::Text(t) => {
                            texts.push(t.to_ascii_lowercase());
                            continue;
                        }
                    };
                    let i = match keys.iter().position(|k| *k == key) {
                        Some(i) => i,
                        None => {
                            keys.push(key);
                            values.push(KeyValues::default());
                            keys.len() - 1
                        }
                    };
                    let lower = a.text().to_ascii_lowercase().into_bytes();
                    match a {
                        Anchor::Value { .. } => {
                            values[i].whole.insert(lower);
                        }
                        _ => values[i]
                            .parts
                            .push(memchr::memmem::Finder::new(&lower).into_owned()),
                    }
                }
                for (i, key) in keys.iter().enumerate() {
                    patterns.push(key.as_bytes());
                    needles.push(Needle::Key(i));
                }
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                SigmaSearch::Anchors {
                    values,
                    texts: Texts::new(&texts),
                }
            }
        };
        let search = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(&patterns)
            .expect("a handful of short literal patterns always build");
        Prefilter {
            search,
            needles,
            sigma,
        }
    }

    fn may_alert(&self, body: &[u8], ctx: &Context) -> bool {
        let values = match &self.sigma {
            SigmaSearch::Always => return true,
            SigmaSearch::Never => &[][..],
            SigmaSearch::Anchors { values, .. } => values.as_slice(),
        };
        if has_unicode_escape(body) {
            return true;
        }
        // One pass for the built-in rules' texts and the Sigma rules' keys.
        for m in self.search.find_iter(body) {
            match self.needles[m.pattern().as_usize()] {
                Needle::Alerting => return true,
                Needle::SourceIp if address_may_alert(body, m.start(), ctx) => return true,
                Needle::Key(i) if value_may_match(body, m.start(), m.end(), &values[i]) => {
                    return true;
                }
                Needle::SourceIp | Needle::Key(_) => {}
            }
        }
        match &self.sigma {
            SigmaSearch::Anchors { texts, .. } => texts.may_match(body),
            _ => false,
        }
    }
}

/// Whether the key name found at `at..end` in `body` may be a key whose
/// value is one of `values` (lower case). The name must be a whole key,
/// `"name"` followed by `:`; elsewhere (inside a longer word, a value such
/// as `"arn:aws:..."`) it is not this key. Only a key's plain string value
/// can be told apart, and `null`, which equals and holds no text; anything
/// else (another type, an escaped document, non-ASCII letters that Sigma's
/// Unicode lower case may turn into ASCII ones) may.
fn value_may_match(body: &[u8], at: usize, end: usize, values: &KeyValues) -> bool {
    // After `"` the key itself; after `.` the end of a flattened key
    // (`"userIdentity.type"`), which Sigma reads before nested ones.
    if at == 0 || !matches!(body[at - 1], b'"' | b'.') {
        return false;
    }
    let Some(rest) = body[end..].strip_prefix(b"\"") else {
        return false;
    };
    let Some(rest) = rest.trim_ascii_start().strip_prefix(b":") else {
        return false;
    };
    let rest = rest.trim_ascii_start();
    let Some(text) = rest.strip_prefix(b"\"") else {
        let null = rest
            .strip_prefix(b"null")
            .is_some_and(|r| r.first().is_none_or(|b| !b.is_ascii_alphanumeric()));
        return !null;
    };
    let Some(close) = memchr::memchr2(b'"', b'\\', text) else {
        return true;
    };
    if text[close] == b'\\' {
        // Escapes (`\/` in an ARN, `\"` in a user agent): read it decoded.
        return match unescaped_lower(text) {
            Some(v) if v.is_ascii() => values.matches(&v),
            _ => true,
        };
    }
    let value = &text[..close];
    if !value.is_ascii() {
        return true;
    }
    let mut buf = [0u8; 256];
    match buf.get_mut(..value.len()) {
        Some(lower) => {
            lower.copy_from_slice(value);
            lower.make_ascii_lowercase();
            values.matches(lower)
        }
        None => values.matches(&value.to_ascii_lowercase()),
    }
}

/// The JSON string starting at `text` (after its opening quote), decoded
/// and in ASCII lower case; `None` for a `\u` escape (the caller parses
/// the record) or no closing quote.
fn unescaped_lower(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len().min(256));
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => return Some(out),
            b'\\' => out.push(match bytes.next()? {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                _ => return None,
            }),
            _ => out.push(b.to_ascii_lowercase()),
        }
    }
    None
}

/// Whether the `sourceIPAddress` key at `at` in `body` may hold an address
/// outside the allow list.
fn address_may_alert(body: &[u8], at: usize, ctx: &Context) -> bool {
    let after = &body[at + SOURCE_IP_KEY.len()..];
    let Some(value) = (at > 0 && body[at - 1] == b'"')
        .then(|| simple_string_value(after))
        .flatten()
    else {
        // Not the plain `"sourceIPAddress": "..."` form (a value of
        // another type, text in an escaped document): parse it.
        return true;
    };
    source_ip_text(value).is_some_and(|ip| !ctx.allowlist.cidrs.contains(ip))
}

/// Whether `\u` occurs. Backslashes are rare, `u` is not: looking for the
/// backslash alone is much cheaper than a two-byte substring search.
fn has_unicode_escape(body: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', body).any(|i| body.get(i + 1) == Some(&b'u'))
}

/// After a key's name: `"`, optional whitespace, `:`, optional whitespace
/// and a string without escapes; the string's text.
fn simple_string_value(after: &[u8]) -> Option<&str> {
    let rest = after.strip_prefix(b"\"")?;
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

impl Detector {
    /// False only when no enabled rule can fire on any record in `body`
    /// (one JSON document, of any envelope); true when it may.
    pub fn may_alert(&self, body: &[u8]) -> bool {
        self.prefilter.may_alert(body, &self.ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Item, decode_body};
    use crate::detect::{AllowList, CidrSet, DetectSettings, allowlist::parse_cidr};
    use proptest::prelude::*;

    fn detector(cidrs: &[&str], scope: Scope) -> Detector {
        Detector::new(DetectSettings {
            context: Context {
                allowlist: AllowList {
                    cidrs: CidrSet::new(cidrs.iter().map(|c| parse_cidr(c).unwrap())),
                    asns: Default::default(),
                    geoip: None,
                    scope,
                },
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn findings(d: &Detector, body: &str) -> usize {
        let mut n = 0;
        decode_body(body, &mut |item| {
            if let Ok(Item::Record(r)) = item {
                let mut out = Vec::new();
                d.evaluate(&r, &mut out);
                n += out.len();
            }
        });
        n
    }

    /// The property that matters: a body the full parse flags is never
    /// passed over.
    fn check(d: &Detector, body: &str) -> bool {
        let fired = findings(d, body);
        assert!(
            fired == 0 || d.may_alert(body.as_bytes()),
            "the prefilter passed over a body with {fired} finding(s): {body}"
        );
        fired > 0
    }

    fn detectors() -> Vec<Detector> {
        vec![
            detector(&[], Scope::All),
            detector(
                &["10.0.0.0/8", "203.0.113.0/24", "2001:db8::/32"],
                Scope::All,
            ),
            detector(&["10.0.0.0/8", "203.0.113.0/24"], Scope::Root),
        ]
    }

    /// Every record and wrapper in tests/fixtures/third_party, raw and in
    /// each envelope, with every allow-list setting.
    #[test]
    fn never_passes_over_a_corpus_finding() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/third_party");
        let mut bodies = crate::fixtures::corpus_records();
        for (file, key) in [
            ("panther-analysis/all_cloudtrail_rule_tests.jsonl", "log"),
            (
                "aws-docs-examples/doc_examples_with_context.jsonl",
                "record",
            ),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                bodies.push(v[key].to_string());
            }
        }
        let mut wrapped = Vec::new();
        for b in &bodies {
            wrapped.push(format!(
                r#"{{"detail-type":"AWS API Call via CloudTrail","source":"aws.iam","detail":{b}}}"#
            ));
            wrapped.push(format!(
                r#"{{"Type":"Notification","Message":{}}}"#,
                serde_json::to_string(b).unwrap()
            ));
            wrapped.push(format!(r#"{{"Records":[{b}]}}"#));
        }
        // The records as one CloudTrail log file, read with this prefilter
        // and without it: the same findings.
        let file = format!(r#"{{"Records":[{}]}}"#, bodies.join(","));
        for d in detectors() {
            let count = |filter: &dyn Fn(&[u8]) -> bool| {
                let (mut events, mut fired) = (0, 0);
                crate::decode::decode_reader_filtered(file.as_bytes(), filter, &mut |item| {
                    events += 1;
                    if let Ok(Item::Record(r)) = item {
                        let mut out = Vec::new();
                        d.evaluate(&r, &mut out);
                        fired += out.len();
                    }
                })
                .unwrap();
                (events, fired)
            };
            let all = count(&|_| true);
            assert!(all.1 > 0);
            assert_eq!(count(&|b| d.may_alert(b)), all);
        }
        bodies.extend(wrapped);
        for d in detectors() {
            let (mut flagged, mut skipped) = (0, 0);
            for b in &bodies {
                if check(&d, b) {
                    flagged += 1;
                } else if !d.may_alert(b.as_bytes()) {
                    skipped += 1;
                }
            }
            assert!(flagged > 0, "the corpus has findings");
            assert!(skipped > 0, "and the prefilter proves some bodies silent");
        }
    }

    #[test]
    fn a_key_is_read_only_where_it_is_a_key() {
        let mut v = KeyValues::default();
        v.whole.insert(b"root".to_vec());
        v.parts
            .push(memchr::memmem::Finder::new(b":assumed-role/aws:").into_owned());
        let may = |body: &str, key: &str| {
            let at = body.find(key).unwrap();
            value_may_match(body.as_bytes(), at, at + key.len(), &v)
        };
        assert!(may(r#"{"type":"Root"}"#, "type"));
        assert!(!may(r#"{"type":"IAMUser"}"#, "type"));
        assert!(may(r#"{"userIdentity.type" : "ROOT"}"#, "type"));
        // A value that starts with the name, a longer key, null: not it.
        assert!(!may(
            r#"{"x":"arn:aws:sts::1:assumed-role/aws:ec2"}"#,
            "arn"
        ));
        assert!(!may(r#"{"types":"Root"}"#, "type"));
        assert!(!may(r#"{"type":null}"#, "type"));
        // Text within, also behind escapes; other types and \u may.
        assert!(may(
            r#"{"arn":"arn:aws:sts::1:assumed-role/aws:ec2/i-1"}"#,
            "arn"
        ));
        assert!(may(
            r#"{"arn":"arn:aws:sts::1:assumed-role\/aws:ec2"}"#,
            "arn"
        ));
        assert!(!may(
            r#"{"arn":"arn:aws:sts::1:assumed-role\/admin"}"#,
            "arn"
        ));
        assert!(may(r#"{"type":7}"#, "type"));
        assert!(may(r#"{"type":{"a":1}}"#, "type"));
        assert!(may(r#"{"type":"R\u006fot"}"#, "type"));
    }

    #[test]
    fn reasons_to_parse() {
        let d = detector(&["203.0.113.0/24"], Scope::All);
        let silent = r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole"},"eventName":"GetObject","sourceIPAddress":"203.0.113.9"}"#;
        assert!(!d.may_alert(silent.as_bytes()));
        for body in [
            // Outside the allow list.
            r#"{"userIdentity":{"type":"AssumedRole"},"sourceIPAddress":"198.51.100.1"}"#,
            // Root, or spelled with an escape.
            r#"{"userIdentity":{"type":"Root"},"sourceIPAddress":"203.0.113.9"}"#,
            r#"{"userIdentity":{"type":"R\u006fot"},"sourceIPAddress":"203.0.113.9"}"#,
            r#"{"eventName":"ConsoleLogin","sourceIPAddress":"203.0.113.9"}"#,
            // Not the plain string form.
            r#"{"sourceIPAddress" : 3405803777}"#,
            r#"{"Type":"Notification","Message":"{\"sourceIPAddress\":\"198.51.100.1\"}"}"#,
        ] {
            assert!(d.may_alert(body.as_bytes()), "{body}");
        }
        // Service names are not addresses; spaces around the colon are fine.
        assert!(!d.may_alert(br#"{"sourceIPAddress" : "AWS Internal"}"#));
        assert!(!detector(&[], Scope::All).may_alert(br#"{"sourceIPAddress":"198.51.100.1"}"#));
    }

    #[test]
    fn disabled_rules_need_no_parse() {
        let d = Detector::new(DetectSettings {
            disabled: ["iam-console-login-without-mfa".to_owned()].into(),
            ..Default::default()
        });
        assert!(!d.may_alert(br#"{"eventName":"ConsoleLogin"}"#));
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("Root".to_owned()),
            Just("IAMUser".to_owned()),
            Just("AssumedRole".to_owned()),
            Just("ConsoleLogin".to_owned()),
            Just("Success".to_owned()),
            Just("No".to_owned()),
            Just("AKIAEXAMPLE".to_owned()),
            Just("true".to_owned()),
            Just("AWS Internal".to_owned()),
            Just("cloudformation.amazonaws.com".to_owned()),
            Just("signin.amazonaws.com".to_owned()),
            Just("AwsServiceEvent".to_owned()),
            Just("CreateAccessKey".to_owned()),
            Just(" 198.51.100.7 ".to_owned()),
            Just("::ffff:10.1.2.3".to_owned()),
            Just("2001:db8::1".to_owned()),
            Just("2001:db9::1".to_owned()),
            "(10|203|198)\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
            "[a-zA-Z0-9 .:]{0,12}",
        ]
    }

    fn value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        prop_oneof![
            8 => text().prop_map(Value::String),
            1 => Just(Value::Null),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => any::<u32>().prop_map(Value::from),
        ]
    }

    fn record() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::{Map, Value};
        const TOP: [&str; 10] = [
            "eventVersion",
            "eventID",
            "eventTime",
            "eventName",
            "eventSource",
            "eventType",
            "sourceIPAddress",
            "readOnly",
            "errorCode",
            "recipientAccountId",
        ];
        const IDENTITY: [&str; 6] = [
            "type",
            "arn",
            "accountId",
            "accessKeyId",
            "userName",
            "invokedBy",
        ];
        (
            prop::collection::vec((prop::sample::select(&TOP[..]), value()), 0..10),
            prop::collection::vec((prop::sample::select(&IDENTITY[..]), value()), 0..6),
            value(),
            value(),
            value(),
            value(),
            value(),
        )
            .prop_map(move |(fields, ident, login, mfa, assumed, session_mfa, user)| {
                let mut m = Map::new();
                for (k, v) in fields {
                    m.insert(k.to_owned(), v);
                }
                let mut ui = Map::new();
                for (k, v) in ident {
                    ui.insert(k.to_owned(), v);
                }
                ui.insert(
                    "sessionContext".into(),
                    serde_json::json!({"assumedRoot": assumed, "attributes": {"mfaAuthenticated": session_mfa}}),
                );
                m.insert("userIdentity".into(), Value::Object(ui));
                m.insert("responseElements".into(), serde_json::json!({"ConsoleLogin": login}));
                m.insert("additionalEventData".into(), serde_json::json!({"MFAUsed": mfa}));
                m.insert("requestParameters".into(), serde_json::json!({"userName": user}));
                Value::Object(m)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn never_passes_over_a_generated_finding(rec in record(), pretty in any::<bool>()) {
            let body = if pretty {
                serde_json::to_string_pretty(&rec).unwrap()
            } else {
                serde_json::to_string(&rec).unwrap()
            };
            for d in detectors() {
                check(&d, &body);
                check(&d, &format!(r#"{{"detail-type":"AWS API Call via CloudTrail","detail":{body}}}"#));
                check(&d, &format!(r#"{{"Type":"Notification","Message":{}}}"#, serde_json::to_string(&body).unwrap()));
            }
        }
    }
}
