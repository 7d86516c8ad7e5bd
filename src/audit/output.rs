//! What `rootwatch audit` writes: the findings on stdout as JSON lines,
//! CSV, a Markdown report or OCSF Compliance Findings, and a summary per
//! account on stderr whatever the format.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::rules::{CIS_BENCHMARK, Evaluation, REPORT_STALE_SECS, RootCredentials, cis_control};
use super::runner::AccountResult;
use crate::finding::Finding;
use crate::sink::format::ocsf;

/// `rootwatch audit --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuditFormat {
    /// One finding JSON per line (the stream's finding contract).
    #[default]
    Json,
    /// One row per finding, with a header.
    Csv,
    /// A report per account for a ticket or a wiki.
    Markdown,
    /// One OCSF 1.7.0 Compliance Finding (class 2003) per line.
    Ocsf,
}

/// The OCSF Compliance Finding class.
pub const OCSF_COMPLIANCE_CLASS: u32 = 2003;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The `credential` a finding is about (`password`, `access_key_1`, a
/// policy setting), from its evidence.
fn credential(f: &Finding) -> Option<String> {
    let v: Value = serde_json::from_str(f.event.get()).ok()?;
    v.get("credential")?.as_str().map(str::to_owned)
}

/// Writes the findings of `results` to `out` in `format` and a summary to
/// `err`. Returns whether every account was audited.
pub fn write_results(
    results: &[AccountResult],
    format: AuditFormat,
    now: DateTime<Utc>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<bool> {
    let mut all_ok = true;
    let mut csv = (format == AuditFormat::Csv).then(|| csv::Writer::from_writer(Vec::new()));
    if let Some(w) = csv.as_mut() {
        w.write_record(CSV_HEADER).map_err(io::Error::other)?;
    }
    if format == AuditFormat::Markdown {
        writeln!(out, "# Posture audit, {}\n", rfc3339(now))?;
    }
    for r in results {
        match &r.result {
            Ok(e) => {
                summary(r, e, now, err)?;
                match format {
                    AuditFormat::Json => {
                        for f in &e.findings {
                            serde_json::to_writer(&mut *out, f)?;
                            out.write_all(b"\n")?;
                        }
                    }
                    AuditFormat::Ocsf => {
                        for f in &e.findings {
                            serde_json::to_writer(&mut *out, &ocsf_compliance(f, now))?;
                            out.write_all(b"\n")?;
                        }
                    }
                    AuditFormat::Csv => {
                        let w = csv.as_mut().expect("made for csv");
                        for f in &e.findings {
                            w.write_record(csv_row(r, f, now))
                                .map_err(io::Error::other)?;
                        }
                    }
                    AuditFormat::Markdown => markdown(r, e, now, out)?,
                }
            }
            Err(e) => {
                all_ok = false;
                writeln!(err, "audit: account {}: could not be audited: {e}", r.name)?;
                if format == AuditFormat::Markdown {
                    writeln!(
                        out,
                        "## {}\n\nCould not be audited: {}\n",
                        md(&r.name),
                        md(&e.to_string())
                    )?;
                }
            }
        }
    }
    if let Some(w) = csv {
        out.write_all(
            &w.into_inner()
                .map_err(|e| io::Error::other(e.to_string()))?,
        )?;
    }
    Ok(all_ok)
}

fn summary(
    r: &AccountResult,
    e: &Evaluation,
    now: DateTime<Utc>,
    err: &mut dyn Write,
) -> io::Result<()> {
    writeln!(
        err,
        "audit: account {} ({}): report generated {}, {} IAM user(s), root credentials {}, {} finding(s)",
        e.account_id,
        r.name,
        rfc3339(e.generated),
        e.users,
        root_word(e.root),
        e.findings.len()
    )?;
    let age = e.report_age_seconds(now);
    if age > REPORT_STALE_SECS {
        writeln!(
            err,
            "  warning   the credential report is {} old (AWS makes a new one at most every 4 hours): findings may be out of date",
            age_words(age)
        )?;
    }
    for note in &e.notes {
        writeln!(err, "  note      {note}")?;
    }
    for (rule, n) in e.counts() {
        if n > 0 {
            writeln!(err, "  findings  {rule:<44} {n}")?;
        }
    }
    Ok(())
}

fn root_word(r: RootCredentials) -> &'static str {
    match r {
        RootCredentials::Present => "present",
        RootCredentials::Absent => "absent",
    }
}

/// `3 h 20 min`, `12 d 4 h`.
fn age_words(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else {
        format!("{h} h {m} min")
    }
}

const CSV_HEADER: [&str; 16] = [
    "account_id",
    "account_name",
    "rule",
    "cis_control",
    "severity",
    "title",
    "principal_type",
    "principal_arn",
    "user_name",
    "credential",
    "reason",
    "report_generated_time",
    "report_age_seconds",
    "audit_time",
    "finding_id",
    "mfa",
];

fn csv_row(r: &AccountResult, f: &Finding, now: DateTime<Utc>) -> Vec<String> {
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        s(&f.account_id),
        r.name.clone(),
        f.rule.clone(),
        cis_control(&f.rule).unwrap_or("").to_owned(),
        f.severity.to_string(),
        f.title.clone(),
        s(&f.principal_type),
        s(&f.principal_arn),
        s(&f.user_name),
        credential(f).unwrap_or_default(),
        f.reason.clone(),
        s(&f.event_time),
        f.report_age_seconds
            .map(|a| a.to_string())
            .unwrap_or_default(),
        rfc3339(now),
        f.finding_id.clone(),
        f.mfa.map(|m| m.to_string()).unwrap_or_default(),
    ]
}

/// Text for a Markdown table cell: one line, `|` and markup escaped.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn markdown(
    r: &AccountResult,
    e: &Evaluation,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> io::Result<()> {
    writeln!(out, "## Account {} ({})\n", e.account_id, md(&r.name))?;
    let age = e.report_age_seconds(now);
    writeln!(
        out,
        "Credential report generated {} ({} old{}); {} IAM user(s); root credentials {}; {} finding(s).\n",
        rfc3339(e.generated),
        age_words(age),
        if age > REPORT_STALE_SECS {
            ", **stale**: AWS makes a new one at most every 4 hours"
        } else {
            ""
        },
        e.users,
        root_word(e.root),
        e.findings.len()
    )?;
    for note in &e.notes {
        writeln!(out, "- Note: {}", md(note))?;
    }
    if !e.notes.is_empty() {
        writeln!(out)?;
    }
    if e.findings.is_empty() {
        writeln!(out, "No findings.\n")?;
        return Ok(());
    }
    let mut findings: Vec<&Finding> = e.findings.iter().collect();
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.rule.cmp(&b.rule)));
    writeln!(
        out,
        "| Severity | Check | CIS | Principal | Credential | Finding |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for f in findings {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            f.severity,
            md(&f.rule),
            cis_control(&f.rule).unwrap_or(""),
            md(f.user_name
                .as_deref()
                .or(f.principal_arn.as_deref())
                .unwrap_or("")),
            md(&credential(f).unwrap_or_default()),
            md(&f.reason)
        )?;
    }
    writeln!(out)?;
    Ok(())
}

/// A posture finding as an OCSF Compliance Finding: the check failed
/// (`compliance.status_id` 3) for the principal in `resources`.
pub fn ocsf_compliance(f: &Finding, now: DateTime<Utc>) -> Value {
    let time = now.timestamp_millis();
    let activity = 1u32;
    let mut compliance = json!({
        "status_id": 3,
        "status": "Fail",
        "requirements": [f.rule],
        "desc": f.title,
    });
    if let Some(c) = cis_control(&f.rule) {
        compliance["control"] = c.into();
        compliance["standards"] = json!([CIS_BENCHMARK]);
    }
    let resource_type = match f.principal_type.as_deref() {
        Some("IAMUser") => "AWS::IAM::User",
        Some("Account") => "AWS::IAM::AccountPasswordPolicy",
        _ => "AWS::IAM::Root",
    };
    let mut resource = json!({
        "uid": f.principal_arn,
        "type": resource_type,
        "cloud_partition": f.principal_arn.as_deref().and_then(|a| a.split(':').nth(1)),
        "owner": {"account": {"uid": f.account_id, "type": "AWS Account", "type_id": 10}},
    });
    if let Some(u) = &f.user_name {
        resource["name"] = u.clone().into();
    }
    let evidence: Value = serde_json::from_str(f.event.get()).unwrap_or(Value::Null);
    json!({
        "activity_id": activity,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": OCSF_COMPLIANCE_CLASS,
        "class_name": "Compliance Finding",
        "type_uid": OCSF_COMPLIANCE_CLASS * 100 + activity,
        "type_name": "Compliance Finding: Create",
        "severity_id": ocsf::severity_id(f.severity),
        "severity": ocsf::severity_caption(f.severity),
        "status_id": 1,
        "status": "New",
        "time": time,
        "message": f.reason,
        "metadata": {
            "version": ocsf::VERSION,
            "profiles": ["cloud"],
            "uid": f.finding_id,
            "product": {
                "name": "rootwatch",
                "vendor_name": "rootwatch",
                "version": env!("CARGO_PKG_VERSION"),
            },
        },
        "finding_info": {
            "uid": f.finding_id,
            "title": f.title,
            "desc": f.reason,
            "types": ["IAM credential posture"],
            "created_time": time,
            "data_sources": ["IAM credential report"],
        },
        "compliance": compliance,
        "cloud": {
            "provider": "AWS",
            "account": {"uid": f.account_id, "type": "AWS Account", "type_id": 10},
        },
        "resources": [resource],
        "unmapped": {
            "rule": f.rule,
            "report_generated_time": f.event_time,
            "report_age_seconds": f.report_age_seconds,
            "evidence": evidence,
        },
    })
}
