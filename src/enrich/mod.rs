//! Context for the responder, added to findings after detection: who owns
//! the account, where the address is, whether root use was announced, what
//! to do. Nothing here decides whether a finding fires (except the allow
//! list's ASNs, which the rule reads through [`GeoIp::asn`]), and nothing
//! here does I/O after start: the MMDB files are read once into memory.

pub mod expected;
pub mod geoip;
pub mod organizations;
pub mod root_tasks;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::detect::Glob;
use crate::finding::Finding;

pub use expected::ExpectedEntry;
pub use geoip::{GeoIp, SourceContext};

/// One account of `[enrich.accounts]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountInfo {
    pub name: Option<String>,
    /// The OU path (from AWS Organizations, or written in the map).
    pub ou: Option<String>,
    /// Free-form tags; `environment` and `owner` from the map are kept here
    /// under those keys.
    pub tags: BTreeMap<String, String>,
}

/// Everything the enrichment step needs, built from config.
#[derive(Debug, Clone, Default)]
pub struct Enrichment {
    pub accounts: HashMap<String, Arc<AccountInfo>>,
    pub geoip: Option<Arc<GeoIp>>,
    pub expected: Vec<Arc<ExpectedEntry>>,
    /// Rule pattern to runbook URL, first match wins (config order).
    pub runbooks: Vec<(Glob, String)>,
    /// `[enrich.organizations]`: the settings, and the directory the
    /// daemon's background task fills.
    pub organizations: Option<(organizations::OrgSettings, Arc<organizations::OrgDirectory>)>,
}

impl Enrichment {
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
            && self.organizations.is_none()
            && self.geoip.is_none()
            && self.expected.is_empty()
            && self.runbooks.is_empty()
    }

    /// Adds the account, address, runbook and expected-use context to `f`.
    /// `now` decides which expected-use entries are current when the
    /// finding has no event time (posture findings).
    pub fn apply(&self, f: &mut Finding, now: DateTime<Utc>) {
        if let Some(account) = f.account_id.as_deref() {
            // The static map first; Organizations fills what it leaves out.
            let written = self.accounts.get(account);
            let read = self
                .organizations
                .as_ref()
                .and_then(|(_, dir)| dir.get(account));
            let name = written
                .and_then(|i| i.name.clone())
                .or_else(|| read.as_ref().and_then(|i| i.name.clone()));
            let ou = written
                .and_then(|i| i.ou.clone())
                .or_else(|| read.as_ref().and_then(|i| i.ou.clone()));
            let mut tags = read.as_ref().map(|i| i.tags.clone()).unwrap_or_default();
            if let Some(w) = written {
                tags.extend(w.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            f.account_name = name;
            f.account_ou = ou;
            if !tags.is_empty() {
                f.account_tags = Some(tags);
            }
        }
        if let (Some(geo), Some(ip)) = (&self.geoip, f.source_ip.as_deref()) {
            f.source_ip_context = Some(geo.context(ip));
        }
        if let Some((_, url)) = self.runbooks.iter().find(|(g, _)| g.matches(&f.rule)) {
            f.runbook_url = Some(url.clone());
        }
        let at = f
            .event_time
            .as_deref()
            .and_then(crate::event::parse_event_time)
            .unwrap_or(now);
        if let Some(e) = self
            .expected
            .iter()
            .find(|e| e.matches(f.account_id.as_deref(), &f.rule, at))
        {
            e.mark(f);
        }
    }
}

/// Reads `[enrich] accounts_file`: a CSV with a header naming
/// `account_id` and any of `name`, `environment`, `owner`, `ou`; every
/// other column is a tag (empty cells are left out). Errors name the line.
pub fn accounts_csv(path: &std::path::Path) -> Result<HashMap<String, Arc<AccountInfo>>, String> {
    let shown = path.display();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| format!("{shown}: {e}"))?;
    let headers = reader
        .headers()
        .map_err(|e| format!("{shown}: {e}"))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let id_col = column("account_id")
        .ok_or_else(|| format!("{shown}: no `account_id` column in the header line"))?;
    let (name, ou) = (column("name"), column("ou"));
    let mut out = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("{shown}: {e}"))?;
        let line = record.position().map_or(0, |p| p.line());
        let id = record.get(id_col).unwrap_or("");
        if !crate::aws::is_account_id(id) {
            return Err(format!(
                "{shown} line {line}: `{id}` is not a 12-digit AWS account id"
            ));
        }
        let cell = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let tags: BTreeMap<String, String> = headers
            .iter()
            .enumerate()
            .filter(|(i, h)| *i != id_col && !["name", "ou"].contains(h))
            .filter_map(|(i, h)| {
                record
                    .get(i)
                    .filter(|v| !v.is_empty())
                    .map(|v| (h.to_owned(), v.to_owned()))
            })
            .collect();
        let info = AccountInfo {
            name: cell(name),
            ou: cell(ou),
            tags,
        };
        if out.insert(id.to_owned(), Arc::new(info)).is_some() {
            return Err(format!("{shown} line {line}: account {id} is listed twice"));
        }
    }
    Ok(out)
}
