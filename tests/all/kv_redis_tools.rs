//! The kv example against the real `redis-cli` and `redis-benchmark` from
//! Debian's `redis-tools` (scripts/setup installs them): the tools work
//! unchanged, including what they send on their own (`COMMAND DOCS`,
//! `CONFIG GET`); and two hosts keeping their keys in one real
//! `redis-server` serve the same data. Missing tools fail these tests; they
//! are never skipped.
use crate::support;

use std::time::Duration;

use evconn_host::wasm::Isolation;
use support::TestHost;
use support::tools::{RedisServer, run};

/// `redis-cli` against `host`, one command given as arguments; returns
/// what it printed.
fn redis_cli(host: &TestHost, command: &[&str]) -> String {
    let mut args = vec!["-h".to_string(), "127.0.0.1".into(), "-p".into(), host.addr.port().to_string()];
    args.extend(command.iter().map(|word| word.to_string()));
    let ran = run("redis-cli", &args, "", Duration::from_secs(30));
    assert!(ran.status.success(), "redis-cli {command:?} failed: {}{}", ran.stdout, ran.stderr);
    ran.stdout
}

/// Waits until `host` holds one key (DBSIZE), as the sweep leaves it;
/// fails at `deadline`, saying `when`.
fn wait_for_one_key(host: &TestHost, deadline: std::time::Instant, when: &str) {
    loop {
        let size = redis_cli(host, &["dbsize"]);
        if size == "1\n" {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "still {} keys {when}", size.trim());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kv_host() -> TestHost {
    TestHost::start(&support::guest("kv"))
}

/// Commands given to redis-cli as arguments print what they print against
/// Redis, plain and with `--no-raw` (which shows each reply's type).
#[test]
fn redis_cli_runs_commands() {
    let host = kv_host();
    let exchanges: &[(&[&str], &str)] = &[
        (&["ping"], "PONG\n"),
        (&["ping", "hi"], "hi\n"),
        (&["echo", "two words"], "two words\n"),
        (&["set", "greeting", "hello world"], "OK\n"),
        (&["get", "greeting"], "hello world\n"),
        (&["incr", "visits"], "1\n"),
        (&["incr", "visits"], "2\n"),
        (&["exists", "greeting", "visits", "nothing"], "2\n"),
        (&["--no-raw", "get", "greeting"], "\"hello world\"\n"),
        (&["--no-raw", "incr", "visits"], "(integer) 3\n"),
        (&["--no-raw", "get", "nothing"], "(nil)\n"),
        (&["del", "greeting", "visits", "nothing"], "2\n"),
        (&["--no-raw", "exists", "greeting"], "(integer) 0\n"),
        (&["set", "word", "ten"], "OK\n"),
        (&["incr", "word"], "ERR value is not an integer or out of range\n\n"),
        (&["--no-raw", "incr", "word"], "(error) ERR value is not an integer or out of range\n"),
        (&["flushall"], "ERR unknown command 'flushall', with args beginning with: \n\n"),
        (&["set", "k", "v", "nx"], "ERR SET option 'NX' is not supported\n\n"),
        (&["set", "k", "v", "ex", "0"], "ERR invalid expire time in 'set' command\n\n"),
    ];
    for (command, expected) in exchanges {
        assert_eq!(redis_cli(&host, command), *expected, "redis-cli {command:?}");
    }
}

/// Keys expire as Redis's do, seen through redis-cli: `SET k v PX 200`
/// then `GET k` gives `v`, and 300 ms later `(nil)`; TTL and PTTL answer -2
/// for no key, -1 for no expiry, and the time left; EXPIRE, PEXPIRE and
/// PERSIST set and take it.
#[test]
fn redis_cli_sees_keys_expire() {
    let host = kv_host();
    assert_eq!(redis_cli(&host, &["set", "k", "v", "px", "200"]), "OK\n");
    assert_eq!(redis_cli(&host, &["get", "k"]), "v\n");
    let left: i64 = redis_cli(&host, &["pttl", "k"]).trim().parse().unwrap();
    assert!((1..=200).contains(&left), "PTTL {left}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(redis_cli(&host, &["--no-raw", "get", "k"]), "(nil)\n");
    assert_eq!(redis_cli(&host, &["--no-raw", "ttl", "k"]), "(integer) -2\n");
    assert_eq!(redis_cli(&host, &["set", "kept", "1"]), "OK\n");
    assert_eq!(redis_cli(&host, &["--no-raw", "ttl", "kept"]), "(integer) -1\n");
    assert_eq!(redis_cli(&host, &["expire", "kept", "100"]), "1\n");
    assert_eq!(redis_cli(&host, &["ttl", "kept"]), "100\n");
    assert_eq!(redis_cli(&host, &["persist", "kept"]), "1\n");
    assert_eq!(redis_cli(&host, &["ttl", "kept"]), "-1\n");
    assert_eq!(redis_cli(&host, &["set", "s", "v", "ex", "100"]), "OK\n");
    assert_eq!(redis_cli(&host, &["ttl", "s"]), "100\n");
    assert_eq!(redis_cli(&host, &["pexpire", "s", "100"]), "1\n");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(redis_cli(&host, &["exists", "s"]), "0\n");
}

/// Keys that expire are removed when their time comes though nobody reads
/// them: 1,000 keys set with `PX 1000` leave `DBSIZE` (which counts what the
/// store holds, and reads no key) within a second of their time.
#[test]
fn expired_keys_are_removed_though_nobody_reads_them() {
    let host = kv_host();
    let args: Vec<String> = ["-h", "127.0.0.1", "-p", &host.addr.port().to_string()].map(String::from).to_vec();
    let mut commands: String = (0..1000).map(|n| format!("set short:{n} {n} px 1000\n")).collect();
    commands.push_str("set long 1\n");
    let set = std::time::Instant::now();
    let ran = run("redis-cli", &args, &commands, Duration::from_secs(60));
    assert!(ran.status.success(), "redis-cli failed: {}{}", ran.stdout, ran.stderr);
    let held: u64 = redis_cli(&host, &["dbsize"]).trim().parse().unwrap();
    if set.elapsed() < Duration::from_millis(900) {
        assert_eq!(held, 1001, "no key is due yet");
    }
    wait_for_one_key(&host, set + Duration::from_secs(3), "3 s after setting them to live 1 s");
    assert_eq!(redis_cli(&host, &["get", "long"]), "1\n");
}

/// redis-cli reading commands from its input, as in a shell pipeline, asks
/// for `COMMAND DOCS` first, then runs each line.
#[test]
fn redis_cli_reads_commands_from_its_input() {
    let host = kv_host();
    let args: Vec<String> = ["-h", "127.0.0.1", "-p", &host.addr.port().to_string()].map(String::from).to_vec();
    let ran = run("redis-cli", &args, "set a 5\nincr a\nget a\nping\n", Duration::from_secs(30));
    assert!(ran.status.success(), "redis-cli failed: {}{}", ran.stdout, ran.stderr);
    assert_eq!(ran.stdout, "OK\n6\n6\nPONG\n", "stderr: {}", ran.stderr);
}

/// redis-benchmark runs its ping, set, get and incr tests to the end with
/// no error and no warning, reports requests per second for each, and its
/// 2,000 INCRs all count.
#[test]
fn redis_benchmark_runs_every_test() {
    let host = kv_host();
    let port = host.addr.port().to_string();
    let args: Vec<String> = ["-h", "127.0.0.1", "-p", &port, "-n", "2000", "-c", "10", "-t", "ping,set,get,incr", "-q"]
        .map(String::from)
        .to_vec();
    let ran = run("redis-benchmark", &args, "", Duration::from_secs(120));
    let output = format!("{}{}", ran.stdout, ran.stderr);
    eprintln!("{}", output.replace('\r', "\n"));
    assert!(ran.status.success(), "redis-benchmark failed: {output}");
    for trouble in ["ERR", "Error", "error", "WARNING"] {
        assert!(!output.contains(trouble), "redis-benchmark reported {trouble:?}: {output}");
    }
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"] {
        // Progress lines end in \r; the result is the last line for a test.
        let result = output
            .split(['\r', '\n'])
            .map(str::trim)
            .filter_map(|line| line.strip_prefix(&format!("{test}: ")))
            .filter_map(|rest| rest.split_once(" requests per second"))
            .next_back()
            .unwrap_or_else(|| panic!("no requests per second for {test}: {output}"));
        let rate: f64 = result.0.parse().unwrap_or_else(|e| panic!("{test}: {:?} is not a rate: {e}", result.0));
        assert!(rate > 0.0, "{test}: {rate} requests per second");
    }
    assert_eq!(redis_cli(&host, &["get", "counter:__rand_int__"]), "2000\n", "every INCR counted");
    assert_eq!(redis_cli(&host, &["exists", "key:__rand_int__"]), "1\n", "SET stored its key");
}

/// Two hosts given one `redis-server` (`--keyvalue redis://...`), one under
/// each isolation model, serve the same keys: `SET k v` through one and
/// `GET k` through the other gives `v`; INCRs through both add up (and
/// redis-benchmark's 2,000 through one are all read through the other); a
/// key's deadline holds through both, and keys nobody reads are swept out
/// of Redis.
#[test]
fn two_hosts_share_one_redis() {
    let redis = RedisServer::start();
    let url = format!("redis://{}", redis.addr);
    let a = TestHost::builder(&support::guest("kv")).keyvalue(&url).start();
    let b = TestHost::builder(&support::guest("kv")).keyvalue(&url).isolation(Isolation::Connection).start();
    assert_eq!(redis_cli(&a, &["set", "k", "v"]), "OK\n");
    assert_eq!(redis_cli(&b, &["get", "k"]), "v\n");
    assert_eq!(redis_cli(&b, &["incr", "n"]), "1\n");
    assert_eq!(redis_cli(&a, &["incr", "n"]), "2\n");
    assert_eq!(redis_cli(&b, &["del", "k"]), "1\n");
    assert_eq!(redis_cli(&a, &["--no-raw", "get", "k"]), "(nil)\n");

    let set = std::time::Instant::now();
    assert_eq!(redis_cli(&a, &["set", "short", "lived", "px", "300"]), "OK\n");
    let left: i64 = redis_cli(&b, &["pttl", "short"]).trim().parse().unwrap();
    assert!((1..=300).contains(&left), "PTTL through the other host: {left}");
    std::thread::sleep(Duration::from_millis(400).saturating_sub(set.elapsed()));
    assert_eq!(redis_cli(&b, &["--no-raw", "get", "short"]), "(nil)\n");

    // Keys nobody reads leave Redis too: the sweep pages through it (SCAN)
    // from the instances that live.
    let args: Vec<String> = ["-h", "127.0.0.1", "-p", &a.addr.port().to_string()].map(String::from).to_vec();
    let commands: String = (0..50).map(|n| format!("set unread:{n} {n} px 200\n")).collect();
    assert!(run("redis-cli", &args, &commands, Duration::from_secs(30)).status.success());
    wait_for_one_key(&b, std::time::Instant::now() + Duration::from_secs(3), "3 s after setting 50 to live 0.2 s");

    let port = a.addr.port().to_string();
    let args: Vec<String> =
        ["-h", "127.0.0.1", "-p", &port, "-n", "2000", "-c", "10", "-t", "set,incr", "-q"].map(String::from).to_vec();
    let ran = run("redis-benchmark", &args, "", Duration::from_secs(120));
    assert!(ran.status.success(), "redis-benchmark failed: {}{}", ran.stdout, ran.stderr);
    assert_eq!(redis_cli(&b, &["get", "counter:__rand_int__"]), "2000\n", "every INCR through A, read through B");
}
