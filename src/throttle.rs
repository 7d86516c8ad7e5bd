//! Throttle windows (DESIGN section 4): per (rule, principal, source IP),
//! the first finding is sent at once; repeats inside the window are counted
//! and sent as one summary when the window ends. A root session of 500
//! calls gives a handful of alerts, not 500.
//!
//! Repeats are not forgotten: each holds its event's acknowledgement until
//! the summary that counts it has been delivered. The clock is passed in.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::finding::{Finding, Summary};

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
    first_finding_id: String,
    repeats: u64,
    first_time: Option<String>,
    last_time: Option<String>,
    event_names: BTreeSet<String>,
    latest: Option<Finding>,
    held: Vec<H>,
}

/// Whether a finding goes out now or was folded into an open window.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Send,
    Folded,
}

/// A closed window's summary and what it held.
pub struct Closed<H> {
    pub summary: Finding,
    pub held: Vec<H>,
}

/// `H` is whatever must live until the summary is delivered (the repeats'
/// acknowledgement guards).
pub struct Throttle<H> {
    window: Duration,
    open: HashMap<Key, Window<H>>,
    /// Windows replaced after their end before the ticker closed them.
    stale: Vec<Window<H>>,
    /// After `close_all` (shutdown) nothing is folded any more.
    closed: bool,
}

impl<H> Throttle<H> {
    pub fn new(window: Duration) -> Self {
        Throttle {
            window,
            open: HashMap::new(),
            stale: Vec::new(),
            closed: false,
        }
    }

    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Admits `f` at `now`: the first of its key in a window is sent; later
    /// ones are folded and `hold()` is kept until the window's summary goes.
    /// `hold` is called only for a folded finding, so a sent one leaves
    /// nothing behind that would have to be ended.
    pub fn admit(&mut self, f: &Finding, hold: impl FnOnce() -> H, now: Instant) -> Admit {
        if self.closed {
            return Admit::Send;
        }
        let key = Key::of(f);
        match self.open.get_mut(&key) {
            Some(w) if now.duration_since(w.opened) < self.window => {
                w.repeats += 1;
                if w.first_time.is_none() {
                    w.first_time = f.event_time.clone();
                }
                w.last_time = f.event_time.clone().or(w.last_time.take());
                if let Some(name) = &f.event_name {
                    w.event_names.insert(name.clone());
                }
                if w.latest.as_ref().is_none_or(|l| f.severity >= l.severity) {
                    w.latest = Some(f.clone());
                }
                w.held.push(hold());
                Admit::Folded
            }
            _ => {
                // No window, or one past its end that the ticker has not
                // closed yet: its summary still goes out on the next close.
                if let Some(old) = self.open.remove(&key) {
                    self.stale.push(old);
                }
                self.open.insert(
                    key,
                    Window {
                        opened: now,
                        first_finding_id: f.finding_id.clone(),
                        repeats: 0,
                        first_time: None,
                        last_time: None,
                        event_names: BTreeSet::new(),
                        latest: None,
                        held: Vec::new(),
                    },
                );
                Admit::Send
            }
        }
    }
}

impl<H> Throttle<H> {
    /// Closes the windows whose time is up at `now`, returning a summary for
    /// each that folded repeats.
    pub fn close_due(&mut self, now: Instant) -> Vec<Closed<H>> {
        let window = self.window;
        let due: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, w)| now.duration_since(w.opened) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        let mut closed: Vec<Window<H>> = std::mem::take(&mut self.stale);
        closed.extend(due.into_iter().filter_map(|k| self.open.remove(&k)));
        closed
            .into_iter()
            .filter_map(|w| self.summarise(w))
            .collect()
    }

    /// Closes every window (shutdown): summaries go out early rather than
    /// holding their repeats' input past the grace period.
    pub fn close_all(&mut self) -> Vec<Closed<H>> {
        self.closed = true;
        let mut closed: Vec<Window<H>> = std::mem::take(&mut self.stale);
        closed.extend(self.open.drain().map(|(_, w)| w));
        closed
            .into_iter()
            .filter_map(|w| self.summarise(w))
            .collect()
    }

    fn summarise(&self, w: Window<H>) -> Option<Closed<H>> {
        let mut f = w.latest?;
        let mut h = Sha256::new();
        h.update(w.first_finding_id.as_bytes());
        h.update(b":summary:");
        h.update(w.repeats.to_le_bytes());
        f.finding_id = hex::encode(&h.finalize()[..16]);
        let names: Vec<String> = w.event_names.into_iter().collect();
        f.reason = format!(
            "{} more {} finding(s) for the same principal and source IP within {} s of the first alert ({}).",
            w.repeats,
            f.rule,
            self.window.as_secs(),
            if names.is_empty() {
                "no event names".to_owned()
            } else {
                names.join(", ")
            },
        );
        f.summary = Some(Summary {
            count: w.repeats,
            first_event_time: w.first_time,
            last_event_time: w.last_time,
            event_names: names,
            window_secs: self.window.as_secs(),
        });
        Some(Closed {
            summary: f,
            held: w.held,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Record;
    use crate::finding::Severity;

    fn finding(rule: &str, name: &str, ip: &str, time: &str) -> Finding {
        let raw = format!(
            r#"{{"userIdentity":{{"type":"Root","arn":"arn:aws:iam::111122223333:root"}},"eventName":"{name}","sourceIPAddress":"{ip}","eventTime":"{time}","eventID":"{name}-{time}"}}"#
        );
        let rec = Record::parse(&raw).unwrap();
        Finding::new(&rec, rule, "t", Severity::Medium, String::new(), None)
    }

    #[test]
    fn first_goes_out_repeats_fold_into_one_summary() {
        let mut t: Throttle<u32> = Throttle::new(Duration::from_secs(300));
        let t0 = Instant::now();
        assert_eq!(
            t.admit(
                &finding(
                    "root-api-call",
                    "ListUsers",
                    "198.51.100.1",
                    "2024-05-01T12:00:00Z"
                ),
                || 0,
                t0
            ),
            Admit::Send
        );
        for i in 1..500u32 {
            let name = if i % 2 == 0 { "ListUsers" } else { "GetUser" };
            let time = format!("2024-05-01T12:{:02}:{:02}Z", i / 60, i % 60);
            assert_eq!(
                t.admit(
                    &finding("root-api-call", name, "198.51.100.1", &time),
                    move || i,
                    t0 + Duration::from_secs(1)
                ),
                Admit::Folded
            );
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
        assert_eq!(s.first_event_time.as_deref(), Some("2024-05-01T12:00:01Z"));
        assert_eq!(s.last_event_time.as_deref(), Some("2024-05-01T12:08:19Z"));
        assert_eq!(s.event_names, ["GetUser", "ListUsers"]);
        assert_eq!(closed[0].held.len(), 499);
        assert_eq!(t.open_windows(), 0);
    }

    #[test]
    fn after_the_window_the_next_finding_goes_out_again() {
        let mut t: Throttle<()> = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let f = finding(
            "root-api-call",
            "ListUsers",
            "198.51.100.1",
            "2024-05-01T12:00:00Z",
        );
        assert_eq!(t.admit(&f, || (), t0), Admit::Send);
        assert_eq!(
            t.admit(&f, || (), t0 + Duration::from_secs(5)),
            Admit::Folded
        );
        assert_eq!(
            t.admit(&f, || (), t0 + Duration::from_secs(11)),
            Admit::Send,
            "new window"
        );
        let closed = t.close_due(t0 + Duration::from_secs(12));
        assert_eq!(closed.len(), 1, "the replaced window's summary is not lost");
        assert_eq!(closed[0].summary.summary.as_ref().unwrap().count, 1);
        assert_eq!(t.open_windows(), 1);
        assert_eq!(
            t.admit(&f, || (), t0 + Duration::from_secs(13)),
            Admit::Folded
        );
        let all = t.close_all();
        assert_eq!(all.len(), 1);
        assert_eq!(
            t.admit(&f, || (), t0 + Duration::from_secs(14)),
            Admit::Send,
            "nothing folds after shutdown"
        );
        assert_ne!(all[0].summary.finding_id, f.finding_id);
    }

    #[test]
    fn keys_are_rule_principal_and_ip() {
        let mut t: Throttle<()> = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(
            t.admit(
                &finding("root-api-call", "A", "198.51.100.1", "t"),
                || (),
                t0
            ),
            Admit::Send
        );
        assert_eq!(
            t.admit(
                &finding("root-api-call-without-mfa", "A", "198.51.100.1", "t"),
                || (),
                t0
            ),
            Admit::Send
        );
        assert_eq!(
            t.admit(
                &finding("root-api-call", "B", "198.51.100.1", "t2"),
                || (),
                t0
            ),
            Admit::Folded
        );
        assert_eq!(
            t.admit(
                &finding("root-api-call", "A", "198.51.100.9", "t"),
                || (),
                t0
            ),
            Admit::Send
        );
    }
}
