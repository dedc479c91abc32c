//! The engine every guest of a host runs on: epoch interruption for the
//! guest timeout, the pooling allocator under the per-connection model, and
//! the linker with WASI and the `evconn:listener` imports.
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::Handler;
use super::state::HostState;
use super::ticker;
use crate::policy::Limits;

/// Which connections share a guest instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// One instance serves every connection (libevent's model): callbacks
    /// are serialised and the guest may keep state across connections.
    Shared,
    /// Each connection gets its own instance: nothing is shared, and a trap
    /// ends only that connection.
    Connection,
}

/// Pool slots beyond `--max-connections`, for instances made for accept
/// errors while every connection slot is taken.
const SPARE_INSTANCES: usize = 4;
/// Core instances a component made by `wit-component` holds: the guest's
/// module plus the shims and adapters around it.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
/// Memories (and tables) a component may hold: the guest's and an adapter's.
const MEMORIES_PER_COMPONENT: u32 = 2;

/// The engine every guest of this host runs on, with its epoch ticker.
///
/// Epoch interruption bounds each callback (`Limits::guest_timeout`); one
/// ticker thread per engine (`ticker`) advances the epoch and ends when the
/// engine is dropped.
/// Under the per-connection model instances come from the pooling
/// allocator, with a slot for each of `limits.max_connections` (and a few
/// for accept-error calls), each memory capped at `limits.guest_memory`.
pub fn engine(isolation: Isolation, limits: &Limits) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if isolation == Isolation::Connection {
        let instances = u32::try_from(limits.max_connections + SPARE_INSTANCES).unwrap_or(u32::MAX);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
            .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
            .total_tables(instances.saturating_mul(MEMORIES_PER_COMPONENT))
            .total_stacks(instances)
            .max_memory_size(limits.guest_memory);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    let engine = Engine::new(&config)?;
    let weak = engine.weak();
    ticker::spawn(ticker::idle_pace(limits.guest_timeout), move || match weak.upgrade() {
        Some(engine) => {
            engine.increment_epoch();
            true
        }
        None => false,
    })?;
    Ok(engine)
}

/// An engine to compile components with, for `host compile` or to fill a
/// code cache: serving engines differ only in how they allocate instances,
/// which compiled code does not depend on, so its code serves them all.
pub fn compiling_engine() -> anyhow::Result<Engine> {
    engine(Isolation::Shared, &Limits::default())
}

/// A linker with WASI preview 2 and the `evconn:listener` imports.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Handler::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |state| state)?;
    super::imports::add_write_from_guest_memory(&mut linker)?;
    Ok(linker)
}
