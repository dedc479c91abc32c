//! The deployment examples in examples/deploy work as shipped. The systemd
//! units run the host as systemd would (the socket bound on loopback and
//! another port, the service's ExecStart on it): it echoes, reloads,
//! restarts without refusing a connection and stops cleanly, and systemd
//! accepts the files. The Kubernetes container's command line is one the
//! host serves and drains with, and the manifests and the Dockerfile agree
//! on ports, paths, users and timeouts.
use crate::support;

mod continued_lines;
mod dockerfile;
mod kubernetes;
mod systemd;
mod unit_file;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use evconn_host::cli::parse_duration;
use rustix::process::Signal;
use socket2::Socket;
use support::HostProcess;
use systemd::Units;
use yaml_rust2::Yaml;

/// After --shutdown-timeout, how long the host may still take to send what
/// was written to the connections it closes (`FINAL_FLUSH` in
/// host/src/server.rs).
const HOST_FINAL_FLUSH: Duration = Duration::from_secs(3);

/// Descriptors the host holds besides connections: listeners, epoll and
/// event descriptors, stdio, the cache.
const HOST_DESCRIPTORS: u64 = 64;

/// How long a host may take to start listening (it compiles the guest).
const START: Duration = Duration::from_secs(60);

/// The log line of a host that has stopped taking connections.
const STOPPING: &str = "stopping: no new connections";

fn example(path: &str) -> PathBuf {
    support::workspace().join("examples").join("deploy").join(path)
}

/// A folder under target/ for one test, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            support::workspace().join("target").join("test-tmp").join(format!("deploy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The value after `flag` in a command line, if the flag is there.
fn flag<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    assert!(
        !words.iter().any(|w| w.starts_with(&format!("{flag}="))),
        "{flag}=VALUE is not read by these tests: write {flag} VALUE"
    );
    let at = words.iter().position(|w| w == flag)?;
    Some(words.get(at + 1).unwrap_or_else(|| panic!("{flag} has no value")).as_str())
}

/// Replaces the value after `name` in a command line.
fn replace_flag(words: &mut [String], name: &str, value: &str) {
    let at = words.iter().position(|w| w == name).unwrap_or_else(|| panic!("the command line has no {name}"));
    words[at + 1] = value.to_string();
}

/// Sends `message` on `stream` and reads it back.
fn exchange(stream: &mut TcpStream, message: &[u8]) -> bool {
    exchange_within(stream, message, Duration::from_secs(10))
}

/// Sends `message` on `stream` and reads it back, waiting at most `timeout`
/// for the answer.
fn exchange_within(stream: &mut TcpStream, message: &[u8], timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut answer = vec![0u8; message.len()];
    stream.write_all(message).is_ok() && stream.read_exact(&mut answer).is_ok() && answer == message
}

/// Whether a new connection to `addr` is echoed.
fn echoes(addr: SocketAddr) -> bool {
    support::echoes(addr, b"deployed")
}

fn send_signal(host: &HostProcess, signal: Signal) {
    host.signal(signal);
}

fn local(socket: &Socket) -> SocketAddr {
    socket.local_addr().unwrap().as_socket().unwrap()
}

fn compiled_entries(cache: &Path) -> usize {
    std::fs::read_dir(cache)
        .map_or(0, |list| list.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cwasm")).count())
}

/// The units as systemd runs them: the host serves the inherited socket
/// under its FileDescriptorName and binds nothing else, keeps compiled code
/// in the CacheDirectory, reloads on ExecReload's signal (new connections
/// on the new version, an open one still served, a broken file refused),
/// and on the stop signal drains the open connection and exits 0 within
/// TimeoutStopSec.
#[test]
fn systemd_units_serve_reload_and_stop() {
    let units = Units::load();
    let scratch = Scratch::new("systemd");
    let component = scratch.join("echo.wasm");
    std::fs::copy(support::guest("echo"), &component).unwrap();
    let cache = scratch.join("cache");
    let sockets = units.bind();
    let addr = local(&sockets[0]);
    let mut host = units.start(&sockets, &component, &cache);
    assert!(host.wait_for_line("listening", START).is_some(), "{}", host.output());
    let names = units.fd_names(1);
    let served = host.wait_for_line(&format!("serving an inherited socket name={names}"), Duration::from_secs(1));
    assert!(served.is_some_and(|line| line.contains(&addr.to_string())), "{}", host.output());
    assert_eq!(host.count_lines("0.0.0.0:9876"), 0, "the default address was bound too:\n{}", host.output());
    assert!(echoes(addr), "not served:\n{}", host.output());
    assert!(compiled_entries(&cache) > 0, "nothing compiled into the cache directory");

    let mut open = TcpStream::connect(addr).unwrap();
    assert!(exchange(&mut open, b"before the reload"));
    units.reload(&host);
    assert!(host.wait_for_line("reloaded:", Duration::from_secs(30)).is_some(), "{}", host.output());
    assert!(echoes(addr), "the new version does not serve:\n{}", host.output());
    assert!(exchange(&mut open, b"open across the reload"), "{}", host.output());

    std::fs::write(&component, b"not a component").unwrap();
    units.reload(&host);
    assert!(host.wait_for_line("reload refused", Duration::from_secs(30)).is_some(), "{}", host.output());
    assert!(echoes(addr), "a refused reload stopped the service:\n{}", host.output());

    units.stop(&host);
    assert!(host.wait_for_line(STOPPING, Duration::from_secs(10)).is_some(), "{}", host.output());
    assert!(exchange(&mut open, b"draining"), "the open connection was not drained:\n{}", host.output());
    drop(open);
    let status = host.wait_exit(units.timeout_stop()).expect("the host exits within TimeoutStopSec");
    assert!(status.success(), "{status}:\n{}", host.output());
    assert!(host.count_lines("stopped") > 0, "{}", host.output());
}

/// The socket outlives the process, as under systemd: a connection made
/// while the host drains waits in the socket's backlog instead of being
/// refused, and the next host serves it. A restart loses no connection.
#[test]
fn systemd_restart_refuses_no_connection() {
    let units = Units::load();
    let scratch = Scratch::new("restart");
    let (component, cache) = (support::guest("echo"), scratch.join("cache"));
    let sockets = units.bind();
    let addr = local(&sockets[0]);
    let mut first = units.start(&sockets, &component, &cache);
    assert!(first.wait_for_line("listening", START).is_some(), "{}", first.output());
    let mut open = TcpStream::connect(addr).unwrap();
    assert!(exchange(&mut open, b"first"));

    units.stop(&first);
    assert!(first.wait_for_line(STOPPING, Duration::from_secs(10)).is_some(), "{}", first.output());
    let mut waiting = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("refused while the host drains");
    waiting.write_all(b"queued").unwrap();
    drop(open);
    let status = first.wait_exit(units.timeout_stop()).expect("the first host exits");
    assert!(status.success(), "{status}:\n{}", first.output());

    let mut second = units.start(&sockets, &component, &cache);
    waiting.set_read_timeout(Some(START)).unwrap();
    let mut answer = [0u8; 6];
    waiting
        .read_exact(&mut answer)
        .unwrap_or_else(|e| panic!("the queued connection was lost: {e}\n{}", second.output()));
    assert_eq!(&answer, b"queued");
    drop(waiting);
    units.stop(&second);
    let status = second.wait_exit(units.timeout_stop()).expect("the second host exits");
    assert!(status.success(), "{status}:\n{}", second.output());
}

/// A restart in the middle of a stream of short connections loses none of
/// them: each is served by the old host, or waits in the socket and is
/// served by the new one; none is reset or refused.
#[test]
fn systemd_restart_under_load_loses_no_connection() {
    const CLIENTS: usize = 2;
    const CONNECTIONS: usize = 150;
    let units = Units::load();
    let scratch = Scratch::new("restart-load");
    let (component, cache) = (support::guest("echo"), scratch.join("cache"));
    let sockets = units.bind();
    let addr = local(&sockets[0]);
    let mut first = units.start(&sockets, &component, &cache);
    assert!(first.wait_for_line("listening", START).is_some(), "{}", first.output());

    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut lost = Vec::new();
                for i in 0..CONNECTIONS {
                    let message = format!("{client}:{i:04}");
                    let served = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                        .is_ok_and(|mut stream| exchange_within(&mut stream, message.as_bytes(), START));
                    if !served {
                        lost.push(message);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                lost
            })
        })
        .collect();
    // Restart while the stream runs: a tenth of the way through, bounded in time.
    let deadline = std::time::Instant::now() + START;
    while done.load(Ordering::Relaxed) < CLIENTS * CONNECTIONS / 10 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    units.stop(&first);
    let status = first.wait_exit(units.timeout_stop()).expect("the first host exits");
    assert!(status.success(), "{status}:\n{}", first.output());
    let mut second = units.start(&sockets, &component, &cache);

    let lost: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert!(lost.is_empty(), "{} connections lost across the restart: {lost:?}\n{}", lost.len(), first.output());
    units.stop(&second);
    let status = second.wait_exit(units.timeout_stop()).expect("the second host exits");
    assert!(status.success(), "{status}:\n{}", second.output());
}

/// The service's settings fit its flags: systemd waits out the drain and
/// the final flush before SIGKILL, LimitNOFILE (the soft limit too) leaves
/// a descriptor for every connection, the cache directory is one systemd
/// creates for the dynamic user, nothing forbids the executable memory
/// wasmtime needs, and the README installs the files where ExecStart looks.
#[test]
fn systemd_service_settings_agree() {
    let units = Units::load();
    let words = units.exec_start();
    let shutdown =
        parse_duration(flag(&words, "--shutdown-timeout").expect("ExecStart sets --shutdown-timeout")).unwrap();
    assert!(
        units.timeout_stop() > shutdown + HOST_FINAL_FLUSH,
        "TimeoutStopSec must outlast --shutdown-timeout {shutdown:?} and the final flush"
    );
    let max_connections: u64 =
        flag(&words, "--max-connections").expect("ExecStart sets --max-connections").parse().unwrap();
    let nofile = units.service.one("Service", "LimitNOFILE");
    let soft: u64 = nofile.split(':').next().unwrap().parse().expect("LimitNOFILE= is a number");
    assert!(
        soft >= max_connections + HOST_DESCRIPTORS,
        "LimitNOFILE={nofile} is too low for --max-connections {max_connections}"
    );
    assert_eq!(
        flag(&words, "--cache-dir"),
        Some("${CACHE_DIRECTORY}"),
        "DynamicUser= has no writable home for the default cache"
    );
    assert!(!units.service.one("Service", "CacheDirectory").is_empty());
    let no_wx = units.service.all("Service", "MemoryDenyWriteExecute");
    assert!(
        no_wx.iter().all(|v| !matches!(*v, "yes" | "true" | "1" | "on")),
        "wasmtime cannot run under MemoryDenyWriteExecute"
    );

    let readme = std::fs::read_to_string(example("systemd/README.md")).unwrap();
    let component = flag(&words, "--component").unwrap();
    for path in [words[0].as_str(), component] {
        assert!(readme.contains(path), "the README does not install {path}");
    }
}

/// systemd accepts the units: `systemd-analyze verify` reports no unknown
/// setting, bad value or missing program (ExecStart's program replaced by
/// the test's host binary, which is not installed in /usr/local/bin here).
#[test]
fn systemd_accepts_the_units() {
    let scratch = Scratch::new("verify");
    let units = Units::load();
    let service = std::fs::read_to_string(example("systemd/evconn-echo.service")).unwrap();
    let program = &units.exec_start()[0];
    let service = service.replace(&format!("ExecStart={program}"), &format!("ExecStart={}", support::host_binary()));
    std::fs::write(scratch.join("evconn-echo.service"), service).unwrap();
    std::fs::copy(example("systemd/evconn-echo.socket"), scratch.join("evconn-echo.socket")).unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args([scratch.join("evconn-echo.socket"), scratch.join("evconn-echo.service")])
        .output()
        .expect("systemd-analyze runs (scripts/setup installs systemd)");
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && complaints.trim().is_empty(), "systemd-analyze verify:\n{complaints}");
}

/// Whether a Kubernetes tcpSocket `probe` of `addr` passes: a connection
/// opens within its timeoutSeconds (1 s by default).
fn tcp_probe(addr: SocketAddr, probe: &Yaml) -> bool {
    assert!(!probe["tcpSocket"].is_badvalue(), "only tcpSocket probes are emulated: {probe:?}");
    let timeout = probe["timeoutSeconds"].as_i64().unwrap_or(1);
    TcpStream::connect_timeout(&addr, Duration::from_secs(timeout as u64)).is_ok()
}

/// The container's command line serves (the listen address moved to
/// loopback, the component compiled by `host compile` as in the
/// Dockerfile): both probes pass and it echoes. On SIGTERM the readiness
/// probe fails while an open connection is still served, and the host exits
/// 0 within terminationGracePeriodSeconds.
#[test]
fn kubernetes_container_serves_and_drains() {
    let deployment = kubernetes::load(&example("kubernetes/deployment.yaml"), "Deployment");
    let container = kubernetes::container(&deployment);
    let scratch = Scratch::new("kubernetes");
    let compiled = scratch.join("echo.cwasm");
    let status = Command::new(support::host_binary())
        .args(["compile", support::guest("echo").to_str().unwrap(), "-o", compiled.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "host compile failed");

    let addr: SocketAddr = format!("127.0.0.1:{}", support::free_port()).parse().unwrap();
    let mut words = kubernetes::command_line(container);
    replace_flag(&mut words, "--component", compiled.to_str().unwrap());
    replace_flag(&mut words, "--listen", &addr.to_string());
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let mut host = HostProcess::spawn(&args);
    assert!(host.wait_for_line("listening", START).is_some(), "{}", host.output());
    for probe in ["readinessProbe", "livenessProbe"] {
        assert!(tcp_probe(addr, &container[probe]), "the {probe} fails:\n{}", host.output());
    }
    assert!(echoes(addr), "not served:\n{}", host.output());

    let mut open = TcpStream::connect(addr).unwrap();
    assert!(exchange(&mut open, b"before SIGTERM"));
    send_signal(&host, Signal::TERM);
    assert!(host.wait_for_line(STOPPING, Duration::from_secs(10)).is_some(), "{}", host.output());
    let readiness = &container["readinessProbe"];
    let fails = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        !tcp_probe(addr, readiness)
    });
    assert!(fails, "the readiness probe still passes while the host drains:\n{}", host.output());
    assert!(exchange(&mut open, b"draining"), "the open connection was not drained:\n{}", host.output());
    drop(open);
    let grace = kubernetes::pod_spec(&deployment)["terminationGracePeriodSeconds"].as_i64().expect("a grace period");
    let status = host.wait_exit(Duration::from_secs(grace as u64)).expect("the host exits within the grace period");
    assert!(status.success(), "{status}:\n{}", host.output());
}

/// The manifests agree: the container port is the port the host listens
/// on, both probes and the Service's targetPort resolve to it over TCP, the
/// Service selects the pods; the grace period outlasts the preStop sleep,
/// the drain and the final flush; nothing writes a cache to the read-only
/// root; the pod runs as a user other than root.
#[test]
fn kubernetes_manifests_agree() {
    let deployment = kubernetes::load(&example("kubernetes/deployment.yaml"), "Deployment");
    let service = kubernetes::load(&example("kubernetes/service.yaml"), "Service");
    let container = kubernetes::container(&deployment);
    let words = kubernetes::command_line(container);

    let listen = parse_listen(flag(&words, "--listen").expect("the container sets --listen"));
    let ports = container["ports"].as_vec().expect("the container lists its ports");
    assert!(
        ports.iter().any(|p| p["containerPort"].as_i64() == Some(listen.port().into())
            && p["protocol"].as_str().unwrap_or("TCP") == "TCP"),
        "no TCP containerPort {}",
        listen.port()
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let port = kubernetes::resolve_port(container, &container[probe]["tcpSocket"]["port"]);
        assert_eq!(port, i64::from(listen.port()), "the {probe} looks at another port");
    }
    let service_ports = service["spec"]["ports"].as_vec().expect("the Service lists its ports");
    assert!(!service_ports.is_empty());
    for port in service_ports {
        assert_eq!(port["protocol"].as_str().unwrap_or("TCP"), "TCP");
        assert_eq!(
            kubernetes::resolve_port(container, &port["targetPort"]),
            i64::from(listen.port()),
            "the Service's targetPort"
        );
    }
    let selector = service["spec"]["selector"].as_hash().expect("the Service has a selector");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector {
        assert_eq!(&labels[key.as_str().unwrap()], value, "the Service does not select the pods");
    }

    let pod = kubernetes::pod_spec(&deployment);
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_i64().expect("a grace period") as u64);
    let pre_stop =
        Duration::from_secs(container["lifecycle"]["preStop"]["sleep"]["seconds"].as_i64().unwrap_or(0) as u64);
    let shutdown =
        parse_duration(flag(&words, "--shutdown-timeout").expect("the container sets --shutdown-timeout")).unwrap();
    assert!(grace > pre_stop + shutdown + HOST_FINAL_FLUSH, "SIGKILL would cut the drain short");

    if container["securityContext"]["readOnlyRootFilesystem"].as_bool() == Some(true) {
        let mounts: Vec<&str> = container["volumeMounts"]
            .as_vec()
            .map_or(Vec::new(), |v| v.iter().filter_map(|m| m["mountPath"].as_str()).collect());
        let cache_ok = words.iter().any(|w| w == "--no-cache")
            || flag(&words, "--cache-dir").is_some_and(|dir| mounts.iter().any(|m| dir.starts_with(m)));
        assert!(cache_ok, "the root file system is read-only: use --no-cache or a --cache-dir on a volume");
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_ne!(pod["securityContext"]["runAsUser"].as_i64(), Some(0));
}

fn parse_listen(text: &str) -> SocketAddr {
    evconn_host::cli::parse_listen_address(text).unwrap_or_else(|e| panic!("--listen {text}: {e}"))
}

/// The image ships what the Deployment runs: the host at the command's
/// path, the component at the --component path, made by `host compile` in
/// the stage it is copied from; it runs as the Deployment's user and
/// exposes the container's port.
#[test]
fn dockerfile_ships_what_the_deployment_runs() {
    let deployment = kubernetes::load(&example("kubernetes/deployment.yaml"), "Deployment");
    let container = kubernetes::container(&deployment);
    let words = kubernetes::command_line(container);
    let stages = dockerfile::read(&example("kubernetes/Dockerfile"));
    let image = stages.last().expect("a FROM");
    let copies: Vec<dockerfile::Copy> = image.all("COPY").into_iter().map(dockerfile::copy).collect();
    let shipped = |path: &str| {
        copies.iter().find(|c| c.destination == path).unwrap_or_else(|| panic!("the image has nothing at {path}"))
    };
    shipped(&words[0]);

    let component = shipped(flag(&words, "--component").expect("--component"));
    let from = component.from.expect("the component comes from a build stage");
    let build = stages.iter().find(|s| s.name.as_deref() == Some(from)).unwrap_or_else(|| panic!("no stage {from}"));
    let compiled: Vec<String> = build
        .all("RUN")
        .iter()
        .flat_map(|run| run.split("&&"))
        .filter_map(|step| {
            let step: Vec<String> = step.split_whitespace().map(str::to_string).collect();
            let compiles = step.windows(2).any(|w| w[0].ends_with("host") && w[1] == "compile");
            compiles.then(|| flag(&step, "-o").expect("host compile -o").to_string())
        })
        .collect();
    assert_eq!(component.sources, compiled, "the component copied is not what `host compile` wrote");

    let user = image.all("USER");
    let uid = user.last().and_then(|u| u.split(':').next()).expect("the image sets USER");
    let run_as = kubernetes::pod_spec(&deployment)["securityContext"]["runAsUser"].as_i64().expect("runAsUser");
    assert_eq!(uid.parse::<i64>().ok(), Some(run_as), "the image's USER is not the pod's runAsUser");
    let exposed: Vec<&str> = image.all("EXPOSE").iter().flat_map(|e| e.split_whitespace()).collect();
    let listen = parse_listen(flag(&words, "--listen").expect("--listen"));
    assert!(exposed.contains(&listen.port().to_string().as_str()), "the image does not EXPOSE {}", listen.port());
}
