//! Socket activation: listening sockets passed the way systemd passes them
//! (descriptors from 3 on, `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`) are
//! served like `--listen` ones, and anything else on those descriptors is
//! refused with a clear error.
use crate::support;

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use support::activation::spawn_activated;

/// Two inherited sockets (IPv4 and IPv6) are served, named in the log, and
/// the default address is not bound.
#[test]
fn inherited_sockets_are_served() {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let (addr4, addr6) = (v4.local_addr().unwrap(), v6.local_addr().unwrap());
    let echo = support::guest("echo");
    let host =
        spawn_activated(&[v4.as_raw_fd(), v6.as_raw_fd()], "web:admin", None, &["--component", echo.to_str().unwrap()]);
    // The host has its own copies now; the test's go.
    drop((v4, v6));
    assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "{}", host.output());
    let named = host.wait_for_line("serving an inherited socket name=web", Duration::from_secs(1));
    assert!(named.is_some_and(|l| l.contains(&addr4.to_string())), "{}", host.output());
    assert!(host.wait_for_line("serving an inherited socket name=admin", Duration::from_secs(1)).is_some());
    assert!(support::echoes(addr4, b"activated"), "the inherited IPv4 socket is not served:\n{}", host.output());
    assert!(support::echoes(addr6, b"activated"), "the inherited IPv6 socket is not served:\n{}", host.output());
    assert_eq!(host.count_lines("0.0.0.0:9876"), 0, "the default address was bound too:\n{}", host.output());
}

/// With `--workers 2` both reactors accept from the one inherited socket.
#[test]
fn workers_share_an_inherited_socket() {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let echo = support::guest("echo");
    let host = spawn_activated(
        &[socket.as_raw_fd()],
        "echo",
        None,
        &["--component", echo.to_str().unwrap(), "--workers", "2"],
    );
    drop(socket);
    assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "{}", host.output());
    assert!(host.wait_for_line("worker=1", Duration::from_secs(5)).is_some(), "no second worker:\n{}", host.output());
    for _ in 0..20 {
        assert!(support::echoes(addr, b"activated"), "not served:\n{}", host.output());
    }
}

/// Variables meant for another process are ignored: the host serves its
/// `--listen` address only.
#[test]
fn sockets_for_another_pid_are_left_alone() {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo = support::guest("echo");
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let host = spawn_activated(
        &[socket.as_raw_fd()],
        "other",
        Some("1"),
        &["--component", echo.to_str().unwrap(), "--listen", &listen],
    );
    assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "{}", host.output());
    assert_eq!(host.count_lines("inherited"), 0, "{}", host.output());
    assert!(support::echoes(listen.parse().unwrap(), b"activated"));
}

/// A descriptor that is not a listening TCP socket (here a file, then a
/// socket that does not listen) stops the host with an error naming it.
#[test]
fn other_descriptors_are_refused() {
    let file = std::fs::File::open(support::guest("echo")).unwrap();
    let connected_to = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(connected_to.local_addr().unwrap()).unwrap();
    let echo = support::guest("echo");
    for (fd, what) in [(file.as_raw_fd(), "a file"), (client.as_raw_fd(), "a connected socket")] {
        let mut host = spawn_activated(&[fd], "bad", None, &["--component", echo.to_str().unwrap()]);
        let status = host.wait_exit(Duration::from_secs(30)).expect("the host exits");
        assert!(!status.success(), "{what} was accepted");
        let output = host.output();
        assert!(
            output.contains("inherited descriptor 3 (bad) is not a listening TCP or Unix stream socket"),
            "{what}:\n{output}"
        );
    }
}

/// An inherited Unix stream socket (a systemd `ListenStream=/path`) is
/// served, and its file, which systemd owns, is left in place at exit.
#[test]
fn an_inherited_unix_socket_is_served_and_its_file_kept() {
    let dir = std::env::temp_dir().join(format!("evconn-activation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("activated.sock");
    let socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let echo = support::guest("echo");
    let mut host = spawn_activated(&[socket.as_raw_fd()], "local", None, &["--component", echo.to_str().unwrap()]);
    drop(socket);
    assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "{}", host.output());
    let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut stream, b"activated\n").unwrap();
    let mut answer = [0u8; 10];
    std::io::Read::read_exact(&mut stream, &mut answer).unwrap();
    assert_eq!(&answer, b"activated\n");
    host.signal(rustix::process::Signal::TERM);
    assert!(host.wait_exit(Duration::from_secs(20)).is_some());
    assert!(path.exists(), "the file belongs to whoever bound it");
}
