//! The data of one guest instance's store: its WASI context, its resource
//! table, the handles it holds to connections and listeners, what its
//! outbound connections count against, and the input of the running
//! `on-data` call.
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};

use tokio::sync::Semaphore;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::call_clock::CallClock;
use super::context::{InstanceContext, Owner};
use super::guest_log::GuestLog;
use super::imports::{ConnectionHandle, ListenerHandle};
use super::memory::GuestMemory;
use super::timers::Timers;
use crate::base::ids::IdMap;
use crate::net::{Connection, Lifecycle, Listener, OutputLimits};
use crate::policy::Policy;
use crate::store::Store;
use crate::telemetry::Stats;

/// Store data for one instance of the guest component.
pub struct HostState {
    wasi: WasiCtx,
    /// Every handle the instance holds, its own and the host's.
    pub(crate) table: ResourceTable,
    /// The host's life (`loop-exit`, guest listeners' ids).
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// What the guest may bind, where it may connect, which buckets it may open.
    pub(crate) policy: Arc<Policy>,
    /// The host's key-value store.
    pub(crate) store: Arc<Store>,
    /// Which of its worker's instances this is.
    pub(crate) generation: u64,
    /// Its outbound connections' permits (`--max-outbound-per-instance`).
    pub(crate) outbound_permits: Arc<Semaphore>,
    /// How much output each of its connections may hold.
    pub(crate) output: Arc<OutputLimits>,
    /// The worker whose instance this is: its listeners, and accept loops
    /// for listeners the guest binds. Weak: the worker owns the store.
    pub(crate) owner: Weak<dyn Owner>,
    /// The component's name, for logs.
    pub(crate) component: Arc<str>,
    /// The component's counts.
    pub(crate) stats: Arc<Stats>,
    /// The connection whose callback runs (0 for none), for guest output.
    pub(crate) current_connection: Arc<AtomicU64>,
    /// Connections this instance serves, each with the host's own table
    /// entry, lent to callbacks as `borrow<connection>`.
    connections: IdMap<(Arc<Connection>, Resource<ConnectionHandle>)>,
    /// The host's table entry for each listener this instance has seen, lent
    /// to callbacks as `borrow<listener>`; kept for the instance's life.
    listeners: IdMap<u32>,
    /// Caps the instance's memories and tables (`Limits::guest_memory`),
    /// and counts what its memories hold.
    pub(crate) memory: GuestMemory,
    /// A copy of the bytes the running `on-data` call was given, for
    /// `write-input`: `Some` only during that call, and only for a guest
    /// that imports `write-input`.
    pub(crate) input: Option<Vec<u8>>,
    /// How long the running callback has run (`--guest-timeout`).
    pub(crate) call_clock: CallClock,
    /// The timers this instance started; the worker fires them.
    pub(crate) timers: Arc<Timers>,
}

impl Drop for HostState {
    /// The instance is gone: so are its timers, whoever waits for them.
    fn drop(&mut self) {
        self.timers.close();
    }
}

impl HostState {
    /// State for instance `generation`: WASI with nothing granted but the
    /// operator's environment variables, output to the log.
    pub fn new(context: &InstanceContext, generation: u64) -> Self {
        let component = context.component.clone();
        // The builder grants nothing by default: no arguments, environment,
        // preopened directories or socket addresses. The environment is the
        // operator's list alone, never the host's own.
        let current_connection = Arc::new(AtomicU64::new(0));
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .envs(&context.env)
            .stdout(GuestLog::stdout(component.clone(), current_connection.clone()))
            .stderr(GuestLog::stderr(component.clone(), current_connection.clone()))
            .build();
        let memory = GuestMemory::new(context.policy.limits.guest_memory, context.stats.guest_memory.clone());
        HostState {
            wasi,
            table: ResourceTable::new(),
            lifecycle: context.lifecycle.clone(),
            policy: context.policy.clone(),
            store: context.store.clone(),
            generation,
            outbound_permits: Arc::new(Semaphore::new(context.policy.limits.max_outbound_per_instance)),
            output: context.output.clone(),
            owner: context.owner.clone(),
            component,
            stats: context.stats.clone(),
            current_connection,
            connections: IdMap::default(),
            listeners: IdMap::default(),
            memory,
            input: None,
            call_clock: CallClock::new(),
            timers: Arc::new(Timers::new(context.policy.limits.max_timers, context.stats.timers.clone())),
        }
    }

    /// Registers a connection, accepted or outbound: returns the owned handle
    /// for the guest; the host keeps a second entry for later borrows.
    pub fn adopt_connection(&mut self, conn: &Arc<Connection>) -> wasmtime::Result<Resource<ConnectionHandle>> {
        let host_entry = self.table.push(ConnectionHandle::new(conn.clone()))?;
        self.connections.insert(conn.id(), (conn.clone(), host_entry));
        Ok(self.table.push(ConnectionHandle::new(conn.clone()))?)
    }

    /// A borrow of `conn` for a callback, if this instance serves it.
    pub fn borrow_connection(&self, conn: &Connection) -> Option<Resource<ConnectionHandle>> {
        let (_, entry) = self.connections.get(&conn.id())?;
        Some(Resource::new_borrow(entry.rep()))
    }

    /// Forgets a connection that has ended; the guest's own handle, if it kept
    /// one, stays valid and reports the connection closed.
    pub fn release_connection(&mut self, conn: &Connection) {
        if let Some((_, entry)) = self.connections.remove(&conn.id()) {
            let _ = self.table.delete(entry);
        }
    }

    /// Every connection this instance serves.
    pub fn connections(&self) -> impl Iterator<Item = &Arc<Connection>> {
        self.connections.values().map(|(conn, _)| conn)
    }

    /// A borrow of `listener` for a callback.
    pub fn borrow_listener(&mut self, listener: &Arc<Listener>) -> wasmtime::Result<Resource<ListenerHandle>> {
        let rep = match self.listeners.get(&listener.id()) {
            Some(rep) => *rep,
            None => {
                let entry = self.table.push(ListenerHandle::lent(listener.clone()))?;
                self.listeners.insert(listener.id(), entry.rep());
                entry.rep()
            }
        };
        Ok(Resource::new_borrow(rep))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
