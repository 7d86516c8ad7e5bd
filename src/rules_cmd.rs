//! `rootwatch rules`: what a rule author needs at hand. `list` shows every
//! rule; `test` runs Sigma rules over events, through the same replay as
//! `rootwatch replay`, and checks the events each rule says it matches.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::detect::{DetectSettings, Detector, SigmaError, SigmaRules};

/// One line per rule: built-in rules, then the loaded Sigma rules.
pub fn list(detect: &DetectSettings) -> String {
    let mut out = String::new();
    for r in crate::detect::builtin_rules() {
        let off = if detect.disabled.contains(r.id()) {
            " (disabled)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{}{off}\tbuilt-in\t{}",
            r.id(),
            detect
                .severity
                .get(r.id())
                .copied()
                .unwrap_or(r.default_severity()),
            r.title(),
            r.technique().id
        );
    }
    if let Some(s) = &detect.sigma {
        for r in s.rules() {
            let kind = r
                .correlation
                .map_or("sigma".to_owned(), |c| format!("sigma {c}"));
            let off = if detect.disabled.contains(&r.rule) {
                " (disabled)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{}\t{}\t{}{off}\t{kind} by {}\t{}",
                r.rule,
                detect.severity.get(&r.rule).copied().unwrap_or(r.severity),
                r.title,
                r.reference.author.as_deref().unwrap_or("(no author)"),
                r.path.display()
            );
        }
    }
    out
}

/// What `rules test` found: the report, and whether every expected event
/// was matched.
pub struct TestReport {
    pub text: String,
    pub passed: bool,
}

/// What `rules test --config` takes from the config file.
pub struct TestBase {
    /// `[detect]`: suppressions, severities, disabled rules, enrichment.
    pub detect: DetectSettings,
    /// `[detect.sigma] skip_other_logsources`.
    pub skip_other_logsources: bool,
}

/// Runs the Sigma rules under `rules` (alone, without the built-in rules)
/// over `events`, under `base`'s settings when given.
pub fn test(
    rules: &Path,
    events: &[PathBuf],
    base: Option<TestBase>,
) -> Result<TestReport, SigmaError> {
    let (mut detect, skip) = match base {
        Some(b) => (b.detect, b.skip_other_logsources),
        None => (DetectSettings::default(), false),
    };
    let sigma = Arc::new(SigmaRules::load(&[rules.to_path_buf()], skip)?);
    detect
        .disabled
        .extend(crate::detect::rule_ids().into_iter().map(str::to_owned));
    detect.sigma = Some(Arc::clone(&sigma));
    let detector = Detector::new(detect);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut replay = crate::replay::Replay::new(
        &detector,
        std::num::NonZeroUsize::new(1_000_000).expect("not zero"),
    );
    let io = replay.run(events, &mut out, &mut err);
    let mut text = String::from_utf8_lossy(&err).into_owned();
    if let Err(e) = io {
        let _ = writeln!(text, "reading the events: {e}");
    }
    // Rule -> eventIDs it matched.
    let mut matched: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out).lines() {
        let Ok(f) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let rule = f["rule"].as_str().unwrap_or("").to_owned();
        let id = f["event_id"].as_str().unwrap_or("(no eventID)").to_owned();
        let _ = writeln!(
            text,
            "match\t{rule}\t{id}\t{}",
            f["event_name"].as_str().unwrap_or("")
        );
        matched.entry(rule).or_default().insert(id);
    }
    let mut passed = true;
    for r in sigma.rules() {
        let got = matched.get(&r.rule);
        let _ = writeln!(
            text,
            "rule\t{}\t{} event(s)\t{}",
            r.rule,
            got.map_or(0, BTreeSet::len),
            r.title
        );
        let missing: Vec<&String> = r
            .expected_events
            .iter()
            .filter(|e| !got.is_some_and(|g| g.contains(*e)))
            .collect();
        if !missing.is_empty() {
            passed = false;
            let _ = writeln!(
                text,
                "FAIL\t{}\texpected to match {} but did not ({})",
                r.rule,
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                r.path.display()
            );
        }
    }
    Ok(TestReport { text, passed })
}
