//! Dead-letter files for sources without a dead-letter queue (CloudWatch
//! Logs, files). A finding that a sink refused for good is appended as one
//! JSON line, fsynced, and only then may the source acknowledge the input
//! (move its checkpoint past it, mark the file done). The operator replays
//! or forwards the lines once the sink is fixed; nothing is lost and
//! nothing is re-sent in a loop.
//!
//! Each line:
//! `{"time", "source", "input", "sink", "reason", "status", "error", "finding"}`
//! where `reason` is `rejected` or `deadline`, `status` the HTTP status (or
//! null), `error` the sink's error text with URLs and the sink's secrets
//! removed, and `finding` the finding JSON as the webhook sink sends it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::finding::Finding;

/// One source's dead-letter file, opened on first use, appended to only.
#[derive(Debug)]
pub struct DeadLetterFile {
    path: PathBuf,
    source: String,
    file: Mutex<Option<File>>,
}

impl DeadLetterFile {
    pub fn new(path: impl Into<PathBuf>, source: &str) -> DeadLetterFile {
        DeadLetterFile {
            path: path.into(),
            source: source.to_owned(),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry and fsyncs it. Blocking: call it from a blocking
    /// thread. The line is written with one `write_all` on an append-mode
    /// file, so concurrent writers never interleave within a line.
    pub fn append(&self, entry: &Entry<'_>) -> io::Result<()> {
        let mut line = entry.to_json(&self.source);
        line.push('\n');
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let mut options = OpenOptions::new();
            options.create(true).append(true);
            // Findings carry raw CloudTrail records: readable by the owner
            // alone.
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            *guard = Some(options.open(&self.path)?);
        }
        let file = guard.as_mut().expect("opened above");
        let result = file
            .write_all(line.as_bytes())
            .and_then(|_| file.sync_data());
        if result.is_err() {
            // Reopen next time: the descriptor may be the problem (a file
            // rotated away, a full disk since cleared).
            *guard = None;
        }
        result
    }
}

/// Where a unit's undeliverable findings go, and which failures go there.
#[derive(Debug, Clone)]
pub struct Target {
    pub file: Arc<DeadLetterFile>,
    /// What the input is called in the entry (a log event id, a file path).
    pub input: Arc<str>,
    /// Whether a delivery that ran out of retry time is dead-lettered too,
    /// or only a rejection. A source that still retries the input itself
    /// says false until its last attempt.
    pub deadline_too: bool,
}

impl Target {
    /// Whether a delivery that failed for `reason` is written here instead
    /// of failing the unit.
    pub fn takes(&self, reason: &str) -> bool {
        reason == "rejected" || (self.deadline_too && reason == "deadline")
    }
}

/// One undeliverable finding.
#[derive(Debug)]
pub struct Entry<'a> {
    pub input: &'a str,
    pub sink: &'a str,
    pub reason: &'static str,
    pub status: Option<u16>,
    /// Already scrubbed of URLs and secrets.
    pub error: &'a str,
    pub finding: &'a Finding,
}

impl Entry<'_> {
    fn to_json(&self, source: &str) -> String {
        let finding: serde_json::Value =
            serde_json::from_str(&self.finding.to_json()).expect("a finding's JSON parses back");
        serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "source": source,
            "input": self.input,
            "sink": self.sink,
            "reason": self.reason,
            "status": self.status,
            "error": self.error,
            "finding": finding,
        })
        .to_string()
    }
}

/// Removes what must never be written down from a sink's error text: every
/// `secret` (the sink's URL, keys, header values) and anything that looks
/// like a URL (a receiver's error page may echo its own address).
pub fn scrub(error: &str, secrets: &[&str]) -> String {
    let mut text = error.to_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s, "[redacted]");
    }
    text.split(' ')
        .map(|word| if word.contains("://") { "[url]" } else { word })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Record;
    use crate::finding::Severity;

    fn finding() -> Finding {
        let raw = r#"{"userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"eventName":"DeleteUser","sourceIPAddress":"203.0.113.9","eventTime":"2024-05-01T12:00:00Z","eventID":"dl-1","recipientAccountId":"111122223333"}"#;
        let rec = Record::parse(raw).unwrap();
        Finding::new(
            &rec,
            "root-api-call",
            "Root user API call",
            Severity::High,
            "r".into(),
            None,
        )
    }

    #[test]
    fn entries_are_fsynced_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let f = DeadLetterFile::new(&path, "trail-logs");
        let finding = finding();
        for status in [Some(400), None] {
            f.append(&Entry {
                input: "event-1",
                sink: "slack",
                reason: "rejected",
                status,
                error: "HTTP 400: invalid_payload",
                finding: &finding,
            })
            .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["source"], "trail-logs");
        assert_eq!(lines[0]["input"], "event-1");
        assert_eq!(lines[0]["sink"], "slack");
        assert_eq!(lines[0]["status"], 400);
        assert_eq!(lines[1]["status"], serde_json::Value::Null);
        assert_eq!(lines[0]["error"], "HTTP 400: invalid_payload");
        assert_eq!(
            lines[0]["finding"]["finding_id"],
            finding.finding_id.as_str()
        );
        assert_eq!(lines[0]["finding"]["event_id"], "dl-1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
    }

    #[test]
    fn an_unwritable_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = DeadLetterFile::new(dir.path().join("missing/dead.jsonl"), "s");
        let finding = finding();
        let e = Entry {
            input: "i",
            sink: "s",
            reason: "rejected",
            status: None,
            error: "",
            finding: &finding,
        };
        assert!(f.append(&e).is_err());
    }

    #[test]
    fn targets_take_rejections_and_deadlines_only_when_told() {
        let file = Arc::new(DeadLetterFile::new("x", "s"));
        let mut t = Target {
            file,
            input: "i".into(),
            deadline_too: false,
        };
        assert!(t.takes("rejected"));
        assert!(!t.takes("deadline"));
        assert!(!t.takes("shutdown"));
        t.deadline_too = true;
        assert!(t.takes("deadline"));
        assert!(!t.takes("shutdown"));
    }

    #[test]
    fn scrub_removes_urls_and_secrets() {
        let secret = "T000/B000/XXXXXXXXXXXXXXXX";
        let text = format!(
            "HTTP 404: no_service for https://hooks.slack.com/services/{secret} (key {secret})"
        );
        let s = scrub(&text, &[secret]);
        assert!(!s.contains(secret) && !s.contains("hooks.slack.com"), "{s}");
        assert!(s.starts_with("HTTP 404: no_service for [url]"), "{s}");
        let s = scrub("bad key k3y for the tenant", &["k3y"]);
        assert_eq!(s, "bad key [redacted] for the tenant", "a short secret too");
    }
}
