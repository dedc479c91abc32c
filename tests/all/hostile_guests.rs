//! Guests that misbehave on purpose: a callback that never returns, memory
//! growth without bound, traps on demand and traps in quick succession, and
//! a write of memory the guest does not have. Each test runs the `host`
//! binary on loopback with the `probe` guest and checks that the damage
//! stays with the guest (its connection, or under the shared model its
//! instance) while the host keeps serving everyone else.
use crate::support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::HostProcess;
use support::procfs::{cpu_time, status_kb};

/// How long to wait for anything the host should do promptly.
const PROMPTLY: Duration = Duration::from_secs(10);
/// The `--guest-timeout` of the looping-guest tests.
const GUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// How soon after `spin` the looping guest's connection must be closed.
const SPIN_CLOSED_WITHIN: Duration = Duration::from_secs(2);
/// The same while fifty other clients keep the host busy. The timeout
/// counts the callback's own run time, not the turns it waits after
/// yielding at each epoch tick while the reactor serves the others: with a
/// debug host and the clients sharing two cores those turns take one to
/// four times the guest's slices, so the loop lasts a few timeouts of wall
/// time.
const SPIN_CLOSED_UNDER_LOAD_WITHIN: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------
// Helpers.

/// The tests of this file measure latency and CPU time on a small machine:
/// they run one at a time so they do not disturb each other.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the `host` binary with the probe guest on a free loopback port
/// with `extra` flags; `log_filter` replaces the default `RUST_LOG`.
fn spawn_probe_host(extra: &[&str], log_filter: Option<&str>) -> (HostProcess, SocketAddr) {
    let probe = support::guest("probe");
    match log_filter {
        None => support::spawn_listening(&probe, extra),
        Some(filter) => {
            // `HostProcess` sets RUST_LOG on the command it runs; `env` sets
            // ours after it, for the host only.
            let addr: SocketAddr = format!("127.0.0.1:{}", support::free_port()).parse().unwrap();
            let mut command = Command::new("env");
            command
                .arg(format!("RUST_LOG={filter}"))
                .arg(support::host_binary())
                .args(["--component", probe.to_str().unwrap(), "--listen", &addr.to_string()])
                .args(extra);
            let host = HostProcess::spawn_with(&mut command);
            assert!(
                host.wait_for_line("listening", Duration::from_secs(60)).is_some(),
                "the host did not start listening:\n{}",
                host.output()
            );
            (host, addr)
        }
    }
}

/// A client of the probe's line protocol that reports failures as values,
/// so that a thread can count them instead of panicking.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr` (within 5 s).
    fn connect(addr: SocketAddr) -> Result<Client, String> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(PROMPTLY)).unwrap();
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Ok(Client { stream, reader })
    }

    /// Connects, failing the test if it cannot.
    fn new(addr: SocketAddr) -> Client {
        Client::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
    }

    /// The client's own port, as the host logs it in `peer=`.
    fn port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }

    fn send(&mut self, command: &str) {
        self.stream.write_all(format!("{command}\n").as_bytes()).expect("sends");
    }

    /// Sends `command` and returns the answer line.
    fn ask(&mut self, command: &str) -> Result<String, String> {
        self.stream.write_all(format!("{command}\n").as_bytes()).map_err(|e| format!("{command}: send: {e}"))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(format!("{command}: the connection was closed")),
            Ok(_) => Ok(line.trim_end().to_string()),
            Err(e) => Err(format!("{command}: read: {e}")),
        }
    }

    /// Sends `command`; fails the test unless the answer is `answer`.
    fn expect(&mut self, command: &str, answer: &str) {
        match self.ask(command) {
            Ok(got) => assert_eq!(got, answer, "answer to {command:?}"),
            Err(e) => panic!("no answer: {e}"),
        }
    }

    /// Waits for the host to close the connection (end of stream or reset);
    /// returns how long that took, or `None` if it is still open after
    /// `timeout`. Anything the host still sends is read and dropped.
    fn wait_closed(&mut self, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut scratch = [0u8; 4096];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.reader.get_ref().set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            match self.reader.read(&mut scratch) {
                Ok(0) => return Some(started.elapsed()),
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                    continue;
                }
                // A reset or any other failure: the connection is gone.
                Err(_) => return Some(started.elapsed()),
            }
        }
    }
}

/// Sends SIGTERM to the host, waits for it to exit, and returns the counts
/// of its `stopped stats=...` line.
fn stop_and_stats(host: &mut HostProcess) -> HashMap<String, u64> {
    host.signal(rustix::process::Signal::TERM);
    let status = host.wait_exit(Duration::from_secs(20));
    let status = status.unwrap_or_else(|| panic!("the host still runs 20 s after SIGTERM:\n{}", host.output()));
    assert!(status.success(), "the host exits with status 0 on SIGTERM: {status}\n{}", host.output());
    let line = host
        .wait_for_line("stopped stats=", PROMPTLY)
        .unwrap_or_else(|| panic!("no stats line in the log:\n{}", host.output()));
    eprintln!("stats line: {line}");
    let stats: HashMap<String, u64> = line
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("stats=").unwrap_or(word).split_once('='))
        .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
        .collect();
    for name in ["accepted", "traps", "guest_errors", "instances", "idle_timeouts"] {
        assert!(stats.contains_key(name), "the stats line has {name}: {line}");
    }
    stats
}

/// Fails if the host itself panicked (the probe's own panic, how it traps,
/// reaches the log as guest output and does not count).
fn assert_no_host_panic(host: &HostProcess) {
    let output = host.output();
    let panics: Vec<&str> = output.lines().filter(|l| l.contains("panicked") && !l.contains(" guest: ")).collect();
    assert!(panics.is_empty(), "the host panicked: {panics:?}");
}

fn assert_running(host: &mut HostProcess) {
    assert!(host.child.try_wait().unwrap().is_none(), "the host process is still running:\n{}", host.output());
}

// ---------------------------------------------------------------------------
// 1 and 2: a callback that loops forever.

/// What one ping/pong client saw while the looping guest ran.
#[derive(Default)]
struct ClientReport {
    errors: Vec<String>,
    rounds_during_spin: u32,
    worst_during_spin: Duration,
    rounds: u32,
}

/// Per-connection model: a guest looping forever in `on-data` holds only its
/// own connection, which is closed once the callback passes --guest-timeout
/// (within 2 s); 50 other clients doing ping/pong all along see no error and
/// a worst round trip under 250 ms during the loop; the host serves on and
/// logs that the callback ran longer than --guest-timeout.
#[test]
fn looping_guest_holds_only_its_connection() {
    let _serial = serial();
    const CLIENTS: usize = 50;
    let (mut host, addr) = spawn_probe_host(&["--isolation", "connection", "--guest-timeout", "500ms"], None);

    let spinning = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (spinning, stop, ready) = (spinning.clone(), stop.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut report = ClientReport::default();
                let connected = Client::connect(addr).and_then(|mut c| {
                    let answer = c.ask("ping")?;
                    if answer == "pong" { Ok(c) } else { Err(format!("ping answered {answer:?}")) }
                });
                ready.wait();
                let mut client = match connected {
                    Ok(client) => client,
                    Err(e) => {
                        report.errors.push(e);
                        return report;
                    }
                };
                // Bounded in rounds and in time, whatever the host does.
                let started = Instant::now();
                while !stop.load(Ordering::SeqCst)
                    && report.rounds < 20_000
                    && started.elapsed() < Duration::from_secs(15)
                {
                    let during = spinning.load(Ordering::SeqCst);
                    let sent = Instant::now();
                    match client.ask("ping") {
                        Ok(answer) if answer == "pong" => {}
                        Ok(answer) => report.errors.push(format!("ping answered {answer:?}")),
                        Err(e) => {
                            report.errors.push(e);
                            break;
                        }
                    }
                    let took = sent.elapsed();
                    report.rounds += 1;
                    // A round trip sent during the loop counts, even if
                    // the loop held it until after the trap.
                    if during {
                        report.rounds_during_spin += 1;
                        report.worst_during_spin = report.worst_during_spin.max(took);
                    }
                    // A little breathing room, so 50 clients do not starve
                    // the host of CPU on a small machine.
                    std::thread::sleep(Duration::from_millis(2));
                }
                report
            })
        })
        .collect();
    ready.wait();
    std::thread::sleep(Duration::from_millis(200));

    let mut spinner = Client::new(addr);
    spinner.expect("ping", "pong");
    spinning.store(true, Ordering::SeqCst);
    spinner.send("spin");
    let held = spinner.wait_closed(Duration::from_secs(10));
    spinning.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    let reports: Vec<ClientReport> = clients.into_iter().map(|t| t.join().expect("a client thread")).collect();

    let held = held.expect("the looping guest's connection is closed within 10 s");
    let worst = reports.iter().map(|r| r.worst_during_spin).max().unwrap();
    let fewest = reports.iter().map(|r| r.rounds_during_spin).min().unwrap();
    let total: u32 = reports.iter().map(|r| r.rounds).sum();
    let during: u32 = reports.iter().map(|r| r.rounds_during_spin).sum();
    eprintln!(
        "looping guest held its connection for {held:?}; {CLIENTS} clients: worst round trip during the loop \
         {worst:?}, {during} round trips during it (fewest per client {fewest}), {total} in all"
    );
    let errors: Vec<&String> = reports.iter().flat_map(|r| &r.errors).collect();
    assert!(errors.is_empty(), "the other clients saw errors: {errors:?}");
    assert!(held >= GUEST_TIMEOUT - Duration::from_millis(50), "the loop ran until the timeout, not less: {held:?}");
    let within = SPIN_CLOSED_UNDER_LOAD_WITHIN;
    assert!(held < within, "the looping guest's connection is closed within {within:?}: {held:?}");
    assert!(fewest >= 3, "every client was served while the guest looped (fewest round trips: {fewest})");
    assert!(worst < Duration::from_millis(250), "worst round trip during the loop: {worst:?}");

    let line =
        host.wait_for_line("guest trapped", PROMPTLY).unwrap_or_else(|| panic!("no trap logged:\n{}", host.output()));
    assert!(line.contains("ran longer than --guest-timeout"), "the log says why: {line}");
    assert_eq!(host.count_lines("guest trapped"), 1, "one trap, only the looping guest's");
    let mut after = Client::new(addr);
    after.expect("ping", "pong");
    assert_running(&mut host);
    assert_no_host_panic(&host);
}

/// --guest-timeout counts the time a callback runs, not the turns it waits
/// for after yielding to the reactor. Six connections each ask for CPU work
/// that takes about 300 ms alone, at once, under the per-connection model:
/// their callbacks and a spinning one take turns at every epoch tick, so
/// each one's wall time is several times its running time, well past the
/// 800 ms timeout, yet none traps. The spinning callback still does.
#[test]
fn waiting_for_other_connections_does_not_count_toward_the_guest_timeout() {
    let _serial = serial();
    const CLIENTS: usize = 6;
    let (host, addr) = spawn_probe_host(&["--isolation", "connection", "--guest-timeout", "800ms"], None);

    // How many steps take about 300 ms here, alone: measured on a run long
    // enough that the round trip around it is small beside it.
    let mut alone = Client::new(addr);
    let probe_steps: u64 = 20_000_000;
    let started = Instant::now();
    alone.expect(&format!("work {probe_steps}"), "worked");
    let per_step = started.elapsed().as_secs_f64() / probe_steps as f64;
    let steps = (0.3 / per_step) as u64;
    let started = Instant::now();
    alone.expect(&format!("work {steps}"), "worked");
    let alone_took = started.elapsed();
    eprintln!("work {steps} took {alone_took:?} alone");
    assert!(
        (Duration::from_millis(150)..Duration::from_millis(600)).contains(&alone_took),
        "the calibrated work took {alone_took:?} alone"
    );

    let mut spinner = Client::new(addr);
    let start = Barrier::new(CLIENTS + 1);
    let took: Vec<Result<Duration, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let start = &start;
                scope.spawn(move || {
                    let mut client = Client::connect(addr)?;
                    client.expect("ping", "pong");
                    start.wait();
                    let started = Instant::now();
                    match client.ask(&format!("work {steps}"))?.as_str() {
                        "worked" => Ok(started.elapsed()),
                        other => Err(format!("answer {other:?}")),
                    }
                })
            })
            .collect();
        start.wait();
        spinner.send("spin");
        workers.into_iter().map(|worker| worker.join().unwrap()).collect()
    });
    eprintln!("each of {CLIENTS} took {took:?} together, and one spinning");
    for result in &took {
        let wall = result.as_ref().unwrap_or_else(|e| panic!("a working connection failed: {e}\n{}", host.output()));
        assert!(
            *wall > Duration::from_millis(800),
            "took {wall:?}: the callbacks did not take turns, so this proves nothing"
        );
    }
    assert!(spinner.wait_closed(SPIN_CLOSED_WITHIN * 2).is_some(), "the spinning connection was not closed");
    assert_eq!(
        host.count_lines("ran longer than --guest-timeout"),
        1,
        "only the spinning callback traps:\n{}",
        host.output()
    );
}

/// Shared model: a guest looping forever in `on-data` poisons its instance;
/// once past --guest-timeout the looping connection and the instance's other
/// connections are closed (within 2 s). The accept loop ran meanwhile: a
/// client that connected during the loop was accepted then (its "accepted"
/// line precedes the trap in the log) and is served afterwards by the
/// replacement instance, for which it is the first connection.
#[test]
fn looping_guest_under_shared_model_is_replaced_and_accepting_goes_on() {
    let _serial = serial();
    // The worker's debug lines say when each connection was accepted.
    let (mut host, addr) = spawn_probe_host(
        &["--isolation", "shared", "--guest-timeout", "500ms"],
        Some("info,evconn_host::serve::worker=debug,cranelift=warn,wasmtime=warn"),
    );
    let mut first = Client::new(addr);
    let mut second = Client::new(addr);
    let mut spinner = Client::new(addr);
    assert_eq!(spinner.ask("count").unwrap(), "3", "one instance serves all three");
    first.expect("ping", "pong");
    second.expect("ping", "pong");

    let spun = Instant::now();
    spinner.send("spin");
    std::thread::sleep(Duration::from_millis(100));
    let connecting = Instant::now();
    let mut newcomer = Client::new(addr);
    let connect_took = connecting.elapsed();
    newcomer.send("count");
    let newcomer_port = newcomer.port();

    let spinner_closed = spinner.wait_closed(Duration::from_secs(10)).map(|_| spun.elapsed());
    let first_closed = first.wait_closed(Duration::from_secs(10)).map(|_| spun.elapsed());
    let second_closed = second.wait_closed(Duration::from_secs(10)).map(|_| spun.elapsed());
    eprintln!(
        "connect during the loop took {connect_took:?}; closed after spin: looping {spinner_closed:?}, \
         others {first_closed:?} and {second_closed:?}"
    );
    let spinner_closed = spinner_closed.expect("the looping connection is closed");
    assert!(
        spinner_closed >= GUEST_TIMEOUT - Duration::from_millis(50),
        "the loop ran until the timeout: {spinner_closed:?}"
    );
    assert!(spinner_closed < SPIN_CLOSED_WITHIN, "the looping connection is closed within 2 s: {spinner_closed:?}");
    for (name, closed) in [("first", first_closed), ("second", second_closed)] {
        let closed = closed.unwrap_or_else(|| panic!("the {name} connection of the poisoned instance is closed"));
        assert!(closed < SPIN_CLOSED_WITHIN, "the {name} connection is closed within 2 s: {closed:?}");
    }

    // The newcomer's `count`, sent during the loop, is answered by the
    // replacement instance, to which it is the first connection.
    let mut line = String::new();
    newcomer.reader.read_line(&mut line).expect("the newcomer gets an answer");
    let answered = spun.elapsed();
    assert_eq!(line.trim_end(), "1", "the connection made during the loop is the replacement's first");
    eprintln!("the newcomer's count was answered {answered:?} after spin");
    assert!(connect_took < Duration::from_millis(500), "connecting during the loop was quick: {connect_took:?}");
    newcomer.expect("ping", "pong");

    // It was accepted while the guest looped: the accept loop logged it
    // before the trap that ended the loop.
    assert!(
        host.wait_for_line("guest instance replaced", PROMPTLY).is_some(),
        "no replacement logged:\n{}",
        host.output()
    );
    let output = host.output();
    let lines: Vec<&str> = output.lines().collect();
    let peer = format!("peer=127.0.0.1:{newcomer_port} ");
    let accepted_at = lines.iter().position(|l| l.contains("accepted") && l.contains(&peer));
    let trapped_at = lines.iter().position(|l| l.contains("guest trapped"));
    let (Some(accepted_at), Some(trapped_at)) = (accepted_at, trapped_at) else {
        panic!("no \"accepted {peer}\" or no \"guest trapped\" in the log:\n{output}");
    };
    assert!(lines[trapped_at].contains("ran longer than --guest-timeout"), "{}", lines[trapped_at]);
    assert!(
        accepted_at < trapped_at,
        "the newcomer was accepted while the guest looped, not after:\n{}\n{}",
        lines[accepted_at],
        lines[trapped_at]
    );

    let mut later = Client::new(addr);
    assert_eq!(later.ask("count").unwrap(), "2", "the replacement goes on serving");
    assert_eq!(host.count_lines("guest trapped"), 1);
    assert_running(&mut host);
    assert_no_host_panic(&host);
}

// ---------------------------------------------------------------------------
// 3: memory without bound.

/// The most resident memory the host may reach while a guest capped at 16M
/// tries to take everything.
const RSS_LIMIT_KB: u64 = 150 * 1024;

fn memory_scenario(isolation: &str) {
    let (mut host, addr) = spawn_probe_host(&["--isolation", isolation, "--guest-memory", "16M"], None);
    let pid = host.pid();
    let mut bystander = Client::new(addr);
    bystander.expect("ping", "pong");
    let mut grower = Client::new(addr);
    grower.expect("grow 100", "refused");
    grower.expect("ping", "pong");
    grower.expect("grow 4", "grew");
    grower.expect("ping", "pong");
    assert_eq!(host.count_lines("guest trapped"), 0, "a refused growth is not a trap:\n{}", host.output());
    let rss_grown = status_kb(pid, "VmRSS");

    grower.send("hog");
    let closed = grower.wait_closed(PROMPTLY);
    let closed = closed.unwrap_or_else(|| panic!("the hog's connection is closed:\n{}", host.output()));
    assert!(host.wait_for_line("guest trapped", PROMPTLY).is_some(), "the hog trapped:\n{}", host.output());
    let blamed = host.wait_for_line("the guest had run out of memory", PROMPTLY);
    assert!(blamed.is_some_and(|line| line.contains("guest_memory=16777216")), "the log says why:\n{}", host.output());
    let rss_after = status_kb(pid, "VmRSS");
    let peak = status_kb(pid, "VmHWM");
    eprintln!(
        "--isolation {isolation}: VmRSS {rss_grown} kB after grow 4, {rss_after} kB after hog; VmHWM {peak} kB; \
         hog's connection closed after {closed:?}"
    );

    if isolation == "shared" {
        assert!(bystander.wait_closed(PROMPTLY).is_some(), "the shared instance's other connection is closed");
    } else {
        bystander.expect("ping", "pong");
    }
    let mut newcomer = Client::new(addr);
    newcomer.expect("ping", "pong");
    newcomer.expect("grow 4", "grew");
    assert_eq!(host.count_lines("guest trapped"), 1, "one trap: the hog's");
    assert!(peak < RSS_LIMIT_KB, "the host's peak RSS stays below {RSS_LIMIT_KB} kB: {peak} kB");
    assert_running(&mut host);
    assert_no_host_panic(&host);
    drop((bystander, newcomer));
    let stats = stop_and_stats(&mut host);
    assert_eq!(stats["traps"], 1);
}

/// Shared model, --guest-memory 16M: growing past the cap fails inside the
/// guest (`grow 100` answers refused) and the connection goes on; growth
/// within it works; a guest allocating until it aborts traps, which closes
/// its instance's connections while the host serves new ones; the host's
/// peak RSS stays under 150 MB.
#[test]
fn unbounded_growth_is_contained_under_shared_model() {
    let _serial = serial();
    memory_scenario("shared");
}

/// Per-connection model, --guest-memory 16M: as under the shared model,
/// except that the hog's trap ends only its own connection.
#[test]
fn unbounded_growth_is_contained_under_connection_model() {
    let _serial = serial();
    memory_scenario("connection");
}

// ---------------------------------------------------------------------------
// 4: traps on the Nth message.

/// The trapping client's message number that traps.
const TRAP_ON: usize = 5;
/// Traps per run.
const TRAPS: u64 = 3;

/// A client that sends `TRAP_ON - 1` pings (answered), then `trap`; returns
/// once the host closed it.
fn trap_on_nth(addr: SocketAddr) {
    let mut client = Client::new(addr);
    for _ in 1..TRAP_ON {
        client.expect("ping", "pong");
    }
    client.send("trap");
    let closed = client.wait_closed(PROMPTLY);
    assert!(
        closed.is_some_and(|t| t < Duration::from_secs(2)),
        "the trapping connection is closed promptly: {closed:?}"
    );
}

/// Both models: a guest that hands `write` a list running past the end of
/// its memory traps (the host reads nothing outside the guest's memory),
/// its connection is closed, and the host serves a newcomer.
#[test]
fn a_write_from_outside_guest_memory_traps() {
    let _serial = serial();
    for isolation in ["shared", "connection"] {
        let (mut host, addr) = spawn_probe_host(&["--isolation", isolation], None);
        let mut client = Client::new(addr);
        client.expect("ping", "pong");
        client.send("write-outside-memory");
        assert!(client.wait_closed(PROMPTLY).is_some(), "--isolation {isolation}: the connection is closed");
        let trapped = host.wait_for_line("guest trapped", PROMPTLY);
        let trapped =
            trapped.unwrap_or_else(|| panic!("--isolation {isolation}: the guest trapped:\n{}", host.output()));
        assert!(trapped.contains("out of bounds"), "--isolation {isolation}: the trap says why: {trapped}");
        Client::new(addr).expect("ping", "pong");
        assert_running(&mut host);
        assert_no_host_panic(&host);
        assert_eq!(stop_and_stats(&mut host)["traps"], 1, "--isolation {isolation}");
    }
}

/// A client whose `fail` makes the callback return an error; returns once
/// the host closed it.
fn fail_once(addr: SocketAddr) {
    let mut client = Client::new(addr);
    client.expect("ping", "pong");
    client.send("fail");
    assert!(client.wait_closed(PROMPTLY).is_some(), "the failing connection is closed");
}

/// Per-connection model: three clients that each trap on their fifth
/// message are closed, and only they: 20 other connections answer before
/// and after every trap. A callback returning an error (`fail`) closes its
/// connection too but counts as a guest error. On SIGTERM the stats say
/// traps=3, guest_errors=1, and one instance per connection plus the one
/// made at start-up to check the guest.
#[test]
fn traps_under_connection_model_end_only_their_connection() {
    let _serial = serial();
    let (mut host, addr) = spawn_probe_host(&["--isolation", "connection", "--shutdown-timeout", "2s"], None);
    let mut others: Vec<Client> = (0..20).map(|_| Client::new(addr)).collect();
    let mut accepted = others.len() as u64;
    for other in &mut others {
        other.expect("count", "1");
    }
    for round in 1..=TRAPS {
        trap_on_nth(addr);
        accepted += 1;
        for other in &mut others {
            other.expect("ping", "pong");
        }
        assert_eq!(
            host.wait_for_count("guest trapped", round as usize, PROMPTLY) as u64,
            round,
            "one trap per round:\n{}",
            host.output()
        );
    }
    fail_once(addr);
    accepted += 1;
    assert!(
        host.wait_for_line("guest returned an error", PROMPTLY).is_some(),
        "the failure is logged:\n{}",
        host.output()
    );
    for other in &mut others {
        other.expect("ping", "pong");
        other.expect("count", "1");
    }
    assert_eq!(host.wait_for_count("discarded the trapped instance", TRAPS as usize, PROMPTLY), TRAPS as usize);
    assert_eq!(host.count_lines("instance replaced"), 0, "no shared instance to replace");
    drop(others);
    assert_no_host_panic(&host);

    let stats = stop_and_stats(&mut host);
    assert_eq!(stats["traps"], TRAPS);
    assert_eq!(stats["guest_errors"], 1, "`fail` is a guest error, not a trap");
    assert_eq!(stats["accepted"], accepted);
    assert_eq!(stats["instances"], 1 + accepted, "the start-up check plus one instance per connection");
}

/// Shared model: each of three clients trapping on its fifth message closes
/// the connections its instance served (the trapping one and bystanders);
/// new connections are served afterwards by a fresh instance (count 1). A
/// callback returning an error closes only its own connection and replaces
/// nothing. On SIGTERM the stats say traps=3, guest_errors=1, instances=4
/// (the first and three replacements).
#[test]
fn traps_under_shared_model_replace_the_instance() {
    let _serial = serial();
    let (mut host, addr) = spawn_probe_host(&["--isolation", "shared", "--shutdown-timeout", "2s"], None);
    let mut accepted = 0u64;
    for round in 1..=TRAPS {
        let mut bystanders: Vec<Client> = (0..3).map(|_| Client::new(addr)).collect();
        accepted += 3;
        for bystander in &mut bystanders {
            bystander.expect("ping", "pong");
        }
        trap_on_nth(addr);
        accepted += 1;
        for bystander in &mut bystanders {
            assert!(
                bystander.wait_closed(Duration::from_secs(2)).is_some(),
                "round {round}: a bystander of the trapped instance is closed"
            );
        }
        let mut fresh = Client::new(addr);
        accepted += 1;
        fresh.expect("count", "1");
        fresh.expect("ping", "pong");
        assert_eq!(
            host.wait_for_count("guest instance replaced", round as usize, PROMPTLY) as u64,
            round,
            "round {round}:\n{}",
            host.output()
        );
    }
    // The last fresh client was the fourth instance's first; this is its second.
    let mut staying = Client::new(addr);
    accepted += 1;
    staying.expect("count", "2");
    fail_once(addr);
    accepted += 1;
    assert!(
        host.wait_for_line("guest returned an error", PROMPTLY).is_some(),
        "the failure is logged:\n{}",
        host.output()
    );
    staying.expect("ping", "pong");
    // A replacement would count from 1; the same instance counted the
    // failing client as its third.
    assert_eq!(staying.ask("count").unwrap(), "3", "the same instance still serves: `fail` replaced nothing");
    drop(staying);
    assert_eq!(host.wait_for_count("guest trapped", TRAPS as usize, PROMPTLY) as u64, TRAPS);
    assert_eq!(host.count_lines("run out of memory"), 0, "a panic is not blamed on memory:\n{}", host.output());
    assert_no_host_panic(&host);

    let stats = stop_and_stats(&mut host);
    assert_eq!(stats["traps"], TRAPS);
    assert_eq!(stats["guest_errors"], 1, "`fail` is a guest error, not a trap");
    assert_eq!(stats["accepted"], accepted);
    assert_eq!(stats["instances"], 1 + TRAPS, "the first instance and one replacement per trap");
}

// ---------------------------------------------------------------------------
// 5: traps in quick succession.

/// Shared model: twelve clients in a row, each trapping at once, then one
/// that pings. The host waits before each replacement, longer after each
/// trap (10, 20, 40 ... ms) and, once the wait reaches 1 s, keeps it there
/// while traps keep coming: each trap/replace cycle, measured by the client,
/// takes at least the pause due. The host uses little CPU meanwhile.
#[test]
fn repeated_traps_back_off() {
    let _serial = serial();
    const CYCLES: usize = 12;
    let (mut host, addr) = spawn_probe_host(&["--isolation", "shared"], None);
    let pid = host.pid();
    Client::new(addr).expect("ping", "pong");

    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let mut cycles = Vec::with_capacity(CYCLES + 1);
    for _ in 0..CYCLES {
        let cycle = Instant::now();
        let mut client = Client::new(addr);
        client.send("trap");
        let closed = client.wait_closed(PROMPTLY);
        assert!(closed.is_some(), "the trapping connection is closed:\n{}", host.output());
        cycles.push(cycle.elapsed());
    }
    // The last replacement also waits; then serves.
    let cycle = Instant::now();
    let mut last = Client::new(addr);
    last.expect("ping", "pong");
    cycles.push(cycle.elapsed());
    let wall = started.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    let millis: Vec<u128> = cycles.iter().map(Duration::as_millis).collect();
    eprintln!("{CYCLES} trap cycles then a ping, ms each: {millis:?}; {wall:?} in all, host CPU {cpu:?}");

    assert_eq!(last.ask("count").unwrap(), "1", "the last client got a fresh instance");
    assert_eq!(host.wait_for_count("guest trapped", CYCLES, PROMPTLY), CYCLES);
    assert_eq!(host.wait_for_count("guest instance replaced", CYCLES, PROMPTLY), CYCLES);
    // Cycle k (from 0) reaches the instance made after trap k - 1: no pause
    // after the first trap (a lone trap costs nothing), then 10 ms doubling
    // to 1 s. A sleep never ends early, so these are firm lower bounds.
    for (k, took) in cycles.iter().enumerate().skip(2) {
        let due = Duration::from_millis((10u64 << (k - 2)).min(1000));
        assert!(*took >= due, "cycle {k} took {took:?}, less than the pause due ({due:?}): {millis:?}");
    }
    let total: Duration = cycles.iter().sum();
    assert!(total >= Duration::from_secs(1), "{} cycles take at least 1 s: {total:?}", cycles.len());
    let longest = cycles.iter().max().unwrap();
    assert!(*longest < Duration::from_millis(2500), "pauses are capped at 1 s: {millis:?}");
    assert!(cpu < wall / 4, "the host used {cpu:?} of CPU over {wall:?}");
    assert_running(&mut host);
    assert_no_host_panic(&host);
}

// ---------------------------------------------------------------------------
// 5: output without end.

/// Writers that never read, each served by a guest that writes 1 MiB pieces
/// without end from one callback, ignoring the host's refusals, with the
/// default output limits: the host holds at most its output cap (4 MiB) for
/// each, so its resident memory grows by that, the writers' guest memory
/// (a 1 MiB piece and an instance each) and a little; the callbacks end at
/// the guest timeout; and every other client is served. Returns the growth
/// of the host's peak RSS over its baseline, in kB.
fn writer_scenario(isolation: &str, writers: usize) -> u64 {
    let (mut host, addr) = spawn_probe_host(&["--isolation", isolation, "--guest-timeout", "1s"], None);
    let pid = host.pid();
    let mut bystander = Client::new(addr);
    bystander.expect("ping", "pong");
    let baseline = status_kb(pid, "VmRSS");
    let mut flooders: Vec<Client> = (0..writers).map(|_| Client::new(addr)).collect();
    for flooder in &mut flooders {
        flooder.send("flood-forever");
    }
    if isolation == "connection" {
        // Served between the flooding callbacks' turns.
        bystander.expect("ping", "pong");
    }
    // Each flooding callback ends at the guest timeout (a trap): a second
    // of running each, in turns on the one reactor.
    let deadline = Instant::now() + PROMPTLY + Duration::from_secs(2 * writers as u64);
    while host.count_lines("guest trapped") < writers && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(host.count_lines("guest trapped"), writers, "every flood ran into the timeout:\n{}", host.output());
    let peak = status_kb(pid, "VmHWM");
    let refused = host.output().contains("flooded");
    assert!(!refused, "flood-forever never stops by itself");
    if isolation == "connection" {
        bystander.expect("ping", "pong");
    }
    Client::new(addr).expect("ping", "pong");
    assert_running(&mut host);
    assert_no_host_panic(&host);
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "--isolation {isolation}, {writers} writer(s): VmRSS {baseline} kB before, VmHWM {peak} kB (+{growth} kB)"
    );
    drop(flooders);
    growth
}

/// The host's output cap, 4 MiB, in kB: what it may hold per connection.
const OUTPUT_CAP_KB: u64 = 4 * 1024;

/// What else one flooding connection may cost, in kB: its guest's 1 MiB
/// piece and instance, and the host's share of a few MiB of slack.
const PER_WRITER_KB: u64 = 3 * 1024;

/// Under the shared model, one guest that writes without end holds the
/// host to its output cap plus a few MiB.
#[test]
fn a_guest_writing_without_end_is_held_to_the_output_cap_under_shared_model() {
    let _serial = serial();
    let growth = writer_scenario("shared", 1);
    assert!(growth < OUTPUT_CAP_KB + PER_WRITER_KB + 4096, "the host grew by {growth} kB");
}

/// Under the per-connection model, one and then ten such guests at once:
/// ten times the cap plus a few MiB each.
#[test]
fn guests_writing_without_end_are_held_to_the_output_cap_under_connection_model() {
    let _serial = serial();
    for writers in [1, 10] {
        let growth = writer_scenario("connection", writers);
        let bound = writers as u64 * (OUTPUT_CAP_KB + PER_WRITER_KB) + 4096;
        assert!(growth < bound, "{writers} writer(s): the host grew by {growth} kB, over {bound} kB");
    }
}
