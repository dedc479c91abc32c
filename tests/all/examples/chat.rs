//! chat: every line goes to every other client and never back to its
//! sender; joins and departures are announced; a client that leaves, however
//! it leaves, does not disturb the others; and under `--isolation
//! connection` nobody sees anybody, which is why the example needs the
//! shared model.
use std::time::Duration;

use evconn_host::wasm::Isolation;

use super::Client;
use crate::support::{self, TestHost};

/// Joins the room at `addr`: returns the client once it has read its
/// welcome, which says how many were there before it.
fn join(addr: std::net::SocketAddr, others_before: usize) -> Client {
    let mut client = Client::connect(addr);
    let others = match others_before {
        1 => "1 other".to_string(),
        n => format!("{n} others"),
    };
    assert_eq!(client.read_line(), format!("* welcome {}, {others} here\n", client.addr()));
    client
}

/// Three clients join one after the other, each announced to those already
/// there.
fn room_of_three(addr: std::net::SocketAddr) -> [Client; 3] {
    let mut a = join(addr, 0);
    let mut b = join(addr, 1);
    assert_eq!(a.read_line(), format!("* {} joined\n", b.addr()));
    let c = join(addr, 2);
    for member in [&mut a, &mut b] {
        assert_eq!(member.read_line(), format!("* {} joined\n", c.addr()));
    }
    [a, b, c]
}

/// Each of three clients says something; each hears the other two, prefixed
/// with their addresses, and never itself.
#[test]
fn three_clients_hear_each_other_but_not_themselves() {
    let host = TestHost::start(&support::guest("chat"));
    let mut room = room_of_three(host.addr);
    for speaker in 0..3 {
        let said = format!("hello from number {speaker}\r\n");
        room[speaker].send(&said);
        let from = room[speaker].addr();
        for (listener, member) in room.iter_mut().enumerate().filter(|(i, _)| *i != speaker) {
            assert_eq!(member.read_line(), format!("[{from}] {said}"), "client {listener} hears {speaker}");
        }
    }
    for (i, member) in room.iter_mut().enumerate() {
        member.assert_silent(&format!("client {i} hears nothing more, not even itself"));
    }
}

/// Two lines in one write and a line in two pieces arrive as whole lines.
#[test]
fn lines_are_forwarded_whole() {
    let host = TestHost::start(&support::guest("chat"));
    let [mut a, mut b, _c] = room_of_three(host.addr);
    a.send("one\ntwo\nthr");
    let from = a.addr();
    assert_eq!(b.read_line(), format!("[{from}] one\n"));
    assert_eq!(b.read_line(), format!("[{from}] two\n"));
    b.assert_silent("half a line is not forwarded");
    a.send("ee\n");
    assert_eq!(b.read_line(), format!("[{from}] three\n"));
}

/// A client that closes and one that resets its connection both leave the
/// room: the others are told, keep talking, and hear nothing from them.
#[test]
fn clients_leaving_do_not_disturb_the_others() {
    let host = TestHost::start(&support::guest("chat"));
    let [mut a, mut b, mut c] = room_of_three(host.addr);
    let mut d = join(host.addr, 3);
    for member in [&mut a, &mut b, &mut c] {
        assert_eq!(member.read_line(), format!("* {} joined\n", d.addr()));
    }
    let (c_addr, d_addr) = (c.addr(), d.addr());
    drop(c); // end of stream: c read everything it was sent, so a FIN
    assert_eq!(d.read_line(), format!("* {c_addr} left\n"));
    socket2::SockRef::from(&d.stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(d); // a reset
    for member in [&mut a, &mut b] {
        assert_eq!(member.read_line(), format!("* {c_addr} left\n"));
        assert_eq!(member.read_line(), format!("* {d_addr} left\n"));
    }

    a.send("anyone left?\n");
    assert_eq!(b.read_line(), format!("[{}] anyone left?\n", a.addr()));
    b.send("me\n");
    assert_eq!(a.read_line(), format!("[{}] me\n", b.addr()));
    a.assert_silent("a hears no echo");
}

/// A line past 16 KiB closes its sender's connection; the others hear it
/// leave and carry on.
#[test]
fn a_line_too_long_closes_only_its_sender() {
    let host = TestHost::start(&support::guest("chat"));
    let [mut a, mut b, mut c] = room_of_three(host.addr);
    let c_addr = c.addr();
    c.send(format!("{}\n", "x".repeat(16 * 1024 + 1)));
    assert!(c.read_until_closed().is_empty(), "the sender hears nothing before it is closed");
    for member in [&mut a, &mut b] {
        assert_eq!(member.read_line(), format!("* {c_addr} left\n"));
    }
    a.send("still talking\n");
    assert_eq!(b.read_line(), format!("[{}] still talking\n", a.addr()));
}

/// With an instance per connection each client is alone in its own room:
/// the reason the example needs `--isolation shared`.
#[test]
fn with_an_instance_per_connection_nobody_hears_anybody() {
    let host = TestHost::builder(&support::guest("chat")).isolation(Isolation::Connection).start();
    let mut a = join(host.addr, 0);
    let mut b = join(host.addr, 0);
    a.send("hello?\n");
    b.assert_silent("another instance's client");
    a.assert_silent("the sender");
}
