//! evconn's host: accepts TCP connections natively and runs their handlers
//! as sandboxed WebAssembly components, re-creating libevent's
//! `evconnlistener` contract over the WIT package `evconn:listener`.
//!
//! # Layout
//!
//! Layers, from the top; a module imports only from layers below its own
//! (and from its own folder):
//!
//! 1. [`cli`] (the `host` command line and config file, checked before
//!    anything is bound) and [`kit`] (the component test kit: in-process
//!    hosts, test connections, scripts). Neither imports the other.
//! 2. [`serve`]: a running host: reactor threads, a worker per component on
//!    each, routes from listeners to workers, hot reload, the orderly stop.
//! 3. [`wasm`]: the engine and epoch ticker, loading and caching
//!    components, the bindings from `wit/` and the host's side of their
//!    imports, instances and the calls into them.
//! 4. [`net`]: listening sockets, socket activation, the descriptor limit,
//!    the accept loop, connections and their state machine, idle timeouts,
//!    and the host's lifecycle. Knows nothing of wasm or WIT.
//!    Beside it, [`store`]: the key-value store behind `wasi:keyvalue`, in
//!    memory or in Redis. Neither imports the other.
//! 5. [`policy`] (the operator's limits and grants) and [`telemetry`]
//!    (counters, histograms, the `/metrics` endpoint).
//! 6. `base`: locks, id maps, back-off, lingering on a closing socket,
//!    durations and sizes.
//!
//! Within a layer, modules import each other one way too, with one loop:
//! `wasm`'s bindings name the handle types of its imports (bindgen's
//! `with:`), which implement the bindings' traits.
//! `tests/all/layers.rs` holds the code to this order.
pub mod base;
pub mod cli;
pub mod kit;
pub mod net;
pub mod policy;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod wasm;
