//! A reactor thread: a single-threaded tokio runtime that accept loops,
//! connections and guest calls run on, as libevent's `event_base` does.
use std::thread::JoinHandle;

use anyhow::Context;
use tokio::sync::oneshot;

/// A running reactor thread.
pub(crate) struct Reactor {
    /// Where to spawn work onto the reactor.
    pub(crate) handle: tokio::runtime::Handle,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Reactor {
    /// Starts reactor number `index` on a thread of its own.
    pub(crate) fn start(index: usize) -> anyhow::Result<Reactor> {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start a reactor")?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("reactor-{index}"))
            .spawn(move || {
                // An error means the host is gone without calling `stop`.
                let _ = runtime.block_on(stopped);
                // Dropping the runtime drops every task still on it.
            })
            .context("cannot start a reactor thread")?;
        Ok(Reactor { handle, stop, thread })
    }

    /// Stops the reactor, dropping what still runs on it, and waits for
    /// its thread.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("a reactor thread panicked");
        }
    }
}
