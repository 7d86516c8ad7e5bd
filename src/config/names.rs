//! The names of sources and sinks: metric labels, given or derived from
//! what an entry reads or where it sends.

use super::{ConfigError, invalid};

/// Why a name cannot be used twice; a default one asks for a `name`.
pub(super) fn taken(default: bool, name: &str, what: &str) -> String {
    if default {
        format!(
            "its default name `{name}` is that of another {what}: give each of them a `name` \
             (names are metric labels, so they are not numbered by position)"
        )
    } else {
        format!("`{name}` is used by another {what}")
    }
}

/// The name of an entry without `name`: its type and, when it has one,
/// what it reads or where it sends (`sqs-rootwatch-events`,
/// `webhook-soc.example.com`), so it does not change when entries are
/// added above it; names are metric labels.
pub(super) fn default_name(kind: &str, what: Option<&str>) -> String {
    let label: String = what
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let label = label.trim_matches('-');
    let mut name = if label.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}-{label}")
    };
    name.truncate(64);
    name
}

/// The last non-empty part of a path, URL path or ARN.
pub(super) fn last_part(text: &str) -> Option<&str> {
    text.rsplit(['/', ':']).find(|p| !p.is_empty())
}

/// The host of a URL, or of a `tcp://host:port` address.
pub(super) fn url_host(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
}

pub(super) fn name_or(
    key: &str,
    name: &Option<String>,
    default: String,
) -> Result<String, ConfigError> {
    match name {
        None => Ok(default),
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            Ok(n.clone())
        }
        Some(n) => Err(invalid(
            format!("{key}.name"),
            format!("`{n}` must be 1 to 64 letters, digits, `-`, `_` or `.`"),
        )),
    }
}
