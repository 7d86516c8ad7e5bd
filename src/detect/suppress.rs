//! Suppressions: known, accepted activity that must not alert.

use super::allowlist::{CidrSet, source_ip};
use crate::event::Record;

/// A `*` wildcard pattern (any run of characters), matched case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: impl Into<String>) -> Self {
        Glob(pattern.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, text: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = text.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// One suppression: every criterion given must match (a list matches when
/// any of its entries does). `rule = None` applies to every rule.
#[derive(Debug, Clone, Default)]
pub struct Suppression {
    pub rule: Option<String>,
    pub accounts: Vec<String>,
    pub principal_arns: Vec<Glob>,
    pub source_cidrs: Option<CidrSet>,
    pub user_agents: Vec<Glob>,
    pub event_names: Vec<String>,
}

impl Suppression {
    pub fn has_criteria(&self) -> bool {
        !self.accounts.is_empty()
            || !self.principal_arns.is_empty()
            || self.source_cidrs.is_some()
            || !self.user_agents.is_empty()
            || !self.event_names.is_empty()
    }

    pub fn matches(&self, rule: &str, rec: &Record<'_>) -> bool {
        if self.rule.as_deref().is_some_and(|r| r != rule) {
            return false;
        }
        if !self.accounts.is_empty()
            && !rec
                .account()
                .is_some_and(|a| self.accounts.iter().any(|x| x == a))
        {
            return false;
        }
        if !self.principal_arns.is_empty() {
            let arn = rec.user_identity.arn.get().unwrap_or("");
            if !self.principal_arns.iter().any(|g| g.matches(arn)) {
                return false;
            }
        }
        if let Some(cidrs) = &self.source_cidrs
            && !source_ip(rec).is_some_and(|ip| cidrs.contains(ip))
        {
            return false;
        }
        if !self.user_agents.is_empty() {
            let ua = rec.user_agent.get().unwrap_or("");
            if !self.user_agents.iter().any(|g| g.matches(ua)) {
                return false;
            }
        }
        if !self.event_names.is_empty()
            && !rec
                .event_name
                .get()
                .is_some_and(|n| self.event_names.iter().any(|x| x == n))
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::allowlist::parse_cidr;

    #[test]
    fn glob() {
        let g = Glob::new("arn:aws:iam::*:root");
        assert!(g.matches("arn:aws:iam::111122223333:root"));
        assert!(!g.matches("arn:aws:iam::111122223333:user/root"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*b*c").matches("aXbYc"));
        assert!(!Glob::new("a*b*c").matches("aXcYb"));
        assert!(Glob::new("exact").matches("exact"));
        assert!(!Glob::new("exact").matches("exactly"));
        assert!(!Glob::new("ab*ba").matches("aba"));
        assert!(Glob::new("*Terraform*").matches("APN/1.0 HashiCorp/1.0 Terraform/1.5.0"));
    }

    const REC: &str = r#"{"userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root"},"eventName":"GetAccountSummary","sourceIPAddress":"203.0.113.5","userAgent":"console.amazonaws.com","recipientAccountId":"111122223333"}"#;

    #[test]
    fn all_criteria_must_match() {
        let rec = Record::parse(REC).unwrap();
        let s = Suppression {
            rule: Some("root-api-call".into()),
            principal_arns: vec![Glob::new("arn:aws:iam::111122223333:root")],
            event_names: vec!["GetAccountSummary".into(), "ListAliases".into()],
            ..Default::default()
        };
        assert!(s.matches("root-api-call", &rec));
        assert!(!s.matches("root-api-call-without-mfa", &rec));
        let s2 = Suppression {
            accounts: vec!["444455556666".into()],
            ..s.clone()
        };
        assert!(!s2.matches("root-api-call", &rec));
        let s3 = Suppression {
            rule: None,
            source_cidrs: Some(CidrSet::new([parse_cidr("203.0.113.0/24").unwrap()])),
            ..Default::default()
        };
        assert!(s3.matches("anything", &rec));
        let s4 = Suppression {
            source_cidrs: Some(CidrSet::new([parse_cidr("198.51.100.0/24").unwrap()])),
            ..Default::default()
        };
        assert!(!s4.matches("anything", &rec));
        let s5 = Suppression {
            user_agents: vec![Glob::new("*.amazonaws.com")],
            ..Default::default()
        };
        assert!(s5.matches("x", &rec));
    }
}
