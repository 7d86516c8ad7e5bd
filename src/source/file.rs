//! The file source: CloudTrail files on local disk (`.json`, `.jsonl`, `.gz`
//! of either, any envelope), read once or watched. For demos, tests and
//! hosts that receive log files by other means. A file whose deliveries
//! failed is read again on the next poll; one that is still being written
//! (modified in the last second) waits for the next poll.
//!
//! With `dead_letter_path`, a finding that a sink refused or that ran out
//! of retry time is written there (the file source has no other retry: a
//! file is read once, or again only when it changes), and the file counts
//! as handled once every finding was delivered or written down.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ack::{InputHandle, Outcome};
use crate::config::FileSettings;
use crate::dead_letter::{DeadLetterFile, DeadLetterStore, Target};
use crate::pipeline::{Pipeline, Scan};
use crate::telemetry;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
}

enum State {
    Working(Stamp),
    Done(Stamp),
}

pub struct FileSource {
    settings: FileSettings,
    pipeline: Arc<Pipeline>,
    dead_letter: Option<Arc<DeadLetterStore>>,
}

impl FileSource {
    pub fn new(settings: FileSettings, pipeline: Arc<Pipeline>) -> Self {
        let dead_letter = settings.dead_letter_path.as_ref().map(|p| {
            Arc::new(DeadLetterStore::file(DeadLetterFile::new(
                p,
                &settings.name,
            )))
        });
        FileSource {
            settings,
            pipeline,
            dead_letter,
        }
    }

    fn list(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for p in &self.settings.paths {
            if p.is_dir() {
                if let Err(e) = collect_files(p, &mut files) {
                    telemetry::source_error(
                        &self.settings.name,
                        "list",
                        &format!("{}: {e}", p.display()),
                    );
                }
            } else if p.exists() || !self.settings.watch {
                files.push(p.clone());
            }
        }
        files.sort();
        files.dedup();
        files
    }

    pub async fn run(self, stop: CancellationToken) {
        let name = self.settings.name.clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<(PathBuf, Outcome)>();
        let mut files: HashMap<PathBuf, State> = HashMap::new();
        loop {
            while let Ok((path, outcome)) = rx.try_recv() {
                settle(&mut files, path, outcome, &name);
            }
            for path in self.list() {
                let stamp = match std::fs::metadata(&path) {
                    Ok(m) => Stamp {
                        modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        len: m.len(),
                    },
                    Err(e) => {
                        telemetry::source_error(&name, "read", &format!("{}: {e}", path.display()));
                        continue;
                    }
                };
                match files.get(&path) {
                    Some(State::Working(_)) => continue,
                    Some(State::Done(s)) if *s == stamp => continue,
                    _ => {}
                }
                let fresh = stamp
                    .modified
                    .elapsed()
                    .map(|a| a < Duration::from_secs(1))
                    .unwrap_or(false);
                if self.settings.watch && fresh {
                    continue;
                }
                files.insert(path.clone(), State::Working(stamp));
                self.read(path, &tx).await;
                if stop.is_cancelled() {
                    break;
                }
            }
            if !self.settings.watch || stop.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = stop.cancelled() => break,
            }
        }
        drop(tx);
        while let Some((path, outcome)) = rx.recv().await {
            settle(&mut files, path, outcome, &name);
        }
        tracing::info!(source = %name, "file source finished");
    }

    async fn read(&self, path: PathBuf, tx: &mpsc::UnboundedSender<(PathBuf, Outcome)>) {
        let name = self.settings.name.clone();
        let id = path.display().to_string();
        telemetry::message_received(&name, &id);
        let p = Arc::clone(&self.pipeline);
        let open_path = path.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&open_path)?;
            let mut scan = Scan::default();
            match Layout::of(&open_path) {
                Layout::Lines => p.scan_lines(file, &mut scan),
                Layout::Documents => p.scan_reader(file, &mut scan),
            }
            Ok::<_, std::io::Error>(scan)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let scan = match scanned {
            Ok(scan) => scan,
            Err(e) => {
                // Not read at all (gone, no permission, the reader failed):
                // nothing was handled, so it is tried again on the next poll.
                telemetry::source_error(&name, "read", &format!("{id}: {e}"));
                let _ = tx.send((path, Outcome::Failed("read")));
                return;
            }
        };
        // A file will not change by reading it again: its errors are
        // reported and the rest of the file still alerts.
        telemetry::decode_errors(&name, &id, &scan.errors);
        super::report_unfetched(&name, &id, "the file source", &scan.objects);
        telemetry::events_processed(&name, scan.events);
        let tx = tx.clone();
        let on_done = move |outcome| {
            let _ = tx.send((path, outcome));
        };
        let unit = match &self.dead_letter {
            Some(file) => InputHandle::with_dead_letter(
                on_done,
                Target {
                    store: Arc::clone(file),
                    input: id.into(),
                    deadline_too: true,
                },
            ),
            None => InputHandle::new(on_done),
        };
        self.pipeline.dispatch(&unit, scan.groups);
        unit.done();
    }
}

fn settle(files: &mut HashMap<PathBuf, State>, path: PathBuf, outcome: Outcome, name: &str) {
    match (outcome, files.remove(&path)) {
        (Outcome::Done, Some(State::Working(stamp))) => {
            telemetry::messages_deleted(name, 1);
            files.insert(path, State::Done(stamp));
        }
        (Outcome::Failed(reason), _) => {
            tracing::warn!(source = name, file = %path.display(), reason, "not every alert was delivered; the file will be read again");
        }
        _ => {}
    }
}

/// How a file is split into inputs, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `.jsonl`, `.ndjson` (and `.gz`): one body per line; a bad line is an
    /// error for that line alone.
    Lines,
    /// Anything else: JSON documents back to back, `Records` arrays streamed.
    Documents,
}

impl Layout {
    pub fn of(path: &Path) -> Layout {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let name = name.strip_suffix(".gz").unwrap_or(name);
        if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            Layout::Lines
        } else {
            Layout::Documents
        }
    }
}

/// Whether a file name says it holds CloudTrail input: `.json`, `.jsonl`,
/// `.ndjson`, optionally `.gz`.
pub fn is_input_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(".gz").unwrap_or(name);
    [".json", ".jsonl", ".ndjson"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// The input files under `dir`, recursively.
pub fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if is_input_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}
