//! `[[sinks]]`: the raw keys of every sink type, which keys apply to
//! which type, and the checks they share. A sink type with more to check
//! than its URL has a file of its own (`webhook.rs`, `syslog.rs`, ...),
//! holding its settings type and its `validate_<type>`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::aws::{RawAws, aws_settings};
use super::detect::check_rule_pattern;
use super::names::{default_name, last_part, name_or, url_host};
use super::{ConfigError, all, invalid, keep, secs};
use crate::detect::Glob;
use crate::finding::Severity;
use crate::secret::{REDACTED, Secret};

pub(super) mod alertmanager;
pub(super) mod eventbridge;
pub(super) mod opsgenie;
pub(super) mod pagerduty;
pub(super) mod sns;
pub(super) mod splunk_hec;
pub(super) mod syslog;
pub(super) mod webhook;

use eventbridge::EventBridgeSettings;
use sns::SnsSettings;
use syslog::SyslogSettings;
use webhook::WebhookSettings;

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

fn default_retry_max() -> u64 {
    300
}
fn default_timeout() -> u64 {
    10
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
    Syslog(SyslogSettings),
    /// Splunk HTTP Event Collector (`url` ends in `/services/collector/event`).
    SplunkHec {
        url: Secret,
        token: Secret,
        meta: crate::sink::format::splunk::Meta,
    },
    Sns(SnsSettings),
    EventBridge(EventBridgeSettings),
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

pub(super) fn validate_sink(
    key: &str,
    s: &RawSink,
    known: &[&str],
) -> Result<SinkSettings, ConfigError> {
    let e = Entry { key, raw: s };
    // Every key is checked; the problems come back together.
    let er = &mut Vec::new();
    let keys_ok = keep(er, e.check_keys());
    // A syslog sink's `format` (json or cef) is its own.
    let format = match s.format.as_deref().filter(|_| s.kind != SinkType::Syslog) {
        None => Some(PayloadFormat::default()),
        Some(f) => keep(
            er,
            PayloadFormat::parse(f).ok_or_else(|| {
                invalid(
                    format!("{key}.format"),
                    format!(
                        "`{f}` is not a payload format ({})",
                        PayloadFormat::NAMES.join(", ")
                    ),
                )
            }),
        ),
    };
    let kind = format.and_then(|format| {
        let kind = match s.kind {
            SinkType::Stdout => Ok(SinkKind::Stdout),
            SinkType::Webhook => webhook::validate_webhook(&e, format),
            SinkType::Slack => e.url().map(|url| SinkKind::Slack { url }),
            SinkType::Teams => e.url().map(|url| SinkKind::Teams { url }),
            SinkType::Sns => sns::validate_sns(&e, format),
            SinkType::Eventbridge => eventbridge::validate_eventbridge(&e, format),
            SinkType::Pagerduty => pagerduty::validate_pagerduty(&e),
            SinkType::Opsgenie => opsgenie::validate_opsgenie(&e),
            SinkType::Alertmanager => alertmanager::validate_alertmanager(&e),
            SinkType::Syslog => syslog::validate_syslog(&e),
            SinkType::SplunkHec => splunk_hec::validate_splunk_hec(&e),
        };
        keep(er, kind)
    });
    let min_severity = match &s.min_severity {
        None => Some(Severity::Info),
        Some(v) => keep(
            er,
            v.parse()
                .map_err(|m| invalid(format!("{key}.min_severity"), m)),
        ),
    };
    let rules = match &s.rules {
        None => Some(None),
        Some(list) => {
            let before = er.len();
            let globs: Vec<Glob> = list
                .iter()
                .enumerate()
                .filter_map(|(j, id)| {
                    keep(
                        er,
                        check_rule_pattern(&format!("{key}.rules[{j}]"), id, known),
                    )
                })
                .collect();
            (er.len() == before).then_some(Some(globs))
        }
    };
    let name = keep(er, name_or(key, &s.name, s.default_name()));
    let retry_max = keep(
        er,
        secs(
            &format!("{key}.retry_max_secs"),
            s.retry_max_secs,
            1,
            86_400,
        ),
    );
    let timeout = keep(
        er,
        secs(&format!("{key}.timeout_secs"), s.timeout_secs, 1, 300),
    );
    let (
        Some(()),
        Some(kind),
        Some(min_severity),
        Some(rules),
        Some(name),
        Some(retry_max),
        Some(timeout),
    ) = (keys_ok, kind, min_severity, rules, name, retry_max, timeout)
    else {
        return Err(all(std::mem::take(er)));
    };
    Ok(SinkSettings {
        name,
        kind,
        min_severity,
        rules,
        retry_max,
        timeout,
    })
}

/// The keys a sink of type `kind` takes, besides those every sink takes.
fn allowed_keys(kind: SinkType) -> &'static [&'static str] {
    match kind {
        SinkType::Stdout => &[],
        SinkType::Webhook => &[
            "url",
            "allow_insecure_http",
            "hmac_secret",
            "bearer_token",
            "headers",
            "format",
        ],
        SinkType::Slack => &["url", "allow_insecure_http"],
        SinkType::Pagerduty => &["url", "allow_insecure_http", "routing_key"],
        SinkType::Teams => &["url", "allow_insecure_http"],
        SinkType::Opsgenie => &["url", "allow_insecure_http", "api_key"],
        SinkType::Alertmanager => &["url", "allow_insecure_http", "resolve_after_secs"],
        SinkType::Syslog => &[
            "url",
            "allow_insecure_http",
            "format",
            "facility",
            "hostname",
            "ca_file",
        ],
        SinkType::SplunkHec => &[
            "url",
            "allow_insecure_http",
            "token",
            "sourcetype",
            "source",
            "index",
        ],
        SinkType::Sns => &[
            "topic_arn",
            "format",
            "region",
            "role_arn",
            "external_id",
            "session_name",
        ],
        SinkType::Eventbridge => &[
            "event_bus",
            "format",
            "region",
            "role_arn",
            "external_id",
            "session_name",
        ],
    }
}

/// One `[[sinks]]` entry being checked: where it is in the file and its
/// keys as written.
pub(super) struct Entry<'a> {
    pub(super) key: &'a str,
    pub(super) raw: &'a RawSink,
}

impl Entry<'_> {
    /// Refuses, by name, a key that does not apply to the sink's type.
    fn check_keys(&self) -> Result<(), ConfigError> {
        let (key, s) = (self.key, self.raw);
        let allowed = allowed_keys(s.kind);
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
                    format!("does not apply to a {} sink", s.kind.as_str()),
                ));
            }
        }
        Ok(())
    }

    /// The value of `field`, which this sink type needs, not empty.
    pub(super) fn required(&self, field: &str, v: &Option<String>) -> Result<String, ConfigError> {
        match v {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            Some(_) => Err(invalid(format!("{}.{field}", self.key), "is empty")),
            None => Err(invalid(
                format!("{}.{field}", self.key),
                format!("is required for a {} sink", self.raw.kind.as_str()),
            )),
        }
    }

    /// `url`, required, an http(s) URL (see [`http_url`]).
    pub(super) fn url(&self) -> Result<Secret, ConfigError> {
        http_url(
            &format!("{}.url", self.key),
            &self.required("url", &self.raw.url)?,
            self.raw.allow_insecure_http,
        )
    }

    /// The region and role of an SNS or EventBridge sink, as for a source;
    /// the region its ARN (at `arn_key`) names is the default.
    pub(super) fn aws(
        &self,
        arn_key: &str,
        arn: &str,
    ) -> Result<crate::aws::AwsSettings, ConfigError> {
        let s = self.raw;
        aws_settings(
            self.key,
            RawAws {
                region: &s.region,
                role_arn: &s.role_arn,
                external_id: &s.external_id,
                session_name: &s.session_name,
            },
            crate::aws::arn_region(arn).map(|r| (arn_key, r.to_owned())),
        )
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
