//! Throttle windows (docs/outputs.md, "Routing and throttling"): per (rule, principal, source IP),
//! the first finding is sent at once; repeats inside the window are counted
//! and sent as one summary when the window ends. A root session of 500
//! calls gives a handful of alerts, not 500.
//!
//! The throttle never holds intake. Of a window's folded repeats only the
//! latest one's input is kept (the window's *carrier*): each new fold hands
//! the previous carrier back to be acknowledged and keeps its own. The
//! carrier is acknowledged once the summary is delivered; after a crash it
//! comes back from its source and alerts as a fresh first finding. A crash
//! inside a window therefore loses at most the count, never the fact that
//! the key fired. At most `max_carriers` windows hold an input at once (a
//! fold beyond that is acknowledged at once, and its window's summary then
//! lives in memory only), and at most `max_windows` windows are open (the
//! oldest is closed early, its summary sent, to make room).
//!
//! A finding more severe than anything already sent in its window is never
//! folded: it goes out at once and the summary counts it. A finding the
//! window sent that comes back (its delivery failed and its input returned)
//! goes out again at once: a retry is not a repeat.
//!
//! The clock is passed in.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::finding::{Finding, Severity, Summary};

/// Open windows at most: a spray of distinct (principal, address) keys
/// cannot grow memory past this.
pub const MAX_WINDOWS: usize = 10_000;

/// Windows holding an input at most, whatever the sources allow. Each held
/// input is one SQS message, one S3 chunk of up to 64 events, or one
/// CloudWatch Logs event: far below every source's in-flight bound.
pub const MAX_CARRIERS: usize = 100;

/// Event names listed in a summary at most; the count covers the rest.
const MAX_EVENT_NAMES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    rule: String,
    principal: String,
    source_ip: String,
}

impl Key {
    fn of(f: &Finding) -> Key {
        Key {
            rule: f.rule.clone(),
            principal: f
                .principal_arn
                .clone()
                .or_else(|| f.user_name.clone())
                .unwrap_or_default(),
            source_ip: f.source_ip.clone().unwrap_or_default(),
        }
    }
}

struct Window<H> {
    opened: Instant,
    /// Drawn when the window opens: a redelivered first finding that opens
    /// another window with the same count still gets another summary id.
    nonce: u128,
    first_finding_id: String,
    /// Ids of the escalations sent in this window (at most one per
    /// severity): with the first, what a returning input sends again.
    escalation_ids: Vec<String>,
    /// The most severe finding sent in this window.
    sent: Severity,
    /// Findings after the first: folded ones and escalations.
    repeats: u64,
    escalated: u64,
    first_time: Option<String>,
    last_time: Option<String>,
    event_names: BTreeSet<String>,
    more_event_names: bool,
    latest: Option<Finding>,
    carrier: Option<H>,
}

/// What became of an admitted finding.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<H> {
    /// The first of its key in a window: send it.
    Send,
    /// More severe than anything sent in its window: send it now; the
    /// window's summary counts it.
    Escalated,
    /// Folded into its window. `released` is the input that carried the
    /// window's summary until now (this finding's input carries it from
    /// now, if there was room): the caller ends it as handled.
    Folded { released: Option<H> },
}

impl<H> Admit<H> {
    pub fn is_folded(&self) -> bool {
        matches!(self, Admit::Folded { .. })
    }
}

/// A closed window's summary and the input that carried it, if any.
pub struct Closed<H> {
    pub summary: Finding,
    pub carrier: Option<H>,
}

/// Counts since they were last taken, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Windows closed early to make room for a new key.
    pub evicted: u64,
    /// Folds acknowledged at once because `max_carriers` inputs were held.
    pub unheld: u64,
}

/// `H` is what a window's carrier keeps until the summary is delivered
/// (the latest repeat's acknowledgement guard).
pub struct Throttle<H> {
    window: Duration,
    max_windows: usize,
    max_carriers: usize,
    /// In the order the windows opened: the least recently used entry is
    /// the oldest window, the first to end.
    open: LruCache<Key, Window<H>>,
    /// Windows ended or evicted before the ticker closed them.
    stale: Vec<Window<H>>,
    carriers: usize,
    stats: Stats,
    /// After `close_all` (shutdown) nothing is folded any more.
    closed: bool,
}

impl<H> Window<H> {
    fn new(f: &Finding, now: Instant) -> Self {
        Window {
            opened: now,
            nonce: rand::random(),
            first_finding_id: f.finding_id.clone(),
            escalation_ids: Vec::new(),
            sent: f.severity,
            repeats: 0,
            escalated: 0,
            first_time: None,
            last_time: None,
            event_names: BTreeSet::new(),
            more_event_names: false,
            latest: None,
            carrier: None,
        }
    }

    /// Counts `f` as a repeat in this window.
    fn count(&mut self, f: &Finding) {
        self.repeats += 1;
        if self.first_time.is_none() {
            self.first_time = f.event_time.clone();
        }
        self.last_time = f.event_time.clone().or(self.last_time.take());
        if let Some(name) = &f.event_name
            && !self.event_names.contains(name)
        {
            if self.event_names.len() < MAX_EVENT_NAMES {
                self.event_names.insert(name.clone());
            } else {
                self.more_event_names = true;
            }
        }
        if self
            .latest
            .as_ref()
            .is_none_or(|l| f.severity >= l.severity)
        {
            self.latest = Some(f.clone());
        }
    }
}

impl<H> Throttle<H> {
    pub fn new(window: Duration) -> Self {
        Self::with_limits(window, MAX_WINDOWS, MAX_CARRIERS)
    }

    /// A throttle keeping at most `max_windows` windows open and at most
    /// `max_carriers` inputs held.
    pub fn with_limits(window: Duration, max_windows: usize, max_carriers: usize) -> Self {
        Throttle {
            window,
            max_windows: max_windows.max(1),
            max_carriers,
            open: LruCache::unbounded(),
            stale: Vec::new(),
            carriers: 0,
            stats: Stats::default(),
            closed: false,
        }
    }

    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Inputs held as carriers of a summary not yet sent.
    pub fn held_inputs(&self) -> usize {
        self.carriers
    }

    /// The counts since the last call, which starts them again.
    pub fn take_stats(&mut self) -> Stats {
        std::mem::take(&mut self.stats)
    }

    /// Admits `f` at `now`. The first of its key in a window is sent, and
    /// so is one more severe than anything sent in its window; other
    /// repeats are folded, and the latest fold's `hold()` is kept (when
    /// there is room) until the window's summary goes. `hold` is called
    /// only for a fold that keeps it.
    pub fn admit(&mut self, f: &Finding, hold: impl FnOnce() -> H, now: Instant) -> Admit<H> {
        if self.closed {
            return Admit::Send;
        }
        let key = Key::of(f);
        let live = self
            .open
            .peek(&key)
            .is_some_and(|w| now.duration_since(w.opened) < self.window);
        if !live {
            // No window, or one past its end that the ticker has not
            // closed yet: its summary still goes out on the next close.
            if let Some(old) = self.open.pop(&key) {
                self.retire(old);
            }
            if self.open.len() >= self.max_windows
                && let Some((_, oldest)) = self.open.pop_lru()
            {
                self.stats.evicted += 1;
                self.retire(oldest);
            }
            self.open.push(key, Window::new(f, now));
            return Admit::Send;
        }
        let w = self.open.peek_mut(&key).expect("a live window");
        // A finding this window sent, back with its input because its
        // delivery did not complete (delivered ones never reach here: the
        // pipeline drops events already delivered): a retry, sent again at
        // once, not a repeat to wait for the summary.
        if f.finding_id == w.first_finding_id || w.escalation_ids.contains(&f.finding_id) {
            return Admit::Send;
        }
        w.count(f);
        if f.severity > w.sent {
            w.sent = f.severity;
            w.escalated += 1;
            w.escalation_ids.push(f.finding_id.clone());
            return Admit::Escalated;
        }
        if w.carrier.is_some() {
            return Admit::Folded {
                released: w.carrier.replace(hold()),
            };
        }
        if self.carriers < self.max_carriers {
            w.carrier = Some(hold());
            self.carriers += 1;
        } else {
            self.stats.unheld += 1;
        }
        Admit::Folded { released: None }
    }

    /// Takes back the carriers `failed` says will not be acknowledged
    /// anyway (an input whose own alert failed): holding one would only
    /// keep its input from coming back, and its failed alerts from being
    /// tried again, until the window ends. Their windows' summaries then
    /// live in memory only, until a repeat carries them again.
    pub fn take_failed_carriers(&mut self, failed: impl Fn(&H) -> bool) -> Vec<H> {
        let mut taken = Vec::new();
        for (_, w) in self.open.iter_mut() {
            if w.carrier.as_ref().is_some_and(&failed) {
                taken.extend(w.carrier.take());
            }
        }
        for w in self.stale.iter_mut() {
            if w.carrier.as_ref().is_some_and(&failed) {
                taken.extend(w.carrier.take());
            }
        }
        self.carriers -= taken.len();
        taken
    }

    /// A window leaving the open set before its summary was made: kept for
    /// the next close when it has repeats to report.
    fn retire(&mut self, w: Window<H>) {
        if w.repeats > 0 {
            self.stale.push(w);
        }
    }

    /// Closes the windows whose time is up at `now`, returning a summary for
    /// each that counted repeats.
    pub fn close_due(&mut self, now: Instant) -> Vec<Closed<H>> {
        let mut closed: Vec<Window<H>> = std::mem::take(&mut self.stale);
        while self
            .open
            .peek_lru()
            .is_some_and(|(_, w)| now.duration_since(w.opened) >= self.window)
        {
            closed.extend(self.open.pop_lru().map(|(_, w)| w));
        }
        closed
            .into_iter()
            .filter_map(|w| self.summarise(w))
            .collect()
    }

    /// Closes every window (shutdown): summaries go out early rather than
    /// holding their carriers past the grace period.
    pub fn close_all(&mut self) -> Vec<Closed<H>> {
        self.closed = true;
        let mut closed: Vec<Window<H>> = std::mem::take(&mut self.stale);
        while let Some((_, w)) = self.open.pop_lru() {
            closed.push(w);
        }
        closed
            .into_iter()
            .filter_map(|w| self.summarise(w))
            .collect()
    }

    fn summarise(&mut self, w: Window<H>) -> Option<Closed<H>> {
        if w.carrier.is_some() {
            self.carriers -= 1;
        }
        let mut f = w.latest?;
        let mut h = Sha256::new();
        h.update(w.first_finding_id.as_bytes());
        h.update(b":summary:");
        h.update(w.nonce.to_le_bytes());
        f.finding_id = hex::encode(&h.finalize()[..16]);
        let names: Vec<String> = w.event_names.into_iter().collect();
        let listed = if names.is_empty() {
            "no event names".to_owned()
        } else if w.more_event_names {
            format!("{}, and others", names.join(", "))
        } else {
            names.join(", ")
        };
        let escalated = match w.escalated {
            0 => String::new(),
            n => format!(" {n} of them more severe than any before and sent at once."),
        };
        f.reason = format!(
            "{} more {} finding(s) for the same principal and source IP within {} s of the first alert ({listed}).{escalated}",
            w.repeats,
            f.rule,
            self.window.as_secs(),
        );
        f.summary = Some(Summary {
            count: w.repeats,
            escalated: w.escalated,
            first_event_time: w.first_time,
            last_event_time: w.last_time,
            event_names: names,
            window_secs: self.window.as_secs(),
        });
        Some(Closed {
            summary: f,
            carrier: w.carrier,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Record;

    /// A finding of a new event each call (its own eventID): calling again
    /// makes a repeat, using the same value again makes a retry.
    fn finding(rule: &str, name: &str, ip: &str, time: &str) -> Finding {
        static EVENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = EVENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let raw = format!(
            r#"{{"userIdentity":{{"type":"Root","arn":"arn:aws:iam::111122223333:root"}},"eventName":"{name}","sourceIPAddress":"{ip}","eventTime":"{time}","eventID":"{name}-{time}-{n}"}}"#
        );
        let rec = Record::parse(&raw).unwrap();
        Finding::new(&rec, rule, "t", Severity::Medium, String::new(), None)
    }

    fn with_severity(mut f: Finding, s: Severity) -> Finding {
        f.severity = s;
        f
    }

    #[test]
    fn first_goes_out_repeats_fold_into_one_summary() {
        let mut t: Throttle<u32> = Throttle::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let first = finding(
            "root-api-call",
            "ListUsers",
            "198.51.100.1",
            "2024-05-01T12:00:00Z",
        );
        assert_eq!(t.admit(&first, || 0, t0), Admit::Send);
        for i in 1..500u32 {
            let name = if i % 2 == 0 { "ListUsers" } else { "GetUser" };
            let time = format!("2024-05-01T12:{:02}:{:02}Z", i / 60, i % 60);
            let got = t.admit(
                &finding("root-api-call", name, "198.51.100.1", &time),
                move || i,
                t0 + Duration::from_secs(1),
            );
            // Each fold hands back the one before it: one input is held.
            let before = (i > 1).then(|| i - 1);
            assert_eq!(got, Admit::Folded { released: before });
            assert_eq!(t.held_inputs(), 1);
        }
        // Another key is its own window.
        assert_eq!(
            t.admit(
                &finding(
                    "root-api-call",
                    "ListUsers",
                    "198.51.100.2",
                    "2024-05-01T12:00:00Z"
                ),
                || 900,
                t0
            ),
            Admit::Send
        );
        assert!(t.close_due(t0 + Duration::from_secs(299)).is_empty());
        let closed = t.close_due(t0 + Duration::from_secs(300));
        assert_eq!(
            closed.len(),
            1,
            "the window without repeats closes silently"
        );
        let s = closed[0].summary.summary.as_ref().unwrap();
        assert_eq!(s.count, 499);
        assert_eq!(s.escalated, 0);
        assert_eq!(s.first_event_time.as_deref(), Some("2024-05-01T12:00:01Z"));
        assert_eq!(s.last_event_time.as_deref(), Some("2024-05-01T12:08:19Z"));
        assert_eq!(s.event_names, ["GetUser", "ListUsers"]);
        assert_eq!(closed[0].carrier, Some(499), "the latest repeat carries it");
        assert_eq!(t.open_windows(), 0);
        assert_eq!(t.held_inputs(), 0);
    }

    /// A finding the window sent whose delivery failed comes back with its
    /// input (the message returns, the event is read again): it goes out
    /// again at once, uncounted, instead of waiting for the summary. The
    /// same for an escalation.
    #[test]
    fn a_sent_finding_that_comes_back_goes_out_again() {
        let mut t: Throttle<u32> = Throttle::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let first = finding(
            "root-console-login",
            "ConsoleLogin",
            "198.51.100.1",
            "2024-05-01T12:00:00Z",
        );
        assert_eq!(t.admit(&first, || 0, at(0)), Admit::Send);
        assert_eq!(
            t.admit(&first, || 1, at(20)),
            Admit::Send,
            "a retry of the first"
        );
        let repeat = finding(
            "root-console-login",
            "ConsoleLogin",
            "198.51.100.1",
            "2024-05-01T12:00:05Z",
        );
        assert_eq!(
            t.admit(&repeat, || 2, at(21)),
            Admit::Folded { released: None }
        );
        let worse = with_severity(
            finding(
                "root-console-login",
                "ConsoleLogin",
                "198.51.100.1",
                "2024-05-01T12:00:09Z",
            ),
            Severity::Critical,
        );
        assert_eq!(t.admit(&worse, || 3, at(22)), Admit::Escalated);
        assert_eq!(
            t.admit(&worse, || 4, at(40)),
            Admit::Send,
            "a retry of the escalation"
        );
        let closed = t.close_due(at(300));
        let s = closed[0].summary.summary.as_ref().unwrap();
        assert_eq!((s.count, s.escalated), (2, 1), "retries are not repeats");
    }

    /// A carrier whose input failed anyway is handed back at once, so the
    /// input returns and its failed alerts are tried again; the summary
    /// still goes out, and a later repeat carries it again.
    #[test]
    fn a_failed_carrier_is_handed_back_at_once() {
        let mut t: Throttle<u32> = Throttle::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let f = |ip| finding("root-api-call", "ListUsers", ip, "t");
        for (ip, carrier) in [("198.51.100.1", 1), ("198.51.100.2", 2)] {
            assert_eq!(t.admit(&f(ip), || 0, t0), Admit::Send);
            assert!(t.admit(&f(ip), || carrier, t0).is_folded());
        }
        assert_eq!(t.held_inputs(), 2);
        assert_eq!(t.take_failed_carriers(|&c| c == 2), [2]);
        assert_eq!(t.held_inputs(), 1);
        assert!(t.take_failed_carriers(|&c| c == 2).is_empty());
        assert_eq!(
            t.admit(&f("198.51.100.2"), || 3, t0),
            Admit::Folded { released: None },
            "the next repeat carries the summary again"
        );
        let closed = t.close_all();
        let mut carriers: Vec<_> = closed.iter().map(|c| c.carrier).collect();
        carriers.sort();
        assert_eq!(carriers, [Some(1), Some(3)]);
        assert_eq!(t.held_inputs(), 0);
    }

    #[test]
    fn after_the_window_the_next_finding_goes_out_again() {
        let mut t: Throttle<()> = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let f = || {
            finding(
                "root-api-call",
                "ListUsers",
                "198.51.100.1",
                "2024-05-01T12:00:00Z",
            )
        };
        assert_eq!(t.admit(&f(), || (), t0), Admit::Send);
        assert!(
            t.admit(&f(), || (), t0 + Duration::from_secs(5))
                .is_folded()
        );
        assert_eq!(
            t.admit(&f(), || (), t0 + Duration::from_secs(11)),
            Admit::Send,
            "new window"
        );
        let closed = t.close_due(t0 + Duration::from_secs(12));
        assert_eq!(closed.len(), 1, "the replaced window's summary is not lost");
        assert_eq!(closed[0].summary.summary.as_ref().unwrap().count, 1);
        assert!(closed[0].carrier.is_some());
        assert_eq!(t.open_windows(), 1);
        assert!(
            t.admit(&f(), || (), t0 + Duration::from_secs(13))
                .is_folded()
        );
        let all = t.close_all();
        assert_eq!(all.len(), 1);
        let last = f();
        assert_eq!(
            t.admit(&last, || (), t0 + Duration::from_secs(14)),
            Admit::Send,
            "nothing folds after shutdown"
        );
        assert_ne!(all[0].summary.finding_id, last.finding_id);
    }

    #[test]
    fn keys_are_rule_principal_and_ip() {
        let mut t: Throttle<()> = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut admit = |rule, name, ip| t.admit(&finding(rule, name, ip, "t"), || (), t0);
        assert_eq!(admit("root-api-call", "A", "198.51.100.1"), Admit::Send);
        assert_eq!(
            admit("root-api-call-without-mfa", "A", "198.51.100.1"),
            Admit::Send
        );
        assert!(admit("root-api-call", "B", "198.51.100.1").is_folded());
        assert_eq!(admit("root-api-call", "A", "198.51.100.9"), Admit::Send);
    }

    /// A failed root CreateAccessKey (high) and then a successful one
    /// (critical) inside one window: the second goes out at once.
    #[test]
    fn a_finding_more_severe_than_any_sent_is_never_folded() {
        let mut t: Throttle<u32> = Throttle::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let key = |time, s| {
            with_severity(
                finding(
                    "root-access-key-created",
                    "CreateAccessKey",
                    "198.51.100.1",
                    time,
                ),
                s,
            )
        };
        assert_eq!(
            t.admit(&key("2024-05-01T12:00:00Z", Severity::High), || 1, at(0)),
            Admit::Send
        );
        assert_eq!(
            t.admit(&key("2024-05-01T12:00:01Z", Severity::High), || 2, at(1)),
            Admit::Folded { released: None }
        );
        assert_eq!(
            t.admit(
                &key("2024-05-01T12:00:02Z", Severity::Critical),
                || 3,
                at(2)
            ),
            Admit::Escalated
        );
        // Nothing more severe than critical was sent: folded again.
        assert_eq!(
            t.admit(
                &key("2024-05-01T12:00:03Z", Severity::Critical),
                || 4,
                at(3)
            ),
            Admit::Folded { released: Some(2) }
        );
        assert_eq!(
            t.admit(&key("2024-05-01T12:00:04Z", Severity::High), || 5, at(4)),
            Admit::Folded { released: Some(4) }
        );
        let closed = t.close_due(at(300));
        assert_eq!(closed.len(), 1);
        let s = closed[0].summary.summary.as_ref().unwrap();
        assert_eq!((s.count, s.escalated), (4, 1), "the escalation is counted");
        assert_eq!(closed[0].summary.severity, Severity::Critical);
        assert!(closed[0].summary.reason.contains("1 of them more severe"));
        assert_eq!(closed[0].carrier, Some(5));
    }

    /// The same first finding (a redelivered input) opening a second
    /// window with the same count gets another summary id.
    #[test]
    fn summary_ids_are_unique_per_window() {
        let f = finding(
            "root-api-call",
            "ListUsers",
            "198.51.100.1",
            "2024-05-01T12:00:00Z",
        );
        let mut ids = BTreeSet::new();
        let t0 = Instant::now();
        let repeat = || {
            finding(
                "root-api-call",
                "ListUsers",
                "198.51.100.1",
                "2024-05-01T12:00:01Z",
            )
        };
        for _ in 0..2 {
            let mut t: Throttle<()> = Throttle::new(Duration::from_secs(300));
            t.admit(&f, || (), t0);
            t.admit(&repeat(), || (), t0);
            let closed = t.close_all();
            assert_eq!(closed[0].summary.summary.as_ref().unwrap().count, 1);
            ids.insert(closed[0].summary.finding_id.clone());
        }
        let mut t: Throttle<()> = Throttle::new(Duration::from_secs(10));
        for s in [0, 20] {
            t.admit(&f, || (), t0 + Duration::from_secs(s));
            t.admit(&repeat(), || (), t0 + Duration::from_secs(s));
            for c in t.close_due(t0 + Duration::from_secs(s + 10)) {
                ids.insert(c.summary.finding_id);
            }
        }
        assert_eq!(ids.len(), 4, "{ids:?}");
    }

    #[test]
    fn held_inputs_are_bounded() {
        let mut t: Throttle<u32> = Throttle::with_limits(Duration::from_secs(300), MAX_WINDOWS, 2);
        let t0 = Instant::now();
        for (n, ip) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
            .into_iter()
            .enumerate()
        {
            let f = || finding("root-api-call", "ListUsers", ip, "t");
            assert_eq!(t.admit(&f(), || 0, t0), Admit::Send);
            assert_eq!(
                t.admit(&f(), || n as u32, t0),
                Admit::Folded { released: None }
            );
        }
        assert_eq!(t.held_inputs(), 2);
        assert_eq!(t.take_stats().unheld, 1, "the third fold was not held");
        let closed = t.close_all();
        assert_eq!(closed.len(), 3, "every window still has its summary");
        let mut carriers: Vec<_> = closed.iter().filter_map(|c| c.carrier).collect();
        carriers.sort();
        assert_eq!(carriers, [0, 1]);
        assert_eq!(t.held_inputs(), 0);
    }

    proptest::proptest! {
        /// Whatever arrives in whatever order: every held input comes back
        /// exactly once (handed back by a later fold or with its window's
        /// summary), the bounds hold at every step, and the summaries count
        /// every finding that was not sent as a first.
        #[test]
        fn every_held_input_comes_back_once_and_the_bounds_hold(
            steps in proptest::collection::vec(
                (0u8..6, 0u8..4, 0u64..40, proptest::bool::ANY),
                1..300,
            ),
            max_windows in 1usize..5,
            max_carriers in 0usize..4,
        ) {
            let mut t: Throttle<u32> =
                Throttle::with_limits(Duration::from_secs(30), max_windows, max_carriers);
            let t0 = Instant::now();
            let mut now = 0u64;
            let (mut held, mut back) = (BTreeSet::new(), Vec::new());
            let (mut firsts, mut counted) = (0u64, 0u64);
            let mut admitted = 0u64;
            for (n, (key, severity, advance, close)) in steps.into_iter().enumerate() {
                now += advance;
                let at = t0 + Duration::from_secs(now);
                if close {
                    for c in t.close_due(at) {
                        counted += c.summary.summary.as_ref().unwrap().count;
                        back.extend(c.carrier);
                    }
                }
                let f = with_severity(
                    finding("root-api-call", "ListUsers", &format!("198.51.100.{key}"), "t"),
                    Severity::ALL[usize::from(severity)],
                );
                admitted += 1;
                let id = n as u32;
                match t.admit(&f, || { held.insert(id); id }, at) {
                    Admit::Send => firsts += 1,
                    Admit::Escalated => {}
                    Admit::Folded { released } => back.extend(released),
                }
                proptest::prop_assert!(t.held_inputs() <= max_carriers);
                proptest::prop_assert!(t.open_windows() <= max_windows);
            }
            for c in t.close_all() {
                counted += c.summary.summary.as_ref().unwrap().count;
                back.extend(c.carrier);
            }
            proptest::prop_assert_eq!(t.held_inputs(), 0);
            let returned: BTreeSet<u32> = back.iter().copied().collect();
            proptest::prop_assert_eq!(returned.len(), back.len(), "an input came back twice");
            proptest::prop_assert_eq!(returned, held);
            proptest::prop_assert_eq!(firsts + counted, admitted);
        }
    }

    #[test]
    fn open_windows_are_bounded_and_the_oldest_closes_early() {
        let mut t: Throttle<u32> = Throttle::with_limits(Duration::from_secs(300), 3, 100);
        let t0 = Instant::now();
        let f = |ip| finding("root-api-call", "ListUsers", ip, "t");
        assert_eq!(t.admit(&f("198.51.100.1"), || 0, t0), Admit::Send);
        assert!(t.admit(&f("198.51.100.1"), || 1, t0).is_folded());
        for ip in ["198.51.100.2", "198.51.100.3", "198.51.100.4"] {
            assert_eq!(t.admit(&f(ip), || 0, t0), Admit::Send);
        }
        assert_eq!(t.open_windows(), 3);
        assert_eq!(t.take_stats().evicted, 1);
        let closed = t.close_due(t0);
        assert_eq!(closed.len(), 1, "the evicted window's summary goes out");
        assert_eq!(closed[0].summary.source_ip.as_deref(), Some("198.51.100.1"));
        assert_eq!(closed[0].carrier, Some(1));
        assert_eq!(t.held_inputs(), 0);
        // Its key starts a new window.
        assert_eq!(t.admit(&f("198.51.100.1"), || 0, t0), Admit::Send);
    }
}
