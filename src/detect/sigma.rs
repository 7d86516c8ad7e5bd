//! Sigma rules for CloudTrail: rule files in SigmaHQ's format, parsed and
//! evaluated by the rsigma crates. This module is only the CloudTrail glue:
//! which files and rules are taken, how a record is shown to the engine, and
//! what a match becomes (a finding of rule `sigma:<rule id>`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rsigma_eval::{Engine, Event, EventValue, JsonEvent};
use rsigma_parser::{Level, SigmaRule};
use serde_json::Value;

use crate::event::Record;
use crate::finding::{Severity, SigmaRuleRef, Technique};

/// What rootwatch calls a Sigma rule's findings: `sigma:<rule id>`.
pub const RULE_PREFIX: &str = "sigma:";

/// One loaded rule, as its findings show it.
#[derive(Debug)]
pub struct LoadedRule {
    /// `sigma:<id>`.
    pub rule: String,
    pub title: String,
    pub severity: Severity,
    /// The first ATT&CK technique among its tags.
    pub technique: Option<Technique>,
    pub reference: Arc<SigmaRuleRef>,
    /// The file it came from.
    pub path: PathBuf,
}

/// Loaded Sigma rules, ready to evaluate.
pub struct SigmaRules {
    engine: Engine,
    /// By the rule's own id.
    rules: HashMap<String, Arc<LoadedRule>>,
    /// In load order (files sorted by path), for listings.
    order: Vec<Arc<LoadedRule>>,
    /// Files with rules of another log source, passed over.
    pub skipped: Vec<(PathBuf, String)>,
}

impl std::fmt::Debug for SigmaRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigmaRules")
            .field("rules", &self.order.len())
            .finish_non_exhaustive()
    }
}

/// A rule file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("Sigma rule file {}: {message}", path.display())]
pub struct SigmaError {
    pub path: PathBuf,
    pub message: String,
}

fn error(path: &Path, message: impl Into<String>) -> SigmaError {
    SigmaError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Every `.yml` and `.yaml` file under `path` (recursively, sorted), or
/// `path` itself when it is a file, whatever its name.
fn rule_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), SigmaError> {
    let meta = std::fs::metadata(path).map_err(|e| error(path, format!("cannot read it: {e}")))?;
    if !meta.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(path).map_err(|e| error(path, format!("cannot list it: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| error(path, format!("cannot list it: {e}")))?;
        let p = entry.path();
        if p.is_dir() {
            rule_files(&p, &mut found)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
        {
            found.push(p);
        }
    }
    found.sort();
    out.extend(found);
    Ok(())
}

/// Whether a rule is for CloudTrail: `product: aws` and `service: cloudtrail`.
fn is_cloudtrail(rule: &SigmaRule) -> bool {
    let is =
        |v: &Option<String>, want: &str| v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(want));
    is(&rule.logsource.product, "aws") && is(&rule.logsource.service, "cloudtrail")
}

fn describe_logsource(rule: &SigmaRule) -> String {
    let l = &rule.logsource;
    let mut s = String::new();
    for (k, v) in [
        ("product", &l.product),
        ("service", &l.service),
        ("category", &l.category),
    ] {
        if let Some(v) = v {
            let _ = write!(s, "{}{k}: {v}", if s.is_empty() { "" } else { ", " });
        }
    }
    if s.is_empty() { "none".into() } else { s }
}

fn severity(level: Option<Level>) -> (Severity, &'static str) {
    match level {
        Some(Level::Informational) => (Severity::Info, "informational"),
        Some(Level::Low) => (Severity::Low, "low"),
        // A rule without a level is Sigma's default, medium.
        Some(Level::Medium) | None => (Severity::Medium, "medium"),
        Some(Level::High) => (Severity::High, "high"),
        Some(Level::Critical) => (Severity::Critical, "critical"),
    }
}

/// `attack.t1562.008` -> `T1562.008`; other tags (tactics, groups) -> None.
fn technique_id(tag: &str) -> Option<String> {
    let t = tag.strip_prefix("attack.")?;
    let digits = t.strip_prefix('t').or_else(|| t.strip_prefix('T'))?;
    let (main, sub) = digits.split_once('.').unwrap_or((digits, ""));
    let numeric = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !numeric(main, 4) || !(sub.is_empty() || numeric(sub, 3)) {
        return None;
    }
    Some(format!("T{digits}"))
}

impl SigmaRules {
    /// Loads the rules under `paths` (files, or directories read
    /// recursively). A rule for another log source is an error naming its
    /// file, or is passed over (and listed in `skipped`) with
    /// `skip_other_logsources`. So is a file that does not parse, a rule
    /// without an `id` (its findings are named by it), and an id loaded
    /// twice.
    pub fn load(paths: &[PathBuf], skip_other_logsources: bool) -> Result<Self, SigmaError> {
        let mut files = Vec::new();
        for p in paths {
            rule_files(p, &mut files)?;
        }
        let mut set = SigmaRules {
            engine: Engine::new(),
            rules: HashMap::new(),
            order: Vec::new(),
            skipped: Vec::new(),
        };
        for path in files {
            set.load_file(&path, skip_other_logsources)?;
        }
        Ok(set)
    }

    fn load_file(&mut self, path: &Path, skip_other_logsources: bool) -> Result<(), SigmaError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(path, format!("cannot read it: {e}")))?;
        let collection =
            rsigma_parser::parse_sigma_yaml(&text).map_err(|e| error(path, e.to_string()))?;
        if !collection.errors.is_empty() {
            return Err(error(path, collection.errors.join("; ")));
        }
        if !collection.correlations.is_empty() {
            return Err(error(
                path,
                "Sigma correlation rules are not supported yet; load the rules they build on alone",
            ));
        }
        if !collection.filters.is_empty() {
            return Err(error(
                path,
                "Sigma filter documents are not supported; use detect.suppress",
            ));
        }
        if collection.rules.is_empty() {
            return Err(error(path, "holds no Sigma rule"));
        }
        for rule in &collection.rules {
            if !is_cloudtrail(rule) {
                let what = format!(
                    "rule `{}` is for log source {}, not product: aws, service: cloudtrail",
                    rule.title,
                    describe_logsource(rule)
                );
                if skip_other_logsources {
                    self.skipped.push((path.to_owned(), what));
                    continue;
                }
                return Err(error(
                    path,
                    format!(
                        "{what} (set detect.sigma.skip_other_logsources = true to pass such rules over)"
                    ),
                ));
            }
            let Some(id) = rule.id.clone().filter(|i| !i.trim().is_empty()) else {
                return Err(error(
                    path,
                    format!(
                        "rule `{}` has no id; rootwatch names its findings sigma:<id>",
                        rule.title
                    ),
                ));
            };
            if let Some(other) = self.rules.get(&id) {
                return Err(error(
                    path,
                    format!(
                        "rule id {id} is also the id of a rule in {}",
                        other.path.display()
                    ),
                ));
            }
            self.engine
                .add_rule(rule)
                .map_err(|e| error(path, format!("rule `{}` ({id}): {e}", rule.title)))?;
            let (severity, level) = severity(rule.level);
            let techniques: Vec<String> =
                rule.tags.iter().filter_map(|t| technique_id(t)).collect();
            let loaded = Arc::new(LoadedRule {
                rule: format!("{RULE_PREFIX}{id}"),
                title: rule.title.clone(),
                severity,
                technique: techniques.first().map(|t| Technique {
                    id: Cow::Owned(t.clone()),
                    name: Cow::Borrowed(""),
                }),
                reference: Arc::new(SigmaRuleRef {
                    id: id.clone(),
                    level: level.to_owned(),
                    author: rule.author.clone(),
                    references: rule.references.clone(),
                    falsepositives: rule.falsepositives.clone(),
                    techniques,
                }),
                path: path.to_owned(),
            });
            self.order.push(Arc::clone(&loaded));
            self.rules.insert(id, loaded);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The loaded rules, in load order.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<LoadedRule>> {
        self.order.iter()
    }

    /// The `sigma:<id>` names of the loaded rules.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|r| r.rule.as_str())
    }

    /// The rules that match `rec`, in load order.
    pub fn evaluate(&self, rec: &Record<'_>) -> Vec<Arc<LoadedRule>> {
        let Ok(value) = serde_json::from_str::<Value>(rec.raw) else {
            return Vec::new();
        };
        self.evaluate_value(&value)
    }

    pub fn evaluate_value(&self, value: &Value) -> Vec<Arc<LoadedRule>> {
        let event = CloudTrailEvent {
            inner: JsonEvent::borrow(value),
            value,
        };
        let mut hits: Vec<Arc<LoadedRule>> = self
            .engine
            .evaluate(&event)
            .into_iter()
            .filter_map(|r| r.header.rule_id.and_then(|id| self.rules.get(&id).cloned()))
            .collect();
        let position = |r: &Arc<LoadedRule>| self.order.iter().position(|o| Arc::ptr_eq(o, r));
        hits.sort_by_key(position);
        hits.dedup_by(|a, b| Arc::ptr_eq(a, b));
        hits
    }
}

/// A CloudTrail record as the engine sees it: as rsigma's JSON event, except
/// that a field holding an object reads as that object's JSON text, so
/// `requestParameters|contains: 'Suspended'` (as SigmaHQ's rules write it)
/// matches a value anywhere inside `requestParameters`.
struct CloudTrailEvent<'a> {
    inner: JsonEvent<'a>,
    value: &'a Value,
}

/// The value at a dotted path: a key with the whole path first (some
/// pipelines flatten), then nested objects.
fn at_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    if let Some(x) = v.get(path) {
        return Some(x);
    }
    path.split('.').try_fold(v, |v, k| v.get(k))
}

impl Event for CloudTrailEvent<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        match self.inner.get_field(path)? {
            EventValue::Map(_) => at_path(self.value, path)
                .filter(|v| v.is_object())
                .map(|v| EventValue::Str(Cow::Owned(v.to_string()))),
            other => Some(other),
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.inner.any_string_value(pred)
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        self.inner.all_string_values()
    }

    fn to_json(&self) -> Value {
        self.value.clone()
    }

    fn top_level_keys(&self) -> Option<Vec<Cow<'_, str>>> {
        self.inner.top_level_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technique_ids_come_from_attack_tags_only() {
        assert_eq!(
            technique_id("attack.t1562.008").as_deref(),
            Some("T1562.008")
        );
        assert_eq!(technique_id("attack.t1078").as_deref(), Some("T1078"));
        assert_eq!(technique_id("attack.defense-evasion"), None);
        assert_eq!(technique_id("attack.g0016"), None);
        assert_eq!(technique_id("attack.t15"), None);
        assert_eq!(technique_id("cve.2021-1234"), None);
    }
}
