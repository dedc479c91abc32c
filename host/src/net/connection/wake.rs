//! The connection task's wake-up for state changes. Only that task waits,
//! so a flag and one waker slot do what a `Notify` would, without its lock
//! and waiter list on every wait.
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;

use futures_util::task::AtomicWaker;

/// Tells one task that the state it watches changed.
#[derive(Debug, Default)]
pub(super) struct Wake {
    /// Set by a change the task has not looked at yet.
    woken: AtomicBool,
    waker: AtomicWaker,
}

impl Wake {
    /// Tells the task the state changed; remembered if it is not waiting.
    pub(super) fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether the state changed since the last look; if not, `cx` is woken
    /// when it does.
    pub(super) fn poll_woken(&self, cx: &mut Context<'_>) -> bool {
        // Registered before the flag is read, so a change in between is
        // seen either now or as a wake-up.
        self.waker.register(cx.waker());
        self.woken.swap(false, Ordering::Acquire)
    }
}
