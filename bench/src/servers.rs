//! The servers: how each is started on a free loopback port, checked,
//! timed until its first echo, and stopped.
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    EvconnShared,
    EvconnConnection,
    Tokio,
    Libevent,
    /// evconn's alternative: a guest that binds, listens and accepts through
    /// `wasi:sockets` itself (bench/socket-echo, wstd), run by the wasmtime
    /// CLI at the host's wasmtime version.
    GuestSocket,
    /// The proxy suite: evconn's host with the proxy guest
    /// (examples/proxy), each isolation model; named in JSON as in logs.
    #[serde(rename = "proxy-evconn-shared")]
    ProxyShared,
    #[serde(rename = "proxy-evconn-connection")]
    ProxyConnection,
    /// HAProxy in `mode tcp`, one thread.
    Haproxy,
    /// nginx's `stream` module, one worker, no master.
    Nginx,
    /// This crate's `native-proxy`: tokio current_thread,
    /// `copy_bidirectional`.
    TokioProxy,
    /// The kv suite: evconn's host with the kv guest (examples/kv), its
    /// data in the host's in-memory store, each isolation model.
    #[serde(rename = "kv-evconn-shared")]
    KvShared,
    #[serde(rename = "kv-evconn-connection")]
    KvConnection,
    /// Debian's `redis-server`, nothing saved to disk.
    RedisServer,
    /// The tls suite: evconn's host with the echo guest on the shared
    /// model, terminating TLS itself (`--tls-cert`, `--tls-key`).
    #[serde(rename = "tls-evconn-shared")]
    TlsShared,
    /// HAProxy terminating TLS, one thread, relaying plain TCP to the
    /// native echo: TLS termination and a native handler.
    #[serde(rename = "tls-haproxy")]
    TlsHaproxy,
    /// This crate's `native-tls-echo`: tokio current_thread, tokio-rustls.
    #[serde(rename = "tls-tokio")]
    TlsTokio,
}

/// Which servers a run compares: echo servers, proxies in front of one
/// native echo backend, key-value servers, or echo servers behind TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Suite {
    Echo,
    Proxy,
    Kv,
    Tls,
}

impl Suite {
    /// Its servers, in the order of the report.
    pub fn servers(self) -> &'static [ServerKind] {
        match self {
            Suite::Echo => &ServerKind::ALL,
            Suite::Proxy => &ServerKind::PROXIES,
            Suite::Kv => &ServerKind::KV,
            Suite::Tls => &ServerKind::TLS,
        }
    }

    /// evconn's isolation models in this suite: both, but only the shared
    /// one behind TLS (what TLS costs does not depend on the model).
    pub fn evconn(self) -> &'static [ServerKind] {
        match self {
            Suite::Echo => &ServerKind::EVCONN,
            Suite::Proxy => &[ServerKind::ProxyShared, ServerKind::ProxyConnection],
            Suite::Kv => &[ServerKind::KvShared, ServerKind::KvConnection],
            Suite::Tls => &[ServerKind::TlsShared],
        }
    }

    /// The native server the project's targets name besides the best one:
    /// libevent for the echo, HAProxy for the proxy, Redis for the kv,
    /// HAProxy terminating TLS for the tls suite.
    pub fn reference(self) -> ServerKind {
        match self {
            Suite::Echo => ServerKind::Libevent,
            Suite::Proxy => ServerKind::Haproxy,
            Suite::Kv => ServerKind::RedisServer,
            Suite::Tls => ServerKind::TlsHaproxy,
        }
    }

    /// Whether this suite runs `test`: the proxy suite has no start, curve
    /// or floor (they are about starting and calling the echo guest); the
    /// kv suite runs redis-benchmark alone, and the tls suite handshakes
    /// and bulk over TLS alone, which no other suite runs.
    pub fn runs(self, test: crate::figures::Test) -> bool {
        use crate::figures::Test;
        let tls = matches!(test, Test::Handshake | Test::TlsBulk);
        match self {
            Suite::Echo => test != Test::Redis && !tls,
            Suite::Proxy => !matches!(test, Test::Start | Test::Curve | Test::Floor | Test::Redis) && !tls,
            Suite::Kv => test == Test::Redis,
            Suite::Tls => tls,
        }
    }

    /// The folder name's suffix and the report title's.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Echo => "echo",
            Suite::Proxy => "proxy",
            Suite::Kv => "kv",
            Suite::Tls => "tls",
        }
    }
}

impl ServerKind {
    /// Every server, in the order of the report.
    pub const ALL: [ServerKind; 5] = [
        ServerKind::EvconnShared,
        ServerKind::EvconnConnection,
        ServerKind::Tokio,
        ServerKind::Libevent,
        ServerKind::GuestSocket,
    ];

    /// The servers of the connection-count curve: evconn, its alternative,
    /// and the native echo as the anchor.
    pub const CURVE: [ServerKind; 4] =
        [ServerKind::EvconnShared, ServerKind::EvconnConnection, ServerKind::GuestSocket, ServerKind::Tokio];

    /// Every proxy, in the order of the report.
    pub const PROXIES: [ServerKind; 5] = [
        ServerKind::ProxyShared,
        ServerKind::ProxyConnection,
        ServerKind::Haproxy,
        ServerKind::Nginx,
        ServerKind::TokioProxy,
    ];

    /// Every key-value server, in the order of the report.
    pub const KV: [ServerKind; 3] = [ServerKind::KvShared, ServerKind::KvConnection, ServerKind::RedisServer];

    /// Every server of the tls suite, in the order of the report.
    pub const TLS: [ServerKind; 3] = [ServerKind::TlsShared, ServerKind::TlsHaproxy, ServerKind::TlsTokio];

    /// The two ways evconn runs the echo guest.
    pub const EVCONN: [ServerKind; 2] = [ServerKind::EvconnShared, ServerKind::EvconnConnection];

    /// The name in JSON and log files.
    pub fn key(self) -> &'static str {
        match self {
            ServerKind::EvconnShared => "evconn-shared",
            ServerKind::EvconnConnection => "evconn-connection",
            ServerKind::Tokio => "tokio",
            ServerKind::Libevent => "libevent",
            ServerKind::GuestSocket => "guest-socket",
            ServerKind::ProxyShared => "proxy-evconn-shared",
            ServerKind::ProxyConnection => "proxy-evconn-connection",
            ServerKind::Haproxy => "haproxy",
            ServerKind::Nginx => "nginx",
            ServerKind::TokioProxy => "tokio-proxy",
            ServerKind::KvShared => "kv-evconn-shared",
            ServerKind::KvConnection => "kv-evconn-connection",
            ServerKind::RedisServer => "redis-server",
            ServerKind::TlsShared => "tls-evconn-shared",
            ServerKind::TlsHaproxy => "tls-haproxy",
            ServerKind::TlsTokio => "tls-tokio",
        }
    }

    /// The name in the table and the chart.
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::EvconnShared => "evconn shared",
            ServerKind::EvconnConnection => "evconn connection",
            ServerKind::Tokio => "tokio native",
            ServerKind::Libevent => "libevent",
            ServerKind::GuestSocket => "guest socket (wstd)",
            ServerKind::ProxyShared => "evconn shared",
            ServerKind::ProxyConnection => "evconn connection",
            ServerKind::Haproxy => "HAProxy",
            ServerKind::Nginx => "nginx stream",
            ServerKind::TokioProxy => "tokio proxy",
            ServerKind::KvShared => "evconn shared",
            ServerKind::KvConnection => "evconn connection",
            ServerKind::RedisServer => "redis-server",
            ServerKind::TlsShared => "evconn shared",
            ServerKind::TlsHaproxy => "HAProxy + native echo",
            ServerKind::TlsTokio => "tokio-rustls",
        }
    }

    /// Whether this is evconn's host.
    pub fn is_evconn(self) -> bool {
        Self::EVCONN.contains(&self)
            || matches!(
                self,
                ServerKind::ProxyShared
                    | ServerKind::ProxyConnection
                    | ServerKind::KvShared
                    | ServerKind::KvConnection
                    | ServerKind::TlsShared
            )
    }

    /// Whether this is a native server the sandbox is compared with.
    pub fn is_native(self) -> bool {
        matches!(
            self,
            ServerKind::Tokio
                | ServerKind::Libevent
                | ServerKind::Haproxy
                | ServerKind::Nginx
                | ServerKind::TokioProxy
                | ServerKind::RedisServer
                | ServerKind::TlsHaproxy
                | ServerKind::TlsTokio
        )
    }

    /// Whether clients reach this server over TLS.
    pub fn is_tls(self) -> bool {
        Self::TLS.contains(&self)
    }
}

/// The programs the servers run, or why one is missing.
#[derive(Debug, Clone)]
pub struct Programs {
    pub host: PathBuf,
    pub echo_wasm: PathBuf,
    pub native_echo: PathBuf,
    /// The echo guest on wasmtime alone, for the floor (`floor`).
    pub wasmtime_floor: PathBuf,
    /// Err: why libevent's echo server is not there.
    pub libevent_echo: Result<PathBuf, String>,
    /// The wasmtime CLI that runs `socket_echo`; Err: why it is not there.
    pub wasmtime_cli: Result<PathBuf, String>,
    /// The echo guest that owns its socket (bench/socket-echo).
    pub socket_echo: PathBuf,
    /// The proxy suite: the proxy guest, the native tokio proxy, HAProxy
    /// and nginx (Err: why they are not there), and nginx's stream module.
    pub proxy_wasm: PathBuf,
    pub native_proxy: PathBuf,
    pub haproxy: Result<PathBuf, String>,
    pub nginx: Result<PathBuf, String>,
    pub nginx_stream_module: PathBuf,
    /// The kv suite: the kv guest, redis-server (Err: why it is not
    /// there) and the load, redis-benchmark.
    pub kv_wasm: PathBuf,
    pub redis_server: Result<PathBuf, String>,
    pub redis_benchmark: PathBuf,
    /// The tls suite: the native tokio-rustls echo, and the run's
    /// certificate with the clients' configuration once made.
    pub native_tls_echo: PathBuf,
    pub tls: Option<Tls>,
    /// Where the proxies' configuration files are written.
    pub configs: PathBuf,
    /// The echo backend every proxy relays to, once the runner started it.
    pub backend: Option<SocketAddr>,
}

/// The tls suite's certificate, and how every client of the run (the
/// load and the readiness probe) connects.
#[derive(Debug, Clone)]
pub struct Tls {
    pub certificate: crate::certificate::RunCertificate,
    pub client: std::sync::Arc<rustls::ClientConfig>,
}

/// What installs the wasmtime CLI the guest-socket server runs on.
pub const WASMTIME_CLI_INSTALL: &str = "scripts/setup bench";

/// What installs HAProxy and nginx with its stream module.
pub const PROXIES_INSTALL: &str = "scripts/setup";

/// Stands for the backend's address in the commands the report shows.
const BACKEND_PLACEHOLDER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 2);

impl Programs {
    /// Checks the files exist; the first missing one that is not allowed to
    /// be missing is an error.
    pub fn check(&self, suite: Suite) -> Result<(), String> {
        let mut missing = Vec::new();
        let files = match suite {
            Suite::Echo => vec![&self.host, &self.echo_wasm, &self.native_echo, &self.wasmtime_floor],
            Suite::Proxy => vec![&self.host, &self.proxy_wasm, &self.native_echo, &self.native_proxy],
            Suite::Kv => vec![&self.host, &self.kv_wasm],
            Suite::Tls => vec![&self.host, &self.echo_wasm, &self.native_echo, &self.native_tls_echo],
        };
        for path in files {
            if !path.is_file() {
                missing.push(path.display().to_string());
            }
        }
        if suite == Suite::Kv {
            if let Ok(path) = &self.redis_server
                && !path.is_file()
            {
                missing.push(format!("{} (`{PROXIES_INSTALL}` installs redis-server)", path.display()));
            }
            if !self.redis_benchmark.is_file() {
                missing.push(format!("{} (`{PROXIES_INSTALL}` installs redis-tools)", self.redis_benchmark.display()));
            }
            if !missing.is_empty() {
                return Err(format!("missing: {}", missing.join(", ")));
            }
            return Ok(());
        }
        if suite == Suite::Tls {
            if let Ok(path) = &self.haproxy
                && !path.is_file()
            {
                missing.push(format!(
                    "{} (`{PROXIES_INSTALL}` installs haproxy, or pass --haproxy-missing REASON)",
                    path.display()
                ));
            }
            if !missing.is_empty() {
                return Err(format!("missing: {}", missing.join(", ")));
            }
            return Ok(());
        }
        if suite == Suite::Proxy {
            for (name, program) in [("haproxy", &self.haproxy), ("nginx", &self.nginx)] {
                if let Ok(path) = program
                    && !path.is_file()
                {
                    missing.push(format!(
                        "{} (`{PROXIES_INSTALL}` installs {name}, or pass --{name}-missing REASON)",
                        path.display()
                    ));
                }
            }
            if self.nginx.is_ok() && !self.nginx_stream_module.is_file() {
                missing.push(format!(
                    "{} (nginx's stream module: `{PROXIES_INSTALL}` installs libnginx-mod-stream)",
                    self.nginx_stream_module.display()
                ));
            }
            if !missing.is_empty() {
                return Err(format!("missing: {}", missing.join(", ")));
            }
            return Ok(());
        }
        if let Ok(path) = &self.libevent_echo
            && !path.is_file()
        {
            missing.push(format!(
                "{} (build it with `cc -O2 bench/libevent/echo.c -levent`, or pass --libevent-missing REASON)",
                path.display()
            ));
        }
        if let Ok(path) = &self.wasmtime_cli {
            if !path.is_file() {
                missing.push(format!(
                    "{} (the wasmtime CLI: `{WASMTIME_CLI_INSTALL}` installs it, or pass --guest-socket-missing REASON)",
                    path.display()
                ));
            }
            if !self.socket_echo.is_file() {
                missing.push(self.socket_echo.display().to_string());
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing: {} (scripts/bench builds them all)", missing.join(", ")))
        }
    }

    /// Why `kind` cannot run, if it cannot.
    pub fn missing(&self, kind: ServerKind) -> Option<&str> {
        match (kind, &self.libevent_echo, &self.wasmtime_cli) {
            (ServerKind::Libevent, Err(reason), _) => Some(reason),
            (ServerKind::GuestSocket, _, Err(reason)) => Some(reason),
            (ServerKind::Haproxy | ServerKind::TlsHaproxy, ..) => self.haproxy.as_ref().err().map(String::as_str),
            (ServerKind::Nginx, ..) => self.nginx.as_ref().err().map(String::as_str),
            (ServerKind::RedisServer, ..) => self.redis_server.as_ref().err().map(String::as_str),
            _ => None,
        }
    }

    /// The backend a proxy relays to: the placeholder before the runner
    /// started it.
    fn backend(&self) -> SocketAddr {
        self.backend.unwrap_or(BACKEND_PLACEHOLDER)
    }

    /// The tls suite's certificate and client settings, made by then.
    pub fn tls(&self) -> &Tls {
        self.tls.as_ref().expect("the tls suite makes its certificate before it starts a server")
    }

    /// HAProxy's or nginx's configuration for a start on `address`: the
    /// file it goes in and its text; None for a server without one.
    fn config(&self, kind: ServerKind, address: SocketAddr) -> Option<(PathBuf, String)> {
        let name = format!("{}-{}", kind.key(), address.port());
        match kind {
            ServerKind::Haproxy => Some((
                self.configs.join(format!("{name}.cfg")),
                crate::proxies::haproxy_config(address, self.backend()),
            )),
            ServerKind::TlsHaproxy => Some((
                self.configs.join(format!("{name}.cfg")),
                crate::proxies::haproxy_tls_config(address, self.backend(), &self.tls().certificate.combined),
            )),
            ServerKind::Nginx => {
                let prefix = self.configs.join(&name);
                let text = crate::proxies::nginx_config(address, self.backend(), &prefix, &self.nginx_stream_module);
                Some((prefix.join("nginx.conf"), text))
            }
            _ => None,
        }
    }

    /// Writes the configuration a start of `kind` on `address` reads.
    fn prepare(&self, kind: ServerKind, address: SocketAddr) -> Result<(), String> {
        let Some((file, text)) = self.config(kind, address) else { return Ok(()) };
        let dir = file.parent().expect("a file in a folder");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))
    }

    /// The command that serves echo on `address` (127.0.0.1:port); `code`
    /// says what the host loads (the native servers have nothing to load).
    pub fn command(&self, kind: ServerKind, address: SocketAddr, code: &Code) -> Command {
        let host = |isolation: &str| {
            let mut c = Command::new(&self.host);
            let wasm = if ServerKind::PROXIES.contains(&kind) {
                &self.proxy_wasm
            } else if ServerKind::KV.contains(&kind) {
                &self.kv_wasm
            } else {
                &self.echo_wasm
            };
            match code {
                Code::Component => c.arg("--component").arg(wasm),
                Code::CacheIn(dir) => c.arg("--component").arg(wasm).arg("--cache-dir").arg(dir),
                Code::Precompiled(file) => c.arg("--component").arg(file).arg("--allow-precompiled"),
            };
            c.arg("--listen").arg(address.to_string()).args(["--isolation", isolation]);
            if ServerKind::PROXIES.contains(&kind) {
                let backend = self.backend().to_string();
                // Otherwise the host's defaults: one instance may open as
                // many outbound connections as the host (10,000).
                c.arg("--env").arg(format!("BACKENDS={backend}")).arg("--allow-connect").arg(backend);
            }
            if kind.is_tls() {
                let certificate = &self.tls().certificate;
                c.arg("--tls-cert").arg(&certificate.cert).arg("--tls-key").arg(&certificate.key);
            }
            // Otherwise the host's defaults, as a user runs it: its idle
            // timeout (300 s) outlasts every test. A stopped run must not
            // wait 10 s for stragglers.
            c.args(["--shutdown-timeout", "1s"]);
            c
        };
        match kind {
            ServerKind::EvconnShared => host("shared"),
            ServerKind::EvconnConnection => host("connection"),
            ServerKind::Tokio => {
                let mut c = Command::new(&self.native_echo);
                c.arg("--listen").arg(address.to_string());
                c
            }
            ServerKind::Libevent => {
                // The example binds 0.0.0.0 and takes only a port.
                let mut c = Command::new(self.libevent_echo.as_ref().expect("checked by the runner"));
                c.arg(address.port().to_string());
                c
            }
            ServerKind::GuestSocket => {
                // As a user runs it: the CLI's defaults, and the network the
                // guest binds from inherited (TCP is allowed by default).
                let mut c = Command::new(self.wasmtime_cli.as_ref().expect("checked by the runner"));
                c.args(["run", "-S", "inherit-network=y"]).arg(&self.socket_echo).arg(address.to_string());
                c
            }
            ServerKind::ProxyShared | ServerKind::KvShared | ServerKind::TlsShared => host("shared"),
            ServerKind::ProxyConnection | ServerKind::KvConnection => host("connection"),
            ServerKind::RedisServer => {
                // As the tests start it: loopback, nothing saved, one
                // process, the rest of Debian's defaults.
                let mut c = Command::new(self.redis_server.as_ref().expect("checked by the runner"));
                c.args(["--bind", "127.0.0.1", "--port"]).arg(address.port().to_string());
                c.args(["--save", "", "--appendonly", "no"]);
                c
            }
            ServerKind::TokioProxy => {
                let mut c = Command::new(&self.native_proxy);
                c.arg("--listen").arg(address.to_string()).arg("--backend").arg(self.backend().to_string());
                c
            }
            ServerKind::TlsTokio => {
                let certificate = &self.tls().certificate;
                let mut c = Command::new(&self.native_tls_echo);
                c.arg("--listen").arg(address.to_string());
                c.arg("--cert").arg(&certificate.cert).arg("--key").arg(&certificate.key);
                c
            }
            ServerKind::Haproxy | ServerKind::TlsHaproxy => {
                // -db: in the foreground, as a child the runner can stop.
                let mut c = Command::new(self.haproxy.as_ref().expect("checked by the runner"));
                let (file, _) = self.config(kind, address).expect("HAProxy has a configuration");
                c.arg("-f").arg(file).arg("-db");
                c
            }
            ServerKind::Nginx => {
                let mut c = Command::new(self.nginx.as_ref().expect("checked by the runner"));
                let (file, _) = self.config(kind, address).expect("nginx has a configuration");
                let prefix = file.parent().expect("a file in a folder");
                c.arg("-c").arg(&file).arg("-p").arg(prefix).args(["-e", "stderr"]);
                c
            }
        }
    }

    /// The command line of `kind`, for the report.
    pub fn describe(&self, kind: ServerKind) -> String {
        if let Some(reason) = self.missing(kind) {
            return format!("missing: {reason}");
        }
        // Port 1 stands for the free port each start picks.
        let address = SocketAddr::from(([127, 0, 0, 1], 1));
        let placeholders = Programs { backend: None, ..self.clone() };
        let c = placeholders.command(kind, address, &Code::Component);
        let mut words = vec![c.get_program().to_string_lossy().into_owned()];
        words.extend(c.get_args().map(|a| match a.to_string_lossy().as_ref() {
            "127.0.0.1:1" => "127.0.0.1:PORT".to_string(),
            "1" => "PORT".to_string(),
            other => other.to_string(),
        }));
        let mut described = words.join(" ");
        if let Some((_, text)) = placeholders.config(kind, address) {
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            described = format!("{described}`, with `{text}");
        }
        described
            .replace("127.0.0.1:1", "127.0.0.1:PORT")
            .replace(&BACKEND_PLACEHOLDER.to_string(), "127.0.0.1:BACKEND")
    }
}

/// What the host loads at start-up (the other servers load what they
/// always load).
#[derive(Debug, Clone)]
pub enum Code {
    /// The echo component, with the host's default code cache (the user's
    /// folder, warm after the first start).
    Component,
    /// The echo component, with its compiled code kept in this folder.
    CacheIn(PathBuf),
    /// A file `host compile` made from the echo component.
    Precompiled(PathBuf),
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub kind: ServerKind,
    pub pid: u32,
    pub address: SocketAddr,
    /// From spawning the process to its first echo: the start time.
    pub ready_after: Duration,
    child: Option<Child>,
}

/// The longest a server may take to answer its first echo: the host
/// compiles the guest at start-up, slowly in a debug build.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a starting server is tried: the resolution of the start time.
/// A refused connect costs microseconds; between tries the load CPU sleeps.
const START_POLL: Duration = Duration::from_millis(1);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `kind` serving `code` on a free port, pinned to `cpu`, its output
/// appended to `log`, and waits until it echoes.
pub fn start(
    programs: &Programs,
    kind: ServerKind,
    code: &Code,
    cpu: Option<usize>,
    log: &Path,
) -> Result<Server, String> {
    let address = free_port().map_err(|e| format!("no free port: {e}"))?;
    programs.prepare(kind, address)?;
    let mut command = programs.command(kind, address, code);
    let mut out = File::options().create(true).append(true).open(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let _ = writeln!(out, "==== {} on {address} ({code:?}) at {}", kind.key(), crate::clock::utc_now());
    let err = out.try_clone().map_err(|e| e.to_string())?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    if let Some(cpu) = cpu {
        crate::system::pin_command(&mut command, cpu);
    }
    let spawned = Instant::now();
    let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", kind.key()))?;
    let mut server = Server { kind, pid: child.id(), address, ready_after: Duration::ZERO, child: Some(child) };
    let tls = kind.is_tls().then(|| programs.tls().client.clone());
    let logged = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    server.ready_after = server.wait_ready(spawned, log, logged, tls)?;
    Ok(server)
}

impl Server {
    /// Waits until one exchange on a fresh connection (over TLS with
    /// `tls`) succeeds, or the server exits, or time runs out; returns the
    /// time since `spawned`. This start's output is in `log` from byte
    /// `logged` on.
    fn wait_ready(
        &mut self,
        spawned: Instant,
        log: &Path,
        logged: u64,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Duration, String> {
        let deadline = spawned + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let why = refused_flag(log, logged).map(|flag| format!(": {flag}")).unwrap_or_default();
                return Err(format!(
                    "{} exited ({status}) before serving{why}; see {}",
                    self.kind.key(),
                    log.display()
                ));
            }
            match exchange(self.address, deadline, self.kind, tls.clone()) {
                Ok(()) => return Ok(spawned.elapsed()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "{} did not echo within {START_TIMEOUT:?}: {e}; see {}",
                        self.kind.key(),
                        log.display()
                    ));
                }
                Err(_) => std::thread::sleep(START_POLL),
            }
        }
    }

    /// Stops the server: SIGTERM, then SIGKILL after STOP_TIMEOUT. Returns
    /// how it ended.
    pub fn stop(mut self) -> String {
        let Some(mut child) = self.child.take() else { return "already gone".into() };
        // The pid is our child's, not yet reaped, so it cannot name another
        // process.
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        match crate::system::wait_at_most(&mut child, STOP_TIMEOUT) {
            Ok(Some(status)) => status.to_string(),
            Ok(None) => format!("killed: still running {STOP_TIMEOUT:?} after SIGTERM"),
            Err(e) => format!("killed: cannot wait for it after SIGTERM: {e}"),
        }
    }
}

impl Drop for Server {
    /// A server whose measurement failed part-way is not left running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port nobody is using at this moment.
fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// One small exchange over a fresh connection, waiting for it until
/// `deadline` at most: an echo (over TLS, after a handshake, with `tls`),
/// or a key-value server's PONG. A host that has bound its port but not
/// yet started serving leaves the connection in the backlog: the answer
/// comes when it does.
fn exchange(
    address: SocketAddr,
    deadline: Instant,
    kind: ServerKind,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500))?;
    let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_read_timeout(Some(wait))?;
    let (probe, answer): (&[u8], &[u8]) =
        if ServerKind::KV.contains(&kind) { (b"PING\r\n", b"+PONG\r\n") } else { (b"ready?", b"ready?") };
    let mut back = vec![0u8; answer.len()];
    match tls {
        Some(config) => {
            let client = rustls::ClientConnection::new(config, crate::tls_client::server_name())
                .map_err(std::io::Error::other)?;
            let mut stream = rustls::StreamOwned::new(client, stream);
            stream.write_all(probe)?;
            stream.read_exact(&mut back)?;
        }
        None => {
            stream.write_all(probe)?;
            stream.read_exact(&mut back)?;
        }
    }
    if back != answer {
        return Err(std::io::Error::other("the answer differs from what was expected"));
    }
    Ok(())
}

/// The flag a server that exited at once refused, from what it wrote to
/// `log` after byte `from` (clap's "unexpected argument '--tls-cert'
/// found"): a host without a feature the suite needs says so plainly.
fn refused_flag(log: &Path, from: u64) -> Option<String> {
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(text.get(from as usize..)?);
    let line = text.lines().find(|l| l.contains("unexpected argument"))?;
    let flag = line.split('\'').nth(1)?;
    Some(format!("it does not accept {flag} (a host without that feature?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// results.json names every server by the key its logs have.
    #[test]
    fn json_names_are_the_keys() {
        for kind in ServerKind::ALL.into_iter().chain(ServerKind::PROXIES).chain(ServerKind::KV).chain(ServerKind::TLS)
        {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.key(), "{kind:?}");
        }
    }

    /// A host that predates a flag the suite passes fails to start, and
    /// the failure names the flag; other exits name none.
    #[test]
    fn an_exit_names_the_flag_the_server_refused() {
        let log = std::env::temp_dir().join(format!("evconn-bench-refused-{}.log", std::process::id()));
        let earlier = "==== an earlier start\nerror: unexpected argument '--old' found\n";
        let this = "==== tls-evconn-shared\nerror: unexpected argument '--tls-cert' found\n\nUsage: host [OPTIONS]\n";
        std::fs::write(&log, format!("{earlier}{this}")).unwrap();
        let refused = refused_flag(&log, earlier.len() as u64).unwrap();
        assert!(refused.starts_with("it does not accept --tls-cert"), "{refused}");
        std::fs::write(&log, "==== a start\nError: cannot bind\n").unwrap();
        assert_eq!(refused_flag(&log, 0), None);
        std::fs::remove_file(&log).unwrap();
    }
}
