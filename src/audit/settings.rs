//! Validated `[audit]` settings (the raw file form is in config/audit.rs).

use std::num::NonZeroUsize;
use std::time::Duration;

use super::rules::Thresholds;

#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Whether `rootwatch run` audits on a schedule; `rootwatch audit`
    /// runs whatever this says.
    pub enabled: bool,
    pub interval: Duration,
    /// An open problem alerts again after this long.
    pub realert: Duration,
    pub thresholds: Thresholds,
    /// Accounts audited at once.
    pub concurrency: NonZeroUsize,
    /// How long to wait for IAM to generate a credential report.
    pub report_timeout: Duration,
    /// Empty: the account of rootwatch's own credentials.
    pub accounts: Vec<AccountTarget>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: false,
            interval: Duration::from_secs(3600),
            realert: Duration::from_secs(7 * 86_400),
            thresholds: Thresholds::default(),
            concurrency: NonZeroUsize::new(4).expect("4 is not zero"),
            report_timeout: Duration::from_secs(300),
            accounts: Vec::new(),
        }
    }
}

/// A member account audited through `sts:AssumeRole`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTarget {
    /// For logs, metrics and the summary: the configured name, or the
    /// account id from the role ARN.
    pub name: String,
    /// From the role ARN.
    pub account_id: String,
    pub role_arn: String,
    pub external_id: Option<crate::secret::Secret>,
}
