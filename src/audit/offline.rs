//! Audits from files: a credential report an auditor downloaded (the CSV,
//! its base64, or what `aws iam get-credential-report` prints), and
//! optionally the other inputs the live audit reads, each in the JSON the
//! AWS CLI prints for its call. Nothing here talks to AWS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::report::{self, ReportError};
use super::rules::{
    Inventory, OrgFeatures, OrgView, PasswordPolicy, PasswordPolicyState, VirtualMfa,
};

/// The files `rootwatch audit --report` reads.
#[derive(Debug, Clone, Default)]
pub struct OfflineInput {
    pub report: PathBuf,
    /// `aws iam get-account-summary`.
    pub account_summary: Option<PathBuf>,
    /// `aws iam list-virtual-mfa-devices`.
    pub virtual_mfa: Option<PathBuf>,
    /// `aws iam get-account-password-policy`, or `none` for an account
    /// without a policy (the call's NoSuchEntity).
    pub password_policy: Option<PathBuf>,
    /// `aws iam list-organizations-features`, run in the management account.
    pub organizations_features: Option<PathBuf>,
    /// The report's account is a member of that organization (not the
    /// account that manages it).
    pub member_account: bool,
    /// When the report was generated, for a report file that does not say.
    pub generated: Option<DateTime<Utc>>,
    /// The account, when the report's ARNs do not tell (a report without rows).
    pub account_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a credential report: expected the CSV IAM writes (starting `user,arn,`), its base64, or the JSON of `aws iam get-credential-report`"
    )]
    NotAReport { path: PathBuf },
    #[error("{path}: {source}")]
    Report { path: PathBuf, source: ReportError },
    #[error("{path}: {problem}")]
    Json { path: PathBuf, problem: String },
    #[error(
        "{path}: no row names the account (an ARN arn:aws:iam::ACCOUNT:...); pass --account-id"
    )]
    NoAccount { path: PathBuf },
    #[error("--account-id `{0}` is not a 12-digit AWS account id")]
    BadAccountId(String),
}

/// Reads the files into the inventory the rules evaluate. Checks whose
/// file was not given are skipped and said in `notes`.
pub fn inventory(input: &OfflineInput) -> Result<Inventory, OfflineError> {
    let raw = read(&input.report)?;
    let (csv, stamped) = report_content(&input.report, &raw)?;
    let rows = report::parse(&csv).map_err(|source| OfflineError::Report {
        path: input.report.clone(),
        source,
    })?;
    let mut notes = Vec::new();
    let generated = match (stamped, input.generated) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => {
            let modified = std::fs::metadata(&input.report)
                .and_then(|m| m.modified())
                .map(DateTime::<Utc>::from)
                .map_err(|source| OfflineError::Read {
                    path: input.report.clone(),
                    source,
                })?;
            notes.push(format!(
                "the report does not say when it was generated: its file's modification time ({}) is used; pass --generated or the JSON of `aws iam get-credential-report`",
                modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
            modified
        }
    };
    let account_id = match &input.account_id {
        Some(a) if crate::aws::is_account_id(a) => a.clone(),
        Some(a) => return Err(OfflineError::BadAccountId(a.clone())),
        None => account_of(&rows).ok_or_else(|| OfflineError::NoAccount {
            path: input.report.clone(),
        })?,
    };
    let summary = match &input.account_summary {
        Some(p) => account_summary(p, &json_file(p)?)?,
        None => {
            notes.push("account summary not given (--account-summary): the root checks read the report alone".into());
            HashMap::new()
        }
    };
    let virtual_mfa = match &input.virtual_mfa {
        Some(p) => virtual_mfa(p, &json_file(p)?)?,
        None => {
            notes.push(
                "virtual MFA devices not given (--virtual-mfa): posture-root-virtual-mfa skipped"
                    .into(),
            );
            Vec::new()
        }
    };
    let password_policy = match &input.password_policy {
        Some(p) if p.as_os_str() == "none" => PasswordPolicyState::Absent,
        Some(p) => password_policy(p, &json_file(p)?)?,
        None => {
            notes.push(
                "password policy not given (--password-policy FILE or none): its checks skipped"
                    .into(),
            );
            PasswordPolicyState::NotRead
        }
    };
    let organization = match &input.organizations_features {
        Some(p) => {
            let f = org_features(p, &json_file(p)?)?;
            if input.member_account {
                OrgView::Member(Some(f))
            } else {
                OrgView::Manages(f)
            }
        }
        None => {
            notes.push("organization features not given (--organizations-features): centralised root access checks skipped".into());
            OrgView::NotRead
        }
    };
    Ok(Inventory {
        account_id,
        generated,
        rows,
        summary,
        virtual_mfa,
        password_policy,
        organization,
        notes,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, OfflineError> {
    std::fs::read(path).map_err(|source| OfflineError::Read {
        path: path.to_owned(),
        source,
    })
}

fn json_file(path: &Path) -> Result<Value, OfflineError> {
    serde_json::from_slice(&read(path)?).map_err(|e| OfflineError::Json {
        path: path.to_owned(),
        problem: format!("not JSON: {e}"),
    })
}

fn json_error(path: &Path, problem: impl Into<String>) -> OfflineError {
    OfflineError::Json {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn looks_like_csv(b: &[u8]) -> bool {
    b.len() >= 5 && b[..5].eq_ignore_ascii_case(b"user,")
}

/// The report's CSV and, when the file says, its generation time.
pub fn report_content(
    path: &Path,
    raw: &[u8],
) -> Result<(Vec<u8>, Option<DateTime<Utc>>), OfflineError> {
    let text = raw.strip_prefix(b"\xef\xbb\xbf").unwrap_or(raw);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    if looks_like_csv(text) {
        return Ok((text.to_vec(), None));
    }
    if text.first() == Some(&b'{') {
        let v: Value =
            serde_json::from_slice(text).map_err(|e| json_error(path, format!("not JSON: {e}")))?;
        let content = v.get("Content").and_then(Value::as_str).ok_or_else(|| {
            json_error(
                path,
                "no `Content` string (the output of `aws iam get-credential-report`)",
            )
        })?;
        let csv = decode_base64(content)
            .filter(|c| looks_like_csv(c))
            .ok_or_else(|| {
                json_error(path, "`Content` is not the base64 of a credential report")
            })?;
        let generated = match v.get("GeneratedTime") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|_| {
                        json_error(
                            path,
                            format!("`GeneratedTime` `{s}` is not an ISO 8601 time"),
                        )
                    })?
                    .with_timezone(&Utc),
            ),
            Some(other) => {
                return Err(json_error(
                    path,
                    format!("`GeneratedTime` is {other}, not a time"),
                ));
            }
        };
        return Ok((csv, generated));
    }
    let text = std::str::from_utf8(text).map_err(|_| OfflineError::NotAReport {
        path: path.to_owned(),
    })?;
    match decode_base64(text) {
        Some(csv) if looks_like_csv(&csv) => Ok((csv, None)),
        _ => Err(OfflineError::NotAReport {
            path: path.to_owned(),
        }),
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

/// The account of the root row's ARN, or of any row's.
fn account_of(rows: &[report::CredentialRow]) -> Option<String> {
    let of = |arn: &str| {
        let acct = arn.split(':').nth(4)?;
        crate::aws::is_account_id(acct).then(|| acct.to_owned())
    };
    rows.iter()
        .filter(|r| r.is_root())
        .chain(rows.iter())
        .find_map(|r| of(&r.arn))
}

/// `{"SummaryMap": {...}}` as the CLI prints it, or the bare map.
fn account_summary(path: &Path, v: &Value) -> Result<HashMap<String, i64>, OfflineError> {
    let map = v
        .get("SummaryMap")
        .unwrap_or(v)
        .as_object()
        .ok_or_else(|| {
            json_error(
                path,
                "not an account summary (an object `SummaryMap` of counts)",
            )
        })?;
    map.iter()
        .map(|(k, v)| {
            v.as_i64().map(|n| (k.clone(), n)).ok_or_else(|| {
                json_error(path, format!("SummaryMap.{k} is {v}, not a whole number"))
            })
        })
        .collect()
}

/// `{"VirtualMFADevices": [{"SerialNumber": ..., "User": {"Arn": ...}}]}`.
fn virtual_mfa(path: &Path, v: &Value) -> Result<Vec<VirtualMfa>, OfflineError> {
    let list = v
        .get("VirtualMFADevices")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            json_error(
                path,
                "no `VirtualMFADevices` list (the output of `aws iam list-virtual-mfa-devices`)",
            )
        })?;
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            let serial_number = d
                .get("SerialNumber")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    json_error(path, format!("VirtualMFADevices[{i}] has no SerialNumber"))
                })?
                .to_owned();
            let user_arn = d
                .get("User")
                .and_then(|u| u.get("Arn"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            Ok(VirtualMfa {
                serial_number,
                user_arn,
            })
        })
        .collect()
}

/// `{"PasswordPolicy": {...}}`.
fn password_policy(path: &Path, v: &Value) -> Result<PasswordPolicyState, OfflineError> {
    let p = v
        .get("PasswordPolicy")
        .and_then(Value::as_object)
        .ok_or_else(|| json_error(path, "no `PasswordPolicy` object (the output of `aws iam get-account-password-policy`; `none` for an account without one)"))?;
    let number = |key: &str| -> Result<Option<u32>, OfflineError> {
        match p.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    json_error(
                        path,
                        format!("PasswordPolicy.{key} is {v}, not a whole number"),
                    )
                }),
        }
    };
    Ok(PasswordPolicyState::Set(PasswordPolicy {
        minimum_length: number("MinimumPasswordLength")?,
        reuse_prevention: number("PasswordReusePrevention")?,
    }))
}

/// `{"OrganizationId": "o-...", "EnabledFeatures": [...]}`.
fn org_features(path: &Path, v: &Value) -> Result<OrgFeatures, OfflineError> {
    let features = v
        .get("EnabledFeatures")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            json_error(
                path,
                "no `EnabledFeatures` list (the output of `aws iam list-organizations-features`)",
            )
        })?;
    let names: Vec<&str> = features.iter().filter_map(Value::as_str).collect();
    if names.len() != features.len() {
        return Err(json_error(
            path,
            "EnabledFeatures holds something other than names",
        ));
    }
    Ok(OrgFeatures {
        organization_id: v
            .get("OrganizationId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        root_credentials_management: names.contains(&"RootCredentialsManagement"),
        root_sessions: names.contains(&"RootSessions"),
        why_off: None,
    })
}
