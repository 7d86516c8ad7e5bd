//! `[[detect.expected]]`: announced root work. A matching finding is still
//! delivered and stored, says so (`expected`), and is capped at `low` so a
//! paging sink stays quiet.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::detect::Glob;
use crate::finding::{Finding, Severity};

/// The longest an entry may cover: announced work, not a standing
/// exception (a suppression is the tool for that).
pub const MAX_SPAN_DAYS: i64 = 7;

/// What a finding carries when an entry matched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedMark {
    pub reason: String,
    pub ticket: String,
    /// RFC 3339.
    pub until: String,
}

#[derive(Debug)]
pub struct ExpectedEntry {
    /// Empty: any account.
    pub accounts: Vec<String>,
    /// Rule patterns (`*` wildcards); empty: every rule.
    pub rules: Vec<Glob>,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub reason: String,
    pub ticket: String,
    /// The config key, for the log line when it has expired.
    pub key: String,
    warned_expired: AtomicBool,
}

impl ExpectedEntry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: String,
        accounts: Vec<String>,
        rules: Vec<Glob>,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        reason: String,
        ticket: String,
    ) -> ExpectedEntry {
        ExpectedEntry {
            accounts,
            rules,
            from,
            until,
            reason,
            ticket,
            key,
            warned_expired: AtomicBool::new(false),
        }
    }

    /// Whether the entry covers a finding of `rule` in `account` at `at`.
    pub fn matches(&self, account: Option<&str>, rule: &str, at: DateTime<Utc>) -> bool {
        if at > self.until {
            self.warn_expired(at);
            return false;
        }
        at >= self.from
            && (self.accounts.is_empty()
                || account.is_some_and(|a| self.accounts.iter().any(|x| x == a)))
            && (self.rules.is_empty() || self.rules.iter().any(|g| g.matches(rule)))
    }

    /// Said once per entry: an expired entry is ignored. Returns whether
    /// this call said it.
    pub fn warn_expired(&self, at: DateTime<Utc>) -> bool {
        let first = !self.warned_expired.swap(true, Ordering::Relaxed);
        if first {
            tracing::warn!(
                entry = %self.key,
                until = %self.until.to_rfc3339(),
                seen_at = %at.to_rfc3339(),
                ticket = %self.ticket,
                "expected root use entry has expired and is ignored; remove it from the config"
            );
        }
        first
    }

    /// Marks `f` expected and caps its severity at low.
    pub fn mark(&self, f: &mut Finding) {
        f.expected = Some(ExpectedMark {
            reason: self.reason.clone(),
            ticket: self.ticket.clone(),
            until: self
                .until
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        f.severity = f.severity.min(Severity::Low);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(accounts: &[&str], rules: &[&str]) -> ExpectedEntry {
        ExpectedEntry::new(
            "detect.expected[0]".into(),
            accounts.iter().map(|a| a.to_string()).collect(),
            rules.iter().map(|r| Glob::new(*r)).collect(),
            "2024-05-14T08:00:00Z".parse().unwrap(),
            "2024-05-14T18:00:00Z".parse().unwrap(),
            "drill".into(),
            "SEC-1".into(),
        )
    }

    #[test]
    fn an_entry_covers_its_accounts_rules_and_window_and_warns_once_when_expired() {
        let e = entry(&["111122223333"], &["root-*"]);
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(e.matches(
            Some("111122223333"),
            "root-console-login",
            t("2024-05-14T08:00:00Z")
        ));
        assert!(!e.matches(
            Some("111122223333"),
            "root-console-login",
            t("2024-05-14T07:59:59Z")
        ));
        assert!(!e.matches(
            Some("444455556666"),
            "root-console-login",
            t("2024-05-14T09:00:00Z")
        ));
        assert!(!e.matches(None, "root-console-login", t("2024-05-14T09:00:00Z")));
        assert!(!e.matches(
            Some("111122223333"),
            "source-ip-not-allowed",
            t("2024-05-14T09:00:00Z")
        ));
        assert!(e.matches(
            Some("111122223333"),
            "root-api-call",
            t("2024-05-14T18:00:00Z")
        ));
        assert!(!e.matches(
            Some("111122223333"),
            "root-api-call",
            t("2024-05-14T18:00:01Z")
        ));
        // Said at the first miss past `until`, never again.
        assert!(!e.warn_expired(t("2024-05-15T00:00:00Z")));
        let fresh = entry(&[], &[]);
        assert!(fresh.matches(
            Some("999999999999"),
            "posture-root-no-mfa",
            t("2024-05-14T12:00:00Z")
        ));
        assert!(fresh.warn_expired(t("2024-05-15T00:00:00Z")));
        assert!(!fresh.warn_expired(t("2024-05-16T00:00:00Z")));
    }

    #[test]
    fn marking_caps_the_severity_at_low_and_keeps_lower_ones() {
        use crate::finding::Severity;
        let e = entry(&[], &[]);
        let mut f = crate::sink::format::escape::testing::enriched();
        f.expected = None;
        for (before, after) in [
            (Severity::Critical, Severity::Low),
            (Severity::Medium, Severity::Low),
            (Severity::Info, Severity::Info),
        ] {
            f.severity = before;
            e.mark(&mut f);
            assert_eq!(f.severity, after);
            assert_eq!(f.expected.as_ref().unwrap().until, "2024-05-14T18:00:00Z");
        }
    }
}
