//! kv's keys in the host's store: the same data under the per-connection
//! model and across two workers, INCR that adds up from 50 clients at once,
//! and expiry with instances that come and go (deadlines kept with the
//! values, keys nobody reads swept by whichever instance lives).
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use evconn_host::wasm::Isolation;

use super::Client;
use super::kv::{clients_share_keys, request};
use crate::support::{self, TestHost};

/// A kv host in this process serving each connection with an instance of
/// its own.
fn per_connection() -> TestHost {
    TestHost::builder(&support::guest("kv")).isolation(Isolation::Connection).start()
}

/// Sends `args` on a new connection and returns the reply, which is
/// `len` bytes long.
fn ask(addr: SocketAddr, args: &[&str], len: usize) -> String {
    let mut client = Client::connect(addr);
    client.send(request(args));
    String::from_utf8(client.read_exact(len)).unwrap()
}

/// DBSIZE's count, asked on `client`.
fn dbsize(client: &mut Client) -> i64 {
    client.send(request(&["DBSIZE"]));
    let line = client.read_line();
    line.trim().strip_prefix(':').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("DBSIZE answered {line:?}"))
}

/// Under `--isolation connection` every connection has an instance of its
/// own, and still every client sees what the others wrote, and counts with
/// them: the keys live in the host's store.
#[test]
fn connections_with_instances_of_their_own_share_the_keys() {
    let host = per_connection();
    let (mut writer, mut reader) = (Client::connect(host.addr), Client::connect(host.addr));
    clients_share_keys(&mut writer, &mut reader);
    drop(writer);
    assert_eq!(ask(host.addr, &["GET", "shared"], 9), "$3\r\nyes\r\n", "a key outlives the instance that set it");
    assert_eq!(ask(host.addr, &["DEL", "shared", "visits"], 4), ":2\r\n");
    reader.assert_reply(&["EXISTS", "shared", "visits"], ":0\r\n");
}

/// With two workers, each with an instance of its own, 40 connections
/// (which the kernel spreads over both workers' sockets) each write a key
/// and each read every other's.
#[test]
fn two_workers_serve_the_same_keys() {
    let (_host, addr) = support::spawn_listening(&support::guest("kv"), &["--workers", "2"]);
    let mut clients: Vec<Client> = (0..40).map(|_| Client::connect(addr)).collect();
    for (n, client) in clients.iter_mut().enumerate() {
        client.assert_reply(&["SET", &format!("key:{n}"), &format!("value {n}")], "+OK\r\n");
    }
    for client in &mut clients {
        for n in 0..40 {
            let value = format!("value {n}");
            client.assert_reply(&["GET", &format!("key:{n}")], &format!("${}\r\n{value}\r\n", value.len()));
        }
        client.assert_reply(&["DBSIZE"], ":40\r\n");
    }
}

/// 50 clients sending 100 INCRs each at once, over two workers, get every
/// number from 1 to 5000 exactly once, and the count ends at 5000: each
/// INCR is one atomic increment in the store.
#[test]
fn incr_from_50_clients_on_two_workers_adds_up() {
    let (_host, addr) = support::spawn_listening(&support::guest("kv"), &["--workers", "2"]);
    let clients: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut numbers = Vec::new();
                // Four pipelines of 25, so that clients interleave.
                for _ in 0..4 {
                    client.send(request(&["INCR", "counter"]).repeat(25));
                    for _ in 0..25 {
                        let line = client.read_line();
                        numbers.push(line.trim().strip_prefix(':').unwrap().parse::<u64>().unwrap());
                    }
                }
                numbers
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for client in clients {
        for n in client.join().unwrap() {
            assert!(seen.insert(n), "{n} was answered twice");
        }
    }
    assert_eq!(seen, (1..=5000).collect(), "every INCR counted once");
    assert_eq!(ask(addr, &["GET", "counter"], 10), "$4\r\n5000\r\n");
}

/// Under `--isolation connection` the instance that set a key with `PX 200`
/// is gone with its connection, timers and all; the key still expires:
/// another connection reads it before its time and not after.
#[test]
fn keys_expire_though_the_instance_that_set_them_is_gone() {
    let host = per_connection();
    let set = Instant::now();
    let mut setter = Client::connect(host.addr);
    setter.assert_reply(&["SET", "k", "v", "PX", "200"], "+OK\r\n");
    drop(setter);
    let value = ask(host.addr, &["GET", "k"], 7);
    if set.elapsed() < Duration::from_millis(150) {
        assert_eq!(value, "$1\r\nv\r\n", "read before its time");
    }
    std::thread::sleep(Duration::from_millis(250).saturating_sub(set.elapsed()));
    assert_eq!(ask(host.addr, &["GET", "k"], 5), "$-1\r\n");
    assert_eq!(ask(host.addr, &["PTTL", "k"], 5), ":-2\r\n");
    assert_eq!(ask(host.addr, &["EXISTS", "k"], 4), ":0\r\n");
}

/// Keys nobody reads are removed once past their deadline by the sweep of
/// whichever instance lives: 200 keys set with `PX 300` by a connection
/// that then closes leave `DBSIZE` (which counts what the store holds,
/// and reads no value), asked on a connection that stays open (its
/// instance's timer sweeps), within a second of their time.
#[test]
fn keys_nobody_reads_are_swept_by_a_live_instance() {
    let host = per_connection();
    let mut watcher = Client::connect(host.addr);
    let mut writer = Client::connect(host.addr);
    let mut pipeline: Vec<u8> =
        (0..200).flat_map(|n| request(&["SET", &format!("short:{n}"), "v", "PX", "300"])).collect();
    pipeline.extend(request(&["SET", "long", "1"]));
    let set = Instant::now();
    writer.send(&pipeline);
    assert_eq!(writer.read_exact(5 * 201), "+OK\r\n".repeat(201).as_bytes());
    drop(writer);
    let held = dbsize(&mut watcher);
    if set.elapsed() < Duration::from_millis(250) {
        assert_eq!(held, 201, "no key is due yet");
    }
    let deadline = set + Duration::from_millis(1300);
    loop {
        let held = dbsize(&mut watcher);
        if held == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "still {held} keys 1.3 s after setting them to live 0.3 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    watcher.assert_reply(&["GET", "long"], "$1\r\n1\r\n");
}
