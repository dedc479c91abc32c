//! The `host` command line: flags, their checks, and the program that binds
//! the operator's listeners and serves until told to stop.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use clap::{ArgAction, Parser};

use crate::activation::Inherited;
use crate::bindings::ListenOptions;
use crate::code_cache::CodeCache;
use crate::limits::Limits;
use crate::reload::Triggers;
use crate::server::{App, BoundListener, Server};
use crate::worker::Isolation;
use crate::socket::{DEFAULT_BACKLOG, OPTION_NAMES, bind_listener, option_by_name};

/// Runs TCP connection handlers written as WebAssembly components.
///
/// The host accepts connections on the --listen addresses and calls the
/// component's callbacks (world evconn:listener/handler) for each one, as
/// libevent's evconnlistener calls C callbacks. The guest gets WASI preview 2
/// with nothing granted: no files, no environment, no sockets of its own
/// beyond the addresses --allow-bind permits.
#[derive(Debug, Parser)]
#[command(name = "host", version, subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Something other than serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The handler: a WebAssembly component of the world
    /// evconn:listener/handler@0.1.0, or a file `host compile` made from one
    /// on this machine (only load those you made: they run unchecked).
    #[arg(long, value_name = "FILE", required = true)]
    pub component: Option<PathBuf>,

    /// Where compiled components are kept between runs, so a restart does
    /// not compile again. Default: $XDG_CACHE_HOME/evconn or ~/.cache/evconn.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component at every start; keep nothing on disk.
    #[arg(long)]
    pub no_cache: bool,

    /// An address to listen on; repeat for several. IPv6 goes in brackets:
    /// [::1]:9876. The port must be in 1..65535. Default: 0.0.0.0:9876,
    /// unless systemd passed listening sockets (LISTEN_FDS), which are served
    /// as well as any --listen address.
    #[arg(long = "listen", value_name = "ADDR", value_parser = parse_listen_address)]
    pub listen: Vec<SocketAddr>,

    /// A listener option for every --listen socket; repeat for several:
    /// leave-sockets-blocking, close-on-free, close-on-exec, reuseable,
    /// threadsafe, disabled, deferred-accept, reuseable-port, bind-ipv6-only.
    /// Default: reuseable and close-on-free, as in libevent's example.
    #[arg(long = "listen-option", value_name = "NAME", value_parser = parse_listen_option)]
    pub listen_options: Vec<ListenOptions>,

    /// The kernel backlog of --listen sockets: negative picks the default
    /// (128), positive is passed to listen(). 0 is refused: it means a socket
    /// that already listens.
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    pub backlog: i32,

    /// An address the guest may bind with listener.bind; repeat for several.
    /// Port 0 allows every port of that IP. Default: none.
    #[arg(long = "allow-bind", value_name = "ADDR")]
    pub allow_bind: Vec<SocketAddr>,

    /// Which connections share a guest instance. `shared` (libevent's
    /// model): one instance per reactor worker serves all its connections,
    /// one callback at a time; the guest may keep state across connections
    /// (a chat room needs this), and a trap closes every connection the
    /// instance served. `connection`: each connection gets a fresh instance
    /// from the pooling allocator; nothing is shared, a trap ends only that
    /// connection, and each open connection costs an instance's memory.
    #[arg(long, value_enum, default_value = "shared")]
    pub isolation: Isolation,

    /// The longest one guest callback may run, such as 500ms or 2s; past it
    /// the callback traps. A running guest yields to the reactor every 10 ms,
    /// so the accept loop keeps serving meanwhile.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub guest_timeout: Duration,

    /// The most linear memory one instance may grow to, such as 64M; growing
    /// past it fails inside the guest.
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = parse_size)]
    pub guest_memory: usize,

    /// The most connections served at once; more wait in the kernel's
    /// backlog until one closes. Default: 10000, or under
    /// --isolation connection as many as vm.max_map_count allows, at most 10000.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Output queued for one connection at which the host stops reading from
    /// it until the peer has taken half (libevent's watermarks), such as 1M.
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_size)]
    pub write_buffer: usize,

    /// Close a connection that passed no bytes either way for this long,
    /// after telling the guest (a timeout event); 0 for never.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Reactor threads, each with its own instance under the shared model
    /// (guests keep state per worker, not per host) and its own socket for
    /// each --listen address (SO_REUSEPORT: the kernel spreads connections).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,

    /// Reload the component when its file changes (looked at twice a
    /// second), as on SIGHUP: new connections go to the new version, open
    /// ones finish on the old; a version that fails to load is refused.
    #[arg(long)]
    pub watch: bool,

    /// When stopping (SIGINT, SIGTERM, loop-exit), how long open connections
    /// may go on before they are closed; a second signal exits at once.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log more: -v for each connection, -vv for everything. RUST_LOG, when
    /// set, takes precedence.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Log less: -q for warnings and errors only, -qq for errors only.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

/// Commands other than serving.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compile a component ahead of time for this machine and host; serve
    /// the result with `host --component FILE`, which then starts without
    /// compiling.
    Compile {
        /// The component to compile.
        component: PathBuf,
        /// Where to write the compiled file.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

impl Args {
    /// The log level the flags ask for.
    pub fn log_level(&self) -> tracing::Level {
        match (self.verbose, self.quiet) {
            (0, 0) => tracing::Level::INFO,
            (1, _) => tracing::Level::DEBUG,
            (_, 0) => tracing::Level::TRACE,
            (_, 1) => tracing::Level::WARN,
            _ => tracing::Level::ERROR,
        }
    }

    /// The options for --listen sockets.
    pub fn listen_options(&self) -> ListenOptions {
        if self.listen_options.is_empty() {
            ListenOptions::REUSEABLE | ListenOptions::CLOSE_ON_FREE
        } else {
            self.listen_options.iter().fold(ListenOptions::empty(), |all, o| all | *o)
        }
    }

    /// The limits the flags ask for, checked against this machine.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        let max_connections = match (self.max_connections, self.isolation) {
            (Some(n), Isolation::Connection) => {
                let n = n as usize;
                let most = most_pooled_instances();
                if n > most {
                    anyhow::bail!(
                        "--max-connections {n} needs {n} pooled instances under --isolation connection, \
                         but vm.max_map_count allows about {most}: lower it, or raise vm.max_map_count"
                    );
                }
                n
            }
            (Some(n), Isolation::Shared) => n as usize,
            (None, Isolation::Connection) => most_pooled_instances().min(Limits::default().max_connections),
            (None, Isolation::Shared) => Limits::default().max_connections,
        };
        if self.guest_timeout.is_zero() {
            anyhow::bail!("--guest-timeout must be longer than 0");
        }
        if self.guest_memory < MIN_GUEST_MEMORY {
            anyhow::bail!("--guest-memory must be at least {}K: one WebAssembly page", MIN_GUEST_MEMORY >> 10);
        }
        Ok(Limits {
            guest_timeout: self.guest_timeout,
            guest_memory: self.guest_memory,
            max_connections,
            write_buffer: self.write_buffer.max(1),
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
        })
    }

    /// Checks what clap cannot check alone.
    fn validate(&self) -> anyhow::Result<()> {
        if self.backlog == 0 {
            anyhow::bail!(
                "--backlog 0 means a socket that already listens, but --listen binds new ones: \
                 give a positive backlog, or a negative one for the default ({DEFAULT_BACKLOG})"
            );
        }
        Ok(())
    }
}

/// Parses `HOST:PORT`, refusing a port outside 1..65535 as libevent's example
/// does ("Invalid port").
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("expected HOST:PORT, such as 0.0.0.0:9876 or [::1]:9876, not {text:?}"))?;
    let port: i64 = port.parse().map_err(|_| format!("Invalid port: {port:?} is not a number"))?;
    if !(1..=65535).contains(&port) {
        return Err(format!("Invalid port: {port} (must be 1..65535)"));
    }
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("{host:?} is not an IP address (IPv6 goes in brackets: [::1]:9876)"))?;
    Ok(SocketAddr::new(ip, port as u16))
}

/// One WebAssembly page: the least memory an instance can have.
const MIN_GUEST_MEMORY: usize = 64 << 10;

/// Memory mappings one pooled instance needs, measured with the echo guest
/// (reserved slot and live instance together), with room to spare.
const MAPPINGS_PER_POOLED_INSTANCE: usize = 6;

/// Mappings left for everything but the instance pool.
const MAPPINGS_FOR_THE_REST: usize = 8192;

/// How many pooled instances `vm.max_map_count` leaves room for.
fn most_pooled_instances() -> usize {
    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .unwrap_or(65_530);
    max_map_count.saturating_sub(MAPPINGS_FOR_THE_REST) / MAPPINGS_PER_POOLED_INSTANCE
}

/// Parses a duration: a number with `ms`, `s` or `m`, or seconds alone.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 2s or 1m"))?;
    if !(0.0..=1e9).contains(&value) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Parses a size in bytes: a number with `K`, `M` or `G` (powers of 1024),
/// or bytes alone.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let (number, shift) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 10),
        Some((i, 'M' | 'm')) => (&text[..i], 20),
        Some((i, 'G' | 'g')) => (&text[..i], 30),
        _ => (text, 0),
    };
    let value: usize = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 65536, 64K or 16M"))?;
    value.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))
}

fn parse_listen_option(name: &str) -> Result<ListenOptions, String> {
    option_by_name(name).ok_or_else(|| {
        let names: Vec<_> = OPTION_NAMES.iter().map(|(n, _)| *n).collect();
        format!("unknown listener option {name:?}; known: {}", names.join(", "))
    })
}

/// Runs the command line: serves, or runs a subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    match &args.command {
        Some(Command::Compile { component, output }) => compile(component, output),
        None => serve(args),
    }
}

/// `host compile`: writes the compiled form of a component.
fn compile(component: &std::path::Path, output: &std::path::Path) -> anyhow::Result<()> {
    // Serving engines differ only in how instances are allocated, which
    // compiled code does not depend on.
    let engine = crate::component::engine(Isolation::Shared, &Limits::default())?;
    let compiled = crate::component::precompile(&engine, component)?;
    std::fs::write(output, compiled).with_context(|| format!("cannot write {}", output.display()))?;
    tracing::info!(component = %component.display(), output = %output.display(), "compiled");
    Ok(())
}

/// Serves: loads the component, binds the listeners, serves until SIGINT,
/// SIGTERM or the guest's `loop-exit`.
fn serve(args: Args) -> anyhow::Result<()> {
    let Some(component_path) = args.component.clone() else {
        // clap requires --component when there is no subcommand.
        anyhow::bail!("--component is required");
    };
    args.validate()?;
    let limits = args.limits()?;
    // Before any thread starts: this takes the LISTEN_* variables away.
    let inherited = crate::activation::take_inherited()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the reactor")?;
    let engine = crate::component::engine(args.isolation, &limits)?;
    let cache = match (&args.cache_dir, args.no_cache) {
        (_, true) => None,
        (Some(dir), false) => Some(CodeCache::new(dir)),
        (None, false) => CodeCache::default_dir().map(CodeCache::new),
    };
    let component = crate::component::load(&engine, &component_path, cache.as_ref())?;

    let workers = usize::from(args.workers);
    let mut options = args.listen_options();
    if workers > 1 {
        // Each worker binds the address itself; the kernel spreads
        // connections among the sockets.
        options |= ListenOptions::REUSEABLE_PORT;
    }
    let addresses = match (args.listen.is_empty(), inherited.is_empty()) {
        (true, true) => vec![DEFAULT_LISTEN],
        _ => args.listen.clone(),
    };
    let mut listeners = inherited
        .into_iter()
        .map(|Inherited { name, socket }| {
            tracing::info!(name = %name, address = %socket.local_addr()?, "serving an inherited socket");
            // The socket is bound already: only the options that act after
            // binding (disabled, close-on-free) apply. Workers share it.
            Ok(BoundListener { sockets: vec![socket], options })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bound = addresses
        .iter()
        .map(|address| {
            let sockets = (0..workers)
                .map(|_| bind_listener(*address, options, args.backlog))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(BoundListener { sockets, options })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners.extend(bound);

    let reload_requests = Arc::new(Notify::new());
    let server = Server {
        apps: vec![App {
            name: crate::component::name(&component_path),
            path: component_path,
            component,
            listeners,
        }],
        workers,
        allow_bind: args.allow_bind,
        shutdown_timeout: args.shutdown_timeout,
        isolation: args.isolation,
        limits,
        cache,
        reload: Triggers {
            requests: Some(reload_requests.clone()),
            watch: args.watch.then_some(WATCH_INTERVAL),
        },
    };
    runtime.block_on(async {
        watch_sighup(reload_requests)?;
        server.run(stop_signal()).await
    })
}

/// Where the host listens when told nothing: libevent's example's port.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9876);

/// How often `--watch` looks at the component's file.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Turns every SIGHUP into a reload request.
fn watch_sighup(requests: Arc<Notify>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            requests.notify_one();
        }
    });
    Ok(())
}

/// Completes on SIGINT or SIGTERM. The signals are watched from the call
/// on, not from the first poll: the listeners accept before the server
/// polls this, and a signal then must drain them, not kill the process.
fn stop_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    until_stop_signal(signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
}

async fn until_stop_signal(
    interrupt: std::io::Result<tokio::signal::unix::Signal>,
    terminate: std::io::Result<tokio::signal::unix::Signal>,
) {
    // Both streams are registered before the first signal, so a second one
    // that follows at once is not missed.
    let (mut interrupt, mut terminate) = match (interrupt, terminate) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot watch SIGINT and SIGTERM; stop the host with SIGKILL");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping; a second signal exits at once"),
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping; a second signal exits at once"),
    }
    tokio::spawn(async move {
        let signal = tokio::select! {
            _ = interrupt.recv() => libc::SIGINT,
            _ = terminate.recv() => libc::SIGTERM,
        };
        tracing::warn!("second signal: exiting at once");
        std::process::exit(128 + signal);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports outside 1..65535 are refused with libevent's "Invalid port".
    #[test]
    fn refuses_ports_outside_range() {
        for bad in ["0.0.0.0:0", "0.0.0.0:65536", "0.0.0.0:-1", "[::1]:70000"] {
            let error = parse_listen_address(bad).unwrap_err();
            assert!(error.starts_with("Invalid port"), "{bad}: {error}");
        }
        assert_eq!(parse_listen_address("[::1]:1").unwrap(), "[::1]:1".parse().unwrap());
        assert_eq!(parse_listen_address("127.0.0.1:65535").unwrap(), "127.0.0.1:65535".parse().unwrap());
    }

    /// Durations and sizes read as documented; nonsense is refused.
    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("16M").unwrap(), 16 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("lots").is_err());
    }
}
