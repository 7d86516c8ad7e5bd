//! The delivered-event cache (DESIGN section 4): a bounded LRU of event keys
//! whose alerts were delivered. Keys enter only after delivery, so an event
//! whose alert failed alerts again when it comes back.

use std::num::NonZeroUsize;

use lru::LruCache;

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
    /// a burst of duplicates must not keep an old key alive forever.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> EventKey {
        EventKey::new(&i.to_string(), "t", "n", "a")
    }

    #[test]
    fn bounded_and_evicts_oldest() {
        let mut c = DeliveredCache::new(NonZeroUsize::new(3).unwrap());
        for i in 0..5 {
            c.insert(key(i));
        }
        assert_eq!(c.len(), 3);
        assert!(!c.contains(&key(0)) && !c.contains(&key(1)));
        assert!(c.contains(&key(2)) && c.contains(&key(4)));
    }
}
