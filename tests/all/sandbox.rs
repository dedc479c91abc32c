//! What a guest is denied: the host grants WASI preview 2 with nothing in
//! it, so a guest sees no environment, opens no file and makes no outbound
//! connection, under either isolation model.
use crate::support;

use std::net::TcpListener;
use std::time::Duration;

use evconn_host::wasm::Isolation;
use support::{Probe, TestHost};

fn check_denials(isolation: Isolation) {
    let host = TestHost::builder(&support::guest("probe")).isolation(isolation).start();
    let mut probe = Probe::connect(host.addr);

    assert_eq!(probe.ask("env"), "env 0", "the guest sees environment variables or arguments");

    for path in ["/etc/hostname", "/proc/self/status", "."] {
        let answer = probe.ask(&format!("read {path}"));
        assert!(answer.starts_with("denied"), "the guest read {path}: {answer}");
    }

    // A listener the guest would reach if it could connect out.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let answer = probe.ask(&format!("connect {}", target.local_addr().unwrap()));
    assert!(answer.starts_with("denied"), "the guest connected out: {answer}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(target.accept().is_err(), "a connection from the guest reached the target");

    // Denials are errors the guest handles, not traps: the connection lives on.
    assert_eq!(probe.ask("ping"), "pong");
}

/// Under the shared model the guest gets no environment, files or sockets.
#[test]
fn shared_instance_is_denied_environment_files_and_sockets() {
    check_denials(Isolation::Shared);
}

/// Under the per-connection model the guest gets no environment, files or sockets.
#[test]
fn per_connection_instance_is_denied_environment_files_and_sockets() {
    check_denials(Isolation::Connection);
}
