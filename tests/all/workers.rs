//! `--workers N`: N reactor threads, each with its own `SO_REUSEPORT`
//! socket for every --listen address and, under the shared model, its own
//! instance: guest state is per worker, not per host.
use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::Probe;

/// The listener id and connection count a probe connection reports.
fn listener_and_count(probe: &mut Probe) -> (u64, u64) {
    let whoami = probe.ask("whoami");
    let words: Vec<&str> = whoami.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "listener").expect("whoami names the listener");
    let listener = words[at + 1].parse().unwrap();
    let count = probe.ask("count").parse().unwrap();
    (listener, count)
}

/// With two workers, connections reach two listeners (one per worker), each
/// worker's instance counts only its own connections, and the two counts
/// add up to every connection made. Each worker has a reactor thread.
#[test]
fn two_workers_split_connections_and_keep_state_apart() {
    let (host, addr) = support::spawn_listening(&support::guest("probe"), &["--workers", "2"]);
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", host.pid()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    for name in ["reactor-0", "reactor-1"] {
        assert!(threads.iter().any(|t| t == name), "no {name} thread in {threads:?}");
    }
    assert!(host.wait_for_line("worker=1", Duration::from_secs(5)).is_some(), "{}", host.output());

    // The kernel picks a socket by hashing each connection's addresses: 40
    // connections all landing on one of two would happen once in 2^39 runs.
    let mut probes: Vec<Probe> = (0..40).map(|_| Probe::connect(addr)).collect();
    let mut highest: BTreeMap<u64, u64> = BTreeMap::new();
    for probe in &mut probes {
        let (listener, count) = listener_and_count(probe);
        let seen = highest.entry(listener).or_default();
        *seen = (*seen).max(count);
    }
    assert_eq!(highest.len(), 2, "connections reached listeners {highest:?}");
    // Each count is the instance's own: the last connection to ask on each
    // listener sees how many that worker accepted, and together they are 40.
    for probe in &mut probes {
        let (listener, count) = listener_and_count(probe);
        highest.insert(listener, highest[&listener].max(count));
    }
    assert_eq!(highest.values().sum::<u64>(), 40, "per-worker counts {highest:?}");
    assert!(highest.values().all(|&count| count < 40), "one instance saw every connection: {highest:?}");
}

/// With two workers, each worker's instance has timers of its own: after
/// every one of 40 connections starts a timer, each connection's instance
/// reports as many timers as that worker has connections, and the two add
/// up to 40.
#[test]
fn each_worker_has_timers_of_its_own() {
    let (_host, addr) = support::spawn_listening(&support::guest("probe"), &["--workers", "2"]);
    let mut probes: Vec<Probe> = (0..40).map(|_| Probe::connect(addr)).collect();
    for probe in &mut probes {
        assert!(probe.ask("timer 60000").starts_with("timer "));
    }
    let mut by_listener: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    for probe in &mut probes {
        let (listener, _) = listener_and_count(probe);
        let timers = probe.ask("timers");
        let entry = by_listener.entry(listener).or_insert((0, timers.clone()));
        entry.0 += 1;
        assert_eq!(entry.1, timers, "connections of one worker see one instance's timers");
    }
    assert_eq!(by_listener.len(), 2, "{by_listener:?}");
    for (connections, timers) in by_listener.values() {
        assert_eq!(*timers, format!("timers {connections} fired 0"), "{by_listener:?}");
    }
}
