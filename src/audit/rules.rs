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
pub const USER_UNUSED: &str = "posture-user-unused";
pub const PASSWORD_MIN_LENGTH: &str = "posture-password-policy-length";
pub const PASSWORD_REUSE: &str = "posture-password-policy-reuse";
pub const ROOT_CREDENTIALS_MANAGEMENT_DISABLED: &str =
    "posture-root-credentials-management-disabled";
pub const MEMBER_ROOT_CREDENTIALS: &str = "posture-member-root-credentials";

/// Every posture rule id (the `check` label values).
pub const RULE_IDS: [&str; 14] = [
    ROOT_RECENTLY_USED,
    ROOT_ACCESS_KEY,
    ROOT_NO_MFA,
    ROOT_VIRTUAL_MFA,
    USER_CONSOLE_WITHOUT_MFA,
    USER_INITIAL_ACCESS_KEY,
    USER_TWO_ACTIVE_KEYS,
    ACCESS_KEY_NOT_ROTATED,
    CREDENTIALS_UNUSED,
    USER_UNUSED,
    PASSWORD_MIN_LENGTH,
    PASSWORD_REUSE,
    ROOT_CREDENTIALS_MANAGEMENT_DISABLED,
    MEMBER_ROOT_CREDENTIALS,
];

/// The CIS AWS Foundations Benchmark v3.0.0 recommendation a posture rule
/// checks; `None` for the checks CIS does not have.
pub fn cis_control(rule: &str) -> Option<&'static str> {
    Some(match rule {
        ROOT_ACCESS_KEY => "1.4",
        ROOT_NO_MFA => "1.5",
        ROOT_VIRTUAL_MFA => "1.6",
        ROOT_RECENTLY_USED => "1.7",
        PASSWORD_MIN_LENGTH => "1.8",
        PASSWORD_REUSE => "1.9",
        USER_CONSOLE_WITHOUT_MFA => "1.10",
        USER_INITIAL_ACCESS_KEY => "1.11",
        CREDENTIALS_UNUSED | USER_UNUSED => "1.12",
        USER_TWO_ACTIVE_KEYS => "1.13",
        ACCESS_KEY_NOT_ROTATED => "1.14",
        _ => return None,
    })
}

/// The benchmark `cis_control` numbers refer to.
pub const CIS_BENCHMARK: &str = "CIS Amazon Web Services Foundations Benchmark v3.0.0";

/// A key created this close to its user was made with the user (CIS 1.11).
const INITIAL_KEY_WINDOW_SECS: i64 = 10;
const ONE_YEAR_DAYS: u32 = 365;
/// The seed's unused-credential figure: past it an unused credential is
/// medium rather than low.
const UNUSED_MEDIUM_DAYS: u32 = 90;
const FIVE_YEARS_DAYS: u32 = 5 * 365;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub root_recent_days: u32,
    pub key_max_age_days: u32,
    pub unused_days: u32,
    /// Two active keys where the newer is younger than this are a rotation
    /// in progress.
    pub rotation_grace_days: u32,
    /// CIS 1.8.
    pub password_min_length: u32,
    /// CIS 1.9.
    pub password_reuse_prevention: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            root_recent_days: 7,
            key_max_age_days: 90,
            unused_days: 45,
            rotation_grace_days: 7,
            password_min_length: 14,
            password_reuse_prevention: 24,
        }
    }
}

/// A virtual MFA device and the ARN of the user it is assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualMfa {
    pub serial_number: String,
    pub user_arn: Option<String>,
}

/// The account's password policy (`GetAccountPasswordPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PasswordPolicyState {
    /// Not read: an offline report given without the policy, or the call
    /// failed (the evaluation's notes say why).
    #[default]
    NotRead,
    /// `NoSuchEntity`: the account has no policy, IAM's default applies.
    Absent,
    Set(PasswordPolicy),
}

/// The two settings CIS 1.8 and 1.9 look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PasswordPolicy {
    pub minimum_length: Option<u32>,
    pub reuse_prevention: Option<u32>,
}

/// Centralised root access of the account's organization
/// (`iam:ListOrganizationsFeatures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgFeatures {
    pub organization_id: Option<String>,
    pub root_credentials_management: bool,
    pub root_sessions: bool,
    /// Why the features are off when the call said so by an error
    /// (trusted access for IAM not enabled, not all features).
    pub why_off: Option<String>,
}

/// What the account can tell of its organization's root access features.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OrgView {
    /// Not read: offline without the file, or the call failed.
    #[default]
    NotRead,
    /// `OrganizationNotFoundException`: a standalone account.
    NotInOrganization,
    /// The call answered: the organization's management account or its
    /// delegated administrator for IAM.
    Manages(OrgFeatures),
    /// `AccountNotManagementOrDelegatedAdministratorException`: a member
    /// account. The features are those the audit learned from the account
    /// that manages the organization in the same round, when it audited
    /// one (rootwatch audits one organization).
    Member(Option<OrgFeatures>),
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
    pub password_policy: PasswordPolicyState,
    pub organization: OrgView,
    /// Checks that could not run and why (a call denied, a file not
    /// given), said with the audit's summary.
    pub notes: Vec<String>,
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
    /// From the inventory: checks that could not run.
    pub notes: Vec<String>,
}

/// AWS regenerates a credential report at most every four hours; an older
/// one is used but said.
pub const REPORT_STALE_SECS: u64 = 4 * 3600;

impl Evaluation {
    /// How old the credential report was at the audit.
    pub fn report_age_seconds(&self, now: DateTime<Utc>) -> u64 {
        u64::try_from((now - self.generated).num_seconds()).unwrap_or(0)
    }

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
            report_age_seconds: Some(
                u64::try_from((self.now - self.inv.generated).num_seconds()).unwrap_or(0),
            ),
            mfa,
            evidence,
        }));
    }
}

impl Ctx<'_> {
    /// A finding about the account itself (a policy, a setting), not a
    /// principal of it.
    fn push_account(
        &mut self,
        rule: &str,
        title: String,
        severity: Severity,
        reason: String,
        setting: &str,
    ) {
        self.push(rule, title, severity, reason, None, Some(setting), None);
        if let Some(f) = self.out.last_mut() {
            f.principal_type = Some("Account".into());
        }
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
    password_policy(&mut cx, thresholds);
    organization(&mut cx, root);
    Evaluation {
        account_id: inv.account_id.clone(),
        generated: inv.generated,
        users: inv.rows.iter().filter(|r| !r.is_root()).count(),
        root,
        findings: cx.out,
        notes: inv.notes.clone(),
    }
}

/// CIS 1.8 and 1.9, one finding per setting short of its threshold; an
/// account without a policy fails both (IAM's default allows 8-character
/// passwords and any reuse).
fn password_policy(cx: &mut Ctx<'_>, th: &Thresholds) {
    let (length, reuse) = match &cx.inv.password_policy {
        PasswordPolicyState::NotRead => return,
        PasswordPolicyState::Absent => {
            let why = "the account has no password policy (IAM's default allows 8-character passwords and reusing them)";
            (Some(why.to_owned()), Some(why.to_owned()))
        }
        PasswordPolicyState::Set(p) => (
            match p.minimum_length {
                Some(n) if n >= th.password_min_length => None,
                Some(n) => Some(format!(
                    "the password policy's MinimumPasswordLength is {n}, below {}",
                    th.password_min_length
                )),
                None => Some(format!(
                    "the password policy sets no MinimumPasswordLength (IAM's default is 8), below {}",
                    th.password_min_length
                )),
            },
            match p.reuse_prevention {
                Some(n) if n >= th.password_reuse_prevention => None,
                Some(n) => Some(format!(
                    "the password policy's PasswordReusePrevention is {n}, below {}",
                    th.password_reuse_prevention
                )),
                None => Some(format!(
                    "the password policy does not prevent password reuse (PasswordReusePrevention unset; {} required)",
                    th.password_reuse_prevention
                )),
            },
        ),
    };
    if let Some(reason) = length {
        cx.push_account(
            PASSWORD_MIN_LENGTH,
            format!(
                "Password policy allows passwords shorter than {}",
                th.password_min_length
            ),
            Severity::Medium,
            reason,
            "password_policy.minimum_length",
        );
    }
    if let Some(reason) = reuse {
        cx.push_account(
            PASSWORD_REUSE,
            "Password policy does not prevent password reuse".into(),
            Severity::Medium,
            reason,
            "password_policy.reuse_prevention",
        );
    }
}

/// Centralised root access (Prowler's
/// `iam_root_credentials_management_enabled`): the account that manages
/// the organization should have it on; a member account of an
/// organization that has it on should have no root credentials (someone
/// recovered them, or they were never removed).
fn organization(cx: &mut Ctx<'_>, root: RootCredentials) {
    match &cx.inv.organization {
        OrgView::Manages(f) if !f.root_credentials_management => {
            let org = f
                .organization_id
                .as_deref()
                .map_or(String::new(), |o| format!(" {o}"));
            let why = f
                .why_off
                .as_deref()
                .map_or(String::new(), |w| format!(" ({w})"));
            cx.push_account(
                ROOT_CREDENTIALS_MANAGEMENT_DISABLED,
                "Centralised root access management is off".into(),
                Severity::Medium,
                format!(
                    "the organization{org} does not have RootCredentialsManagement enabled{why}: member accounts may keep root passwords and keys"
                ),
                "organization.root_credentials_management",
            );
        }
        OrgView::Member(Some(f))
            if f.root_credentials_management && root == RootCredentials::Present =>
        {
            let inv = cx.inv;
            let row = inv.rows.iter().find(|r| r.is_root());
            let org = f
                .organization_id
                .as_deref()
                .map_or(String::new(), |o| format!(" {o}"));
            cx.push(
                MEMBER_ROOT_CREDENTIALS,
                "Member account has root credentials under centralised root access".into(),
                Severity::High,
                format!(
                    "the organization{org} manages root access centrally, yet this member account's root user has a password or an access key (recovered, or never removed)"
                ),
                row,
                None,
                row.map(|r| r.mfa_active),
            );
        }
        _ => {}
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
    // Recent use counts whether or not the credential is still there: a
    // password used two days ago and removed since is still root use.
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
    if !password && active_keys.is_empty() && !summary_keys {
        return RootCredentials::Absent;
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
    // CIS 1.11 and Prowler's iam_user_no_setup_initial_access_key: a key
    // set up for a console user who never used it. An API-only user (a CI
    // or service user made together with its key) is not this case.
    for (i, key) in row.keys.iter().enumerate().filter(|(_, k)| k.active) {
        if !console || key.last_used != Stamp::NotApplicable {
            continue;
        }
        let name = format!("access_key_{}", i + 1);
        let with_user = match (key.last_rotated.at(), row.created.at()) {
            (Some(k), Some(u)) => (k - u).num_seconds().abs() <= INITIAL_KEY_WINDOW_SECS,
            _ => false,
        };
        let why = if with_user {
            "was created with the user and never used; the user signs in with a console password"
        } else {
            "was never used and the user also has a console password"
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
    if row.keys.iter().all(|k| k.active) {
        two_active_keys(cx, th, row);
    }
    unused(cx, th, row, console);
}

/// Both keys active. While the newer key is younger than the rotation
/// grace this is a rotation in progress (info); past it, medium. Either
/// way the older key's age is said.
fn two_active_keys(cx: &mut Ctx<'_>, th: &Thresholds, row: &CredentialRow) {
    let made: Vec<Option<DateTime<Utc>>> = row.keys.iter().map(|k| k.last_rotated.at()).collect();
    let (older, newer) = match (made[0], made[1]) {
        (Some(a), Some(b)) if b >= a => (Some((1, a)), Some((2, b))),
        (Some(a), Some(b)) => (Some((2, b)), Some((1, a))),
        _ => (None, None),
    };
    let grace = Duration::days(th.rotation_grace_days.into());
    let rotating = newer.is_some_and(|(_, t)| now_minus(cx.now, t) < grace);
    let ages = match (older, newer) {
        (Some((o, ot)), Some((n, nt))) => format!(
            "; the older access_key_{o} was created {} ({} days ago), access_key_{n} {} ({} days ago)",
            rfc3339(ot),
            days(now_minus(cx.now, ot)),
            rfc3339(nt),
            days(now_minus(cx.now, nt)),
        ),
        _ => String::new(),
    };
    let (title, severity, why) = if rotating {
        (
            "IAM user is rotating an access key",
            Severity::Info,
            format!(
                "a rotation in progress: the newer key is within the rotation grace of {} days; deactivate the older key once the new one is in use",
                th.rotation_grace_days
            ),
        )
    } else {
        (
            "IAM user has two active access keys",
            Severity::Medium,
            format!(
                "past the rotation grace of {} days; keep one active key",
                th.rotation_grace_days
            ),
        )
    };
    cx.push(
        USER_TWO_ACTIVE_KEYS,
        title.into(),
        severity,
        format!(
            "IAM user {} has both access keys active{ages}: {why}",
            row.user
        ),
        Some(row),
        None,
        Some(row.mfa_active),
    );
}

/// The tier of a credential unused for `age_days` under a limit of
/// `unused_days`: `None` unless it is past the limit; 90 days (medium) and
/// 1 year (high) raise the severity of what the limit already flags.
pub fn unused_tier(age_days: i64, unused_days: u32) -> Option<(String, Severity)> {
    if age_days <= unused_days.into() {
        return None;
    }
    Some(
        if age_days > ONE_YEAR_DAYS.into() && ONE_YEAR_DAYS > unused_days {
            ("over 1 year".to_owned(), Severity::High)
        } else if age_days > UNUSED_MEDIUM_DAYS.into() && UNUSED_MEDIUM_DAYS > unused_days {
            (format!("over {UNUSED_MEDIUM_DAYS} days"), Severity::Medium)
        } else {
            let severity = if age_days > ONE_YEAR_DAYS.into() {
                Severity::High
            } else if age_days > UNUSED_MEDIUM_DAYS.into() {
                Severity::Medium
            } else {
                Severity::Low
            };
            (format!("over {unused_days} days"), severity)
        },
    )
}

/// One credential of a user and since when it has not been used.
struct Idle {
    name: String,
    since: Option<(DateTime<Utc>, &'static str)>,
}

fn unused(cx: &mut Ctx<'_>, th: &Thresholds, row: &CredentialRow, console: bool) {
    let mut creds = Vec::new();
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
        creds.push(Idle {
            name: "password".into(),
            since,
        });
    }
    for (i, key) in row.keys.iter().enumerate().filter(|(_, k)| k.active) {
        // A key never used is as unused as one left idle: it counts from
        // its creation.
        let since = match key.last_used {
            Stamp::At(t) => Some((t, "last used")),
            _ => key
                .last_rotated
                .at()
                .map(|t| (t, "created and never used since")),
        };
        creds.push(Idle {
            name: format!("access_key_{}", i + 1),
            since,
        });
    }
    let age = |c: &Idle| c.since.map(|(t, _)| days(now_minus(cx.now, t)));
    let tiers: Vec<Option<(String, Severity)>> = creds
        .iter()
        .map(|c| age(c).and_then(|d| unused_tier(d, th.unused_days)))
        .collect();
    let describe = |c: &Idle| match c.since {
        Some((t, how)) => format!(
            "{} was {how} {} ({} days ago)",
            c.name,
            rfc3339(t),
            days(now_minus(cx.now, t))
        ),
        None => format!("{} has no date", c.name),
    };
    // Every credential idle past the limit: the user is unused and should
    // be removed, not just its keys. One finding, its severity from the
    // most recently used credential.
    if !creds.is_empty() && tiers.iter().all(Option::is_some) {
        let newest = creds
            .iter()
            .filter_map(age)
            .min()
            .expect("every credential has an age");
        let (label, severity) =
            unused_tier(newest, th.unused_days).expect("every credential is past the limit");
        let parts: Vec<String> = creds.iter().map(describe).collect();
        cx.push(
            USER_UNUSED,
            format!("IAM user unused for {label}"),
            severity,
            format!(
                "every credential of IAM user {} is unused past the limit of {} days: {}; remove the user",
                row.user,
                th.unused_days,
                parts.join("; ")
            ),
            Some(row),
            None,
            Some(row.mfa_active),
        );
        return;
    }
    for (c, tier) in creds.iter().zip(tiers) {
        let Some((label, severity)) = tier else {
            continue;
        };
        let what = if c.name == "password" {
            "password".to_owned()
        } else {
            format!("active {}", c.name)
        };
        let (t, how) = c.since.expect("a tier needs a date");
        cx.push(
            CREDENTIALS_UNUSED,
            format!("IAM user credential unused for {label}"),
            severity,
            format!(
                "IAM user {}'s {what} was {how} {} ({} days ago; limit {})",
                row.user,
                rfc3339(t),
                days(now_minus(cx.now, t)),
                th.unused_days
            ),
            Some(row),
            Some(&c.name),
            Some(row.mfa_active),
        );
    }
}

/// The tier of a key `age_days` old under a rotation limit of
/// `key_max_age_days`: `None` unless the key is older than the limit. The
/// 1-year and 5-year tiers raise the severity (and name the tier) of what
/// the limit already flags; they never flag a key the limit allows.
pub fn key_age_tier(age_days: i64, key_max_age_days: u32) -> Option<(String, Severity)> {
    if age_days <= key_max_age_days.into() {
        return None;
    }
    let severity = if age_days > FIVE_YEARS_DAYS.into() {
        Severity::High
    } else {
        Severity::Medium
    };
    let label = if age_days > FIVE_YEARS_DAYS.into() && FIVE_YEARS_DAYS > key_max_age_days {
        "over 5 years".to_owned()
    } else if age_days > ONE_YEAR_DAYS.into() && ONE_YEAR_DAYS > key_max_age_days {
        "over 1 year".to_owned()
    } else {
        format!("over {key_max_age_days} days")
    };
    Some((label, severity))
}

fn key_age(cx: &mut Ctx<'_>, th: &Thresholds, row: &CredentialRow) {
    for (i, key) in row.keys.iter().enumerate().filter(|(_, k)| k.active) {
        let Some(rotated) = key.last_rotated.at() else {
            continue;
        };
        let age = days(now_minus(cx.now, rotated));
        let Some((label, severity)) = key_age_tier(age, th.key_max_age_days) else {
            continue;
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
