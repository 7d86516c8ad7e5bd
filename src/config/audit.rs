//! The `[audit]` table: raw form and validation into
//! [`crate::audit::AuditSettings`].

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid, nonzero, secs};
use crate::audit::{AccountTarget, AuditSettings, Thresholds};
use crate::secret::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    pub enabled: bool,
    pub interval_secs: u64,
    pub realert_secs: u64,
    pub root_recent_days: u32,
    pub key_max_age_days: u32,
    pub unused_days: u32,
    pub rotation_grace_days: u32,
    pub password_min_length: u32,
    pub password_reuse_prevention: u32,
    pub concurrency: usize,
    pub report_timeout_secs: u64,
    pub accounts: Vec<RawAuditAccount>,
}

impl Default for RawAudit {
    fn default() -> Self {
        let d = AuditSettings::default();
        RawAudit {
            enabled: d.enabled,
            interval_secs: d.interval.as_secs(),
            realert_secs: d.realert.as_secs(),
            root_recent_days: d.thresholds.root_recent_days,
            key_max_age_days: d.thresholds.key_max_age_days,
            unused_days: d.thresholds.unused_days,
            rotation_grace_days: d.thresholds.rotation_grace_days,
            password_min_length: d.thresholds.password_min_length,
            password_reuse_prevention: d.thresholds.password_reuse_prevention,
            concurrency: d.concurrency.get(),
            report_timeout_secs: d.report_timeout.as_secs(),
            accounts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuditAccount {
    pub name: Option<String>,
    pub role_arn: String,
    pub external_id: Option<String>,
}

fn days(key: &str, v: u32, max: u32) -> Result<u32, ConfigError> {
    if v == 0 || v > max {
        return Err(invalid(
            key,
            format!("{v} is out of range (1 to {max} days)"),
        ));
    }
    Ok(v)
}

fn within(key: &str, v: u32, min: u32, max: u32) -> Result<u32, ConfigError> {
    if !(min..=max).contains(&v) {
        return Err(invalid(
            key,
            format!("{v} is out of range ({min} to {max})"),
        ));
    }
    Ok(v)
}

/// One `[[audit.accounts]]` entry, at `key`.
fn account(key: &str, a: &RawAuditAccount) -> Result<AccountTarget, ConfigError> {
    // arn:PARTITION:iam::ACCOUNT:role/NAME
    let parts: Vec<&str> = a.role_arn.splitn(6, ':').collect();
    let account = match parts.as_slice() {
        ["arn", p, "iam", "", acct, res]
            if p.starts_with("aws")
                && acct.len() == 12
                && acct.bytes().all(|b| b.is_ascii_digit())
                && res.starts_with("role/")
                && res.len() > 5 =>
        {
            (*acct).to_owned()
        }
        _ => {
            return Err(invalid(
                format!("{key}.role_arn"),
                format!(
                    "`{}` is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
                    a.role_arn
                ),
            ));
        }
    };
    let external_id = match &a.external_id {
        None => None,
        // sts:AssumeRole: 2 to 1224 characters of [\w+=,.@:/-].
        Some(e)
            if (2..=1224).contains(&e.len())
                && e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c)) =>
        {
            Some(Secret::new(e.clone()))
        }
        Some(_) => {
            return Err(invalid(
                format!("{key}.external_id"),
                "is not an external id (2 to 1224 letters, digits or _+=,.@:/-)",
            ));
        }
    };
    let name = match &a.name {
        None => account.clone(),
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            n.clone()
        }
        Some(n) => {
            return Err(invalid(
                format!("{key}.name"),
                format!("`{n}` must be 1 to 64 letters, digits, `-`, `_` or `.`"),
            ));
        }
    };
    Ok(AccountTarget {
        name,
        account_id: account,
        role_arn: a.role_arn.clone(),
        external_id,
    })
}

pub fn validate(raw: &RawAudit) -> Result<AuditSettings, ConfigError> {
    let mut accounts = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, a) in raw.accounts.iter().enumerate() {
        let key = format!("audit.accounts[{i}]");
        let target = account(&key, a)?;
        if !names.insert(target.name.clone()) {
            return Err(invalid(
                format!("{key}.name"),
                format!("`{}` is used by another account", target.name),
            ));
        }
        accounts.push(target);
    }
    Ok(AuditSettings {
        enabled: raw.enabled,
        interval: secs("audit.interval_secs", raw.interval_secs, 60, 7 * 86_400)?,
        realert: secs("audit.realert_secs", raw.realert_secs, 60, 365 * 86_400)?,
        thresholds: Thresholds {
            root_recent_days: days("audit.root_recent_days", raw.root_recent_days, 365)?,
            key_max_age_days: days("audit.key_max_age_days", raw.key_max_age_days, 3650)?,
            unused_days: days("audit.unused_days", raw.unused_days, 3650)?,
            rotation_grace_days: days("audit.rotation_grace_days", raw.rotation_grace_days, 90)?,
            // IAM's own bounds: MinimumPasswordLength 6..=128,
            // PasswordReusePrevention 1..=24.
            password_min_length: within(
                "audit.password_min_length",
                raw.password_min_length,
                6,
                128,
            )?,
            password_reuse_prevention: within(
                "audit.password_reuse_prevention",
                raw.password_reuse_prevention,
                1,
                24,
            )?,
        },
        concurrency: nonzero("audit.concurrency", raw.concurrency, 64)?,
        report_timeout: secs(
            "audit.report_timeout_secs",
            raw.report_timeout_secs,
            10,
            3600,
        )?,
        accounts,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, parse, validate};

    fn audit(toml: &str) -> Result<crate::audit::AuditSettings, ConfigError> {
        validate(&parse(toml, &|k| (k == "EXT").then(|| "ext-id-42".into()))?).map(|s| s.audit)
    }

    fn key_of(toml: &str) -> String {
        match audit(toml) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_accounts() {
        let a = audit("").unwrap();
        assert!(!a.enabled);
        assert_eq!(a.interval.as_secs(), 3600);
        assert_eq!(a.realert.as_secs(), 7 * 86_400);
        assert_eq!(a.thresholds, crate::audit::Thresholds::default());
        assert!(a.accounts.is_empty());
        let a = audit(
            r#"[audit]
enabled = true
accounts = [
  { role_arn = "arn:aws:iam::111122223333:role/rootwatch-audit", external_id = "${EXT}" },
  { name = "prod", role_arn = "arn:aws-us-gov:iam::444455556666:role/path/audit" },
]"#,
        )
        .unwrap();
        assert_eq!(a.accounts[0].name, "111122223333");
        assert_eq!(
            a.accounts[0].external_id.as_ref().map(|s| s.expose()),
            Some("ext-id-42")
        );
        assert_eq!(a.accounts[1].name, "prod");
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(key_of("[audit]\ninterval_secs = 5"), "audit.interval_secs");
        assert_eq!(key_of("[audit]\nunused_days = 0"), "audit.unused_days");
        assert_eq!(
            key_of("[audit]\nkey_max_age_days = 99999"),
            "audit.key_max_age_days"
        );
        assert_eq!(key_of("[audit]\nconcurrency = 0"), "audit.concurrency");
        assert_eq!(
            key_of("[audit]\nrotation_grace_days = 0"),
            "audit.rotation_grace_days"
        );
        assert_eq!(
            key_of("[audit]\npassword_min_length = 5"),
            "audit.password_min_length"
        );
        assert_eq!(
            key_of("[audit]\npassword_reuse_prevention = 25"),
            "audit.password_reuse_prevention"
        );
        assert_eq!(
            key_of("[audit]\naccounts = [{ role_arn = \"arn:aws:iam::1234:role/x\" }]"),
            "audit.accounts[0].role_arn"
        );
        assert_eq!(
            key_of("[audit]\naccounts = [{ role_arn = \"arn:aws:iam::111122223333:user/x\" }]"),
            "audit.accounts[0].role_arn"
        );
        assert_eq!(
            key_of(
                "[audit]\naccounts = [{ role_arn = \"arn:aws:iam::111122223333:role/x\", external_id = \"a b\" }]"
            ),
            "audit.accounts[0].external_id"
        );
        assert_eq!(
            key_of(
                "[audit]\naccounts = [{ role_arn = \"arn:aws:iam::111122223333:role/x\" }, { role_arn = \"arn:aws:iam::111122223333:role/y\" }]"
            ),
            "audit.accounts[1].name"
        );
        assert!(key_of("[audit]\nbogus = 1").starts_with("audit"));
    }

    #[test]
    fn sinks_route_posture_rules_and_external_ids_are_redacted() {
        let toml = r#"
[audit]
accounts = [{ role_arn = "arn:aws:iam::111122223333:role/a", external_id = "very-secret-id" }]
[[sinks]]
type = "stdout"
rules = ["posture-root-access-key", "root-console-login"]
"#;
        let raw = parse(toml, &|_| None).unwrap();
        let s = validate(&raw).unwrap();
        assert!(s.sinks[0].accepts("posture-root-access-key", crate::finding::Severity::Low));
        let shown = crate::config::render_effective(&raw);
        assert!(!shown.contains("very-secret-id"), "{shown}");
    }
}
