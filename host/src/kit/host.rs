//! A host running in this process on a thread of its own, serving one
//! component on loopback port 0 until stopped: what tests talk to.
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::oneshot;

use super::client::{Client, DEFAULT_TIMEOUT};
use super::compiled::compiled;
use crate::net::{ListenOptions, bind_listener};
use crate::policy::{ConnectRule, Limits, Policy};
use crate::serve::{App, BoundListener, ConnectionWatch, Server};
use crate::store::{Backend, Budget, Store};
use crate::telemetry::Metrics;
use crate::wasm::{self, CodeCache, Isolation};

/// Connections a test host serves at once unless told otherwise; under
/// `--isolation connection` each has a slot in the instance pool.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// A running host; stopped when dropped.
pub struct Host {
    addrs: Vec<SocketAddr>,
    /// Completing it stops the host.
    stop: Option<oneshot::Sender<()>>,
    /// Told when the guest accepts a connection and when the host has
    /// finished with one: what `connect` and `Client::close` wait for.
    watch: Arc<ConnectionWatch>,
    /// The host's reactor; returns how the run ended.
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    /// What the host counts.
    metrics: Arc<Metrics>,
}

/// A host to configure, then [`HostBuilder::start`].
#[derive(Debug, Clone)]
pub struct HostBuilder {
    component: PathBuf,
    listeners: Vec<(SocketAddr, ListenOptions)>,
    allow_bind: Vec<SocketAddr>,
    allow_connect: Vec<ConnectRule>,
    env: Vec<(String, String)>,
    keyvalue: Backend,
    allow_bucket: Vec<String>,
    isolation: Isolation,
    limits: Limits,
    shutdown_timeout: Duration,
    code_cache: Option<CodeCache>,
    allow_precompiled: bool,
}

impl HostBuilder {
    /// Adds a listener on `address` (port 0 picks a free one) with
    /// `options`. Without any, the host listens on 127.0.0.1, port 0.
    pub fn listen(mut self, address: SocketAddr, options: ListenOptions) -> Self {
        self.listeners.push((address, options));
        self
    }

    /// Lets the guest bind `address` (port 0: any port of that IP).
    pub fn allow_bind(mut self, address: SocketAddr) -> Self {
        self.allow_bind.push(address);
        self
    }

    /// Lets the guest connect where `rule` allows (`--allow-connect`).
    pub fn allow_connect(mut self, rule: ConnectRule) -> Self {
        self.allow_connect.push(rule);
        self
    }

    /// Gives the guest the environment variable `key` (`--env`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Where the store lives (default: in memory, this host's alone).
    pub fn keyvalue(mut self, backend: Backend) -> Self {
        self.keyvalue = backend;
        self
    }

    /// Lets the guest open the store's bucket `name` (`--allow-bucket`);
    /// without any, the bucket named after the component.
    pub fn allow_bucket(mut self, name: impl Into<String>) -> Self {
        self.allow_bucket.push(name.into());
        self
    }

    /// Which connections share an instance (default: shared).
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Changes the limits: the host's defaults, except
    /// [`DEFAULT_MAX_CONNECTIONS`] connections.
    pub fn limits(mut self, change: impl FnOnce(&mut Limits)) -> Self {
        change(&mut self.limits);
        self
    }

    /// How long stopping waits for open connections to end before closing
    /// them (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Lets the host run machine code made by `host compile` (default:
    /// refused, as `host` refuses it without `--allow-precompiled`).
    pub fn allow_precompiled(mut self, allow: bool) -> Self {
        self.allow_precompiled = allow;
        self
    }

    /// Keeps compiled code in `cache` across processes (default: compiled
    /// once per process, kept in memory only).
    pub fn code_cache(mut self, cache: CodeCache) -> Self {
        self.code_cache = Some(cache);
        self
    }

    /// Loads the component, binds the listeners and starts serving.
    pub fn start(self) -> anyhow::Result<Host> {
        let (loader, compiled) =
            compiled(&self.component, self.isolation, &self.limits, self.code_cache.as_ref(), self.allow_precompiled)?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the reactor")?;
        let mut listeners = self.listeners;
        if listeners.is_empty() {
            listeners.push((SocketAddr::from(([127, 0, 0, 1], 0)), ListenOptions::DEFAULT));
        }
        let listeners = listeners
            .into_iter()
            .map(|(address, options)| {
                Ok(BoundListener { sockets: vec![bind_listener(address, options, -1)?.into()], options, tls: None })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let addrs = listeners
            .iter()
            .map(|l| l.sockets[0].local().map(|local| local.ip().expect("the kit binds IP addresses")))
            .collect::<io::Result<Vec<_>>>()?;
        let budget = Budget { keys: self.limits.keyvalue_keys, bytes: self.limits.keyvalue_memory };
        let watch = Arc::new(ConnectionWatch::default());
        let metrics = Arc::new(Metrics::default());
        let server = Server {
            unix_files: Vec::new(),
            apps: vec![App {
                name: wasm::name(&self.component),
                path: self.component.clone(),
                component: compiled,
                listeners,
                env: self.env,
            }],
            workers: 1,
            shutdown_timeout: self.shutdown_timeout,
            isolation: self.isolation,
            store: Arc::new(Store::new(&self.keyvalue, budget, 1)?),
            policy: Policy {
                limits: self.limits,
                allow_bind: self.allow_bind.into_iter().map(Into::into).collect(),
                allow_connect: self.allow_connect,
                allow_bucket: self.allow_bucket,
            },
            loader,
            reload: Default::default(),
            metrics: None,
            counts: metrics.clone(),
            watch: Some(watch.clone()),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("evconn-host".into()).spawn(move || {
            runtime.block_on(server.run(async {
                // Dropping the sender stops the host as well.
                let _ = stopped.await;
            }))
        })?;
        Ok(Host { addrs, stop: Some(stop), watch, thread: Some(thread), metrics })
    }
}

impl Host {
    /// A host for the component at `path`, to configure and start.
    pub fn builder(path: impl Into<PathBuf>) -> HostBuilder {
        HostBuilder {
            component: path.into(),
            listeners: Vec::new(),
            allow_bind: Vec::new(),
            allow_connect: Vec::new(),
            env: Vec::new(),
            keyvalue: Backend::Memory,
            allow_bucket: Vec::new(),
            isolation: Isolation::Shared,
            limits: Limits { max_connections: DEFAULT_MAX_CONNECTIONS, ..Limits::default() },
            shutdown_timeout: Duration::from_secs(5),
            code_cache: None,
            allow_precompiled: false,
        }
    }

    /// Starts a host for the component at `path` on 127.0.0.1, port 0, with
    /// the defaults.
    pub fn start(path: impl Into<PathBuf>) -> anyhow::Result<Host> {
        Self::builder(path).start()
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listener's address, in the order added.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// A new connection to the first listener, once the guest has run
    /// `on-accept` for it (at most [`DEFAULT_TIMEOUT`]; see
    /// [`Host::connect_within`]).
    pub fn connect(&self) -> io::Result<Client> {
        self.connect_within(DEFAULT_TIMEOUT)
    }

    /// A new connection to the first listener, once the guest has run
    /// `on-accept` for it, or the host has closed it without (an instance
    /// that could not start, say: the next expectation sees the end of
    /// stream). Fails if neither happens within `timeout`.
    pub fn connect_within(&self, timeout: Duration) -> io::Result<Client> {
        Client::connect_watched(self.addr(), self.watch.clone(), timeout)
    }

    /// What the host counts: the numbers `/metrics` would serve.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the host has stopped on its own (the guest called `loop-exit`).
    pub fn has_exited(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the host to stop on its own; `false` if it still runs after `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.has_exited() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Stops the host (letting open connections end, for up to the shutdown
    /// timeout) and returns how its run ended.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| anyhow::anyhow!("the host's thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Err(e) = self.shut_down() {
            tracing::warn!(error = %format!("{e:#}"), "the test host ended with an error");
        }
    }
}
