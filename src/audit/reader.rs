//! Reads one account's IAM posture: the credential report (generated and
//! polled), the account summary and the virtual MFA devices. Cross-account
//! audits assume a role first.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_iam::types::ReportStateType;
use chrono::{DateTime, Utc};

use super::report::{self, ReportError};
use super::rules::{
    Inventory, OrgFeatures, OrgView, PasswordPolicy, PasswordPolicyState, VirtualMfa,
};
use super::settings::AccountTarget;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot tell which account the credentials belong to: {0}")]
    Identity(String),
    #[error("GenerateCredentialReport failed: {0}")]
    Generate(String),
    #[error("GetCredentialReport failed: {0}")]
    GetReport(String),
    #[error("the credential report was not ready after {waited_secs} s (last state: {last})")]
    ReportTimeout { waited_secs: u64, last: String },
    #[error("GetCredentialReport returned no content")]
    EmptyReport,
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("GetAccountSummary failed: {0}")]
    Summary(String),
    #[error("ListVirtualMFADevices failed: {0}")]
    VirtualMfa(String),
    #[error("the audit task stopped unexpectedly: {0}")]
    Task(String),
}

/// What to do after an IAM error on the credential report calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportRetry {
    /// Transient (the report is being made, throttling, IAM's own failure):
    /// wait and ask again. Never taken for an empty report.
    Wait,
    /// No report, or it expired: ask IAM to generate one.
    Generate,
    /// Anything else (access denied, a bad request): give up.
    Fail,
}

/// Classifies an IAM error code from the credential report calls.
pub fn report_retry(code: Option<&str>) -> ReportRetry {
    match code {
        Some(
            "ReportInProgress"
            | "LimitExceeded"
            | "ServiceFailure"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => ReportRetry::Wait,
        Some("ReportNotPresent" | "ReportExpired") => ReportRetry::Generate,
        // No code: the request did not get an answer (a timeout, a
        // connection reset); worth another try within the deadline.
        None => ReportRetry::Wait,
        Some(_) => ReportRetry::Fail,
    }
}

/// What an error of `iam:ListOrganizationsFeatures` says about the
/// account (the operation's documented errors); `None` when it says
/// nothing (access denied, throttled, not implemented).
pub fn org_view_of_error(code: Option<&str>) -> Option<OrgView> {
    let off = |why: &str| {
        OrgView::Manages(OrgFeatures {
            organization_id: None,
            root_credentials_management: false,
            root_sessions: false,
            why_off: Some(why.to_owned()),
        })
    };
    match code? {
        "OrganizationNotFoundException" => Some(OrgView::NotInOrganization),
        "AccountNotManagementOrDelegatedAdministratorException" => Some(OrgView::Member(None)),
        // Only the management account hears these: without trusted access
        // for IAM (or all features) the feature cannot be on.
        "ServiceAccessNotEnabledException" => Some(off(
            "trusted access for IAM is not enabled in AWS Organizations",
        )),
        "OrganizationNotInAllFeaturesModeException" => {
            Some(off("the organization does not have all features enabled"))
        }
        _ => None,
    }
}

/// The wait before poll `attempt` (0-based): 1 s doubling to 16 s.
pub fn poll_wait(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(4))
}

pub struct IamReader {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    report_timeout: Duration,
}

impl IamReader {
    /// A reader using `base`'s credentials (rootwatch's own account).
    pub fn new(base: &aws_config::SdkConfig, report_timeout: Duration) -> IamReader {
        IamReader {
            iam: aws_sdk_iam::Client::new(base),
            sts: aws_sdk_sts::Client::new(base),
            report_timeout,
        }
    }

    /// A reader for a member account: `base`'s credentials assume
    /// `target.role_arn` (refreshed by the SDK as they expire).
    pub async fn assuming(
        base: &aws_config::SdkConfig,
        target: &AccountTarget,
        report_timeout: Duration,
    ) -> IamReader {
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(&target.role_arn)
            .session_name("rootwatch-audit")
            .configure(base);
        if let Some(id) = &target.external_id {
            provider = provider.external_id(id.expose());
        }
        let provider = provider.build().await;
        let config = base
            .to_builder()
            .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
                provider,
            ))
            .build();
        IamReader::new(&config, report_timeout)
    }

    /// Everything the posture rules read, for the account these
    /// credentials belong to.
    pub async fn inventory(&self) -> Result<Inventory, AuditError> {
        let identity = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AuditError::Identity(DisplayErrorContext(e).to_string()))?;
        let account_id = identity
            .account()
            .ok_or_else(|| AuditError::Identity("GetCallerIdentity returned no account".into()))?
            .to_owned();
        let (csv, generated) = self.credential_report().await?;
        let rows = report::parse(&csv)?;
        let mut notes = Vec::new();
        let password_policy = self.password_policy(&mut notes).await;
        let organization = self.organization(&mut notes).await;
        Ok(Inventory {
            account_id,
            generated,
            rows,
            summary: self.account_summary().await?,
            virtual_mfa: self.virtual_mfa_devices().await?,
            password_policy,
            organization,
            notes,
        })
    }

    /// The password policy; a failed call skips the policy checks (said in
    /// `notes`) rather than the whole audit.
    async fn password_policy(&self, notes: &mut Vec<String>) -> PasswordPolicyState {
        match self.iam.get_account_password_policy().send().await {
            Ok(out) => match out.password_policy() {
                Some(p) => PasswordPolicyState::Set(PasswordPolicy {
                    minimum_length: p
                        .minimum_password_length()
                        .and_then(|n| u32::try_from(n).ok()),
                    reuse_prevention: p
                        .password_reuse_prevention()
                        .and_then(|n| u32::try_from(n).ok()),
                }),
                None => PasswordPolicyState::Absent,
            },
            Err(e) if e.code() == Some("NoSuchEntity") => PasswordPolicyState::Absent,
            Err(e) => {
                notes.push(format!(
                    "password policy checks skipped: GetAccountPasswordPolicy failed: {}",
                    DisplayErrorContext(e)
                ));
                PasswordPolicyState::NotRead
            }
        }
    }

    /// Centralised root access, as far as this account can tell.
    async fn organization(&self, notes: &mut Vec<String>) -> OrgView {
        match self.iam.list_organizations_features().send().await {
            Ok(out) => {
                let on = |f: aws_sdk_iam::types::FeatureType| out.enabled_features().contains(&f);
                OrgView::Manages(OrgFeatures {
                    organization_id: out.organization_id().map(str::to_owned),
                    root_credentials_management: on(
                        aws_sdk_iam::types::FeatureType::RootCredentialsManagement,
                    ),
                    root_sessions: on(aws_sdk_iam::types::FeatureType::RootSessions),
                    why_off: None,
                })
            }
            Err(e) => match org_view_of_error(e.code()) {
                Some(view) => view,
                None => {
                    notes.push(format!(
                        "centralised root access checks skipped: ListOrganizationsFeatures failed: {}",
                        DisplayErrorContext(e)
                    ));
                    OrgView::NotRead
                }
            },
        }
    }

    /// Asks for a report and polls until IAM has one. IAM generates a new
    /// report at most every four hours and hands out the cached one
    /// meanwhile; its GeneratedTime says which.
    async fn credential_report(&self) -> Result<(Vec<u8>, DateTime<Utc>), AuditError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut need_generate = true;
        let mut last = String::from("not asked yet");
        loop {
            if need_generate {
                match self.iam.generate_credential_report().send().await {
                    Ok(out) => {
                        let state = out.state().cloned();
                        last = state
                            .as_ref()
                            .map_or("unknown".into(), |s| s.as_str().to_owned());
                        need_generate = state != Some(ReportStateType::Complete);
                    }
                    Err(e) => match report_retry(e.code()) {
                        ReportRetry::Fail => {
                            return Err(AuditError::Generate(DisplayErrorContext(e).to_string()));
                        }
                        _ => last = DisplayErrorContext(&e).to_string(),
                    },
                }
            }
            if !need_generate {
                match self.iam.get_credential_report().send().await {
                    Ok(out) => {
                        let content = out.content().ok_or(AuditError::EmptyReport)?;
                        let generated = out
                            .generated_time()
                            .and_then(|t| {
                                DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
                            })
                            .unwrap_or_else(Utc::now);
                        return Ok((content.as_ref().to_vec(), generated));
                    }
                    Err(e) => match report_retry(e.code()) {
                        ReportRetry::Fail => {
                            return Err(AuditError::GetReport(DisplayErrorContext(e).to_string()));
                        }
                        ReportRetry::Generate => {
                            need_generate = true;
                            last = DisplayErrorContext(&e).to_string();
                        }
                        ReportRetry::Wait => last = DisplayErrorContext(&e).to_string(),
                    },
                }
            }
            let wait = poll_wait(attempt);
            attempt += 1;
            if started.elapsed() + wait > self.report_timeout {
                return Err(AuditError::ReportTimeout {
                    waited_secs: started.elapsed().as_secs(),
                    last,
                });
            }
            tracing::debug!(state = %last, wait_ms = wait.as_millis() as u64, "credential report not ready; polling again");
            tokio::time::sleep(wait).await;
        }
    }

    async fn account_summary(&self) -> Result<HashMap<String, i64>, AuditError> {
        let out = self
            .iam
            .get_account_summary()
            .send()
            .await
            .map_err(|e| AuditError::Summary(DisplayErrorContext(e).to_string()))?;
        // By key string: keys the SDK's enum does not know still count.
        Ok(out
            .summary_map()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_owned(), i64::from(*v)))
            .collect())
    }

    async fn virtual_mfa_devices(&self) -> Result<Vec<VirtualMfa>, AuditError> {
        let mut pages = self.iam.list_virtual_mfa_devices().into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| AuditError::VirtualMfa(DisplayErrorContext(e).to_string()))?;
            for d in page.virtual_mfa_devices() {
                out.push(VirtualMfa {
                    serial_number: d.serial_number().to_owned(),
                    user_arn: d.user().map(|u| u.arn().to_owned()),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_errors_are_retried_never_taken_for_an_empty_report() {
        for code in [
            "ReportInProgress",
            "LimitExceeded",
            "ServiceFailure",
            "Throttling",
        ] {
            assert_eq!(report_retry(Some(code)), ReportRetry::Wait, "{code}");
        }
        for code in ["ReportNotPresent", "ReportExpired"] {
            assert_eq!(report_retry(Some(code)), ReportRetry::Generate, "{code}");
        }
        assert_eq!(report_retry(Some("AccessDenied")), ReportRetry::Fail);
        assert_eq!(report_retry(None), ReportRetry::Wait);
    }

    #[test]
    fn organization_errors_say_what_they_mean() {
        assert_eq!(
            org_view_of_error(Some("OrganizationNotFoundException")),
            Some(OrgView::NotInOrganization)
        );
        assert_eq!(
            org_view_of_error(Some(
                "AccountNotManagementOrDelegatedAdministratorException"
            )),
            Some(OrgView::Member(None))
        );
        for code in [
            "ServiceAccessNotEnabledException",
            "OrganizationNotInAllFeaturesModeException",
        ] {
            assert!(
                matches!(
                    org_view_of_error(Some(code)),
                    Some(OrgView::Manages(OrgFeatures {
                        root_credentials_management: false,
                        why_off: Some(_),
                        ..
                    }))
                ),
                "{code}"
            );
        }
        assert_eq!(org_view_of_error(Some("AccessDenied")), None);
        assert_eq!(org_view_of_error(None), None);
    }

    #[test]
    fn polling_backs_off_to_a_bound() {
        let waits: Vec<u64> = (0..7).map(|a| poll_wait(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 16, 16]);
    }
}
