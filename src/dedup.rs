//! Dedup (docs/outputs.md, "Duplicates"): a bounded LRU of event keys whose alerts were
//! delivered, plus the keys being delivered right now. A key enters the
//! delivered cache only after delivery succeeded, so an event whose alert
//! failed alerts again when it comes back. A copy that arrives while the
//! first is still being delivered waits on it: its input is acknowledged
//! only if the first delivery succeeds.
//!
//! [`SentTo`] remembers which sinks took which finding, so an input that
//! comes back after one sink refused it alerts only the sinks that did not
//! take it, not the ones that already did.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::ack::{InputHandle, Outcome};
use crate::event::EventKey;

pub struct DeliveredCache {
    keys: LruCache<EventKey, ()>,
}

impl DeliveredCache {
    pub fn new(capacity: NonZeroUsize) -> Self {
        DeliveredCache {
            keys: LruCache::new(capacity),
        }
    }

    /// Whether the event was delivered recently. Does not refresh the key:
    /// a stream of duplicates must not keep an old key alive forever.
    pub fn contains(&self, key: &EventKey) -> bool {
        self.keys.contains(key)
    }

    /// Records a delivered event; the least recently delivered key makes room.
    pub fn insert(&mut self, key: EventKey) {
        self.keys.put(key, ());
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A bounded LRU of (finding id, sink) pairs delivered. Consulted before
/// each delivery: a finding is never sent twice to a sink that took it,
/// while the input is retried for the sinks that did not.
pub struct SentTo {
    sent: Mutex<LruCache<(String, usize), ()>>,
}

impl SentTo {
    pub fn new(capacity: NonZeroUsize) -> Self {
        SentTo {
            sent: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn contains(&self, finding_id: &str, sink: usize) -> bool {
        self.sent
            .lock()
            .expect("sent-to lock")
            .contains(&(finding_id.to_owned(), sink))
    }

    pub fn insert(&self, finding_id: &str, sink: usize) {
        self.sent
            .lock()
            .expect("sent-to lock")
            .put((finding_id.to_owned(), sink), ());
    }
}

/// What [`Dedup::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First sight: the caller delivers and later calls [`Dedup::complete`].
    Fresh,
    /// Delivered recently: drop it.
    Delivered,
    /// Being delivered now: the caller's unit was attached to that delivery.
    InFlight,
}

struct State {
    delivered: DeliveredCache,
    in_flight: HashMap<EventKey, Vec<InputHandle>>,
}

pub struct Dedup {
    state: Mutex<State>,
}

impl Dedup {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Dedup {
            state: Mutex::new(State {
                delivered: DeliveredCache::new(capacity),
                in_flight: HashMap::new(),
            }),
        }
    }

    pub fn claim(&self, key: EventKey, unit: &InputHandle) -> Claim {
        let mut s = self.state.lock().expect("dedup lock");
        if s.delivered.contains(&key) {
            return Claim::Delivered;
        }
        match s.in_flight.get_mut(&key) {
            Some(waiting) => {
                waiting.push(unit.clone());
                Claim::InFlight
            }
            None => {
                s.in_flight.insert(key, Vec::new());
                Claim::Fresh
            }
        }
    }

    /// Ends a delivery claimed with [`Claim::Fresh`]. Only a delivered
    /// event is remembered; copies that waited on it end the same way.
    pub fn complete(&self, key: EventKey, outcome: Outcome) {
        let waiting = {
            let mut s = self.state.lock().expect("dedup lock");
            if outcome == Outcome::Done {
                s.delivered.insert(key);
            }
            s.in_flight.remove(&key).unwrap_or_default()
        };
        // The waiting units end here, outside the lock.
        for unit in waiting {
            unit.end(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn key(i: u32) -> EventKey {
        EventKey::new(&i.to_string(), "t", "n", "a")
    }

    #[test]
    fn cache_is_bounded_and_evicts_oldest() {
        let mut c = DeliveredCache::new(NonZeroUsize::new(3).unwrap());
        for i in 0..5 {
            c.insert(key(i));
        }
        assert_eq!(c.len(), 3);
        assert!(!c.contains(&key(0)) && !c.contains(&key(1)));
        assert!(c.contains(&key(2)) && c.contains(&key(4)));
    }

    fn unit() -> (InputHandle, mpsc::Receiver<Outcome>) {
        let (tx, rx) = mpsc::channel();
        (
            InputHandle::new(move |o| {
                let _ = tx.send(o);
            }),
            rx,
        )
    }

    #[test]
    fn sent_to_remembers_finding_and_sink_pairs_boundedly() {
        let s = SentTo::new(NonZeroUsize::new(2).unwrap());
        s.insert("f1", 0);
        assert!(s.contains("f1", 0));
        assert!(!s.contains("f1", 1), "another sink still needs it");
        s.insert("f2", 0);
        s.insert("f3", 0);
        assert!(!s.contains("f1", 0), "the oldest makes room");
    }

    #[test]
    fn delivered_only_after_success() {
        let d = Dedup::new(NonZeroUsize::new(10).unwrap());
        let (u, _) = unit();
        assert_eq!(d.claim(key(1), &u), Claim::Fresh);
        d.complete(key(1), Outcome::Failed("delivery"));
        assert_eq!(
            d.claim(key(1), &u),
            Claim::Fresh,
            "a failed delivery is not remembered"
        );
        d.complete(key(1), Outcome::Done);
        assert_eq!(d.claim(key(1), &u), Claim::Delivered);
    }

    #[test]
    fn copies_in_flight_share_the_outcome() {
        let d = Dedup::new(NonZeroUsize::new(10).unwrap());
        let (first, _) = unit();
        let (copy, rx) = unit();
        assert_eq!(d.claim(key(7), &first), Claim::Fresh);
        assert_eq!(d.claim(key(7), &copy), Claim::InFlight);
        copy.done();
        assert!(
            rx.try_recv().is_err(),
            "the copy waits for the first delivery"
        );
        d.complete(key(7), Outcome::Failed("delivery"));
        assert_eq!(rx.try_recv().unwrap(), Outcome::Failed("delivery"));

        let (copy, rx) = unit();
        assert_eq!(d.claim(key(8), &first), Claim::Fresh);
        assert_eq!(d.claim(key(8), &copy), Claim::InFlight);
        copy.done();
        d.complete(key(8), Outcome::Done);
        assert_eq!(rx.try_recv().unwrap(), Outcome::Done);

        // Cut short by shutdown: the copy is handed back too, not failed.
        let (copy, rx) = unit();
        assert_eq!(d.claim(key(9), &first), Claim::Fresh);
        assert_eq!(d.claim(key(9), &copy), Claim::InFlight);
        copy.done();
        d.complete(key(9), Outcome::Released);
        assert_eq!(rx.try_recv().unwrap(), Outcome::Released);
        assert_eq!(
            d.claim(key(9), &first),
            Claim::Fresh,
            "not remembered as delivered"
        );
    }
}
