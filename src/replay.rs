//! `rootwatch replay`: offline detection over files. Findings go to stdout
//! as JSON lines, a summary to stderr. Reads `.json`, `.jsonl` and their
//! `.gz` forms (gzip is detected by content), directories recursively, and
//! `-` for standard input.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use crate::decode::{self, DecodeError, Item, ObjectRef, Skip};
use crate::dedup::DeliveredCache;
use crate::detect::Detector;
use crate::event::EventKey;
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

/// The bytes of JSON lines handed to one worker: whole lines of one file.
const CHUNK_BYTES: usize = 1 << 20;

/// A piece of work, cut by the reader in input order.
enum Work {
    /// Whole lines of a JSON-lines file, the next ones after the file's
    /// previous unit (inflated by the reader: gzip cannot be split).
    Lines { path: Arc<Path>, bytes: Vec<u8> },
    /// The lines of an uncompressed JSON-lines file that start in bytes
    /// `start..end`, read by the worker itself, so reading spreads over
    /// every core too.
    Range {
        path: Arc<Path>,
        file: Arc<File>,
        start: u64,
        end: u64,
    },
    /// A file of JSON documents, read whole by one worker.
    Documents(Arc<Path>),
    /// Standard input, read as JSON documents.
    Stdin,
    /// A file ends: how its stream ended, and whether it could be opened.
    End {
        path: Arc<Path>,
        stream: Option<DecodeError>,
        unreadable: Option<io::Error>,
    },
}

/// What one item comes to before dedup and output; computed on any thread.
enum Assessed {
    Record {
        findings: Vec<Finding>,
        key: Option<EventKey>,
        suppressed: usize,
    },
    Object(ObjectRef),
    Skipped(Skip),
    Error(DecodeError),
}

/// The items of one unit, with line numbers counted from its first line.
/// Errors and object references past the first [`decode::MAX_KEPT_ERRORS`]
/// of each are only counted: a small file can hold millions of either,
/// and each listed one is held until its unit is applied.
#[derive(Default)]
struct Items {
    list: Vec<(Option<u64>, Assessed)>,
    errors: usize,
    objects: usize,
    unlisted: Unlisted,
}

/// Errors and object references counted but not listed one by one.
#[derive(Default)]
struct Unlisted {
    errors: BTreeMap<&'static str, u64>,
    objects: u64,
}

impl Unlisted {
    fn add(&mut self, other: Unlisted) {
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.objects += other.objects;
    }
}

impl Items {
    fn push(&mut self, line: Option<u64>, what: Assessed) {
        const MAX: usize = decode::MAX_KEPT_ERRORS;
        match &what {
            Assessed::Error(e) if self.errors >= MAX => {
                *self.unlisted.errors.entry(e.kind()).or_default() += 1;
                return;
            }
            Assessed::Object(_) if self.objects >= MAX => {
                self.unlisted.objects += 1;
                return;
            }
            Assessed::Error(_) => self.errors += 1,
            Assessed::Object(_) => self.objects += 1,
            _ => {}
        }
        self.list.push((line, what));
    }
}

/// What a worker made of one unit, applied to the summary and the output
/// in input order.
struct Done {
    path: Arc<Path>,
    items: Items,
    /// Lines in the unit, so the next unit's numbers follow on.
    lines: u64,
    /// Lines the prefilter proved silent: counted, not parsed.
    unparsed: u64,
    /// The end of a file, with how it ended.
    end: Option<(Option<DecodeError>, Option<io::Error>)>,
}

fn assess(detector: &Detector, item: Result<Item<'_>, DecodeError>) -> Assessed {
    match item {
        Ok(Item::Record(rec)) => {
            let mut findings = Vec::new();
            let eval = detector.evaluate(&rec, &mut findings);
            // As in `run` (docs/outputs.md, "Duplicates"): only an event that alerted
            // enters the dedup cache, so a copy of it alerts no more, while
            // a silent event's key stops nothing. Replay therefore need not
            // parse the events its prefilter proves silent.
            let key = if findings.is_empty() {
                None
            } else {
                rec.event_key()
            };
            Assessed::Record {
                findings,
                key,
                suppressed: eval.suppressed,
            }
        }
        Ok(Item::Object(o)) => Assessed::Object(o),
        Ok(Item::Skipped(s)) => Assessed::Skipped(s),
        // Counted by the caller without an item; one that gets here is
        // still a record without findings.
        Ok(Item::Unparsed(_)) => Assessed::Record {
            findings: Vec::new(),
            key: None,
            suppressed: 0,
        },
        Err(e) => Assessed::Error(e),
    }
}

/// Decodes and assesses a stream of JSON documents; records the prefilter
/// proves silent are only counted. How the stream ended, if not well.
fn documents(
    detector: &Detector,
    reader: impl io::Read,
    items: &mut Items,
    unparsed: &mut u64,
) -> Option<DecodeError> {
    decode::decode_reader_filtered(reader, &|record| detector.may_alert(record), &mut |item| {
        match item {
            Ok(Item::Unparsed(_)) => *unparsed += 1,
            item => items.push(None, assess(detector, item)),
        }
    })
    .err()
}

/// Decodes and assesses one unit. Pure but for reading the files it names.
/// `buf` is the calling thread's, kept from unit to unit: a fresh buffer
/// for every megabyte read costs page faults and zeroing in the kernel.
fn work(detector: &Detector, unit: Work, buf: &mut Vec<u8>) -> Done {
    let mut items = Items::default();
    let mut unparsed = 0;
    let mut lines = 0;
    let mut decode = |bytes: &[u8], items: &mut Items| {
        let stream = decode::decode_plain_lines_filtered(
            bytes,
            &|line| detector.may_alert(line),
            &mut |line, item| items.push(Some(line), assess(detector, item)),
            &mut |_| unparsed += 1,
        );
        match stream {
            Ok(n) => lines = n,
            Err(e) => items.push(None, Assessed::Error(e)),
        }
    };
    let path = match unit {
        Work::Lines { path, bytes } => {
            decode(&bytes, &mut items);
            path
        }
        Work::Range {
            path,
            file,
            start,
            end,
        } => {
            match read_range(&file, start, end, buf) {
                Ok(from) => decode(&buf[from..], &mut items),
                Err(e) => items.push(None, Assessed::Error(e.into())),
            }
            path
        }
        Work::Documents(path) => {
            let end = match File::open(&path) {
                Ok(f) => (documents(detector, f, &mut items, &mut unparsed), None),
                Err(e) => (None, Some(e)),
            };
            return Done {
                path,
                items,
                lines,
                unparsed,
                end: Some(end),
            };
        }
        Work::Stdin => {
            let stream = documents(detector, io::stdin().lock(), &mut items, &mut unparsed);
            return Done {
                path: Arc::from(Path::new("-")),
                items,
                lines,
                unparsed,
                end: Some((stream, None)),
            };
        }
        Work::End {
            path,
            stream,
            unreadable,
        } => {
            return Done {
                path,
                items,
                lines,
                unparsed,
                end: Some((stream, unreadable)),
            };
        }
    };
    Done {
        path,
        items,
        lines,
        unparsed,
        end: None,
    }
}

/// Cuts the inputs into units, in order. JSON-lines files (plain or gzip)
/// become chunks of whole lines, so one big file spreads over every core;
/// other files are one unit each.
fn produce(paths: &[PathBuf], emit: &mut dyn FnMut(Work) -> bool) -> io::Result<()> {
    for path in paths {
        let go_on = if path.as_os_str() == "-" {
            emit(Work::Stdin)
        } else if path.is_dir() {
            let mut files = Vec::new();
            collect_files(path, &mut files)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            files.sort();
            files.iter().all(|f| produce_file(f, emit))
        } else {
            produce_file(path, emit)
        };
        if !go_on {
            break;
        }
    }
    Ok(())
}

/// False when the receiver is gone.
fn produce_file(file: &Path, emit: &mut dyn FnMut(Work) -> bool) -> bool {
    let path: Arc<Path> = Arc::from(file);
    match Layout::of(file) {
        Layout::Documents => emit(Work::Documents(path)),
        Layout::Lines => match File::open(file).and_then(|f| Ok((is_gzip(&f)?, f))) {
            Ok((true, f)) => chunk_lines(path, f, emit),
            Ok((false, f)) => split_lines(path, f, emit),
            Err(e) => emit(Work::End {
                path,
                stream: None,
                unreadable: Some(e),
            }),
        },
    }
}

fn is_gzip(file: &File) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 2];
    let n = file.read_at(&mut magic, 0)?;
    Ok(n == 2 && magic == decode::GZIP_MAGIC)
}

/// Emits an uncompressed file as ranges of `CHUNK_BYTES`, then its end.
fn split_lines(path: Arc<Path>, file: File, emit: &mut dyn FnMut(Work) -> bool) -> bool {
    let len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            return emit(Work::End {
                path,
                stream: Some(e.into()),
                unreadable: None,
            });
        }
    };
    let file = Arc::new(file);
    let mut start = 0;
    while start < len {
        let end = len.min(start + CHUNK_BYTES as u64);
        if !emit(Work::Range {
            path: Arc::clone(&path),
            file: Arc::clone(&file),
            start,
            end,
        }) {
            return false;
        }
        start = end;
    }
    emit(Work::End {
        path,
        stream: None,
        unreadable: None,
    })
}

/// Reads into `buf` the lines that start in bytes `start..end` of `file`
/// (a line starts at 0 and after each newline), the last one to its end
/// even past `end`; returns where the first of them begins in `buf`. A
/// line longer than the decoder takes is cut there and ended with a
/// newline, so the decoder reports it as too long; the ranges after it
/// start at the next line of their own.
fn read_range(file: &File, start: u64, end: u64, buf: &mut Vec<u8>) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    // Read from `start` itself (a multiple of the page size): the kernel
    // copied out of the page cache at about a third of the speed from the
    // byte before it (`replay --jobs 1`: 0.18 s of system time against
    // 0.06 s on 302 MB).
    buf.clear();
    buf.reserve(CHUNK_BYTES + 64 * 1024);
    buf.resize((end - start) as usize, 0);
    let got = read_full_at(file, buf, start)?;
    buf.truncate(got);
    // A line starts at `start` if the byte before it ends one.
    let mut before = [b'\n'];
    if start > 0 && read_full_at(file, &mut before, start - 1)? == 0 {
        return Ok(buf.len());
    }
    let first = if before[0] == b'\n' {
        0
    } else {
        match memchr::memchr(b'\n', buf) {
            Some(i) => i + 1,
            None => return Ok(buf.len()),
        }
    };
    if first >= buf.len() || buf.last() == Some(&b'\n') || got < (end - start) as usize {
        return Ok(first);
    }
    // The last line goes on past `end`: read on to its newline.
    let line_start = memchr::memrchr(b'\n', &buf[first..]).map_or(first, |i| first + i + 1);
    let mut at = start + buf.len() as u64;
    let mut piece = [0u8; 64 * 1024];
    loop {
        let n = match file.read_at(&mut piece, at) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(first);
        }
        let piece = &piece[..n];
        let room = (decode::MAX_LINE_BYTES + 1).saturating_sub(buf.len() - line_start);
        if let Some(i) = memchr::memchr(b'\n', piece)
            && i < room
        {
            buf.extend_from_slice(&piece[..=i]);
            return Ok(first);
        }
        if n >= room {
            // Too long: cut it one byte past the limit and end it there.
            buf.extend_from_slice(&piece[..room]);
            buf.push(b'\n');
            return Ok(first);
        }
        buf.extend_from_slice(piece);
        at += n as u64;
    }
}

/// `read_at` until `buf` is full or the file ends; the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Emits the lines of `reader` in chunks of whole lines, then the file's
/// end. A line longer than the decoder takes is left whole in one chunk
/// (the decoder reports it); false when the receiver is gone.
fn chunk_lines(path: Arc<Path>, reader: File, emit: &mut dyn FnMut(Work) -> bool) -> bool {
    let mut reader = match decode::maybe_gunzip(reader) {
        Ok(r) => r,
        Err(e) => {
            return emit(Work::End {
                path,
                stream: Some(e.into()),
                unreadable: None,
            });
        }
    };
    loop {
        let mut bytes = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
        let mut stream = None;
        let full = loop {
            match io::Read::by_ref(&mut reader)
                .take((CHUNK_BYTES - bytes.len().min(CHUNK_BYTES)) as u64 + 1)
                .read_to_end(&mut bytes)
            {
                Ok(0) => break false,
                Ok(_) if bytes.len() > CHUNK_BYTES => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    stream = Some(e.into());
                    break false;
                }
            }
        };
        let mut cut_short = false;
        if full && stream.is_none() && bytes.last() != Some(&b'\n') {
            // Finish the last line, up to the longest line the decoder
            // reads; a longer one is cut there (the decoder reports it as
            // too long) and its rest skipped.
            let start = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let limit = (decode::MAX_LINE_BYTES + 1 - (bytes.len() - start)) as u64;
            let read = io::BufRead::read_until(
                &mut io::Read::by_ref(&mut reader).take(limit),
                b'\n',
                &mut bytes,
            );
            match read {
                Err(e) => stream = Some(e.into()),
                Ok(_)
                    if bytes.last() != Some(&b'\n')
                        && bytes.len() - start > decode::MAX_LINE_BYTES =>
                {
                    cut_short = true;
                    if let Err(e) = io::BufRead::skip_until(&mut reader, b'\n') {
                        stream = Some(e.into());
                    }
                }
                Ok(_) => {}
            }
        }
        let done = !full || stream.is_some();
        if cut_short {
            // The cut line must end its chunk as a line of its own.
            bytes.push(b'\n');
        }
        if !bytes.is_empty()
            && !emit(Work::Lines {
                path: Arc::clone(&path),
                bytes,
            })
        {
            return false;
        }
        if done {
            return emit(Work::End {
                path,
                stream,
                unreadable: None,
            });
        }
    }
}

pub struct Replay<'a> {
    detector: &'a Detector,
    seen: DeliveredCache,
    summary: ReplaySummary,
    format: crate::sink::format::PayloadFormat,
    jobs: usize,
    /// Lines of the current file in the units applied so far: units are
    /// cut without counting lines (the decoder counts them anyway).
    lines_before: u64,
    /// Errors and object references of the current file listed so far,
    /// and those past [`decode::MAX_KEPT_ERRORS`] only counted.
    listed_errors: usize,
    listed_objects: usize,
    unlisted: Unlisted,
    /// One finding's output line, kept from one finding to the next.
    line: Vec<u8>,
}

impl<'a> Replay<'a> {
    pub fn new(detector: &'a Detector, dedup_capacity: std::num::NonZeroUsize) -> Self {
        Replay {
            detector,
            seen: DeliveredCache::new(dedup_capacity),
            summary: ReplaySummary::default(),
            format: crate::sink::format::PayloadFormat::Json,
            jobs: 1,
            lines_before: 0,
            listed_errors: 0,
            listed_objects: 0,
            unlisted: Unlisted::default(),
            line: Vec::new(),
        }
    }

    /// Writes findings in `format` (the finding JSON by default).
    pub fn with_format(mut self, format: crate::sink::format::PayloadFormat) -> Self {
        self.format = format;
        self
    }

    /// Decodes and runs the rules on `jobs` threads. Output and summary do
    /// not depend on it: work is applied in input order. With Sigma
    /// correlations loaded, one thread: a correlation counts events in the
    /// order they come.
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        let stateful = self.detector.sigma().is_some_and(|s| s.has_correlations());
        self.jobs = if stateful { 1 } else { jobs.max(1) };
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
        if self.jobs == 1 {
            let detector = self.detector;
            let mut result = Ok(());
            let mut buf = Vec::new();
            produce(paths, &mut |unit| {
                result = self.apply(work(detector, unit, &mut buf), out, err);
                result.is_ok()
            })?;
            return result;
        }
        self.run_parallel(paths, out, err)
    }

    fn run_parallel(
        &mut self,
        paths: &[PathBuf],
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        let detector = self.detector;
        let jobs = self.jobs;
        std::thread::scope(|scope| {
            // Bounded: the reader stays at most a few chunks ahead.
            let (unit_tx, unit_rx) = mpsc::sync_channel::<(u64, Work)>(jobs * 2);
            let unit_rx = Arc::new(Mutex::new(unit_rx));
            let (done_tx, done_rx) = mpsc::channel::<(u64, Done)>();
            let producer = scope.spawn(move || {
                let mut seq = 0;
                produce(paths, &mut |unit| {
                    seq += 1;
                    unit_tx.send((seq - 1, unit)).is_ok()
                })
            });
            for _ in 0..jobs {
                let (rx, tx) = (Arc::clone(&unit_rx), done_tx.clone());
                scope.spawn(move || {
                    let mut buf = Vec::new();
                    loop {
                        let next = rx.lock().expect("unit queue lock").recv();
                        let Ok((seq, unit)) = next else { return };
                        if tx.send((seq, work(detector, unit, &mut buf))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(done_tx);
            // Results come in any order; they are applied in input order.
            let mut waiting = BTreeMap::new();
            let mut next = 0;
            let mut result = Ok(());
            for (seq, done) in done_rx {
                waiting.insert(seq, done);
                while let Some(done) = waiting.remove(&next) {
                    next += 1;
                    if result.is_ok() {
                        result = self.apply(done, out, err);
                    }
                }
                if result.is_err() {
                    break;
                }
            }
            drop(unit_rx);
            let produced = producer.join().expect("the replay reader does not panic");
            result.and(produced)
        })
    }

    fn count_error(&mut self, e: &DecodeError) {
        *self.summary.decode_errors.entry(e.kind()).or_default() += 1;
    }

    fn apply(&mut self, done: Done, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
        let path = &*done.path;
        self.summary.events += done.unparsed;
        for (line, what) in done.items.list {
            let location = match line {
                Some(n) => Location::Line(path, self.lines_before + n),
                None => Location::File(path),
            };
            self.item(&location, what, out, err)?;
        }
        for (kind, n) in &done.items.unlisted.errors {
            *self.summary.decode_errors.entry(kind).or_default() += n;
        }
        self.summary.object_refs += done.items.unlisted.objects;
        self.unlisted.add(done.items.unlisted);
        self.lines_before += done.lines;
        if let Some((stream, unreadable)) = done.end {
            self.lines_before = 0;
            self.summary.files += 1;
            if let Some(e) = stream {
                self.count_error(&e);
                writeln!(err, "{}: {e}", path.display())?;
            }
            let unlisted = std::mem::take(&mut self.unlisted);
            (self.listed_errors, self.listed_objects) = (0, 0);
            if !unlisted.errors.is_empty() {
                let n: u64 = unlisted.errors.values().sum();
                let counts: Vec<String> = unlisted
                    .errors
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                writeln!(
                    err,
                    "{}: {n} more decode error(s) not listed ({})",
                    path.display(),
                    counts.join(", ")
                )?;
            }
            if unlisted.objects > 0 {
                writeln!(
                    err,
                    "{}: names {} more S3 object(s); not fetched (replay reads local files only)",
                    path.display(),
                    unlisted.objects
                )?;
            }
            if let Some(e) = unreadable {
                self.summary.unreadable_files += 1;
                writeln!(err, "{}: cannot read: {e}", path.display())?;
            }
        }
        Ok(())
    }

    fn item(
        &mut self,
        location: &Location<'_>,
        what: Assessed,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        match what {
            Assessed::Record {
                findings,
                key,
                suppressed,
            } => {
                self.summary.events += 1;
                if let Some(k) = &key
                    && self.seen.contains(k)
                {
                    self.summary.duplicates += 1;
                    return Ok(());
                }
                self.summary.suppressed += suppressed as u64;
                for f in &findings {
                    self.summary.findings += 1;
                    let by_rule = &mut self.summary.findings_by_rule;
                    match by_rule.get_mut(&f.rule) {
                        Some(n) => *n += 1,
                        None => {
                            by_rule.insert(f.rule.clone(), 1);
                        }
                    }
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    self.line.clear();
                    self.format.write_body(f, now_ms, &mut self.line);
                    self.line.push(b'\n');
                    out.write_all(&self.line)?;
                }
                if let Some(k) = key {
                    self.seen.insert(k);
                }
            }
            Assessed::Object(obj) => {
                self.summary.object_refs += 1;
                if self.listed_objects >= decode::MAX_KEPT_ERRORS {
                    self.unlisted.objects += 1;
                    return Ok(());
                }
                self.listed_objects += 1;
                writeln!(
                    err,
                    "{location}: names {obj}; not fetched (replay reads local files only)"
                )?;
            }
            Assessed::Skipped(s) => *self.summary.skipped.entry(s.as_str()).or_default() += 1,
            Assessed::Error(e) => {
                self.count_error(&e);
                if self.listed_errors >= decode::MAX_KEPT_ERRORS {
                    *self.unlisted.errors.entry(e.kind()).or_default() += 1;
                    return Ok(());
                }
                self.listed_errors += 1;
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
                    asns: Default::default(),
                    geoip: None,
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

    /// A file of a thousand bad elements (or lines) lists the first
    /// hundred errors, counts the rest in one line, and counts every one
    /// in the summary; so for S3 object references.
    #[test]
    fn errors_and_object_references_past_the_first_hundred_are_counted() {
        let d = detector();
        let notice = |i: usize| {
            format!(
                r#"{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","s3":{{"bucket":{{"name":"trail"}},"object":{{"key":"f{i}.json.gz"}}}}}}"#
            )
        };
        let mut records: Vec<String> = vec!["{}".to_owned(); 1000];
        records.extend((0..300).map(notice));
        records.push(ROOT_CALL.to_owned());
        let log_file = format!(r#"{{"Records":[{}]}}"#, records.join(","));
        let lines = vec!["{}"; 1000].join("\n");
        for (name, text) in [("a.json", log_file), ("a.jsonl", lines)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            std::fs::write(&path, &text).unwrap();
            for jobs in [1, 2] {
                let mut r =
                    Replay::new(&d, std::num::NonZeroUsize::new(100).unwrap()).with_jobs(jobs);
                let (mut out, mut err) = (Vec::new(), Vec::new());
                r.run(std::slice::from_ref(&path), &mut out, &mut err)
                    .unwrap();
                let summary = r.finish();
                let err = String::from_utf8(err).unwrap();
                let errors: u64 = summary.decode_errors.values().sum();
                assert_eq!(errors, 1000, "{name}: {err}");
                let listed = err.lines().filter(|l| l.contains("not a ")).count();
                assert_eq!(listed, 100, "{name}: {err}");
                assert!(
                    err.contains("900 more decode error(s) not listed"),
                    "{name}: {err}"
                );
                if name == "a.json" {
                    assert_eq!(summary.object_refs, 300);
                    assert_eq!(
                        err.lines().filter(|l| l.contains(": names s3://")).count(),
                        100
                    );
                    assert!(err.contains("names 200 more S3 object(s)"), "{err}");
                }
            }
        }
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

    fn run_all(d: &Detector, paths: &[PathBuf], jobs: usize) -> (ReplaySummary, Vec<u8>, Vec<u8>) {
        let mut r = Replay::new(d, std::num::NonZeroUsize::new(100_000).unwrap()).with_jobs(jobs);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        r.run(paths, &mut out, &mut err).unwrap();
        (r.finish(), out, err)
    }

    /// Lines that cross the borders of the ranges the workers read: one
    /// longer than a range, one longer than the decoder takes, a last one
    /// without its newline. Each is read once, by the range it starts in,
    /// with the right line number, whatever the number of threads.
    #[test]
    fn lines_across_range_borders() {
        let d = detector();
        let record = |n: usize, pad: usize| {
            ROOT_CALL.replace("0001", &format!("{n:04}")).replace(
                r#""eventVersion":"1.08","#,
                &format!(r#""eventVersion":"1.08","pad":"{}","#, "x".repeat(pad)),
            )
        };
        let mut text = String::new();
        let mut n = 0;
        let line = |text: &mut String, l: String| {
            text.push_str(&l);
            text.push('\n');
        };
        for _ in 0..3 {
            n += 1;
            line(&mut text, record(n, 1000));
        }
        n += 1;
        line(&mut text, record(n, 3 * CHUNK_BYTES + 17));
        n += 1;
        line(&mut text, "{\"eventVersion\": \"1.08\", cut".to_owned());
        let bad_line = n;
        n += 1;
        line(&mut text, record(n, decode::MAX_LINE_BYTES + 10));
        let too_long = n;
        for _ in 0..2000 {
            n += 1;
            line(&mut text, record(n, 700));
        }
        n += 1;
        text.push_str(&record(n, 10));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("borders.jsonl");
        std::fs::write(&path, &text).unwrap();
        drop(text);
        let paths = [path.clone()];
        let one = run_all(&d, &paths, 1);
        // Every record but the cut and the too-long lines alerts once.
        assert_eq!(one.0.events, n as u64 - 2, "{:?}", one.0);
        assert_eq!(one.0.findings_by_rule["root-api-call"], n as u64 - 2);
        let messages = String::from_utf8_lossy(&one.2).into_owned();
        let at = |l: usize| format!("{}:{l}: ", path.display());
        assert!(messages.contains(&at(bad_line)), "{messages}");
        assert!(messages.contains(&at(too_long)), "{messages}");
        assert_eq!(messages.lines().count(), 2, "{messages}");
        for jobs in [2, 3] {
            let many = run_all(&d, &paths, jobs);
            assert_eq!(many.0, one.0, "summary with {jobs} threads");
            assert!(many.1 == one.1, "findings differ with {jobs} threads");
            assert_eq!(String::from_utf8_lossy(&many.2), messages);
        }
    }

    /// Every fixture record in one JSON-lines file of several chunks, with
    /// bad lines among them, plus the same records as gzip log files and a
    /// directory: the findings, their order, the messages and the summary
    /// are those of one thread, whatever the number of threads.
    #[test]
    fn threads_change_nothing_but_speed() {
        let lines = crate::fixtures::corpus_records();
        let dir = tempfile::tempdir().unwrap();
        let mut big = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            big.extend_from_slice(l.as_bytes());
            big.push(b'\n');
            match i % 700 {
                5 => big.extend_from_slice(b"{\"eventVersion\": \"1.08\", truncated\n"),
                6 => big.extend_from_slice(b"\xff\xfe not utf-8\n"),
                7 => big.extend_from_slice(b"\n"),
                _ => {}
            }
        }
        // Copies of the corpus twice over: duplicates across chunk borders.
        let twice = [&big[..], &big[..]].concat();
        assert!(twice.len() > 3 * CHUNK_BYTES, "several chunks");
        let jsonl = dir.path().join("big.jsonl");
        std::fs::write(&jsonl, &twice).unwrap();
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        for (n, part) in lines.chunks(500).enumerate() {
            let doc = format!(r#"{{"Records":[{}]}}"#, part.join(","));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, doc.as_bytes()).unwrap();
            std::fs::write(sub.join(format!("{n:03}.json.gz")), gz.finish().unwrap()).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &big).unwrap();
        std::fs::write(sub.join("lines.jsonl.gz"), gz.finish().unwrap()).unwrap();
        let paths = [jsonl, sub, dir.path().join("missing.jsonl")];

        let d = detector();
        let one = run_all(&d, &paths, 1);
        assert!(
            one.0.findings > 1000 && one.0.duplicates > 1000,
            "{:?}",
            one.0
        );
        assert!(one.0.had_errors() && one.0.unreadable_files == 1);
        // Each message about the big file names the line that is bad,
        // in whichever chunk it fell.
        let bad: Vec<u64> = twice
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, l)| {
                l.starts_with(b"{\"eventVersion\": \"1.08\", trunc") || l.starts_with(b"\xff")
            })
            .map(|(i, _)| i as u64 + 1)
            .collect();
        let prefix = format!("{}:", paths[0].display());
        let named: Vec<u64> = String::from_utf8_lossy(&one.2)
            .lines()
            .filter_map(|m| m.strip_prefix(&prefix)?.split(':').next()?.parse().ok())
            .collect();
        let last_at: usize = twice
            .split(|&b| b == b'\n')
            .take(*bad.last().unwrap() as usize - 1)
            .map(|l| l.len() + 1)
            .sum();
        assert!(bad.len() > 10 && last_at > 2 * CHUNK_BYTES, "{bad:?}");
        assert_eq!(named, bad);
        for jobs in [2, 3] {
            let many = run_all(&d, &paths, jobs);
            assert_eq!(many.0, one.0, "summary with {jobs} threads");
            assert!(many.1 == one.1, "findings differ with {jobs} threads");
            assert_eq!(
                String::from_utf8_lossy(&many.2),
                String::from_utf8_lossy(&one.2),
                "messages with {jobs} threads"
            );
        }
    }
}
