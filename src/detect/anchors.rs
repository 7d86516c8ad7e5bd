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
//! writer may escape (`"`, `\`, `/`, control and non-ASCII characters),
//! since the bytes are searched as written. (`\u` escapes are handled by
//! the prefilter: a body with one is always parsed.)

use std::collections::HashMap;

use regex_syntax::hir::{Hir, HirKind};
use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Modifier, Quantifier, SelectorPattern, SigmaRule,
    SigmaString, SigmaValue, StringPart,
};

/// Shorter texts are too common to be worth a search.
const MIN_ANCHOR: usize = 3;

/// `None`: no anchor (any record may match). `Some(texts)`: a match needs
/// one of `texts` in the record.
pub type Anchors = Option<Vec<String>>;

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

/// Every one of the parts: one part's anchors suffice, the most selective:
/// not a service's host name (`eventSource` and TLS details name it in
/// every call to the service, where an event name is in a few), then the
/// longest shortest text, then the fewest texts.
fn best(parts: Vec<Anchors>) -> Anchors {
    parts.into_iter().flatten().max_by_key(|texts| {
        let common = texts.iter().any(|t| t.ends_with(".amazonaws.com"));
        let shortest = texts.iter().map(String::len).min().unwrap_or(usize::MAX);
        (!common, shortest, std::cmp::Reverse(texts.len()))
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
        Detection::Keywords(values) => union(values.iter().map(|v| value(v, false)).collect()),
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
    let anchors: Vec<Anchors> = i.values.iter().map(|v| value(v, re)).collect();
    if m.contains(&Modifier::All) {
        best(anchors)
    } else {
        union(anchors)
    }
}

fn value(v: &SigmaValue, re: bool) -> Anchors {
    let text = match v {
        SigmaValue::String(s) if re => regex_anchor(&s.original)?,
        SigmaValue::String(s) => string_anchor(s)?,
        // Numbers may be written in several ways, booleans are short, and
        // null matches an absent field.
        _ => return None,
    };
    Some(vec![text])
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

/// The longest run of `text` without a character a JSON writer may escape,
/// lower-cased; `None` when shorter than [`MIN_ANCHOR`].
fn longest_piece(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii() || c.is_ascii_control() || matches!(c, '"' | '\\' | '/'))
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

    #[test]
    fn a_selection_takes_its_most_selective_field() {
        // An event name is rarer than its service's host name.
        assert_eq!(
            anchors(
                "  sel:\n    eventSource: cloudtrail.amazonaws.com\n    eventName:\n      - StopLogging\n      - DeleteTrail\n  condition: sel\n"
            ),
            Some(vec!["deletetrail".into(), "stoplogging".into()])
        );
        assert_eq!(
            anchors(
                "  sel:\n    eventSource: cloudtrail.amazonaws.com\n    userAgent|contains: 'Jersey'\n  condition: sel\n"
            ),
            Some(vec!["jersey".into()])
        );
        assert_eq!(
            anchors(
                "  sel:\n    eventName:\n      - StopLogging\n      - DeleteTrail\n  condition: sel\n"
            ),
            Some(vec!["deletetrail".into(), "stoplogging".into()])
        );
    }

    #[test]
    fn or_needs_every_part_and_not_gives_nothing() {
        assert_eq!(
            anchors(
                "  a:\n    eventName: StopLogging\n  b:\n    eventName: DeleteDetector\n  condition: a or b\n"
            ),
            Some(vec!["deletedetector".into(), "stoplogging".into()])
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
            Some(vec!["stoplogging".into()])
        );
        assert_eq!(
            anchors(
                "  sel_a:\n    eventName: StopLogging\n  sel_b:\n    eventName: DeleteTrail\n  condition: 1 of sel_*\n"
            ),
            Some(vec!["deletetrail".into(), "stoplogging".into()])
        );
    }

    #[test]
    fn values_give_their_longest_searchable_piece() {
        assert_eq!(
            anchors(
                "  sel:\n    userAgent|contains: 'Jersey/${project.version}'\n  condition: sel\n"
            ),
            Some(vec!["${project.version}".into()])
        );
        assert_eq!(
            anchors("  sel:\n    eventName: 'Put*Policy'\n  condition: sel\n"),
            Some(vec!["policy".into()])
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
    fn a_regular_expression_gives_a_literal_every_match_contains() {
        assert_eq!(
            anchors(
                "  sel:\n    userIdentity.arn|re: '.+:assumed-role/aws:.+'\n  condition: sel\n"
            ),
            Some(vec![":assumed-role".into()])
        );
        assert_eq!(
            anchors("  sel:\n    eventName|re: '^(Stop|Delete)Logging$'\n  condition: sel\n"),
            Some(vec!["logging".into()])
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
