//! Acknowledgement tokens. Every unit of source input (an SQS message, a
//! file, a CloudWatch Logs event) is tracked by [`InputHandle`]s: whatever
//! still has work to do for it holds one. Each handle ends explicitly:
//! [`InputHandle::done`] (my part was handled), [`InputHandle::fail`] or
//! [`InputHandle::release`]. When the last handle is gone, the source
//! learns the outcome and only then
//! deletes, checkpoints or retries.
//!
//! Only an explicit end counts as handled: a handle dropped without one (a
//! panic unwinding through its holder, a delivery task aborted or dropped
//! with its runtime) fails the unit as `abandoned`. A crash before the end
//! loses nothing: the input was never acknowledged.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// How a unit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every finding delivered (or durably dead-lettered): acknowledge.
    Done,
    /// Something was not handled; `reason` is a bounded label
    /// (`decode`, `s3`, `delivery`, `rejected`, `abandoned`). Do not
    /// acknowledge.
    Failed(&'static str),
    /// Work was cut short by shutdown: do not acknowledge; hand the input
    /// back as soon as possible.
    Released,
}

/// The reason a unit fails with when a handle is dropped without an
/// explicit end.
pub const ABANDONED: &str = "abandoned";

const OK: u8 = 0;
const RELEASED: u8 = 1;
const FAILED: u8 = 2;

type Callback = Box<dyn FnOnce(Outcome) + Send>;

struct Inner {
    state: AtomicU8,
    reason: Mutex<&'static str>,
    on_done: Mutex<Option<Callback>>,
    dead_letter: Option<crate::dead_letter::Target>,
}

impl Inner {
    fn fail(&self, reason: &'static str) {
        if self.state.swap(FAILED, Ordering::AcqRel) != FAILED {
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason;
        }
    }
}

/// One handle on a unit of input. Cloning gives another handle that must
/// end on its own.
pub struct InputHandle {
    inner: Arc<Inner>,
    /// Whether this handle ended explicitly.
    settled: AtomicBool,
}

impl Clone for InputHandle {
    fn clone(&self) -> Self {
        InputHandle {
            inner: Arc::clone(&self.inner),
            settled: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for InputHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InputHandle(state={}, settled={})",
            self.inner.state.load(Ordering::Relaxed),
            self.settled.load(Ordering::Relaxed)
        )
    }
}

impl InputHandle {
    pub fn new(on_done: impl FnOnce(Outcome) + Send + 'static) -> InputHandle {
        InputHandle::build(on_done, None)
    }

    /// A unit whose undeliverable findings may be written to a dead-letter
    /// file instead of failing it (sources without a dead-letter queue).
    pub fn with_dead_letter(
        on_done: impl FnOnce(Outcome) + Send + 'static,
        dead_letter: crate::dead_letter::Target,
    ) -> InputHandle {
        InputHandle::build(on_done, Some(dead_letter))
    }

    fn build(
        on_done: impl FnOnce(Outcome) + Send + 'static,
        dead_letter: Option<crate::dead_letter::Target>,
    ) -> InputHandle {
        InputHandle {
            inner: Arc::new(Inner {
                state: AtomicU8::new(OK),
                reason: Mutex::new(""),
                on_done: Mutex::new(Some(Box::new(on_done))),
                dead_letter,
            }),
            settled: AtomicBool::new(false),
        }
    }

    /// Where this unit's undeliverable findings go, if anywhere.
    pub fn dead_letter(&self) -> Option<&crate::dead_letter::Target> {
        self.inner.dead_letter.as_ref()
    }

    /// Ends this handle: its part was handled. The unit is Done when every
    /// handle ended this way.
    pub fn done(self) {
        self.settled.store(true, Ordering::Release);
    }

    /// Marks the unit as not handled and ends this handle. The first reason
    /// given is kept. Calling [`InputHandle::done`] afterwards changes nothing.
    pub fn fail(&self, reason: &'static str) {
        self.inner.fail(reason);
        self.settled.store(true, Ordering::Release);
    }

    /// Marks the unit as cut short by shutdown (unless it already failed)
    /// and ends this handle.
    pub fn release(&self) {
        let _ =
            self.inner
                .state
                .compare_exchange(OK, RELEASED, Ordering::AcqRel, Ordering::Acquire);
        self.settled.store(true, Ordering::Release);
    }

    /// Whether the unit has failed: it will not be acknowledged, whatever
    /// its other handles do.
    pub fn is_failed(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == FAILED
    }

    /// Ends this handle with `outcome` (passing on an inner unit's end).
    pub fn end(self, outcome: Outcome) {
        match outcome {
            Outcome::Done => self.done(),
            Outcome::Failed(reason) => self.fail(reason),
            Outcome::Released => self.release(),
        }
    }
}

impl Drop for InputHandle {
    fn drop(&mut self) {
        if !*self.settled.get_mut() {
            crate::telemetry::ack_abandoned();
            self.inner.fail(ABANDONED);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let outcome = match *self.state.get_mut() {
            OK => Outcome::Done,
            RELEASED => Outcome::Released,
            _ => Outcome::Failed(
                self.reason
                    .get_mut()
                    .map(|r| *r)
                    .unwrap_or_else(|e| *e.into_inner()),
            ),
        };
        let cb = match self.on_done.get_mut() {
            Ok(cb) => cb.take(),
            Err(e) => e.into_inner().take(),
        };
        if let Some(cb) = cb {
            cb(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn unit() -> (InputHandle, mpsc::Receiver<Outcome>) {
        let (tx, rx) = mpsc::channel();
        (InputHandle::new(move |o| tx.send(o).unwrap()), rx)
    }

    #[test]
    fn completes_when_the_last_holder_is_done() {
        let (u, rx) = unit();
        let held = u.clone();
        u.done();
        assert!(rx.try_recv().is_err(), "still held");
        held.done();
        assert_eq!(rx.try_recv().unwrap(), Outcome::Done);
    }

    #[test]
    fn failure_wins_over_release_and_keeps_the_first_reason() {
        let (u, rx) = unit();
        u.clone().release();
        u.clone().fail("s3");
        u.clone().fail("delivery");
        u.clone().release();
        u.done();
        assert_eq!(rx.try_recv().unwrap(), Outcome::Failed("s3"));
        let (u, rx) = unit();
        let h = u.clone();
        h.release();
        drop(h);
        u.done();
        assert_eq!(rx.try_recv().unwrap(), Outcome::Released);
    }

    #[test]
    fn a_handle_dropped_without_an_end_fails_the_unit() {
        let (u, rx) = unit();
        let held = u.clone();
        u.done();
        drop(held);
        assert_eq!(rx.try_recv().unwrap(), Outcome::Failed(ABANDONED));
    }

    #[test]
    fn a_handle_dropped_by_a_panic_fails_the_unit() {
        let (u, rx) = unit();
        let held = u.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _mine = held;
            panic!("a delivery bug");
        }));
        assert!(r.is_err());
        assert!(rx.try_recv().is_err(), "the source's handle is still out");
        u.done();
        assert_eq!(rx.try_recv().unwrap(), Outcome::Failed(ABANDONED));
    }

    #[test]
    fn a_task_aborted_while_holding_a_handle_fails_the_unit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (u, rx) = unit();
        let held = u.clone();
        rt.block_on(async move {
            let task = tokio::spawn(async move {
                std::future::pending::<()>().await;
                held.done();
            });
            tokio::task::yield_now().await;
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
        });
        u.done();
        assert_eq!(rx.try_recv().unwrap(), Outcome::Failed(ABANDONED));
    }
}
