//! The shared Python and JavaScript echoes (examples/echo-python,
//! examples/echo-js) at the default `--guest-memory` pass 1 GiB through one
//! connection, and 1 GiB across fifty, with every byte back in order and no
//! trap: their bindings keep every list passed to an import, and the echoes
//! pass none (`write-input`). Between 0.5 and 1 GiB their memory grows by
//! at most a few MiB: not at all for Python; for JavaScript by the small
//! objects each callback leaves to the garbage collector (see the guest
//! guide's limitations), where an echo that kept what it wrote would grow
//! by 512 MiB, and trap long before.
//!
//! Each test prints the instance's memory at 0, 0.5 and 1 GiB echoed (the
//! host's `evconn_guest_memory_bytes`), the figures docs/guest-guide.md
//! quotes.
use crate::support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use evconn_host::wasm::Isolation;
use rand::{RngCore, SeedableRng};
use support::TestHost;

/// What each test streams, in all.
const TOTAL: u64 = 1 << 30;

/// How much an echo's memory may still grow between 0.5 and 1 GiB echoed.
/// Python's stays put once warm; JavaScript's grew by 2 MiB here, the
/// objects each of its callbacks leaves to a garbage collector that runs
/// late (about 1 KiB a callback, 4096 callbacks a GiB at 256 KiB reads).
const SETTLED_GROWTH: u64 = 4 << 20;

/// The bytes a connection sends: a random mebibyte, over and over.
struct Pattern(Vec<u8>);

impl Pattern {
    fn new() -> Self {
        let mut block = vec![0u8; 1 << 20];
        rand::rngs::StdRng::seed_from_u64(0x5eed).fill_bytes(&mut block);
        Pattern(block)
    }

    /// Whether `bytes` are the stream's bytes from `offset` on.
    fn matches(&self, offset: u64, bytes: &[u8]) -> bool {
        let mut at = (offset % self.0.len() as u64) as usize;
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = rest.len().min(self.0.len() - at);
            if rest[..take] != self.0[at..at + take] {
                return false;
            }
            rest = &rest[take..];
            at = 0;
        }
        true
    }

    /// Writes `len` bytes of the stream to `stream`, in 64 KiB writes.
    fn send(&self, stream: &mut TcpStream, len: u64) {
        let mut sent = 0u64;
        while sent < len {
            let at = (sent % self.0.len() as u64) as usize;
            let take = (self.0.len() - at).min(64 << 10).min((len - sent) as usize);
            stream.write_all(&self.0[at..at + take]).expect("writes");
            sent += take as u64;
        }
        stream.shutdown(Shutdown::Write).expect("half-closes");
    }
}

/// Streams `TOTAL` bytes through `connections` connections to the shared
/// echo in `lang`, served with the default limits; checks every byte and
/// the memory, and prints the memory at 0, 0.5 and 1 GiB.
fn stream_a_gibibyte(lang: &str, connections: u64) {
    let host = TestHost::builder(&support::echo(lang)).isolation(Isolation::Shared).start();
    let pattern = Pattern::new();
    let per_connection = TOTAL / connections;
    let echoed = AtomicU64::new(0);
    let streams: Vec<TcpStream> = (0..connections).map(|_| connect(host.addr)).collect();
    // The instance is made for the first connection's on-accept.
    let deadline = Instant::now() + Duration::from_secs(60);
    while host.guest_memory() == 0 {
        assert!(Instant::now() < deadline, "no instance was made");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let mut memory = [host.guest_memory(), 0, 0];
    std::thread::scope(|scope| {
        let clients: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                let (pattern, echoed) = (&pattern, &echoed);
                let mut reader = stream.try_clone().unwrap();
                scope.spawn(move || pattern.send(&mut stream, per_connection));
                scope.spawn(move || {
                    let mut buffer = vec![0u8; 256 << 10];
                    let mut received = 0u64;
                    loop {
                        let n = reader.read(&mut buffer).expect("reads until end of stream");
                        if n == 0 {
                            return received;
                        }
                        assert!(pattern.matches(received, &buffer[..n]), "the echo altered bytes at {received}");
                        received += n as u64;
                        echoed.fetch_add(n as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // Halfway: the memory the echo settled at.
        while echoed.load(Ordering::Relaxed) < TOTAL / 2 && clients.iter().any(|c| !c.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        memory[1] = host.guest_memory();
        for client in clients {
            assert_eq!(client.join().unwrap(), per_connection, "a connection's bytes all came back");
        }
    });
    memory[2] = host.guest_memory();
    let [start, half, end] = memory.map(|bytes| bytes as f64 / f64::from(1 << 20));
    eprintln!(
        "{lang} echo, {connections} connection(s): 1 GiB in {:.1} s; memory {start:.1} MiB at 0, \
         {half:.1} MiB at 0.5 GiB, {end:.1} MiB at 1 GiB",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(host.traps(), 0, "the echo trapped");
    assert!(
        memory[2] <= memory[1] + SETTLED_GROWTH,
        "the echo's memory grew from {half:.1} MiB at 0.5 GiB to {end:.1} MiB at 1 GiB"
    );
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream
}

/// The same tests for each language's echo.
macro_rules! stream_tests {
    ($($lang:ident),*) => {$(
        mod $lang {
            /// 1 GiB through one connection to the shared echo, at the
            /// default --guest-memory: all back, no trap, flat memory.
            #[test]
            fn a_gibibyte_through_one_connection() {
                super::stream_a_gibibyte(stringify!($lang), 1);
            }

            /// 1 GiB across fifty concurrent connections to the shared
            /// echo, at the default --guest-memory: all back, no trap, flat
            /// memory.
            #[test]
            fn a_gibibyte_across_fifty_connections() {
                super::stream_a_gibibyte(stringify!($lang), 50);
            }
        }
    )*};
}

stream_tests!(python, js);
