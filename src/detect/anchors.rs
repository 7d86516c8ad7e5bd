//! Anchors of a Sigma rule: texts of which a record's bytes must hold at
//! least one (ASCII case aside) for the rule to match, so the prefilter
//! can pass over records no loaded rule can match without parsing them.
//!
//! The proof runs over the rule's condition: a selection matches only when
//! each of its fields does, so any one field's values will do (the most
//! selective is kept); `or` and `1 of` need one of their parts' anchors;
//! `not`, regular expressions without a required literal, CIDRs, numbers,
//! `exists`, field references and the like give no anchor, and neither does
//! a rule whose condition can hold without one. A value's anchor is its
//! longest literal run without wildcards, cut at the characters a JSON
//! writer escapes (`"`, `\`, control and non-ASCII characters), since the
//! bytes are searched as written; a `/`, which a writer may leave alone or
//! write as `\/`, is searched in both spellings. (`\u` escapes are handled
//! by the prefilter: a body with one is always parsed.)

use std::collections::HashMap;

use regex_syntax::hir::{Hir, HirKind};
use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Modifier, Quantifier, SelectorPattern, SigmaRule,
    SigmaString, SigmaValue, StringPart,
};

/// Shorter texts are too common to be worth a search.
const MIN_ANCHOR: usize = 3;

/// What a record holds when a rule may match it, ASCII case aside.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Anchor {
    /// A text anywhere in the record's bytes.
    Text(String),
    /// A string value, whole, of a key of this name (the last part of the
    /// rule's field path): checked by reading the value after each such
    /// key, found in the pass that looks for the built-in rules' texts,
    /// instead of searching for the value.
    Value { key: String, value: String },
    /// Text within a string value of a key of this name (a `contains`,
    /// `startswith` or `endswith` value, a wildcard pattern's literal, a
    /// literal every match of a regular expression holds), read after the
    /// key the same way.
    Part { key: String, text: String },
}

impl Anchor {
    /// The text, lower case.
    pub fn text(&self) -> &str {
        match self {
            Anchor::Text(t) | Anchor::Value { value: t, .. } | Anchor::Part { text: t, .. } => t,
        }
    }
}

/// Keys CloudTrail writes with string values (the record contents of the
/// CloudTrail User Guide): text within them is looked for in their value
/// alone. Any other key may hold an object (`requestParameters`), whose
/// text is searched in the whole record instead. (A key of this list that
/// holds something else is only read as "may match".)
const STRING_KEYS: &[&str] = &[
    "eventName",
    "eventSource",
    "eventType",
    "eventCategory",
    "userAgent",
    "errorCode",
    "errorMessage",
    "sourceIPAddress",
    "awsRegion",
    "arn",
    "type",
    "userName",
    "principalId",
    "accountId",
    "recipientAccountId",
    "invokedBy",
    "vpcEndpointId",
];

/// `None`: no anchor (any record may match). `Some(anchors)`: a match needs
/// one of `anchors` in the record.
pub type Anchors = Option<Vec<Anchor>>;

/// The anchors of a rule: one of them is in every record it matches.
pub fn of_rule(rule: &SigmaRule) -> Anchors {
    let d = &rule.detection;
    union(
        d.conditions
            .iter()
            .map(|c| condition(c, &d.named))
            .collect(),
    )
}

/// Any of the parts: all their anchors, or none when one part has none.
fn union(parts: Vec<Anchors>) -> Anchors {
    let mut all = Vec::new();
    for p in parts {
        all.extend(p?);
    }
    all.sort();
    all.dedup();
    Some(all)
}

/// Every one of the parts: one part's anchors suffice, the most selective
/// and cheapest: not a service's host name (`eventSource` and TLS details
/// name it in every call to the service, where an event name is in a few),
/// then whole values (no search: the value after each key of the name is
/// looked up), then the longest shortest text, then the fewest texts.
fn best(parts: Vec<Anchors>) -> Anchors {
    parts.into_iter().flatten().max_by_key(|anchors| {
        let common = anchors.iter().any(|a| a.text().ends_with(".amazonaws.com"));
        let values = anchors.iter().all(|a| !matches!(a, Anchor::Text(_)));
        let shortest = anchors.iter().map(|a| a.text().len()).min();
        (
            !common,
            values,
            shortest.unwrap_or(usize::MAX),
            std::cmp::Reverse(anchors.len()),
        )
    })
}

fn condition(c: &ConditionExpr, named: &HashMap<String, Detection>) -> Anchors {
    match c {
        ConditionExpr::And(parts) => best(parts.iter().map(|p| condition(p, named)).collect()),
        ConditionExpr::Or(parts) => union(parts.iter().map(|p| condition(p, named)).collect()),
        ConditionExpr::Not(_) => None,
        ConditionExpr::Identifier(name) => detection(named.get(name)?),
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let parts: Vec<Anchors> = named
                .iter()
                .filter(|(name, _)| match pattern {
                    SelectorPattern::Them => !name.starts_with('_'),
                    SelectorPattern::Pattern(p) => glob(p, name),
                })
                .map(|(_, d)| detection(d))
                .collect();
            if parts.is_empty() {
                return None;
            }
            match quantifier {
                Quantifier::All => best(parts),
                Quantifier::Any | Quantifier::Count(_) => union(parts),
            }
        }
    }
}

/// `selection_*` style patterns: `*` is any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    crate::detect::Glob::new(pattern).matches(name)
}

fn detection(d: &Detection) -> Anchors {
    match d {
        Detection::AllOf(items) => best(items.iter().map(item).collect()),
        Detection::AnyOf(parts) => union(parts.iter().map(detection).collect()),
        Detection::And(parts) => best(parts.iter().map(detection).collect()),
        Detection::Keywords(values) => {
            union(values.iter().map(|v| value(v, false, None)).collect())
        }
        // An array's members: `all` holds for an empty array, with no text.
        Detection::ArrayMatch { .. } | Detection::Conditional { .. } => None,
    }
}

fn item(i: &DetectionItem) -> Anchors {
    let m = &i.field.modifiers;
    let opaque = m.iter().any(|m| {
        !matches!(
            m,
            Modifier::Contains
                | Modifier::StartsWith
                | Modifier::EndsWith
                | Modifier::All
                | Modifier::Cased
                | Modifier::Re
                | Modifier::IgnoreCase
                | Modifier::Multiline
                | Modifier::DotAll
        )
    });
    if opaque || i.values.is_empty() {
        return None;
    }
    let re = m.contains(&Modifier::Re);
    let key = i
        .field
        .name
        .as_deref()
        .and_then(|f| f.rsplit('.').next())
        .filter(|k| !k.is_empty() && k.bytes().all(|b| is_plain(b) && b != b'['));
    if let Some(key) = key
        && m.iter().all(|m| *m == Modifier::Cased)
        && let Some(values) = whole_values(key, &i.values)
    {
        return Some(values);
    }
    let within = key.filter(|k| STRING_KEYS.contains(k));
    let anchors: Vec<Anchors> = i.values.iter().map(|v| value(v, re, within)).collect();
    if m.contains(&Modifier::All) {
        best(anchors)
    } else {
        union(anchors)
    }
}

/// A byte a JSON writer spells one way (not `"`, `\\`, `/`, control or
/// non-ASCII characters).
fn is_plain(b: u8) -> bool {
    b.is_ascii() && !b.is_ascii_control() && !b"\"\\/".contains(&b)
}

/// `field: X` (one value or a list, without wildcards), compared whole:
/// the values, when each is spelled one way.
fn whole_values(key: &str, values: &[SigmaValue]) -> Option<Vec<Anchor>> {
    values
        .iter()
        .map(|v| match v {
            SigmaValue::String(s) => match s.parts.as_slice() {
                [StringPart::Plain(t)] if !t.is_empty() && t.bytes().all(is_plain) => {
                    Some(Anchor::Value {
                        key: key.to_owned(),
                        value: t.to_ascii_lowercase(),
                    })
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A value's anchor: text within the value of `within` (a key with string
/// values), else text anywhere in the record.
fn value(v: &SigmaValue, re: bool, within: Option<&str>) -> Anchors {
    let text = match v {
        SigmaValue::String(s) if re => regex_anchor(&s.original)?,
        SigmaValue::String(s) => string_anchor(s)?,
        // Numbers may be written in several ways, booleans are short, and
        // null matches an absent field.
        _ => return None,
    };
    Some(match within {
        // A value with an escape is not read, only taken as "may": its
        // `/` need not be spelled twice.
        Some(key) => vec![Anchor::Part {
            key: key.to_owned(),
            text,
        }],
        None => spellings(&text).into_iter().map(Anchor::Text).collect(),
    })
}

/// Most `/` in an anchor spelled both ways; a longer run is cut at them.
const MAX_SLASHES: usize = 2;

/// The ways a JSON writer may spell `text`: a `/` as itself or as `\/`
/// (every other character an anchor holds has one spelling).
fn spellings(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in text.chars() {
        if c == '/' {
            out = out
                .into_iter()
                .flat_map(|s| [format!("{s}/"), format!("{s}\\/")])
                .collect();
        } else {
            out.iter_mut().for_each(|s| s.push(c));
        }
    }
    out
}

/// The longest searchable piece of the literal parts of a Sigma string.
fn string_anchor(s: &SigmaString) -> Option<String> {
    s.parts
        .iter()
        .filter_map(|p| match p {
            StringPart::Plain(t) => longest_piece(t),
            StringPart::Special(_) => None,
        })
        .max_by_key(String::len)
}

/// The longest run of `text` without a character a JSON writer escapes
/// (`"`, `\\`, control characters) or may write as `\\u` (non-ASCII), with
/// at most [`MAX_SLASHES`] `/` (which it may write as `\\/`, see
/// [`spellings`]), lower-cased; `None` when shorter than [`MIN_ANCHOR`].
fn longest_piece(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii() || c.is_ascii_control() || matches!(c, '"' | '\\'))
        .flat_map(|run| {
            let slashes = run.matches('/').count();
            let pieces: Vec<&str> = if slashes <= MAX_SLASHES {
                vec![run]
            } else {
                run.split('/').collect()
            };
            pieces
        })
        .max_by_key(|p| p.len())
        .filter(|p| p.len() >= MIN_ANCHOR)
        .map(str::to_ascii_lowercase)
}

/// A literal that every match of the regular expression contains.
fn regex_anchor(pattern: &str) -> Option<String> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    required(&hir)?.into_iter().max_by_key(String::len)
}

/// Texts one of which every match of `hir` contains: a concatenation's
/// longest literal run, a repetition of at least once, a group; nothing for
/// alternations (kept simple) and optional parts.
fn required(hir: &Hir) -> Option<Vec<String>> {
    match hir.kind() {
        HirKind::Literal(l) => {
            let text = std::str::from_utf8(&l.0).ok()?;
            Some(vec![longest_piece(text)?])
        }
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => required(&r.sub),
        HirKind::Concat(parts) => {
            // Adjacent literals form one run; each run is required.
            let mut runs = Vec::new();
            let mut run = String::new();
            for p in parts {
                match p.kind() {
                    HirKind::Literal(l) => match std::str::from_utf8(&l.0) {
                        Ok(t) => run.push_str(t),
                        Err(_) => runs.push(std::mem::take(&mut run)),
                    },
                    _ => {
                        runs.push(std::mem::take(&mut run));
                        if let Some(inner) = required(p) {
                            runs.extend(inner);
                        }
                    }
                }
            }
            runs.push(run);
            let best = runs
                .iter()
                .filter_map(|r| longest_piece(r))
                .max_by_key(String::len)?;
            Some(vec![best])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(detection: &str) -> SigmaRule {
        let text = format!(
            "title: t\nid: 00000000-0000-4000-8000-000000000000\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n{detection}"
        );
        let c = rsigma_parser::parse_sigma_yaml(&text).unwrap();
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        c.rules.into_iter().next().unwrap()
    }

    fn anchors(detection: &str) -> Anchors {
        of_rule(&rule(detection))
    }

    fn t(text: &str) -> Anchor {
        Anchor::Text(text.into())
    }

    fn p(key: &str, text: &str) -> Anchor {
        Anchor::Part {
            key: key.into(),
            text: text.into(),
        }
    }

    fn n(name: &str) -> Anchor {
        Anchor::Value {
            key: "eventName".into(),
            value: name.into(),
        }
    }

    #[test]
    fn a_selection_takes_its_most_selective_field() {
        // An event name is rarer than its service's host name.
        assert_eq!(
            anchors(
                "  sel:\n    eventSource: cloudtrail.amazonaws.com\n    eventName:\n      - StopLogging\n      - DeleteTrail\n  condition: sel\n"
            ),
            Some(vec![n("deletetrail"), n("stoplogging")])
        );
        assert_eq!(
            anchors(
                "  sel:\n    eventSource: cloudtrail.amazonaws.com\n    userAgent|contains: 'Jersey'\n  condition: sel\n"
            ),
            Some(vec![p("userAgent", "jersey")])
        );
        assert_eq!(
            anchors(
                "  sel:\n    eventName:\n      - StopLogging\n      - DeleteTrail\n  condition: sel\n"
            ),
            Some(vec![n("deletetrail"), n("stoplogging")])
        );
        // A whole name needs no search: it is taken over a longer text.
        assert_eq!(
            anchors(
                "  sel:\n    eventName|cased: GetCallerIdentity\n    userAgent|contains: 'TruffleHog'\n  condition: sel\n"
            ),
            Some(vec![n("getcalleridentity")])
        );
        // Part of a name, or a name a writer may spell two ways: a text.
        assert_eq!(
            anchors("  sel:\n    eventName|startswith: 'Delete'\n  condition: sel\n"),
            Some(vec![p("eventName", "delete")])
        );
        assert_eq!(
            anchors("  sel:\n    eventName: 'Odd/Name'\n  condition: sel\n"),
            Some(vec![p("eventName", "odd/name")])
        );
    }

    #[test]
    fn or_needs_every_part_and_not_gives_nothing() {
        assert_eq!(
            anchors(
                "  a:\n    eventName: StopLogging\n  b:\n    eventName: DeleteDetector\n  condition: a or b\n"
            ),
            Some(vec![n("deletedetector"), n("stoplogging")])
        );
        assert_eq!(
            anchors(
                "  a:\n    eventName: StopLogging\n  b:\n    errorCode: AccessDenied\n  condition: a or not b\n"
            ),
            None
        );
        assert_eq!(
            anchors(
                "  a:\n    eventName: StopLogging\n  f:\n    errorCode: AccessDenied\n  condition: a and not f\n"
            ),
            Some(vec![n("stoplogging")])
        );
        assert_eq!(
            anchors(
                "  sel_a:\n    eventName: StopLogging\n  sel_b:\n    eventName: DeleteTrail\n  condition: 1 of sel_*\n"
            ),
            Some(vec![n("deletetrail"), n("stoplogging")])
        );
    }

    #[test]
    fn values_give_their_longest_searchable_piece() {
        assert_eq!(
            anchors(
                "  sel:\n    userAgent|contains: 'Jersey/${project.version}'\n  condition: sel\n"
            ),
            Some(vec![p("userAgent", "jersey/${project.version}")])
        );
        assert_eq!(
            anchors("  sel:\n    eventName: 'Put*Policy'\n  condition: sel\n"),
            Some(vec![p("eventName", "policy")])
        );
        // Too short, a number, a CIDR, a field reference: no anchor.
        for d in [
            "  sel:\n    eventName: 'a*'\n  condition: sel\n",
            "  sel:\n    requestParameters.maxResults: 50\n  condition: sel\n",
            "  sel:\n    sourceIPAddress|cidr: 10.0.0.0/8\n  condition: sel\n",
            "  sel:\n    userIdentity.arn|fieldref: requestParameters.userName\n  condition: sel\n",
        ] {
            assert_eq!(anchors(d), None, "{d}");
        }
    }

    #[test]
    fn text_in_a_string_key_is_read_in_its_value_and_elsewhere_searched() {
        assert_eq!(
            anchors("  sel:\n    userAgent|contains: 'S3 Browser'\n  condition: sel\n"),
            Some(vec![p("userAgent", "s3 browser")])
        );
        // requestParameters holds an object: its text is anywhere in it.
        assert_eq!(
            anchors("  sel:\n    requestParameters|contains: 'Suspended'\n  condition: sel\n"),
            Some(vec![t("suspended")])
        );
    }

    #[test]
    fn a_slash_is_searched_in_both_spellings_and_many_cut_the_text() {
        assert_eq!(
            anchors("  sel:\n    requestParameters|contains: 'a/b'\n  condition: sel\n"),
            Some(vec![t("a/b"), t("a\\/b")])
        );
        // Three or more: the longest piece between them.
        assert_eq!(
            anchors("  sel:\n    userAgent|contains: 'x/Boto3/y/z'\n  condition: sel\n"),
            Some(vec![p("userAgent", "boto3")])
        );
    }

    #[test]
    fn a_regular_expression_gives_a_literal_every_match_contains() {
        assert_eq!(
            anchors(
                "  sel:\n    userIdentity.arn|re: '.+:assumed-role/aws:.+'\n  condition: sel\n"
            ),
            Some(vec![p("arn", ":assumed-role/aws:")])
        );
        assert_eq!(
            anchors("  sel:\n    eventName|re: '^(Stop|Delete)Logging$'\n  condition: sel\n"),
            Some(vec![p("eventName", "logging")])
        );
        assert_eq!(
            anchors("  sel:\n    eventName|re: 'a|b'\n  condition: sel\n"),
            None
        );
        assert_eq!(
            anchors("  sel:\n    eventName|re: '(abcd)?x'\n  condition: sel\n"),
            None
        );
    }
}
