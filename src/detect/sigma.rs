//! Sigma rules for CloudTrail: rule files in SigmaHQ's format, parsed and
//! evaluated by the rsigma crates. This module is only the CloudTrail glue:
//! which files and rules are taken, how a record is shown to the engine, and
//! what a match becomes (a finding of rule `sigma:<rule id>`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rsigma_eval::{
    CorrelationAction, CorrelationConfig, CorrelationEngine, Engine, EvaluationResult, Event,
    EventValue, JsonEvent, TimestampFallback,
};
use rsigma_parser::{
    ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType, Level, SigmaRule,
};
use serde_json::Value;

use crate::event::{EventKey, Record};
use crate::finding::{Correlation, Severity, SigmaRuleRef, Technique};

/// Most (correlation, group) windows kept at once; past it the engine
/// evicts expired ones first, then the oldest (a correlation that would
/// have fired on what was evicted may not).
pub const MAX_CORRELATION_STATES: usize = 100_000;
/// Most entries kept in one group's window (events of an `event_count`,
/// values of a `value_count`); past it the oldest are dropped, which can
/// only under-count.
pub const MAX_GROUP_ENTRIES: usize = 10_000;
/// Events fed to the correlations remembered by key, with what they
/// fired: a copy of an event (a redelivered message, the same record from
/// S3 and EventBridge) is not counted twice, and gets the same correlation
/// findings again, so an alert that failed is retried.
const FED_EVENTS: usize = 100_000;

/// What rootwatch calls a Sigma rule's findings: `sigma:<rule id>`.
pub const RULE_PREFIX: &str = "sigma:";

/// One loaded rule (a detection or a correlation), as its findings show it.
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
    /// For a correlation: its type (`event_count`, `temporal`, ...).
    pub correlation: Option<&'static str>,
    /// Texts one of which every record it matches holds (see
    /// [`super::anchors`]); `None` when there is no such set.
    pub anchors: Option<Vec<super::Anchor>>,
    /// eventIDs the rule's author says it matches (the rule's
    /// `rootwatch_expected_events`), checked by `rootwatch rules test`.
    pub expected_events: Vec<String>,
}

/// A rule that matched one event: a detection, or a correlation that this
/// event completed.
#[derive(Debug, Clone)]
pub struct SigmaHit {
    pub rule: Arc<LoadedRule>,
    pub correlation: Option<Arc<Correlation>>,
}

/// Loaded Sigma rules, ready to evaluate.
pub struct SigmaRules {
    engine: Engine,
    /// Detection and correlation rules by their own id.
    rules: HashMap<String, Arc<LoadedRule>>,
    /// In load order (files sorted by path), for listings.
    order: Vec<Arc<LoadedRule>>,
    /// Files with rules of another log source, passed over.
    pub skipped: Vec<(PathBuf, String)>,
    /// Parsed rules, kept until the correlations are built.
    parsed: Vec<SigmaRule>,
    pending: Vec<(PathBuf, CorrelationRule)>,
    correlations: Option<Correlations>,
}

/// The correlation rules and their state, shared by every thread that
/// evaluates records.
struct Correlations {
    state: Mutex<CorrelationState>,
    /// Ids of the detection rules some correlation counts: only events that
    /// match one of them take the lock.
    feeds: HashSet<String>,
}

struct CorrelationState {
    engine: CorrelationEngine,
    fed: lru::LruCache<EventKey, Vec<SigmaHit>>,
}

impl std::fmt::Debug for SigmaRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigmaRules")
            .field("rules", &self.order.len())
            .finish_non_exhaustive()
    }
}

/// A rule file that cannot be used, and why: `path:line: message`, the
/// line when one is known.
#[derive(Debug)]
pub struct SigmaError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for SigmaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sigma rule file {}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for SigmaError {}

fn error(path: &Path, message: impl Into<String>) -> SigmaError {
    SigmaError {
        path: path.to_owned(),
        line: None,
        message: message.into(),
    }
}

/// A problem with the rule titled `title` (with `id`) in `path`, whose
/// text is `text`: placed at the rule's `key:` line, or the line holding a
/// word of the message (see [`super::rule_file`]).
fn rule_error(
    path: &Path,
    text: &str,
    (id, title): (Option<&str>, &str),
    key: Option<&str>,
    message: String,
) -> SigmaError {
    SigmaError {
        line: super::rule_file::rule_line(text, id, title, key, &message),
        ..error(path, message)
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
            parsed: Vec::new(),
            pending: Vec::new(),
            correlations: None,
        };
        for path in files {
            set.load_file(&path, skip_other_logsources)?;
        }
        set.build_correlations()?;
        Ok(set)
    }

    /// Checks the correlation rules (ids, the rules they name) and builds
    /// their engine over every loaded detection rule.
    fn build_correlations(&mut self) -> Result<(), SigmaError> {
        let pending = std::mem::take(&mut self.pending);
        let parsed = std::mem::take(&mut self.parsed);
        if pending.is_empty() {
            return Ok(());
        }
        // A correlation names rules by id or by name.
        let mut names: HashMap<String, String> = HashMap::new();
        for r in &parsed {
            if let (Some(name), Some(id)) = (&r.name, &r.id) {
                names.insert(name.clone(), id.clone());
            }
        }
        for (_, c) in &pending {
            if let (Some(name), Some(id)) = (&c.name, &c.id) {
                names.insert(name.clone(), id.clone());
            }
        }
        let mut engine = CorrelationEngine::new(CorrelationConfig {
            // CloudTrail's own time: a window is about when calls were made,
            // not when rootwatch read them. A record without it is not
            // counted.
            timestamp_fields: vec!["eventTime".to_owned()],
            timestamp_fallback: TimestampFallback::Skip,
            max_state_entries: MAX_CORRELATION_STATES,
            max_group_entries: Some(MAX_GROUP_ENTRIES),
            // After firing, a group starts again: five failed logins alert
            // once, not once for every failure after the fifth.
            action_on_match: CorrelationAction::Reset,
            ..CorrelationConfig::default()
        });
        for r in &parsed {
            engine
                .add_rule(r)
                .map_err(|e| error(Path::new("(rules)"), e.to_string()))?;
        }
        let mut feeds = HashSet::new();
        for (path, mut c) in pending {
            // The file is read again only to place an error in it.
            let text = || std::fs::read_to_string(&path).unwrap_or_default();
            let title = c.title.clone();
            let who = (c.id.as_deref(), title.as_str());
            let Some(id) = c.id.clone().filter(|i| !i.trim().is_empty()) else {
                return Err(rule_error(
                    &path,
                    &text(),
                    who,
                    Some("title"),
                    format!(
                        "correlation `{}` has no id; rootwatch names its findings sigma:<id>",
                        c.title
                    ),
                ));
            };
            if let Some(other) = self.rules.get(&id) {
                return Err(rule_error(
                    &path,
                    &text(),
                    who,
                    Some("id"),
                    format!(
                        "rule id {id} is also the id of a rule in {}",
                        other.path.display()
                    ),
                ));
            }
            for r in &c.rules {
                let target = names.get(r).unwrap_or(r);
                if !self.rules.contains_key(target) && !pending_ids_contains(&names, target) {
                    return Err(rule_error(
                        &path,
                        &text(),
                        who,
                        None,
                        format!(
                            "correlation `{}` counts rule `{r}`, which is not loaded",
                            c.title
                        ),
                    ));
                }
                feeds.insert(target.clone());
            }
            // A temporal correlation needs every rule it names unless its
            // condition says otherwise; the engine reads a missing
            // condition as "any one", so it is written out.
            if matches!(
                c.correlation_type,
                CorrelationType::Temporal | CorrelationType::TemporalOrdered
            ) && matches!(&c.condition, CorrelationCondition::Threshold { predicates, field: None, .. }
                    if predicates.as_slice() == [(ConditionOperator::Gte, 1)])
            {
                c.condition = CorrelationCondition::Threshold {
                    predicates: vec![(ConditionOperator::Gte, c.rules.len() as u64)],
                    field: None,
                    percentile: None,
                };
            }
            engine.add_correlation(&c).map_err(|e| {
                let line = super::rule_file::rule_line(&text(), who.0, who.1, None, &e.to_string());
                SigmaError {
                    line,
                    ..error(&path, format!("correlation `{}` ({id}): {e}", c.title))
                }
            })?;
            let (severity, level) = severity(c.level);
            let techniques: Vec<String> = c.tags.iter().filter_map(|t| technique_id(t)).collect();
            let loaded = Arc::new(LoadedRule {
                rule: format!("{RULE_PREFIX}{id}"),
                title: c.title.clone(),
                severity,
                technique: techniques.first().map(|t| Technique {
                    id: Cow::Owned(t.clone()),
                    name: Cow::Borrowed(""),
                }),
                reference: Arc::new(SigmaRuleRef {
                    id: id.clone(),
                    level: level.to_owned(),
                    author: c.author.clone(),
                    references: c.references.clone(),
                    falsepositives: c.falsepositives.clone(),
                    techniques,
                }),
                path,
                correlation: Some(c.correlation_type.as_str()),
                anchors: None,
                expected_events: Vec::new(),
            });
            self.order.push(Arc::clone(&loaded));
            self.rules.insert(id, loaded);
        }
        self.correlations = Some(Correlations {
            state: Mutex::new(CorrelationState {
                engine,
                fed: lru::LruCache::new(NonZeroUsize::new(FED_EVENTS).expect("not zero")),
            }),
            feeds,
        });
        Ok(())
    }

    /// The anchors of the enabled rules (not in `disabled`): a record
    /// holding none of them matches none; `None` when some rule has none.
    /// A correlation counts the matches of detection rules, so it adds
    /// none of its own.
    pub fn anchors(&self, disabled: &HashSet<String>) -> Option<Vec<super::Anchor>> {
        let mut all = Vec::new();
        for r in self.order.iter().filter(|r| r.correlation.is_none()) {
            if disabled.contains(&r.rule) && !self.feeds_correlation(r) {
                continue;
            }
            all.extend(r.anchors.clone()?);
        }
        all.sort();
        all.dedup();
        Some(all)
    }

    /// Whether a correlation counts this rule's matches.
    fn feeds_correlation(&self, r: &LoadedRule) -> bool {
        self.correlations
            .as_ref()
            .is_some_and(|c| c.feeds.contains(&r.reference.id))
    }

    /// Whether correlation rules are loaded: evaluation then keeps state,
    /// and the order of events matters.
    pub fn has_correlations(&self) -> bool {
        self.correlations.is_some()
    }

    /// (correlation, group) windows held now.
    pub fn correlation_states(&self) -> usize {
        self.correlations.as_ref().map_or(0, |c| {
            c.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .engine
                .state_count()
        })
    }

    fn load_file(&mut self, path: &Path, skip_other_logsources: bool) -> Result<(), SigmaError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(path, format!("cannot read it: {e}")))?;
        let placed = |message: String| SigmaError {
            line: super::rule_file::message_line(&text, &message),
            ..error(path, message)
        };
        let collection =
            rsigma_parser::parse_sigma_yaml(&text).map_err(|e| placed(e.to_string()))?;
        if let Some(first) = collection.errors.first() {
            let mut e = placed(first.clone());
            e.message = collection.errors.join("; ");
            return Err(e);
        }
        for c in &collection.correlations {
            self.pending.push((path.to_owned(), c.clone()));
        }
        if !collection.filters.is_empty() {
            let mut e = placed("`filter`".into());
            e.message = "Sigma filter documents are not supported; use detect.suppress".into();
            return Err(e);
        }
        if collection.rules.is_empty() && collection.correlations.is_empty() {
            return Err(error(path, "holds no Sigma rule"));
        }
        for rule in &collection.rules {
            let who = (rule.id.as_deref(), rule.title.as_str());
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
                return Err(rule_error(
                    path,
                    &text,
                    who,
                    Some("logsource"),
                    format!(
                        "{what} (set detect.sigma.skip_other_logsources = true to pass such rules over)"
                    ),
                ));
            }
            let Some(id) = rule.id.clone().filter(|i| !i.trim().is_empty()) else {
                return Err(rule_error(
                    path,
                    &text,
                    who,
                    Some("title"),
                    format!(
                        "rule `{}` has no id; rootwatch names its findings sigma:<id>",
                        rule.title
                    ),
                ));
            };
            if let Some(other) = self.rules.get(&id) {
                return Err(rule_error(
                    path,
                    &text,
                    who,
                    Some("id"),
                    format!(
                        "rule id {id} is also the id of a rule in {}",
                        other.path.display()
                    ),
                ));
            }
            self.engine.add_rule(rule).map_err(|e| {
                let message = format!("rule `{}` ({id}): {e}", rule.title);
                let words = e.to_string();
                SigmaError {
                    line: super::rule_file::rule_line(&text, who.0, who.1, None, &words),
                    ..error(path, message)
                }
            })?;
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
                correlation: None,
                anchors: super::anchors::of_rule(rule),
                expected_events: expected_events(rule),
            });
            self.order.push(Arc::clone(&loaded));
            self.rules.insert(id, loaded);
            self.parsed.push(rule.clone());
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

    /// The rules that match `rec`: detections in load order, then the
    /// correlations this event completed.
    pub fn evaluate(&self, rec: &Record<'_>) -> Vec<SigmaHit> {
        let Ok(value) = serde_json::from_str::<Value>(rec.raw) else {
            return Vec::new();
        };
        self.evaluate_value(&value, rec.event_key())
    }

    /// As [`SigmaRules::evaluate`], for a parsed record with its event key.
    pub fn evaluate_value(&self, value: &Value, key: Option<EventKey>) -> Vec<SigmaHit> {
        let event = CloudTrailEvent {
            inner: JsonEvent::borrow(value),
            value,
        };
        let results = self.engine.evaluate(&event);
        let mut hits: Vec<SigmaHit> = results
            .iter()
            .filter_map(|r| r.header.rule_id.as_ref().and_then(|id| self.rules.get(id)))
            .map(|rule| SigmaHit {
                rule: Arc::clone(rule),
                correlation: None,
            })
            .collect();
        let position = |h: &SigmaHit| self.order.iter().position(|o| Arc::ptr_eq(o, &h.rule));
        hits.sort_by_key(position);
        hits.dedup_by(|a, b| Arc::ptr_eq(&a.rule, &b.rule));
        if let Some(c) = &self.correlations
            && results.iter().any(|r| {
                r.header
                    .rule_id
                    .as_ref()
                    .is_some_and(|id| c.feeds.contains(id))
            })
        {
            hits.extend(self.correlate(c, &event, results, key));
        }
        hits
    }

    fn correlate(
        &self,
        c: &Correlations,
        event: &CloudTrailEvent<'_>,
        results: Vec<EvaluationResult>,
        key: Option<EventKey>,
    ) -> Vec<SigmaHit> {
        let mut state = c.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = key
            && let Some(fired) = state.fed.get(&k)
        {
            return fired.clone();
        }
        let fired: Vec<SigmaHit> = state
            .engine
            .correlate_detections(event, results)
            .into_iter()
            .filter_map(|r| {
                let body = r.as_correlation()?;
                let rule = self.rules.get(r.header.rule_id.as_ref()?)?;
                Some(SigmaHit {
                    rule: Arc::clone(rule),
                    correlation: Some(Arc::new(Correlation {
                        kind: body.correlation_type.as_str().to_owned(),
                        group_by: body.group_key.iter().cloned().collect(),
                        value: body.aggregated_value,
                        timespan_secs: body.timespan_secs,
                    })),
                })
            })
            .collect();
        if let Some(k) = key {
            state.fed.put(k, fired.clone());
        }
        crate::telemetry::sigma_correlation_windows(state.engine.state_count());
        fired
    }
}

/// The rule's `rootwatch_expected_events`: a list of eventIDs.
fn expected_events(rule: &SigmaRule) -> Vec<String> {
    rule.custom_attributes
        .get("rootwatch_expected_events")
        .and_then(|v| serde_json::to_value(v).ok())
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn pending_ids_contains(names: &HashMap<String, String>, id: &str) -> bool {
    names.values().any(|v| v == id)
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
