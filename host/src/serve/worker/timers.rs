//! Firing the guests' timers. The shared instance's are fired by a task of
//! the worker's own, which takes the instance's lock like any callback; a
//! connection's own instance's (the per-connection model) in that
//! connection's task, between its other callbacks. Either way `on-timer`
//! never runs beside another callback of the same instance, and the timers
//! end with the instance.
use std::sync::{Arc, Weak};

use tokio::sync::Notify;

use super::Worker;
use crate::base::sync::lock;
use crate::net::{Connection, Ready};
use crate::serve::slot::{Home, Slot};
use crate::telemetry::Callback;
use crate::wasm::{Outcome, TimerId, Timers};

/// The shared instance's timers as its worker last made them: which
/// instance (its generation) and its timers, or none after a trap.
#[derive(Debug, Default)]
pub(super) struct TimerSlot {
    current: std::sync::Mutex<Option<(u64, Arc<Timers>)>>,
    /// Wakes the firing task when `current` changes or the worker goes.
    changed: Arc<Notify>,
}

impl TimerSlot {
    pub(super) fn set(&self, current: Option<(u64, Arc<Timers>)>) {
        *lock(&self.current) = current;
        self.changed.notify_one();
    }

    fn get(&self) -> Option<(u64, Arc<Timers>)> {
        lock(&self.current).clone()
    }

    pub(super) fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }
}

impl Drop for Worker {
    /// Ends the task firing the shared instance's timers, if it waits for
    /// an instance.
    fn drop(&mut self) {
        self.shared_timers.changed.notify_one();
    }
}

/// Fires the shared instance's timers for as long as `worker` lives,
/// holding it only while a timer fires.
pub(super) async fn fire_shared(worker: Weak<Worker>, changed: Arc<Notify>) {
    loop {
        let Some(current) = worker.upgrade().map(|worker| worker.shared_timers.get()) else { return };
        let Some((generation, timers)) = current else {
            // No instance since a trap: wait for the next one.
            changed.notified().await;
            continue;
        };
        // `None`: the instance is gone; look for its successor.
        let Some(timer) = timers.next_due().await else { continue };
        let Some(worker) = worker.upgrade() else { return };
        let mut slot = worker.shared.slot.lock().await;
        // A timer of an instance replaced meanwhile fires no more.
        if let Some(instance) = slot.current(generation) {
            let outcome = instance.timer(timer).await;
            worker.settle_timer(&mut slot, timer, outcome);
        }
    }
}

/// What a connection's task does next.
pub(super) enum Step {
    /// What its connection asks for.
    Ready(Ready),
    /// A timer of its own instance is due.
    Due(TimerId),
}

/// Waits for whichever comes first: `conn` needs its task, or one of
/// `timers` is due.
pub(super) async fn ready_or_due(conn: &Connection, timers: Arc<Timers>) -> Step {
    tokio::select! {
        // Timers first: a connection that always has input does not starve
        // them.
        biased;
        Some(timer) = timers.next_due() => Step::Due(timer),
        ready = conn.ready() => Step::Ready(ready),
    }
}

impl Worker {
    /// Fires `timer` of the connection's own instance of `generation`.
    pub(super) async fn fire_own_timer(&self, home: &Home, generation: u64, timer: TimerId) {
        let mut slot = self.slot(home).await;
        if let Some(instance) = slot.current(generation) {
            let outcome = instance.timer(timer).await;
            self.settle_timer(&mut slot, timer, outcome);
        }
    }

    /// Acts on how `on-timer` ended: an error stops the timer; a trap
    /// discards the instance, as for any callback.
    fn settle_timer(&self, slot: &mut Slot, timer: TimerId, outcome: Outcome) {
        match outcome {
            Outcome::Returned => {}
            Outcome::GuestError(message) => {
                let errors = self.stats().counts.guest_errors.inc() + 1;
                tracing::warn!(
                    component = %self.component(),
                    timer,
                    callback = Callback::Timer.name(),
                    %message,
                    errors,
                    "guest returned an error; stopping the timer"
                );
                if let Some(instance) = &slot.instance {
                    instance.timers().cancel(timer);
                }
            }
            Outcome::Trapped => self.discard(slot),
        }
    }
}
