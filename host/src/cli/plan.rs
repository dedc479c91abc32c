//! What to serve, from flags or a config file, and turning it into a
//! [`Server`]: components loaded once each, sockets bound or inherited.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;

use super::{Args, HostFlags};
use crate::net::activation::Inherited;
use crate::net::tls::{TlsConfig, TlsSettings};
use crate::net::{ListenOptions, ListeningSocket, UnixPermissions, ZeroBacklog, bind_listener, bind_unix_listener};
use crate::policy::BindAddress;
use crate::policy::Policy;
use crate::serve::reload::Triggers;
use crate::serve::{App, BoundListener, Server};
use crate::store::{Budget, Store};

/// Where the host listens when told nothing: libevent's example's port.
pub const DEFAULT_LISTEN: BindAddress = BindAddress::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9876));

/// How often `--watch` looks at component files.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Everything to serve.
#[derive(Debug)]
pub struct Plan {
    /// Settings of the whole host.
    pub host: HostFlags,
    /// The listeners, each with its component.
    pub listeners: Vec<ListenerPlan>,
}

/// One listener entry: a component and where it listens.
#[derive(Debug)]
pub struct ListenerPlan {
    /// The component's file.
    pub component: PathBuf,
    /// Addresses to bind.
    pub addresses: Vec<BindAddress>,
    /// Which inherited sockets (socket activation) it serves.
    pub inherited: InheritedSockets,
    /// Where to listen when it has no address and inherited no socket.
    pub fallback: Option<BindAddress>,
    /// Listener options of its sockets.
    pub options: ListenOptions,
    /// The kernel backlog of sockets it binds.
    pub backlog: i32,
    /// The environment its component's instances get.
    pub env: Vec<(String, String)>,
    /// The mode and owner of the files of its Unix sockets.
    pub unix: UnixPermissions,
    /// TLS on every socket of the listener (bound or inherited), if asked.
    pub tls: Option<TlsSettings>,
}

/// Which inherited sockets a listener entry serves.
#[derive(Debug, Clone, PartialEq)]
pub enum InheritedSockets {
    /// Every one (the command line's single listener).
    All,
    /// Those with these names (`LISTEN_FDNAMES`).
    Named(Vec<String>),
}

impl Plan {
    /// The plan the command line's flags describe: one component on the
    /// --listen addresses and every inherited socket.
    pub fn from_args(args: &Args) -> anyhow::Result<Plan> {
        let Some(component) = args.component.clone() else {
            // clap requires --component without --config.
            anyhow::bail!("--component is required");
        };
        if args.backlog == 0 {
            anyhow::bail!("--backlog 0: {ZeroBacklog}");
        }
        Ok(Plan {
            host: args.host.clone(),
            listeners: vec![ListenerPlan {
                component,
                addresses: args.listen.clone(),
                inherited: InheritedSockets::All,
                fallback: Some(DEFAULT_LISTEN),
                options: args.listen_options(),
                backlog: args.backlog,
                unix: UnixPermissions {
                    mode: args.unix_mode,
                    uid: args.unix_owner.and_then(|owner| owner.0),
                    gid: args.unix_owner.and_then(|owner| owner.1),
                },
                env: args.env.clone(),
                tls: args.tls.settings(),
            }],
        })
    }

    /// Checks the plan, loads each component once, binds every address
    /// (once per worker) and hands out the `inherited` sockets.
    pub fn prepare(self, inherited: Vec<Inherited>, reload_requests: Arc<Notify>) -> anyhow::Result<Server> {
        let limits = self.host.limits()?;
        let budget = Budget { keys: limits.keyvalue_keys, bytes: limits.keyvalue_memory };
        crate::net::descriptors::raise_for(limits.max_connections);
        let workers = usize::from(self.host.workers);
        let mut inherited_by_entry = assign_inherited(&self.listeners, inherited)?;
        // Certificates load before anything is bound, as components do, and
        // faster: a bad one fails the start at once.
        let tls = (self.listeners.iter())
            .map(|plan| plan.tls.clone().map(|tls| load_tls(tls, &plan.component)).transpose())
            .collect::<anyhow::Result<Vec<_>>>()?;

        // Every component loads before anything is bound: a bad file fails
        // the start without having taken a port.
        let engine = crate::wasm::engine(self.host.limits.isolation, &limits)?;
        let loader = self.host.cache.loader(engine)?;
        let mut apps: Vec<App> = Vec::new();
        for plan in &self.listeners {
            if let Some(app) = apps.iter().find(|app| app.path == plan.component) {
                // One component runs one set of instances, with one environment.
                if app.env != plan.env {
                    anyhow::bail!(
                        "two listeners serve {} with different `env` tables: give them the same one",
                        plan.component.display()
                    );
                }
                continue;
            }
            let component = loader.load(&plan.component)?;
            let name = crate::wasm::name(&plan.component);
            if apps.iter().any(|app| app.name == name) {
                anyhow::bail!(
                    "two components are named {name}: logs and metrics could not tell them apart; rename one file"
                );
            }
            apps.push(App {
                name,
                path: plan.component.clone(),
                component,
                listeners: Vec::new(),
                env: plan.env.clone(),
            });
        }

        let mut unix_files = Vec::new();
        for ((entry, plan), tls) in self.listeners.into_iter().enumerate().zip(tls) {
            let mut options = plan.options;
            if workers > 1 {
                // Each worker binds the address itself; the kernel spreads
                // connections among the sockets.
                options |= ListenOptions::REUSEABLE_PORT;
            }
            // Entries naming the same file serve one component: one
            // instance (per worker) behind all their listeners.
            let app = apps.iter_mut().find(|app| app.path == plan.component).expect("loaded above");
            let inherited = std::mem::take(&mut inherited_by_entry[entry]);
            let inherited_none = inherited.is_empty();
            for Inherited { name, socket } in inherited {
                tracing::info!(name = %name, address = %socket.local()?, "serving an inherited socket");
                // The socket is bound already: only the options that act
                // after binding (disabled, close-on-free) apply, and every
                // worker accepts from it.
                app.listeners.push(BoundListener { sockets: vec![socket], options: plan.options, tls: tls.clone() });
            }
            let mut addresses = plan.addresses;
            if addresses.is_empty() && inherited_none {
                let Some(fallback) = plan.fallback else {
                    anyhow::bail!(
                        "the listener for {} has no address and no inherited socket",
                        plan.component.display()
                    );
                };
                addresses.push(fallback);
            }
            for address in addresses {
                let sockets = match address {
                    BindAddress::Ip(address) => (0..workers)
                        .map(|_| bind_listener(address, options, plan.backlog).map(ListeningSocket::from))
                        .collect::<Result<Vec<_>, _>>()?,
                    // One socket, which every worker accepts from: a Unix
                    // path cannot be bound more than once.
                    BindAddress::Unix(path) => {
                        let (socket, file) = bind_unix_listener(&path, plan.options, plan.backlog, plan.unix)?;
                        unix_files.push(file);
                        vec![socket]
                    }
                };
                app.listeners.push(BoundListener { sockets, options, tls: tls.clone() });
            }
        }

        let metrics = (self.host.metrics)
            .map(|address| {
                std::net::TcpListener::bind(address).with_context(|| format!("cannot serve metrics on {address}"))
            })
            .transpose()?;

        Ok(Server {
            apps,
            unix_files,
            metrics,
            counts: Default::default(),
            workers,
            shutdown_timeout: self.host.shutdown_timeout,
            isolation: self.host.limits.isolation,
            store: Arc::new(Store::new(&self.host.keyvalue, budget, workers)?),
            policy: Policy {
                limits,
                allow_bind: self.host.allow_bind,
                allow_connect: self.host.allow_connect,
                allow_bucket: self.host.allow_bucket,
            },
            loader,
            watch: None,
            reload: Triggers {
                requests: Some(reload_requests),
                watch: self.host.watch.then_some(WATCH_INTERVAL),
                environments: None,
            },
        })
    }
}

/// The TLS configuration of a listener of `component`, read from its
/// files; the error names the listener, the file and what is wrong with it.
fn load_tls(settings: TlsSettings, component: &Path) -> anyhow::Result<Arc<TlsConfig>> {
    TlsConfig::load(settings).with_context(|| format!("cannot serve TLS on the listener for {}", component.display()))
}

/// Hands each inherited socket to the listener entry that names it (or
/// takes them all); a socket nobody serves is an error, not a silent leak.
fn assign_inherited(entries: &[ListenerPlan], inherited: Vec<Inherited>) -> anyhow::Result<Vec<Vec<Inherited>>> {
    let mut assigned: Vec<Vec<Inherited>> = entries.iter().map(|_| Vec::new()).collect();
    for socket in inherited {
        let taker = entries.iter().position(|entry| match &entry.inherited {
            InheritedSockets::All => true,
            InheritedSockets::Named(names) => names.contains(&socket.name),
        });
        let Some(taker) = taker else {
            anyhow::bail!(
                "systemd passed a socket named {:?} that no listener serves: add it to a listener's `inherited` list",
                socket.name
            );
        };
        assigned[taker].push(socket);
    }
    Ok(assigned)
}
