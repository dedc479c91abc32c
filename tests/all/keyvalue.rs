//! `wasi:keyvalue`: one store shared by every instance of a host (both
//! isolation models, every worker) or by every host on one Redis (Debian's
//! `redis-server`, started by the tests); buckets opened only as the
//! operator allows; budgets, bounded batch reads, and a Redis that goes
//! away and comes back, all as errors to the guest and never traps.
use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use evconn_host::wasm::Isolation;
use support::tools::RedisServer;
use support::{Probe, TestHost, free_port, http_get, spawn_listening};

fn opened(addr: SocketAddr, bucket: &str) -> Probe {
    let mut probe = Probe::connect(addr);
    assert_eq!(probe.ask(&format!("kv-open {bucket}")), "opened");
    probe
}

/// Under the per-connection model each connection has an instance of its
/// own, and what one writes the next reads: the store is the host's.
#[test]
fn connections_of_separate_instances_share_the_store() {
    let host = TestHost::builder(&support::guest("probe")).isolation(Isolation::Connection).start();
    let mut writer = opened(host.addr, "probe");
    assert_eq!(writer.ask("kv-set probe greeting hello"), "ok");
    assert_eq!(writer.ask("kv-incr probe visits 5"), "value 5");
    drop(writer);
    let mut reader = opened(host.addr, "probe");
    assert_eq!(reader.ask("kv-get probe greeting"), "value hello");
    assert_eq!(reader.ask("kv-incr probe visits -7"), "value -2");
    assert_eq!(reader.ask("kv-exists probe greeting"), "exists true");
    assert_eq!(reader.ask("kv-del probe greeting"), "ok");
    assert_eq!(reader.ask("kv-get probe greeting"), "none");
    assert_eq!(reader.ask("kv-set probe word text"), "ok");
    assert!(reader.ask("kv-incr probe word 1").starts_with("error other value is not an integer"));
}

/// A guest opens the bucket named after its component and nothing else,
/// unless the operator lists buckets: then those alone.
#[test]
fn only_allowed_buckets_open() {
    let host = TestHost::start(&support::guest("probe"));
    let mut probe = Probe::connect(host.addr);
    assert_eq!(probe.ask("kv-open probe"), "opened");
    assert_eq!(probe.ask("kv-open other"), "error access-denied");
    assert_eq!(probe.ask("kv-open probe:other"), "error access-denied");
    drop(host);

    let host = TestHost::builder(&support::guest("probe")).allow_bucket("shared").allow_bucket("limits").start();
    let mut probe = Probe::connect(host.addr);
    assert_eq!(probe.ask("kv-open probe"), "error access-denied");
    assert_eq!(probe.ask("kv-open shared"), "opened");
    assert_eq!(probe.ask("kv-open limits"), "opened");
    // Buckets are apart: the same key in two holds two values.
    assert_eq!(probe.ask("kv-set shared k one"), "ok");
    assert_eq!(probe.ask("kv-set limits k two"), "ok");
    assert_eq!(probe.ask("kv-get shared k"), "value one");
    assert_eq!(probe.ask("kv-get limits k"), "value two");
}

/// Past the key budget or the byte budget a write fails in the guest, the
/// instance lives on, and deleting makes room again.
#[test]
fn budgets_refuse_writes_without_trapping() {
    let host = TestHost::builder(&support::guest("probe"))
        .limits(|limits| {
            limits.keyvalue_keys = 100;
            limits.keyvalue_memory = 1 << 20;
        })
        .start();
    let mut probe = opened(host.addr, "probe");
    assert_eq!(probe.ask("kv-fill probe 10"), "filled 100 error other the store is full: --keyvalue-keys reached");
    assert_eq!(probe.ask("kv-del probe f0"), "ok");
    assert_eq!(probe.ask("kv-set probe again x"), "ok");
    assert_eq!(probe.ask("kv-set-many probe a 1 b 2"), "error other the store is full: --keyvalue-keys reached");
    assert_eq!(probe.ask("kv-get probe a"), "none", "a batch past the budget sets nothing");
    assert_eq!(probe.ask("kv-keys probe"), "keys 100 pages 1");
    drop(host);

    let host = TestHost::builder(&support::guest("probe")).limits(|limits| limits.keyvalue_memory = 1 << 20).start();
    let mut probe = opened(host.addr, "probe");
    let answer = probe.ask("kv-fill probe 65536");
    assert!(answer.starts_with("filled 15 error other the store is full: --keyvalue-memory reached"), "{answer}");
    assert_eq!(probe.ask("ping"), "pong");
}

/// A batch read naming one big value many times would copy it each time:
/// refused once the copies pass the guest's memory, before the host holds
/// them.
#[test]
fn batch_reads_are_bounded_by_the_guests_memory() {
    let host = TestHost::builder(&support::guest("probe")).limits(|limits| limits.keyvalue_memory = 16 << 20).start();
    let mut probe = opened(host.addr, "probe");
    let answer = probe.ask("kv-fill probe 1048576");
    assert!(answer.starts_with("filled 15 error other the store is full"), "{answer}");
    assert_eq!(probe.ask("kv-get-many probe f1 8"), "got 8");
    // 100 GB of copies, against 64 MiB of guest memory.
    assert_eq!(
        probe.ask("kv-get-many probe f1 100000"),
        "error other the values asked for at once come to more than the guest's memory"
    );
    assert_eq!(probe.ask("kv-keys probe"), "keys 15 pages 1");
}

/// Listing pages through many keys, each once.
#[test]
fn listing_pages_through_every_key() {
    let host = TestHost::builder(&support::guest("probe")).limits(|limits| limits.keyvalue_keys = 5000).start();
    let mut probe = opened(host.addr, "probe");
    assert!(probe.ask("kv-fill probe 1").starts_with("filled 5000 "));
    assert_eq!(probe.ask("kv-keys probe"), "keys 5000 pages 5");
}

/// `increment` is atomic across the workers of one host: 40 clients spread
/// over two workers, 50 increments each, add up exactly.
#[test]
fn increments_add_up_across_workers() {
    let (_host, addr) = spawn_listening(&support::guest("probe"), &["--workers", "2"]);
    let clients: Vec<_> = (0..40)
        .map(|_| {
            std::thread::spawn(move || {
                let mut probe = opened(addr, "probe");
                let mut last = 0;
                for _ in 0..50 {
                    let answer = probe.ask("kv-incr probe hits 1");
                    last = answer.strip_prefix("value ").expect("a value").parse::<i64>().unwrap();
                }
                last
            })
        })
        .collect();
    let mut maximum = 0;
    for client in clients {
        maximum = maximum.max(client.join().unwrap());
    }
    assert_eq!(maximum, 2000);
    assert_eq!(opened(addr, "probe").ask("kv-get probe hits"), "value 2000");
}

/// Two hosts on one Redis share its data, bucket by bucket; when Redis
/// stops, calls fail in the guest (and are counted), the instance goes on
/// serving, and once Redis is back the same hosts use it again.
#[test]
fn hosts_share_a_redis_and_outlive_its_restart() {
    let mut redis = RedisServer::start();
    let url = format!("redis://{}", redis.addr);
    let metrics = format!("127.0.0.1:{}", free_port());
    let (host_a, a) = spawn_listening(&support::guest("probe"), &["--keyvalue", &url, "--metrics", &metrics]);
    let (_host_b, b) = spawn_listening(&support::guest("probe"), &["--keyvalue", &url]);
    let mut on_a = opened(a, "probe");
    let mut on_b = opened(b, "probe");
    assert_eq!(on_a.ask("kv-set probe k v"), "ok");
    assert_eq!(on_b.ask("kv-get probe k"), "value v");
    assert_eq!(on_b.ask("kv-incr probe n 3"), "value 3");
    assert_eq!(on_a.ask("kv-incr probe n 4"), "value 7");
    assert_eq!(on_a.ask("kv-set-many probe x 1 y 2"), "ok");
    assert_eq!(on_b.ask("kv-keys probe"), "keys 4 pages 1");

    let port = redis.addr.port();
    drop(redis);
    let failed = on_a.ask("kv-get probe k");
    assert!(failed.starts_with("error other store unavailable"), "{failed}");
    assert_eq!(on_a.ask("ping"), "pong", "the instance serves on");
    let text = http_get(&metrics, "/metrics");
    let failures = text
        .lines()
        .find(|line| {
            line.starts_with("evconn_keyvalue_operations_total{") && line.contains("op=\"get\",outcome=\"failed\"")
        })
        .unwrap_or_else(|| panic!("no failed gets in\n{text}"));
    assert!(failures.ends_with(" 1"), "{failures}");

    // A fresh Redis on the same port holds none of the old data.
    redis = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = on_a.ask("kv-set probe k again");
        if answer == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "no reconnection: {answer}\n{}", host_a.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while on_b.ask("kv-get probe k") != "value again" {
        assert!(Instant::now() < deadline, "host B never reconnected");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(redis);
}
