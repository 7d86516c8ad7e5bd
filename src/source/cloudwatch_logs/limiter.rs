//! The request rate limiter every log group of a source shares.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces requests evenly at `per_sec`, shared by every group of a source:
/// each caller reserves the next free slot, so no half-open second ever
/// holds more than `per_sec` requests and callers are served in order.
/// FilterLogEvents has a per-account, per-region quota (5 requests per
/// second by default, per AWS's knowledge-center article on CloudWatch Logs
/// throttling), shared with every other reader of the account.
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn new(per_sec: NonZeroU32) -> Self {
        RateLimiter {
            interval: Duration::from_secs(1) / per_sec.get(),
            next: Mutex::new(None),
        }
    }

    /// Reserves the first free slot at or after `now` and returns it.
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().expect("limiter lock");
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + self.interval);
        slot
    }

    pub async fn acquire(&self) {
        tokio::time::sleep_until(self.reserve(Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_spaces_requests_and_keeps_no_burst() {
        let l = RateLimiter::new(NonZeroU32::new(4).unwrap());
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..9).map(|_| l.reserve(t0) - t0).collect();
        let ms: Vec<u128> = slots.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [0, 250, 500, 750, 1000, 1250, 1500, 1750, 2000]);
        // No half-open second holds more than 4.
        for w in slots.windows(5) {
            assert!(w[4] - w[0] >= Duration::from_secs(1));
        }
        // Idle time does not bank requests for a burst later.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(l.reserve(later), later);
        assert_eq!(l.reserve(later), later + Duration::from_millis(250));
    }
}
