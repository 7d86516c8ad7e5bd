//! `rootwatch replay`: offline detection over files. Findings go to stdout
//! as JSON lines, a summary to stderr. Reads `.json`, `.jsonl` and their
//! `.gz` forms (gzip is detected by content), directories recursively, and
//! `-` for standard input.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::decode::{self, DecodeError, Item};
use crate::dedup::DeliveredCache;
use crate::detect::Detector;
use crate::finding::Finding;
use crate::source::file::{Layout, collect_files};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    pub files: u64,
    pub events: u64,
    pub findings: u64,
    pub findings_by_rule: BTreeMap<String, u64>,
    pub duplicates: u64,
    pub suppressed: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    /// S3 objects named by notifications; replay is offline and does not fetch them.
    pub object_refs: u64,
    pub decode_errors: BTreeMap<&'static str, u64>,
    pub unreadable_files: u64,
}

impl ReplaySummary {
    pub fn had_errors(&self) -> bool {
        self.unreadable_files > 0 || !self.decode_errors.is_empty()
    }

    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        let errors: u64 = self.decode_errors.values().sum();
        writeln!(
            w,
            "replay: {} file(s), {} event(s), {} finding(s), {} duplicate(s), {} suppressed, {} decode error(s)",
            self.files, self.events, self.findings, self.duplicates, self.suppressed, errors
        )?;
        for (rule, n) in &self.findings_by_rule {
            writeln!(w, "  findings  {rule:<32} {n}")?;
        }
        for (kind, n) in &self.decode_errors {
            writeln!(w, "  errors    {kind:<32} {n}")?;
        }
        for (kind, n) in &self.skipped {
            writeln!(w, "  skipped   {kind:<32} {n}")?;
        }
        if self.object_refs > 0 {
            writeln!(
                w,
                "  {} S3 object reference(s) not fetched: replay reads local files only",
                self.object_refs
            )?;
        }
        if self.unreadable_files > 0 {
            writeln!(w, "  {} path(s) could not be read", self.unreadable_files)?;
        }
        Ok(())
    }
}

/// Where an item came from, formatted only when a message names it.
enum Location<'p> {
    File(&'p Path),
    Line(&'p Path, u64),
}

impl std::fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Line(p, n) => write!(f, "{}:{n}", p.display()),
        }
    }
}

pub struct Replay<'a> {
    detector: &'a Detector,
    seen: DeliveredCache,
    summary: ReplaySummary,
    findings: Vec<Finding>,
}

impl<'a> Replay<'a> {
    pub fn new(detector: &'a Detector, dedup_capacity: std::num::NonZeroUsize) -> Self {
        Replay {
            detector,
            seen: DeliveredCache::new(dedup_capacity),
            summary: ReplaySummary::default(),
            findings: Vec::new(),
        }
    }

    pub fn finish(self) -> ReplaySummary {
        self.summary
    }

    /// Replays each path: a file, a directory (its input files, recursively,
    /// in name order) or `-` for standard input.
    pub fn run(
        &mut self,
        paths: &[PathBuf],
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        for path in paths {
            if path.as_os_str() == "-" {
                self.summary.files += 1;
                let stdin = io::stdin();
                self.read_documents(Path::new("-"), stdin.lock(), out, err)?;
            } else if path.is_dir() {
                let mut files = Vec::new();
                collect_files(path, &mut files)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                files.sort();
                for f in files {
                    self.file(&f, out, err)?;
                }
            } else {
                self.file(path, out, err)?;
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
        self.summary.files += 1;
        match File::open(path) {
            Ok(f) => match Layout::of(path) {
                Layout::Lines => self.read_lines(path, f, out, err),
                Layout::Documents => self.read_documents(path, f, out, err),
            },
            Err(e) => {
                self.summary.unreadable_files += 1;
                writeln!(err, "{}: cannot read: {e}", path.display())
            }
        }
    }

    /// One body per line: an error names its line, and reading goes on
    /// with the next line. A line holding one record that the detector's
    /// prefilter proves silent is counted, not parsed.
    fn read_lines(
        &mut self,
        path: &Path,
        reader: impl Read,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        let mut io_result = Ok(());
        let detector = self.detector;
        let mut unparsed = 0;
        let stream = decode::decode_lines_filtered(
            reader,
            &|line| detector.may_alert(line),
            &mut |line, item| {
                if io_result.is_ok() {
                    let location = Location::Line(path, line);
                    io_result = self.item(&location, item, out, err);
                }
            },
            &mut |_| unparsed += 1,
        );
        self.summary.events += unparsed;
        io_result?;
        if let Err(e) = stream {
            self.count_error(&e);
            writeln!(err, "{}: {e}", path.display())?;
        }
        Ok(())
    }

    fn read_documents(
        &mut self,
        path: &Path,
        reader: impl Read,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        let location = Location::File(path);
        let mut io_result = Ok(());
        let stream = decode::decode_reader(reader, &mut |item| {
            if io_result.is_ok() {
                io_result = self.item(&location, item, out, err);
            }
        });
        io_result?;
        if let Err(e) = stream {
            self.count_error(&e);
            writeln!(err, "{location}: {e}")?;
        }
        Ok(())
    }

    fn count_error(&mut self, e: &DecodeError) {
        *self.summary.decode_errors.entry(e.kind()).or_default() += 1;
    }

    fn item(
        &mut self,
        location: &Location<'_>,
        item: Result<Item<'_>, DecodeError>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        match item {
            Ok(Item::Record(rec)) => {
                self.summary.events += 1;
                self.findings.clear();
                let eval = self.detector.evaluate(&rec, &mut self.findings);
                // As in `run` (DESIGN section 4): only an event that alerted
                // enters the cache, so a copy of it alerts no more, while a
                // silent event's key stops nothing. Replay therefore need not
                // parse the events its prefilter proves silent.
                let key = match self.findings.is_empty() {
                    true => None,
                    false => rec.event_key(),
                };
                if let Some(k) = &key
                    && self.seen.contains(k)
                {
                    self.summary.duplicates += 1;
                    return Ok(());
                }
                self.summary.suppressed += eval.suppressed as u64;
                for f in &self.findings {
                    self.summary.findings += 1;
                    *self
                        .summary
                        .findings_by_rule
                        .entry(f.rule.clone())
                        .or_default() += 1;
                    serde_json::to_writer(&mut *out, f)?;
                    out.write_all(b"\n")?;
                }
                if let Some(k) = key {
                    self.seen.insert(k);
                }
            }
            Ok(Item::Object(obj)) => {
                self.summary.object_refs += 1;
                writeln!(
                    err,
                    "{location}: names {obj}; not fetched (replay reads local files only)"
                )?;
            }
            Ok(Item::Skipped(s)) => *self.summary.skipped.entry(s.as_str()).or_default() += 1,
            Err(e) => {
                self.count_error(&e);
                writeln!(err, "{location}: {e}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{
        AllowList, CidrSet, Context, DetectSettings, Scope, allowlist::parse_cidr,
    };

    const ROOT_CALL: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"eventTime":"2024-05-01T12:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","sourceIPAddress":"203.0.113.9","eventID":"0b6e4a3c-0000-4000-8000-000000000001","eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#;

    fn detector() -> Detector {
        Detector::new(DetectSettings {
            context: Context {
                allowlist: AllowList {
                    cidrs: CidrSet::new([parse_cidr("203.0.113.0/24").unwrap()]),
                    scope: Scope::All,
                },
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn replay(d: &Detector, name: &str, text: &str) -> (ReplaySummary, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let mut r = Replay::new(d, std::num::NonZeroUsize::new(100).unwrap());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        r.run(&[path], &mut out, &mut err).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        (r.finish(), lines)
    }

    /// As in `run`, only an event that alerted enters the dedup cache: a
    /// silent event with the same key (a malformed eventID shared by an
    /// IAM user's call and a root call) must not hide the root call.
    #[test]
    fn a_silent_event_does_not_hide_an_alerting_one_with_its_key() {
        let silent = ROOT_CALL.replace(r#""type":"Root""#, r#""type":"IAMUser""#);
        let d = detector();
        let (summary, findings) = replay(
            &d,
            // A log file: parsed in full, whatever the prefilter says.
            "a.json",
            &format!(r#"{{"Records":[{silent},{ROOT_CALL},{ROOT_CALL}]}}"#),
        );
        assert_eq!(summary.events, 3);
        assert_eq!(summary.duplicates, 1, "the second root call is a copy");
        assert_eq!(summary.findings_by_rule["root-api-call"], 1, "{findings:?}");
    }

    /// Lines the prefilter proves silent are counted, not parsed; the
    /// findings and counts equal those of the same records in a log file,
    /// which is always parsed in full.
    #[test]
    fn prefiltered_lines_count_as_events_with_the_same_findings() {
        let outside = ROOT_CALL
            .replace(r#""type":"Root""#, r#""type":"AssumedRole""#)
            .replace("203.0.113.9", "198.51.100.1")
            .replace("0001", "0002");
        let inside = outside
            .replace("198.51.100.1", "203.0.113.7")
            .replace("0002", "0003");
        let service = inside
            .replace("203.0.113.7", "AWS Internal")
            .replace("0003", "0004");
        let records = [ROOT_CALL, &outside, &inside, &service];
        let d = detector();
        assert!(!d.may_alert(inside.as_bytes()) && !d.may_alert(service.as_bytes()));
        let (lines, lines_found) = replay(&d, "a.jsonl", &(records.join("\n") + "\n"));
        let (file, file_found) = replay(
            &d,
            "a.json",
            &format!(r#"{{"Records":[{}]}}"#, records.join(",")),
        );
        assert_eq!(lines.events, 4);
        assert_eq!(lines, file);
        assert_eq!(lines_found, file_found);
        assert_eq!(lines.findings_by_rule["source-ip-not-allowed"], 1);
    }
}
