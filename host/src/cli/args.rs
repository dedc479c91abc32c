//! The flags and subcommands of `host`, with their documentation (what
//! `host --help` prints) and the checks that turn them into settings.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use wasmtime::Engine;

use super::new::Lang;
use super::parse::{
    parse_alpn, parse_bucket, parse_connections, parse_env, parse_listen_address, parse_listen_option, parse_unix_mode,
    parse_unix_owner, parse_workers,
};
use crate::base::units::{parse_duration, parse_size};
use crate::net::ListenOptions;
use crate::net::tls::TlsSettings;
use crate::policy::{BindAddress, ConnectRule, Limits};
use crate::store::Backend;
use crate::wasm::{CacheError, CodeCache, Isolation, Loader};

/// Runs TCP connection handlers written as WebAssembly components.
///
/// The host accepts connections on the --listen addresses and calls the
/// component's callbacks (world evconn:listener/handler) for each one, as
/// libevent's evconnlistener calls C callbacks. The guest gets WASI preview 2
/// with nothing granted: no files, no environment beyond --env, no sockets
/// of its own beyond the addresses --allow-bind and --allow-connect permit.
#[derive(Debug, Parser)]
#[command(name = "host", version, subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Something other than serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Serve what a TOML file describes: several listeners, each with its
    /// own component and options, and the settings below (see
    /// docs/configuration.md). Replaces every serving flag.
    #[arg(long, value_name = "FILE", conflicts_with_all = SERVING_FLAGS)]
    pub config: Option<PathBuf>,

    /// The handler: a WebAssembly component of the world
    /// evconn:listener/handler@0.2.0, or with --allow-precompiled a file
    /// `host compile` made from one on this machine.
    #[arg(long, value_name = "FILE", required_unless_present = "config")]
    pub component: Option<PathBuf>,

    /// An address to listen on; repeat for several. IPv6 goes in brackets:
    /// [::1]:9876. The port must be in 1..65535. unix:PATH listens on a
    /// Unix domain socket at PATH. Default: 0.0.0.0:9876,
    /// unless systemd passed listening sockets (LISTEN_FDS), which are served
    /// as well as any --listen address.
    #[arg(long = "listen", value_name = "ADDR", value_parser = |text: &str| BindAddress::parse(text, false))]
    pub listen: Vec<BindAddress>,

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

    /// The mode of unix: --listen sockets' files, in octal (such as 660).
    /// Default: what the umask leaves.
    #[arg(long, value_name = "MODE", value_parser = parse_unix_mode)]
    pub unix_mode: Option<u32>,

    /// The owner of unix: --listen sockets' files: USER, USER:GROUP or
    /// :GROUP, names or numbers. Default: the host's user.
    #[arg(long, value_name = "USER[:GROUP]", value_parser = parse_unix_owner)]
    pub unix_owner: Option<(Option<u32>, Option<u32>)>,

    /// An environment variable the guest sees (std::env::var, os.environ,
    /// getenv, wasi:cli/environment), as KEY=VALUE; repeat for several. The guest
    /// sees these and no others: the host's own environment never reaches
    /// it. Default: none.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// TLS on the listener.
    #[command(flatten)]
    pub tls: TlsArgs,

    /// Settings of the whole host.
    #[command(flatten)]
    pub host: HostFlags,

    /// Log more: -v for each connection, -vv for everything. RUST_LOG, when
    /// set, takes precedence.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Log less: -q for warnings and errors only, -qq for errors only.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

/// Every flag a config file replaces (clap's ids: the fields' names).
const SERVING_FLAGS: [&str; 37] = [
    "component",
    "listen",
    "listen_options",
    "backlog",
    "unix_mode",
    "unix_owner",
    "env",
    "tls_cert",
    "tls_key",
    "tls_alpn",
    "tls_client_ca",
    "tls_handshake_timeout",
    "allow_connect",
    "keyvalue",
    "allow_bucket",
    "keyvalue_keys",
    "keyvalue_memory",
    "connect_timeout",
    "max_outbound",
    "max_outbound_per_instance",
    "cache_dir",
    "no_cache",
    "allow_precompiled",
    "allow_bind",
    "isolation",
    "guest_timeout",
    "guest_memory",
    "max_connections",
    "write_buffer",
    "output_cap",
    "output_memory",
    "max_timers",
    "idle_timeout",
    "workers",
    "watch",
    "metrics",
    "shutdown_timeout",
];

/// Settings of the whole host, from flags or from a config file's top level.
#[derive(Debug, Clone, clap::Args)]
pub struct HostFlags {
    /// Where compiled code is kept.
    #[command(flatten)]
    pub cache: CodeArgs,

    /// An address the guest may bind with listener.bind; repeat for several.
    /// Port 0 allows every port of that IP; unix:PATH allows that path.
    /// Default: none.
    #[arg(long = "allow-bind", value_name = "ADDR")]
    pub allow_bind: Vec<BindAddress>,

    /// Where the guest may connect (outbound.connect), as HOST:PORTS; repeat
    /// for several. HOST is an IP address, a CIDR block or a host name (IPv6
    /// in brackets); PORTS a port, a range N-M, or * for any:
    /// 127.0.0.1:6379, 10.0.0.0/8:8000-8099, [::1]:*, db.internal:5432. A
    /// name allows asking for that name; every address it resolves to must
    /// be allowed too. Default: none, so a guest connects nowhere.
    #[arg(long = "allow-connect", value_name = "HOST:PORTS")]
    pub allow_connect: Vec<ConnectRule>,

    /// Where the store behind wasi:keyvalue lives: `memory` (one store in
    /// this host, shared by every instance and worker) or
    /// redis://HOST:PORT[/DB], shared by every host that names it. A bucket
    /// is a key prefix `NAME:` in Redis.
    #[arg(long, value_name = "URL", default_value = "memory")]
    pub keyvalue: Backend,

    /// A store bucket the guest may open (wasi:keyvalue's `open`); repeat
    /// for several. Default: one bucket named after the component (the
    /// file's name without .wasm); naming any replaces it.
    #[arg(long = "allow-bucket", value_name = "NAME", value_parser = parse_bucket)]
    pub allow_bucket: Vec<String>,

    /// Isolation and what a guest or a peer may use.
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Reactor threads, each with its own instance under the shared model
    /// (guests keep state per worker, not per host) and its own socket for
    /// each --listen address (SO_REUSEPORT: the kernel spreads connections).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_workers)]
    pub workers: u16,

    /// Reload the component when its file changes (looked at twice a
    /// second), as on SIGHUP: new connections go to the new version, open
    /// ones finish on the old; a version that fails to load is refused.
    #[arg(long)]
    pub watch: bool,

    /// Serve Prometheus metrics at http://ADDR/metrics, such as
    /// 127.0.0.1:9100 (the port must be in 1..65535). Default: none.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_address)]
    pub metrics: Option<SocketAddr>,

    /// When stopping (SIGINT, SIGTERM, loop-exit), how long open connections
    /// may go on before they are closed; a second signal exits at once.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// How long a TLS client may take to finish its handshake before the
    /// connection is closed, without the guest having seen it.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
}

/// Flags that make the command line's listener serve TLS.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// Serve TLS on every --listen address and inherited socket, with this
    /// certificate chain (PEM, the server's certificate first); needs
    /// --tls-key. The host completes the handshake before on-accept, and
    /// the guest reads and writes plaintext. SIGHUP (and --watch, when a
    /// file changes) reads the files again; files that do not load are
    /// refused and the running ones keep serving.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, RSA or EC); needs
    /// --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// An ALPN protocol to offer, such as h2 or http/1.1; repeat for
    /// several, most preferred first. A client that offers only others is
    /// refused. Default: none.
    #[arg(long = "tls-alpn", value_name = "PROTO", requires = "tls_cert", value_parser = parse_alpn)]
    pub tls_alpn: Vec<String>,

    /// Require every client to present a certificate that chains to a CA
    /// in this PEM bundle (mutual TLS). Default: no client certificates.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS settings the flags give, if they ask for TLS.
    pub fn settings(&self) -> Option<TlsSettings> {
        let (cert, key) = (self.tls_cert.clone()?, self.tls_key.clone()?);
        Some(TlsSettings {
            alpn: self.tls_alpn.clone(),
            client_ca: self.tls_client_ca.clone(),
            ..TlsSettings::new(cert, key)
        })
    }
}

/// Flags that say where compiled code is kept and whether machine code
/// from a file may run, for serving and `host test`.
#[derive(Debug, Clone, clap::Args)]
pub struct CodeArgs {
    /// Where compiled components are kept between runs, so a restart does
    /// not compile again. Default: $XDG_CACHE_HOME/evconn or ~/.cache/evconn.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component at every start; keep nothing on disk.
    #[arg(long)]
    pub no_cache: bool,

    /// Run a --component file that `host compile` made: machine code that
    /// runs as it is, without the checks compiling makes, so give it only
    /// for files you compiled yourself. Refused by default.
    #[arg(long)]
    pub allow_precompiled: bool,
}

/// Flags for the isolation model and the limits, for serving and `host test`.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
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
    /// the callback traps. A long-running guest yields to the reactor within
    /// 100 ms (or a quarter of the timeout, if shorter, but not under 15 ms)
    /// and every 10 ms after that, so the accept loop keeps serving
    /// meanwhile; the turns it then waits for do not count.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub guest_timeout: Duration,

    /// The most linear memory one instance may grow to, such as 64M; growing
    /// past it fails inside the guest.
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = parse_size)]
    pub guest_memory: usize,

    /// The most connections served at once; more wait in the kernel's
    /// backlog until one closes. Default: 10000, or under
    /// --isolation connection as many as vm.max_map_count allows, at most 10000.
    #[arg(long, value_name = "N", value_parser = parse_connections)]
    pub max_connections: Option<u32>,

    /// Output queued for one connection at which the host stops reading from
    /// it until the peer has taken half (libevent's watermarks), such as 1M.
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_size)]
    pub write_buffer: usize,

    /// The most output the host holds for one connection, such as 4M: a
    /// guest's write past it is refused with would-block (and taken by
    /// nothing) until the peer has read some. At least --write-buffer.
    /// Default: four times --write-buffer (4M).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub output_cap: Option<usize>,

    /// The most output the host holds for all connections together, such as
    /// 1G: a write past it is refused with would-block too, so no guest can
    /// make the host hold more. At least --output-cap.
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_size)]
    pub output_memory: usize,

    /// The most timers one instance may have at once; past it, starting one
    /// fails with limit-reached.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_timers: usize,

    /// The most outbound connections open at once across the host; past
    /// it, connecting fails with limit-reached.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_outbound: usize,

    /// The most outbound connections one instance may have open at once;
    /// past it, connecting fails with limit-reached. Default: --max-outbound,
    /// so that a shared instance (a proxy, say) can open as many as the
    /// host; lower it to bound what one connection's instance may open
    /// under --isolation connection.
    #[arg(long, value_name = "N")]
    pub max_outbound_per_instance: Option<usize>,

    /// How long an outbound connection may take to resolve its name and
    /// connect before it fails with timeout.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Close a connection that passed no bytes either way for this long,
    /// after telling the guest (a timeout event); 0 for never. Checked by a
    /// sweep: the event comes up to a quarter of the timeout (at most 1 s)
    /// late, never early.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// The most keys the in-memory store holds, across buckets; a write
    /// past it fails in the guest.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub keyvalue_keys: usize,

    /// The most bytes of keys and values (plus 64 per key) the in-memory
    /// store holds, such as 256M; a write past it fails in the guest.
    #[arg(long, value_name = "BYTES", default_value = "256M", value_parser = parse_size)]
    pub keyvalue_memory: usize,
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
    /// Make a handler project in a new folder NAME: the WIT package, a
    /// handler that welcomes each connection (counting it in the store) and
    /// echoes, a `build` script that writes NAME.wasm there, a `host test`
    /// script and a README.
    New {
        /// The project's name: lowercase letters, digits and '-'. It names
        /// the folder, the component file and the store bucket.
        name: String,
        /// The handler's language.
        #[arg(long, value_enum)]
        lang: Lang,
        /// Where to make the folder. Default: here.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Write the WIT package this host serves (world evconn:listener/handler
    /// and the wasi:keyvalue it imports) into DIR, for bindings generators.
    Wit {
        /// Where to write it.
        #[arg(default_value = "wit")]
        dir: PathBuf,
    },
    /// Make a component of a core module linked for wasm32-wasi (WASI
    /// preview 1), as clang links C: with the world's types from the
    /// bindings' object file and the preview 1 adapter of this host's
    /// wasmtime release (`wasm-tools component new --adapt` does the same).
    Component {
        /// The core module.
        core: PathBuf,
        /// Where to write the component.
        output: PathBuf,
    },
    /// Run conversation scripts (.evt files) against a component: each
    /// script gets a fresh host in this process on 127.0.0.1, every step is
    /// reported, and the exit status is non-zero if one fails. The limit
    /// flags are those of serving, but --max-connections defaults to 512.
    /// The script format is described in docs/test-kit.md.
    Test(Box<TestArgs>),
}

/// The flags of `host test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The component to test.
    pub component: PathBuf,

    /// The scripts to run, in order.
    #[arg(required = true, value_name = "SCRIPT")]
    pub scripts: Vec<PathBuf>,

    /// The deadline of each send and expect step that sets none (with
    /// `within`) and whose script sets none (with `timeout`).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Isolation and what a guest or a peer may use.
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Where the guest may connect, as for serving. Default: nowhere.
    #[arg(long = "allow-connect", value_name = "HOST:PORTS")]
    pub allow_connect: Vec<ConnectRule>,

    /// An environment variable the guest sees, as for serving.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Where the store lives, as for serving. In memory (the default), each
    /// script starts with an empty store.
    #[arg(long, value_name = "URL", default_value = "memory")]
    pub keyvalue: Backend,

    /// A store bucket the guest may open, as for serving. Default: one
    /// named after the component.
    #[arg(long = "allow-bucket", value_name = "NAME", value_parser = parse_bucket)]
    pub allow_bucket: Vec<String>,

    /// Where compiled code is kept.
    #[command(flatten)]
    pub cache: CodeArgs,

    /// Log more: -v for the host's info lines, -vv for everything. Guest
    /// output and the host's warnings are shown by default.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Log less: -q hides guest output, -qq warnings too.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

impl Args {
    /// The log level the flags ask for.
    pub fn log_level(&self) -> tracing::Level {
        if let Some(Command::Test(test)) = &self.command {
            return match (test.verbose, test.quiet) {
                (0, 0 | 1) => tracing::Level::WARN,
                (0, _) => tracing::Level::ERROR,
                (1, _) => tracing::Level::INFO,
                _ => tracing::Level::TRACE,
            };
        }
        match (self.verbose, self.quiet) {
            (0, 0) => tracing::Level::INFO,
            (1, _) => tracing::Level::DEBUG,
            (_, 0) => tracing::Level::TRACE,
            (_, 1) => tracing::Level::WARN,
            _ => tracing::Level::ERROR,
        }
    }

    /// Whether guest output is logged although the log level is below info:
    /// `host test` shows it unless told to be quiet.
    pub fn show_guest_output(&self) -> bool {
        matches!(&self.command, Some(Command::Test(test)) if test.quiet == 0)
    }

    /// The options for --listen sockets.
    pub fn listen_options(&self) -> ListenOptions {
        if self.listen_options.is_empty() {
            ListenOptions::DEFAULT
        } else {
            self.listen_options.iter().fold(ListenOptions::empty(), |all, o| all | *o)
        }
    }
}

impl Default for HostFlags {
    /// The settings with no flag given.
    fn default() -> Self {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            host: HostFlags,
        }
        Defaults::parse_from(["host"]).host
    }
}

impl HostFlags {
    /// The limits these settings ask for, checked against this machine:
    /// [`LimitArgs::limits`] and the host's TLS handshake timeout.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        if self.tls_handshake_timeout.is_zero() {
            anyhow::bail!("--tls-handshake-timeout must be longer than 0");
        }
        Ok(Limits { tls_handshake_timeout: self.tls_handshake_timeout, ..self.limits.limits()? })
    }
}

impl LimitArgs {
    /// The limits these settings ask for, checked against this machine.
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
        if self.connect_timeout.is_zero() {
            anyhow::bail!("--connect-timeout must be longer than 0");
        }
        if self.guest_memory < MIN_GUEST_MEMORY {
            anyhow::bail!("--guest-memory must be at least {}K: one WebAssembly page", MIN_GUEST_MEMORY >> 10);
        }
        let write_buffer = self.write_buffer.max(1);
        let output_cap = self.output_cap.unwrap_or(write_buffer.saturating_mul(OUTPUT_CAP_PER_WRITE_BUFFER));
        if output_cap < write_buffer {
            anyhow::bail!(
                "--output-cap ({output_cap}) is less than --write-buffer ({write_buffer}): reading would never pause \
                 before writes are refused; raise --output-cap or lower --write-buffer"
            );
        }
        if self.output_memory < output_cap {
            anyhow::bail!(
                "--output-memory ({}) is less than --output-cap ({output_cap}): no connection could reach its cap",
                self.output_memory
            );
        }
        Ok(Limits {
            guest_timeout: self.guest_timeout,
            guest_memory: self.guest_memory,
            max_timers: self.max_timers,
            max_connections,
            max_outbound: self.max_outbound,
            max_outbound_per_instance: self.max_outbound_per_instance.unwrap_or(self.max_outbound),
            connect_timeout: self.connect_timeout,
            write_buffer,
            output_cap,
            output_memory: self.output_memory,
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
            keyvalue_keys: self.keyvalue_keys,
            keyvalue_memory: self.keyvalue_memory,
            // Set by `HostFlags::limits`: `host test` serves no TLS.
            tls_handshake_timeout: Limits::default().tls_handshake_timeout,
        })
    }
}

impl CodeArgs {
    /// The compiled-code cache these settings ask for, opened (and made, if
    /// need be); refused if someone else could write to it.
    pub fn cache(&self) -> Result<Option<CodeCache>, CacheError> {
        match (&self.cache_dir, self.no_cache) {
            (_, true) => Ok(None),
            (Some(dir), false) => CodeCache::open(dir).map(Some),
            (None, false) => CodeCache::default_dir().map(CodeCache::open).transpose(),
        }
    }

    /// A loader for `engine` with these settings.
    pub fn loader(&self, engine: Engine) -> Result<Loader, CacheError> {
        Ok(Loader::new(engine).cache(self.cache()?).allow_precompiled(self.allow_precompiled))
    }
}

/// The output cap, unless given, in multiples of the write buffer: room for
/// a guest that writes a few times what it is sent before reading pauses.
const OUTPUT_CAP_PER_WRITE_BUFFER: usize = 4;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(flags: &[&str]) -> anyhow::Result<Limits> {
        let args = Args::try_parse_from(["host", "--component", "x.wasm"].iter().chain(flags))?;
        args.host.limits()
    }

    fn tls(flags: &[&str]) -> Result<Option<TlsSettings>, clap::Error> {
        Ok(Args::try_parse_from(["host", "--component", "x.wasm"].iter().chain(flags))?.tls.settings())
    }

    /// The TLS flags make the listener's settings; the certificate and the
    /// key come together or not at all, and the rest need them.
    #[test]
    fn tls_flags_make_settings() {
        assert_eq!(tls(&[]).unwrap(), None);
        let flags = ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-alpn", "h2", "--tls-alpn", "http/1.1"];
        let settings = tls(&flags).unwrap().unwrap();
        let expected = TlsSettings { alpn: vec!["h2".into(), "http/1.1".into()], ..TlsSettings::new("c.pem", "k.pem") };
        assert_eq!(settings, expected);
        let settings = tls(&["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem"]).unwrap();
        assert_eq!(settings.unwrap().client_ca, Some(PathBuf::from("ca.pem")));
        for (flags, missing) in [
            (&["--tls-cert", "c.pem"][..], "--tls-key"),
            (&["--tls-key", "k.pem"][..], "--tls-cert"),
            (&["--tls-alpn", "h2"][..], "--tls-cert"),
            (&["--tls-client-ca", "ca.pem"][..], "--tls-cert"),
        ] {
            let error = tls(flags).unwrap_err().to_string();
            assert!(error.contains(missing), "{flags:?}: {error}");
        }
        let error = tls(&["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-alpn", ""]).unwrap_err().to_string();
        assert!(error.contains("ALPN"), "{error}");
    }

    /// The handshake timeout is host-wide, 10 s unless given, never 0.
    #[test]
    fn tls_handshake_timeout_lands_in_the_limits() {
        assert_eq!(limits(&[]).unwrap().tls_handshake_timeout, Duration::from_secs(10));
        assert_eq!(
            limits(&["--tls-handshake-timeout", "2500ms"]).unwrap().tls_handshake_timeout,
            Duration::from_millis(2500)
        );
        let error = limits(&["--tls-handshake-timeout", "0"]).unwrap_err().to_string();
        assert!(error.contains("--tls-handshake-timeout"), "{error}");
        let error = Args::try_parse_from(["host", "--config", "a.toml", "--tls-cert", "c.pem"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict, "the config file replaces the TLS flags");
    }

    /// The output caps and the timer limit have their documented defaults;
    /// the cap follows --write-buffer unless given; caps that contradict
    /// each other are refused with what to change.
    #[test]
    fn output_limits_default_and_are_checked() {
        let defaults = limits(&[]).unwrap();
        assert_eq!((defaults.output_cap, defaults.output_memory, defaults.max_timers), (4 << 20, 1 << 30, 1024));
        assert_eq!(limits(&["--write-buffer", "2M"]).unwrap().output_cap, 8 << 20);
        assert_eq!(limits(&["--output-cap", "1M"]).unwrap().output_cap, 1 << 20);
        let error = limits(&["--output-cap", "512K"]).unwrap_err().to_string();
        assert!(error.contains("less than --write-buffer"), "{error}");
        let error = limits(&["--output-memory", "2M"]).unwrap_err().to_string();
        assert!(error.contains("no connection could reach its cap"), "{error}");
    }

    /// An instance may open as many outbound connections as the host
    /// unless told fewer.
    #[test]
    fn outbound_limits_default_to_the_hosts() {
        let defaults = limits(&[]).unwrap();
        assert_eq!((defaults.max_outbound, defaults.max_outbound_per_instance), (10_000, 10_000));
        assert_eq!(limits(&["--max-outbound", "50"]).unwrap().max_outbound_per_instance, 50);
        let both = limits(&["--max-outbound", "50", "--max-outbound-per-instance", "5"]).unwrap();
        assert_eq!((both.max_outbound, both.max_outbound_per_instance), (50, 5));
        assert!(limits(&["--connect-timeout", "0"]).is_err(), "a connect timeout of 0 is refused");
    }
}
