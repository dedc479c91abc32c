//! rate-limit: lines 1 to N of a peer address in a window are echoed, the
//! next get `-ERR rate limited`, however the lines are spread: over
//! connections with an instance each, over two workers, over two hosts
//! sharing a `redis-server`; another address has a count of its own, a
//! Unix socket's peers count by user and clients under mutual TLS by
//! certificate, a new window starts afresh, and old windows' keys are
//! removed.
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use evconn_host::wasm::Isolation;

use super::{Client, rate_limit_langs};
use crate::support::tools::{RedisServer, run};
use crate::support::{self, TestHost};

const LIMITED: &str = "-ERR rate limited\r\n";

/// A window no test crosses (about 11 years, counted from the epoch).
const LONG_WINDOW: &str = "100000h";

fn component() -> std::path::PathBuf {
    support::guest("rate_limit")
}

/// An in-process host allowing `limit` lines per `window`, under
/// `isolation`, with the store at `keyvalue` (`None`: in memory).
fn host(limit: u32, window: &str, isolation: Isolation, keyvalue: Option<&str>) -> TestHost {
    let mut builder = TestHost::builder(&component())
        .isolation(isolation)
        .env("RATE_LIMIT", &limit.to_string())
        .env("RATE_WINDOW", window);
    if let Some(url) = keyvalue {
        builder = builder.keyvalue(url);
    }
    builder.start()
}

impl Client {
    /// Sends `line` and asserts that it comes back.
    fn assert_echo(&mut self, line: &str) {
        self.send(format!("{line}\n"));
        assert_eq!(self.read_line(), format!("{line}\n"), "the echo of {line:?}");
    }

    /// Sends `line` and asserts that it is refused.
    fn assert_limited(&mut self, line: &str) {
        self.send(format!("{line}\n"));
        assert_eq!(self.read_line(), LIMITED, "the answer to {line:?}");
    }
}

/// Lines 1 to 5 from one address, over three connections (each with an
/// instance of its own under the per-connection model), are echoed; the
/// 6th and 7th are refused, on a connection that stays open; an address
/// of its own is counted apart.
fn limit_holds_across_connections(isolation: Isolation) {
    let host = host(5, LONG_WINDOW, isolation, None);
    let mut first = Client::connect(host.addr);
    first.assert_echo("line 1");
    first.assert_echo("line 2");
    drop(first);
    let mut second = Client::connect(host.addr);
    second.assert_echo("line 3");
    let mut third = Client::connect(host.addr);
    third.assert_echo("line 4");
    second.assert_echo("line 5");
    third.assert_limited("line 6");
    second.assert_limited("line 7");
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    Client::connect_from(host.addr, other).assert_echo("another peer's line 1");
    third.assert_limited("line 8");
}

/// The limit holds across connections sharing an instance.
#[test]
fn limit_holds_across_connections_of_one_instance() {
    limit_holds_across_connections(Isolation::Shared);
}

/// The limit holds across connections with an instance each.
#[test]
fn limit_holds_across_instances_per_connection() {
    limit_holds_across_connections(Isolation::Connection);
}

/// Lines that arrive in one read are counted together, in order: with 2
/// allowed, the third of three is refused.
#[test]
fn lines_of_one_read_are_counted_in_order() {
    let host = host(2, LONG_WINDOW, Isolation::Shared, None);
    let mut client = Client::connect(host.addr);
    client.send("a\nb\r\nc\n");
    assert_eq!(client.read_line(), "a\n");
    assert_eq!(client.read_line(), "b\r\n");
    assert_eq!(client.read_line(), LIMITED);
    client.assert_silent("three answers to three lines");
}

/// With two workers (an instance each), 20 connections from one address
/// sending a line each get 8 echoes and 12 refusals between them.
#[test]
fn limit_holds_across_two_workers() {
    let (_host, addr) = support::spawn_listening(
        &component(),
        &["--workers", "2", "--env", "RATE_LIMIT=8", "--env", &format!("RATE_WINDOW={LONG_WINDOW}")],
    );
    let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(addr)).collect();
    let mut answers = Vec::new();
    for (n, client) in clients.iter_mut().enumerate() {
        client.send(format!("from {n}\n"));
        answers.push(client.read_line());
    }
    let echoed = answers.iter().filter(|answer| answer.starts_with("from ")).count();
    let limited = answers.iter().filter(|answer| *answer == LIMITED).count();
    assert_eq!((echoed, limited), (8, 12), "{answers:?}");
    assert!(answers[..8].iter().all(|answer| answer.starts_with("from ")), "the first 8 pass: {answers:?}");
}

/// Two hosts given one `redis-server` count one address's lines together:
/// 3 through one and 2 through the other pass, the next through either is
/// refused.
#[test]
fn limit_holds_across_two_hosts_on_one_redis() {
    let redis = RedisServer::start();
    let url = format!("redis://{}", redis.addr);
    let a = host(5, LONG_WINDOW, Isolation::Shared, Some(&url));
    let b = host(5, LONG_WINDOW, Isolation::Connection, Some(&url));
    let mut through_a = Client::connect(a.addr);
    let mut through_b = Client::connect(b.addr);
    for n in 1..=3 {
        through_a.assert_echo(&format!("line {n}"));
    }
    through_b.assert_echo("line 4");
    through_b.assert_echo("line 5");
    through_a.assert_limited("line 6");
    through_b.assert_limited("line 7");
}

/// Over a Unix domain socket a peer is counted by its user id
/// (`SO_PEERCRED`): two connections of this test's user share one limit,
/// counted in Redis under a key ending in `/uid:UID`.
#[test]
fn unix_peers_share_a_limit_by_user() {
    let redis = RedisServer::start();
    rate_limit_langs::unix_user_shares_a_limit(&component(), &redis, LONG_WINDOW);
    let keys = keys_in(&redis);
    let uid = rustix::process::getuid().as_raw();
    assert!(keys.len() == 1 && keys[0].ends_with(&format!("/uid:{uid}")), "{keys:?}");
}

/// Under mutual TLS a client is counted by its certificate: two
/// connections presenting one certificate share a limit, another
/// certificate has its own, and the keys end in `/cert:SHA256`.
#[test]
fn clients_count_by_certificate_under_mutual_tls() {
    let redis = RedisServer::start();
    let fingerprints = rate_limit_langs::certificates_have_limits_of_their_own(&component(), &redis, LONG_WINDOW);
    let keys = keys_in(&redis);
    let mut suffixes: Vec<&str> = keys.iter().filter_map(|key| key.split_once("/cert:")).map(|(_, f)| f).collect();
    suffixes.sort();
    let mut expected = fingerprints.to_vec();
    expected.sort();
    assert_eq!(suffixes, expected, "keys: {keys:?}");
    assert_eq!(keys.len(), 2, "{keys:?}");
}

/// Every key in `redis`.
fn keys_in(redis: &RedisServer) -> Vec<String> {
    let args: Vec<String> = ["-p", &redis.addr.port().to_string(), "--scan"].map(String::from).to_vec();
    run("redis-cli", &args, "", Duration::from_secs(10)).stdout.lines().map(str::to_string).collect()
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Waits until a second has just begun, so that what follows within a few
/// hundred milliseconds falls in one 1 s window.
fn wait_for_a_new_second() {
    std::thread::sleep(Duration::from_millis(1000 - now_ms() % 1000 + 20));
}

/// How many keys `redis` holds: the test's own Redis holds only the
/// counts.
fn keys_in_redis(redis: &RedisServer) -> u64 {
    let args: Vec<String> = ["-p", &redis.addr.port().to_string(), "dbsize"].map(String::from).to_vec();
    let ran = run("redis-cli", &args, "", Duration::from_secs(10));
    assert!(ran.status.success(), "{}", ran.stderr);
    ran.stdout.trim().parse().unwrap_or_else(|_| panic!("DBSIZE answered {:?}", ran.stdout))
}

/// A new window starts a new count; the keys of windows that are over are
/// removed, though their peers never come back, by the sweep of an
/// instance that lives on.
#[test]
fn windows_start_afresh_and_old_ones_are_removed() {
    let redis = RedisServer::start();
    let host = host(2, "1s", Isolation::Shared, Some(&format!("redis://{}", redis.addr)));
    wait_for_a_new_second();
    let window = now_ms() / 1000;
    let mut client = Client::connect(host.addr);
    client.assert_echo("1");
    client.assert_echo("2");
    client.assert_limited("3");
    let peers: Vec<IpAddr> = (2..=4).map(|n| format!("127.0.0.{n}").parse().unwrap()).collect();
    for peer in &peers {
        Client::connect_from(host.addr, *peer).assert_echo("once");
    }
    let keys = keys_in_redis(&redis);
    if now_ms() / 1000 == window {
        // (Once the window is over, the sweep may have begun.)
        assert_eq!(keys, 4, "a key per address");
    }
    wait_for_a_new_second();
    client.assert_echo("1 again");
    // The other addresses never come back: their keys go by the sweep.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let keys = keys_in_redis(&redis);
        if keys == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{keys} keys: old windows' are left");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A setting that is not a number closes every connection, and the host
/// logs why.
#[test]
fn a_bad_setting_closes_connections() {
    let host = TestHost::builder(&component()).env("RATE_LIMIT", "lots").start();
    let mut client = Client::connect(host.addr);
    client.send("hello\n");
    assert_eq!(client.read_until_closed(), b"");
    let log = support::captured_log();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !log.lines.lock().unwrap().iter().any(|line| line.contains("RATE_LIMIT=\"lots\" is not a whole number")) {
        assert!(std::time::Instant::now() < deadline, "the host logs the bad setting");
        std::thread::sleep(Duration::from_millis(20));
    }
}
