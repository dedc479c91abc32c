//! `--metrics`: the `host` binary serves Prometheus text at `/metrics`
//! whose numbers are those of the traffic the tests drive, keeps answering
//! while a guest loops on the reactor, and refuses at start an address it
//! cannot bind.
use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::{HostProcess, Probe};

/// A series: a metric's name and its labels.
type Series = (String, BTreeMap<String, String>);

/// A series' name, its labels, and the value it should have.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// One scrape: its text, and the value of every series in it.
struct Samples {
    text: String,
    values: HashMap<Series, f64>,
}

impl Samples {
    /// The value of `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let series = (name.to_string(), labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        *self.values.get(&series).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", self.text))
    }

    /// Checks every `(name, labels, value)` and reports all that differ.
    fn assert_values(&self, expected: &[Expected]) {
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(name, labels, value)| self.get(name, labels) != *value)
            .map(|(name, labels, value)| format!("{name} {labels:?}: {} (expected {value})", self.get(name, labels)))
            .collect();
        assert!(wrong.is_empty(), "wrong values:\n{}\nin\n{}", wrong.join("\n"), self.text);
    }
}

/// Parses the Prometheus / OpenMetrics text format: `#` lines are comments,
/// every other line is `name{label="value",...} value [timestamp]`.
fn parse_exposition(text: &str) -> Result<HashMap<Series, f64>, String> {
    let mut values = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).ok_or_else(|| format!("no value in {line:?}"))?;
        let name = &line[..name_end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            return Err(format!("bad metric name in {line:?}"));
        }
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(labels) => parse_labels(labels)?,
            None => (BTreeMap::new(), &line[name_end..]),
        };
        let value = rest.split_whitespace().next().ok_or_else(|| format!("no value in {line:?}"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            number => number.parse().map_err(|_| format!("bad value {number:?} in {line:?}"))?,
        };
        if values.insert((name.to_string(), labels), value).is_some() {
            return Err(format!("a series appears twice: {line:?}"));
        }
    }
    Ok(values)
}

/// Parses `key="value",...}` (what follows a `{`) and returns the labels
/// and what follows the `}`.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (key, after) = rest.split_once("=\"").ok_or_else(|| format!("expected key=\"value\" in {text:?}"))?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?} in {text:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value in {text:?}")),
                Some((i, '"')) => break i + 1,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?} in {text:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key:?} twice in {text:?}"));
        }
        rest = &after[end..];
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None if rest.starts_with('}') => {}
            None => return Err(format!("expected , or }} after a label in {text:?}")),
        }
    }
}

/// An HTTP response: status code, headers (names lowercased) and body.
struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// Sends `request` to `addr` and reads the response until the server closes.
fn http(addr: SocketAddr, request: &str) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap_or_else(|e| panic!("reading the response to {request:?}: {e}"));
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {raw:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: HashMap<String, String> = lines
        .map(|l| l.split_once(": ").unwrap_or_else(|| panic!("bad header {l:?}")))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let length: usize = headers["content-length"].parse().unwrap();
    // A response to HEAD gives the length of the body it leaves out.
    let expected = if request.starts_with("HEAD ") { 0 } else { length };
    assert_eq!(body.len(), expected, "the body has Content-Length bytes");
    Response { status, headers, body: body.to_string() }
}

/// `GET /metrics`, checked and parsed.
fn scrape(addr: SocketAddr) -> Samples {
    let response = http(addr, "GET /metrics HTTP/1.1\r\nHost: evconn\r\nAccept: application/openmetrics-text\r\n\r\n");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.headers["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(response.body.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF:\n{}", response.body);
    let values = parse_exposition(&response.body).unwrap_or_else(|e| panic!("{e}\n{}", response.body));
    Samples { text: response.body, values }
}

/// Scrapes until `ready` holds (the host counts a connection's end a moment
/// after the peer sees it), for at most 10 s.
fn scrape_until(addr: SocketAddr, what: &str, ready: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let samples = scrape(addr);
        if ready(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "still not {what} after 10 s:\n{}", samples.text);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the `host` binary with `guest` and `--metrics` on a free port.
fn spawn_with_metrics(guest: &str, extra: &[&str]) -> (HostProcess, SocketAddr, SocketAddr) {
    let metrics: SocketAddr = format!("127.0.0.1:{}", support::free_port()).parse().unwrap();
    let metrics_arg = metrics.to_string();
    let mut args = vec!["--metrics", metrics_arg.as_str()];
    args.extend_from_slice(extra);
    let (host, addr) = support::spawn_listening(&support::guest(guest), &args);
    (host, addr, metrics)
}

/// Sends SIGTERM and returns the counts of the `stopped stats=...` line.
fn stop_and_stats(host: &mut HostProcess) -> HashMap<String, f64> {
    host.signal(rustix::process::Signal::TERM);
    let status = host.wait_exit(Duration::from_secs(20)).expect("the host exits after SIGTERM");
    assert!(status.success(), "exit status {status}:\n{}", host.output());
    let line = host.wait_for_line("stopped stats=", Duration::from_secs(1)).expect("a stopped line");
    line.split_whitespace()
        .filter_map(|word| word.strip_prefix("stats=").unwrap_or(word).split_once('='))
        .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
        .collect()
}

const PROBE: (&str, &str) = ("component", "probe");
const ECHO: (&str, &str) = ("component", "echo");

/// The most a TCP socket's send buffer grows to: tcp_wmem's maximum.
fn send_buffer_max() -> usize {
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap();
    wmem.split_whitespace().nth(2).and_then(|max| max.parse().ok()).expect("tcp_wmem has three numbers")
}

/// Three echo connections of exactly the same size: every byte counts once
/// each way, whether the socket took it at once or later from the host's
/// output queue; each connection is accepted, ends by the peer's close, and
/// costs one on-accept and one on-event.
#[test]
fn counts_bytes_and_connections_exactly() {
    // More than the host's socket can hold while the client reads nothing,
    // so part of each echo must wait in the host's queue, which holds it all.
    let bytes = send_buffer_max() + (1 << 20);
    let write_buffer = (2 * bytes).to_string();
    let (_host, addr, metrics) = spawn_with_metrics("echo", &["--write-buffer", &write_buffer]);
    let received = |s: &Samples| s.get("evconn_received_bytes_total", &[ECHO]);
    for client in 0..3u8 {
        let before = received(&scrape(metrics));
        let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8 ^ client).collect();
        // A small receive buffer, so that little of the echo fits on this side.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        let mut stream = TcpStream::from(socket);
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The host reads it all: its queue stays below --write-buffer.
        stream.write_all(&data).unwrap();
        scrape_until(metrics, "all read", |s| received(s) == before + bytes as f64);
        let mut back = vec![0u8; bytes];
        stream.read_exact(&mut back).unwrap();
        assert!(back == data, "client {client} got its bytes back");
    }
    let samples = scrape_until(metrics, "three connections closed", |s| {
        s.get("evconn_connections_closed_total", &[ECHO, ("reason", "peer_closed")]) == 3.0
    });
    let total = 3.0 * bytes as f64;
    samples.assert_values(&[
        ("evconn_connections_accepted_total", &[ECHO], 3.0),
        ("evconn_connections_active", &[ECHO], 0.0),
        ("evconn_received_bytes_total", &[ECHO], total),
        ("evconn_sent_bytes_total", &[ECHO], total),
        ("evconn_callback_duration_seconds_count", &[ECHO, ("callback", "on-accept")], 3.0),
        ("evconn_callback_duration_seconds_count", &[ECHO, ("callback", "on-event")], 3.0),
        ("evconn_connections_closed_total", &[ECHO, ("reason", "error")], 0.0),
        ("evconn_traps_total", &[ECHO], 0.0),
    ]);
    // At most 256 KiB reach the guest per call.
    let data_calls = samples.get("evconn_callback_duration_seconds_count", &[ECHO, ("callback", "on-data")]);
    assert!(data_calls >= 3.0 * (bytes >> 18) as f64, "{data_calls} on-data calls for 3 x {bytes} bytes");
    let buckets =
        samples.get("evconn_callback_duration_seconds_bucket", &[ECHO, ("callback", "on-data"), ("le", "+Inf")]);
    assert_eq!(buckets, data_calls, "the +Inf bucket holds every call");
}

/// Each way a probe connection can end: by the peer (three clients, two
/// pings each), then once each by a reset, a guest error, a trap, and the
/// guest's own close.
/// Every count is exact, including one callback per command, and the log
/// line at stop reads the same numbers.
#[test]
fn counts_each_ending_and_callback_exactly() {
    let (mut host, addr, metrics) = spawn_with_metrics("probe", &[]);
    let closed =
        |samples: &Samples, reason: &str| samples.get("evconn_connections_closed_total", &[PROBE, ("reason", reason)]);

    for _ in 0..3 {
        let mut client = Probe::connect(addr);
        assert_eq!(client.ask("ping"), "pong");
        assert_eq!(client.ask("ping"), "pong");
    }
    // A trap closes every connection of the shared instance: let these end first.
    scrape_until(metrics, "three clients closed", |s| closed(s, "peer_closed") == 3.0);

    let mut resetting = Probe::connect(addr);
    assert_eq!(resetting.ask("ping"), "pong");
    // Closing with a zero linger time sends a reset: the host's read fails.
    socket2::SockRef::from(&resetting.stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(resetting);
    scrape_until(metrics, "closed for an error", |s| closed(s, "error") == 1.0);

    for (command, reason) in [("fail", "guest_error"), ("trap", "trap"), ("close", "guest_closed")] {
        let mut client = Probe::connect(addr);
        client.send(command);
        assert_eq!(client.read_line(), None, "{command} ends the connection");
        drop(client);
        scrape_until(metrics, &format!("closed for {reason}"), |s| closed(s, reason) == 1.0);
    }

    let samples = scrape(metrics);
    let callbacks = |name| [PROBE, ("callback", name)];
    samples.assert_values(&[
        ("evconn_connections_accepted_total", &[PROBE], 7.0),
        ("evconn_connections_active", &[PROBE], 0.0),
        ("evconn_connections_closed_total", &[PROBE, ("reason", "peer_closed")], 3.0),
        ("evconn_connections_closed_total", &[PROBE, ("reason", "guest_error")], 1.0),
        ("evconn_connections_closed_total", &[PROBE, ("reason", "trap")], 1.0),
        ("evconn_connections_closed_total", &[PROBE, ("reason", "guest_closed")], 1.0),
        ("evconn_connections_closed_total", &[PROBE, ("reason", "error")], 1.0),
        ("evconn_connections_closed_total", &[PROBE, ("reason", "idle_timeout")], 0.0),
        ("evconn_connections_closed_total", &[PROBE, ("reason", "shutdown")], 0.0),
        // "ping\n" seven times, then "fail\n", "trap\n" and "close\n".
        ("evconn_received_bytes_total", &[PROBE], (7 * 5 + 5 + 5 + 6) as f64),
        // "pong\n" seven times.
        ("evconn_sent_bytes_total", &[PROBE], 35.0),
        ("evconn_callback_duration_seconds_count", &callbacks("on-accept"), 7.0),
        // One per command line: seven pings, fail, trap, close.
        ("evconn_callback_duration_seconds_count", &callbacks("on-data"), 10.0),
        // The end-of-stream of the three ping clients, the reset's error.
        ("evconn_callback_duration_seconds_count", &callbacks("on-event"), 4.0),
        ("evconn_callback_duration_seconds_count", &callbacks("on-accept-error"), 0.0),
        ("evconn_traps_total", &[PROBE], 1.0),
        ("evconn_guest_errors_total", &[PROBE], 1.0),
        // The first instance, and the one that replaced the trapped one.
        ("evconn_instances_created_total", &[PROBE], 2.0),
        ("evconn_reloads_total", &[PROBE], 0.0),
        ("evconn_reloads_refused_total", &[PROBE], 0.0),
    ]);

    let stats = stop_and_stats(&mut host);
    for (field, metric) in [
        ("accepted", "evconn_connections_accepted_total"),
        ("traps", "evconn_traps_total"),
        ("guest_errors", "evconn_guest_errors_total"),
        ("instances", "evconn_instances_created_total"),
        ("reloads", "evconn_reloads_total"),
    ] {
        assert_eq!(stats[field], samples.get(metric, &[PROBE]), "{field} in the log and {metric}");
    }
    assert_eq!(stats["idle_timeouts"], 0.0);
}

/// A connection that passes no bytes is closed by `--idle-timeout` after
/// one on-event (the timeout): counted as an idle timeout by the metrics
/// and by the log line at stop.
#[test]
fn counts_an_idle_timeout() {
    let (mut host, addr, metrics) = spawn_with_metrics("probe", &["--idle-timeout", "500ms"]);
    let mut idle = Probe::connect(addr);
    assert_eq!(idle.read_line(), None, "the host closes the idle connection");
    drop(idle);
    let samples = scrape_until(metrics, "closed for idling", |s| {
        s.get("evconn_connections_closed_total", &[PROBE, ("reason", "idle_timeout")]) == 1.0
    });
    samples.assert_values(&[
        ("evconn_connections_accepted_total", &[PROBE], 1.0),
        ("evconn_connections_active", &[PROBE], 0.0),
        ("evconn_connections_closed_total", &[PROBE, ("reason", "guest_closed")], 0.0),
        ("evconn_connections_closed_total", &[PROBE, ("reason", "peer_closed")], 0.0),
        ("evconn_callback_duration_seconds_count", &[PROBE, ("callback", "on-event")], 1.0),
        ("evconn_callback_duration_seconds_count", &[PROBE, ("callback", "on-data")], 0.0),
        ("evconn_received_bytes_total", &[PROBE], 0.0),
    ]);
    assert_eq!(stop_and_stats(&mut host)["idle_timeouts"], 1.0, "the log line counts the same idle timeout");
}

/// `accept()` failing with EMFILE while a client waits: each error the
/// guest is told of counts once under `errno="EMFILE"`, as does each
/// on-accept-error call.
#[test]
fn counts_accept_errors_by_errno() {
    use support::procfs::{lowest_free_fd, set_soft_descriptor_limit};
    let (host, addr, metrics) = spawn_with_metrics("probe", &[]);
    // One client served first, so every descriptor serving needs is open.
    let mut first = Probe::connect(addr);
    assert_eq!(first.ask("ping"), "pong");
    let no_more = lowest_free_fd(host.pid());
    set_soft_descriptor_limit(host.pid(), no_more);
    let mut waiting = Probe::connect(addr);
    waiting.send("ping");
    let error_line = "accept error 24 ";
    assert!(host.wait_for_line(error_line, Duration::from_secs(10)).is_some(), "no accept error:\n{}", host.output());
    set_soft_descriptor_limit(host.pid(), no_more + 64);
    assert_eq!(waiting.read_line().as_deref(), Some("pong"), "served once descriptors are free");
    drop((first, waiting));
    let samples = scrape_until(metrics, "both clients closed", |s| s.get("evconn_connections_active", &[PROBE]) == 0.0);
    let errors = samples.get("evconn_accept_errors_total", &[PROBE, ("errno", "EMFILE")]);
    assert!(errors >= 1.0, "{errors} EMFILE errors counted");
    assert_eq!(
        samples.get("evconn_callback_duration_seconds_count", &[PROBE, ("callback", "on-accept-error")]),
        errors,
        "one on-accept-error call per error"
    );
    // The guest logs each error it is told of; its lines may trail a little.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (host.count_lines(error_line) as f64) < errors && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(host.count_lines(error_line) as f64, errors, "the guest logged every counted error:\n{}", host.output());
}

/// While a callback loops on the (only) reactor, `/metrics` still answers:
/// the bytes it was handed are counted, and its on-data call is not yet.
#[test]
fn answers_while_a_guest_loops() {
    let (_host, addr, metrics) = spawn_with_metrics("probe", &["--guest-timeout", "60s"]);
    let mut spinning = Probe::connect(addr);
    spinning.send("spin");
    // Bytes count when read, just before on-data is called with them.
    scrape_until(metrics, "the spin command read", |s| s.get("evconn_received_bytes_total", &[PROBE]) == 5.0);
    for _ in 0..3 {
        scrape(metrics).assert_values(&[
            ("evconn_connections_active", &[PROBE], 1.0),
            ("evconn_callback_duration_seconds_count", &[PROBE, ("callback", "on-accept")], 1.0),
            ("evconn_callback_duration_seconds_count", &[PROBE, ("callback", "on-data")], 0.0),
        ]);
    }
}

/// Clients that send half a request and wait cannot keep a scrape out:
/// with 300 of them connected (more than the endpoint serves at once, so it
/// drops the oldest to make room), every scrape is answered within a
/// second, and the echo goes on serving meanwhile.
#[test]
fn slow_clients_cannot_hold_the_endpoint_shut() {
    const SLOW: usize = 300;
    let (_host, addr, metrics) = spawn_with_metrics("echo", &[]);
    let slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut stream = TcpStream::connect(metrics).expect("the endpoint accepts");
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
            stream
        })
        .collect();
    // Every slow client is in, or was dropped for a newer one.
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let started = Instant::now();
        let samples = scrape(metrics);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "a scrape took {took:?} with {SLOW} slow clients connected");
        assert_eq!(samples.get("evconn_connections_accepted_total", &[ECHO]), 0.0);
    }
    assert!(support::echoes(addr, b"still serving"), "the echo is held up");
    // The endpoint dropped some of them: the oldest beyond what it serves.
    let dropped = slow.iter().filter(|stream| peer_closed(stream)).count();
    assert!(dropped >= SLOW - 256, "only {dropped} of {SLOW} slow clients were dropped");
}

/// Whether the peer of `stream` closed it (end of stream or a reset),
/// looking without waiting.
fn peer_closed(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// Only `GET` (and `HEAD`) of `/metrics` is served: another path is 404,
/// another method 405, a request line that is not HTTP/1.x 400.
#[test]
fn answers_other_requests_with_errors() {
    let (_host, _addr, metrics) = spawn_with_metrics("echo", &[]);
    assert_eq!(http(metrics, "GET / HTTP/1.1\r\n\r\n").status, 404);
    assert_eq!(http(metrics, "GET /metrics/x HTTP/1.1\r\n\r\n").status, 404);
    let post = http(metrics, "POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET, HEAD");
    assert_eq!(http(metrics, "GET /metrics SPDY/3\r\n\r\n").status, 400);
    let head = http(metrics, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.headers["content-length"].parse::<usize>().unwrap() > 0, "HEAD gives the length of the metrics");
    // Still serving scrapes after all that.
    scrape(metrics).assert_values(&[("evconn_connections_accepted_total", &[ECHO], 0.0)]);
}

/// A `--metrics` address that cannot be bound (taken, or not this
/// machine's) or is not an address stops the host before it serves.
#[test]
fn refuses_a_bad_metrics_address_at_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", support::free_port());
    let probe = support::guest("probe");
    for (address, error) in [
        (taken.as_str(), format!("cannot serve metrics on {taken}")),
        ("192.0.2.1:9100", "cannot serve metrics on 192.0.2.1:9100".to_string()),
        ("127.0.0.1:0", "Invalid port".to_string()),
        ("localhost", "expected HOST:PORT".to_string()),
    ] {
        let mut host =
            HostProcess::spawn(&["--component", probe.to_str().unwrap(), "--listen", &listen, "--metrics", address]);
        let status = host.wait_exit(Duration::from_secs(60)).expect("the host exits");
        assert!(!status.success(), "--metrics {address} was accepted:\n{}", host.output());
        assert!(host.output().contains(&error), "--metrics {address}: no {error:?} in\n{}", host.output());
        assert_eq!(host.count_lines("listening"), 0, "--metrics {address}: served before refusing");
    }
}

/// The exposition parser reads names, labels with escapes, special values,
/// and refuses what is malformed.
#[test]
fn parses_the_exposition_format() {
    let text = "# HELP x_total A counter.\n# TYPE x counter\nx_total{component=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} 3\nplain 1.5e3 1700000000\nh_bucket{le=\"+Inf\"} +Inf\n# EOF\n";
    let values = parse_exposition(text).unwrap();
    let series = |name: &str, labels: &[(&str, &str)]| {
        (name.to_string(), labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
    };
    assert_eq!(values.len(), 3);
    assert_eq!(values[&series("x_total", &[("component", "a\"b\\c\nd"), ("le", "+Inf")])], 3.0);
    assert_eq!(values[&series("plain", &[])], 1500.0);
    assert_eq!(values[&series("h_bucket", &[("le", "+Inf")])], f64::INFINITY);
    for bad in [
        "x{a=\"1\" 2",
        "x{a=\"1\"b=\"2\"} 2",
        "x{a=1} 2",
        "x{a=\"1\",a=\"2\"} 3",
        "x{a=\"\\t\"} 1",
        "x",
        "x{} many",
        "x 1\nx 2",
        "{a=\"1\"} 1",
    ] {
        assert!(parse_exposition(bad).is_err(), "{bad:?} parsed");
    }
}
