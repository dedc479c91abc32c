//! A reactor worker's guest: one shared instance (libevent's model) that
//! serves every connection of the worker, one callback at a time, and is
//! replaced after a trap.
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use wasmtime::Store;

use crate::bindings::{ConnectionEvent, Handler, HandlerPre};
use crate::connection::{Connection, Ready};
use crate::host_api::accept_error;
use crate::listener::Listener;
use crate::services::{Services, until_stopping};
use crate::state::HostState;

/// The most bytes handed to one `on-data` call.
const READ_CHUNK: usize = 64 * 1024;

/// Runs guest callbacks for the connections of one reactor.
pub struct Worker {
    pre: HandlerPre<HostState>,
    services: Arc<Services>,
    /// The instance and the read buffer; locked for the length of one read
    /// and callback, which serialises callbacks as the shared model promises.
    guest: tokio::sync::Mutex<Guest>,
}

struct Guest {
    /// `None` after a trap, until the next callback instantiates a fresh one.
    instance: Option<Instance>,
    /// Counts instances made, so a connection can tell whether the instance
    /// that accepted it is still the current one.
    generation: u64,
    /// Filled by one read and lent to the callback that follows it; one
    /// buffer for the whole worker keeps idle connections small.
    read_buffer: Box<[u8]>,
}

struct Instance {
    store: Store<HostState>,
    exports: Handler,
    generation: u64,
}

/// How a callback ended.
enum Outcome {
    Returned,
    /// The guest returned `err`: the connection concerned is closed.
    GuestError(String),
    /// The guest trapped: the instance is gone.
    Trapped,
}

impl Worker {
    /// A worker for `pre`, with its first instance made at once so that a
    /// guest that traps while starting is reported before serving.
    pub async fn new(pre: HandlerPre<HostState>, services: Arc<Services>) -> wasmtime::Result<Arc<Self>> {
        let worker = Arc::new(Worker {
            pre,
            services,
            guest: tokio::sync::Mutex::new(Guest {
                instance: None,
                generation: 0,
                read_buffer: vec![0; READ_CHUNK].into_boxed_slice(),
            }),
        });
        let mut guest = worker.guest.lock().await;
        worker.instantiate(&mut guest).await?;
        drop(guest);
        Ok(worker)
    }

    /// The host's shared state.
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    async fn instantiate(self: &Arc<Self>, guest: &mut Guest) -> wasmtime::Result<()> {
        let state = HostState::new(self.services.clone(), Arc::downgrade(self));
        let mut store = Store::new(self.pre.engine(), state);
        let exports = self.pre.instantiate_async(&mut store).await?;
        guest.generation += 1;
        guest.instance = Some(Instance { store, exports, generation: guest.generation });
        Ok(())
    }

    /// The current instance, made afresh if the last one trapped.
    async fn instance<'g>(self: &Arc<Self>, guest: &'g mut Guest) -> Option<&'g mut Instance> {
        if guest.instance.is_none() {
            if let Err(e) = self.instantiate(guest).await {
                tracing::error!(component = %self.services.component(), error = %format!("{e:#}"), "cannot instantiate the guest");
                return None;
            }
            tracing::info!(component = %self.services.component(), generation = guest.generation, "guest instance replaced");
        }
        guest.instance.as_mut()
    }

    /// Serves a connection accepted on `listener` in a task of its own.
    pub fn spawn_connection(self: &Arc<Self>, listener: Arc<Listener>, stream: TcpStream, peer: SocketAddr) {
        let Some(token) = self.services.task_token() else { return };
        let worker = self.clone();
        tokio::spawn(async move {
            let id = worker.services.next_connection_id();
            let conn = match Connection::new(id, stream, peer) {
                Ok(conn) => Arc::new(conn),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "connection lost before it was served");
                    return;
                }
            };
            tracing::debug!(conn = id, %peer, listener = listener.id(), "accepted");
            worker.serve(&listener, &conn).await;
            tracing::debug!(conn = id, "closed");
            drop(token);
        });
    }

    /// Delivers `conn`'s callbacks until it ends.
    async fn serve(self: &Arc<Self>, listener: &Arc<Listener>, conn: &Arc<Connection>) {
        let generation = self.accept(listener, conn).await;
        let mut stopping = self.services.stopping();
        loop {
            tokio::select! {
                ready = conn.ready() => match ready {
                    Ready::Readable => self.read(conn, generation).await,
                    Ready::Finished => break,
                },
                // The host is stopping: flush what was written, then close.
                _ = until_stopping(&mut stopping), if !conn.is_closing() => conn.close(),
            }
        }
        conn.finish().await;
        let mut guest = self.guest.lock().await;
        if let Some(instance) = guest.instance.as_mut().filter(|i| i.generation == generation) {
            instance.store.data_mut().release_connection(conn);
        }
    }

    /// Calls `on-accept`; returns the generation of the instance that
    /// accepted (0 if none could, in which case the connection is closing).
    async fn accept(self: &Arc<Self>, listener: &Arc<Listener>, conn: &Arc<Connection>) -> u64 {
        let mut guest = self.guest.lock().await;
        let Some(instance) = self.instance(&mut guest).await else {
            conn.close();
            return 0;
        };
        let generation = instance.generation;
        let outcome = instance
            .call(async |exports, store| {
                let state = store.data_mut();
                let listener = state.borrow_listener(listener)?;
                let owned = state.adopt_connection(conn)?;
                exports
                    .evconn_listener_callbacks()
                    .call_on_accept(store, listener, owned, conn.peer().into())
                    .await
            })
            .await;
        self.settle(&mut guest, conn, outcome, "on-accept");
        generation
    }

    /// Reads what `conn` has and hands it to the guest.
    async fn read(self: &Arc<Self>, conn: &Arc<Connection>, generation: u64) {
        let mut guest = self.guest.lock().await;
        let Guest { instance, read_buffer, .. } = &mut *guest;
        let Some(instance) = instance.as_mut().filter(|i| i.generation == generation) else {
            // The instance that accepted this connection trapped and the
            // connection is closing; nothing reaches its replacement.
            conn.close();
            return;
        };
        if conn.is_closing() {
            return;
        }
        let (outcome, callback) = match conn.try_read(read_buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Ok(0) => (instance.event(conn, ConnectionEvent::EndOfStream).await, "on-event"),
            Ok(n) => {
                let data = &read_buffer[..n];
                let outcome = instance
                    .call(async |exports, store| {
                        let Some(borrow) = store.data().borrow_connection(conn) else {
                            return Ok(Ok(()));
                        };
                        exports.evconn_listener_callbacks().call_on_data(store, borrow, data).await
                    })
                    .await;
                (outcome, "on-data")
            }
            Err(e) => {
                tracing::debug!(conn = conn.id(), error = %e, "read failed");
                let code = conn.error_event(&e);
                (instance.event(conn, ConnectionEvent::Error(code)).await, "on-event")
            }
        };
        self.settle(&mut guest, conn, outcome, callback);
    }

    /// Calls `on-accept-error` for a failed `accept()` on `listener`.
    pub async fn accept_error(self: &Arc<Self>, listener: &Arc<Listener>, error: &std::io::Error) {
        let mut guest = self.guest.lock().await;
        let Some(instance) = self.instance(&mut guest).await else { return };
        let error = accept_error(error);
        let outcome = instance
            .call(async |exports, store| {
                let listener = store.data_mut().borrow_listener(listener)?;
                exports
                    .evconn_listener_callbacks()
                    .call_on_accept_error(store, listener, &error)
                    .await
                    .map(Ok)
            })
            .await;
        if let Outcome::Trapped = outcome {
            self.discard_instance(&mut guest);
        }
    }

    /// Acts on how a connection's callback ended.
    fn settle(&self, guest: &mut Guest, conn: &Connection, outcome: Outcome, callback: &str) {
        match outcome {
            Outcome::Returned => {}
            Outcome::GuestError(message) => {
                tracing::warn!(component = %self.services.component(), conn = conn.id(), callback, %message, "guest returned an error; closing the connection");
                conn.close();
            }
            Outcome::Trapped => self.discard_instance(guest),
        }
    }

    /// Drops a trapped instance and closes every connection it served.
    fn discard_instance(&self, guest: &mut Guest) {
        let Some(instance) = guest.instance.take() else { return };
        let mut closed = 0;
        for conn in instance.store.data().connections() {
            conn.close();
            closed += 1;
        }
        tracing::warn!(component = %self.services.component(), generation = instance.generation, closed, "discarded the trapped instance and closed its connections");
    }
}

impl Instance {
    /// Runs one export call; a trap is logged and reported as `Trapped`.
    async fn call(
        &mut self,
        call: impl AsyncFnOnce(&Handler, &mut Store<HostState>) -> wasmtime::Result<Result<(), String>>,
    ) -> Outcome {
        match call(&self.exports, &mut self.store).await {
            Ok(Ok(())) => Outcome::Returned,
            Ok(Err(message)) => Outcome::GuestError(message),
            Err(trap) => {
                tracing::error!(component = %self.store.data().services.component(), generation = self.generation, error = %format!("{trap:#}"), "guest trapped");
                Outcome::Trapped
            }
        }
    }

    /// Calls `on-event` for `conn`.
    async fn event(&mut self, conn: &Connection, event: ConnectionEvent) -> Outcome {
        self.call(async |exports, store| {
            let Some(borrow) = store.data().borrow_connection(conn) else {
                return Ok(Ok(()));
            };
            exports.evconn_listener_callbacks().call_on_event(store, borrow, event).await
        })
        .await
    }
}
