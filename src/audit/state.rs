//! Which posture problems are open, when each last alerted, and which were
//! resolved. Pure: the time is passed in. An open problem alerts once per
//! realert period, not at every audit; a problem is marked alerted only
//! once its alert was delivered, so a failed delivery alerts again at the
//! next audit.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::finding::{Finding, Severity};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Open {
    account: String,
    rule: String,
    principal: String,
    /// The severity the last audit found.
    severity: Severity,
    last_alerted: Option<DateTime<Utc>>,
    /// The severity of the last delivered alert.
    alerted_severity: Option<Severity>,
}

/// A problem that an audit no longer finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub finding_id: String,
    pub account: String,
    pub rule: String,
    pub principal: String,
}

#[derive(Debug, Default)]
pub struct PostureState {
    open: HashMap<String, Open>,
}

impl PostureState {
    /// Takes one account's findings from an audit that ran. Returns the
    /// findings to alert now (new, or not alerted for `realert`) and the
    /// problems of this account that were open and are gone.
    pub fn plan(
        &mut self,
        account: &str,
        findings: Vec<Finding>,
        now: DateTime<Utc>,
        realert: chrono::Duration,
    ) -> (Vec<Finding>, Vec<Resolved>) {
        let seen: std::collections::HashSet<String> =
            findings.iter().map(|f| f.finding_id.clone()).collect();
        let gone: Vec<String> = self
            .open
            .iter()
            .filter(|(id, o)| o.account == account && !seen.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        let resolved = gone
            .into_iter()
            .filter_map(|id| {
                self.open.remove(&id).map(|o| Resolved {
                    finding_id: id,
                    account: o.account,
                    rule: o.rule,
                    principal: o.principal,
                })
            })
            .collect();
        let mut send = Vec::new();
        for f in findings {
            let entry = self
                .open
                .entry(f.finding_id.clone())
                .or_insert_with(|| Open {
                    account: account.to_owned(),
                    rule: f.rule.clone(),
                    principal: f.principal_arn.clone().unwrap_or_default(),
                    severity: f.severity,
                    last_alerted: None,
                    alerted_severity: None,
                });
            entry.severity = f.severity;
            // A problem that got worse (a rotation past its grace, a key
            // into its next age tier) alerts at once.
            let worse = entry.alerted_severity.is_some_and(|s| f.severity > s);
            if worse || entry.last_alerted.is_none_or(|t| now - t >= realert) {
                send.push(f);
            }
        }
        (send, resolved)
    }

    /// Records that the alert for `finding_id` was delivered at `at`.
    pub fn delivered(&mut self, finding_id: &str, at: DateTime<Utc>) {
        if let Some(o) = self.open.get_mut(finding_id) {
            o.last_alerted = Some(at);
            o.alerted_severity = Some(o.severity);
        }
    }

    pub fn open(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{PostureSubject, Severity};

    fn finding(subject: &str) -> Finding {
        Finding::posture(PostureSubject {
            rule: "posture-user-two-active-keys",
            title: "t".into(),
            severity: Severity::Medium,
            reason: "r".into(),
            account_id: "111122223333",
            principal_type: "IAMUser",
            principal_arn: subject,
            user_name: None,
            subject,
            observed: DateTime::UNIX_EPOCH,
            report_age_seconds: None,
            mfa: None,
            evidence: serde_json::Value::Null,
        })
    }

    #[test]
    fn a_problem_that_got_worse_alerts_at_once() {
        let mut s = PostureState::default();
        let t0: DateTime<Utc> = "2024-06-01T00:00:00Z".parse().unwrap();
        let week = chrono::Duration::days(7);
        let hour = chrono::Duration::hours(1);
        let mut f = finding("a");
        f.severity = Severity::Info;
        let (send, _) = s.plan("111122223333", vec![f.clone()], t0, week);
        s.delivered(&send[0].finding_id, t0);
        let (send, _) = s.plan("111122223333", vec![f.clone()], t0 + hour, week);
        assert!(send.is_empty());
        f.severity = Severity::Medium;
        let (send, _) = s.plan("111122223333", vec![f.clone()], t0 + hour * 2, week);
        assert_eq!(ids(&send), ["a"], "worse: at once");
        s.delivered(&send[0].finding_id, t0 + hour * 2);
        let (send, _) = s.plan("111122223333", vec![f.clone()], t0 + hour * 3, week);
        assert!(send.is_empty(), "delivered at its new severity");
        f.severity = Severity::Low;
        let (send, _) = s.plan("111122223333", vec![f], t0 + hour * 4, week);
        assert!(send.is_empty(), "better: waits for realert");
    }

    fn ids(v: &[Finding]) -> Vec<&str> {
        v.iter()
            .map(|f| f.principal_arn.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn an_open_problem_alerts_once_per_realert_period_after_delivery() {
        let mut s = PostureState::default();
        let t0: DateTime<Utc> = "2024-06-01T00:00:00Z".parse().unwrap();
        let week = chrono::Duration::days(7);
        let hour = chrono::Duration::hours(1);
        let (send, resolved) = s.plan("111122223333", vec![finding("a")], t0, week);
        assert_eq!(ids(&send), ["a"]);
        assert!(resolved.is_empty());
        // Not delivered: the next audit alerts again.
        let (send, _) = s.plan("111122223333", vec![finding("a")], t0 + hour, week);
        assert_eq!(ids(&send), ["a"]);
        s.delivered(&send[0].finding_id, t0 + hour);
        let (send, _) = s.plan("111122223333", vec![finding("a")], t0 + hour * 2, week);
        assert!(send.is_empty(), "delivered an hour ago");
        let (send, _) = s.plan(
            "111122223333",
            vec![finding("a")],
            t0 + hour + week - chrono::Duration::seconds(1),
            week,
        );
        assert!(send.is_empty(), "just inside the realert period");
        let (send, _) = s.plan(
            "111122223333",
            vec![finding("a"), finding("b")],
            t0 + hour + week,
            week,
        );
        assert_eq!(ids(&send), ["a", "b"]);
    }

    #[test]
    fn a_problem_no_longer_found_is_resolved_in_its_own_account_only() {
        let mut s = PostureState::default();
        let t0: DateTime<Utc> = "2024-06-01T00:00:00Z".parse().unwrap();
        let week = chrono::Duration::days(7);
        s.plan("111122223333", vec![finding("a"), finding("b")], t0, week);
        let mut other = finding("c");
        other.account_id = Some("444455556666".into());
        s.plan("444455556666", vec![other], t0, week);
        assert_eq!(s.open(), 3);
        let (_, resolved) = s.plan("111122223333", vec![finding("b")], t0, week);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].principal, "a");
        assert_eq!(resolved[0].rule, "posture-user-two-active-keys");
        assert_eq!(s.open(), 2, "the other account's problem stays open");
        // Found again later: a new problem, alerted at once.
        let (send, _) = s.plan("111122223333", vec![finding("a"), finding("b")], t0, week);
        assert_eq!(ids(&send), ["a", "b"]);
    }
}
