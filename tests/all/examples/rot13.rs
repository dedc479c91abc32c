//! rot13: whole lines come back rot13-encoded with their own line endings,
//! however TCP splits or joins them; a line past 16 KiB closes its
//! connection; many clients share one instance without mixing their lines.
use std::io::Write;

use rand::{Rng, SeedableRng};

use super::Client;
use crate::support::{self, TestHost};

/// The longest line the example accepts.
const MAX_LINE: usize = 16 * 1024;

/// rot13 by table, independently of the example's arithmetic.
fn rot13(text: &str) -> String {
    const PLAIN: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const ROTATED: &[u8] = b"NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm";
    text.chars().map(|c| PLAIN.find(c).map_or(c, |i| char::from(ROTATED[i]))).collect()
}

fn host() -> TestHost {
    TestHost::start(&support::guest("rot13"))
}

/// A line sent in three pieces, each read by the host on its own (nothing
/// comes back until the line ends), comes back whole, once.
#[test]
fn a_line_split_across_reads_comes_back_whole() {
    let host = host();
    let mut client = Client::connect(host.addr);
    client.send("Hello, ");
    client.assert_silent("half a line");
    client.send("World");
    client.assert_silent("most of a line");
    client.send("!\n");
    assert_eq!(client.read_line(), "Uryyb, Jbeyq!\n");
    client.assert_silent("after the one answer");
}

/// A hundred lines in one write come back in order, and a partial line
/// after them waits for its end.
#[test]
fn many_lines_in_one_read_come_back_in_order() {
    let host = host();
    let mut client = Client::connect(host.addr);
    let lines: Vec<String> = (0..100).map(|i| format!("line {i} of the Quick Brown Fox\n")).collect();
    client.send(format!("{}and the rest", lines.concat()));
    for line in &lines {
        assert_eq!(client.read_line(), rot13(line));
    }
    client.assert_silent("a partial line");
    client.send(" of it\n");
    assert_eq!(client.read_line(), "naq gur erfg bs vg\n");
}

/// `\r\n` endings come back as `\r\n`, `\n` as `\n`, even when the `\r` and
/// the `\n` arrive in different reads.
#[test]
fn crlf_line_endings_are_kept() {
    let host = host();
    let mut client = Client::connect(host.addr);
    let sent = "Telnet\r\nnetcat\nempty:\r\n\r\n";
    client.send(sent);
    assert_eq!(client.read_exact(sent.len()), b"Gryarg\r\nargpng\nrzcgl:\r\n\r\n");
    client.send("split\r");
    client.assert_silent("a line ended by a lone \\r");
    client.send("\n");
    assert_eq!(client.read_exact(7), b"fcyvg\r\n");
}

/// A line of exactly 16 KiB is answered; one byte more closes the
/// connection (a guest error), whether the line arrives whole or never
/// ends; other clients are served throughout.
#[test]
fn a_line_past_16_kib_closes_its_connection() {
    let host = host();
    let mut bystander = Client::connect(host.addr);

    let mut fits = Client::connect(host.addr);
    fits.send(format!("{}\r\n", "a".repeat(MAX_LINE)));
    assert_eq!(fits.read_line(), format!("{}\r\n", "n".repeat(MAX_LINE)));

    let mut whole = Client::connect(host.addr);
    whole.send(format!("{}\n", "a".repeat(MAX_LINE + 1)));
    assert!(whole.read_until_closed().is_empty(), "no answer to a line past the limit");

    let mut endless = Client::connect(host.addr);
    endless.send("ok\n");
    assert_eq!(endless.read_line(), "bx\n");
    // Keep sending without a newline: the host must close before long.
    let chunk = vec![b'z'; 4096];
    let mut sent = 0;
    while sent <= 4 * MAX_LINE && endless.stream.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    assert!(endless.read_until_closed().is_empty(), "no answer to a line that never ends");

    bystander.send("still here\n");
    assert_eq!(bystander.read_line(), "fgvyy urer\n");
}

/// 20 clients at once, each sending 50 random lines (mixed endings) in
/// random pieces, each get exactly their own lines back, encoded.
#[test]
fn many_clients_get_their_own_lines_back() {
    let host = host();
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..20u64)
            .map(|seed| {
                let addr = host.addr;
                scope.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                    let alphabet: Vec<char> = "abcXYZ019 ,.!?-\t".chars().collect();
                    let lines: Vec<String> = (0..50)
                        .map(|_| {
                            let len = rng.random_range(0..200);
                            let text: String =
                                (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
                            format!("{text}{}", if rng.random_bool(0.5) { "\r\n" } else { "\n" })
                        })
                        .collect();
                    let sent = lines.concat().into_bytes();
                    let mut client = Client::connect(addr);
                    let mut at = 0;
                    while at < sent.len() {
                        let piece = rng.random_range(1..=100).min(sent.len() - at);
                        client.send(&sent[at..at + piece]);
                        at += piece;
                    }
                    let expected = rot13(&lines.concat());
                    let received = client.read_exact(expected.len());
                    assert_eq!(String::from_utf8(received).unwrap(), expected, "client {seed}");
                    client.assert_silent("after every answer");
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
    });
}
