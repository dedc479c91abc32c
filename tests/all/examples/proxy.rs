//! proxy, libevent's le-proxy as a guest: Debian's `redis-server` behind
//! it, driven by `redis-cli` and `redis-benchmark` through it under both
//! isolation models; a backend that refuses is skipped; half-close passes
//! through; and a backend that reads slowly, or not at all, holds the client
//! back by TCP flow control while the host stays within its caps; writes
//! the host refuses are kept and sent later. The same proxy in C, Python and
//! JavaScript (`examples/proxy-*`) passes every one of these tests but the
//! per-connection redis run.
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use evconn_host::wasm::Isolation;

use crate::support::procfs::status_kb;
use crate::support::tools::{RedisServer, run};
use crate::support::{self, TestHost};

const MIB: usize = 1 << 20;

/// A host in this process serving the proxy `component` (the Rust one,
/// `support::guest("proxy")`, or one of `examples/proxy-*`) relaying to
/// `backends`, each allowed.
fn proxy(component: &Path, backends: &[SocketAddr], isolation: Isolation) -> TestHost {
    let list: Vec<String> = backends.iter().map(ToString::to_string).collect();
    let mut builder = TestHost::builder(component).isolation(isolation).env("BACKENDS", &list.join(","));
    for backend in backends {
        builder = builder.allow_connect(&backend.to_string());
    }
    builder.start()
}

/// `redis-cli` through `host`, one command; what it printed.
fn redis_cli(host: &TestHost, command: &[&str]) -> String {
    let mut args = vec!["-h".to_string(), "127.0.0.1".into(), "-p".into(), host.addr.port().to_string()];
    args.extend(command.iter().map(|word| word.to_string()));
    let ran = run("redis-cli", &args, "", Duration::from_secs(30));
    assert!(ran.status.success(), "redis-cli {command:?} failed: {}{}", ran.stdout, ran.stderr);
    ran.stdout
}

/// redis-cli's round trips and redis-benchmark's SET, GET and INCR (plain
/// and pipelined) reach the real server through the proxy, with no error,
/// and every INCR counts.
fn redis_through_the_proxy(component: &Path, isolation: Isolation) {
    let redis = RedisServer::start();
    let host = proxy(component, &[redis.addr], isolation);
    assert_eq!(redis_cli(&host, &["set", "greeting", "hello"]), "OK\n");
    assert_eq!(redis_cli(&host, &["get", "greeting"]), "hello\n");
    let port = host.addr.port().to_string();
    for pipeline in ["1", "16"] {
        let args: Vec<String> =
            ["-h", "127.0.0.1", "-p", &port, "-n", "2000", "-c", "20", "-P", pipeline, "-t", "set,get,incr", "-q"]
                .map(String::from)
                .to_vec();
        let ran = run("redis-benchmark", &args, "", Duration::from_secs(120));
        let output = format!("{}{}", ran.stdout, ran.stderr);
        assert!(ran.status.success(), "redis-benchmark failed: {output}");
        for trouble in ["ERR", "Error", "error", "WARNING"] {
            assert!(!output.contains(trouble), "redis-benchmark reported {trouble:?}: {output}");
        }
        for test in ["SET", "GET", "INCR"] {
            assert!(output.contains(&format!("{test}: ")), "no result for {test}: {output}");
        }
    }
    // Both runs' INCRs reached the one server.
    assert_eq!(redis_cli(&host, &["get", "counter:__rand_int__"]), "4000\n");
}

#[test]
fn redis_through_the_proxy_shared() {
    redis_through_the_proxy(&support::guest("proxy"), Isolation::Shared);
}

#[test]
fn redis_through_the_proxy_per_connection() {
    redis_through_the_proxy(&support::guest("proxy"), Isolation::Connection);
}

/// With a backend that refuses first in the list, every client is still
/// served: each is sent on to the next backend.
fn refusing_backend_skipped_by(component: &Path) {
    let redis = RedisServer::start();
    let refusing = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let host = proxy(component, &[refusing, redis.addr], Isolation::Shared);
    for _ in 0..4 {
        assert_eq!(redis_cli(&host, &["ping"]), "PONG\n");
    }
}

#[test]
fn a_backend_that_refuses_is_skipped() {
    refusing_backend_skipped_by(&support::guest("proxy"));
}

/// A client's end-of-stream reaches the backend after its bytes; the
/// backend's answer and its own end come back.
fn half_close_through(component: &Path) {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = proxy(component, &[backend.local_addr().unwrap()], Isolation::Shared);
    let mut client = TcpStream::connect(host.addr).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    client.write_all(b"the whole request").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let (mut server, _) = backend.accept().unwrap();
    server.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = String::new();
    server.read_to_string(&mut request).expect("the request, then end-of-stream");
    assert_eq!(request, "the whole request");
    server.write_all(b"the answer").unwrap();
    drop(server);
    let mut answer = String::new();
    client.read_to_string(&mut answer).expect("the answer, then end-of-stream");
    assert_eq!(answer, "the answer");
}

#[test]
fn half_close_passes_through() {
    half_close_through(&support::guest("proxy"));
}

/// What a client streaming into a proxy with a stalled or slow backend
/// managed to write, and the host's memory meanwhile.
struct Stream {
    written: usize,
    written_last_second: usize,
    growth_kb: u64,
}

/// Streams to the proxy host `pid` at `addr` for `seconds` (asking to send
/// 1 GiB), while `backend` reads as it likes.
fn stream_through(pid: u32, addr: SocketAddr, seconds: u64) -> Stream {
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
    let baseline = status_kb(pid, "VmRSS");
    let mut peak = baseline;
    let chunk = vec![b'x'; 64 * 1024];
    let (mut written, mut at_last_second) = (0usize, None);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) && written < 1 << 30 {
        match client.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("the proxy failed the client: {e}"),
        }
        if at_last_second.is_none() && started.elapsed() >= Duration::from_secs(seconds - 1) {
            at_last_second = Some(written);
        }
        peak = peak.max(status_kb(pid, "VmRSS"));
    }
    let written_last_second = written - at_last_second.unwrap_or(written);
    Stream { written, written_last_second, growth_kb: peak.saturating_sub(baseline) }
}

/// A host process serving the proxy `component` in front of `backend`,
/// with the compiled code from the tests' cache, and `extra` flags.
fn proxy_process(component: &Path, backend: SocketAddr, extra: &[&str]) -> (support::HostProcess, SocketAddr) {
    support::precompile(component);
    let cache = support::code_cache();
    let env = format!("BACKENDS={backend}");
    let allow = backend.to_string();
    let mut args = vec!["--env", &env, "--allow-connect", &allow, "--cache-dir", cache.dir().to_str().unwrap()];
    args.extend_from_slice(extra);
    support::spawn_listening(component, &args)
}

/// A backend that accepts and never reads: the client is held back once
/// the sockets' buffers and the proxy's high watermark are full; the host
/// grows by less than its output cap (4 MiB) and 4 MiB more.
#[test]
fn a_backend_that_never_reads_holds_the_client_back() {
    never_reading_backend_holds_back(&support::guest("proxy"), 0);
}

/// The same, for a guest whose own memory may add `instance_kb` (see
/// [`RUNTIME_HEAP_KB`]).
fn never_reading_backend_holds_back(component: &Path, instance_kb: u64) {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let (host, addr) = proxy_process(component, backend.local_addr().unwrap(), &[]);
    let accepting = std::thread::spawn(move || backend.accept().map(|(stream, _)| stream));
    let stream = stream_through(host.pid(), addr, 4);
    eprintln!(
        "wrote {} bytes, {} in the last second; host +{} kB",
        stream.written, stream.written_last_second, stream.growth_kb
    );
    let _held = accepting.join().unwrap().unwrap();
    assert!(stream.written < 64 * MIB, "the client wrote {} bytes into a stalled backend", stream.written);
    assert_eq!(stream.written_last_second, 0, "the client is held back");
    assert!(stream.growth_kb < 8 * 1024 + instance_kb, "the host grew by {} kB", stream.growth_kb);
}

/// A backend reading about 1 MiB/s gets every byte in order while the
/// client is paced to it; the host stays within its cap.
#[test]
fn a_slow_backend_paces_the_client() {
    slow_backend_paces(&support::guest("proxy"), 0);
}

/// The same, for a guest whose own memory may add `instance_kb`.
fn slow_backend_paces(component: &Path, instance_kb: u64) {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let (host, addr) = proxy_process(component, backend.local_addr().unwrap(), &[]);
    let reading = std::thread::spawn(move || {
        let (mut server, _) = backend.accept().unwrap();
        server.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buffer = vec![0u8; 16 * 1024];
        let (mut received, started) = (0usize, Instant::now());
        while started.elapsed() < Duration::from_secs(5) {
            match server.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    assert!(buffer[..n].iter().all(|&b| b == b'x'), "the bytes arrive unchanged");
                    received += n;
                }
                Err(e) => panic!("the backend's read failed: {e}"),
            }
            std::thread::sleep(Duration::from_millis(16));
        }
        received
    });
    let stream = stream_through(host.pid(), addr, 4);
    let received = reading.join().unwrap();
    eprintln!("wrote {} bytes, backend read {received}; host +{} kB", stream.written, stream.growth_kb);
    assert!(received > 2 * MIB, "the backend read {received} bytes at about 1 MiB/s");
    assert!(stream.written < received + 64 * MIB, "the client wrote {} bytes, paced by the backend", stream.written);
    assert!(stream.growth_kb < 8 * 1024 + instance_kb, "the host grew by {} kB", stream.growth_kb);
}

/// With the host's output for a connection capped at 384 KiB, below the
/// proxy's high watermark, only refused writes (`would-block`) hold the
/// client back: the proxy keeps each, retries it at `on-drain`, and the
/// backend, which waits before it starts reading, still gets every byte,
/// in order, then the client's end-of-stream.
#[test]
fn refused_writes_are_kept_and_retried() {
    refused_writes_kept_by(&support::guest("proxy"));
}

fn refused_writes_kept_by(component: &Path) {
    const SENT: usize = 8 * MIB;
    let pattern = |at: usize| (at % 251) as u8;
    let backend = small_receive_buffer_listener();
    let caps = ["--write-buffer", "256K", "--output-cap", "384K", "--output-memory", "384K"];
    let (mut host, addr) = proxy_process(component, backend.local_addr().unwrap(), &caps);
    let sent = Arc::new(AtomicUsize::new(0));
    let client_sent = sent.clone();
    let reading = std::thread::spawn(move || {
        let (mut server, _) = backend.accept().unwrap();
        server.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // Meanwhile the host's output for this backend fills up: wait
        // until the client has sent half (a slow guest takes a while), or
        // at most 3 s.
        let deadline = Instant::now() + Duration::from_secs(3);
        while client_sent.load(Ordering::Relaxed) < SENT / 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (mut buffer, mut received) = (vec![0u8; 64 * 1024], 0usize);
        loop {
            match server.read(&mut buffer) {
                Ok(0) => return received,
                Ok(n) => {
                    let in_order = buffer[..n].iter().enumerate().all(|(i, &b)| b == pattern(received + i));
                    assert!(in_order, "the bytes from {received} arrive unchanged and in order");
                    received += n;
                }
                Err(e) => panic!("the backend's read failed after {received} bytes: {e}"),
            }
            // A little slower than the client, so the proxy's output piles up.
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut client = TcpStream::connect(addr).unwrap();
    let data: Vec<u8> = (0..SENT).map(pattern).collect();
    for piece in data.chunks(64 * 1024) {
        client.write_all(piece).unwrap();
        sent.fetch_add(piece.len(), Ordering::Relaxed);
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(reading.join().unwrap(), SENT, "the backend got every byte, then end-of-stream");
    host.signal(rustix::process::Signal::TERM);
    assert!(host.wait_exit(Duration::from_secs(20)).is_some_and(|status| status.success()), "{}", host.output());
    let stats = host.wait_for_line("stopped stats=", Duration::from_secs(5)).expect("the host's stats line");
    let refused: u64 = stats
        .split_whitespace()
        .find_map(|word| word.strip_prefix("writes_refused="))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no writes_refused in {stats}"));
    eprintln!("{refused} writes refused");
    assert!(refused > 0, "some writes were refused, and kept: {stats}");
    assert_eq!(host.count_lines("guest trapped"), 0, "{}", host.output());
}

/// A loopback listener whose connections have a small, fixed receive
/// buffer: the kernel's autotuning would otherwise grow it to megabytes,
/// enough to take a whole test's stream without the host holding any.
fn small_receive_buffer_listener() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    socket.listen(8).unwrap();
    socket.into()
}

/// What a Python or JavaScript proxy's instance may add to the host's
/// memory in the stream tests: up to its `--guest-memory` (64 MiB by
/// default). The proxies relay with `write-input`, which their bindings
/// keep nothing of, but bytes held back for `on-drain` go with `write`,
/// which they keep, and JavaScript's collector frees each callback's
/// objects late (see the guest guide); the Rust and C proxies add 1 to
/// 2 MB. What the host itself holds stays within its caps either way.
const RUNTIME_HEAP_KB: u64 = 64 * 1024;

/// Declares, for the proxy written in another language, the tests above
/// but the per-connection redis run: redis under the shared model, the
/// refusing backend, half-close, the never-reading and slow backends, and
/// refused writes.
macro_rules! proxy_tests_in {
    ($($lang:ident => $example:literal, instance_kb: $instance_kb:expr;)*) => {
        $(
            mod $lang {
                use super::*;

                #[test]
                fn redis_through_the_proxy_shared() {
                    redis_through_the_proxy(&support::example($example), Isolation::Shared);
                }

                #[test]
                fn a_backend_that_refuses_is_skipped() {
                    refusing_backend_skipped_by(&support::example($example));
                }

                #[test]
                fn half_close_passes_through() {
                    half_close_through(&support::example($example));
                }

                #[test]
                fn a_backend_that_never_reads_holds_the_client_back() {
                    never_reading_backend_holds_back(&support::example($example), $instance_kb);
                }

                #[test]
                fn refused_writes_are_kept_and_retried() {
                    refused_writes_kept_by(&support::example($example));
                }

                #[test]
                fn a_slow_backend_paces_the_client() {
                    slow_backend_paces(&support::example($example), $instance_kb);
                }
            }
        )*
    };
}

proxy_tests_in! {
    c => "proxy-c", instance_kb: 0;
    python => "proxy-python", instance_kb: RUNTIME_HEAP_KB;
    js => "proxy-js", instance_kb: RUNTIME_HEAP_KB;
}
