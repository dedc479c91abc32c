//! A test guest that exposes the whole `evconn:listener` world to tests as a
//! line protocol: each line a client sends is a command, answered by one line.
//!
//! | command | answer |
//! | --- | --- |
//! | `ping` | `pong` |
//! | `whoami` | `conn ID peer ADDR local ADDR listener ID fd FD` |
//! | `peer` | `peer ADDR`, as `on-accept` got it: `127.0.0.1:5555`, `[::1]:5555`, or `unix:PATH` (`unix:(unnamed)` without one) then ` pid=N uid=N gid=N` |
//! | `tls` | `tls VERSION SUITE sni=NAME alpn=PROTO cert=SUBJECT;FINGERPRINT` (`-` for what is absent), or `none` on a plain connection |
//! | `operators` | `operators ID:FD:ADDR ...` |
//! | `bind ADDR BACKLOG OPT,OPT` (`-` for none; ADDR an IP address and port, or `unix:PATH`) | `bound ID FD ADDR` or `error CODE` |
//! | `enable ID`, `disable ID` | `ok` or `error CODE` |
//! | `callback ID on|off` | `ok` |
//! | `free ID` (drops a bound listener's handle) | `ok` |
//! | `count` | connections this instance accepted |
//! | `held` | `held N`: connections this instance holds, accepted or dialed, that have not ended |
//! | `largest-read` | `largest N`: the most bytes one `on-data` call of this instance got |
//! | `send CONN TEXT` (through the kept owned handle) | `ok` or `error CODE` |
//! | `pause`, `pause CONN`, `resume CONN` | `ok` |
//! | `shutdown-write` | `ok`, then end of stream |
//! | `close` | nothing: the connection closes |
//! | `fail` | nothing: the callback returns an error |
//! | `trap` | nothing: the guest panics |
//! | `spin` | nothing: the callback loops forever |
//! | `busy MS` | `done` after computing for MS milliseconds |
//! | `work N` | `worked` after N steps of arithmetic: a fixed amount of CPU, however long the wait between turns |
//! | `grow MIB` | `grew` or `refused`: tries to reserve MIB more mebibytes |
//! | `hog` | nothing: allocates until memory runs out (an abort) |
//! | `exit` | `ok`, then the host exits |
//! | `env` | `env N`: how many environment variables and arguments the guest sees |
//! | `read PATH` | `read N` bytes, or `denied TEXT` |
//! | `connect ADDR` | `connected`, or `denied TEXT`: a TCP connection through WASI sockets, which the host grants none |
//! | `getenv KEY` | `env KEY=VALUE`, or `env KEY unset` |
//! | `dial ADDR` | `dialing CONN` or `error CODE`: an outbound connection (`outbound.connect`) |
//! | `dial-name NAME PORT` | `dialing CONN` or `error CODE`: the same by name (`outbound.connect-name`) |
//! | `dials` | `dials N`: outbound connections this instance holds |
//!
//! What happens to an outbound connection is told to the connection that
//! dialed it: `outbound CONN connected PEER`, `outbound CONN error CODE`,
//! `outbound CONN data TEXT` (each line it sends), `outbound CONN end`. Write
//! to it with `send CONN TEXT`.
//! | `say TEXT` | `said`, after printing TEXT to standard output |
//! | `timer MS [EVERY_MS]` | `timer ID` or `error CODE`; each time it fires, `fired ID` to this connection |
//! | `timer-spin MS` | `timer ID`: a timer whose callback never returns |
//! | `timer-fail MS EVERY_MS` | `timer ID`: a repeating timer whose callback returns an error |
//! | `cancel ID` | `cancelled true` or `cancelled false` |
//! | `timers` | `timers N`: how many started and not yet ended, and `fired N` in all, as this instance counts them |
//! | `fill-timers` | `filled N CODE`: starts timers until refused |
//! | `queued` | `queued N`: output the host still holds for this connection |
//! | `room` | `room N`: what a write would take now |
//! | `watermark LOW` (`-` for none) | `ok`; each `on-drain` then writes `drained QUEUED` |
//! | `flood MIB` | `flooded N CODE`: writes MIB mebibytes in 64 KiB pieces, until one is refused |
//! | `write-big KIB` | `wrote` or `error CODE`: one write of KIB kibibytes |
//! | `input OFFSET LEN` | the bytes OFFSET..OFFSET+LEN of what this `on-data` call got, written with `write-input`, then `input ok` or `input error CODE` |
//! | `input-later MS` | `timer ID`; when it fires, `write-input` outside `on-data`, and `fired-input ok` or `fired-input error CODE` |
//! | `flood-forever` | nothing: writes 1 MiB pieces without end, ignoring refusals |
//! | `kv-open NAME` | `opened` or `error CODE`: opens a store bucket, kept by name |
//! | `kv-close NAME` | `closed true` or `closed false` |
//! | `kv-set NAME KEY VALUE`, `kv-del NAME KEY` | `ok` or `error CODE [TEXT]` |
//! | `kv-get NAME KEY` | `value VALUE`, `none` or `error ...` |
//! | `kv-exists NAME KEY` | `exists true` or `exists false` |
//! | `kv-incr NAME KEY DELTA` | `value N`: atomics.increment, DELTA signed |
//! | `kv-keys NAME` | `keys N pages P`: every key, listed page by page |
//! | `kv-fill NAME SIZE` | `filled N error ...`: sets keys of SIZE bytes until one is refused |
//! | `kv-get-many NAME KEY COUNT` | `got N`: batch.get-many of KEY named COUNT times |
//! | `kv-set-many NAME KEY VALUE ...` | `ok` or `error ...` |
//!
//! Accept errors are only logged (`accept error ERRNO (TEXT)`), so tests can
//! watch the host back off and recover.
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;

use std::time::Duration;

use evconn_guest::timers::{self, TimerId};
use evconn_guest::{
    AcceptError, Address, Connection, ConnectionEvent, ErrorCode, Handler, ListenOptions, Listener, TlsInfo,
    UnixAddress, operator_listeners, outbound, reactor,
};

#[derive(Default)]
struct Probe {
    /// Owned handles kept from `on-accept`, by connection id.
    connections: HashMap<u64, Connection>,
    /// Unfinished command lines, by connection id.
    partial: HashMap<u64, Vec<u8>>,
    /// The listener each connection arrived on: (id, fd).
    arrived_on: HashMap<u64, (u64, i32)>,
    /// The peer each connection's `on-accept` was given.
    peers: HashMap<u64, Address>,
    /// Listeners this instance bound, by id.
    bound: HashMap<u64, Listener>,
    accepted: u64,
    /// The most bytes one `on-data` call got.
    largest_read: usize,
    /// Memory `grow` reserved, kept so it stays in use.
    kept: Vec<Vec<u8>>,
    /// What each pending timer does when it fires, by id.
    timers: HashMap<TimerId, TimerJob>,
    /// Timers fired so far.
    fired: u64,
    /// Outbound connections, by id: the connection that dialed each.
    dialed_by: HashMap<u64, u64>,
    /// Store buckets opened with `kv-open`.
    buckets: store::Buckets,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy)]
enum TimerJob {
    /// Writes `fired ID` to this connection; `repeats` keeps it pending.
    Report { conn: u64, repeats: bool },
    /// Never returns.
    Spin,
    /// Returns an error.
    Fail,
    /// Calls `write-input` on this connection, outside `on-data`, and
    /// writes what it returned.
    Input { conn: u64 },
}

impl Handler for Probe {
    fn on_accept(&mut self, listener: &Listener, conn: Connection, peer: Address) -> Result<(), String> {
        self.accepted += 1;
        self.arrived_on.insert(conn.id(), (listener.id(), listener.fd()));
        self.peers.insert(conn.id(), peer);
        self.connections.insert(conn.id(), conn);
        Ok(())
    }

    fn on_data(&mut self, conn: &Connection, data: Vec<u8>) -> Result<(), String> {
        if self.dialed_by.contains_key(&conn.id()) {
            let text = String::from_utf8_lossy(&data).into_owned();
            for line in text.lines() {
                self.tell_dialer(conn.id(), &format!("data {line}"));
            }
            return Ok(());
        }
        self.largest_read = self.largest_read.max(data.len());
        let mut buffer = self.partial.remove(&conn.id()).unwrap_or_default();
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if let Some(reply) = self.command(conn, &line)? {
                conn.write(format!("{reply}\n").as_bytes()).map_err(|e| e.to_string())?;
            }
        }
        self.partial.insert(conn.id(), buffer);
        Ok(())
    }

    fn on_event(&mut self, conn: &Connection, event: ConnectionEvent) -> Result<(), String> {
        if self.dialed_by.contains_key(&conn.id()) {
            let news = match event {
                ConnectionEvent::Connected => {
                    let peer = Address::from(conn.peer_address());
                    self.tell_dialer(conn.id(), &format!("connected {peer}"));
                    return Ok(());
                }
                ConnectionEvent::Error(code) => format!("error {}", code.name()),
                ConnectionEvent::EndOfStream => "end".to_string(),
                ConnectionEvent::Timeout => "timeout".to_string(),
            };
            self.tell_dialer(conn.id(), &news);
            self.dialed_by.remove(&conn.id());
            self.forget(conn.id());
            conn.close();
            return Ok(());
        }
        if let ConnectionEvent::Error(code) = event {
            eprintln!("connection {} failed: {code}", conn.id());
        }
        self.forget(conn.id());
        conn.close();
        Ok(())
    }

    fn on_accept_error(&mut self, _listener: &Listener, error: AcceptError) {
        eprintln!("accept error {} ({})", error.errno, error.description);
    }

    fn on_timer(&mut self, timer: TimerId) -> Result<(), String> {
        self.fired += 1;
        match self.timers.get(&timer).copied() {
            Some(TimerJob::Report { conn, repeats }) => {
                if !repeats {
                    self.timers.remove(&timer);
                }
                match self.connections.get(&conn) {
                    Some(conn) => conn.write(format!("fired {timer}\n").as_bytes()).map_err(|e| e.to_string()),
                    // The connection is gone; the timer went on firing.
                    None => {
                        println!("timer {timer} fired for connection {conn}, which is gone");
                        Ok(())
                    }
                }
            }
            Some(TimerJob::Spin) => loop {
                std::hint::spin_loop();
            },
            Some(TimerJob::Fail) => Err(format!("timer {timer} asked to fail")),
            Some(TimerJob::Input { conn }) => {
                self.timers.remove(&timer);
                let Some(conn) = self.connections.get(&conn) else { return Ok(()) };
                let outcome = match conn.write_input(0, 1) {
                    Ok(()) => "ok".to_string(),
                    Err(code) => format!("error {}", code.name()),
                };
                conn.write(format!("fired-input {outcome}\n").as_bytes()).map_err(|e| e.to_string())
            }
            None => Err(format!("timer {timer} is not one of ours")),
        }
    }

    fn on_drain(&mut self, conn: &Connection) -> Result<(), String> {
        conn.write(format!("drained {}\n", conn.queued()).as_bytes()).map_err(|e| e.to_string())
    }
}

impl Probe {
    fn forget(&mut self, id: u64) {
        self.connections.remove(&id);
        self.partial.remove(&id);
        self.arrived_on.remove(&id);
        self.peers.remove(&id);
    }

    /// Starts a timer that does `job`; its answer.
    fn start_timer(&mut self, after: &str, every: Option<&str>, job: TimerJob) -> Result<String, String> {
        let ms = |text: &str| text.parse::<u64>().map(Duration::from_millis).map_err(|e| format!("bad duration: {e}"));
        let every = every.map(ms).transpose()?;
        Ok(match timers::start(ms(after)?, every) {
            Ok(id) => {
                self.timers.insert(id, job);
                format!("timer {id}")
            }
            Err(code) => format!("error {}", code.name()),
        })
    }

    fn listener(&self, id: &str) -> Option<Listener> {
        let id: u64 = id.parse().ok()?;
        if self.bound.contains_key(&id) {
            return None;
        }
        operator_listeners().into_iter().find(|l| l.id() == id)
    }

    /// Runs one command; `Ok(None)` sends no answer, `Err` fails the callback.
    fn command(&mut self, conn: &Connection, line: &str) -> Result<Option<String>, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(answer) = self.buckets.command(&words) {
            return answer.map(Some);
        }
        let answer = match words.as_slice() {
            ["ping"] => "pong".to_string(),
            ["whoami"] => {
                let (listener, fd) = self.arrived_on.get(&conn.id()).copied().unwrap_or((0, -1));
                format!(
                    "conn {} peer {} local {} listener {listener} fd {fd}",
                    conn.id(),
                    Address::from(conn.peer_address()),
                    Address::from(conn.local_address())
                )
            }
            // What `on-accept` was given, which for an outbound connection
            // (no `on-accept`) is nothing: then the connection's own word.
            ["peer"] => match self.peers.get(&conn.id()) {
                Some(peer) => format!("peer {peer}"),
                None => format!("peer {}", Address::from(conn.peer_address())),
            },
            ["tls"] => conn.tls().map_or_else(|| "none".to_string(), |tls| describe_tls(&tls)),
            ["operators"] => {
                let all: Vec<String> = operator_listeners()
                    .iter()
                    .map(|l| {
                        let address = l.local_address().map(|a| Address::from(a).to_string());
                        format!("{}:{}:{}", l.id(), l.fd(), address.unwrap_or_else(|e| e.to_string()))
                    })
                    .collect();
                format!("operators {}", all.join(" "))
            }
            ["bind", address, backlog, options] => {
                let address = match address.strip_prefix("unix:") {
                    Some(path) => Address::Unix(UnixAddress { path: path.to_string(), credentials: None }),
                    None => Address::Ip(address.parse().map_err(|e| format!("bad address: {e}"))?),
                };
                let backlog: i32 = backlog.parse().map_err(|e| format!("bad backlog: {e}"))?;
                match Listener::bind(&address.into(), parse_options(options)?, backlog) {
                    Ok(listener) => {
                        let local = listener.local_address().map_err(|e| e.to_string())?;
                        let answer = format!("bound {} {} {}", listener.id(), listener.fd(), Address::from(local));
                        self.bound.insert(listener.id(), listener);
                        answer
                    }
                    Err(code) => format!("error {}", code.name()),
                }
            }
            [verb @ ("enable" | "disable"), id] => {
                let result = with_listener(self, id, |l| if *verb == "enable" { l.enable() } else { l.disable() });
                match result {
                    Some(Ok(())) => "ok".to_string(),
                    Some(Err(code)) => format!("error {}", code.name()),
                    None => "error no-such-listener".to_string(),
                }
            }
            ["callback", id, state] => match with_listener(self, id, |l| l.set_accept_callback(*state == "on")) {
                Some(()) => "ok".to_string(),
                None => "error no-such-listener".to_string(),
            },
            ["free", id] => {
                let id: u64 = id.parse().map_err(|e| format!("bad id: {e}"))?;
                match self.bound.remove(&id) {
                    Some(listener) => {
                        drop(listener);
                        "ok".to_string()
                    }
                    None => "error no-such-listener".to_string(),
                }
            }
            ["count"] => self.accepted.to_string(),
            ["held"] => format!("held {}", self.connections.len()),
            ["largest-read"] => format!("largest {}", self.largest_read),
            ["say", text @ ..] => {
                println!("{}", text.join(" "));
                "said".to_string()
            }
            ["send", id, text @ ..] => {
                let id: u64 = id.parse().map_err(|e| format!("bad id: {e}"))?;
                match self.connections.get(&id) {
                    Some(other) => match other.write(format!("{}\n", text.join(" ")).as_bytes()) {
                        Ok(()) => "ok".to_string(),
                        Err(code) => format!("error {}", code.name()),
                    },
                    None => "error no-such-connection".to_string(),
                }
            }
            ["pause"] => {
                conn.pause_reading();
                "ok".to_string()
            }
            ["pause", id] => {
                let id: u64 = id.parse().map_err(|e| format!("bad id: {e}"))?;
                match self.connections.get(&id) {
                    Some(other) => {
                        other.pause_reading();
                        "ok".to_string()
                    }
                    None => "error no-such-connection".to_string(),
                }
            }
            ["resume", id] => {
                let id: u64 = id.parse().map_err(|e| format!("bad id: {e}"))?;
                match self.connections.get(&id) {
                    Some(other) => {
                        other.resume_reading();
                        "ok".to_string()
                    }
                    None => "error no-such-connection".to_string(),
                }
            }
            ["shutdown-write"] => {
                conn.write(b"ok\n").map_err(|e| e.to_string())?;
                conn.shutdown_write().map_err(|e| e.to_string())?;
                return Ok(None);
            }
            ["close"] => {
                self.forget(conn.id());
                conn.close();
                return Ok(None);
            }
            ["fail"] => return Err("asked to fail".to_string()),
            ["trap"] => panic!("asked to trap"),
            ["write-outside-memory"] => {
                write_outside_memory(conn.handle());
                "written".to_string()
            }
            ["spin"] => loop {
                std::hint::spin_loop();
            },
            ["busy", ms] => {
                let ms: u64 = ms.parse().map_err(|e| format!("bad duration: {e}"))?;
                let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                "done".to_string()
            }
            ["work", steps] => {
                let steps: u64 = steps.parse().map_err(|e| format!("bad step count: {e}"))?;
                let mut state = 1u64;
                for _ in 0..steps {
                    // black_box keeps the loop from being folded away.
                    state = std::hint::black_box(state.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                std::hint::black_box(state);
                "worked".to_string()
            }
            ["grow", mib] => {
                let mib: usize = mib.parse().map_err(|e| format!("bad size: {e}"))?;
                let mut block: Vec<u8> = Vec::new();
                match block.try_reserve_exact(mib << 20) {
                    Ok(()) => {
                        // Touch every page so the memory is really used.
                        block.resize(mib << 20, 1);
                        self.kept.push(block);
                        "grew".to_string()
                    }
                    Err(_) => "refused".to_string(),
                }
            }
            ["hog"] => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                }
            }
            ["env"] => format!("env {}", std::env::vars_os().count() + std::env::args_os().count()),
            ["read", path] => match std::fs::read(path) {
                Ok(bytes) => format!("read {}", bytes.len()),
                Err(e) => format!("denied {e}"),
            },
            ["connect", address] => {
                let address: SocketAddr = address.parse().map_err(|e| format!("bad address: {e}"))?;
                match std::net::TcpStream::connect(address) {
                    Ok(_) => "connected".to_string(),
                    Err(e) => format!("denied {e}"),
                }
            }
            ["getenv", key] => match std::env::var(key) {
                Ok(value) => format!("env {key}={value}"),
                Err(_) => format!("env {key} unset"),
            },
            ["dial", address] => {
                let address: SocketAddr = address.parse().map_err(|e| format!("bad address: {e}"))?;
                self.dialed(conn, outbound::connect(address))
            }
            ["dial-name", name, port] => {
                let port: u16 = port.parse().map_err(|e| format!("bad port: {e}"))?;
                self.dialed(conn, outbound::connect_name(name, port))
            }
            ["dials"] => format!("dials {}", self.dialed_by.len()),
            ["exit"] => {
                reactor::loop_exit();
                "ok".to_string()
            }
            ["timer", after, every @ ..] => {
                let job = TimerJob::Report { conn: conn.id(), repeats: !every.is_empty() };
                self.start_timer(after, every.first().copied(), job)?
            }
            ["timer-spin", after] => self.start_timer(after, None, TimerJob::Spin)?,
            ["timer-fail", after, every] => self.start_timer(after, Some(every), TimerJob::Fail)?,
            ["input-later", after] => self.start_timer(after, None, TimerJob::Input { conn: conn.id() })?,
            ["input", offset, length] => {
                let offset = offset.parse().map_err(|e| format!("bad offset: {e}"))?;
                let length = length.parse().map_err(|e| format!("bad length: {e}"))?;
                match conn.write_input(offset, length) {
                    Ok(()) => "input ok".to_string(),
                    Err(code) => format!("input error {}", code.name()),
                }
            }
            ["cancel", id] => {
                let id: TimerId = id.parse().map_err(|e| format!("bad id: {e}"))?;
                self.timers.remove(&id);
                format!("cancelled {}", timers::cancel(id))
            }
            ["timers"] => format!("timers {} fired {}", self.timers.len(), self.fired),
            ["fill-timers"] => {
                let mut started = 0;
                loop {
                    match timers::start(Duration::from_secs(3600), None) {
                        Ok(id) => {
                            self.timers.insert(id, TimerJob::Report { conn: conn.id(), repeats: false });
                            started += 1;
                        }
                        Err(code) => break format!("filled {started} {}", code.name()),
                    }
                }
            }
            ["queued"] => format!("queued {}", conn.queued()),
            ["room"] => format!("room {}", conn.write_room()),
            ["watermark", low] => {
                let low = if *low == "-" { None } else { Some(low.parse().map_err(|e| format!("bad size: {e}"))?) };
                conn.set_drain_watermark(low);
                "ok".to_string()
            }
            ["flood", mib] => {
                let mib: u64 = mib.parse().map_err(|e| format!("bad size: {e}"))?;
                let piece = vec![b'f'; 64 << 10];
                let mut written = 0u64;
                let code = loop {
                    if written == mib << 20 {
                        break "done".to_string();
                    }
                    match conn.write(&piece) {
                        Ok(()) => written += piece.len() as u64,
                        Err(code) => break code.name().to_string(),
                    }
                };
                // The answer may not fit behind the flood: say it in the log too.
                println!("flooded {written} {code}");
                match conn.write(format!("flooded {written} {code}\n").as_bytes()) {
                    Ok(()) | Err(ErrorCode::WouldBlock) => {}
                    Err(e) => return Err(e.to_string()),
                }
                return Ok(None);
            }
            ["write-big", kib] => {
                let kib: usize = kib.parse().map_err(|e| format!("bad size: {e}"))?;
                match conn.write(&vec![b'f'; kib << 10]) {
                    Ok(()) => "wrote".to_string(),
                    Err(code) => format!("error {}", code.name()),
                }
            }
            ["flood-forever"] => {
                let piece = vec![b'f'; 1 << 20];
                loop {
                    let _ = conn.write(&piece);
                }
            }
            _ => format!("error unknown-command {line:?}"),
        };
        Ok(Some(answer))
    }
}

impl Probe {
    /// Keeps an outbound connection `conn` asked for; what to answer.
    fn dialed(&mut self, conn: &Connection, dialed: Result<Connection, ErrorCode>) -> String {
        match dialed {
            Ok(outbound) => {
                let id = outbound.id();
                self.dialed_by.insert(id, conn.id());
                self.connections.insert(id, outbound);
                format!("dialing {id}")
            }
            Err(code) => format!("error {}", code.name()),
        }
    }

    /// Tells the connection that dialed `outbound` what happened to it.
    fn tell_dialer(&self, outbound: u64, news: &str) {
        let dialer = self.dialed_by.get(&outbound).and_then(|dialer| self.connections.get(dialer));
        if let Some(dialer) = dialer {
            let _ = dialer.write(format!("outbound {outbound} {news}\n").as_bytes());
        }
    }
}

/// Runs `f` on the listener named by `id`: one this instance bound, or one
/// of the operator's.
fn with_listener<R>(probe: &Probe, id: &str, f: impl FnOnce(&Listener) -> R) -> Option<R> {
    let numeric: u64 = id.parse().ok()?;
    match probe.bound.get(&numeric) {
        Some(listener) => Some(f(listener)),
        None => probe.listener(id).map(|l| f(&l)),
    }
}

/// One line for `tls`: every field, `-` for one that is absent; the
/// certificate comes last, as its subject may hold spaces.
fn describe_tls(tls: &TlsInfo) -> String {
    let or_dash = |field: &Option<String>| field.clone().unwrap_or_else(|| "-".to_string());
    let cert = tls.peer_certificate.as_ref().map(|cert| format!("{};{}", cert.subject, cert.fingerprint_sha256));
    format!(
        "tls {} {} sni={} alpn={} cert={}",
        tls.version,
        tls.cipher_suite,
        or_dash(&tls.server_name),
        or_dash(&tls.alpn_protocol),
        cert.unwrap_or_else(|| "-".to_string())
    )
}

fn parse_options(text: &str) -> Result<ListenOptions, String> {
    let mut options = ListenOptions::empty();
    if text == "-" {
        return Ok(options);
    }
    for name in text.split(',') {
        let option = match name {
            "leave-sockets-blocking" => ListenOptions::LEAVE_SOCKETS_BLOCKING,
            "close-on-free" => ListenOptions::CLOSE_ON_FREE,
            "close-on-exec" => ListenOptions::CLOSE_ON_EXEC,
            "reuseable" => ListenOptions::REUSEABLE,
            "threadsafe" => ListenOptions::THREADSAFE,
            "disabled" => ListenOptions::DISABLED,
            "deferred-accept" => ListenOptions::DEFERRED_ACCEPT,
            "reuseable-port" => ListenOptions::REUSEABLE_PORT,
            "bind-ipv6-only" => ListenOptions::BIND_IPV6_ONLY,
            other => return Err(format!("unknown option {other:?}")),
        };
        options = options | option;
    }
    Ok(options)
}

evconn_guest::export_handler!(Probe);

/// Calls the `write` import directly, as the SDK never would, with a list
/// that runs past the end of linear memory: the host must trap the guest
/// rather than read outside it.
#[cfg(target_arch = "wasm32")]
fn write_outside_memory(handle: u32) {
    #[link(wasm_import_module = "evconn:listener/connection@0.2.0")]
    unsafe extern "C" {
        #[link_name = "[method]connection.write"]
        fn raw_write(conn: i32, data: i32, len: i32, result: i32);
    }
    let mut result = [0u32; 2];
    let past_the_end = (core::arch::wasm32::memory_size(0) * 65536) as i32 - 16;
    unsafe { raw_write(handle as i32, past_the_end, 1 << 16, result.as_mut_ptr() as i32) };
}

/// A guest runs on wasm32 only; a native build of it (clippy's) has no
/// linear memory to write past.
#[cfg(not(target_arch = "wasm32"))]
fn write_outside_memory(_handle: u32) {
    unreachable!("guests run on wasm32")
}
