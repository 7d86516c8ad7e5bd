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
