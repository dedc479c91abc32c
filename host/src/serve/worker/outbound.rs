//! Outbound connections an instance opened: each is dialed and served in a
//! task of its own, under its instance's lock like every connection of
//! that instance, and tracked like an accepted one, so that the host's
//! stop flushes and closes it.
use std::sync::Arc;

use super::Worker;
use crate::net::{Connection, DialTarget, Ready};
use crate::serve::slot::Home;
use crate::telemetry::{Callback, CloseReason};
use crate::wasm::{Dial, Event};

impl Worker {
    /// Dials `conn` as `dial` says, then serves it for the instance of
    /// `dial.generation` in `home`.
    pub(in crate::serve) fn spawn_outbound(self: &Arc<Self>, home: Arc<Home>, conn: Arc<Connection>, dial: Dial) {
        self.lifecycle().open().track(&conn);
        let worker = self.clone();
        tokio::spawn(async move {
            let Dial { target, generation, admission, instance_permit } = dial;
            if Box::pin(worker.connect(&home, &conn, &target, generation)).await {
                worker.run(&home, &conn, generation, None).await;
            }
            Box::pin(worker.end(&home, &conn, generation)).await;
            worker.lifecycle().open().untrack(conn.id());
            tracing::debug!(conn = conn.id(), reason = %conn.close_reason().name(), "outbound connection closed");
            drop((admission, instance_permit));
        });
    }

    /// Resolves and connects `conn` within the connect timeout, then tells
    /// the guest `connected` or `error`; whether it connected. Stops early,
    /// unconnected, if the connection is closed with nothing left to send.
    async fn connect(&self, home: &Home, conn: &Arc<Connection>, target: &DialTarget, generation: u64) -> bool {
        let policy = &self.context.policy;
        let dialing = target.dial(|address| policy.may_connect(address), policy.limits.connect_timeout);
        let closed = async {
            // Before it has a socket a connection is only ever finished:
            // closed with nothing queued, or by the host's shutdown.
            while conn.ready().await != Ready::Finished {}
        };
        let dialed = tokio::select! {
            dialed = dialing => dialed,
            () = closed => return false,
        };
        let attached = dialed.and_then(|(stream, address)| {
            conn.attach(stream.into(), address.into()).map_err(|error| crate::net::DialError::Failed { address, error })
        });
        let mut slot = self.slot(home).await;
        match attached {
            Ok(()) => {
                self.stats().counts.outbound_connected.inc();
                tracing::debug!(conn = conn.id(), peer = %conn.peer(), "outbound connection connected");
                match slot.current(generation) {
                    Some(instance) => {
                        let outcome = instance.event(conn, Event::Connected).await;
                        self.settle(&mut slot, conn, outcome, Callback::Event);
                    }
                    // Its instance trapped or ended while it connected:
                    // closed as the instance's end closed its others.
                    None => conn.close(CloseReason::GuestClosed),
                }
                true
            }
            Err(error) => {
                self.stats().counts.outbound_failed.inc();
                tracing::debug!(conn = conn.id(), ?target, %error, "outbound connection failed");
                conn.fail_to_connect();
                if let Some(instance) = slot.current(generation) {
                    let outcome = instance.event(conn, Event::NotConnected(&error)).await;
                    self.settle(&mut slot, conn, outcome, Callback::Event);
                }
                false
            }
        }
    }
}
