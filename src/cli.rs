//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rootwatch",
    version,
    about = "Watches AWS CloudTrail and alerts on root-user activity and calls from outside IP allow lists"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on stderr: JSON (for log collectors), text (for people),
    /// or auto: text on a terminal, JSON otherwise.
    #[arg(long, global = true, value_enum, env = "ROOTWATCH_LOG_FORMAT", default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// The least severe log lines shown (error, warn, info, debug, trace),
    /// or a filter such as `info,rootwatch::sink=debug`. Default: RUST_LOG,
    /// else info.
    #[arg(long, global = true, env = "ROOTWATCH_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: read the configured sources, alert the configured sinks.
    Run {
        #[arg(long, short, env = "ROOTWATCH_CONFIG")]
        config: PathBuf,
    },
    /// Detect offline over CloudTrail files: findings as JSON lines on stdout,
    /// a summary on stderr. Exit code 65 when any input could not be decoded.
    Replay {
        #[arg(long, short, env = "ROOTWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Output lines: the finding JSON, or OCSF Detection Findings.
        #[arg(long, value_enum, default_value_t = ReplayFormat::Json)]
        format: ReplayFormat,
        /// Threads that decode and run the rules (default: one per core).
        /// The output is the same for any number.
        #[arg(long)]
        jobs: Option<std::num::NonZeroUsize>,
        /// Files (.json, .jsonl, optionally .gz), directories, or - for stdin.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Audit IAM posture once (the CIS section 1 credential checks) for
    /// every account in `[audit]`, or offline for one downloaded credential
    /// report (--report): findings on stdout, a summary on stderr. Exit 0
    /// when every account was audited, whatever it found; 69 when an
    /// account could not be audited; 65 when a --report input cannot be
    /// read; 78 for a config error.
    Audit {
        /// Thresholds and accounts; optional with --report (defaults).
        #[arg(
            long,
            short,
            env = "ROOTWATCH_CONFIG",
            required_unless_present = "report"
        )]
        config: Option<PathBuf>,
        /// Findings as JSON lines, CSV, a Markdown report, or OCSF
        /// Compliance Findings.
        #[arg(long, value_enum, default_value_t = crate::audit::output::AuditFormat::Json)]
        format: crate::audit::output::AuditFormat,
        #[command(flatten)]
        offline: OfflineArgs,
    },
    /// Send one synthetic finding (rule `rootwatch-test`, title starting
    /// `[TEST]`) through the configured sinks and print, per sink, whether
    /// it was delivered, rejected, failed or unreachable. Each sink gets at
    /// most 2 attempts within its timeout_secs. Exit 0 when every sink sent
    /// to delivered; 69 when one did not; 78 for a config error or an
    /// unknown --sink.
    TestAlert {
        #[arg(long, short, env = "ROOTWATCH_CONFIG")]
        config: PathBuf,
        /// Only this sink (by name); repeat for several. Default: every sink.
        #[arg(long = "sink", value_name = "NAME")]
        sinks: Vec<String>,
        /// The test finding's severity.
        #[arg(long, default_value = "low")]
        severity: crate::finding::Severity,
        /// Skip sinks whose min_severity or rules do not take the test
        /// finding (by default routing is ignored, so every sink is tested).
        #[arg(long)]
        respect_routing: bool,
    },
    /// Validate a config file and print the effective configuration (secrets
    /// redacted), with the defaults it leaves to rootwatch filled in.
    CheckConfig {
        /// The file (or --config, or ROOTWATCH_CONFIG); named here, it wins
        /// over the variable.
        #[arg(value_name = "CONFIG", required_unless_present = "config")]
        path: Option<PathBuf>,
        #[arg(long, short, env = "ROOTWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The detection rules: list them, or try Sigma rules on events.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Exit 0 when the daemon's /readyz answers 200 within 2 s, 69 otherwise
    /// (one line on stderr naming the URL); for container health checks in
    /// images without a shell.
    Healthcheck {
        /// Defaults to http://127.0.0.1:9102/readyz, or to the `[server] listen`
        /// address of --config (--url takes precedence).
        #[arg(long)]
        url: Option<String>,
        #[arg(long, short, env = "ROOTWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Also pass when /readyz says `degraded` (a source cannot reach its
        /// upstream and keeps retrying), for orchestrators that replace
        /// unhealthy tasks (ECS).
        #[arg(long)]
        allow_degraded: bool,
    },
    /// Print a completion script for a shell, e.g.
    /// `rootwatch completions bash > /etc/bash_completion.d/rootwatch`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `rootwatch audit --report`: an audit of files, without AWS credentials.
#[derive(Debug, clap::Args)]
pub struct OfflineArgs {
    /// A credential report: the CSV IAM writes, its base64, or the JSON of
    /// `aws iam get-credential-report` (whose GeneratedTime is used).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The JSON of `aws iam get-account-summary`.
    #[arg(long, value_name = "FILE", requires = "report")]
    pub account_summary: Option<PathBuf>,
    /// The JSON of `aws iam list-virtual-mfa-devices`.
    #[arg(long, value_name = "FILE", requires = "report")]
    pub virtual_mfa: Option<PathBuf>,
    /// The JSON of `aws iam get-account-password-policy`, or `none` for an
    /// account without a password policy.
    #[arg(long, value_name = "FILE|none", requires = "report")]
    pub password_policy: Option<PathBuf>,
    /// The JSON of `aws iam list-organizations-features` (run in the
    /// account that manages the organization).
    #[arg(long, value_name = "FILE", requires = "report")]
    pub organizations_features: Option<PathBuf>,
    /// The report's account is a member of that organization, not the
    /// account that manages it.
    #[arg(long, requires = "organizations_features")]
    pub member_account: bool,
    /// When the report was generated (RFC 3339), for a report file that
    /// does not say; default: the file's modification time.
    #[arg(long, value_name = "TIME", requires = "report", value_parser = rfc3339)]
    pub generated: Option<chrono::DateTime<chrono::Utc>>,
    /// The account, when the report's ARNs do not name it.
    #[arg(long, value_name = "ID", requires = "report")]
    pub account_id: Option<String>,
    /// Evaluate as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME", requires = "report", value_parser = rfc3339)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

fn rfc3339(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 time (2024-06-01T00:00:00Z): {e}"))
}

#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Every rule: the built-in ones and, with --config, the loaded Sigma
    /// rules (one line each: rule, level, title, author or technique, file).
    List {
        #[arg(long, short, env = "ROOTWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run Sigma rules (files or directories) on CloudTrail events (files
    /// as `replay` reads them) and print which events each rule matched.
    /// Exit 1 when a rule lists, in `rootwatch_expected_events`, an eventID
    /// it did not match; 78 when a rule cannot be loaded.
    ///
    /// With --config, the rules load as the daemon loads them
    /// (`[detect.sigma] skip_other_logsources`) and run under its
    /// `[detect]` settings: suppressions, severities, `disabled`, and
    /// enrichment from files. The built-in rules stay off either way.
    Test {
        #[arg(long, short, env = "ROOTWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Sigma rule files or directories.
        #[arg(required = true)]
        rules: PathBuf,
        /// CloudTrail files (.json, .jsonl, optionally .gz) or directories.
        #[arg(required = true)]
        events: Vec<PathBuf>,
    },
}

/// What `replay` writes for each finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFormat {
    Json,
    Ocsf,
}

impl From<ReplayFormat> for crate::sink::format::PayloadFormat {
    fn from(f: ReplayFormat) -> Self {
        match f {
            ReplayFormat::Json => crate::sink::format::PayloadFormat::Json,
            ReplayFormat::Ocsf => crate::sink::format::PayloadFormat::Ocsf,
        }
    }
}

/// sysexits.h codes, so scripts and orchestrators can tell failures apart.
pub mod exit {
    pub const USAGE: i32 = 64;
    pub const DATA_ERR: i32 = 65;
    pub const UNAVAILABLE: i32 = 69;
    pub const SOFTWARE: i32 = 70;
    pub const CONFIG: i32 = 78;
}
