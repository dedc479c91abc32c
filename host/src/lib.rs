//! evconn's host: accepts TCP connections natively and runs their handlers
//! as sandboxed WebAssembly components, re-creating libevent's
//! `evconnlistener` contract over the WIT package `evconn:listener`.
//!
//! # Layout
//! - [`cli`]: the `host` command line and config file, checked before
//!   anything is bound.
//! - [`socket`]: listening sockets with libevent's options and backlog rules.
//! - [`activation`]: listening sockets inherited from systemd.
//! - [`component`]: the engine, and loading a guest against the world.
//! - [`code_cache`]: compiled components kept between runs.
//! - [`kit`]: the component test kit: in-process hosts, test connections, scripts.
//! - [`limits`]: what a guest or a peer may use.
//! - [`server`]: a running host: reactors, components, orderly stop.
//! - [`reload`]: hot reload of components on SIGHUP or a changed file.
//! - `reactor`: a reactor thread (a single-threaded tokio runtime).
//! - `listener`: a listening socket's state and accept loop.
//! - `connection`: an accepted connection's output queue and close logic.
//! - `socket_input`: `on-data`'s bytes read straight into guest memory.
//! - `idle`: idle timeouts, by one sweep over the open connections.
//! - `descriptors`: the descriptor limit, raised at start.
//! - `worker`: which instance serves which connection, and trap recovery.
//! - `instance`: one guest instance, its limits, and the calls into it.
//! - `ticker`: the epoch ticker, which times callbacks and makes them yield.
//! - `metrics`: the registry of metric families, encoded for `/metrics`.
//! - `metrics_http`: the `/metrics` endpoint, on the control runtime.
//! - `stats`: one component's metric handles, which its log line reads too.
//! - `latency`: a lock-free histogram of callback durations.
//! - `services`: what all instances and accept loops share.
//! - `ids`: maps keyed by the host's own connection and listener ids.
//! - `state`, `host_api`: the store's data and the WIT imports on it.
//! - `bindings`: code generated from `wit/`.
//! - `guest_log`: guest stdout and stderr into the host's log.
//! - `sync`: locking a mutex that guards no panicking code, and the shared
//!   instance's async lock, which a release frees at once.
pub mod activation;
pub mod cli;
pub mod code_cache;
pub mod component;
pub mod kit;
pub mod limits;
pub mod reload;
pub mod server;
pub mod socket;

mod bindings;
mod connection;
mod descriptors;
mod guest_log;
mod host_api;
mod ids;
mod idle;
mod instance;
mod latency;
mod listener;
mod metrics;
mod metrics_http;
mod reactor;
mod services;
mod socket_input;
mod state;
mod stats;
mod sync;
mod ticker;
mod worker;

pub use bindings::{ErrorCode, ListenOptions};
pub use worker::Isolation;
