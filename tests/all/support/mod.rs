//! Test support: builds the guests, starts hosts on loopback (in this process
//! or as the `host` binary) and talks to them.
#![allow(dead_code)] // each test file uses its own part of this module

pub mod activation;
pub mod host_test;
pub mod procfs;
pub mod tls;
pub mod tools;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use evconn_host::kit;
use evconn_host::net::ListenOptions;
use evconn_host::policy::Limits;
use evconn_host::wasm::Isolation;
use rustix::process::{Pid, Signal, kill_process};

/// The workspace's root folder.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

/// The compiled component of the guest crate `name` (`echo`, `probe`, ...).
///
/// The first call in a test process builds every guest in the workspace for
/// wasm32-wasip2 (a no-op when they are up to date), into a target folder of
/// their own so the build never waits on the outer `cargo test`.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let target = workspace().join("target").join("guests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            // Native crates are the ones named `evconn-*` (see Cargo.toml).
            .args(["build", "--quiet", "--workspace", "--exclude", "evconn-*"])
            .args(["--target", "wasm32-wasip2", "--profile", "guest"])
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the guests failed (is the wasm32-wasip2 target installed?)");
        target.join("wasm32-wasip2").join("guest")
    });
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.exists(), "no guest named {name} at {}", path.display());
    path
}

/// A copy of guest `name` named `NAME-ROLE-PID`, and that name: the
/// component name an in-process host serving it tags its log lines with,
/// so that they can be told from those of the other in-process hosts of
/// this test process (see [`captured_log`]).
pub fn guest_named(name: &str, role: &str) -> (PathBuf, String) {
    let component = format!("{name}-{role}-{}", std::process::id());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{component}.wasm"));
    std::fs::copy(guest(name), &path).unwrap();
    (path, component)
}

/// libevent's echo handler written in `lang`: `rust` (the guest in
/// guest/echo), `c`, `python` or `js` (the examples in examples/echo-*).
pub fn echo(lang: &str) -> PathBuf {
    match lang {
        "rust" => guest("echo"),
        lang => example(&format!("echo-{lang}")),
    }
}

/// The component of the non-Rust example in `examples/<name>` (`echo-c`,
/// `echo-python`, `echo-js`), built by the example's `build` script into
/// `target/guests/<lang>/<name>.wasm`, `<lang>` being the name's last part.
///
/// Builds only when a source is newer than the component, so a test process
/// builds each example at most once and later processes reuse it. The C
/// build makes its component with this test build's `host component`.
pub fn example(name: &str) -> PathBuf {
    // One build at a time: tests of one example ask for it together.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let folder = workspace().join("examples").join(name);
    let lang = name.rsplit('-').next().expect("split yields a part");
    let out_dir = workspace().join("target").join("guests").join(lang);
    let output = out_dir.join(format!("{name}.wasm"));
    // What the build reads: the example, the contract, and the C guests' tool.
    let sources = [folder.clone(), workspace().join("wit"), workspace().join("guest").join("c")];
    let built = modified(&output);
    if built.is_none() || sources.iter().any(|source| newest_file(source) > built) {
        let started = Instant::now();
        let status = Command::new(folder.join("build"))
            .arg(&out_dir)
            .env("CARGO_TARGET_DIR", workspace().join("target").join("guests"))
            .env("HOST", host_binary())
            .status()
            .expect("the build script runs");
        assert!(status.success(), "examples/{name}/build failed: {status} (has scripts/setup run?)");
        eprintln!("built examples/{name} in {:.1} s", started.elapsed().as_secs_f64());
    }
    assert!(output.exists(), "examples/{name}/build made no {}", output.display());
    output
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The latest modification time of a file under `dir`, leaving out what
/// installs and builds write there (`node_modules`, `__pycache__`).
fn newest_file(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            let skip = matches!(entry.file_name().to_str(), Some("node_modules" | "__pycache__"));
            if skip { None } else { newest_file(&path) }
        } else {
            modified(&path)
        };
        newest = newest.max(time);
    }
    newest
}

/// The log of this test process's in-process hosts, line by line.
#[derive(Default)]
pub struct CapturedLog {
    pub lines: Mutex<Vec<String>>,
    /// Notified when lines are added.
    pub added: Condvar,
}

/// The log of the in-process hosts of this test process, kept in memory
/// for tests that read it (and shown in the test's output too).
pub fn captured_log() -> &'static CapturedLog {
    init_logging();
    CAPTURED.get().expect("set by init_logging")
}

static CAPTURED: OnceLock<CapturedLog> = OnceLock::new();

/// Sends the in-process hosts' logs at info into [`captured_log`], once per
/// test process.
fn init_logging() {
    /// One event's text, added to the captured lines when it is complete.
    struct Lines(Vec<u8>);
    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Drop for Lines {
        fn drop(&mut self) {
            let log = CAPTURED.get().expect("set before the subscriber");
            let text = String::from_utf8_lossy(&self.0);
            let mut lines = log.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for line in text.lines() {
                eprintln!("log| {line}");
                lines.push(line.to_string());
            }
            log.added.notify_all();
        }
    }
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        CAPTURED.get_or_init(Default::default);
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn"))
            .with_ansi(false)
            .with_writer(|| Lines(Vec::new()))
            .try_init()
            .expect("the only subscriber of the test process");
    });
}

/// Compiles `component` into [`code_cache`] unless it is there already, so
/// that a `host` process given `--cache-dir` with that folder starts without
/// compiling (which takes a minute for Python or JavaScript in a debug build).
pub fn precompile(component: &Path) {
    static LOADER: OnceLock<evconn_host::wasm::Loader> = OnceLock::new();
    // One engine fills the cache for every serving engine.
    let loader = LOADER.get_or_init(|| {
        let engine = evconn_host::wasm::compiling_engine().expect("an engine");
        evconn_host::wasm::Loader::new(engine).cache(Some(code_cache()))
    });
    loader.load(component).expect("the guest loads");
}

/// Compiled code kept under target/ across test processes and runs:
/// compiling a Python or JavaScript guest takes a minute in a debug build.
/// In-process hosts use it, and hosts started as processes share it through
/// `--cache-dir`.
pub fn code_cache() -> evconn_host::wasm::CodeCache {
    let dir = workspace().join("target").join("guests").join("code-cache");
    evconn_host::wasm::CodeCache::open(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// A host running in this process on its own thread (the test kit's
/// [`kit::Host`]), which must stop cleanly when dropped.
pub struct TestHost {
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener's address, in order.
    pub addrs: Vec<SocketAddr>,
    host: Option<kit::Host>,
}

/// Options for a [`TestHost`]: the kit's builder, with addresses as text.
pub struct TestHostBuilder(kit::HostBuilder);

impl TestHostBuilder {
    /// Adds a listener on `address` (port 0 picks one) with `options`.
    pub fn listen(self, address: &str, options: ListenOptions) -> Self {
        Self(self.0.listen(address.parse().expect("a socket address"), options))
    }

    /// Lets the guest bind `address`.
    pub fn allow_bind(self, address: &str) -> Self {
        Self(self.0.allow_bind(address.parse().expect("a socket address")))
    }

    /// Lets the guest connect where `rule` (`--allow-connect`'s form) allows.
    pub fn allow_connect(self, rule: &str) -> Self {
        Self(self.0.allow_connect(rule.parse().expect("an --allow-connect entry")))
    }

    /// Gives the guest the environment variable `key`.
    pub fn env(self, key: &str, value: &str) -> Self {
        Self(self.0.env(key, value))
    }

    /// Lets the guest open the store's bucket `name`.
    pub fn allow_bucket(self, name: &str) -> Self {
        Self(self.0.allow_bucket(name))
    }

    /// Keeps the store where `url` (`--keyvalue`'s form) says.
    pub fn keyvalue(self, url: &str) -> Self {
        Self(self.0.keyvalue(url.parse().expect("a --keyvalue value")))
    }

    /// Serves under `isolation`.
    pub fn isolation(self, isolation: Isolation) -> Self {
        Self(self.0.isolation(isolation))
    }

    /// Changes the limits.
    pub fn limits(self, change: impl FnOnce(&mut Limits)) -> Self {
        Self(self.0.limits(change))
    }

    /// How long stopping waits for open connections.
    pub fn shutdown_timeout(self, timeout: Duration) -> Self {
        Self(self.0.shutdown_timeout(timeout))
    }

    /// Binds the listeners and starts serving.
    pub fn start(self) -> TestHost {
        init_logging();
        let host = self.0.start().unwrap_or_else(|e| panic!("the test host starts: {e:#}"));
        TestHost { addr: host.addr(), addrs: host.addrs().to_vec(), host: Some(host) }
    }
}

impl TestHost {
    /// A host serving `component` on one listener on 127.0.0.1.
    pub fn start(component: &Path) -> TestHost {
        Self::builder(component).start()
    }

    /// A host to configure before starting.
    pub fn builder(component: &Path) -> TestHostBuilder {
        TestHostBuilder(kit::Host::builder(component).code_cache(code_cache()))
    }

    /// The linear memory the guest's live instances hold, in bytes: the
    /// host's `evconn_guest_memory_bytes`.
    pub fn guest_memory(&self) -> u64 {
        let host = self.host.as_ref().expect("running until dropped");
        let components = host.metrics().components();
        components.iter().map(|(_, stats)| u64::try_from(stats.guest_memory.get()).unwrap_or(0)).sum()
    }

    /// How many callbacks of the guest have trapped.
    pub fn traps(&self) -> u64 {
        let host = self.host.as_ref().expect("running until dropped");
        host.metrics().components().iter().map(|(_, stats)| stats.counts.traps.get()).sum()
    }

    /// Whether the host has stopped on its own (the guest called `loop-exit`).
    pub fn has_exited(&self) -> bool {
        self.host.as_ref().is_none_or(kit::Host::has_exited)
    }

    /// Waits for the host to stop on its own; `false` if it still runs after `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        self.host.as_ref().is_none_or(|host| host.wait_exit(timeout))
    }

    /// Stops the host and returns how its run ended.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.host.take().map_or(Ok(()), kit::Host::stop)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let result = self.host.take().map_or(Ok(()), kit::Host::stop);
        if !std::thread::panicking() {
            result.expect("the host stops cleanly");
        }
    }
}

/// The `host` binary, built by cargo for these tests.
pub fn host_binary() -> &'static str {
    env!("CARGO_BIN_EXE_host")
}

/// A port on 127.0.0.1 that was free a moment ago, for the `host` binary,
/// whose `--listen` refuses port 0 as libevent's example does.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `host` binary running as a child process, its stderr collected.
pub struct HostProcess {
    pub child: Child,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl HostProcess {
    /// Starts `host` with `args`.
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_with(Command::new(host_binary()).args(args))
    }

    /// Starts a prepared command (the `host` binary, or a wrapper of it).
    /// Logs at info unless the command sets `RUST_LOG` itself.
    pub fn spawn_with(command: &mut Command) -> Self {
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env("RUST_LOG", "info,cranelift=warn,wasmtime=warn");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the host starts");
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        for stream in
            [Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stdout.take().unwrap())]
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("host| {line}");
                    log.0.lock().unwrap().push(line);
                    log.1.notify_all();
                }
            });
        }
        HostProcess { child, log }
    }

    /// Waits for a log line containing `needle`; returns it, or `None` after `timeout`.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.0.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.log.1.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// How many log lines so far contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.log.0.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until `count` log lines contain `needle` (lines reach the log
    /// through a pipe, a moment after what they report); returns how many
    /// there are then, or after `timeout`.
    pub fn wait_for_count(&self, needle: &str, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.count_lines(needle);
            if seen >= count || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything logged so far.
    pub fn output(&self) -> String {
        self.log.0.lock().unwrap().join("\n")
    }

    /// Waits for the process to exit; `None` if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process, which must not have been reaped yet
    /// (it is only in `wait_exit` or on drop).
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.pid() as i32).expect("a child's pid is positive");
        kill_process(pid, signal).unwrap_or_else(|e| panic!("kill({signal:?}) failed: {e}"));
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the `host` binary with `component` on a free loopback port, plus
/// `extra` flags, and waits until it listens.
pub fn spawn_listening(component: &Path, extra: &[&str]) -> (HostProcess, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let address = addr.to_string();
    let mut args = vec!["--component", component.to_str().unwrap(), "--listen", &address];
    args.extend_from_slice(extra);
    let host = HostProcess::spawn(&args);
    assert!(
        host.wait_for_line("listening", Duration::from_secs(60)).is_some(),
        "the host did not start listening:\n{}",
        host.output()
    );
    (host, addr)
}

/// Whether a new connection to `addr` gets `message` echoed back (within
/// seconds): the check that an echo host serves an address.
pub fn echoes(addr: SocketAddr, message: &[u8]) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else { return false };
    let mut answer = vec![0u8; message.len()];
    stream.set_read_timeout(Some(Duration::from_secs(10))).is_ok()
        && stream.write_all(message).is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && answer == message
}

/// The body of `GET path` from the HTTP server at `address` (the host's
/// `/metrics`), which closes the connection after answering.
pub fn http_get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// A client of the `probe` guest's line protocol.
pub struct Probe {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Probe {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connects");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Probe { stream, reader }
    }

    /// Sends `command` and returns the answer line.
    pub fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.read_line().unwrap_or_else(|| panic!("no answer to {command:?}"))
    }

    /// Sends `command` without waiting for an answer.
    pub fn send(&mut self, command: &str) {
        self.stream.write_all(format!("{command}\n").as_bytes()).expect("sends");
    }

    /// The next line, or `None` at end of stream.
    pub fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end().to_string()),
            Err(e) => panic!("reading an answer failed: {e}"),
        }
    }
}
