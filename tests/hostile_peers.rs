//! Peers that try: ten thousand idle connections, resets in the middle of a
//! write, connections that vanish, and a flood under a low descriptor limit.
//! The host keeps serving everyone else, leaks nothing and never spins.
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::procfs::{clock_ticks_per_second, cpu_ticks, limit_descriptors, open_fds, status_kb};
use support::Probe;

/// Raises this process's descriptor limit to its hard limit, which the host
/// it spawns inherits; returns the new limit.
fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the one struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// One echo round trip on a fresh connection.
fn echoes(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else { return false };
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut back = [0u8; 5];
    stream.write_all(b"alive").is_ok() && stream.read_exact(&mut back).is_ok() && &back == b"alive"
}

/// Opens `count` connections to `addr` from four threads, within 120 s.
fn open_idle(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let per_thread = count.div_ceil(4);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let n = per_thread.min(count.saturating_sub(i * per_thread));
                scope.spawn(move || {
                    (0..n)
                        .map(|_| {
                            assert!(Instant::now() < deadline, "opening idle connections took over 120 s");
                            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connects")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    })
}

/// Holds `count` idle connections under `isolation`; returns the host's
/// memory per connection in KB, after checking each one is served.
fn idle_connections(isolation: &str, count: usize) -> f64 {
    let limit = raise_descriptor_limit();
    assert!(limit as usize > count + 500, "descriptor limit {limit} is too low for {count} connections");
    let (host, addr) = support::spawn_listening(
        &support::guest("echo"),
        &["--isolation", isolation, "--max-connections", &(count + 100).to_string()],
    );
    let pid = host.pid();
    assert!(echoes(addr));
    let before = status_kb(pid, "VmRSS");
    let started = Instant::now();
    let mut idle = open_idle(addr, count);
    // Every connection is accepted and has its on-accept: the host holds a
    // descriptor for each.
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_fds(pid).len() < count {
        assert!(Instant::now() < deadline, "the host accepted only {} of {count}", open_fds(pid).len());
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = status_kb(pid, "VmRSS");
    let per_connection = (after.saturating_sub(before)) as f64 / count as f64;
    eprintln!(
        "--isolation {isolation}: {count} idle connections in {:?}; host RSS {before} kB -> {after} kB, {per_connection:.1} KB each",
        started.elapsed()
    );
    // A newcomer is served, and so is every idle connection, one byte each.
    assert!(echoes(addr), "a new client was not served while {count} were idle");
    for (i, stream) in idle.iter_mut().enumerate().step_by(count / 100) {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(b"x").unwrap();
        let mut back = [0u8; 1];
        stream.read_exact(&mut back).unwrap_or_else(|e| panic!("idle connection {i} was not served: {e}"));
    }
    drop(idle);
    assert!(echoes(addr), "the host stopped serving after the idle connections closed");
    per_connection
}

/// 10,000 idle connections held at once under the shared model, at a few
/// KB each; a newcomer is still served.
#[test]
fn ten_thousand_idle_connections_shared() {
    let per_connection = idle_connections("shared", 10_000);
    assert!(per_connection < 64.0, "{per_connection:.1} KB per idle connection");
}

/// 2,000 idle connections with an instance each: every one served, at a
/// bounded cost per connection.
#[test]
fn two_thousand_idle_connections_with_an_instance_each() {
    let per_connection = idle_connections("connection", 2_000);
    assert!(per_connection < 512.0, "{per_connection:.1} KB per idle connection");
}

/// Resets in the middle of the host's write, peers that vanish right after
/// connecting, half-close at once, or leave half a line: the host keeps
/// serving 20 other clients without an error, logs no error, and its
/// descriptor count returns to where it was.
#[test]
fn misbehaving_peers_hurt_nobody() {
    let (host, addr) = support::spawn_listening(&support::guest("echo"), &[]);
    let pid = host.pid();
    let mut bystanders: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    assert!(echoes(addr));
    let baseline = open_fds(pid).len();

    let check_bystanders = |bystanders: &mut Vec<TcpStream>, round: usize| {
        for (i, stream) in bystanders.iter_mut().enumerate() {
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let message = format!("round {round} client {i};");
            stream.write_all(message.as_bytes()).unwrap();
            let mut back = vec![0u8; message.len()];
            stream.read_exact(&mut back).unwrap_or_else(|e| panic!("bystander {i} failed in round {round}: {e}"));
            assert_eq!(back, message.as_bytes());
        }
    };

    for round in 0..5 {
        // A reset while the host writes a large echo back.
        let mut resetter = TcpStream::connect(addr).unwrap();
        let payload = vec![7u8; 4 << 20];
        let _ = resetter.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = resetter.write_all(&payload);
        socket2::SockRef::from(&resetter).set_linger(Some(Duration::ZERO)).unwrap();
        drop(resetter);
        // Peers that vanish, half-close at once, or stop mid-line.
        for _ in 0..200 {
            drop(TcpStream::connect(addr).unwrap());
        }
        for _ in 0..50 {
            let stream = TcpStream::connect(addr).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
        }
        for _ in 0..50 {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"half a li").unwrap();
        }
        check_bystanders(&mut bystanders, round);
    }
    assert!(echoes(addr));

    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds(pid).len() > baseline + 2 {
        assert!(
            Instant::now() < deadline,
            "the host holds {} descriptors, {baseline} before the misbehaving peers",
            open_fds(pid).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(host.count_lines(" ERROR "), 0, "errors logged:\n{}", host.output());
}

/// A flood of connections with only 20 descriptors to spare: the host backs
/// off (well under one core of CPU while the flood waits) and serves again
/// once the flood is gone.
#[test]
fn connection_flood_under_a_low_descriptor_limit() {
    // The probe guest only logs accept errors; echo's would stop the host.
    let (host, addr) = support::spawn_listening(&support::guest("probe"), &[]);
    let pid = host.pid();
    assert_eq!(Probe::connect(addr).ask("ping"), "pong");
    limit_descriptors(pid, 20);

    let started = Instant::now();
    let mut flood = Vec::new();
    while flood.len() < 500 && started.elapsed() < Duration::from_secs(10) {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => flood.push(stream),
            // The backlog is full: the kernel drops further handshakes.
            Err(_) => break,
        }
    }
    eprintln!("flood: {} connections in {:?}", flood.len(), started.elapsed());
    assert!(flood.len() > 20, "the flood did not exceed the spare descriptors");

    let ticks_before = cpu_ticks(pid);
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = (cpu_ticks(pid) - ticks_before) as f64 / clock_ticks_per_second() as f64 / window.elapsed().as_secs_f64();
    eprintln!("host CPU during the flood: {:.1}% of a core", cpu * 100.0);
    assert!(cpu < 0.5, "the host used {:.0}% of a core during the flood", cpu * 100.0);
    assert!(host.count_lines("accept error 24") >= 1, "accept never failed: the flood did not reach the limit");

    drop(flood);
    let recovered = Instant::now();
    let mut probe = loop {
        // Accepting the backlog of closed flood connections frees them fast.
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            drop(stream);
        }
        let mut probe = Probe::connect(addr);
        probe.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        probe.send("ping");
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut std::io::BufReader::new(&probe.stream), &mut line).is_ok() && line.trim() == "pong" {
            break probe;
        }
        assert!(recovered.elapsed() < Duration::from_secs(20), "the host did not recover after the flood");
    };
    eprintln!("served again {:?} after the flood closed", recovered.elapsed());
    assert_eq!(probe.ask("ping"), "pong");
}
