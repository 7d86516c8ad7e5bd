//! CloudWatch Logs checkpoints: for each log group, the position up to which
//! every event was handled, and the events handled at that edge, so a
//! restart neither repeats an alert nor skips one.
//!
//! [`Progress`] is the per-group bookkeeping (pure, no I/O, no clock);
//! [`CheckpointFile`] is what is written to `checkpoint_path`, atomically
//! ([`write_atomic`]). Handled events are remembered by an 8-byte key of
//! their id ([`EventKey`]), in the file as in the DynamoDB table.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::handled::EventKey;
use crate::ack::Outcome;

/// The file format this code writes. Version 1 (handled events by their
/// full id) is still read, so a file written before keys upgrades in place.
pub const VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointFile {
    pub version: u32,
    /// The source that owns the file: two sources sharing one file would
    /// overwrite each other's groups.
    pub source: String,
    /// When `log_group_prefix` was last listed (ms since the epoch). A group
    /// created after it is new and is read from its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_at_ms: Option<i64>,
    pub groups: BTreeMap<String, GroupCheckpoint>,
}

impl CheckpointFile {
    pub fn new(source: &str) -> Self {
        CheckpointFile {
            version: VERSION,
            source: source.to_owned(),
            discovered_at_ms: None,
            groups: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCheckpoint {
    /// Every event with a timestamp at or before this (ms since the epoch)
    /// was handled, except late arrivals the next read still covers.
    pub position_ms: i64,
    /// Key of the CloudWatch Logs event id -> timestamp, for events with
    /// alerts that were handled and lie inside the window a restart
    /// re-reads (timestamp >= position - lookback). Events without alerts
    /// are not kept: reading them again cannot repeat an alert.
    #[serde(default)]
    pub handled: BTreeMap<EventKey, i64>,
}

/// Version 1 of the file: handled events by their full id.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFileV1 {
    #[allow(dead_code)]
    version: u32,
    source: String,
    #[serde(default)]
    discovered_at_ms: Option<i64>,
    groups: BTreeMap<String, GroupCheckpointV1>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupCheckpointV1 {
    position_ms: i64,
    #[serde(default)]
    handled: BTreeMap<String, i64>,
}

impl From<CheckpointFileV1> for CheckpointFile {
    fn from(v1: CheckpointFileV1) -> Self {
        CheckpointFile {
            version: VERSION,
            source: v1.source,
            discovered_at_ms: v1.discovered_at_ms,
            groups: v1
                .groups
                .into_iter()
                .map(|(g, c)| {
                    let handled = keyed(c.handled);
                    (
                        g,
                        GroupCheckpoint {
                            position_ms: c.position_ms,
                            handled,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Handled events by full id (as version 1 files and older table items
/// hold them) -> by key.
pub fn keyed(by_id: BTreeMap<String, i64>) -> BTreeMap<EventKey, i64> {
    by_id
        .into_iter()
        .map(|(id, ts)| (EventKey::of(&id), ts))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {}: cannot read it: {source}; it was left as it is", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "checkpoint file {} is corrupt: {problem}. It was left untouched: repair it, or move it away to begin again at `start` (events since the checkpoint would then be skipped)",
        path.display()
    )]
    Corrupt { path: PathBuf, problem: String },
    #[error(
        "checkpoint file {} belongs to source `{found}`, not `{expected}`: give each cloudwatch_logs source its own checkpoint_path (or rename the source back)",
        path.display()
    )]
    OtherSource {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("checkpoint file {}: cannot write it: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Reads the checkpoint file; `Ok(None)` when there is none yet. Never
/// modifies the file.
pub fn load(path: &Path, source: &str) -> Result<Option<CheckpointFile>, CheckpointError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let corrupt = |problem: String| CheckpointError::Corrupt {
        path: path.to_owned(),
        problem,
    };
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let not_a_checkpoint = |e: serde_json::Error| corrupt(format!("not a checkpoint ({e})"));
    let file: CheckpointFile = match serde_json::from_slice::<Version>(&bytes)
        .map_err(not_a_checkpoint)?
        .version
    {
        1 => serde_json::from_slice::<CheckpointFileV1>(&bytes)
            .map_err(not_a_checkpoint)?
            .into(),
        VERSION => serde_json::from_slice(&bytes).map_err(not_a_checkpoint)?,
        other => {
            return Err(corrupt(format!(
                "version {other} is not supported (this rootwatch reads versions 1 and {VERSION})"
            )));
        }
    };
    if file.source != source {
        return Err(CheckpointError::OtherSource {
            path: path.to_owned(),
            found: file.source,
            expected: source.to_owned(),
        });
    }
    for (group, c) in &file.groups {
        if c.position_ms < 0 {
            return Err(corrupt(format!(
                "log group `{group}`: position_ms {} is before 1970",
                c.position_ms
            )));
        }
    }
    Ok(Some(file))
}

/// Replaces `path` with `bytes` so that a crash leaves either the old file
/// or the new one, never a mix: a temporary file in the same directory,
/// fsynced, renamed over the old one, then the directory fsynced so the
/// rename itself survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the path names no file"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        // A leftover temporary file keeps its mode: start afresh, readable
        // by the owner alone (a checkpoint names log groups and events).
        let _ = fs::remove_file(&tmp);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// An event whose alerts are being delivered, or failed to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    pub ts: i64,
    /// Kept to retry a failed event without reading it again.
    pub message: String,
    /// Delivery rounds so far, this one included.
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy)]
struct Handled {
    ts: i64,
    alerted: bool,
}

/// What became of an event whose outcome arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    /// Kept for retry; the position stays before it.
    Failed(&'static str),
    /// Cut short by shutdown; read again after a restart.
    Released,
    /// Not an event this group was waiting for.
    Unknown,
}

/// How far back a group's reads reach. Times are ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// An event that becomes searchable up to this long after its
    /// timestamp is still read.
    pub lookback_ms: i64,
    /// At least this often a read goes back the whole lookback (a full
    /// read); the polls in between read back only the overlap (see
    /// [`Progress::overlap`]).
    pub full_every_ms: i64,
}

/// The next read, `start ..= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    /// Whether it reaches back the whole lookback from the last full read.
    pub full: bool,
    /// Where a poll would have started: a new event before it was later
    /// than the overlap, found only because this read is full.
    pub poll_start: i64,
}

/// The overlap is twice the largest ingestion delay seen lately, at least
/// this: room for clock skew and for the time between ingestion and an
/// event becoming searchable.
pub const MIN_OVERLAP_MS: i64 = 30_000;
/// Ingestion delays are remembered per minute, for this long.
const DELAY_BUCKET_MS: i64 = 60_000;
const DELAY_BUCKETS: i64 = 15;

/// One log group's reading progress. Times are ms since the epoch.
///
/// * `frontier`: the end of the last complete read. A poll reads
///   `frontier - overlap ..= now`, where the overlap follows how late events
///   have been becoming searchable (twice the largest delay of the last 15
///   minutes, at least [`MIN_OVERLAP_MS`], at most the lookback; the whole
///   lookback while no delay was seen).
/// * `full_end`: the end of the last full read. Once the reads have moved
///   `full_every` past it, the next read is full: it starts at
///   `full_end - lookback`, so every event searchable at most `lookback`
///   after its timestamp is read, however much later than the overlap,
///   within `full_every` of becoming searchable (an event searchable after
///   the last full read has a timestamp of at least `full_end - lookback`).
/// * `position` (the checkpoint): at most the frontier, before every event
///   still being delivered or failed, and never moving back. Every read
///   starts at or after `full_end - lookback`, and `full_end` is never more
///   than `full_every` behind the frontier nor, so, behind the position: a
///   restart reading from `position - lookback - full_every` finds again any
///   event that was unsettled when it stopped.
/// * handled ids: skipped when read again; kept while a read can return
///   them (`>= full_end - lookback`), and alerted ones while a restart can
///   (`>= position - lookback - full_every`).
#[derive(Debug)]
pub struct Progress {
    reach: Reach,
    position: i64,
    frontier: i64,
    full_end: i64,
    /// `(minute, largest delay seen in it)`, oldest first.
    delays: VecDeque<(i64, i64)>,
    handled: HashMap<EventKey, Handled>,
    in_flight: HashMap<String, Unsettled>,
    failed: HashMap<String, Unsettled>,
    /// Reads in a row that found nothing new: each one doubles the next
    /// window, so catching up over empty time costs calls in proportion to
    /// the log of its length, not to the length.
    empty_reads: u32,
}

/// Most doublings of the catch-up window: 15 minutes times 2^40 is far
/// beyond any real backlog, and the product cannot overflow.
const MAX_DOUBLINGS: u32 = 40;

impl Progress {
    /// A group that begins at `position` with nothing handled yet.
    pub fn new(position: i64, reach: Reach) -> Self {
        Progress {
            reach,
            position,
            frontier: position,
            full_end: position,
            delays: VecDeque::new(),
            handled: HashMap::new(),
            in_flight: HashMap::new(),
            failed: HashMap::new(),
            empty_reads: 0,
        }
    }

    /// A group resumed from its checkpoint. Its first read is full and
    /// starts at `position - lookback - full_every` (see [`Progress`]).
    pub fn resume(c: &GroupCheckpoint, reach: Reach) -> Self {
        let mut p = Progress::new(c.position_ms, reach);
        p.full_end = c.position_ms - reach.full_every_ms;
        p.handled = c
            .handled
            .iter()
            .map(|(&key, &ts)| (key, Handled { ts, alerted: true }))
            .collect();
        p
    }

    pub fn position(&self) -> i64 {
        self.position
    }

    /// Records how late a new event became searchable (`ingestionTime -
    /// timestamp`), seen at `now`.
    pub fn observe_delay(&mut self, now: i64, delay_ms: i64) {
        let minute = now.div_euclid(DELAY_BUCKET_MS);
        let delay = delay_ms.max(0);
        match self.delays.back_mut() {
            // A clock that went back adds to the newest minute.
            Some((m, d)) if *m >= minute => *d = (*d).max(delay),
            _ => self.delays.push_back((minute, delay)),
        }
        while self
            .delays
            .front()
            .is_some_and(|&(m, _)| m <= minute - DELAY_BUCKETS)
        {
            self.delays.pop_front();
        }
    }

    /// How far behind the frontier a poll starts at `now`.
    pub fn overlap(&self, now: i64) -> i64 {
        let recent = now.div_euclid(DELAY_BUCKET_MS) - DELAY_BUCKETS;
        let lookback = self.reach.lookback_ms;
        match self
            .delays
            .iter()
            .filter(|&&(m, _)| m > recent)
            .map(|&(_, d)| d)
            .max()
        {
            Some(d) => d.saturating_mul(2).max(MIN_OVERLAP_MS).min(lookback),
            None => lookback,
        }
    }

    /// The next read. `end` is `now`, or the frontier plus a span when far
    /// behind, so a long backlog is read in steps and the remembered ids
    /// stay bounded. The span is `base_span_ms`, doubled for every read in
    /// a row that found nothing new (see [`Progress::read_found`]).
    pub fn window(&self, now: i64, base_span_ms: i64) -> Window {
        let span = base_span_ms.saturating_mul(1i64 << self.empty_reads);
        let end = now
            .min(self.frontier.saturating_add(span))
            .max(self.frontier);
        let poll_start = (self.frontier - self.overlap(now)).max(0);
        let full_start = (self.full_end - self.reach.lookback_ms).max(0);
        let full = end - self.full_end >= self.reach.full_every_ms || full_start >= poll_start;
        Window {
            start: if full { full_start } else { poll_start },
            end,
            full,
            poll_start,
        }
    }

    /// Whether the next window is wider than the base span, because the
    /// reads before it found nothing. A widened read that finds events
    /// should stop at that page (its events stay known) and read on with
    /// the base span, so a dense stretch after an empty one is not read in
    /// one huge window.
    pub fn window_is_widened(&self) -> bool {
        self.empty_reads > 0
    }

    /// Tells how the last read went: `new_events` events that were not
    /// known before. An empty read widens the next window; a read with
    /// events brings it back to the base span.
    pub fn read_found(&mut self, new_events: usize) {
        self.empty_reads = if new_events == 0 {
            (self.empty_reads + 1).min(MAX_DOUBLINGS)
        } else {
            0
        };
    }

    /// Whether the event was handled, is being delivered, or awaits retry.
    pub fn is_known(&self, id: &str) -> bool {
        self.handled.contains_key(&EventKey::of(id))
            || self.in_flight.contains_key(id)
            || self.failed.contains_key(id)
    }

    /// An event with nothing to deliver.
    pub fn handled_quietly(&mut self, id: String, ts: i64) {
        self.handled
            .insert(EventKey::of(&id), Handled { ts, alerted: false });
    }

    /// An event whose findings were dispatched; [`Progress::settle`] follows.
    pub fn dispatched(&mut self, id: String, ts: i64, message: String) {
        self.dispatched_again(id, ts, message, 1);
    }

    /// An event dispatched for the `attempts`-th time.
    pub fn dispatched_again(&mut self, id: String, ts: i64, message: String, attempts: u32) {
        self.in_flight.insert(
            id,
            Unsettled {
                ts,
                message,
                attempts,
            },
        );
    }

    pub fn settle(&mut self, id: &str, outcome: Outcome) -> Settled {
        let Some(u) = self.in_flight.remove(id) else {
            return Settled::Unknown;
        };
        match outcome {
            Outcome::Done => {
                self.handled.insert(
                    EventKey::of(id),
                    Handled {
                        ts: u.ts,
                        alerted: true,
                    },
                );
                Settled::Done
            }
            Outcome::Failed(reason) => {
                self.failed.insert(id.to_owned(), u);
                Settled::Failed(reason)
            }
            Outcome::Released => {
                self.failed.insert(id.to_owned(), u);
                Settled::Released
            }
        }
    }

    /// Failed events, oldest first, to dispatch again; they count as
    /// unsettled until then, so call [`Progress::dispatched`] or
    /// [`Progress::handled_quietly`] for each.
    pub fn take_failed(&mut self) -> Vec<(String, Unsettled)> {
        let mut v: Vec<_> = self.failed.drain().collect();
        v.sort_by(|a, b| (a.1.ts, &a.0).cmp(&(b.1.ts, &b.0)));
        v
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn failed(&self) -> usize {
        self.failed.len()
    }

    /// The read of `window` completed.
    pub fn finish_read(&mut self, window: &Window) {
        self.frontier = self.frontier.max(window.end);
        if window.full {
            self.full_end = self.full_end.max(window.end);
        }
    }

    /// Moves the position as far as every outcome allows, forgets ids no
    /// read and no restart can return again, and returns the position.
    pub fn advance(&mut self) -> i64 {
        let barrier = self
            .in_flight
            .values()
            .chain(self.failed.values())
            .map(|u| u.ts)
            .min();
        let candidate = match barrier {
            Some(b) => self.frontier.min(b - 1),
            None => self.frontier,
        };
        self.position = self.position.max(candidate);
        let (restart_from, read_from) =
            (self.restart_from(), self.full_end - self.reach.lookback_ms);
        self.handled
            .retain(|_, h| h.ts >= restart_from && (h.alerted || h.ts >= read_from));
        self.position
    }

    /// Where a restart from this position reads from.
    fn restart_from(&self) -> i64 {
        self.position - self.reach.lookback_ms - self.reach.full_every_ms
    }

    pub fn checkpoint(&self) -> GroupCheckpoint {
        let restart_from = self.restart_from();
        GroupCheckpoint {
            position_ms: self.position,
            handled: self
                .handled
                .iter()
                .filter(|(_, h)| h.alerted && h.ts >= restart_from)
                .map(|(&key, h)| (key, h.ts))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: i64 = 300_000;
    const F: i64 = 60_000;
    const REACH: Reach = Reach {
        lookback_ms: L,
        full_every_ms: F,
    };

    fn p(position: i64) -> Progress {
        Progress::new(position, REACH)
    }

    fn range(w: Window) -> (i64, i64) {
        (w.start, w.end)
    }

    #[test]
    fn the_window_reaches_back_by_the_lookback_and_forward_in_steps() {
        let g = p(1_000_000);
        assert_eq!(range(g.window(1_005_000, 900_000)), (700_000, 1_005_000));
        assert_eq!(range(g.window(9_000_000, 900_000)), (700_000, 1_900_000));
        // A clock that went back reads nothing new, and never a reversed range.
        assert_eq!(range(g.window(10, 900_000)), (700_000, 1_000_000));
        assert_eq!(range(p(100).window(200, 900_000)), (0, 200));
    }

    /// Polls every 10 s over a group whose events become searchable 5 s
    /// late: they read back 30 s (the least overlap), and once a minute a
    /// read goes back the whole lookback from the last full read.
    #[test]
    fn polls_read_back_the_overlap_and_a_full_read_comes_once_per_interval() {
        let t0 = 10_000_000;
        let mut g = p(t0);
        // No delay seen yet: the whole lookback.
        assert_eq!(g.overlap(t0), L);
        let mut windows = Vec::new();
        for k in 1..=13 {
            let now = t0 + k * 10_000;
            g.observe_delay(now, 5_000);
            let w = g.window(now, SPAN);
            windows.push((w.start - t0, w.end - t0, w.full));
            g.finish_read(&w);
        }
        assert_eq!(g.overlap(t0 + 130_000), MIN_OVERLAP_MS);
        let fulls: Vec<_> = windows.iter().filter(|w| w.2).collect();
        assert_eq!(fulls, [&(-L, 60_000, true), &(60_000 - L, 120_000, true)]);
        for &(start, end, full) in &windows {
            if !full {
                assert_eq!(start, end - 10_000 - MIN_OVERLAP_MS, "{windows:?}");
            }
        }
        // Larger delays widen the overlap, up to the lookback.
        g.observe_delay(t0 + 131_000, 100_000);
        assert_eq!(g.overlap(t0 + 131_000), 200_000);
        g.observe_delay(t0 + 132_000, 200_000);
        assert_eq!(g.overlap(t0 + 132_000), L);
        // They are forgotten after 15 minutes.
        assert_eq!(g.overlap(t0 + 132_000 + 16 * 60_000), L, "nothing seen");
        g.observe_delay(t0 + 132_000 + 16 * 60_000, 1_000);
        assert_eq!(g.overlap(t0 + 132_000 + 16 * 60_000), MIN_OVERLAP_MS);
    }

    /// A simulated log group: events with the given delays, polled every
    /// `poll` ms for an hour, with a crash and a restart from the
    /// checkpoint in the middle. Returns how many times each event's
    /// alert was delivered, and how many events the reads returned.
    fn simulate(events: &[(i64, i64)], poll: i64, reach: Reach, crash_at: i64) -> (Vec<u32>, u64) {
        let t0 = 100 * DAY;
        let mut g = Progress::new(t0, reach);
        let mut delivered = vec![0u32; events.len()];
        let mut pending: Vec<usize> = Vec::new();
        let mut read = 0u64;
        let mut now = t0;
        let mut crashed = false;
        while now < t0 + 4_000_000 {
            now += poll;
            // Last poll's alerts were delivered in the meantime.
            for i in pending.drain(..) {
                if g.settle(&i.to_string(), Outcome::Done) == Settled::Done {
                    delivered[i] += 1;
                }
            }
            g.advance();
            let w = g.window(now, SPAN);
            for (i, &(ts, delay)) in events.iter().enumerate() {
                let ts = t0 + ts;
                if ts + delay > now || ts < w.start || ts > w.end {
                    continue;
                }
                read += 1;
                if !g.is_known(&i.to_string()) {
                    g.observe_delay(now, delay);
                    g.dispatched(i.to_string(), ts, String::new());
                    pending.push(i);
                }
            }
            g.read_found(1);
            g.finish_read(&w);
            if !crashed && now >= t0 + crash_at {
                // Killed with this poll's alerts undelivered: only the
                // checkpoint survives.
                crashed = true;
                g.advance();
                g = Progress::resume(&g.checkpoint(), reach);
                pending.clear();
            }
        }
        (delivered, read)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Every event searchable at most `lookback` late alerts exactly
        /// once, across a crash, however its delay compares with the
        /// overlap.
        #[test]
        fn every_event_within_the_lookback_alerts_exactly_once(
            events in proptest::collection::vec((0i64..3_000_000, 0i64..=L), 1..60),
            quick in proptest::collection::vec((0i64..3_000_000, 0i64..5_000), 0..60),
            poll in 1_000i64..30_000,
            full_every in 1_000i64..600_000,
            crash_at in 0i64..3_600_000,
        ) {
            let all: Vec<_> = events.into_iter().chain(quick).collect();
            let reach = Reach { lookback_ms: L, full_every_ms: full_every };
            let (delivered, _) = simulate(&all, poll, reach, crash_at);
            for (i, n) in delivered.iter().enumerate() {
                proptest::prop_assert_eq!(*n, 1, "event {:?}", all[i]);
            }
        }
    }

    /// Events a few seconds late, one every second for 50 minutes: each
    /// alerts once, and each is read about 9 times (four polls and one
    /// full read of 360 s a minute), not the 31 times of reading the whole
    /// lookback on every 10 s poll. An event 250 s late alerts once too,
    /// and widens the overlap to the lookback for the next 15 minutes.
    #[test]
    fn polls_over_prompt_events_read_a_fraction_of_the_lookback() {
        let mut events: Vec<(i64, i64)> = (0..3_000).map(|k| (k * 1_000, k % 7 * 1_000)).collect();
        let (delivered, read) = simulate(&events, 10_000, REACH, 1_800_000);
        assert!(delivered.iter().all(|&n| n == 1), "{delivered:?}");
        let per_event = read as f64 / events.len() as f64;
        assert!(
            (8.0..10.0).contains(&per_event),
            "each event read {per_event:.1} times"
        );
        events.push((1_000_500, 250_000));
        let (delivered, read_with_outlier) = simulate(&events, 10_000, REACH, 1_800_000);
        assert!(delivered.iter().all(|&n| n == 1), "{delivered:?}");
        assert!(read_with_outlier > read);
        let whole_lookback = Reach {
            lookback_ms: L,
            full_every_ms: 1,
        };
        let (_, every_poll_full) = simulate(&events, 10_000, whole_lookback, 1_800_000);
        let per_event = every_poll_full as f64 / events.len() as f64;
        assert!(per_event > 30.0, "{per_event:.1}");
    }

    const DAY: i64 = 86_400_000;
    const SPAN: i64 = 900_000;

    /// Reads until caught up with `now`, as the source does, over a group
    /// with nothing in it; returns the number of reads.
    fn reads_to_catch_up(days: i64) -> u32 {
        let now = 10_000 * DAY;
        let mut g = p(now - days * DAY);
        let mut reads = 0;
        loop {
            let w = g.window(now, SPAN);
            assert!(w.start <= w.end && w.end <= now);
            reads += 1;
            g.read_found(0);
            g.finish_read(&w);
            if w.end >= now {
                return reads;
            }
            assert!(reads < 10_000, "catching up does not end");
        }
    }

    #[test]
    fn catching_up_over_empty_time_costs_reads_in_the_log_of_its_length() {
        let (day, month, year, decade) = (
            reads_to_catch_up(1),
            reads_to_catch_up(30),
            reads_to_catch_up(365),
            reads_to_catch_up(3650),
        );
        // Fixed 15-minute steps would take 96 reads a day (2,880 for 30 days).
        assert!(month <= 13, "30 days: {month} reads");
        // Ten times the time costs a few reads more, not ten times as many.
        assert!(year - month <= 4, "30 days: {month}, a year: {year}");
        assert!(decade - year <= 4, "a year: {year}, ten years: {decade}");
        assert!(day <= month);
    }

    #[test]
    fn a_read_with_events_brings_the_window_back_to_the_base_span() {
        let mut g = p(0);
        let now = 100 * DAY;
        assert_eq!(range(g.window(now, SPAN)), (0, SPAN));
        assert!(!g.window_is_widened());
        let w = g.window(now, SPAN);
        g.read_found(0);
        g.finish_read(&w);
        assert_eq!(range(g.window(now, SPAN)), (SPAN - L, 3 * SPAN));
        assert!(g.window_is_widened());
        let w = g.window(now, SPAN);
        g.read_found(0);
        g.finish_read(&w);
        assert_eq!(range(g.window(now, SPAN)), (3 * SPAN - L, 7 * SPAN));
        // Events found: the next window is the base span again.
        g.read_found(12);
        assert_eq!(range(g.window(now, SPAN)), (3 * SPAN - L, 4 * SPAN));
        assert!(!g.window_is_widened());
        // Widening never overflows.
        for _ in 0..100 {
            g.read_found(0);
        }
        assert_eq!(g.window(now, SPAN).end, now);
        let far = g.window(i64::MAX, SPAN).end;
        assert!(far > 1_000 * 365 * DAY, "{far}");
    }

    #[test]
    fn the_position_stops_before_unsettled_events_and_never_moves_back() {
        let mut g = p(1_000);
        g.handled_quietly("a".into(), 1_500);
        g.dispatched("b".into(), 2_000, "{}".into());
        g.dispatched("c".into(), 3_000, "{}".into());
        g.finish_read(&g.window(5_000, SPAN));
        assert_eq!(g.advance(), 1_999);
        assert_eq!(g.settle("c", Outcome::Done), Settled::Done);
        assert_eq!(g.advance(), 1_999, "b still blocks");
        assert_eq!(
            g.settle("b", Outcome::Failed("delivery")),
            Settled::Failed("delivery")
        );
        assert_eq!(g.advance(), 1_999, "a failed event blocks too");
        assert!(g.is_known("b"), "not read again while it waits for retry");
        let retry = g.take_failed();
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].0, "b");
        g.dispatched("b".into(), 2_000, retry[0].1.message.clone());
        assert_eq!(g.settle("b", Outcome::Done), Settled::Done);
        assert_eq!(g.advance(), 5_000);
        assert_eq!(
            g.checkpoint().handled,
            [(EventKey::of("b"), 2_000), (EventKey::of("c"), 3_000)].into()
        );

        // A late event behind the position holds it, but does not move it back.
        g.dispatched("late".into(), 4_000, "{}".into());
        g.finish_read(&g.window(6_000, SPAN));
        assert_eq!(g.advance(), 5_000);
        assert_eq!(g.settle("late", Outcome::Released), Settled::Released);
        assert_eq!(g.advance(), 5_000);
        assert!(!g.checkpoint().handled.contains_key(&EventKey::of("late")));
        assert_eq!(
            g.settle("late", Outcome::Done),
            Settled::Unknown,
            "settled once"
        );
    }

    #[test]
    fn ids_are_forgotten_once_no_read_and_no_restart_can_return_them() {
        let mut g = p(0);
        g.handled_quietly("quiet-old".into(), 10_000);
        g.dispatched("alert-old".into(), 10_000, "{}".into());
        g.settle("alert-old", Outcome::Done);
        g.dispatched("blocker".into(), 400_000, "{}".into());
        g.finish_read(&g.window(1_000_000, 1_000_000));
        assert_eq!(g.advance(), 399_999);
        // The next read starts at 700_000 and a restart at 399_999 - L - F
        // = 39_999: neither returns events at 10_000, alerted or not.
        assert!(!g.is_known("quiet-old"));
        assert!(!g.is_known("alert-old"));

        let mut g = p(0);
        g.dispatched("alert".into(), 200_000, "{}".into());
        g.settle("alert", Outcome::Done);
        g.handled_quietly("quiet".into(), 200_000);
        g.dispatched("blocker".into(), 400_000, "{}".into());
        g.finish_read(&g.window(1_000_000, 1_000_000));
        g.advance();
        // A restart reads from 39_999: the alerted event must be remembered
        // (and written), the quiet one need not be.
        assert!(g.is_known("alert"));
        assert!(!g.is_known("quiet"));
        assert_eq!(g.checkpoint().handled[&EventKey::of("alert")], 200_000);
    }

    #[test]
    fn resuming_skips_what_was_handled_at_the_edge() {
        let c = GroupCheckpoint {
            position_ms: 1_000_000,
            handled: [(EventKey::of("x"), 900_000)].into(),
        };
        let mut g = Progress::resume(&c, REACH);
        assert!(g.is_known("x"));
        // The first read is full, from where a restart must read.
        let w = g.window(1_000_500, 900_000);
        assert_eq!((w.start, w.end, w.full), (640_000, 1_000_500, true));
        assert_eq!(g.advance(), 1_000_000);
        assert_eq!(g.checkpoint(), c);
    }

    fn temp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn the_file_round_trips_and_the_write_leaves_no_temporary_file() {
        let dir = temp();
        let path = dir.path().join("cp.json");
        assert!(load(&path, "cwl").unwrap().is_none());
        let mut f = CheckpointFile::new("cwl");
        f.discovered_at_ms = Some(5);
        f.groups.insert(
            "g".into(),
            GroupCheckpoint {
                position_ms: 7,
                handled: [(EventKey::of("e"), 6)].into(),
            },
        );
        write_atomic(&path, &serde_json::to_vec_pretty(&f).unwrap()).unwrap();
        write_atomic(&path, &serde_json::to_vec_pretty(&f).unwrap()).unwrap();
        assert_eq!(load(&path, "cwl").unwrap().unwrap(), f);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cp.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
            // A temporary file left with another mode is not reused as it is.
            let tmp = dir.path().join(".cp.json.tmp");
            fs::write(&tmp, b"").unwrap();
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
            write_atomic(&path, b"{}").unwrap();
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
    }

    #[test]
    fn a_version_1_file_is_read_with_its_ids_turned_into_keys() {
        let dir = temp();
        let path = dir.path().join("cp.json");
        let id = "37000000000000000000000000000000000000000000000000000001";
        fs::write(
            &path,
            format!(
                r#"{{"version":1,"source":"cwl","discovered_at_ms":5,"groups":{{"g":{{"position_ms":7,"handled":{{"{id}":6}}}},"h":{{"position_ms":9}}}}}}"#
            ),
        )
        .unwrap();
        let f = load(&path, "cwl").unwrap().unwrap();
        assert_eq!(f.version, VERSION, "written back as the current version");
        assert_eq!(f.discovered_at_ms, Some(5));
        assert_eq!(f.groups["g"].position_ms, 7);
        assert_eq!(f.groups["g"].handled, [(EventKey::of(id), 6)].into());
        assert!(f.groups["h"].handled.is_empty());
        let g = Progress::resume(&f.groups["g"], REACH);
        assert!(
            g.is_known(id),
            "an event the old file names is still skipped"
        );
        assert!(!g.is_known("37000000000000000000000000000000000000000000000000000002"));
        // Written again, the file holds keys, not ids.
        let text = String::from_utf8(serde_json::to_vec(&f).unwrap()).unwrap();
        assert!(text.contains(&EventKey::of(id).to_string()), "{text}");
        assert!(!text.contains(id), "{text}");
        assert!(text.contains(r#""version":2"#), "{text}");
    }

    #[test]
    fn a_bad_file_is_a_clear_error_and_is_left_alone() {
        let dir = temp();
        let path = dir.path().join("cp.json");
        for (text, want) in [
            ("", "is corrupt: not a checkpoint"),
            ("{\"version\":1,", "is corrupt: not a checkpoint"),
            ("[]", "is corrupt: not a checkpoint"),
            (
                r#"{"version":1,"source":"cwl","groups":{"g":{"position":5}}}"#,
                "unknown field `position`",
            ),
            (
                r#"{"version":3,"source":"cwl","groups":{}}"#,
                "version 3 is not supported",
            ),
            (
                r#"{"version":2,"source":"cwl","groups":{"g":{"position_ms":5,"handled":{"some-event-id":4}}}}"#,
                "is not an event key",
            ),
            (
                r#"{"version":1,"source":"cwl","groups":{"g":{"position_ms":-1}}}"#,
                "log group `g`: position_ms -1 is before 1970",
            ),
            (
                r#"{"version":1,"source":"other","groups":{}}"#,
                "belongs to source `other`, not `cwl`",
            ),
        ] {
            fs::write(&path, text).unwrap();
            let e = load(&path, "cwl").unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn an_unwritable_directory_is_an_error_not_a_panic() {
        let dir = temp();
        let path = dir.path().join("missing-dir").join("cp.json");
        assert!(write_atomic(&path, b"{}").is_err());
        assert!(!path.exists());
    }
}
