//! Secrets in one place: the [`Secret`] type that keeps a configured value
//! out of logs, metrics and `check-config` output; [`Secrets`], the list of
//! what one sink must never write down; and scrubbing error text of them,
//! and of anything that looks like a URL, before it is logged, shown by
//! `test-alert` or written to a dead-letter file.
//!
//! One marker for all of it: [`REDACTED`] where a secret was, [`URL`] where
//! a URL was.

use crate::config::SinkKind;

/// What replaces a secret in any output.
pub const REDACTED: &str = "<redacted>";
/// What replaces a word of error text that looks like a URL (a receiver's
/// error page may echo its own address, token included).
pub const URL: &str = "<url>";

/// A value that must not reach logs, metrics or `check-config` output: its
/// `Debug` shows [`REDACTED`], and only [`Secret::expose`] gives it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The strings to remove from one sink's error text, longest first (so a
/// URL goes before the token inside it).
#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} values)", self.0.len())
    }
}

/// URL parts shorter than this (`hook`, `v2`) are not taken for secrets:
/// scrubbing them would garble ordinary words. A configured secret is one
/// however short.
const MIN_URL_PART: usize = 8;

impl Secrets {
    /// Everything of `kind`'s settings that may be a credential: its URL
    /// whole, the URL's path, each path segment, tail of the path and query
    /// value long enough to be a token; keys, tokens, HMAC secrets and header values whatever
    /// their length, and the token of an `Authorization`-style value
    /// (`Bearer <token>`) alone.
    pub fn of_sink(kind: &SinkKind) -> Secrets {
        let mut s = Secrets::default();
        match kind {
            SinkKind::Stdout => {}
            SinkKind::Webhook(w) => {
                s.add_url(w.url.expose());
                if let Some(h) = &w.hmac_secret {
                    s.add(h.expose());
                }
                for (_, value) in &w.headers {
                    s.add(value.expose());
                    if let Some((_, token)) = value.expose().split_once(' ') {
                        s.add(token);
                    }
                }
            }
            SinkKind::Slack { url }
            | SinkKind::Teams { url }
            | SinkKind::Alertmanager { url, .. } => {
                s.add_url(url.expose());
            }
            SinkKind::PagerDuty { url, routing_key } => {
                s.add_url(url);
                s.add(routing_key.expose());
            }
            SinkKind::Opsgenie { url, api_key } => {
                s.add_url(url.expose());
                s.add(api_key.expose());
            }
            SinkKind::SplunkHec { url, token, .. } => {
                s.add_url(url.expose());
                s.add(token.expose());
            }
            // Credentials come from the AWS chain and never reach error
            // text; a syslog destination holds none.
            SinkKind::Sns(_) | SinkKind::EventBridge(_) | SinkKind::Syslog(_) => {}
        }
        // Longest first; equal values next to each other, so dedup
        // removes every repeat (a path tail that is also a segment).
        s.0.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        s.0.dedup();
        s
    }

    fn add(&mut self, value: &str) {
        if !value.is_empty() {
            self.0.push(value.to_owned());
        }
    }

    fn add_url(&mut self, url: &str) {
        self.add(url);
        let Ok(u) = reqwest::Url::parse(url) else {
            return;
        };
        let mut parts = vec![u.path().to_owned()];
        if let Some(q) = u.query() {
            parts.push(q.to_owned());
            // Raw and decoded, as either may be echoed.
            parts.extend(
                q.split('&')
                    .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_owned())),
            );
        }
        // Each segment, and each tail of the path (`T000/B000/XXXX` of a
        // Slack URL is echoed without the `/services/` before it).
        let segments: Vec<&str> = u.path_segments().into_iter().flatten().collect();
        for i in 0..segments.len() {
            parts.push(segments[i].to_owned());
            parts.push(segments[i..].join("/"));
        }
        parts.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
        for p in parts.into_iter().filter(|p| p.len() >= MIN_URL_PART) {
            self.0.push(p);
        }
    }

    /// `text` with every secret replaced by [`REDACTED`] and every word
    /// that looks like a URL by [`URL`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        scrub_urls(&out)
    }

    /// Exactly `values`, for tests of code that takes a sink's secrets.
    #[cfg(test)]
    pub(crate) fn of_values(values: &[&str]) -> Secrets {
        let mut s = Secrets::default();
        values.iter().for_each(|v| s.add(v));
        s
    }

    #[cfg(test)]
    fn contains(&self, value: &str) -> bool {
        self.0.iter().any(|v| v == value)
    }
}

/// `text` with every word that looks like a URL replaced by [`URL`]: for
/// error text that holds no configured secret (an AWS service's message).
pub fn scrub_urls(text: &str) -> String {
    if !text.contains("://") {
        return text.to_owned();
    }
    text.split(' ')
        .map(|word| if word.contains("://") { URL } else { word })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A URL for display: scheme and host kept, path and query (where webhook
/// URLs carry their token) hidden.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}/{REDACTED}", u.scheme(), u.host_str().unwrap_or("")),
        Err(_) => REDACTED.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhookSettings;

    fn webhook(url: &str, headers: &[(&str, &str)], hmac: Option<&str>) -> SinkKind {
        SinkKind::Webhook(WebhookSettings {
            url: Secret::new(url),
            hmac_secret: hmac.map(Secret::new),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Secret::new(*v)))
                .collect(),
            format: crate::config::PayloadFormat::default(),
        })
    }

    #[test]
    fn configured_secrets_are_kept_however_short_url_parts_only_when_long() {
        let kind = webhook(
            "https://soc.example.com/hook/v2?token=abcdefgh12345",
            &[("Authorization", "Bearer bearer7"), ("X-Key", "k3y")],
            Some("h1"),
        );
        let s = Secrets::of_sink(&kind);
        for v in [
            "k3y",
            "bearer7",
            "Bearer bearer7",
            "h1",
            "abcdefgh12345",
            "/hook/v2",
        ] {
            assert!(s.contains(v), "{v}: {s:?}");
        }
        for v in ["hook", "v2", ""] {
            assert!(!s.contains(v), "{v}");
        }
        assert!(
            s.0.windows(2).all(|w| w[0].len() >= w[1].len()),
            "longest first"
        );
    }

    #[test]
    fn scrub_replaces_secrets_then_urls() {
        let secret = "T000/B000/XXXXXXXXXXXXXXXX";
        let url = format!("https://hooks.slack.com/services/{secret}");
        let kind = SinkKind::Slack {
            url: Secret::new(url.clone()),
        };
        let text = format!("HTTP 404: no_service for {url} (key {secret})");
        let s = Secrets::of_sink(&kind).scrub(&text);
        assert_eq!(s, "HTTP 404: no_service for <redacted> (key <redacted>)");
        let other = "HTTP 404: see https://elsewhere.example.com/x for help";
        assert_eq!(
            Secrets::of_sink(&kind).scrub(other),
            "HTTP 404: see <url> for help"
        );
        let kind = SinkKind::Opsgenie {
            url: Secret::new("https://api.opsgenie.com/v2/alerts"),
            api_key: Secret::new("k3y"),
        };
        assert_eq!(
            Secrets::of_sink(&kind).scrub("bad key k3y for the tenant"),
            "bad key <redacted> for the tenant",
            "a short secret too"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        let kind = webhook("https://soc.example.com/hook?t=hunter2hunter2", &[], None);
        assert!(!format!("{:?}", Secrets::of_sink(&kind)).contains("hunter2"));
    }

    #[test]
    fn urls_shown_without_path_or_query() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/x"),
            "https://hooks.slack.com/<redacted>"
        );
        assert_eq!(redact_url("not a url"), REDACTED);
    }
}
