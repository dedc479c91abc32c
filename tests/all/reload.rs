//! Hot reload: SIGHUP or a changed file (`--watch`) loads the component
//! again; new connections go to the new version, open ones finish on the
//! old, and no exchange fails meanwhile. A file that does not load is
//! refused and the running version keeps serving.
use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use support::{HostProcess, Probe};

/// A fresh folder under target/ for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir =
        support::workspace().join("target").join("test-tmp").join(format!("reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Puts `source`'s bytes at `path` in one step (write beside, rename), as
/// an operator deploying a new version should.
fn replace(path: &Path, source: &Path) {
    let beside = path.with_extension("new");
    std::fs::copy(source, &beside).unwrap();
    std::fs::rename(&beside, path).unwrap();
}

/// Starts the host on a copy of `component` in `dir`, with `extra` flags.
fn start(dir: &Path, component: &Path, extra: &[&str]) -> (HostProcess, SocketAddr, PathBuf) {
    let path = dir.join("handler.wasm");
    std::fs::copy(component, &path).unwrap();
    let cache = dir.join("cache");
    let mut args = vec!["--cache-dir", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (host, addr) = support::spawn_listening(&path, &args);
    (host, addr, path)
}

fn hang_up(host: &HostProcess) {
    host.signal(rustix::process::Signal::HUP);
}

/// Waits until the log has `count` lines containing `needle`.
fn wait_for_count(host: &HostProcess, needle: &str, count: usize, timeout: Duration) {
    let seen = host.wait_for_count(needle, count, timeout);
    assert!(seen >= count, "fewer than {count} {needle:?} lines:\n{}", host.output());
}

/// 50 clients echo 64-byte messages without a pause, reconnecting every 20
/// exchanges, while the host reloads five times: every exchange succeeds,
/// and connections opened around every reload are served.
#[test]
fn reloading_under_load_fails_no_exchange() {
    let dir = scratch("load");
    let (host, addr, _) = start(&dir, &support::guest("echo"), &[]);
    let stop = AtomicBool::new(false);
    let (exchanges, connections, failures) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        for client in 0..50u64 {
            let (stop, exchanges, connections, failures) = (&stop, &exchanges, &connections, &failures);
            scope.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(client);
                let (mut message, mut answer) = ([0u8; 64], [0u8; 64]);
                // Bounded: by the stop flag, a deadline and a count.
                for _ in 0..5_000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let mut exchange = || -> std::io::Result<()> {
                        let mut stream = TcpStream::connect(addr)?;
                        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                        for _ in 0..20 {
                            rng.fill_bytes(&mut message);
                            stream.write_all(&message)?;
                            stream.read_exact(&mut answer)?;
                            if answer != message {
                                return Err(std::io::Error::other("echoed bytes differ"));
                            }
                            exchanges.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(())
                    };
                    connections.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = exchange() {
                        eprintln!("client {client}: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        for reload in 1..=5 {
            std::thread::sleep(Duration::from_millis(300));
            let before = connections.load(Ordering::Relaxed);
            hang_up(&host);
            wait_for_count(&host, "reloaded", reload, Duration::from_secs(30));
            // Clients keep opening connections after each reload.
            let started = Instant::now();
            while connections.load(Ordering::Relaxed) < before + 50 && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    let (exchanges, connections) = (exchanges.into_inner(), connections.into_inner());
    eprintln!("{exchanges} exchanges over {connections} connections across 5 reloads");
    assert_eq!(failures.into_inner(), 0, "exchanges failed:\n{}", host.output());
    assert!(connections > 50 * 5, "too few connections to span the reloads: {connections}");
    assert_eq!(host.count_lines("reload refused"), 0, "{}", host.output());
}

/// With `--watch`, replacing the file with another component (the probe)
/// routes new connections to it, while a connection opened before goes on
/// echoing on the old version.
#[test]
fn watch_routes_new_connections_to_the_new_file() {
    let dir = scratch("watch");
    let (host, addr, path) = start(&dir, &support::guest("echo"), &["--watch"]);
    let mut old = TcpStream::connect(addr).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut echoed = [0u8; 6];
    old.write_all(b"before").unwrap();
    old.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"before");

    replace(&path, &support::guest("probe"));
    wait_for_count(&host, "reloaded", 1, Duration::from_secs(30));
    let mut new = Probe::connect(addr);
    assert_eq!(new.ask("ping"), "pong", "a new connection is served by the new file");

    old.write_all(b"after!").unwrap();
    old.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"after!", "the open connection stays with the old version");
}

/// A file that is not a component, then a component of another world, are
/// refused one after the other with an error in the log; the running
/// version serves new connections throughout, and a good file after them
/// is taken.
#[test]
fn a_broken_version_is_refused_and_the_old_keeps_serving() {
    let dir = scratch("broken");
    let (mut host, addr, path) = start(&dir, &support::guest("echo"), &["--watch"]);
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, b"this is not WebAssembly").unwrap();
    let echoes = || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(b"ok?").unwrap();
        let mut answer = [0u8; 3];
        stream.read_exact(&mut answer).is_ok() && &answer == b"ok?"
    };

    replace(&path, &garbage);
    wait_for_count(&host, "reload refused", 1, Duration::from_secs(30));
    assert!(echoes(), "the old version stopped serving:\n{}", host.output());
    let refused = host.wait_for_line("reload refused", Duration::ZERO).unwrap();
    assert!(refused.contains("not a WebAssembly"), "the reason is given: {refused}");

    replace(&path, &support::guest("not-a-handler"));
    wait_for_count(&host, "reload refused", 2, Duration::from_secs(30));
    assert!(echoes(), "the old version stopped serving:\n{}", host.output());

    replace(&path, &support::guest("probe"));
    wait_for_count(&host, "reloaded", 1, Duration::from_secs(30));
    assert_eq!(Probe::connect(addr).ask("ping"), "pong");

    host.signal(rustix::process::Signal::TERM);
    assert!(host.wait_exit(Duration::from_secs(15)).is_some_and(|s| s.success()));
    let stopped = host.wait_for_line("stopped stats=", Duration::from_secs(1)).expect("a stopped line");
    assert!(stopped.contains("reloads=1 reloads_refused=2"), "{stopped}");
}

/// Under --config, SIGHUP reads the listeners' `env` tables again: new
/// instances see the new values; a connection already open keeps its
/// instance's.
#[test]
fn sighup_gives_new_instances_the_config_files_new_environment() {
    let dir = scratch("env");
    std::fs::copy(support::guest("probe"), dir.join("probe.wasm")).unwrap();
    let port = support::free_port();
    let config = dir.join("evconn.toml");
    let write_config = |greeting: &str| {
        let text = format!(
            "no-cache = true\n[[listener]]\ncomponent = \"probe.wasm\"\nlisten = [\"127.0.0.1:{port}\"]\n\
             env = {{ GREETING = \"{greeting}\" }}\n"
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config("first");
    let host = HostProcess::spawn(&["--config", config.to_str().unwrap()]);
    assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "{}", host.output());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut before = Probe::connect(addr);
    assert_eq!(before.ask("getenv GREETING"), "env GREETING=first");

    write_config("second");
    hang_up(&host);
    wait_for_count(&host, "reloaded", 1, Duration::from_secs(60));
    assert!(host.output().contains("environment changed"), "{}", host.output());
    let mut after = Probe::connect(addr);
    assert_eq!(after.ask("getenv GREETING"), "env GREETING=second");
    assert_eq!(before.ask("getenv GREETING"), "env GREETING=first", "an open connection keeps its instance");

    // A file that no longer parses changes nothing.
    std::fs::write(&config, "wokers = 1\n").unwrap();
    hang_up(&host);
    wait_for_count(&host, "cannot read the environments again", 1, Duration::from_secs(60));
    wait_for_count(&host, "reloaded", 2, Duration::from_secs(60));
    let mut later = Probe::connect(addr);
    assert_eq!(later.ask("getenv GREETING"), "env GREETING=second");
}
