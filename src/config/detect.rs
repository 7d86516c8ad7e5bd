//! `[detect]` and `[enrich]`: which rules run and how, the suppressions,
//! the allow list, and the context added to findings (accounts, GeoIP,
//! Organizations, expected root work, runbooks).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::aws::{RawAws, aws_settings};
use super::{ConfigError, RawConfig, invalid, nonzero, secs};
use crate::detect::{self, AllowList, CidrSet, Context, DetectSettings, Glob, Scope, Suppression};
use crate::enrich::{AccountInfo, Enrichment, ExpectedEntry, GeoIp};
use crate::finding::Severity;

/// `[enrich]`: context added to findings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEnrich {
    /// Account id to what the responder should know about it.
    pub accounts: BTreeMap<String, RawAccount>,
    /// A CSV of accounts (`account_id` and optional `name`, `environment`,
    /// `owner`, `ou`; other columns are tags): for maps of thousands.
    pub accounts_file: Option<String>,
    pub geoip: RawGeoIp,
    pub organizations: RawOrganizations,
}

/// `[enrich.organizations]`: account names, OU paths and tags read from
/// AWS Organizations in the background.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOrganizations {
    pub enabled: bool,
    pub region: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    pub refresh_secs: u64,
    pub max_accounts: usize,
}

impl Default for RawOrganizations {
    fn default() -> Self {
        RawOrganizations {
            enabled: false,
            region: None,
            role_arn: None,
            external_id: None,
            session_name: None,
            refresh_secs: 3600,
            max_accounts: 10_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccount {
    pub name: Option<String>,
    pub environment: Option<String>,
    pub owner: Option<String>,
    pub ou: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGeoIp {
    pub city_db: Option<String>,
    pub asn_db: Option<String>,
}

/// `[[detect.expected]]`: announced root work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpected {
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub rules: Vec<String>,
    pub from: String,
    pub until: String,
    pub reason: String,
    pub ticket: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDetect {
    /// Rule ids to turn off.
    pub disabled: Vec<String>,
    /// Rule id to severity, replacing the rule's own.
    pub severity: BTreeMap<String, String>,
    /// eventNames that the root API call rules ignore.
    pub root_api_call_exclude_events: Vec<String>,
    pub ip_allowlist: RawAllowlist,
    pub suppress: Vec<RawSuppress>,
    pub sigma: RawSigma,
    pub expected: Vec<RawExpected>,
    /// Rule id or pattern to runbook URL.
    pub runbooks: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSigma {
    /// Sigma rule files and directories (read recursively).
    pub rules: Vec<String>,
    /// Pass over rules for other log sources instead of refusing them.
    pub skip_other_logsources: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAllowlist {
    pub cidrs: Vec<String>,
    /// Autonomous system numbers whose addresses are allowed (needs
    /// `enrich.geoip.asn_db`).
    pub asns: Vec<u32>,
    pub scope: Scope,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSuppress {
    pub rule: Option<String>,
    pub account: Option<OneOrMany>,
    pub principal_arn: Option<OneOrMany>,
    pub source_cidr: Option<OneOrMany>,
    pub user_agent: Option<OneOrMany>,
    pub event_name: Option<OneOrMany>,
}

/// `[detect]` and `[enrich]`: the rules, their settings and context.
pub(super) fn validate_detect(raw: &RawConfig) -> Result<DetectSettings, ConfigError> {
    let d = &raw.detect;
    let sigma = sigma_rules(&d.sigma)?;
    let mut known = detect::rule_ids();
    if let Some(s) = &sigma {
        known.extend(s.rule_names());
    }
    for (i, id) in d.disabled.iter().enumerate() {
        check_rule(&format!("detect.disabled[{i}]"), id, &known)?;
    }
    let mut severity = HashMap::new();
    for (id, s) in &d.severity {
        let key = format!("detect.severity.{id}");
        check_rule(&key, id, &known)?;
        severity.insert(
            id.clone(),
            s.parse::<Severity>().map_err(|m| invalid(&key, m))?,
        );
    }
    let cidrs = CidrSet::new(
        d.ip_allowlist
            .cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                detect::allowlist::parse_cidr(c)
                    .map_err(|m| invalid(format!("detect.ip_allowlist.cidrs[{i}]"), m))
            })
            .collect::<Result<Vec<_>, _>>()?,
    );
    let suppressions = suppressions(&d.suppress, &known)?;
    let enrichment = validate_enrich(raw, &known)?;
    let asns: HashSet<u32> = d.ip_allowlist.asns.iter().copied().collect();
    if !asns.is_empty() && !enrichment.geoip.as_ref().is_some_and(|g| g.has_asn()) {
        return Err(invalid(
            "detect.ip_allowlist.asns",
            "needs an ASN database: set enrich.geoip.asn_db",
        ));
    }
    Ok(DetectSettings {
        disabled: d.disabled.iter().cloned().collect(),
        severity,
        context: Context {
            allowlist: AllowList {
                cidrs,
                asns,
                geoip: enrichment.geoip.clone(),
                scope: d.ip_allowlist.scope,
            },
            root_api_call_excluded_events: d.root_api_call_exclude_events.iter().cloned().collect(),
        },
        suppressions,
        sigma: sigma.clone(),
        enrichment: std::sync::Arc::new(enrichment),
    })
}

/// `[detect.sigma]`: the Sigma rules loaded, if any.
fn sigma_rules(s: &RawSigma) -> Result<Option<Arc<detect::SigmaRules>>, ConfigError> {
    Ok(match s.rules.as_slice() {
        [] => None,
        paths => {
            let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
            let set = detect::SigmaRules::load(&paths, s.skip_other_logsources)
                .map_err(|e| invalid("detect.sigma.rules", e.to_string()))?;
            for (path, why) in &set.skipped {
                tracing::warn!(file = %path.display(), "Sigma rule passed over: {why}");
            }
            Some(std::sync::Arc::new(set))
        }
    })
}

/// `[[detect.suppress]]`.
fn suppressions(entries: &[RawSuppress], known: &[&str]) -> Result<Vec<Suppression>, ConfigError> {
    let mut suppressions = Vec::new();
    for (i, s) in entries.iter().enumerate() {
        let key = format!("detect.suppress[{i}]");
        if let Some(rule) = &s.rule {
            check_rule(&format!("{key}.rule"), rule, known)?;
        }
        let list = |v: &Option<OneOrMany>| v.clone().map(OneOrMany::into_vec).unwrap_or_default();
        let source_cidrs = match &s.source_cidr {
            None => None,
            Some(v) => {
                let nets = v
                    .clone()
                    .into_vec()
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        detect::allowlist::parse_cidr(c)
                            .map_err(|m| invalid(format!("{key}.source_cidr[{j}]"), m))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(CidrSet::new(nets))
            }
        };
        let sup = Suppression {
            rule: s.rule.clone(),
            accounts: list(&s.account),
            principal_arns: list(&s.principal_arn).into_iter().map(Glob::new).collect(),
            source_cidrs,
            user_agents: list(&s.user_agent).into_iter().map(Glob::new).collect(),
            event_names: list(&s.event_name),
        };
        if !sup.has_criteria() {
            return Err(invalid(
                key,
                "a suppression needs at least one of account, principal_arn, source_cidr, user_agent, event_name (to turn a rule off, use detect.disabled)",
            ));
        }
        suppressions.push(sup);
    }
    Ok(suppressions)
}

fn check_rule(key: &str, id: &str, known: &[&str]) -> Result<(), ConfigError> {
    if known.contains(&id) {
        return Ok(());
    }
    let (sigma, named): (Vec<&str>, Vec<&str>) = known
        .iter()
        .partition(|k| k.starts_with(detect::sigma::RULE_PREFIX));
    let sigma = match sigma.len() {
        0 => String::new(),
        n => format!(", and {n} loaded Sigma rules as sigma:<id>"),
    };
    Err(invalid(
        key,
        format!(
            "`{id}` is not a rule id (known: {}{sigma})",
            named.join(", ")
        ),
    ))
}

/// A rule id, or a `*` pattern that matches at least one (`sigma:*`).
pub(super) fn check_rule_pattern(
    key: &str,
    pattern: &str,
    known: &[&str],
) -> Result<Glob, ConfigError> {
    if !pattern.contains('*') {
        check_rule(key, pattern, known)?;
        return Ok(Glob::new(pattern));
    }
    let glob = Glob::new(pattern);
    if known.iter().any(|k| glob.matches(k)) {
        Ok(glob)
    } else {
        Err(invalid(
            key,
            format!("`{pattern}` matches no rule id (no Sigma rule loaded?)"),
        ))
    }
}

/// `[enrich]`, `[[detect.expected]]` and `[detect.runbooks]`.
fn validate_enrich(raw: &RawConfig, known: &[&str]) -> Result<Enrichment, ConfigError> {
    // Posture findings take runbooks and expected entries too.
    let mut known = known.to_vec();
    known.extend(crate::audit::RULE_IDS.iter().copied());
    let known = known.as_slice();
    let e = &raw.enrich;
    let mut out = Enrichment::default();
    if let Some(path) = &e.accounts_file {
        out.accounts = crate::enrich::accounts_csv(std::path::Path::new(path))
            .map_err(|m| invalid("enrich.accounts_file", m))?;
    }
    // Tables in the config win over the file's rows for the same account.
    for (id, a) in &e.accounts {
        out.accounts.insert(id.clone(), Arc::new(account(id, a)?));
    }
    let o = &e.organizations;
    if o.enabled {
        out.organizations = Some((
            organizations(o)?,
            Arc::new(crate::enrich::organizations::OrgDirectory::default()),
        ));
    }
    if e.geoip.city_db.is_some() || e.geoip.asn_db.is_some() {
        let geo = GeoIp::open(
            e.geoip.city_db.as_deref().map(std::path::Path::new),
            e.geoip.asn_db.as_deref().map(std::path::Path::new),
        )
        .map_err(|err| invalid("enrich.geoip", err.to_string()))?;
        out.geoip = Some(Arc::new(geo));
    }
    let now = chrono::Utc::now();
    for (i, x) in raw.detect.expected.iter().enumerate() {
        out.expected.push(Arc::new(expected(i, x, known, now)?));
    }
    for (pattern, url) in &raw.detect.runbooks {
        let key = format!("detect.runbooks.{pattern}");
        let glob = check_rule_pattern(&key, pattern, known)?;
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| invalid(&key, format!("`{url}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(invalid(&key, format!("`{url}` is not an http(s) URL")));
        }
        out.runbooks.push((glob, url.clone()));
    }
    // An exact rule id before a pattern, whatever the file's order.
    out.runbooks.sort_by_key(|(g, _)| g.as_str().contains('*'));
    Ok(out)
}

/// `[enrich.accounts.ID]`.
fn account(id: &str, a: &RawAccount) -> Result<AccountInfo, ConfigError> {
    let key = format!("enrich.accounts.{id}");
    if !crate::aws::is_account_id(id) {
        return Err(invalid(
            &key,
            format!("`{id}` is not a 12-digit AWS account id"),
        ));
    }
    let mut tags = a.tags.clone();
    for (k, v) in [("environment", &a.environment), ("owner", &a.owner)] {
        if let Some(v) = v {
            if tags.contains_key(k) {
                return Err(invalid(
                    format!("{key}.tags.{k}"),
                    format!("`{k}` is given twice: as {key}.{k} and as a tag"),
                ));
            }
            tags.insert(k.to_owned(), v.clone());
        }
    }
    Ok(AccountInfo {
        name: a.name.clone(),
        ou: a.ou.clone(),
        tags,
    })
}

/// `[enrich.organizations]`, when enabled.
fn organizations(
    o: &RawOrganizations,
) -> Result<crate::enrich::organizations::OrgSettings, ConfigError> {
    let aws = aws_settings(
        "enrich.organizations",
        RawAws {
            region: &o.region,
            role_arn: &o.role_arn,
            external_id: &o.external_id,
            session_name: &o.session_name,
        },
        None,
    )?;
    Ok(crate::enrich::organizations::OrgSettings {
        aws,
        refresh: secs(
            "enrich.organizations.refresh_secs",
            o.refresh_secs,
            300,
            86_400,
        )?,
        max_accounts: nonzero("enrich.organizations.max_accounts", o.max_accounts, 100_000)?.get(),
    })
}

/// The `i`th `[[detect.expected]]` entry; one already over is said once.
fn expected(
    i: usize,
    x: &RawExpected,
    known: &[&str],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ExpectedEntry, ConfigError> {
    let key = format!("detect.expected[{i}]");
    let time = |field: &str, v: &str| {
        chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| {
                invalid(
                    format!("{key}.{field}"),
                    format!("`{v}` is not an RFC 3339 time (2024-06-01T08:00:00Z)"),
                )
            })
    };
    let (from, until) = (time("from", &x.from)?, time("until", &x.until)?);
    if until <= from {
        return Err(invalid(format!("{key}.until"), "is not after `from`"));
    }
    if until - from > chrono::Duration::days(crate::enrich::expected::MAX_SPAN_DAYS) {
        return Err(invalid(
            format!("{key}.until"),
            format!(
                "is more than {} days after `from`: expected root use is for announced work; a standing exception is a [[detect.suppress]] entry",
                crate::enrich::expected::MAX_SPAN_DAYS
            ),
        ));
    }
    for (field, v) in [("reason", &x.reason), ("ticket", &x.ticket)] {
        if v.trim().is_empty() {
            return Err(invalid(format!("{key}.{field}"), "must not be empty"));
        }
    }
    for (j, a) in x.accounts.iter().enumerate() {
        if !crate::aws::is_account_id(a) {
            return Err(invalid(
                format!("{key}.accounts[{j}]"),
                format!("`{a}` is not a 12-digit AWS account id"),
            ));
        }
    }
    let mut rules = Vec::new();
    for (j, r) in x.rules.iter().enumerate() {
        rules.push(check_rule_pattern(&format!("{key}.rules[{j}]"), r, known)?);
    }
    let entry = ExpectedEntry::new(
        key.clone(),
        x.accounts.clone(),
        rules,
        from,
        until,
        x.reason.clone(),
        x.ticket.clone(),
    );
    if until < now {
        // Said once, then ignored: matching compares with event times.
        let _ = entry.warn_expired(now);
    }
    Ok(entry)
}
