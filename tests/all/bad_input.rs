//! What the host does with bad input: flags it refuses before binding
//! anything, components it refuses to serve, and guests that trap or return
//! an error from a callback while serving.
use crate::support;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use support::{HostProcess, Probe, TestHost};

/// How long a refused start may take: refusals need no compiling, so this is
/// only slack for a loaded machine.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for anything the host should do promptly.
const PROMPTLY: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Running the binary to its end.

/// How a `host` run that was expected to end, ended.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Finished {
    /// The lines of standard error that are not blank.
    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }

    /// The one `error:` line of standard error; fails unless there is
    /// exactly one, or if anything panicked.
    fn error_line(&self) -> &str {
        self.assert_no_panic();
        let errors: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "expected exactly one error line:\n{}", self.stderr);
        errors[0]
    }

    /// The error of a run refused by the host itself (not clap): exit status
    /// 1 and exactly one line of output in all, besides the progress of
    /// compiling a component the code cache does not hold yet.
    fn host_error(&self) -> &str {
        let line = self.error_line();
        assert_eq!(self.status.code(), Some(1), "exit status of a refused run:\n{}", self.stderr);
        let others: Vec<&str> = self.stderr_lines().into_iter().filter(|l| !l.contains(" INFO compile: ")).collect();
        assert_eq!(others, [line], "the error is the only thing on standard error");
        assert_eq!(self.stdout.trim(), "", "nothing on standard output");
        line
    }

    /// The error of a run refused by clap while parsing flags: a non-zero
    /// status (clap's 2) and one error line, followed only by clap's hints.
    fn flag_error(&self) -> &str {
        let line = self.error_line();
        assert_eq!(self.status.code(), Some(2), "clap's exit status for a bad flag:\n{}", self.stderr);
        line
    }

    fn assert_no_panic(&self) {
        for text in [&self.stderr, &self.stdout] {
            assert!(!text.contains("panicked"), "the host panicked:\n{text}");
            assert!(!text.contains("RUST_BACKTRACE"), "the host panicked:\n{text}");
        }
    }
}

/// Runs `host` with `args`, expecting it to exit within [`REFUSAL_TIMEOUT`].
fn run_host(args: &[&str]) -> Finished {
    let started = Instant::now();
    let mut child = Command::new(support::host_binary())
        .args(args)
        .env("RUST_LOG", "info,cranelift=warn,wasmtime=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the host starts");
    let read_all = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > REFUSAL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("host {args:?} still ran after {REFUSAL_TIMEOUT:?}: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let finished = Finished { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap(), elapsed };
    eprintln!("host {args:?} -> {status} after {elapsed:?}\nstdout: {}\nstderr: {}", finished.stdout, finished.stderr);
    finished
}

/// Fails if anything accepts connections on `addr`.
fn assert_nothing_listens(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("connecting to {addr} failed oddly: {e}"),
        Ok(_) => panic!("something listens on {addr}"),
    }
}

/// A loopback port held by a listener of this test: a host that tried to
/// bind it would fail with "Address already in use".
fn occupied_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("binds a loopback port")
}

/// A scratch file path unique to this process and `name`, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(dir).unwrap();
        Scratch(dir.join(format!("bad_input-{}-{name}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Bad flags.

/// `--listen` with port 0 or a port above 65535 is refused with one line
/// saying "Invalid port", a non-zero status, no panic, and nothing bound:
/// not even a valid `--listen` given before the bad one.
#[test]
fn listen_ports_outside_1_to_65535_are_invalid() {
    for bad in ["0.0.0.0:0", "127.0.0.1:65536"] {
        let good = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
        let good_text = good.to_string();
        let run = run_host(&["--component", "unused.wasm", "--listen", &good_text, "--listen", bad]);
        let line = run.flag_error();
        assert!(line.contains("Invalid port"), "{bad}: {line}");
        assert!(line.contains(bad), "the error quotes the bad value {bad}: {line}");
        assert_nothing_listens(good);
    }
}

/// Refusal comes before binding: with the valid `--listen` port held by
/// this test, the host still reports the bad flag, not "address in use",
/// and it exits at once instead of serving the valid address.
#[test]
fn flags_are_refused_before_anything_is_bound() {
    let held = occupied_port();
    let port = held.local_addr().unwrap().port();
    let good = format!("127.0.0.1:{port}");

    let run = run_host(&["--component", "unused.wasm", "--listen", &good, "--listen", "127.0.0.1:0"]);
    let line = run.flag_error();
    assert!(line.contains("Invalid port"), "{line}");
    assert!(!run.stderr.contains("in use"), "the host tried to bind first:\n{}", run.stderr);
    assert!(run.elapsed < PROMPTLY, "refusing took {:?}", run.elapsed);

    // The same holds for what the host checks after clap: the backlog.
    let run = run_host(&["--component", "unused.wasm", "--listen", &good, "--backlog", "0"]);
    let line = run.host_error();
    assert!(line.contains("--backlog 0"), "{line}");
    assert!(!run.stderr.contains("in use"), "the host tried to bind first:\n{}", run.stderr);

    // Our listener still holds the port and still accepts: nobody took it.
    drop(TcpStream::connect(held.local_addr().unwrap()).expect("the held port still accepts"));
}

/// An unknown `--listen-option` is refused with one line that names it and
/// lists every known option.
#[test]
fn unknown_listen_option_names_the_known_ones() {
    let good = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let good_text = good.to_string();
    let run = run_host(&["--component", "unused.wasm", "--listen", &good_text, "--listen-option", "reusable-prot"]);
    let line = run.flag_error();
    assert!(line.contains("\"reusable-prot\""), "the error names the unknown option: {line}");
    assert!(line.contains("known:"), "{line}");
    let known: Vec<&str> = evconn_host::net::ListenOptions::NAMES.iter().map(|(name, _)| *name).collect();
    assert_eq!(known.len(), 9, "libevent has nine LEV_OPT_ flags");
    for name in known {
        assert!(line.contains(name), "the error does not list {name}: {line}");
    }
    assert_nothing_listens(good);
}

/// `--backlog 0` is refused with one line explaining that 0 means an
/// already-listening socket and what to give instead; exit status 1.
#[test]
fn zero_backlog_is_explained() {
    let good = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let good_text = good.to_string();
    let run = run_host(&["--component", "unused.wasm", "--listen", &good_text, "--backlog", "0"]);
    let line = run.host_error();
    assert!(line.contains("--backlog 0"), "{line}");
    assert!(line.contains("already listens"), "the error says what 0 means: {line}");
    assert!(line.contains("positive") && line.contains("negative"), "the error says what to give: {line}");
    assert_nothing_listens(good);

    // A negative backlog is the default and accepted: the same flags with -1
    // get past this check (and fail on the missing component instead).
    let run = run_host(&["--component", "unused.wasm", "--listen", &good_text, "--backlog", "-1"]);
    let line = run.host_error();
    assert!(!line.contains("backlog"), "{line}");
    assert!(line.contains("unused.wasm"), "{line}");
}

/// Without `--component` clap refuses to start, saying the flag is required.
#[test]
fn missing_component_flag_gets_clap_error() {
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let run = run_host(&["--listen", &listen]);
    let line = run.flag_error();
    assert!(line.contains("required"), "{line}");
    assert!(run.stderr.contains("--component <FILE>"), "clap names the missing flag:\n{}", run.stderr);
    assert!(run.stderr.contains("Usage:"), "clap shows the usage:\n{}", run.stderr);
    assert_nothing_listens(SocketAddr::from(([127, 0, 0, 1], port)));
}

/// `--help` documents every flag of `Args`: each long flag has a line of its
/// own followed by text describing it, and the run exits with status 0.
#[test]
fn help_documents_every_flag() {
    let run = run_host(&["--help"]);
    run.assert_no_panic();
    assert!(run.status.success(), "--help exits with 0: {}", run.status);
    let help = run.stdout.clone();
    assert!(help.contains("Usage: host"), "{help}");

    let command = evconn_host::cli::Args::command();
    let longs: Vec<String> = command.get_arguments().filter_map(|a| a.get_long()).map(str::to_string).collect();
    for expected in
        ["component", "listen", "listen-option", "backlog", "allow-bind", "shutdown-timeout", "verbose", "quiet"]
    {
        assert!(longs.iter().any(|l| l == expected), "Args has no --{expected}: {longs:?}");
    }

    let lines: Vec<&str> = help.lines().collect();
    for long in &longs {
        let flag = format!("--{long}");
        // The flag's own line: `  -v, --verbose...` or `      --listen <ADDR>`.
        // Descriptions mention flags too, so only leading `-` words count.
        let at = lines
            .iter()
            .position(|line| {
                line.split_whitespace()
                    .take_while(|word| word.starts_with('-'))
                    .any(|word| word.trim_end_matches(',').trim_end_matches("...") == flag)
            })
            .unwrap_or_else(|| panic!("--help has no line for {flag}:\n{help}"));
        // Its description: the indented text up to the next blank line.
        let description: String = lines[at + 1..]
            .iter()
            .take_while(|line| !line.trim().is_empty())
            .map(|line| line.trim())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            description.split_whitespace().count() >= 2,
            "{flag} has no description in --help: {description:?}\n{help}"
        );
    }
}

// ---------------------------------------------------------------------------
// Bad components.

/// Runs the host with `component` on a loopback port this test holds, and
/// returns the host's error. Because the port is taken, a host that bound
/// before checking the component would fail with "in use" instead.
fn refused_component(component: &Path) -> String {
    let held = occupied_port();
    let listen = held.local_addr().unwrap().to_string();
    let run = run_host(&["--component", component.to_str().unwrap(), "--listen", &listen]);
    let line = run.host_error().to_string();
    assert!(!line.contains("in use"), "the host bound before loading the component: {line}");
    assert!(line.contains(&component.display().to_string()), "the error names the file: {line}");
    line
}

/// A component file that does not exist: one line naming it and saying
/// why, with the system's reason given once.
#[test]
fn missing_component_file() {
    let path = Scratch::new("does-not-exist.wasm");
    let line = refused_component(&path.0);
    assert!(line.contains("cannot read"), "{line}");
    assert_eq!(line.matches("No such file or directory").count(), 1, "the reason, once: {line}");
}

/// A text file is not WebAssembly at all.
#[test]
fn text_file_is_not_wasm() {
    let path = Scratch::new("notes.wasm");
    std::fs::write(&path.0, "this is a text file, not a component\n").unwrap();
    let line = refused_component(&path.0);
    assert!(line.contains("is not a WebAssembly component"), "{line}");
    assert!(line.contains("no `\\0asm` header"), "{line}");
}

/// A core module (the 8-byte header of an empty one) is told apart from a
/// component and the message says how to make one.
#[test]
fn core_module_is_not_a_component() {
    let path = Scratch::new("core.wasm");
    std::fs::write(&path.0, b"\0asm\x01\0\0\0").unwrap();
    let line = refused_component(&path.0);
    assert!(line.contains("is a core WebAssembly module, not a component"), "{line}");
    assert!(line.contains("wasm32-wasip2"), "{line}");
}

/// A component of another world (a WASI command that prints "hi") is
/// refused as "not an evconn handler", naming the export it lacks.
#[test]
fn component_of_another_world_is_not_a_handler() {
    let path = support::guest("not-a-handler");
    let line = refused_component(&path);
    assert!(line.contains("is not an evconn handler"), "{line}");
    assert!(line.contains("evconn:listener/handler@0.2.0"), "the error names the world: {line}");
    assert!(line.contains("evconn:listener/callbacks"), "the error names the missing export: {line}");
}

// ---------------------------------------------------------------------------
// Guests that trap or fail while serving.

/// Whether the host closes `probe`'s connection within [`PROMPTLY`]: end of
/// stream or reset is closed; a timeout or data is not.
fn closes(probe: &mut Probe) -> bool {
    probe.stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    let mut byte = [0u8; 1];
    match (&probe.stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected data {:?} instead of a close", byte[0] as char),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_) => true,
    }
}

/// Connects and checks the connection is served.
fn connect_served(addr: SocketAddr) -> Probe {
    let mut probe = Probe::connect(addr);
    assert_eq!(probe.ask("ping"), "pong");
    probe
}

/// Where a scenario finds the host's log.
trait Log {
    /// Waits for a line containing `needle`; returns it, or `None` after `timeout`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String>;
    /// How many lines so far contain `needle`.
    fn count(&self, needle: &str) -> usize;
    /// Everything so far, for failure messages.
    fn dump(&self) -> String;
}

impl Log for HostProcess {
    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_line(needle, timeout)
    }
    fn count(&self, needle: &str) -> usize {
        self.count_lines(needle)
    }
    fn dump(&self) -> String {
        self.output()
    }
}

/// The captured log lines of one in-process host, told apart by the name of
/// its component (the file name, made unique per test).
struct InProcessLog {
    component: String,
}

impl InProcessLog {
    fn lines(&self) -> Vec<String> {
        let tag = format!("component={}", self.component);
        support::captured_log().lines.lock().unwrap().iter().filter(|l| l.contains(&tag)).cloned().collect()
    }
}

impl Log for InProcessLog {
    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let tag = format!("component={}", self.component);
        let log = support::captured_log();
        let mut lines = log.lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| l.contains(&tag) && l.contains(needle)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = log.added.wait_timeout(lines, left).unwrap().0;
        }
    }
    fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
    fn dump(&self) -> String {
        self.lines().join("\n")
    }
}

/// Starts an in-process host on a copy of the probe guest named
/// `probe-{role}-{pid}`, so that its log lines can be told from those of
/// the other in-process hosts of this test process.
fn in_process_probe(role: &str) -> (TestHost, InProcessLog) {
    let (path, component) = support::guest_named("probe", role);
    let host = TestHost::start(&path);
    (host, InProcessLog { component })
}

/// The trap scenario, on a fresh host serving the probe guest at `addr`.
fn trap_scenario(addr: SocketAddr, log: &dyn Log) {
    // Three connections served by the one shared instance.
    let mut first = connect_served(addr);
    let mut second = connect_served(addr);
    let mut trapping = connect_served(addr);
    assert_eq!(trapping.ask("count"), "3", "one instance accepted all three");

    trapping.send("trap");
    assert!(closes(&mut trapping), "the trapping connection is closed");
    assert!(closes(&mut first), "a connection the trapped instance served is closed");
    assert!(closes(&mut second), "a connection the trapped instance served is closed");
    let trapped = log.wait_for("guest trapped", PROMPTLY);
    assert!(trapped.is_some(), "no \"guest trapped\" in the log:\n{}", log.dump());
    let discarded = log.wait_for("discarded the trapped instance", PROMPTLY);
    let discarded = discarded.unwrap_or_else(|| panic!("no discard in the log:\n{}", log.dump()));
    assert!(discarded.contains("closed=3"), "all three connections closed: {discarded}");

    // A new connection gets a fresh instance, which counts from 1.
    let mut after = connect_served(addr);
    assert_eq!(after.ask("count"), "1", "the replacement instance starts afresh");
    assert!(log.wait_for("instance replaced", PROMPTLY).is_some(), "no replacement in the log:\n{}", log.dump());
    let mut another = connect_served(addr);
    assert_eq!(another.ask("count"), "2", "the replacement serves later connections too");
    assert_eq!(after.ask("ping"), "pong");
    assert_eq!(log.count("guest trapped"), 1, "one trap:\n{}", log.dump());
    assert_eq!(log.count("guest returned an error"), 0, "a trap is not a guest error:\n{}", log.dump());
}

/// The guest-error scenario, on a fresh host serving the probe guest at `addr`.
fn guest_error_scenario(addr: SocketAddr, log: &dyn Log) {
    let mut staying = connect_served(addr);
    let mut failing = connect_served(addr);
    assert_eq!(staying.ask("count"), "2");

    failing.send("fail");
    assert!(closes(&mut failing), "the connection whose callback failed is closed");
    let error = log.wait_for("guest returned an error", PROMPTLY);
    let error = error.unwrap_or_else(|| panic!("no \"guest returned an error\" in the log:\n{}", log.dump()));
    assert!(error.contains("asked to fail"), "the log carries the guest's message: {error}");
    assert!(error.contains("on-data"), "the log names the callback: {error}");

    // The other connection and the instance carry on: the count keeps growing.
    assert_eq!(staying.ask("ping"), "pong", "the other connection is still served");
    assert_eq!(staying.ask("count"), "2", "the same instance still serves it");
    let mut later = connect_served(addr);
    assert_eq!(later.ask("count"), "3", "the instance was not replaced");
    assert_eq!(staying.ask("count"), "3");
    assert_eq!(log.count("guest trapped"), 0, "a guest error is not a trap:\n{}", log.dump());
    assert_eq!(log.count("instance replaced"), 0, "no replacement after a guest error:\n{}", log.dump());
    assert_eq!(log.count("guest returned an error"), 1, "one guest error:\n{}", log.dump());
}

/// Fails if the host panicked; the guest's own panic message (how the probe
/// traps) reaches the log as guest output and does not count.
fn assert_no_host_panic(host: &HostProcess) {
    let output = host.output();
    let host_panics: Vec<&str> = output.lines().filter(|l| l.contains("panicked") && !l.contains(" guest: ")).collect();
    assert!(host_panics.is_empty(), "the host panicked: {host_panics:?}\n{output}");
}

/// In process: a trap closes the trapping connection and every other one
/// its instance served; the next connection gets a fresh instance (count 1);
/// the log says "guest trapped" and "instance replaced"; the host runs on.
#[test]
fn trap_in_process_replaces_the_instance() {
    let (host, log) = in_process_probe("trap");
    trap_scenario(host.addr, &log);
    assert!(!host.has_exited(), "the host stays up after a trap");
    host.stop().expect("the host stops cleanly after a trap");
}

/// The `host` binary: the same as in process, and the process stays up.
#[test]
fn trap_in_binary_replaces_the_instance() {
    let (mut host, addr) = support::spawn_listening(&support::guest("probe"), &[]);
    trap_scenario(addr, &host);
    assert!(host.child.try_wait().unwrap().is_none(), "the host process stays up after a trap");
    assert_no_host_panic(&host);
}

/// In process: a callback that returns an error closes only its own
/// connection; the instance keeps serving and counting; the log says
/// "guest returned an error", not "guest trapped".
#[test]
fn guest_error_in_process_closes_only_its_connection() {
    let (host, log) = in_process_probe("fail");
    guest_error_scenario(host.addr, &log);
    assert!(!host.has_exited(), "the host stays up after a guest error");
    host.stop().expect("the host stops cleanly after a guest error");
}

/// The `host` binary: the same as in process.
#[test]
fn guest_error_in_binary_closes_only_its_connection() {
    let (mut host, addr) = support::spawn_listening(&support::guest("probe"), &[]);
    guest_error_scenario(addr, &host);
    assert!(host.child.try_wait().unwrap().is_none(), "the host process stays up after a guest error");
    assert_no_host_panic(&host);
}
