//! Runs audits: every configured account at once (bounded), once for
//! `rootwatch audit` or on a schedule inside the daemon, where findings go
//! through the pipeline's sinks.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::reader::{AuditError, IamReader};
use super::rules::{Evaluation, Inventory, OrgView, RULE_IDS, evaluate};
use super::settings::AuditSettings;
use super::state::PostureState;
use crate::ack::{InputHandle, Outcome};
use crate::pipeline::Pipeline;
use crate::telemetry;

/// One account's audit: its evaluation, or why it could not run.
#[derive(Debug)]
pub struct AccountResult {
    /// The configured name, or the account id for rootwatch's own account.
    pub name: String,
    pub result: Result<Evaluation, AuditError>,
}

/// Audits every account of `settings` (rootwatch's own account when none
/// is listed), at most `concurrency` at once. One account failing does not
/// stop the others. Results come in configuration order.
pub async fn audit_all(
    settings: &AuditSettings,
    base: &aws_config::SdkConfig,
    now: fn() -> DateTime<Utc>,
) -> Vec<AccountResult> {
    let slots = Arc::new(Semaphore::new(settings.concurrency.get()));
    let mut tasks = JoinSet::new();
    let targets: Vec<Option<super::AccountTarget>> = if settings.accounts.is_empty() {
        vec![None]
    } else {
        settings.accounts.iter().cloned().map(Some).collect()
    };
    let mut names = Vec::new();
    for (i, target) in targets.into_iter().enumerate() {
        let (slots, base, timeout) = (Arc::clone(&slots), base.clone(), settings.report_timeout);
        names.push(target.as_ref().map(|t| t.name.clone()));
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let reader = match &target {
                None => IamReader::new(&base, timeout),
                Some(t) => IamReader::assuming(&base, t, timeout).await,
            };
            (i, reader.inventory().await)
        });
    }
    let mut inventories: Vec<Option<Result<Inventory, AuditError>>> =
        (0..names.len()).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, r)) => inventories[i] = Some(r),
            Err(e) => {
                telemetry::task_failed("audit", "audit", &e);
            }
        }
    }
    share_organization_features(inventories.iter_mut().flatten().flatten());
    let now = now();
    let thresholds = settings.thresholds;
    let results: Vec<Option<Result<Evaluation, AuditError>>> = inventories
        .into_iter()
        .map(|r| r.map(|r| r.map(|inv| evaluate(&inv, &thresholds, now))))
        .collect();
    names
        .into_iter()
        .zip(results)
        .map(|(name, r)| {
            let result =
                r.unwrap_or_else(|| Err(AuditError::Task("panicked or was cancelled".into())));
            let name = name.unwrap_or_else(|| match &result {
                Ok(e) => e.account_id.clone(),
                Err(_) => "default".to_owned(),
            });
            AccountResult { name, result }
        })
        .collect()
}

/// Member accounts cannot read their organization's root access features;
/// the account that manages it can. Within one audit, members learn them
/// from it (rootwatch audits one organization: its own account, or the
/// management account, and the members through their roles).
pub fn share_organization_features<'a>(inventories: impl Iterator<Item = &'a mut Inventory>) {
    let mut all: Vec<&'a mut Inventory> = inventories.collect();
    let known = all.iter().find_map(|inv| match &inv.organization {
        OrgView::Manages(f) => Some(f.clone()),
        _ => None,
    });
    let Some(features) = known else {
        return;
    };
    for inv in all.iter_mut() {
        if inv.organization == OrgView::Member(None) {
            inv.organization = OrgView::Member(Some(features.clone()));
        }
    }
}

/// The daemon's audit loop: an audit at start, then every
/// `settings.interval`, until `stop`. Findings go through `pipeline` to the
/// sinks that take them.
pub async fn run_schedule(
    settings: AuditSettings,
    aws: aws_config::SdkConfig,
    pipeline: Arc<Pipeline>,
    stop: CancellationToken,
) {
    let state = Arc::new(Mutex::new(PostureState::default()));
    loop {
        tokio::select! {
            _ = audit_round(&settings, &aws, &pipeline, &state) => {}
            _ = stop.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One audit of every account: gauges set, new and due findings sent,
/// resolved problems logged.
pub async fn audit_round(
    settings: &AuditSettings,
    aws: &aws_config::SdkConfig,
    pipeline: &Arc<Pipeline>,
    state: &Arc<Mutex<PostureState>>,
) {
    let results = audit_all(settings, aws, Utc::now).await;
    let realert = chrono::Duration::from_std(settings.realert).unwrap_or(chrono::Duration::days(7));
    for r in results {
        let e = match r.result {
            Ok(e) => e,
            Err(error) => {
                telemetry::posture_audit_failed(&r.name, &error);
                continue;
            }
        };
        telemetry::posture_audited(
            &r.name,
            &e.account_id,
            e.generated,
            e.findings.len(),
            &e.notes,
            super::rules::REPORT_STALE_SECS,
        );
        for (rule, n) in e.counts() {
            telemetry::posture_violations(rule, &e.account_id, n);
        }
        let now = Utc::now();
        let (send, resolved) =
            state
                .lock()
                .expect("posture state lock")
                .plan(&e.account_id, e.findings, now, realert);
        for gone in resolved {
            telemetry::posture_resolved(
                &gone.account,
                &gone.rule,
                &gone.principal,
                &gone.finding_id,
            );
        }
        for f in send {
            // Marked alerted only once every sink that takes it has it.
            let (st, id) = (Arc::clone(state), f.finding_id.clone());
            let unit = InputHandle::new(move |outcome| {
                if outcome == Outcome::Done {
                    st.lock().expect("posture state lock").delivered(&id, now);
                }
            });
            pipeline.deliver_posture(f, &unit);
            unit.done();
        }
    }
}

/// Every posture rule id, for metric registration and sink routing.
pub fn rule_ids() -> &'static [&'static str] {
    &RULE_IDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::RootCredentials;

    fn inventory(account: &str, organization: OrgView) -> Inventory {
        Inventory {
            account_id: account.into(),
            generated: chrono::DateTime::UNIX_EPOCH,
            rows: Vec::new(),
            summary: Default::default(),
            virtual_mfa: Vec::new(),
            password_policy: Default::default(),
            organization,
            notes: Vec::new(),
        }
    }

    #[test]
    fn members_learn_the_features_from_the_account_that_manages_the_organization() {
        use crate::audit::rules::OrgFeatures;
        let on = OrgFeatures {
            organization_id: Some("o-a1b2c3d4e5".into()),
            root_credentials_management: true,
            root_sessions: false,
            why_off: None,
        };
        let mut all = [
            inventory("111111111111", OrgView::Member(None)),
            inventory("222222222222", OrgView::Manages(on.clone())),
            inventory("333333333333", OrgView::NotRead),
        ];
        share_organization_features(all.iter_mut());
        assert_eq!(all[0].organization, OrgView::Member(Some(on)));
        assert_eq!(all[2].organization, OrgView::NotRead);
        // No account manages: members stay unknown.
        let mut alone = [inventory("111111111111", OrgView::Member(None))];
        share_organization_features(alone.iter_mut());
        assert_eq!(alone[0].organization, OrgView::Member(None));
    }

    #[test]
    fn a_failed_account_is_reported_and_the_others_still_printed() {
        let generated = "2024-05-31T22:00:00Z".parse().unwrap();
        let results = vec![
            AccountResult {
                name: "prod".into(),
                result: Err(AuditError::ReportTimeout {
                    waited_secs: 300,
                    last: "INPROGRESS".into(),
                }),
            },
            AccountResult {
                name: "dev".into(),
                result: Ok(Evaluation {
                    account_id: "444455556666".into(),
                    generated,
                    users: 2,
                    root: RootCredentials::Absent,
                    findings: Vec::new(),
                    notes: Vec::new(),
                }),
            },
        ];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let all_ok = super::super::output::write_results(
            &results,
            super::super::output::AuditFormat::Json,
            generated + chrono::Duration::hours(2),
            &mut out,
            &mut err,
        )
        .unwrap();
        assert!(!all_ok);
        let err = String::from_utf8(err).unwrap();
        assert_eq!(
            err,
            "audit: account prod: could not be audited: the credential report was not ready after 300 s (last state: INPROGRESS)\n\
             audit: account 444455556666 (dev): report generated 2024-05-31T22:00:00Z, 2 IAM user(s), root credentials absent, 0 finding(s)\n"
        );
        assert!(out.is_empty());
    }
}
