//! Runs audits: every configured account at once (bounded), once for
//! `rootwatch audit` or on a schedule inside the daemon, where findings go
//! through the pipeline's sinks.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::reader::{AuditError, IamReader};
use super::rules::{Evaluation, RULE_IDS, RootCredentials, evaluate};
use super::settings::AuditSettings;
use super::state::PostureState;
use crate::ack::{Outcome, Unit};
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
        let (slots, base, thresholds, timeout) = (
            Arc::clone(&slots),
            base.clone(),
            settings.thresholds,
            settings.report_timeout,
        );
        names.push(target.as_ref().map(|t| t.name.clone()));
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let reader = match &target {
                None => IamReader::new(&base, timeout),
                Some(t) => IamReader::assuming(&base, t, timeout).await,
            };
            let result = reader
                .inventory()
                .await
                .map(|inv| evaluate(&inv, &thresholds, now()));
            (i, result)
        });
    }
    let mut results: Vec<Option<Result<Evaluation, AuditError>>> =
        (0..names.len()).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, r)) => results[i] = Some(r),
            Err(e) => {
                telemetry::task_failed("audit", "audit", &e);
            }
        }
    }
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

/// Writes findings as JSON lines to `out` and a summary to `err`. Returns
/// whether every account was audited.
pub fn write_results(
    results: &[AccountResult],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<bool> {
    let mut all_ok = true;
    for r in results {
        match &r.result {
            Ok(e) => {
                for f in &e.findings {
                    serde_json::to_writer(&mut *out, f)?;
                    out.write_all(b"\n")?;
                }
                writeln!(
                    err,
                    "audit: account {} ({}): report generated {}, {} IAM user(s), root credentials {}, {} finding(s)",
                    e.account_id,
                    r.name,
                    e.generated
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    e.users,
                    match e.root {
                        RootCredentials::Present => "present",
                        RootCredentials::Absent => "absent",
                    },
                    e.findings.len()
                )?;
                for (rule, n) in e.counts() {
                    if n > 0 {
                        writeln!(err, "  findings  {rule:<36} {n}")?;
                    }
                }
            }
            Err(e) => {
                all_ok = false;
                writeln!(err, "audit: account {}: could not be audited: {e}", r.name)?;
            }
        }
    }
    Ok(all_ok)
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
        telemetry::posture_audited(&r.name, &e.account_id, e.generated, e.findings.len());
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
            let unit = Unit::new(move |outcome| {
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
                }),
            },
        ];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let all_ok = write_results(&results, &mut out, &mut err).unwrap();
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
