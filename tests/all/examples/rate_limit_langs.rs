//! The rate limiter in C, Python and JavaScript (`examples/rate-limit-*`),
//! each run by the same tests: a peer's lines are counted in the host's
//! store (`wasi:keyvalue`) across connections under both isolation models,
//! and across two `host` processes on one Debian `redis-server`; the keys
//! in Redis are the peer's IP (IPv4, IPv6, and IPv4 through a dual-stack
//! listener alike) and the window, the window before is deleted, a peer on
//! a Unix socket is counted by its user and one with a client certificate
//! by the certificate, and a store that fails answers
//! `-ERR store unavailable` without closing.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use evconn_host::net::ListenOptions;
use evconn_host::policy::Limits;
use evconn_host::wasm::Isolation;
use rcgen::DnType;

use super::Client;
use crate::support::host_test::path_str;
use crate::support::tls::{Pki, Scratch, TlsClient, fingerprint_sha256};
use crate::support::tools::{RedisServer, run};
use crate::support::{self, HostProcess, TestHost, TestHostBuilder};

const LIMITED: &str = "-ERR rate limited\r\n";
const UNAVAILABLE: &str = "-ERR store unavailable\r\n";

/// A window no test outlasts: a day.
const DAY: u64 = 86_400;

/// The guest timeout for every language, far above the default 1 s: the
/// first callback of a JavaScript or Python instance in a debug host on two
/// busy cores may pass it (see tests/all/echo.rs).
fn patient(limits: &mut Limits) {
    limits.guest_timeout = Duration::from_secs(10);
}

/// A host in this process serving `component` with a limit of 3 lines per
/// `window` seconds.
fn limiter(component: &Path, isolation: Isolation, window: u64) -> TestHostBuilder {
    TestHost::builder(component)
        .isolation(isolation)
        .limits(patient)
        .env("RATE_LIMIT", "3")
        .env("RATE_WINDOW", &window.to_string())
}

/// Now, in whole seconds since the Unix epoch, as the guests read it.
fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs()
}

/// The number of the `window`-second window we are in.
fn window_now(window: u64) -> u64 {
    unix_seconds() / window
}

/// Waits, if fewer than `margin` seconds of the current `window`-second
/// window are left, for the next one to start; returns the window's number.
/// A conversation shorter than `margin` that starts then ends in it.
fn settle_in_a_window(window: u64, margin: u64) -> u64 {
    let left = window - unix_seconds() % window;
    if left <= margin {
        std::thread::sleep(Duration::from_secs(left) + Duration::from_millis(50));
    }
    window_now(window)
}

/// Waits for the next `window`-second window to start; returns its number.
fn next_window(window: u64) -> u64 {
    let after = window_now(window) + 1;
    while window_now(window) < after {
        std::thread::sleep(Duration::from_millis(20));
    }
    after
}

/// A limit of 3 across connections: lines 1 to 3, one split across sends
/// and one ending in CRLF, come back as sent, from two connections; every
/// line after them, on those connections or a new one, is refused, and the
/// connections stay open.
fn three_lines_then_refused(addr: SocketAddr) {
    let mut a = Client::connect(addr);
    a.send("one\n");
    assert_eq!(a.read_line(), "one\n");
    a.send("tw");
    a.assert_silent("half a line is not answered");
    a.send("o\r\n");
    assert_eq!(a.read_line(), "two\r\n");
    let mut b = Client::connect(addr);
    b.send("three\nfour\n");
    assert_eq!(b.read_line(), "three\n");
    assert_eq!(b.read_line(), LIMITED, "the 4th line");
    a.send("five\n");
    assert_eq!(a.read_line(), LIMITED);
    drop(a);
    drop(b);
    let mut c = Client::connect(addr);
    c.send("six\nseven\n");
    assert_eq!(c.read_line(), LIMITED);
    assert_eq!(c.read_line(), LIMITED);
    c.assert_silent("a refused client stays connected");
}

/// The conversation above against a fresh host under `isolation`, inside
/// one window of a day.
fn limits_lines_across_connections(component: &Path, isolation: Isolation) {
    let host = limiter(component, isolation, DAY).start();
    let window = settle_in_a_window(DAY, 30);
    three_lines_then_refused(host.addr);
    assert_eq!(window_now(DAY), window, "the conversation ran into the next window");
}

/// Whether the in-process hosts logged a line about `component` containing
/// `needle` within a few seconds.
fn logged(component: &Path, needle: &str) -> bool {
    let tag = format!("component={}", component.file_stem().unwrap().to_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = support::captured_log();
    let mut lines = log.lines.lock().unwrap();
    loop {
        if lines.iter().any(|line| line.contains(&tag) && line.contains(needle)) {
            return true;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
        lines = log.added.wait_timeout(lines, left).unwrap().0;
    }
}

/// A setting that is not a number closes each connection as it comes, and
/// the host logs which setting is wrong.
fn bad_settings_close_connections(component: &Path) {
    for (name, value) in [("RATE_LIMIT", "many"), ("RATE_WINDOW", "0")] {
        let host = TestHost::builder(component).limits(patient).env(name, value).start();
        let mut client = Client::connect(host.addr);
        client.send("hello\n");
        assert_eq!(client.read_until_closed(), b"", "{name}={value}: closed unanswered");
        let needle = format!("{name}={value} is not a whole number");
        assert!(logged(component, &needle), "no {needle:?} in the log");
    }
}

/// With `--allow-bucket limits` the bucket named after the component may
/// not be opened: every line is answered `-ERR store unavailable`, the
/// connection stays open, and the guest logs why. `RATE_BUCKET=limits` names the allowed one.
fn buckets_as_the_operator_allows(component: &Path) {
    let denied = limiter(component, Isolation::Shared, DAY).allow_bucket("limits").start();
    let mut client = Client::connect(denied.addr);
    client.send("one\ntwo\n");
    assert_eq!(client.read_line(), UNAVAILABLE);
    assert_eq!(client.read_line(), UNAVAILABLE);
    client.assert_silent("the connection stays open");
    assert!(logged(component, "failed: access-denied"), "the guest logs why");
    drop(denied);

    let named = limiter(component, Isolation::Shared, DAY).allow_bucket("limits").env("RATE_BUCKET", "limits").start();
    let window = settle_in_a_window(DAY, 30);
    three_lines_then_refused(named.addr);
    assert_eq!(window_now(DAY), window, "the conversation ran into the next window");
}

/// Two `host` processes given one `redis-server` count one peer together:
/// two lines through host A and two through host B, the 4th refused, and
/// then the next through A too. Once Redis is gone, each line is answered
/// `-ERR store unavailable`, on connections that stay open.
fn two_hosts_on_one_redis(component: &Path) {
    let redis = RedisServer::start();
    let flags = limiter_flags(component, &redis, "86400");
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (_host_a, a) = support::spawn_listening(component, &args);
    let (_host_b, b) = support::spawn_listening(component, &args);

    let window = settle_in_a_window(DAY, 30);
    let mut on_a = Client::connect(a);
    let mut on_b = Client::connect(b);
    on_a.send("1\n2\n");
    assert_eq!(on_a.read_line(), "1\n");
    assert_eq!(on_a.read_line(), "2\n");
    on_b.send("3\n");
    assert_eq!(on_b.read_line(), "3\n");
    on_b.send("4\n");
    assert_eq!(on_b.read_line(), LIMITED, "the 4th line, through host B");
    on_a.send("5\n");
    assert_eq!(on_a.read_line(), LIMITED, "the 5th line, through host A");
    assert_eq!(window_now(DAY), window, "the conversation ran into the next window");

    drop(redis);
    for client in [&mut on_a, &mut on_b] {
        client.send("6\n");
        assert_eq!(client.read_line(), UNAVAILABLE);
        client.send("7\n");
        assert_eq!(client.read_line(), UNAVAILABLE);
        client.assert_silent("the connection stays open");
    }
}

/// Every key in `redis` and its value.
fn redis_keys(redis: &RedisServer) -> BTreeMap<String, String> {
    let cli = |words: &[&str]| {
        let mut args = vec!["-h".to_string(), "127.0.0.1".into(), "-p".into(), redis.addr.port().to_string()];
        args.extend(words.iter().map(|word| word.to_string()));
        let ran = run("redis-cli", &args, "", Duration::from_secs(10));
        assert!(ran.status.success(), "redis-cli {words:?} failed: {}", ran.stderr);
        ran.stdout
    };
    cli(&["--scan"]).lines().map(|key| (key.to_string(), cli(&["get", key]).trim_end().to_string())).collect()
}

/// The keys in Redis: `IP/WINDOW` in the bucket named after the component,
/// for an IPv4 peer, an IPv6 one, and an IPv4 one reaching a dual-stack
/// listener (counted with the first); a peer's first line in a window
/// deletes its key of the window before, and the keys of a peer that does
/// not come back stay.
fn keys_name_the_peer_and_the_window(component: &Path, bucket: &str) {
    // Long enough for three round trips on a busy machine, short enough to
    // wait out twice.
    const WINDOW: u64 = 4;
    let redis = RedisServer::start();
    let host = limiter(component, Isolation::Shared, WINDOW)
        .keyvalue(&format!("redis://{}", redis.addr))
        .listen("127.0.0.1:0", ListenOptions::REUSEABLE)
        .listen("[::1]:0", ListenOptions::REUSEABLE)
        .listen("[::]:0", ListenOptions::REUSEABLE)
        .start();
    let (v4, v6, dual) = (host.addrs[0], host.addrs[1], host.addrs[2]);
    let through_dual = SocketAddr::from(([127, 0, 0, 1], dual.port()));
    let line = |addr: SocketAddr, text: &str| {
        let mut client = Client::connect(addr);
        client.send(text);
        client.read_line()
    };
    // Lines in the first moments of a window all fall in it.
    let first = next_window(WINDOW);
    assert_eq!(line(v4, "a\n"), "a\n");
    assert_eq!(line(v6, "b\n"), "b\n");
    assert_eq!(line(through_dual, "c\n"), "c\n");
    assert_eq!(window_now(WINDOW), first, "the lines ran into the next window");
    let expected = BTreeMap::from([
        (format!("{bucket}:127.0.0.1/{first}"), "2".to_string()),
        (format!("{bucket}:::1/{first}"), "1".to_string()),
    ]);
    assert_eq!(redis_keys(&redis), expected);

    let second = next_window(WINDOW);
    assert_eq!(line(v4, "d\n"), "d\n");
    let expected = BTreeMap::from([
        (format!("{bucket}:127.0.0.1/{second}"), "1".to_string()),
        (format!("{bucket}:::1/{first}"), "1".to_string()),
    ]);
    assert_eq!(redis_keys(&redis), expected, "the IPv4 peer's first window is deleted, the IPv6 one's stays");
}

/// The flags of a `host` process of `component` allowing 3 lines per
/// `window` (a `RATE_WINDOW` value), counted in `redis`; the process finds
/// the compiled code in the tests' code cache.
pub(super) fn limiter_flags(component: &Path, redis: &RedisServer, window: &str) -> Vec<String> {
    support::precompile(component);
    let cache = support::code_cache();
    let url = format!("redis://{}", redis.addr);
    let window = format!("RATE_WINDOW={window}");
    let cache = cache.dir().to_str().unwrap();
    ["--keyvalue", &url, "--env", "RATE_LIMIT=3", "--env", &window, "--guest-timeout", "10s", "--cache-dir", cache]
        .map(String::from)
        .to_vec()
}

/// A line client over a Unix domain socket.
struct UnixClient {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl UnixClient {
    fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("connecting to {}: {e}", path.display()));
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        UnixClient { stream, reader }
    }

    /// Sends `line` and reads one line back.
    fn ask(&mut self, line: &str) -> String {
        self.stream.write_all(line.as_bytes()).unwrap();
        let mut answer = String::new();
        self.reader.read_line(&mut answer).unwrap();
        answer
    }
}

/// Over a Unix domain socket, where clients have no address, a peer is
/// counted by its user (`SO_PEERCRED`): two connections of this test's
/// user share `component`'s limit of 3 per `window`, counted in `redis`.
pub(super) fn unix_user_shares_a_limit(component: &Path, redis: &RedisServer, window: &str) {
    let name = component.file_stem().unwrap().to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("evconn-rate-unix-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("limit.sock");
    let listen = format!("unix:{}", path.display());
    let mut args = vec!["--component".to_string(), component.to_str().unwrap().to_string(), "--listen".into(), listen];
    args.extend(limiter_flags(component, redis, window));
    let host = HostProcess::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "{}", host.output());

    let mut a = UnixClient::connect(&path);
    assert_eq!(a.ask("one\n"), "one\n");
    assert_eq!(a.ask("two\n"), "two\n");
    let mut b = UnixClient::connect(&path);
    assert_eq!(b.ask("three\n"), "three\n");
    assert_eq!(b.ask("four\n"), LIMITED, "the 4th line, on another connection of the same user");
    assert_eq!(a.ask("five\n"), LIMITED);
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The keys in Redis of a Unix peer: `uid:UID/WINDOW`.
fn unix_peers_count_by_user(component: &Path, bucket: &str) {
    let redis = RedisServer::start();
    let window = settle_in_a_window(DAY, 30);
    unix_user_shares_a_limit(component, &redis, "86400");
    assert_eq!(window_now(DAY), window, "the conversation ran into the next window");
    let uid = rustix::process::getuid().as_raw();
    let keys: Vec<String> = redis_keys(&redis).into_keys().collect();
    assert_eq!(keys, [format!("{bucket}:uid:{uid}/{window}")]);
}

/// Under mutual TLS a client is counted by its certificate: two
/// connections presenting one certificate share `component`'s limit of 3
/// per `window`, counted in `redis`, and another certificate has its own.
/// Returns the two certificates' SHA-256 fingerprints, as `openssl x509
/// -fingerprint -sha256` computes them.
pub(super) fn certificates_have_limits_of_their_own(
    component: &Path,
    redis: &RedisServer,
    window: &str,
) -> [String; 2] {
    let dir = Scratch::new("rate-limit");
    let pki = Pki::new(&dir, "rate");
    let (cert, key) = pki.server("localhost", &["localhost"]).write(&dir, "server");
    let one = pki.client(&[(DnType::CommonName, "one")]);
    let two = pki.client(&[(DnType::CommonName, "two")]);
    let fingerprints = [one.write(&dir, "one").0, two.write(&dir, "two").0].map(|cert| fingerprint_sha256(&cert));
    let tls = ["--tls-cert", path_str(&cert), "--tls-key", path_str(&key), "--tls-client-ca", path_str(&pki.ca_file)];
    let flags = limiter_flags(component, redis, window);
    let args: Vec<&str> = tls.into_iter().chain(flags.iter().map(String::as_str)).collect();
    let (host, addr) = support::spawn_listening(component, &args);
    let connect = |identity| {
        TlsClient::connect(addr, pki.client_config(Some(identity)), "localhost")
            .unwrap_or_else(|e| panic!("{e}\n{}", host.output()))
    };
    let limited = LIMITED.trim_end_matches('\n');

    let (mut a, mut b) = (connect(&one), connect(&one));
    assert_eq!(a.ask("1").unwrap(), "1");
    assert_eq!(b.ask("2").unwrap(), "2");
    assert_eq!(a.ask("3").unwrap(), "3");
    assert_eq!(b.ask("4").unwrap(), limited, "the 4th line of one certificate");
    let mut c = connect(&two);
    assert_eq!(c.ask("another certificate's 1st").unwrap(), "another certificate's 1st");
    fingerprints
}

/// The keys in Redis of clients under mutual TLS: `cert:SHA256/WINDOW`.
fn clients_count_by_certificate(component: &Path, bucket: &str) {
    let redis = RedisServer::start();
    let window = settle_in_a_window(DAY, 30);
    let fingerprints = certificates_have_limits_of_their_own(component, &redis, "86400");
    assert_eq!(window_now(DAY), window, "the conversation ran into the next window");
    let keys: Vec<String> = redis_keys(&redis).into_keys().collect();
    let mut expected: Vec<String> = fingerprints.iter().map(|f| format!("{bucket}:cert:{f}/{window}")).collect();
    expected.sort();
    assert_eq!(keys, expected);
}

/// The tests above, in a module per language.
macro_rules! rate_limit_tests {
    ($($lang:ident => $example:literal;)*) => {$(
        mod $lang {
            use super::*;

            #[test]
            fn limits_lines_across_connections_shared() {
                limits_lines_across_connections(&support::example($example), Isolation::Shared);
            }

            #[test]
            fn limits_lines_across_connections_per_connection() {
                limits_lines_across_connections(&support::example($example), Isolation::Connection);
            }

            #[test]
            fn bad_settings_close_connections() {
                super::bad_settings_close_connections(&support::example($example));
            }

            #[test]
            fn buckets_as_the_operator_allows() {
                super::buckets_as_the_operator_allows(&support::example($example));
            }

            #[test]
            fn two_hosts_on_one_redis() {
                super::two_hosts_on_one_redis(&support::example($example));
            }

            #[test]
            fn unix_peers_count_by_user() {
                super::unix_peers_count_by_user(&support::example($example), $example);
            }

            #[test]
            fn clients_count_by_certificate() {
                super::clients_count_by_certificate(&support::example($example), $example);
            }

            #[test]
            fn keys_name_the_peer_and_the_window() {
                super::keys_name_the_peer_and_the_window(&support::example($example), $example);
            }
        }
    )*};
}

rate_limit_tests! {
    c => "rate-limit-c";
    python => "rate-limit-python";
    js => "rate-limit-js";
}
