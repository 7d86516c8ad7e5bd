//! Configuration: one TOML file, read into raw serde structs (unknown keys
//! rejected), `${ENV}` interpolated, then validated into [`Settings`] with
//! real types. Validation does no I/O, so a bad file fails before anything
//! connects anywhere.
//!
//! This file holds the top-level tables and [`validate`]; `load.rs` reads
//! and interpolates the file, `detect.rs` checks `[detect]` and `[enrich]`,
//! `source/` and `sink/` the `[[sources]]` and `[[sinks]]` (a file per
//! type), `audit.rs` the `[audit]` table, `aws.rs` the AWS keys they share,
//! `names.rs` the names of entries, and `render.rs` prints the result for
//! `check-config`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::DetectSettings;
use names::taken;
use sink::validate_sink;
use source::validate_source;

mod audit;
mod aws;
mod detect;
mod load;
mod names;
mod render;
mod sink;
mod source;

pub use audit::{RawAudit, RawAuditAccount};
pub use detect::{
    OneOrMany, RawAccount, RawAllowlist, RawDetect, RawEnrich, RawExpected, RawGeoIp,
    RawOrganizations, RawSigma, RawSuppress,
};
pub use load::{load, parse};
pub use render::render_effective;
pub use sink::alertmanager::ALERTMANAGER_PATH;
pub use sink::eventbridge::EventBridgeSettings;
pub use sink::opsgenie::OPSGENIE_DEFAULT_URL;
pub use sink::pagerduty::PAGERDUTY_DEFAULT_URL;
pub use sink::sns::SnsSettings;
pub use sink::syslog::SyslogSettings;
pub use sink::webhook::WebhookSettings;
pub use sink::{PayloadFormat, RawSink, SinkKind, SinkSettings, SinkType};
pub use source::cloudwatch_logs::{CheckpointStore, CloudwatchLogsSettings, LogGroups, Start};
pub use source::file::FileSettings;
pub use source::sqs::{ObjectLimits, SqsSettings};
pub use source::{DeadLetterDest, RawSource, SourceSettings};

/// A configuration problem, naming the key and what is wrong with its value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("`{key}`: {message}")]
    Invalid { key: String, message: String },
    /// Every problem found, one a line.
    #[error("{} problems:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ConfigError>),
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn secs(key: &str, v: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    if v < min || v > max {
        return Err(invalid(
            key,
            format!("{v} is out of range ({min} to {max} seconds)"),
        ));
    }
    Ok(Duration::from_secs(v))
}

fn nonzero(key: &str, v: usize, max: usize) -> Result<NonZeroUsize, ConfigError> {
    match NonZeroUsize::new(v) {
        Some(n) if v <= max => Ok(n),
        _ => Err(invalid(key, format!("{v} is out of range (1 to {max})"))),
    }
}

// ---------------------------------------------------------------- raw file

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub detect: RawDetect,
    pub dedup: RawDedup,
    pub throttle: RawThrottle,
    pub server: RawServer,
    pub shutdown: RawShutdown,
    pub sources: Vec<RawSource>,
    pub sinks: Vec<RawSink>,
    pub audit: RawAudit,
    pub enrich: RawEnrich,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDedup {
    /// How many recently delivered event keys to remember.
    pub capacity: usize,
}

impl Default for RawDedup {
    fn default() -> Self {
        RawDedup { capacity: 100_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawThrottle {
    /// Per (rule, principal, source IP) window; 0 turns throttling off.
    pub window_secs: u64,
}

impl Default for RawThrottle {
    fn default() -> Self {
        RawThrottle { window_secs: 300 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Admin HTTP server: /metrics, /healthz, /readyz. Empty turns it off.
    pub listen: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "0.0.0.0:9102".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawShutdown {
    pub grace_secs: u64,
}

impl Default for RawShutdown {
    fn default() -> Self {
        RawShutdown { grace_secs: 25 }
    }
}

// ---------------------------------------------------------------- settings

#[derive(Debug, Clone)]
pub struct Settings {
    pub detect: DetectSettings,
    pub dedup_capacity: NonZeroUsize,
    /// `None` when throttling is off.
    pub throttle_window: Option<Duration>,
    pub server_listen: Option<SocketAddr>,
    pub shutdown_grace: Duration,
    pub sources: Vec<SourceSettings>,
    pub sinks: Vec<SinkSettings>,
    pub audit: crate::audit::AuditSettings,
}

/// Checks a parsed file and builds the settings. Each section, source,
/// sink and key is checked even when another is wrong, so one run names
/// every problem ([`ConfigError::Several`]).
pub fn validate(raw: &RawConfig) -> Result<Settings, ConfigError> {
    let mut errors = Vec::new();
    let detect = keep(&mut errors, detect::validate_detect(raw));
    let dedup_capacity = keep(
        &mut errors,
        nonzero("dedup.capacity", raw.dedup.capacity, 100_000_000),
    );
    let throttle_window = keep(
        &mut errors,
        match raw.throttle.window_secs {
            0 => Ok(None),
            w => secs("throttle.window_secs", w, 1, 86_400).map(Some),
        },
    );
    let server_listen = keep(
        &mut errors,
        match raw.server.listen.trim() {
            "" => Ok(None),
            s => s
                .parse::<SocketAddr>()
                .map(Some)
                .map_err(|_| invalid("server.listen", format!("`{s}` is not an address:port"))),
        },
    );
    let shutdown_grace = keep(
        &mut errors,
        secs("shutdown.grace_secs", raw.shutdown.grace_secs, 1, 3600),
    );
    let sources = validate_sources(raw, &mut errors);
    let sinks = validate_sinks(raw, detect.as_ref(), &mut errors);
    let audit = keep(&mut errors, audit::validate(&raw.audit));
    match (
        errors.len(),
        detect,
        dedup_capacity,
        throttle_window,
        server_listen,
        shutdown_grace,
        audit,
    ) {
        (
            0,
            Some(detect),
            Some(dedup_capacity),
            Some(throttle_window),
            Some(server_listen),
            Some(shutdown_grace),
            Some(audit),
        ) => Ok(Settings {
            detect,
            dedup_capacity,
            throttle_window,
            server_listen,
            shutdown_grace,
            sources,
            sinks,
            audit,
        }),
        _ => Err(all(errors)),
    }
}

/// The value, or `None` with its error (or each of several) noted.
fn keep<T>(errors: &mut Vec<ConfigError>, r: Result<T, ConfigError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(ConfigError::Several(v)) => {
            errors.extend(v);
            None
        }
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// One error for the problems noted: the problem itself when there is one.
fn all(mut errors: Vec<ConfigError>) -> ConfigError {
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        ConfigError::Several(errors)
    }
}

/// The `[[sources]]` that are valid, the problems of the others noted in
/// `errors`.
fn validate_sources(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> Vec<SourceSettings> {
    let mut names = HashSet::new();
    let mut checkpoints = HashSet::new();
    let mut sources = Vec::new();
    for (i, s) in raw.sources.iter().enumerate() {
        let key = format!("sources[{i}]");
        let Some(src) = keep(errors, validate_source(&key, s)) else {
            continue;
        };
        if !names.insert(src.name().to_owned()) {
            errors.push(invalid(
                format!("{key}.name"),
                taken(s.default_named(), src.name(), "source"),
            ));
        }
        // Two sources writing one checkpoint file would overwrite each other.
        if let SourceSettings::CloudwatchLogs(c) = &src
            && let CheckpointStore::File(path) = &c.checkpoint
            && !checkpoints.insert(path.clone())
        {
            errors.push(invalid(
                format!("{key}.checkpoint_path"),
                format!("`{}` is used by another source", path.display()),
            ));
        }
        sources.push(src);
    }
    sources
}

/// The `[[sinks]]` that are valid, the problems of the others noted in
/// `errors`; `detect` is `None` when the rules did not load.
fn validate_sinks(
    raw: &RawConfig,
    detect: Option<&DetectSettings>,
    errors: &mut Vec<ConfigError>,
) -> Vec<SinkSettings> {
    let mut known = crate::detect::rule_ids();
    if let Some(s) = detect.and_then(|d| d.sigma.as_deref()) {
        known.extend(s.rule_names());
    }
    // Sinks route posture findings by rule id too.
    let sink_rules: Vec<&str> = known
        .iter()
        .copied()
        .chain(crate::audit::RULE_IDS)
        .collect();
    let mut sink_names = HashSet::new();
    let mut sinks = Vec::new();
    for (i, s) in raw.sinks.iter().enumerate() {
        let key = format!("sinks[{i}]");
        // Rule patterns cannot be checked against rules that did not load.
        let unchecked;
        let s = if detect.is_none() && s.rules.is_some() {
            unchecked = RawSink {
                rules: None,
                ..s.clone()
            };
            &unchecked
        } else {
            s
        };
        let Some(sink) = keep(errors, validate_sink(&key, s, &sink_rules)) else {
            continue;
        };
        if !sink_names.insert(sink.name.clone()) {
            errors.push(invalid(
                format!("{key}.name"),
                taken(s.name.is_none(), &sink.name, "sink"),
            ));
        }
        sinks.push(sink);
    }
    sinks
}

#[cfg(test)]
mod tests;
