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
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::finding::Finding;

/// Bytes one dead-letter file may hold before it is rotated (to `PATH.1`,
/// `PATH.1` to `PATH.2`, ...), and rotated files kept. A sink that refuses
/// everything for days fills at most `(ROTATED + 1) × MAX_BYTES` of disk;
/// past that a write fails, and the input stays unacknowledged, rather
/// than an undelivered alert being deleted.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const ROTATED: u32 = 3;

/// One source's dead-letter file, opened on first use, appended to only,
/// rotated by size.
#[derive(Debug)]
pub struct DeadLetterFile {
    path: PathBuf,
    source: String,
    max_bytes: u64,
    rotated: u32,
    file: Mutex<Option<Open>>,
}

/// The open file, its size, and the bytes of the rotated files (read when
/// the file is opened, which each rotation does again).
#[derive(Debug)]
struct Open {
    file: File,
    size: u64,
    rotated_bytes: u64,
}

impl DeadLetterFile {
    pub fn new(path: impl Into<PathBuf>, source: &str) -> DeadLetterFile {
        Self::with_limits(path, source, MAX_BYTES, ROTATED)
    }

    pub fn with_limits(
        path: impl Into<PathBuf>,
        source: &str,
        max_bytes: u64,
        rotated: u32,
    ) -> DeadLetterFile {
        DeadLetterFile {
            path: path.into(),
            source: source.to_owned(),
            max_bytes,
            rotated,
            file: Mutex::new(None),
        }
    }

    fn rotated_path(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn open(&self) -> io::Result<Open> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        // Findings carry raw CloudTrail records: readable by the owner
        // alone.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&self.path)?;
        let size = file.metadata()?.len();
        let rotated_bytes = (1..=self.rotated)
            .filter_map(|n| std::fs::metadata(self.rotated_path(n)).ok())
            .map(|m| m.len())
            .sum();
        Ok(Open {
            file,
            size,
            rotated_bytes,
        })
    }

    /// Moves the full file aside (`PATH` to `PATH.1`, each older one up by
    /// one); refuses when the oldest place is taken.
    fn rotate(&self) -> io::Result<()> {
        if self.rotated == 0 || self.rotated_path(self.rotated).exists() {
            return Err(io::Error::other(format!(
                "the dead-letter file {} and its {} rotated files are full ({} bytes each): move the rotated files away once their alerts are handled",
                self.path.display(),
                self.rotated,
                self.max_bytes
            )));
        }
        for n in (1..self.rotated).rev() {
            let from = self.rotated_path(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated_path(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated_path(1))?;
        #[cfg(unix)]
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        crate::telemetry::dead_letter_rotated(&self.source, &self.path);
        Ok(())
    }

    /// Appends one entry and fsyncs it. Blocking: call it from a blocking
    /// thread. The line is written with one `write_all` on an append-mode
    /// file, so concurrent writers never interleave within a line.
    pub fn append(&self, entry: &Entry<'_>) -> io::Result<()> {
        self.append_line(entry.to_json(&self.source))
    }

    fn append_line(&self, mut line: String) -> io::Result<()> {
        line.push('\n');
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let size = guard.as_ref().expect("opened above").size;
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            *guard = None;
            self.rotate()?;
            *guard = Some(self.open()?);
        }
        let open = guard.as_mut().expect("opened above");
        let result = open
            .file
            .write_all(line.as_bytes())
            .and_then(|_| open.file.sync_data());
        match result {
            Ok(()) => {
                open.size += line.len() as u64;
                crate::telemetry::dead_letter_bytes(&self.source, open.size + open.rotated_bytes);
            }
            // Reopen next time: the descriptor may be the problem (a file
            // moved away, a full disk since cleared).
            Err(_) => *guard = None,
        }
        result
    }
}

/// SQS takes at most 256 KiB in one message body (SendMessage API
/// reference).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A dead-letter SQS queue in rootwatch's own account: stateless
/// deployments (shared DynamoDB checkpoints, Fargate tasks) need no volume.
pub struct DeadLetterQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    source: String,
}

impl std::fmt::Debug for DeadLetterQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterQueue")
            .field("url", &self.url)
            .finish()
    }
}

impl DeadLetterQueue {
    pub fn new(aws: &aws_config::SdkConfig, url: &str, source: &str) -> Self {
        DeadLetterQueue {
            client: aws_sdk_sqs::Client::new(aws),
            url: url.to_owned(),
            source: source.to_owned(),
        }
    }

    /// Sends one entry as one message. An entry over SQS's size limit goes
    /// without the finding's raw `event` (`event_omitted` says so; the
    /// `input` names where to read it again).
    async fn send(&self, entry: &Entry<'_>) -> io::Result<()> {
        let mut body = entry.to_json(&self.source);
        if body.len() > MAX_MESSAGE_BYTES {
            let mut v: serde_json::Value =
                serde_json::from_str(&body).expect("an entry's JSON parses back");
            v["finding"]["event"] = serde_json::Value::Null;
            v["event_omitted"] =
                "the entry was over SQS's 256 KiB message limit; read the event again from `input`"
                    .into();
            body = v.to_string();
        }
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| io::Error::other(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))
    }
}

/// Where a source's undeliverable findings are written.
#[derive(Debug)]
pub enum DeadLetterStore {
    /// Shared with the blocking thread each append runs on.
    File(Arc<DeadLetterFile>),
    Queue(DeadLetterQueue),
}

impl DeadLetterStore {
    pub fn file(f: DeadLetterFile) -> Self {
        DeadLetterStore::File(Arc::new(f))
    }

    /// Writes one entry durably: fsynced to the file, or taken by SQS.
    pub async fn write(&self, entry: &Entry<'_>) -> io::Result<()> {
        match self {
            DeadLetterStore::File(f) => {
                let (f, line) = (Arc::clone(f), entry.to_json(&f.source));
                tokio::task::spawn_blocking(move || f.append_line(line))
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))?
            }
            DeadLetterStore::Queue(q) => q.send(entry).await,
        }
    }

    /// The file's path or the queue's URL, for logs.
    pub fn describe(&self) -> String {
        match self {
            DeadLetterStore::File(f) => f.path.display().to_string(),
            DeadLetterStore::Queue(q) => q.url.clone(),
        }
    }
}

/// Where a unit's undeliverable findings go, and which failures go there.
#[derive(Debug, Clone)]
pub struct Target {
    pub store: Arc<DeadLetterStore>,
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
    fn full_files_rotate_and_a_full_set_refuses_rather_than_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let finding = finding();
        let entry = Entry {
            input: "event-1",
            sink: "slack",
            reason: "rejected",
            status: Some(400),
            error: "HTTP 400",
            finding: &finding,
        };
        let one = entry.to_json("s").len() as u64 + 1;
        // Two lines a file, two rotated files: six lines, then a refusal.
        let f = DeadLetterFile::with_limits(&path, "s", 2 * one + 10, 2);
        for _ in 0..6 {
            f.append(&entry).unwrap();
        }
        let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!(lines(&path), 2);
        assert_eq!(lines(&dir.path().join("dead.jsonl.1")), 2);
        assert_eq!(lines(&dir.path().join("dead.jsonl.2")), 2);
        let e = f.append(&entry).unwrap_err();
        assert!(e.to_string().contains("rotated files are full"), "{e}");
        assert_eq!(lines(&path), 2, "nothing deleted, nothing written");
        // Once the operator moves the oldest away, writing goes on.
        std::fs::remove_file(dir.path().join("dead.jsonl.2")).unwrap();
        f.append(&entry).unwrap();
        assert_eq!(lines(&path), 1);
        assert_eq!(lines(&dir.path().join("dead.jsonl.2")), 2);
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
        let store = Arc::new(DeadLetterStore::file(DeadLetterFile::new("x", "s")));
        let mut t = Target {
            store,
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
}
