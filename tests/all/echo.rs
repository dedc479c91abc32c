//! The echo handler over real TCP, in every language it is written in (the
//! Rust guest and the C, Python and JavaScript examples): every byte comes
//! back, in order, for many clients at once, and a client's half-close is
//! answered with all its data and then end of stream.
use crate::support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use evconn_host::policy::Limits;
use evconn_host::wasm::Isolation;
use rand::{Rng, RngCore, SeedableRng};
use support::{TestHost, TestHostBuilder};

/// The same tests, in a module per language (see `support::echo`), each
/// echo served with the default limits but a patient guest timeout.
macro_rules! echo_tests {
    ($($lang:ident),*) => {$(
        mod $lang {
            use super::*;

            fn host(isolation: Isolation) -> TestHostBuilder {
                TestHost::builder(&support::echo(stringify!($lang)))
                    .isolation(isolation)
                    .limits(patient)
            }

            /// 50 concurrent clients with random payloads from 1 byte to 4 MiB
            /// each get their own bytes back, byte for byte, from one shared
            /// instance.
            #[test]
            fn fifty_clients_get_their_bytes_back() {
                fifty_clients(host(Isolation::Shared));
            }

            /// The same echo component passes the same test with an instance
            /// per connection.
            #[test]
            fn fifty_clients_get_their_bytes_back_with_an_instance_each() {
                fifty_clients(host(Isolation::Connection));
            }

            /// A client that writes in small pieces, reading as it goes, sees
            /// every piece come back before it half-closes; then end of stream.
            #[test]
            fn half_close_gets_everything_back_then_end_of_stream() {
                half_close(host(Isolation::Shared));
            }

            /// The echo serves IPv6 clients as well as IPv4 ones.
            #[test]
            fn serves_ipv6_loopback() {
                ipv6(host(Isolation::Shared));
            }
        }
    )*};
}

echo_tests!(rust, c, python, js);

/// A guest timeout for every echo far above the default 1 s. The timeout
/// leaves out the turns a callback waits for after yielding to the reactor,
/// but not the time the operating system gives to other processes: these
/// tests share two cores with builds and other test processes, and a debug
/// host makes fifty Python instances (tens of milliseconds of guest code
/// each) at once.
fn patient(limits: &mut Limits) {
    limits.guest_timeout = Duration::from_secs(10);
}

/// Sends `payload`, half-closes, and reads everything back until end of stream.
fn echo_round(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = stream.try_clone().unwrap();
    std::thread::scope(|scope| {
        let reading = scope.spawn(move || {
            let mut received = Vec::with_capacity(payload.len());
            reader.read_to_end(&mut received).expect("reads to end of stream");
            received
        });
        stream.write_all(payload).expect("writes");
        stream.shutdown(Shutdown::Write).expect("half-closes");
        reading.join().unwrap()
    })
}

fn fifty_clients(host: TestHostBuilder) {
    let host = host.start();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut sizes: Vec<usize> = (0..48).map(|_| rng.random_range(1..=4 << 20)).collect();
    sizes.extend([1, 4 << 20]); // both ends of the range, always
    let payloads: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&size| {
            let mut payload = vec![0u8; size];
            rng.fill_bytes(&mut payload);
            payload
        })
        .collect();

    std::thread::scope(|scope| {
        let clients: Vec<_> = payloads.iter().map(|payload| scope.spawn(|| echo_round(host.addr, payload))).collect();
        for (client, payload) in clients.into_iter().zip(&payloads) {
            let received = client.join().unwrap();
            assert_eq!(received.len(), payload.len(), "length of a {}-byte echo", payload.len());
            assert!(received == *payload, "a {}-byte echo came back altered", payload.len());
        }
    });
}

fn half_close(host: TestHostBuilder) {
    let host = host.start();
    let mut stream = TcpStream::connect(host.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for piece in [&b"hello"[..], b" ", b"world", b"\n"] {
        stream.write_all(piece).unwrap();
        let mut back = vec![0u8; piece.len()];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back, piece);
    }
    stream.write_all(b"tail").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("end of stream, not a reset");
    assert_eq!(rest, b"tail");
}

fn ipv6(host: TestHostBuilder) {
    let host = host.listen("[::1]:0", evconn_host::net::ListenOptions::REUSEABLE).start();
    assert!(host.addr.is_ipv6());
    assert_eq!(echo_round(host.addr, b"over ipv6"), b"over ipv6");
}
