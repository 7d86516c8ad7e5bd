//! `[[sinks]] type = "syslog"`: RFC 5424 syslog over TCP or TLS.

use super::{Entry, RawSink, SinkKind, is_loopback};
use crate::config::{ConfigError, invalid};
use crate::sink::format::syslog::{FACILITIES, Message};

/// `[[sinks]] type = "syslog"`, validated.
#[derive(Debug, Clone)]
pub struct SyslogSettings {
    pub host: String,
    pub port: u16,
    /// `tls://`: TLS, verified against the platform's roots or `ca_file`.
    pub tls: bool,
    /// PEM certificates to trust instead of the platform's roots.
    pub ca_file: Option<std::path::PathBuf>,
    pub message: Message,
    pub facility: u8,
    /// The HOSTNAME field: the configured one, or this host's name.
    pub hostname: String,
}

/// `url` is `tcp://host[:port]` (514) or `tls://host[:port]` (6514).
pub(super) fn validate_syslog(e: &Entry) -> Result<SinkKind, ConfigError> {
    let (key, s) = (e.key, e.raw);
    let (host, port, tls) = address(key, s, &e.required("url", &s.url)?)?;
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
    let facility = facility(key, s.facility.as_deref())?;
    let hostname = hostname(key, &s.hostname)?;
    if s.ca_file.is_some() && !tls {
        return Err(invalid(format!("{key}.ca_file"), "applies to tls:// only"));
    }
    let ca_file = s.ca_file.as_ref().map(std::path::PathBuf::from);
    if tls {
        // Read now, so a bad file is a config error, not a failing alert.
        crate::sink::syslog::tls_config(ca_file.as_deref())
            .map_err(|e| invalid(format!("{key}.ca_file"), e))?;
    }
    Ok(SinkKind::Syslog(SyslogSettings {
        host,
        port,
        tls,
        ca_file,
        message,
        facility,
        hostname,
    }))
}

/// The host, port and whether it is TLS of the sink's `url`.
fn address(key: &str, s: &RawSink, url: &str) -> Result<(String, u16, bool), ConfigError> {
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
    Ok((host, port, tls))
}

/// `facility`: a name of [`FACILITIES`]; `authpriv` (10) by default.
fn facility(key: &str, name: Option<&str>) -> Result<u8, ConfigError> {
    match name {
        None => Ok(10),
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
            }),
    }
}

/// `hostname`, or this host's name (`-` when it has none).
fn hostname(key: &str, hostname: &Option<String>) -> Result<String, ConfigError> {
    match hostname {
        Some(h) if !h.is_empty() && h.len() <= 255 && h.chars().all(|c| c.is_ascii_graphic()) => {
            Ok(h.clone())
        }
        Some(h) => Err(invalid(
            format!("{key}.hostname"),
            format!("`{h}` must be 1 to 255 printable ASCII characters without spaces"),
        )),
        None => Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "-".to_owned())),
    }
}
