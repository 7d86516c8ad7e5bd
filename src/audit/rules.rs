//! Posture rules over one account's credential report, account summary and
//! virtual MFA devices. Pure: the audit time is passed in.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::report::{CredentialRow, Flag, Stamp};
use crate::finding::{Finding, PostureSubject, Severity};

pub const ROOT_RECENTLY_USED: &str = "posture-root-recently-used";
pub const ROOT_ACCESS_KEY: &str = "posture-root-access-key";
pub const ROOT_NO_MFA: &str = "posture-root-no-mfa";
pub const ROOT_VIRTUAL_MFA: &str = "posture-root-virtual-mfa";
pub const USER_CONSOLE_WITHOUT_MFA: &str = "posture-user-console-without-mfa";
pub const USER_INITIAL_ACCESS_KEY: &str = "posture-user-initial-access-key";
pub const USER_TWO_ACTIVE_KEYS: &str = "posture-user-two-active-keys";
pub const ACCESS_KEY_NOT_ROTATED: &str = "posture-access-key-not-rotated";
pub const CREDENTIALS_UNUSED: &str = "posture-credentials-unused";

/// Every posture rule id (the `check` label values).
pub const RULE_IDS: [&str; 9] = [
    ROOT_RECENTLY_USED,
    ROOT_ACCESS_KEY,
    ROOT_NO_MFA,
    ROOT_VIRTUAL_MFA,
    USER_CONSOLE_WITHOUT_MFA,
    USER_INITIAL_ACCESS_KEY,
    USER_TWO_ACTIVE_KEYS,
    ACCESS_KEY_NOT_ROTATED,
    CREDENTIALS_UNUSED,
];

/// A key created this close to its user was made with the user (CIS 1.11).
const INITIAL_KEY_WINDOW_SECS: i64 = 10;
const ONE_YEAR_DAYS: u32 = 365;
const FIVE_YEARS_DAYS: u32 = 5 * 365;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub root_recent_days: u32,
    pub key_max_age_days: u32,
    pub unused_days: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            root_recent_days: 7,
            key_max_age_days: 90,
            unused_days: 45,
        }
    }
}

/// A virtual MFA device and the ARN of the user it is assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualMfa {
    pub serial_number: String,
    pub user_arn: Option<String>,
}

/// What the IAM reader gathered for one account.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub account_id: String,
    /// The report's `GeneratedTime`: AWS hands out a cached report for up
    /// to four hours, so findings say how old their evidence is.
    pub generated: DateTime<Utc>,
    pub rows: Vec<CredentialRow>,
    /// `GetAccountSummary`, by key string (SDK enums may not know new keys).
    pub summary: HashMap<String, i64>,
    pub virtual_mfa: Vec<VirtualMfa>,
}

/// Whether the root user has any credential to protect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootCredentials {
    Present,
    /// No password and no access key (a member account under centralised
    /// root access): nothing to report about root.
    Absent,
}

/// The outcome of auditing one account.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub account_id: String,
    pub generated: DateTime<Utc>,
    pub users: usize,
    pub root: RootCredentials,
    pub findings: Vec<Finding>,
}

impl Evaluation {
    /// Violations per rule id, every rule present (zero when clean).
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        RULE_IDS
            .iter()
            .map(|r| {
                (
                    *r,
                    self.findings.iter().filter(|f| f.rule == *r).count() as u64,
                )
            })
            .collect()
    }
}

struct Ctx<'a> {
    inv: &'a Inventory,
    now: DateTime<Utc>,
    out: Vec<Finding>,
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        rule: &str,
        title: String,
        severity: Severity,
        reason: String,
        row: Option<&CredentialRow>,
        credential: Option<&str>,
        mfa: Option<bool>,
    ) {
        let principal_arn = row
            .map(|r| r.arn.clone())
            .unwrap_or_else(|| format!("arn:aws:iam::{}:root", self.inv.account_id));
        let is_root = row.is_none_or(CredentialRow::is_root);
        let evidence = json!({
            "source": "iam-credential-report",
            "account_id": self.inv.account_id,
            "report_generated_time": rfc3339(self.inv.generated),
            "audit_time": rfc3339(self.now),
            "credential": credential,
            "row": row.map(|r| r.raw.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect::<serde_json::Map<_, _>>()),
        });
        self.out.push(Finding::posture(PostureSubject {
            rule,
            title,
            severity,
            reason,
            account_id: &self.inv.account_id,
            principal_type: if is_root { "Root" } else { "IAMUser" },
            user_name: row.filter(|r| !r.is_root()).map(|r| r.user.as_str()),
            subject: &format!("{principal_arn}#{}", credential.unwrap_or("")),
            principal_arn: &principal_arn,
            observed: self.inv.generated,
            mfa,
            evidence,
        }));
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn days(d: Duration) -> i64 {
    d.num_days()
}

/// Runs every posture rule over `inv` as of `now`.
pub fn evaluate(inv: &Inventory, thresholds: &Thresholds, now: DateTime<Utc>) -> Evaluation {
    let mut cx = Ctx {
        inv,
        now,
        out: Vec::new(),
    };
    let root = root_rules(&mut cx, thresholds);
    for row in inv.rows.iter().filter(|r| !r.is_root()) {
        user_rules(&mut cx, thresholds, row);
    }
    for row in inv.rows.iter() {
        if row.is_root() && root == RootCredentials::Absent {
            continue;
        }
        key_age(&mut cx, thresholds, row);
    }
    Evaluation {
        account_id: inv.account_id.clone(),
        generated: inv.generated,
        users: inv.rows.iter().filter(|r| !r.is_root()).count(),
        root,
        findings: cx.out,
    }
}

fn summary_flag(inv: &Inventory, key: &str) -> Option<bool> {
    inv.summary.get(key).map(|v| *v != 0)
}

fn root_rules(cx: &mut Ctx<'_>, th: &Thresholds) -> RootCredentials {
    let inv = cx.inv;
    let row = inv.rows.iter().find(|r| r.is_root());
    // Older reports say `not_supported` for root's password: the account
    // summary's AccountPasswordPresent tells instead. When neither says,
    // a root row is taken to have a password (report, do not miss).
    let password = match row.map(|r| r.password_enabled) {
        Some(Flag::Yes) => true,
        Some(Flag::No) => false,
        Some(Flag::NotSupported) | None => {
            summary_flag(inv, "AccountPasswordPresent").unwrap_or(row.is_some())
        }
    };
    let active_keys: Vec<usize> = row
        .map(|r| (0..2).filter(|&i| r.keys[i].active).collect())
        .unwrap_or_default();
    let summary_keys = summary_flag(inv, "AccountAccessKeysPresent") == Some(true);
    if !password && active_keys.is_empty() && !summary_keys {
        return RootCredentials::Absent;
    }

    if let Some(r) = row {
        let newest = [
            ("password", r.password_last_used),
            ("access_key_1", r.keys[0].last_used),
            ("access_key_2", r.keys[1].last_used),
        ]
        .into_iter()
        .filter_map(|(what, s)| s.at().map(|t| (t, what)))
        .max();
        if let Some((t, what)) = newest
            && now_minus(cx.now, t) <= Duration::days(th.root_recent_days.into())
        {
            cx.push(
                ROOT_RECENTLY_USED,
                "Root user used recently".into(),
                Severity::High,
                format!(
                    "the root user's {what} was last used at {} (within {} days)",
                    rfc3339(t),
                    th.root_recent_days
                ),
                Some(r),
                None,
                Some(r.mfa_active),
            );
        }
    }
    if !active_keys.is_empty() || summary_keys {
        let which = if active_keys.is_empty() {
            "the account summary reports AccountAccessKeysPresent = 1".to_owned()
        } else {
            let names: Vec<String> = active_keys
                .iter()
                .map(|i| format!("access_key_{}", i + 1))
                .collect();
            format!("the root user has active {}", names.join(" and "))
        };
        cx.push(
            ROOT_ACCESS_KEY,
            "Root user has an access key".into(),
            Severity::Critical,
            which,
            row,
            None,
            row.map(|r| r.mfa_active),
        );
    }
    let row_no_mfa = row.is_some_and(|r| !r.mfa_active);
    let summary_no_mfa = summary_flag(inv, "AccountMFAEnabled") == Some(false);
    if row_no_mfa || summary_no_mfa {
        let why = if row_no_mfa {
            "mfa_active is false"
        } else {
            "the account summary reports AccountMFAEnabled = 0"
        };
        cx.push(
            ROOT_NO_MFA,
            "Root user has no MFA".into(),
            Severity::Critical,
            format!("the root user has a credential and {why}"),
            row,
            None,
            Some(false),
        );
    }
    let root_arn = format!("arn:aws:iam::{}:root", inv.account_id);
    if let Some(device) = inv.virtual_mfa.iter().find(|d| {
        d.user_arn
            .as_deref()
            .is_some_and(|a| a == root_arn || (a.starts_with("arn:aws") && a.ends_with(":root")))
    }) {
        cx.push(
            ROOT_VIRTUAL_MFA,
            "Root user's MFA is a virtual device".into(),
            Severity::Medium,
            format!(
                "the root user's MFA is the virtual device {}; a hardware device is recommended",
                device.serial_number
            ),
            row,
            None,
            Some(true),
        );
    }
    RootCredentials::Present
}

/// `now - t`, never negative (a clock behind the report's stamps).
fn now_minus(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).max(Duration::zero())
}

fn user_rules(cx: &mut Ctx<'_>, th: &Thresholds, row: &CredentialRow) {
    let console = row.password_enabled == Flag::Yes;
    if console && !row.mfa_active {
        cx.push(
            USER_CONSOLE_WITHOUT_MFA,
            "IAM user can sign in to the console without MFA".into(),
            Severity::High,
            format!(
                "IAM user {} has a console password and no MFA device",
                row.user
            ),
            Some(row),
            None,
            Some(false),
        );
    }
    for (i, key) in row.keys.iter().enumerate().filter(|(_, k)| k.active) {
        let name = format!("access_key_{}", i + 1);
        let never_used = key.last_used == Stamp::NotApplicable;
        let with_user = match (key.last_rotated.at(), row.created.at()) {
            (Some(k), Some(u)) => (k - u).num_seconds().abs() <= INITIAL_KEY_WINDOW_SECS,
            _ => false,
        };
        if (console && never_used) || with_user {
            let why = if console && never_used {
                "was never used and the user also has a console password"
            } else {
                "was created with the user"
            };
            cx.push(
                USER_INITIAL_ACCESS_KEY,
                "IAM user has an access key set up at creation".into(),
                Severity::Low,
                format!("IAM user {}'s active {name} {why}", row.user),
                Some(row),
                Some(&name),
                Some(row.mfa_active),
            );
        }
    }
    if row.keys.iter().all(|k| k.active) {
        cx.push(
            USER_TWO_ACTIVE_KEYS,
            "IAM user has two active access keys".into(),
            Severity::Medium,
            format!("IAM user {} has both access keys active", row.user),
            Some(row),
            None,
            Some(row.mfa_active),
        );
    }
    unused(cx, th, row, console);
}

fn unused(cx: &mut Ctx<'_>, th: &Thresholds, row: &CredentialRow, console: bool) {
    let limit = Duration::days(th.unused_days.into());
    if console {
        // A password never used (or not since tracking began) counts from
        // when it was set, then from when the user was created.
        let since = match row.password_last_used {
            Stamp::At(t) => Some((t, "last used")),
            _ => row
                .password_last_changed
                .at()
                .map(|t| (t, "set and never used since"))
                .or_else(|| {
                    row.created
                        .at()
                        .map(|t| (t, "created and never used since"))
                }),
        };
        if let Some((t, how)) = since
            && now_minus(cx.now, t) > limit
        {
            cx.push(
                CREDENTIALS_UNUSED,
                "IAM user credential unused".into(),
                Severity::Low,
                format!(
                    "IAM user {}'s password was {how} {} ({} days ago; limit {})",
                    row.user,
                    rfc3339(t),
                    days(now_minus(cx.now, t)),
                    th.unused_days
                ),
                Some(row),
                Some("password"),
                Some(row.mfa_active),
            );
        }
    }
    for (i, key) in row.keys.iter().enumerate().filter(|(_, k)| k.active) {
        let name = format!("access_key_{}", i + 1);
        // A key never used is as unused as one left idle: it counts from
        // its creation.
        let since = match key.last_used {
            Stamp::At(t) => Some((t, "last used")),
            _ => key
                .last_rotated
                .at()
                .map(|t| (t, "created and never used since")),
        };
        if let Some((t, how)) = since
            && now_minus(cx.now, t) > limit
        {
            cx.push(
                CREDENTIALS_UNUSED,
                "IAM user credential unused".into(),
                Severity::Low,
                format!(
                    "IAM user {}'s active {name} was {how} {} ({} days ago; limit {})",
                    row.user,
                    rfc3339(t),
                    days(now_minus(cx.now, t)),
                    th.unused_days
                ),
                Some(row),
                Some(&name),
                Some(row.mfa_active),
            );
        }
    }
}

/// The age tier of a key older than the limit: the largest threshold it
/// passed.
pub fn key_age_tier(age_days: i64, key_max_age_days: u32) -> Option<&'static str> {
    if age_days > FIVE_YEARS_DAYS.into() {
        Some("5y")
    } else if age_days > ONE_YEAR_DAYS.into() {
        Some("1y")
    } else if age_days > key_max_age_days.into() {
        Some("max_age")
    } else {
        None
    }
}

fn key_age(cx: &mut Ctx<'_>, th: &Thresholds, row: &CredentialRow) {
    for (i, key) in row.keys.iter().enumerate().filter(|(_, k)| k.active) {
        let Some(rotated) = key.last_rotated.at() else {
            continue;
        };
        let age = days(now_minus(cx.now, rotated));
        let Some(tier) = key_age_tier(age, th.key_max_age_days) else {
            continue;
        };
        let (label, severity) = match tier {
            "5y" => ("over 5 years".to_owned(), Severity::High),
            "1y" => ("over 1 year".to_owned(), Severity::Medium),
            _ => (
                format!("over {} days", th.key_max_age_days),
                Severity::Medium,
            ),
        };
        let name = format!("access_key_{}", i + 1);
        let who = if row.is_root() {
            "the root user".to_owned()
        } else {
            format!("IAM user {}", row.user)
        };
        cx.push(
            ACCESS_KEY_NOT_ROTATED,
            format!("Access key not rotated in {label}"),
            severity,
            format!(
                "{who}'s active {name} was last rotated {} ({age} days ago; tier {label}, limit {} days)",
                rfc3339(rotated),
                th.key_max_age_days
            ),
            Some(row),
            Some(&name),
            Some(row.mfa_active),
        );
    }
}
