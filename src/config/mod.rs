//! Configuration: one TOML file, read into raw serde structs (unknown keys
//! rejected), `${ENV}` interpolated, then validated into [`Settings`] with
//! real types. Validation does no I/O, so a bad file fails before anything
//! connects anywhere.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::{DetectSettings, Glob};
use crate::finding::Severity;
use crate::secret::{REDACTED, Secret};

mod audit;
mod aws;
mod detect;
mod load;
mod names;
mod render;
mod source;

pub use audit::{RawAudit, RawAuditAccount};
pub use detect::{
    OneOrMany, RawAccount, RawAllowlist, RawDetect, RawEnrich, RawExpected, RawGeoIp,
    RawOrganizations, RawSigma, RawSuppress,
};
pub use load::{load, parse};
pub use render::render_effective;
pub use source::cloudwatch_logs::{CheckpointStore, CloudwatchLogsSettings, LogGroups, Start};
pub use source::file::FileSettings;
pub use source::sqs::{ObjectLimits, SqsSettings};
pub use source::{DeadLetterDest, RawSource, SourceSettings};

use aws::{RawAws, aws_settings};
use detect::check_rule_pattern;
use names::{default_name, last_part, name_or, taken, url_host};
use source::validate_source;

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

fn default_retry_max() -> u64 {
    300
}
fn default_timeout() -> u64 {
    10
}

/// PagerDuty's Events API v2 endpoint, used when a `pagerduty` sink sets no
/// `url`. The default lives with the validation that applies it, so the
/// config never reaches into a sink for a value.
pub const PAGERDUTY_DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `[[sinks]] type = "syslog"`: `url` is `tcp://host[:port]` (514) or
/// `tls://host[:port]` (6514).
fn syslog_sink(key: &str, s: &RawSink, url: &str) -> Result<SinkKind, ConfigError> {
    use crate::sink::format::syslog::{FACILITIES, Message};
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid(format!("{key}.url"), format!("not a URL ({e})")))?;
    let tls = match parsed.scheme() {
        "tcp" => false,
        "tls" => true,
        other => {
            return Err(invalid(
                format!("{key}.url"),
                format!(
                    "`{other}://` is not tcp:// or tls:// (UDP loses alerts silently and is not offered)"
                ),
            ));
        }
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid(format!("{key}.url"), "has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if parsed.path().len() > 1 || parsed.query().is_some() || !parsed.username().is_empty() {
        return Err(invalid(
            format!("{key}.url"),
            "takes only a host and a port (tcp://host:514, tls://host:6514)",
        ));
    }
    let port = parsed.port().unwrap_or(if tls { 6514 } else { 514 });
    if !tls && !s.allow_insecure_http && !is_loopback(&parsed) {
        return Err(invalid(
            format!("{key}.url"),
            "plain tcp:// is only allowed to a loopback host: alerts would cross the network unencrypted; use tls://, or set allow_insecure_http = true on this sink",
        ));
    }
    let message = match s.format.as_deref() {
        None | Some("json") => Message::Json,
        Some("cef") => Message::Cef,
        Some(other) => {
            return Err(invalid(
                format!("{key}.format"),
                format!("`{other}` is not json or cef"),
            ));
        }
    };
    let facility = match s.facility.as_deref() {
        None => 10,
        Some(name) => FACILITIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, n)| *n)
            .ok_or_else(|| {
                invalid(
                    format!("{key}.facility"),
                    format!(
                        "`{name}` is not a syslog facility ({})",
                        FACILITIES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?,
    };
    let hostname = match &s.hostname {
        Some(h) if !h.is_empty() && h.len() <= 255 && h.chars().all(|c| c.is_ascii_graphic()) => {
            h.clone()
        }
        Some(h) => {
            return Err(invalid(
                format!("{key}.hostname"),
                format!("`{h}` must be 1 to 255 printable ASCII characters without spaces"),
            ));
        }
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "-".to_owned()),
    };
    if s.ca_file.is_some() && !tls {
        return Err(invalid(format!("{key}.ca_file"), "applies to tls:// only"));
    }
    let ca_file = s.ca_file.as_ref().map(std::path::PathBuf::from);
    if tls {
        // Read now, so a bad file is a config error, not a failing alert.
        crate::sink::syslog::tls_config(ca_file.as_deref())
            .map_err(|e| invalid(format!("{key}.ca_file"), e))?;
    }
    Ok(SinkKind::Syslog(crate::sink::syslog::SyslogSettings {
        host,
        port,
        tls,
        ca_file,
        message,
        facility,
        hostname,
    }))
}

/// Where an `alertmanager` sink posts, below the Alertmanager's address.
pub const ALERTMANAGER_PATH: &str = "/api/v2/alerts";

/// Opsgenie's Alert API v2 endpoint (US instance), used when an `opsgenie`
/// sink sets no `url`; EU accounts set `https://api.eu.opsgenie.com/v2/alerts`.
pub const OPSGENIE_DEFAULT_URL: &str = "https://api.opsgenie.com/v2/alerts";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkType {
    Stdout,
    Webhook,
    Slack,
    Pagerduty,
    Teams,
    Opsgenie,
    Alertmanager,
    SplunkHec,
    Syslog,
    Sns,
    Eventbridge,
}

/// One sink. Fields that do not apply to its `type` are rejected by name.
/// Its `Debug` form leaves out every value that may be a secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    #[serde(rename = "type")]
    pub kind: SinkType,
    pub name: Option<String>,
    pub url: Option<String>,
    pub hmac_secret: Option<String>,
    pub bearer_token: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub routing_key: Option<String>,
    /// Opsgenie API integration key.
    pub api_key: Option<String>,
    /// Alertmanager: how long after sending an alert ends unless sent again.
    pub resolve_after_secs: Option<u64>,
    /// Syslog: facility name, HOSTNAME field, CA certificates for tls://.
    pub facility: Option<String>,
    pub hostname: Option<String>,
    pub ca_file: Option<String>,
    /// Splunk HEC token, and the metadata of its events.
    pub token: Option<String>,
    pub sourcetype: Option<String>,
    pub source: Option<String>,
    pub index: Option<String>,
    /// `json` (the finding JSON, the default) or `ocsf`.
    pub format: Option<String>,
    pub topic_arn: Option<String>,
    pub event_bus: Option<String>,
    /// The AWS region of an SNS or EventBridge sink, when it is not the
    /// process's own (nor the one its ARN names).
    pub region: Option<String>,
    /// A role the SNS or EventBridge sink acts as (STS AssumeRole), with
    /// its optional external id and session name.
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    pub min_severity: Option<String>,
    pub rules: Option<Vec<String>>,
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Lets `url` be plain `http://` to a host that is not loopback.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

impl SinkType {
    /// Its name in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkType::Stdout => "stdout",
            SinkType::Webhook => "webhook",
            SinkType::Slack => "slack",
            SinkType::Pagerduty => "pagerduty",
            SinkType::Teams => "teams",
            SinkType::Opsgenie => "opsgenie",
            SinkType::Alertmanager => "alertmanager",
            SinkType::SplunkHec => "splunk_hec",
            SinkType::Syslog => "syslog",
            SinkType::Sns => "sns",
            SinkType::Eventbridge => "eventbridge",
        }
    }
}

impl RawSink {
    /// The name rootwatch gives it when it has none: its type and the host
    /// it sends to, or its topic or bus (see [`default_name`]).
    pub fn default_name(&self) -> String {
        let what = match (&self.url, &self.topic_arn, &self.event_bus) {
            (Some(url), _, _) => url_host(url),
            (_, Some(arn), _) => last_part(arn).map(str::to_owned),
            (_, _, Some(bus)) => last_part(bus).map(str::to_owned),
            _ => None,
        };
        default_name(self.kind.as_str(), what.as_deref())
    }
}

impl std::fmt::Debug for RawSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A webhook URL is a credential (Slack, Teams), and so are tokens,
        // keys, header values and external ids.
        let hidden = |v: &Option<String>| v.as_ref().map(|_| REDACTED);
        f.debug_struct("RawSink")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("url", &hidden(&self.url))
            .field("hmac_secret", &hidden(&self.hmac_secret))
            .field("bearer_token", &hidden(&self.bearer_token))
            .field(
                "headers",
                &self
                    .headers
                    .as_ref()
                    .map(|h| h.keys().map(|k| (k, REDACTED)).collect::<BTreeMap<_, _>>()),
            )
            .field("routing_key", &hidden(&self.routing_key))
            .field("api_key", &hidden(&self.api_key))
            .field("resolve_after_secs", &self.resolve_after_secs)
            .field("facility", &self.facility)
            .field("hostname", &self.hostname)
            .field("ca_file", &self.ca_file)
            .field("token", &hidden(&self.token))
            .field("sourcetype", &self.sourcetype)
            .field("source", &self.source)
            .field("index", &self.index)
            .field("format", &self.format)
            .field("topic_arn", &self.topic_arn)
            .field("event_bus", &self.event_bus)
            .field("region", &self.region)
            .field("role_arn", &self.role_arn)
            .field("external_id", &hidden(&self.external_id))
            .field("session_name", &self.session_name)
            .field("min_severity", &self.min_severity)
            .field("rules", &self.rules)
            .field("retry_max_secs", &self.retry_max_secs)
            .field("timeout_secs", &self.timeout_secs)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
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

#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub name: String,
    pub kind: SinkKind,
    pub min_severity: Severity,
    /// `None`: every rule. Rule ids, or `*` patterns of them.
    pub rules: Option<Vec<Glob>>,
    pub retry_max: Duration,
    pub timeout: Duration,
}

impl SinkSettings {
    /// Whether this sink takes findings of `rule` at `severity`.
    pub fn accepts(&self, rule: &str, severity: Severity) -> bool {
        severity >= self.min_severity
            && self
                .rules
                .as_ref()
                .is_none_or(|r| r.iter().any(|g| g.matches(rule)))
    }
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Stdout,
    Webhook(WebhookSettings),
    /// Slack incoming webhook (Block Kit).
    Slack {
        url: Secret,
    },
    /// PagerDuty Events API v2.
    PagerDuty {
        url: String,
        routing_key: Secret,
    },
    /// Microsoft Teams workflow webhook (Adaptive Card).
    Teams {
        url: Secret,
    },
    /// Opsgenie Alert API v2.
    Opsgenie {
        url: Secret,
        api_key: Secret,
    },
    /// Prometheus Alertmanager API v2 (`url` ends in `/api/v2/alerts`).
    Alertmanager {
        url: Secret,
        resolve_after: Duration,
    },
    /// RFC 5424 syslog over TCP or TLS.
    Syslog(crate::sink::syslog::SyslogSettings),
    /// Splunk HTTP Event Collector (`url` ends in `/services/collector/event`).
    SplunkHec {
        url: Secret,
        token: Secret,
        meta: crate::sink::format::splunk::Meta,
    },
    Sns(SnsSettings),
    EventBridge(EventBridgeSettings),
}

/// What the webhook, SNS and EventBridge sinks send (`format`): the
/// finding JSON (the default) or an OCSF Detection Finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    #[default]
    Json,
    Ocsf,
}

impl PayloadFormat {
    pub const NAMES: &[&str] = &["json", "ocsf"];

    pub fn parse(s: &str) -> Option<PayloadFormat> {
        match s {
            "json" => Some(PayloadFormat::Json),
            "ocsf" => Some(PayloadFormat::Ocsf),
            _ => None,
        }
    }
}

/// Amazon SNS `Publish` to a topic.
#[derive(Debug, Clone)]
pub struct SnsSettings {
    pub topic_arn: String,
    /// Region (default: the topic ARN's) and role.
    pub aws: crate::aws::AwsSettings,
    pub format: PayloadFormat,
}

/// Amazon EventBridge `PutEvents` to a bus (a name or an ARN).
#[derive(Debug, Clone)]
pub struct EventBridgeSettings {
    pub event_bus: String,
    /// Region (default: the bus ARN's, else the process's) and role.
    pub aws: crate::aws::AwsSettings,
    pub format: PayloadFormat,
}

impl SinkKind {
    /// Sends through the AWS SDK (SNS, EventBridge), so it needs the AWS
    /// configuration.
    pub fn uses_aws(&self) -> bool {
        matches!(self, SinkKind::Sns(_) | SinkKind::EventBridge(_))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::Webhook(_) => "webhook",
            SinkKind::Slack { .. } => "slack",
            SinkKind::PagerDuty { .. } => "pagerduty",
            SinkKind::Teams { .. } => "teams",
            SinkKind::Opsgenie { .. } => "opsgenie",
            SinkKind::Alertmanager { .. } => "alertmanager",
            SinkKind::SplunkHec { .. } => "splunk_hec",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Sns(_) => "sns",
            SinkKind::EventBridge(_) => "eventbridge",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: Secret,
    pub hmac_secret: Option<Secret>,
    pub headers: Vec<(String, Secret)>,
    pub format: PayloadFormat,
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

/// An http(s) URL with a host. Plain `http://` only to a loopback host
/// (a sidecar or a local relay) unless `allow_insecure` says otherwise:
/// alerts, and the tokens webhook URLs and headers carry, would otherwise
/// cross the network readable by anyone on the path. The error never
/// quotes the URL, which may hold a token.
fn http_url(key: &str, s: &str, allow_insecure: bool) -> Result<Secret, ConfigError> {
    let url = reqwest::Url::parse(s).map_err(|e| invalid(key, format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            key,
            format!("`{}://…` is not an http(s) URL with a host", url.scheme()),
        ));
    }
    if url.scheme() == "http" && !allow_insecure && !is_loopback(&url) {
        return Err(invalid(
            key,
            "plain http:// is only allowed to a loopback host (127.0.0.0/8, ::1, localhost): alerts and the URL's secrets would cross the network unencrypted; use https://, or set allow_insecure_http = true on this sink",
        ));
    }
    Ok(Secret::new(s))
}

/// `base` (a receiver's address) with the API `path` added, unless it
/// already ends with it.
fn with_path(base: &Secret, path: &str) -> Secret {
    let base = base.expose().trim_end_matches('/');
    if base.ends_with(path) {
        Secret::new(base)
    } else {
        Secret::new(format!("{base}{path}"))
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

/// Checks a parsed file and builds the settings. Each section, source
/// and sink is checked even when another is wrong, so one run names every
/// problem ([`ConfigError::Several`]); within one entry, the first.
pub fn validate(raw: &RawConfig) -> Result<Settings, ConfigError> {
    let mut errors = Vec::new();
    let detect = keep(&mut errors, detect::validate_detect(raw));
    let mut known = crate::detect::rule_ids();
    if let Some(s) = detect.as_ref().and_then(|d| d.sigma.as_deref()) {
        known.extend(s.rule_names());
    }
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

    let mut names = HashSet::new();
    let mut checkpoints = HashSet::new();
    let mut sources = Vec::new();
    for (i, s) in raw.sources.iter().enumerate() {
        let key = format!("sources[{i}]");
        let Some(src) = keep(&mut errors, validate_source(&key, s)) else {
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
        let Some(sink) = keep(&mut errors, validate_sink(&key, s, &sink_rules)) else {
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
        (1, ..) => Err(errors.remove(0)),
        _ => Err(ConfigError::Several(errors)),
    }
}

/// The value, or `None` with its error noted.
fn keep<T>(errors: &mut Vec<ConfigError>, r: Result<T, ConfigError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn validate_sink(key: &str, s: &RawSink, known: &[&str]) -> Result<SinkSettings, ConfigError> {
    let (type_name, allowed): (&str, &[&str]) = match s.kind {
        SinkType::Stdout => ("stdout", &[]),
        SinkType::Webhook => (
            "webhook",
            &[
                "url",
                "allow_insecure_http",
                "hmac_secret",
                "bearer_token",
                "headers",
                "format",
            ],
        ),
        SinkType::Slack => ("slack", &["url", "allow_insecure_http"]),
        SinkType::Pagerduty => ("pagerduty", &["url", "allow_insecure_http", "routing_key"]),
        SinkType::Teams => ("teams", &["url", "allow_insecure_http"]),
        SinkType::Opsgenie => ("opsgenie", &["url", "allow_insecure_http", "api_key"]),
        SinkType::Alertmanager => (
            "alertmanager",
            &["url", "allow_insecure_http", "resolve_after_secs"],
        ),
        SinkType::Syslog => (
            "syslog",
            &[
                "url",
                "allow_insecure_http",
                "format",
                "facility",
                "hostname",
                "ca_file",
            ],
        ),
        SinkType::SplunkHec => (
            "splunk_hec",
            &[
                "url",
                "allow_insecure_http",
                "token",
                "sourcetype",
                "source",
                "index",
            ],
        ),
        SinkType::Sns => (
            "sns",
            &[
                "topic_arn",
                "format",
                "region",
                "role_arn",
                "external_id",
                "session_name",
            ],
        ),
        SinkType::Eventbridge => (
            "eventbridge",
            &[
                "event_bus",
                "format",
                "region",
                "role_arn",
                "external_id",
                "session_name",
            ],
        ),
    };
    for (field, set) in [
        ("url", s.url.is_some()),
        ("hmac_secret", s.hmac_secret.is_some()),
        ("bearer_token", s.bearer_token.is_some()),
        ("headers", s.headers.is_some()),
        ("routing_key", s.routing_key.is_some()),
        ("api_key", s.api_key.is_some()),
        ("resolve_after_secs", s.resolve_after_secs.is_some()),
        ("token", s.token.is_some()),
        ("facility", s.facility.is_some()),
        ("hostname", s.hostname.is_some()),
        ("ca_file", s.ca_file.is_some()),
        ("sourcetype", s.sourcetype.is_some()),
        ("source", s.source.is_some()),
        ("index", s.index.is_some()),
        ("allow_insecure_http", s.allow_insecure_http),
        ("format", s.format.is_some()),
        ("topic_arn", s.topic_arn.is_some()),
        ("event_bus", s.event_bus.is_some()),
        ("region", s.region.is_some()),
        ("role_arn", s.role_arn.is_some()),
        ("external_id", s.external_id.is_some()),
        ("session_name", s.session_name.is_some()),
    ] {
        if set && !allowed.contains(&field) {
            return Err(invalid(
                format!("{key}.{field}"),
                format!("does not apply to a {type_name} sink"),
            ));
        }
    }
    let required = |field: &str, v: &Option<String>| -> Result<String, ConfigError> {
        match v {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            Some(_) => Err(invalid(format!("{key}.{field}"), "is empty")),
            None => Err(invalid(
                format!("{key}.{field}"),
                format!("is required for a {type_name} sink"),
            )),
        }
    };
    let http_url = |key: &str, url: &str| http_url(key, url, s.allow_insecure_http);
    // A syslog sink's `format` (json or cef) is its own.
    let format = match s.format.as_deref().filter(|_| s.kind != SinkType::Syslog) {
        None => PayloadFormat::default(),
        Some(f) => PayloadFormat::parse(f).ok_or_else(|| {
            invalid(
                format!("{key}.format"),
                format!(
                    "`{f}` is not a payload format ({})",
                    PayloadFormat::NAMES.join(", ")
                ),
            )
        })?,
    };
    // The region and role of an SNS or EventBridge sink, as for a source;
    // the region its ARN names is the default.
    let aws = |arn_key: &str, arn: &str| {
        aws_settings(
            key,
            RawAws {
                region: &s.region,
                role_arn: &s.role_arn,
                external_id: &s.external_id,
                session_name: &s.session_name,
            },
            crate::aws::arn_region(arn).map(|r| (arn_key, r.to_owned())),
        )
    };
    let kind = match s.kind {
        SinkType::Stdout => SinkKind::Stdout,
        SinkType::Webhook => {
            let url = http_url(&format!("{key}.url"), &required("url", &s.url)?)?;
            let mut headers = Vec::new();
            for (h, v) in s.headers.iter().flatten() {
                let hk = format!("{key}.headers.{h}");
                reqwest::header::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| invalid(&hk, "not a valid HTTP header name"))?;
                reqwest::header::HeaderValue::from_str(v)
                    .map_err(|_| invalid(&hk, "not a valid HTTP header value"))?;
                headers.push((h.clone(), Secret::new(v.clone())));
            }
            if s.bearer_token.is_some() {
                let token = required("bearer_token", &s.bearer_token)?;
                headers.push((
                    "Authorization".into(),
                    Secret::new(format!("Bearer {token}")),
                ));
            }
            let hmac_secret = match &s.hmac_secret {
                Some(_) => Some(Secret::new(required("hmac_secret", &s.hmac_secret)?)),
                None => None,
            };
            SinkKind::Webhook(WebhookSettings {
                url,
                hmac_secret,
                headers,
                format,
            })
        }
        SinkType::Slack => SinkKind::Slack {
            url: http_url(&format!("{key}.url"), &required("url", &s.url)?)?,
        },
        SinkType::Teams => SinkKind::Teams {
            url: http_url(&format!("{key}.url"), &required("url", &s.url)?)?,
        },
        SinkType::Sns => {
            let topic_arn = required("topic_arn", &s.topic_arn)?;
            if !is_arn_of(&topic_arn, "sns", |name| !name.contains('/')) {
                return Err(invalid(
                    format!("{key}.topic_arn"),
                    "is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
                ));
            }
            SinkKind::Sns(SnsSettings {
                aws: aws("topic_arn", &topic_arn)?,
                topic_arn,
                format,
            })
        }
        SinkType::Eventbridge => {
            let event_bus = required("event_bus", &s.event_bus)?;
            let ok = if event_bus.starts_with("arn:") {
                is_arn_of(&event_bus, "events", |r| r.starts_with("event-bus/"))
            } else {
                event_bus.len() <= 256
                    && event_bus
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
            };
            if !ok {
                return Err(invalid(
                    format!("{key}.event_bus"),
                    "is not an event bus name or ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)",
                ));
            }
            SinkKind::EventBridge(EventBridgeSettings {
                aws: aws("event_bus", &event_bus)?,
                event_bus,
                format,
            })
        }
        SinkType::Pagerduty => {
            let url = match &s.url {
                None => PAGERDUTY_DEFAULT_URL.to_owned(),
                Some(_) => http_url(&format!("{key}.url"), &required("url", &s.url)?)?
                    .expose()
                    .to_owned(),
            };
            let routing_key = required("routing_key", &s.routing_key)?;
            // Events API v2 integration keys are 32 characters.
            if routing_key.len() != 32 || !routing_key.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(invalid(
                    format!("{key}.routing_key"),
                    "is not a PagerDuty Events API v2 integration key (32 letters and digits)",
                ));
            }
            SinkKind::PagerDuty {
                url,
                routing_key: Secret::new(routing_key),
            }
        }
        SinkType::Opsgenie => {
            let url = match &s.url {
                None => Secret::new(OPSGENIE_DEFAULT_URL),
                Some(_) => http_url(&format!("{key}.url"), &required("url", &s.url)?)?,
            };
            let api_key = required("api_key", &s.api_key)?;
            // Opsgenie API integration keys are UUIDs; anything else would
            // only be refused (401) at the first alert.
            if !is_uuid(&api_key) {
                return Err(invalid(
                    format!("{key}.api_key"),
                    "is not an Opsgenie API integration key (a UUID: 8-4-4-4-12 hex digits)",
                ));
            }
            SinkKind::Opsgenie {
                url,
                api_key: Secret::new(api_key),
            }
        }
        SinkType::Alertmanager => {
            // The Alertmanager's address, or the API path itself.
            let url = with_path(
                &http_url(&format!("{key}.url"), &required("url", &s.url)?)?,
                ALERTMANAGER_PATH,
            );
            let resolve_after = secs(
                &format!("{key}.resolve_after_secs"),
                s.resolve_after_secs.unwrap_or(3600),
                60,
                7 * 86_400,
            )?;
            SinkKind::Alertmanager { url, resolve_after }
        }
        SinkType::Syslog => syslog_sink(key, s, &required("url", &s.url)?)?,
        SinkType::SplunkHec => {
            let url = with_path(
                &http_url(&format!("{key}.url"), &required("url", &s.url)?)?,
                crate::sink::format::splunk::EVENT_PATH,
            );
            let token = required("token", &s.token)?;
            // HEC tokens are GUIDs; anything else would only be refused (403).
            if !is_uuid(&token) {
                return Err(invalid(
                    format!("{key}.token"),
                    "is not a Splunk HEC token (a GUID: 8-4-4-4-12 hex digits)",
                ));
            }
            // Splunk's rules for these names: no spaces or control characters.
            let name =
                |field: &str, v: &Option<String>, default: &str| -> Result<String, ConfigError> {
                    let v = v.clone().unwrap_or_else(|| default.to_owned());
                    if v.is_empty()
                        || v.len() > 256
                        || v.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        return Err(invalid(
                            format!("{key}.{field}"),
                            format!("`{v}` must be 1 to 256 characters without spaces"),
                        ));
                    }
                    Ok(v)
                };
            let index = match &s.index {
                None => None,
                Some(_) => Some(name("index", &s.index, "")?),
            };
            SinkKind::SplunkHec {
                url,
                token: Secret::new(token),
                meta: crate::sink::format::splunk::Meta {
                    sourcetype: name("sourcetype", &s.sourcetype, "rootwatch:finding")?,
                    source: name("source", &s.source, "rootwatch")?,
                    index,
                },
            }
        }
    };
    let min_severity = match &s.min_severity {
        None => Severity::Info,
        Some(v) => v
            .parse()
            .map_err(|m| invalid(format!("{key}.min_severity"), m))?,
    };
    let rules = match &s.rules {
        None => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(j, id)| check_rule_pattern(&format!("{key}.rules[{j}]"), id, known))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(SinkSettings {
        name: name_or(key, &s.name, s.default_name())?,
        kind,
        min_severity,
        rules,
        retry_max: secs(
            &format!("{key}.retry_max_secs"),
            s.retry_max_secs,
            1,
            86_400,
        )?,
        timeout: secs(&format!("{key}.timeout_secs"), s.timeout_secs, 1, 300)?,
    })
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits in either case.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE` with a region, a
/// 12-digit account and a resource that `resource_ok` accepts.
fn is_arn_of(arn: &str, service: &str, resource_ok: impl Fn(&str) -> bool) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, svc, region, account, resource]
        if partition.starts_with("aws")
            && *svc == service
            && crate::aws::is_region(region)
            && account.len() == 12
            && account.chars().all(|c| c.is_ascii_digit())
            && !resource.is_empty()
            && resource_ok(resource))
}

#[cfg(test)]
mod tests;
