//! Acknowledgement tokens. Every unit of source input (an SQS message, a
//! file, a CloudWatch Logs page) is a [`Unit`]; whatever still has work to do
//! for it holds a clone. When the last clone drops, the source learns the
//! outcome and only then deletes, checkpoints or retries. A crash before
//! that loses nothing: the input was never acknowledged.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// How a unit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every finding delivered (or permanently rejected and recorded): acknowledge.
    Done,
    /// Something was not handled; `reason` is a bounded label
    /// (`decode`, `s3`, `delivery`). Do not acknowledge.
    Failed(&'static str),
    /// Work was cut short by shutdown: do not acknowledge; hand the input
    /// back as soon as possible.
    Released,
}

const OK: u8 = 0;
const RELEASED: u8 = 1;
const FAILED: u8 = 2;

type Callback = Box<dyn FnOnce(Outcome) + Send>;

struct Inner {
    state: AtomicU8,
    reason: Mutex<&'static str>,
    on_done: Mutex<Option<Callback>>,
}

#[derive(Clone)]
pub struct Unit(Arc<Inner>);

impl std::fmt::Debug for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unit(state={})", self.0.state.load(Ordering::Relaxed))
    }
}

impl Unit {
    pub fn new(on_done: impl FnOnce(Outcome) + Send + 'static) -> Unit {
        Unit(Arc::new(Inner {
            state: AtomicU8::new(OK),
            reason: Mutex::new(""),
            on_done: Mutex::new(Some(Box::new(on_done))),
        }))
    }

    /// Marks the unit as not handled. The first reason given is kept.
    pub fn fail(&self, reason: &'static str) {
        if self.0.state.swap(FAILED, Ordering::AcqRel) != FAILED {
            *self.0.reason.lock().expect("unit lock") = reason;
        }
    }

    /// Marks the unit as cut short by shutdown, unless it already failed.
    pub fn release(&self) {
        let _ = self
            .0
            .state
            .compare_exchange(OK, RELEASED, Ordering::AcqRel, Ordering::Acquire);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let outcome = match *self.state.get_mut() {
            OK => Outcome::Done,
            RELEASED => Outcome::Released,
            _ => Outcome::Failed(self.reason.get_mut().map(|r| *r).unwrap_or("unknown")),
        };
        if let Some(cb) = self.on_done.get_mut().ok().and_then(Option::take) {
            cb(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn unit() -> (Unit, mpsc::Receiver<Outcome>) {
        let (tx, rx) = mpsc::channel();
        (Unit::new(move |o| tx.send(o).unwrap()), rx)
    }

    #[test]
    fn completes_when_the_last_holder_drops() {
        let (u, rx) = unit();
        let held = u.clone();
        drop(u);
        assert!(rx.try_recv().is_err(), "still held");
        drop(held);
        assert_eq!(rx.try_recv().unwrap(), Outcome::Done);
    }

    #[test]
    fn failure_wins_over_release_and_keeps_the_first_reason() {
        let (u, rx) = unit();
        u.release();
        u.fail("s3");
        u.fail("delivery");
        u.release();
        drop(u);
        assert_eq!(rx.try_recv().unwrap(), Outcome::Failed("s3"));
        let (u, rx) = unit();
        u.release();
        drop(u);
        assert_eq!(rx.try_recv().unwrap(), Outcome::Released);
    }
}
