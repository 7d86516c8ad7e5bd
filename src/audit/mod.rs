//! The posture audit: the IAM credential checks a CloudTrail stream cannot
//! see (CIS AWS Foundations section 1). `report` and `rules` are pure;
//! `reader` talks to IAM and STS; `state` decides what to alert again and
//! what was resolved; `runner` schedules audits and delivers findings.

pub mod offline;
pub mod output;
pub mod reader;
pub mod report;
pub mod rules;
pub mod runner;
pub mod settings;
pub mod state;

pub use report::{CredentialRow, ReportError, Stamp};
pub use rules::{
    Evaluation, Inventory, RULE_IDS, RootCredentials, Thresholds, VirtualMfa, evaluate,
};
pub use settings::{AccountTarget, AuditSettings};

#[cfg(test)]
mod tests;
