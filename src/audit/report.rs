//! The IAM credential report (CSV) as AWS documents it and as real accounts
//! show it, read into typed rows. Pure: bytes in, values out.
//!
//! Columns are found by header name, not position, so a report with
//! columns added later still reads. Values: timestamps in ISO 8601, `N/A`
//! (does not apply: no password, key never used), `no_information` (a
//! password never used, or not used since IAM began tracking in 2014),
//! `not_supported` (the root row's password fields in older reports), and
//! booleans in any case.

use chrono::{DateTime, Utc};

/// The `user` value of the root row.
pub const ROOT_USER: &str = "<root_account>";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("credential report is not valid CSV at line {line}: {message}")]
    Csv { line: u64, message: String },
    #[error("credential report has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("credential report line {line}, column `{column}`: `{value}` is not {expected}")]
    BadValue {
        line: u64,
        column: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// A date field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    At(DateTime<Utc>),
    /// `N/A`: does not apply (no password; a key never used).
    NotApplicable,
    /// `no_information`: the password was never used, or not since
    /// IAM began tracking it.
    NoInformation,
    /// `not_supported`: the root row of older reports.
    NotSupported,
}

impl Stamp {
    pub fn at(self) -> Option<DateTime<Utc>> {
        match self {
            Stamp::At(t) => Some(t),
            _ => None,
        }
    }
}

/// `password_enabled`: the root row of older reports says `not_supported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Yes,
    No,
    NotSupported,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub active: bool,
    pub last_rotated: Stamp,
    pub last_used: Stamp,
}

/// One row of the report: a user, or the root account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub user: String,
    pub arn: String,
    pub created: Stamp,
    pub password_enabled: Flag,
    pub password_last_used: Stamp,
    pub password_last_changed: Stamp,
    pub mfa_active: bool,
    pub keys: [AccessKey; 2],
    /// Every column of the row as written, for the finding's evidence.
    pub raw: Vec<(String, String)>,
}

impl CredentialRow {
    pub fn is_root(&self) -> bool {
        self.user == ROOT_USER
    }
}

const COLUMNS: [&str; 14] = [
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    // Present in every report; read so a truncated header is noticed.
    "password_next_rotation",
];

/// Reads a credential report's CSV.
pub fn parse(csv_bytes: &[u8]) -> Result<Vec<CredentialRow>, ReportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(csv_bytes);
    let headers = reader.headers().map_err(csv_error)?.clone();
    let mut index = [0usize; COLUMNS.len()];
    for (i, name) in COLUMNS.iter().enumerate() {
        index[i] = headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or(ReportError::MissingColumn(name))?;
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        let get = |c: usize| record.get(index[c]).unwrap_or("");
        let stamp = |c: usize| parse_stamp(line, COLUMNS[c], get(c));
        let flag = |c: usize| parse_bool(line, COLUMNS[c], get(c));
        let key = |active: usize| -> Result<AccessKey, ReportError> {
            Ok(AccessKey {
                active: flag(active)?,
                last_rotated: stamp(active + 1)?,
                last_used: stamp(active + 2)?,
            })
        };
        let password_enabled = match get(3) {
            v if v.eq_ignore_ascii_case("not_supported") => Flag::NotSupported,
            _ => {
                if flag(3)? {
                    Flag::Yes
                } else {
                    Flag::No
                }
            }
        };
        rows.push(CredentialRow {
            user: get(0).to_owned(),
            arn: get(1).to_owned(),
            created: stamp(2)?,
            password_enabled,
            password_last_used: stamp(4)?,
            password_last_changed: stamp(5)?,
            mfa_active: flag(6)?,
            keys: [key(7)?, key(10)?],
            raw: headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect(),
        });
    }
    Ok(rows)
}

fn csv_error(e: csv::Error) -> ReportError {
    ReportError::Csv {
        line: e.position().map_or(0, |p| p.line()),
        message: e.to_string(),
    }
}

fn parse_bool(line: u64, column: &'static str, v: &str) -> Result<bool, ReportError> {
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ReportError::BadValue {
            line,
            column,
            value: v.to_owned(),
            expected: "true or false",
        })
    }
}

fn parse_stamp(line: u64, column: &'static str, v: &str) -> Result<Stamp, ReportError> {
    if v.eq_ignore_ascii_case("N/A") || v.is_empty() {
        return Ok(Stamp::NotApplicable);
    }
    if v.eq_ignore_ascii_case("no_information") {
        return Ok(Stamp::NoInformation);
    }
    if v.eq_ignore_ascii_case("not_supported") {
        return Ok(Stamp::NotSupported);
    }
    DateTime::parse_from_rfc3339(v)
        .map(|t| Stamp::At(t.with_timezone(&Utc)))
        .map_err(|_| ReportError::BadValue {
            line,
            column,
            value: v.to_owned(),
            expected: "an ISO 8601 time, N/A, no_information or not_supported",
        })
}
