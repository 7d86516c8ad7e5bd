//! Detection: rules as plain values behind one trait, evaluated on each
//! record. Pure: no clock, no I/O.

pub mod allowlist;
mod anchors;
pub mod mitre;
mod prefilter;
mod rule_file;
pub mod rules;
pub mod sigma;
pub mod suppress;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use allowlist::{AllowList, CidrSet, Scope};
pub use anchors::Anchor;
pub use sigma::{SigmaError, SigmaRules};
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

/// The rules whose findings are root API calls: each says whether the call
/// is a task that needs root credentials.
pub const ROOT_API_CALL_RULES: [&str; 3] = [
    "root-api-call",
    "root-api-call-without-mfa",
    "root-access-key-used",
];

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
    /// Loaded Sigma rules (`[detect.sigma]`); their names, `sigma:<id>`,
    /// are rule ids like the built-in ones for `disabled` and `severity`.
    pub sigma: Option<Arc<SigmaRules>>,
    /// Context added to every finding (`[enrich]`, `[[detect.expected]]`,
    /// `[detect.runbooks]`).
    pub enrichment: Arc<crate::enrich::Enrichment>,
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
    sigma: Option<Arc<SigmaRules>>,
    /// Sigma rules turned off, and severities replaced, by `sigma:<id>`.
    sigma_disabled: HashSet<String>,
    sigma_severity: HashMap<String, Severity>,
    enrichment: Arc<crate::enrich::Enrichment>,
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
        let sigma = settings.sigma.filter(|s| !s.is_empty());
        let sigma_anchors = match &sigma {
            None => Some(Vec::new()),
            Some(s) => s.anchors(&settings.disabled),
        };
        let prefilter = prefilter::Prefilter::new(
            &|id| !settings.disabled.contains(id),
            &settings.context,
            sigma_anchors.as_deref(),
        );
        let is_sigma = |id: &String| id.starts_with(sigma::RULE_PREFIX);
        Detector {
            rules,
            suppressions: settings.suppressions,
            ctx: settings.context,
            prefilter,
            sigma,
            sigma_disabled: settings
                .disabled
                .iter()
                .filter(|id| is_sigma(id))
                .cloned()
                .collect(),
            sigma_severity: settings
                .severity
                .iter()
                .filter(|(id, _)| is_sigma(id))
                .map(|(id, s)| (id.clone(), *s))
                .collect(),
            enrichment: settings.enrichment,
        }
    }

    /// The loaded Sigma rules, if any.
    pub fn sigma(&self) -> Option<&SigmaRules> {
        self.sigma.as_deref()
    }

    /// The context `[enrich]` and friends add to findings.
    pub fn enrichment(&self) -> &crate::enrich::Enrichment {
        &self.enrichment
    }

    /// Adds the configured context to `f` (a no-op without any).
    pub fn enrich(&self, f: &mut Finding) {
        if !self.enrichment.is_empty() {
            self.enrichment.apply(f, chrono::Utc::now());
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
            let mut f = Finding::new(rec, id, e.rule.title(), severity, hit.reason, hit.mfa)
                .with_technique(e.rule.technique());
            if ROOT_API_CALL_RULES.contains(&id) {
                f.requires_root = Some(crate::enrich::root_tasks::requires_root(rec));
            }
            self.enrich(&mut f);
            out.push(f);
            eval.findings += 1;
        }
        if let Some(sigma) = &self.sigma {
            for hit in sigma.evaluate(rec) {
                let rule = &hit.rule;
                if self.sigma_disabled.contains(&rule.rule) {
                    continue;
                }
                if self.suppressions.iter().any(|s| s.matches(&rule.rule, rec)) {
                    eval.suppressed += 1;
                    continue;
                }
                let severity = self
                    .sigma_severity
                    .get(&rule.rule)
                    .copied()
                    .unwrap_or(rule.severity);
                let mut f = Finding::new(
                    rec,
                    &rule.rule,
                    &rule.title,
                    severity,
                    sigma_reason(rule, hit.correlation.as_deref(), rec),
                    None,
                );
                f.mitre_attack = rule.technique.clone();
                f.sigma = Some(Arc::clone(&rule.reference));
                f.correlation = hit.correlation;
                self.enrich(&mut f);
                out.push(f);
                eval.findings += 1;
            }
        }
        eval
    }
}

/// `Sigma rule "AWS CloudTrail Important Change" (by Vasiliy Burov) matched
/// StopLogging by arn:aws:iam::111122223333:user/alice`.
fn sigma_reason(
    rule: &sigma::LoadedRule,
    correlation: Option<&crate::finding::Correlation>,
    rec: &Record<'_>,
) -> String {
    let by = rule
        .reference
        .author
        .as_deref()
        .map(|a| format!(" (by {a})"))
        .unwrap_or_default();
    if let Some(c) = correlation {
        let group: Vec<String> = c.group_by.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let group = if group.is_empty() {
            String::new()
        } else {
            format!(" for {}", group.join(", "))
        };
        return format!(
            "Sigma correlation \"{}\"{by}: {} reached {} within {} s{group}, completed by {}",
            rule.title,
            c.kind,
            c.value,
            c.timespan_secs,
            rec.event_name.get().unwrap_or("an event")
        );
    }
    let event = rec.event_name.get().unwrap_or("an event");
    let who = rec
        .user_identity
        .arn
        .non_empty()
        .or(rec.user_identity.kind.non_empty())
        .unwrap_or("an unknown principal");
    format!("Sigma rule \"{}\"{by} matched {event} by {who}", rule.title)
}

#[cfg(test)]
mod tests;
