//! TLS listeners against real clients: `openssl s_client`, a rustls client
//! and `redis-cli --tls`, with certificates made at run time. Versions,
//! what the guest learns of the session, mutual TLS, SNI, the handshake
//! timeout, reloading certificates, and a clean close after the last byte.
use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rcgen::DnType;
use rustix::process::Signal;
use rustls::pki_types::CertificateDer;
use support::HostProcess;
use support::host_test::path_str;
use support::tls::{Pki, SClient, Scratch, TlsClient, fingerprint_sha256, x509};
use support::tools::run;

const WAIT: Duration = Duration::from_secs(10);

/// A scratch folder, a CA, and a server certificate for `localhost` and
/// 127.0.0.1 (subject `CN=localhost`) written to `server.crt` and
/// `server.key`.
struct Setup {
    dir: Scratch,
    pki: Pki,
    cert: PathBuf,
    key: PathBuf,
    /// The server certificate, as a client receives it.
    served: CertificateDer<'static>,
}

impl Setup {
    fn new(label: &str) -> Self {
        let dir = Scratch::new(label);
        let pki = Pki::new(&dir, "test");
        let issued = pki.server("localhost", &["localhost", "127.0.0.1"]);
        let (cert, key) = issued.write(&dir, "server");
        Setup { dir, pki, cert, key, served: issued.der }
    }

    /// The `host` binary serving guest `guest` over TLS with the server
    /// certificate, plus `extra` flags.
    fn host(&self, guest: &str, extra: &[&str]) -> (HostProcess, SocketAddr) {
        let mut args = vec!["--tls-cert", path_str(&self.cert), "--tls-key", path_str(&self.key)];
        args.extend_from_slice(extra);
        support::spawn_listening(&support::guest(guest), &args)
    }

    /// `s_client`'s arguments to reach `addr`, trusting only this CA and
    /// failing on a certificate it cannot verify.
    fn s_client_args<'a>(&'a self, addr: &'a str) -> Vec<&'a str> {
        vec!["-connect", addr, "-CAfile", path_str(&self.pki.ca_file), "-verify_return_error"]
    }
}

/// A free loopback address for `--metrics`.
fn metrics_address() -> SocketAddr {
    format!("127.0.0.1:{}", support::free_port()).parse().unwrap()
}

/// The value of the series `name` with exactly `labels` in a scrape of
/// `/metrics`, if it is there. Label values here hold no `,` or `"`, so a
/// plain split reads them.
fn metric(metrics: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = support::http_get(&metrics.to_string(), "/metrics");
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let inside = series.strip_prefix(name)?.strip_prefix('{')?.strip_suffix('}')?;
        let mut found: Vec<String> = inside.split(',').map(str::to_string).collect();
        found.sort();
        (found == wanted).then(|| value.parse().ok())?
    })
}

/// `evconn_tls_handshakes_total` of component `component` that ended with
/// `outcome`: 0 before the first, as the series is made on its first count.
fn handshakes(metrics: SocketAddr, component: &str, outcome: &str) -> f64 {
    metric(metrics, "evconn_tls_handshakes_total", &[("component", component), ("outcome", outcome)]).unwrap_or(0.0)
}

/// `evconn_connections_accepted_total` of `component`: connections the
/// guest heard of.
fn accepted(metrics: SocketAddr, component: &str) -> f64 {
    metric(metrics, "evconn_connections_accepted_total", &[("component", component)])
        .unwrap_or_else(|| panic!("no evconn_connections_accepted_total for {component}"))
}

/// Waits until `value()` is `expected` (the host counts a handshake a
/// moment after the client sees its end); fails after 10 s.
fn wait_until(what: &str, expected: f64, value: impl Fn() -> f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = value();
        if now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {now}, expected {expected}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Runs `s_client ARGS`, sends `line` and returns the first line it prints
/// back, then ends the session; `None` if nothing came back (the session
/// was refused).
fn s_client_line(args: &[&str], line: &str) -> (Option<String>, String) {
    let mut client = SClient::start(args);
    // A refused handshake may have closed the pipe already.
    let _ = client.send(format!("{line}\n").as_bytes());
    let answered = client.wait_for_output(WAIT, |out| out.contains(&b'\n'));
    client.close_input();
    let finished = client.finish(WAIT);
    let stdout = String::from_utf8_lossy(&finished.stdout).into_owned();
    let answer = answered.then(|| stdout.lines().next().unwrap_or_default().to_string());
    (answer, finished.stderr)
}

/// `s_client` over TLS 1.3 and then 1.2 to the echo: what it sends comes
/// back, the session is the version asked for and the server's certificate
/// verifies against the test CA for `localhost`. Plain bytes sent to the
/// same port are not echoed.
#[test]
fn s_client_echoes_over_tls_1_3_and_1_2() {
    let setup = Setup::new("versions");
    let (host, addr) = setup.host("echo", &[]);
    let address = addr.to_string();
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let mut args = setup.s_client_args(&address);
        args.extend([flag, "-brief", "-verify_hostname", "localhost"]);
        let mut client = SClient::start(&args);
        let message = format!("echoed over {version}\n");
        client.send(message.as_bytes()).unwrap();
        let echoed = client.wait_for_output(WAIT, |out| contains(out, message.as_bytes()));
        assert!(echoed, "{version}: no echo; stderr:\n{}\nhost:\n{}", client.stderr(), host.output());
        client.close_input();
        let finished = client.finish(WAIT);
        assert!(finished.status.success(), "{version}: s_client failed:\n{}", finished.stderr);
        assert_eq!(String::from_utf8_lossy(&finished.stdout), message, "{version}: exactly the echo");
        let negotiated = format!("Protocol version: {version}");
        assert!(finished.stderr.contains(&negotiated), "{version}: no {negotiated:?} in\n{}", finished.stderr);
        assert!(finished.stderr.contains("Verification: OK"), "{}", finished.stderr);
    }
    assert!(!support::echoes(addr, b"plain text\n"), "a TLS listener echoed plaintext");
}

/// Bytes that arrive in the same read as the client's `Finished` reach
/// the guest at once: rustls holds them after the handshake, and no
/// readiness of the socket announces them.
#[test]
fn bytes_sent_with_the_finished_message_are_echoed() {
    let setup = Setup::new("first-bytes");
    let (host, addr) = setup.host("echo", &[]);
    for round in 0..5 {
        let first = format!("sent with Finished, round {round}\n");
        let mut client = TlsClient::connect_sending(addr, setup.pki.client_config(None), "localhost", first.as_bytes())
            .unwrap_or_else(|e| panic!("{e}\n{}", host.output()));
        let mut echoed = vec![0u8; first.len()];
        client.stream.read_exact(&mut echoed).unwrap_or_else(|e| panic!("round {round}: {e}\n{}", host.output()));
        assert_eq!(echoed, first.as_bytes());
    }
}

/// The probe's `tls` answer over s_client: the version asked for, the
/// suite, the name sent (none under `-noservername`), the ALPN protocol
/// picked by the host's preference; a client offering only other protocols
/// is refused. A rustls client sees the same suite the guest is told of.
/// On a plain listener the answer is `none`.
#[test]
fn probe_reports_version_name_and_alpn() {
    let setup = Setup::new("probe");
    let (_host, addr) = setup.host("probe", &["--tls-alpn", "h2", "--tls-alpn", "echo/1"]);
    let address = addr.to_string();
    let ask = |extra: &[&str]| {
        let mut args = setup.s_client_args(&address);
        args.extend(["-brief"].iter().chain(extra));
        s_client_line(&args, "tls")
    };

    let (answer, stderr) = ask(&["-tls1_3", "-servername", "localhost", "-alpn", "echo/1"]);
    let answer = answer.unwrap_or_else(|| panic!("no answer:\n{stderr}"));
    assert!(answer.starts_with("tls TLSv1.3 TLS13_"), "{answer}");
    assert!(answer.ends_with(" sni=localhost alpn=echo/1 cert=-"), "{answer}");

    // The host's order decides: h2 is listed first.
    let (answer, stderr) = ask(&["-tls1_2", "-servername", "localhost", "-alpn", "echo/1,h2"]);
    let answer = answer.unwrap_or_else(|| panic!("no answer:\n{stderr}"));
    assert!(answer.starts_with("tls TLSv1.2 TLS_ECDHE_"), "{answer}");
    assert!(answer.ends_with(" sni=localhost alpn=h2 cert=-"), "{answer}");

    let (answer, stderr) = ask(&["-tls1_3", "-noservername"]);
    let answer = answer.unwrap_or_else(|| panic!("no answer:\n{stderr}"));
    assert!(answer.ends_with(" sni=- alpn=- cert=-"), "{answer}");

    let (answer, stderr) = ask(&["-tls1_3", "-servername", "localhost", "-alpn", "spdy/3"]);
    assert_eq!(answer, None, "a client offering none of the host's protocols was served:\n{stderr}");
    assert!(stderr.contains("no application protocol"), "the alert says why:\n{stderr}");

    let mut client = TlsClient::connect(addr, setup.pki.client_config(None), "localhost").unwrap();
    let suite = client.stream.conn.negotiated_cipher_suite().unwrap().suite();
    let expected = format!("tls TLSv1.3 {} sni=localhost alpn=- cert=-", suite.as_str().unwrap());
    assert_eq!(client.ask("tls").unwrap(), expected);
    assert_eq!(client.ask("ping").unwrap(), "pong");

    let (_plain, plain_addr) = support::spawn_listening(&support::guest("probe"), &[]);
    assert_eq!(support::Probe::connect(plain_addr).ask("tls"), "none");
}

/// Under mutual TLS the probe is told the client certificate's subject, as
/// `openssl x509 -nameopt RFC2253` writes it, and its SHA-256 fingerprint,
/// as `openssl x509 -fingerprint -sha256` computes it, over both versions.
#[test]
fn probe_reports_the_client_certificate() {
    let setup = Setup::new("probe-mtls");
    let client = setup.pki.client(&[(DnType::OrganizationName, "evconn tests"), (DnType::CommonName, "client one")]);
    let (client_cert, client_key) = client.write(&setup.dir, "client");
    let (_host, addr) = setup.host("probe", &["--tls-client-ca", path_str(&setup.pki.ca_file)]);

    let subject = x509(&client_cert, &["-subject", "-nameopt", "RFC2253"]);
    let subject = subject.strip_prefix("subject=").unwrap_or(&subject).trim().to_string();
    assert_eq!(subject, "CN=client one,O=evconn tests", "most specific first");
    let fingerprint = fingerprint_sha256(&client_cert);
    assert_eq!(fingerprint.len(), 64, "{fingerprint}");
    let expected_cert = format!(" cert={subject};{fingerprint}");

    let address = addr.to_string();
    for version in ["-tls1_3", "-tls1_2"] {
        let mut args = setup.s_client_args(&address);
        args.extend([version, "-brief", "-servername", "localhost"]);
        args.extend(["-cert", path_str(&client_cert), "-key", path_str(&client_key)]);
        let (answer, stderr) = s_client_line(&args, "tls");
        let answer = answer.unwrap_or_else(|| panic!("{version}: no answer:\n{stderr}"));
        assert!(answer.ends_with(&expected_cert), "{version}: {answer}, expected ...{expected_cert}");
        assert!(answer.contains(" sni=localhost "), "{answer}");
    }

    // The same through rustls, which sends the same certificate.
    let config = setup.pki.client_config(Some(&client));
    let mut rustls_client = TlsClient::connect(addr, config, "localhost").unwrap();
    assert!(rustls_client.ask("tls").unwrap().ends_with(&expected_cert));
}

/// Mutual TLS: clients with no certificate (TLS 1.3 and 1.2) and with one
/// from another CA are refused: nothing comes back, each handshake counts
/// as failed, and the guest hears of none of them. A client with a
/// certificate from the CA is echoed.
#[test]
fn mutual_tls_refuses_clients_without_a_good_certificate() {
    let setup = Setup::new("mtls");
    let good = setup.pki.client(&[(DnType::CommonName, "good client")]).write(&setup.dir, "good");
    let stranger_ca = Pki::new(&setup.dir, "stranger");
    let stranger = stranger_ca.client(&[(DnType::CommonName, "stranger")]).write(&setup.dir, "stranger");
    let metrics = metrics_address();
    let metrics_arg = metrics.to_string();
    let (host, addr) =
        setup.host("echo", &["--tls-client-ca", path_str(&setup.pki.ca_file), "--metrics", &metrics_arg]);
    let address = addr.to_string();
    fn with_identity((cert, key): &(PathBuf, PathBuf)) -> Vec<&str> {
        vec!["-cert", path_str(cert), "-key", path_str(key)]
    }

    let refused: [(&str, &str, Vec<&str>); 3] = [
        ("no certificate, TLS 1.3", "-tls1_3", vec![]),
        ("no certificate, TLS 1.2", "-tls1_2", vec![]),
        ("another CA's certificate", "-tls1_3", with_identity(&stranger)),
    ];
    for (count, (what, version, identity)) in refused.iter().enumerate() {
        let mut args = setup.s_client_args(&address);
        args.extend([*version, "-brief"].iter().chain(identity));
        let mut client = SClient::start(&args);
        // Under TLS 1.3 the client may send before it learns it is refused.
        let _ = client.send(b"let me in\n");
        // s_client exits when the host refuses, its input still open.
        let finished = client.finish(WAIT);
        assert!(finished.stdout.is_empty(), "{what}: got {:?}", String::from_utf8_lossy(&finished.stdout));
        assert!(!finished.status.success(), "{what}: s_client succeeded:\n{}", finished.stderr);
        assert!(finished.stderr.contains("alert"), "{what}: the host's alert:\n{}", finished.stderr);
        wait_until(what, (count + 1) as f64, || handshakes(metrics, "echo", "failed"));
    }
    assert_eq!(accepted(metrics, "echo"), 0.0, "the guest heard of a refused client");
    assert_eq!(handshakes(metrics, "echo", "ok"), 0.0);

    let mut args = setup.s_client_args(&address);
    args.extend(["-brief"].iter().chain(&with_identity(&good)));
    let (answer, stderr) = s_client_line(&args, "welcome");
    assert_eq!(answer.as_deref(), Some("welcome"), "the good client is echoed:\n{stderr}\n{}", host.output());
    wait_until("accepted", 1.0, || accepted(metrics, "echo"));
    assert_eq!(handshakes(metrics, "echo", "ok"), 1.0);
    assert_eq!(handshakes(metrics, "echo", "failed"), 3.0);
}

/// SNI from a config file with two certificates besides the default:
/// `a.test` and `b.test` get theirs, which verify for those names; an
/// unknown name and no name get the default. Each is echoed.
#[test]
fn sni_picks_the_certificate_by_name() {
    let setup = Setup::new("sni");
    for name in ["a.test", "b.test"] {
        setup.pki.server(name, &[name]).write(&setup.dir, name);
    }
    let port = support::free_port();
    let config = setup.dir.write(
        "evconn.toml",
        &format!(
            "no-cache = true\n\
             [[listener]]\n\
             component = \"{}\"\n\
             listen = [\"127.0.0.1:{port}\"]\n\
             tls = {{ cert = \"server.crt\", key = \"server.key\", sni = [\n\
             \x20   {{ names = [\"a.test\"], cert = \"a.test.crt\", key = \"a.test.key\" }},\n\
             \x20   {{ names = [\"b.test\"], cert = \"b.test.crt\", key = \"b.test.key\" }},\n\
             ] }}\n",
            path_str(&support::guest("echo"))
        ),
    );
    let host = HostProcess::spawn(&["--config", path_str(&config)]);
    assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "{}", host.output());
    let address = format!("127.0.0.1:{port}");

    for (name, served) in [
        (Some("a.test"), "a.test"),
        (Some("b.test"), "b.test"),
        (Some("unknown.test"), "localhost"),
        (None, "localhost"),
    ] {
        let mut args = setup.s_client_args(&address);
        args.extend(["-brief", "-verify_hostname", served]);
        match name {
            Some(name) => args.extend(["-servername", name]),
            None => args.push("-noservername"),
        }
        let (answer, stderr) = s_client_line(&args, "hello");
        assert_eq!(answer.as_deref(), Some("hello"), "{name:?}: no echo:\n{stderr}");
        let certificate = format!("Peer certificate: CN = {served}");
        assert!(stderr.contains(&certificate), "{name:?}: no {certificate:?} in\n{stderr}");
        assert!(stderr.contains("Verification: OK"), "{name:?}: {stderr}");
    }
}

/// With `--tls-handshake-timeout 300ms`, a client that connects and sends
/// nothing, and one that sends part of a record header and stops, are
/// closed after the timeout, not before, and counted as timeouts; a client
/// connected meanwhile is served throughout.
#[test]
fn handshake_timeout_closes_a_silent_client() {
    let setup = Setup::new("timeout");
    let metrics = metrics_address();
    let metrics_arg = metrics.to_string();
    let (_host, addr) = setup.host("echo", &["--tls-handshake-timeout", "300ms", "--metrics", &metrics_arg]);
    let config = setup.pki.client_config(None);

    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut stalled = TcpStream::connect(addr).unwrap();
    // The start of a handshake record: type, version, and half a length.
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00]).unwrap();
    let mut served = TlsClient::connect(addr, config.clone(), "localhost").unwrap();
    assert_eq!(served.exchange(b"while others stall").unwrap(), b"while others stall");

    for (what, stream) in [("silent", &mut silent), ("stalled", &mut stalled)] {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        let waited = started.elapsed();
        match read {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("{what}: expected the host to close, got {other:?} after {waited:?}"),
        }
        assert!(waited >= Duration::from_millis(250), "{what}: closed after {waited:?}, before the timeout");
        assert!(waited < Duration::from_secs(3), "{what}: closed only after {waited:?}");
    }
    wait_until("timed-out handshakes", 2.0, || handshakes(metrics, "echo", "timeout"));
    assert_eq!(handshakes(metrics, "echo", "failed"), 0.0);

    // The timeout bounds the handshake only: a finished session may idle.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(served.exchange(b"still here").unwrap(), b"still here");
    let mut later = TlsClient::connect(addr, config, "localhost").unwrap();
    assert_eq!(later.exchange(b"and a new one").unwrap(), b"and a new one");
    assert_eq!(handshakes(metrics, "echo", "ok"), 2.0);
    assert_eq!(handshakes(metrics, "echo", "timeout"), 2.0);
    assert_eq!(accepted(metrics, "echo"), 2.0, "the guest heard only of the finished handshakes");
}

/// A certificate `CN=label` for `localhost`, written over the server's
/// files.
fn install(setup: &Setup, label: &str) -> CertificateDer<'static> {
    let issued = setup.pki.server(label, &["localhost"]);
    let (cert, key) = issued.write(&setup.dir, "server");
    assert_eq!((cert, key), (setup.cert.clone(), setup.key.clone()));
    issued.der
}

/// Text with no PEM block in it.
const NOT_PEM: &str = "this is not a certificate\n";

/// PEM that parses as a certificate block but holds no certificate.
const GARBAGE_PEM: &str = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";

/// Reloading certificates (by `reload`, which sends SIGHUP or just waits
/// for `--watch`): new connections get the new certificate while one
/// opened before keeps echoing; broken files are refused in the log and the
/// last good certificate keeps serving.
fn reload_certificates(setup: &Setup, host: &HostProcess, addr: SocketAddr, reload: impl Fn()) {
    let config = setup.pki.client_config(None);
    let served = |what: &str| {
        let client = TlsClient::connect(addr, config.clone(), "localhost");
        client.unwrap_or_else(|e| panic!("{what}: {e}\n{}", host.output())).server_certificate()
    };
    let reloads = "TLS certificates reloaded";
    assert_eq!(served("the first certificate"), setup.served);
    let mut old = TlsClient::connect(addr, config.clone(), "localhost").unwrap();
    assert_eq!(old.exchange(b"before").unwrap(), b"before");
    let second = install(setup, "cert-b");
    reload();
    assert_eq!(host.wait_for_count(reloads, 1, WAIT), 1, "{}", host.output());
    assert_eq!(served("cert B"), second, "a new connection gets the new certificate");
    assert_eq!(old.exchange(b"after the reload").unwrap(), b"after the reload", "the open connection lives on");

    let refused = "TLS reload refused";
    for (count, garbage) in [NOT_PEM, GARBAGE_PEM].into_iter().enumerate() {
        setup.dir.write("server.crt", garbage);
        reload();
        assert_eq!(host.wait_for_count(refused, count + 1, WAIT), count + 1, "{garbage:?}: {}", host.output());
        assert_eq!(served("after a refused reload"), second, "{garbage:?}: the last good certificate serves on");
        assert_eq!(old.exchange(b"still open").unwrap(), b"still open");
    }
    let line = host.wait_for_line(refused, Duration::ZERO).unwrap();
    assert!(line.contains(path_str(&setup.cert)), "the refusal names the file: {line}");
    assert_eq!(host.count_lines(reloads), 1, "{}", host.output());
}

/// SIGHUP reloads the certificate files.
#[test]
fn sighup_reloads_certificates() {
    let setup = Setup::new("sighup");
    let (host, addr) = setup.host("echo", &[]);
    reload_certificates(&setup, &host, addr, || host.signal(Signal::HUP));
}

/// `--watch` reloads the certificate files once they change and hold
/// still, with no signal.
#[test]
fn watch_reloads_changed_certificates() {
    let setup = Setup::new("watch");
    let (host, addr) = setup.host("echo", &["--watch"]);
    reload_certificates(&setup, &host, addr, || {});
    assert!(host.output().contains("TLS files changed"), "{}", host.output());
}

/// Runs `redis-cli` with `args` and then `command`; its status and output.
fn redis_cli(args: &[&str], command: &[&str]) -> (bool, String) {
    let args: Vec<String> = args.iter().chain(command).map(|word| word.to_string()).collect();
    let ran = run("redis-cli", &args, "", Duration::from_secs(30));
    (ran.status.success(), format!("{}{}", ran.stdout, ran.stderr))
}

/// `redis-cli --tls` against the kv example over TLS: SET then GET (two
/// connections) gives the value back. Without `--tls`, or trusting another
/// CA, it gets nothing from the store.
#[test]
fn redis_cli_over_tls() {
    let setup = Setup::new("redis");
    let (host, addr) = setup.host("kv", &[]);
    let port = addr.port().to_string();
    let tls = ["--tls", "--cacert", path_str(&setup.pki.ca_file), "-h", "127.0.0.1", "-p", &port];
    assert_eq!(redis_cli(&tls, &["set", "greeting", "hello over tls"]), (true, "OK\n".into()), "{}", host.output());
    assert_eq!(redis_cli(&tls, &["get", "greeting"]), (true, "hello over tls\n".into()));
    let sni = [&tls[..], &["--sni", "localhost"]].concat();
    assert_eq!(redis_cli(&sni, &["incr", "visits"]), (true, "1\n".into()));

    let (_, plain) = redis_cli(&["-h", "127.0.0.1", "-p", &port], &["get", "greeting"]);
    assert!(!plain.contains("hello over tls"), "plaintext was served: {plain}");
    let other = Pki::new(&setup.dir, "other");
    let (ok, untrusted) =
        redis_cli(&["--tls", "--cacert", path_str(&other.ca_file), "-h", "127.0.0.1", "-p", &port], &["ping"]);
    assert!(!ok || !untrusted.contains("PONG"), "a client trusting another CA got through: {untrusted}");
    assert!(untrusted.contains("certificate verify failed"), "{untrusted}");
}

/// The guest closing after a write: everything written arrives, then
/// `close_notify`. A rustls client reads the probe's 400 KiB and its answer
/// to a clean end, and the echo's copy of 384 KiB after its own
/// `close_notify`; s_client reads the probe's 400 KiB and exits without an
/// error about an unexpected end.
#[test]
fn closing_delivers_everything_then_close_notify() {
    let setup = Setup::new("close");
    let config = setup.pki.client_config(None);
    let big = 400usize << 10;
    let mut expected = vec![b'f'; big];
    expected.extend_from_slice(b"wrote\n");

    let (probe_host, probe) = setup.host("probe", &[]);
    let mut client = TlsClient::connect(probe, config.clone(), "localhost").unwrap();
    client.stream.write_all(b"write-big 400\nclose\n").unwrap();
    client.stream.flush().unwrap();
    let mut received = Vec::new();
    // rustls fails with UnexpectedEof if the socket ends without close_notify.
    client.stream.read_to_end(&mut received).unwrap_or_else(|e| panic!("{e}\n{}", probe_host.output()));
    assert!(received == expected, "{} bytes of {}", received.len(), expected.len());

    let probe_address = probe.to_string();
    let mut args = setup.s_client_args(&probe_address);
    args.extend(["-quiet", "-servername", "localhost"]);
    let mut s_client = SClient::start(&args);
    s_client.send(b"write-big 400\nclose\n").unwrap();
    // -quiet ignores the end of its input: it exits when the host closes.
    s_client.close_input();
    let finished = s_client.finish(Duration::from_secs(30));
    assert!(finished.stdout == expected, "{} bytes of {}", finished.stdout.len(), expected.len());
    assert!(!finished.stderr.to_lowercase().contains("unexpected eof"), "{}", finished.stderr);
    assert!(finished.status.success(), "s_client failed: {}", finished.stderr);

    let (echo_host, echo) = setup.host("echo", &[]);
    let data: Vec<u8> = (0..384u32 << 10).map(|i| (i.wrapping_mul(7) % 251) as u8).collect();
    let mut client = TlsClient::connect(echo, config, "localhost").unwrap();
    // The host holds what the client does not read yet (up to 1 MiB).
    client.stream.write_all(&data).unwrap();
    client.stream.conn.send_close_notify();
    client.stream.flush().unwrap();
    let mut echoed = Vec::new();
    client.stream.read_to_end(&mut echoed).unwrap_or_else(|e| panic!("{e}\n{}", echo_host.output()));
    assert!(echoed == data, "{} bytes of {} echoed", echoed.len(), data.len());
}

/// Over TLS the output cap counts the plaintext the guest writes: a probe
/// flooding a client that does not read is refused with `would-block`,
/// and once the client reads, every byte taken arrives (through rustls's
/// records) followed by the `on-drain` the probe asked for.
#[test]
fn the_output_cap_and_on_drain_hold_over_tls() {
    let setup = Setup::new("cap");
    let (host, addr) = setup.host("probe", &["--write-buffer", "64K", "--output-cap", "256K"]);
    let mut client = TlsClient::connect(addr, setup.pki.client_config(None), "localhost").unwrap();
    assert_eq!(client.ask("room").unwrap(), format!("room {}", 256 << 10));
    assert_eq!(client.ask("watermark 1000").unwrap(), "ok");
    client.stream.write_all(b"flood 64\n").unwrap();
    client.stream.flush().unwrap();
    let line = host.wait_for_line("flooded ", WAIT).unwrap_or_else(|| panic!("no flood result:\n{}", host.output()));
    let mut words = line.split("flooded ").nth(1).unwrap().split_whitespace();
    let (written, code) = (words.next().unwrap().parse::<usize>().unwrap(), words.next().unwrap());
    assert_eq!(code, "would-block", "{line}");
    assert!((256 << 10..64 << 20).contains(&written), "{written} bytes taken");

    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 << 10];
    while !String::from_utf8_lossy(&received[written.min(received.len())..]).contains("drained ") {
        let n = client.stream.read(&mut buffer).unwrap_or_else(|e| panic!("after {} bytes: {e}", received.len()));
        assert!(n > 0, "closed after {} bytes", received.len());
        received.extend_from_slice(&buffer[..n]);
    }
    // The flood, then lines: the probe's `flooded` answer if the host had
    // room for it, and `drained`.
    let floods = received.iter().take_while(|&&b| b == b'f').count();
    let tail = String::from_utf8_lossy(&received[written..]).to_string();
    let answered_too = usize::from(tail.starts_with("flooded "));
    assert_eq!(floods - answered_too, written, "every byte taken arrives, and nothing else before it");
    let queued: usize = tail.lines().find_map(|l| l.strip_prefix("drained ")).unwrap().trim().parse().unwrap();
    assert!(queued <= 1000, "drained with {queued} bytes queued: {tail:?}");
    // Read to the end of the drained line before asking again.
    while !received.ends_with(b"\n") {
        let n = client.stream.read(&mut buffer).unwrap();
        received.extend_from_slice(&buffer[..n]);
    }
    assert_eq!(client.ask("queued").unwrap(), "queued 0");
}

/// TLS on a Unix socket: `openssl s_client -unix` is echoed, and the probe
/// is told both the peer's credentials and the session.
#[test]
fn tls_is_served_on_a_unix_socket() {
    let setup = Setup::new("unix");
    let path = setup.dir.path().join("tls.sock");
    let listen = format!("unix:{}", path.display());
    let cert = ["--tls-cert", path_str(&setup.cert), "--tls-key", path_str(&setup.key)];
    let serve = |guest: &str| {
        let mut args = vec![
            "--component".to_string(),
            path_str(&support::guest(guest)).to_string(),
            "--listen".into(),
            listen.clone(),
        ];
        args.extend(cert.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let host = HostProcess::spawn(&args);
        assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "{}", host.output());
        host
    };
    let args =
        ["-unix", path_str(&path), "-CAfile", path_str(&setup.pki.ca_file), "-brief", "-servername", "localhost"];

    let echo = serve("echo");
    let (answer, stderr) = s_client_line(&args, "over a path");
    assert_eq!(answer.as_deref(), Some("over a path"), "{stderr}\n{}", echo.output());
    assert!(stderr.contains("Verification: OK"), "{stderr}");
    drop(echo);

    let probe = serve("probe");
    let (answer, stderr) = s_client_line(&args, "tls");
    let answer = answer.unwrap_or_else(|| panic!("no answer:\n{stderr}\n{}", probe.output()));
    assert!(answer.starts_with("tls TLSv1.3 ") && answer.contains(" sni=localhost "), "{answer}");
    let (answer, stderr) = s_client_line(&args, "peer");
    let answer = answer.unwrap_or_else(|| panic!("no answer:\n{stderr}"));
    assert!(answer.starts_with("peer unix:(unnamed) pid="), "{answer}");
    assert!(answer.contains(&format!(" uid={} ", rustix::process::getuid().as_raw())), "{answer}");
}
