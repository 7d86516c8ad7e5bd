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

pub struct Replay<'a> {
    detector: &'a Detector,
    seen: DeliveredCache,
    summary: ReplaySummary,
    findings: Vec<Finding>,
    format: crate::sink::format::Payload,
}

impl<'a> Replay<'a> {
    pub fn new(detector: &'a Detector, dedup_capacity: std::num::NonZeroUsize) -> Self {
        Replay {
            detector,
            seen: DeliveredCache::new(dedup_capacity),
            summary: ReplaySummary::default(),
            findings: Vec::new(),
            format: crate::sink::format::Payload::Json,
        }
    }

    /// Writes findings in `format` (the finding JSON by default).
    pub fn with_format(mut self, format: crate::sink::format::Payload) -> Self {
        self.format = format;
        self
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
    /// with the next line.
    fn read_lines(
        &mut self,
        path: &Path,
        reader: impl Read,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        let mut io_result = Ok(());
        let stream = decode::decode_lines(reader, &mut |line, item| {
            if io_result.is_ok() {
                let location = format!("{}:{line}", path.display());
                io_result = self.item(&location, item, out, err);
            }
        });
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
        let location = path.display().to_string();
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
        location: &str,
        item: Result<Item<'_>, DecodeError>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        match item {
            Ok(Item::Record(rec)) => {
                self.summary.events += 1;
                let key = rec.event_key();
                if let Some(k) = &key
                    && self.seen.contains(k)
                {
                    self.summary.duplicates += 1;
                    return Ok(());
                }
                self.findings.clear();
                let eval = self.detector.evaluate(&rec, &mut self.findings);
                self.summary.suppressed += eval.suppressed as u64;
                for f in &self.findings {
                    self.summary.findings += 1;
                    *self
                        .summary
                        .findings_by_rule
                        .entry(f.rule.clone())
                        .or_default() += 1;
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    out.write_all(&self.format.body(f, now_ms))?;
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
