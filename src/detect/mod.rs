//! Detection: rules as plain values behind one trait, evaluated on each
//! record. Pure: no clock, no I/O.

pub mod allowlist;
pub mod mitre;
mod prefilter;
pub mod rules;
pub mod suppress;

use std::collections::{HashMap, HashSet};

pub use allowlist::{AllowList, CidrSet, Scope};
pub use suppress::{Glob, Suppression};

use crate::event::Record;
use crate::finding::{Finding, Severity, Technique};

/// What a rule says when it fires; the detector turns it into a [`Finding`].
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub severity: Severity,
    pub reason: String,
    pub mfa: Option<bool>,
}

/// Settings the rules read.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub allowlist: AllowList,
    /// eventNames that `root-api-call` and the rules built on it ignore.
    pub root_api_call_excluded_events: HashSet<String>,
}

pub trait Rule: Send + Sync {
    fn id(&self) -> &'static str;
    fn title(&self) -> &'static str;
    /// The usual severity; some rules lower it for a given event (read-only
    /// root calls) and configuration can replace it.
    fn default_severity(&self) -> Severity;
    /// The record fields the rule reads, for the documentation.
    fn fields(&self) -> &'static str;
    /// The MITRE ATT&CK technique the rule's findings are evidence of
    /// (constants in [`mitre`], each choice explained there).
    fn technique(&self) -> Technique;
    fn evaluate(&self, rec: &Record<'_>, ctx: &Context) -> Option<Hit>;
}

/// Every built-in rule, in the order findings are reported.
pub fn builtin_rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(rules::RootConsoleLogin),
        Box::new(rules::RootConsoleLoginFailure),
        Box::new(rules::RootConsoleLoginWithoutMfa),
        Box::new(rules::IamConsoleLoginWithoutMfa),
        Box::new(rules::RootApiCall),
        Box::new(rules::RootApiCallWithoutMfa),
        Box::new(rules::RootAccessKeyUsed),
        Box::new(rules::RootAccessKeyCreated),
        Box::new(rules::RootPrivilegedSession),
        Box::new(allowlist::SourceIpNotAllowed),
    ]
}

pub fn rule_ids() -> Vec<&'static str> {
    builtin_rules().iter().map(|r| r.id()).collect()
}

/// The ATT&CK technique of the built-in rule `id`; `None` for any other id
/// (posture rules among them).
pub fn technique_of(id: &str) -> Option<Technique> {
    builtin_rules()
        .into_iter()
        .find(|r| r.id() == id)
        .map(|r| r.technique())
}

/// Validated detection settings.
#[derive(Debug, Clone, Default)]
pub struct DetectSettings {
    pub disabled: HashSet<String>,
    pub severity: HashMap<String, Severity>,
    pub context: Context,
    pub suppressions: Vec<Suppression>,
}

struct Enabled {
    rule: Box<dyn Rule>,
    severity: Option<Severity>,
}

pub struct Detector {
    rules: Vec<Enabled>,
    suppressions: Vec<Suppression>,
    ctx: Context,
    prefilter: prefilter::Prefilter,
}

/// What evaluating one record did besides producing findings.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub findings: usize,
    pub suppressed: usize,
}

impl Detector {
    pub fn new(settings: DetectSettings) -> Self {
        let rules = builtin_rules()
            .into_iter()
            .filter(|r| !settings.disabled.contains(r.id()))
            .map(|rule| Enabled {
                severity: settings.severity.get(rule.id()).copied(),
                rule,
            })
            .collect();
        let prefilter =
            prefilter::Prefilter::new(&|id| !settings.disabled.contains(id), &settings.context);
        Detector {
            rules,
            suppressions: settings.suppressions,
            ctx: settings.context,
            prefilter,
        }
    }

    pub fn enabled_rules(&self) -> impl Iterator<Item = &dyn Rule> {
        self.rules.iter().map(|e| e.rule.as_ref())
    }

    /// Runs every enabled rule on `rec`, appending findings to `out`.
    pub fn evaluate(&self, rec: &Record<'_>, out: &mut Vec<Finding>) -> Evaluation {
        let mut eval = Evaluation::default();
        for e in &self.rules {
            let Some(hit) = e.rule.evaluate(rec, &self.ctx) else {
                continue;
            };
            let id = e.rule.id();
            if self.suppressions.iter().any(|s| s.matches(id, rec)) {
                eval.suppressed += 1;
                continue;
            }
            let severity = e.severity.unwrap_or(hit.severity);
            out.push(
                Finding::new(rec, id, e.rule.title(), severity, hit.reason, hit.mfa)
                    .with_technique(e.rule.technique()),
            );
            eval.findings += 1;
        }
        eval
    }
}

#[cfg(test)]
mod tests;
