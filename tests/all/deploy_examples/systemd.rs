//! systemd, as far as these tests need it: binds a socket unit's sockets
//! (on loopback, on a port the kernel picks), starts the service's ExecStart
//! on them with the `LISTEN_*` protocol, and sends what ExecReload= and a
//! stop send.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use rustix::process::Signal;
use socket2::{Domain, Socket, Type};

use super::support::HostProcess;
use super::support::activation::spawn_activated;
use super::unit_file::{UnitFile, command_words, time_span};
use super::{example, replace_flag, send_signal};

/// The shipped systemd units.
pub struct Units {
    pub socket: UnitFile,
    pub service: UnitFile,
}

impl Units {
    pub fn load() -> Units {
        Units {
            socket: UnitFile::read(&example("systemd/evconn-echo.socket")),
            service: UnitFile::read(&example("systemd/evconn-echo.service")),
        }
    }

    /// The socket unit's listening sockets, bound as systemd binds them
    /// (SO_REUSEADDR, the unit's backlog), on loopback and a port the
    /// kernel picks: the one change.
    pub fn bind(&self) -> Vec<Socket> {
        const EMULATED: [&str; 4] = ["ListenStream", "BindIPv6Only", "Backlog", "FileDescriptorName"];
        for key in self.socket.keys("Socket") {
            assert!(EMULATED.contains(&key), "[Socket] {key}= is not emulated by this test: teach it");
        }
        let backlog = self
            .socket
            .all("Socket", "Backlog")
            .first()
            .map_or(libc::SOMAXCONN, |n| n.parse().expect("a Backlog= number"));
        let v6_only = self.socket.all("Socket", "BindIPv6Only").first() == Some(&"ipv6-only");
        let specs = self.socket.all("Socket", "ListenStream");
        assert!(!specs.is_empty(), "the socket unit has no ListenStream=");
        specs
            .iter()
            .map(|spec| {
                let address = SocketAddr::new(loopback_for(spec), 0);
                let socket = Socket::new(Domain::for_address(address), Type::STREAM, None).unwrap();
                socket.set_reuse_address(true).unwrap();
                if address.is_ipv6() {
                    socket.set_only_v6(v6_only).unwrap();
                }
                socket.bind(&address.into()).unwrap();
                socket.listen(backlog).unwrap();
                socket
            })
            .collect()
    }

    /// `LISTEN_FDNAMES` for `count` sockets: FileDescriptorName= names them
    /// all; by default each is named after the socket unit.
    pub fn fd_names(&self, count: usize) -> String {
        let name = self.socket.all("Socket", "FileDescriptorName").first().map_or("evconn-echo.socket", |n| n);
        vec![name; count].join(":")
    }

    /// ExecStart= as written, split into words.
    pub fn exec_start(&self) -> Vec<String> {
        command_words(self.service.one("Service", "ExecStart"))
    }

    /// Starts the host on `sockets` as systemd would, with ExecStart's
    /// arguments, the component path replaced by `component` and
    /// `${CACHE_DIRECTORY}` expanded to `cache`.
    pub fn start(&self, sockets: &[Socket], component: &Path, cache: &Path) -> HostProcess {
        let mut words = self.exec_start();
        replace_flag(&mut words, "--component", component.to_str().unwrap());
        for word in &mut words {
            *word = word.replace("${CACHE_DIRECTORY}", cache.to_str().unwrap());
            assert!(!word.contains('$'), "{word}: only ${{CACHE_DIRECTORY}} is expanded by this test");
        }
        let fds: Vec<_> = sockets.iter().map(|s| s.as_raw_fd()).collect();
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        spawn_activated(&fds, &self.fd_names(fds.len()), None, &args)
    }

    /// Does what ExecReload= does: `kill -HUP $MAINPID`.
    pub fn reload(&self, host: &HostProcess) {
        let words = command_words(self.service.one("Service", "ExecReload"));
        let signal = match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            [kill, signal, "$MAINPID"] if kill.ends_with("/kill") => signal_number(signal.trim_start_matches('-')),
            [kill, "-s", signal, "$MAINPID"] if kill.ends_with("/kill") => signal_number(signal),
            other => panic!("ExecReload={other:?} is not emulated by this test"),
        };
        send_signal(host, signal);
    }

    /// Does what `systemctl stop` does first: sends KillSignal= (SIGTERM).
    pub fn stop(&self, host: &HostProcess) {
        let signal = self.service.all("Service", "KillSignal").first().map_or(Signal::TERM, |s| signal_number(s));
        send_signal(host, signal);
    }

    /// How long systemd waits after the stop signal before SIGKILL.
    pub fn timeout_stop(&self) -> Duration {
        time_span(self.service.one("Service", "TimeoutStopSec"))
    }
}

/// The loopback address standing in for a ListenStream= address: IPv4 for
/// a port alone (the dual-stack wildcard) or an IPv4 address, IPv6 for one
/// in brackets.
fn loopback_for(spec: &str) -> IpAddr {
    let (host, port) = spec.rsplit_once(':').unwrap_or(("", spec));
    let port: u16 =
        port.parse().unwrap_or_else(|_| panic!("ListenStream={spec}: only ADDRESS:PORT or PORT is emulated"));
    assert_ne!(port, 0, "ListenStream={spec}");
    if host.starts_with('[') {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        assert!(host.is_empty() || host.parse::<Ipv4Addr>().is_ok(), "ListenStream={spec}: not emulated");
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

fn signal_number(name: &str) -> Signal {
    match name.trim_start_matches("SIG") {
        "HUP" | "1" => Signal::HUP,
        "TERM" | "15" => Signal::TERM,
        "INT" | "2" => Signal::INT,
        other => panic!("signal {other} is not one the host handles"),
    }
}
