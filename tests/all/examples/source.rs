//! source, the bulk sender paced by `on-drain`: a client that reads slowly
//! while asking for far more than the host may hold for it holds the host
//! to its output cap, and what it reads is the pattern, in order.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{self, procfs::status_kb};

const PATTERN: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/";
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// A reader taking about 1 MiB/s for 4 s of a 1 GiB stream: the host's
/// resident memory grows by less than its output cap (4 MiB) and 3 MiB
/// more, and every byte read is the pattern's.
#[test]
fn a_slow_reader_holds_the_host_to_its_output_cap() {
    let (host, addr) = support::spawn_listening(&support::guest("source"), &[]);
    let pid = host.pid();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let baseline = status_kb(pid, "VmRSS");
    stream.write_all(format!("{}\n", 1u64 << 30).as_bytes()).unwrap();
    let started = Instant::now();
    let mut received = 0usize;
    let mut peak = baseline;
    let mut buffer = vec![0u8; 16 * KIB];
    while started.elapsed() < Duration::from_secs(4) {
        // 16 KiB every 16 ms: about 1 MiB/s.
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "the stream ended after {received} bytes");
        for (i, &byte) in buffer[..n].iter().enumerate() {
            assert_eq!(byte, PATTERN[(received + i) % PATTERN.len()], "byte {} differs", received + i);
        }
        received += n;
        peak = peak.max(status_kb(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(16));
    }
    let growth_kb = peak.saturating_sub(baseline);
    eprintln!("read {received} bytes in 4 s; host VmRSS {baseline} kB, peak {peak} kB (+{growth_kb} kB)");
    assert!(received > MIB && received < 8 * MIB, "read {received} bytes at about 1 MiB/s");
    assert!(growth_kb < 7 * 1024, "the host grew by {growth_kb} kB, past its 4 MiB cap and 3 MiB");
    drop(host);
}
