//! kv over TCP: every command and its errors byte for byte as Redis answers
//! them, inline commands, pipelines, requests split anywhere, one store for
//! all clients, and the limits that close a connection.
use super::Client;
use crate::support::{self, TestHost};

/// A request as redis-cli sends it: an array of bulk strings.
pub(super) fn request(args: &[&str]) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        bytes.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    bytes
}

fn host() -> TestHost {
    TestHost::start(&support::guest("kv"))
}

impl Client {
    /// Sends `args` and asserts that the reply is `expected`, exactly.
    pub(super) fn assert_reply(&mut self, args: &[&str], expected: &str) {
        self.send(request(args));
        let reply = self.read_exact(expected.len());
        assert_eq!(String::from_utf8_lossy(&reply), expected, "reply to {args:?}");
    }
}

/// Each command, and each error Redis gives for it, answered as Redis
/// answers, one request at a time.
#[test]
fn every_command_answers_as_redis_does() {
    let host = host();
    let mut client = Client::connect(host.addr);
    let exchanges: &[(&[&str], &str)] = &[
        (&["PING"], "+PONG\r\n"),
        (&["ping", "hello world"], "$11\r\nhello world\r\n"),
        (&["PING", "a", "b"], "-ERR wrong number of arguments for 'ping' command\r\n"),
        (&["ECHO", "line\r\nbreak"], "$11\r\nline\r\nbreak\r\n"),
        (&["ECHO"], "-ERR wrong number of arguments for 'echo' command\r\n"),
        (&["GET", "greeting"], "$-1\r\n"),
        (&["SET", "greeting", "hi"], "+OK\r\n"),
        (&["GET", "greeting"], "$2\r\nhi\r\n"),
        (&["SET", "greeting", "hello", "NX"], "-ERR SET option 'NX' is not supported\r\n"),
        (&["SET", "greeting", "hello", "later"], "-ERR syntax error\r\n"),
        (&["GET", "greeting"], "$2\r\nhi\r\n"),
        (&["SET", "empty", ""], "+OK\r\n"),
        (&["GET", "empty"], "$0\r\n\r\n"),
        (&["SET", "lonely"], "-ERR wrong number of arguments for 'set' command\r\n"),
        (&["EXISTS", "greeting", "empty", "nothing", "greeting"], ":3\r\n"),
        (&["DEL", "greeting", "nothing", "greeting", "empty"], ":2\r\n"),
        (&["EXISTS", "greeting", "empty"], ":0\r\n"),
        (&["DEL"], "-ERR wrong number of arguments for 'del' command\r\n"),
        (&["INCR", "counter"], ":1\r\n"),
        (&["incr", "counter"], ":2\r\n"),
        (&["GET", "counter"], "$1\r\n2\r\n"),
        (&["SET", "word", "ten"], "+OK\r\n"),
        (&["INCR", "word"], "-ERR value is not an integer or out of range\r\n"),
        (&["SET", "padded", " 1"], "+OK\r\n"),
        (&["INCR", "padded"], "-ERR value is not an integer or out of range\r\n"),
        (&["SET", "max", "9223372036854775807"], "+OK\r\n"),
        (&["INCR", "max"], "-ERR increment or decrement would overflow\r\n"),
        (&["GET", "max"], "$19\r\n9223372036854775807\r\n"),
        (&["INCR"], "-ERR wrong number of arguments for 'incr' command\r\n"),
        (&["FLUSHALL"], "-ERR unknown command 'FLUSHALL', with args beginning with: \r\n"),
        (&["nope", "a", "b"], "-ERR unknown command 'nope', with args beginning with: 'a' 'b' \r\n"),
        (&["COMMAND", "DOCS"], "*0\r\n"),
        (&["CONFIG", "GET", "save"], "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
        (&["CONFIG", "GET", "appendonly"], "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"),
        (&["CONFIG", "GET", "maxmemory"], "*0\r\n"),
        (&["HELLO", "3"], "-NOPROTO unsupported protocol version\r\n"),
        (&["CLIENT", "SETNAME", "tests"], "+OK\r\n"),
        (&["SELECT", "0"], "+OK\r\n"),
        (&["SELECT", "1"], "-ERR DB index is out of range\r\n"),
    ];
    for (args, expected) in exchanges {
        client.assert_reply(args, expected);
    }
    client.assert_silent("one reply per request");
}

/// Commands typed in telnet: one line each, `\r\n` or `\n`, quotes for
/// spaces; an empty line gets no reply.
#[test]
fn inline_commands_work_as_typed_in_telnet() {
    let host = host();
    let mut client = Client::connect(host.addr);
    let exchanges = [
        ("PING\r\n", "+PONG\r\n"),
        ("\r\n", ""),
        ("SET greeting \"hello world\"\r\n", "+OK\r\n"),
        ("get greeting\n", "$11\r\nhello world\r\n"),
        ("ECHO 'it\\'s'\r\n", "$4\r\nit's\r\n"),
        ("ECHO \"tab\\there\"\r\n", "$8\r\ntab\there\r\n"),
        ("INCR n\r\n", ":1\r\n"),
    ];
    for (typed, expected) in exchanges {
        client.send(typed);
        assert_eq!(String::from_utf8_lossy(&client.read_exact(expected.len())), expected, "reply to {typed:?}");
    }
    client.assert_silent("no reply to the empty line");
}

/// A thousand requests in one write, mixed with inline ones, are all
/// answered, in order.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let host = host();
    let mut client = Client::connect(host.addr);
    let mut pipeline = Vec::new();
    let mut expected = String::new();
    for i in 1..=250 {
        pipeline.extend(request(&["SET", &format!("key:{i}"), &format!("value {i}")]));
        expected.push_str("+OK\r\n");
        pipeline.extend(request(&["INCR", "hits"]));
        expected.push_str(&format!(":{i}\r\n"));
        pipeline.extend(format!("GET key:{i}\r\n").into_bytes());
        let value = format!("value {i}");
        expected.push_str(&format!("${}\r\n{value}\r\n", value.len()));
        pipeline.extend(request(&["EXISTS", &format!("key:{i}"), "key:0"]));
        expected.push_str(":1\r\n");
    }
    client.send(&pipeline);
    assert_eq!(String::from_utf8(client.read_exact(expected.len())).unwrap(), expected);
    client.assert_silent("one reply per request");
}

/// A request cut in the middle of a length, of a bulk string and of its
/// ending gets no reply until it is whole; one sent a byte at a time, and a
/// 512 KiB value sent in pieces, are answered once whole.
#[test]
fn requests_split_across_reads_are_answered_once_whole() {
    let host = host();
    let mut client = Client::connect(host.addr);
    let set = request(&["SET", "split", "across reads"]);
    for cut in ["*3\r\n$3\r\nSET\r\n$".len(), "*3\r\n$3\r\nSET\r\n$5\r\nspl".len(), set.len() - 1] {
        client.send(&set[..cut]);
        client.assert_silent(&format!("a request cut after {cut} bytes"));
        client.send(&set[cut..]);
        assert_eq!(client.read_exact(5), b"+OK\r\n");
    }

    for byte in request(&["GET", "split"]) {
        client.send([byte]);
    }
    let expected = b"$12\r\nacross reads\r\n";
    assert_eq!(client.read_exact(expected.len()), expected);

    let large: String = (0..512 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let set_large = request(&["SET", "large", &large]);
    for piece in set_large.chunks(10_000) {
        client.send(piece);
    }
    assert_eq!(client.read_exact(5), b"+OK\r\n");
    client.send(request(&["GET", "large"]));
    let expected = format!("${}\r\n{large}\r\n", large.len());
    assert!(client.read_exact(expected.len()) == expected.as_bytes(), "the 512 KiB value comes back whole");
}

/// Every client of the instance sees the same keys.
#[test]
fn clients_share_one_store() {
    let host = host();
    let mut writer = Client::connect(host.addr);
    clients_share_keys(&mut writer, &mut Client::connect(host.addr));
}

/// What `writer` sets and counts, `reader` sees, and counts on from.
pub(super) fn clients_share_keys(writer: &mut Client, reader: &mut Client) {
    writer.assert_reply(&["SET", "shared", "yes"], "+OK\r\n");
    reader.assert_reply(&["GET", "shared"], "$3\r\nyes\r\n");
    reader.assert_reply(&["INCR", "visits"], ":1\r\n");
    writer.assert_reply(&["INCR", "visits"], ":2\r\n");
}

/// QUIT answers OK and closes the connection.
#[test]
fn quit_closes_after_ok() {
    let host = host();
    let mut client = Client::connect(host.addr);
    client.send(request(&["QUIT"]));
    assert_eq!(client.read_until_closed(), b"+OK\r\n");
}

/// Input that is not RESP gets Redis's protocol error, then the connection
/// closes; requests before it in the same read are answered first.
#[test]
fn protocol_errors_are_answered_then_closed() {
    let host = host();
    let cases: [(&[u8], &str); 5] = [
        (b"*1\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$9999999999\r\n", "-ERR Protocol error: invalid bulk length\r\n"),
        (b"SET k \"unbalanced\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"PING\r\n*1\r\n$4\r\nPINGxx", "+PONG\r\n-ERR Protocol error: expected \\r\\n after a bulk string\r\n"),
    ];
    for (input, expected) in cases {
        let mut client = Client::connect(host.addr);
        client.send(input);
        assert_eq!(
            String::from_utf8_lossy(&client.read_until_closed()),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// Input that would grow a connection's buffer without bound is refused
/// once past its limit: an inline command past 64 KiB without a newline, a
/// request past 1 MiB.
#[test]
fn oversized_input_is_refused() {
    let host = host();
    let mut inline = Client::connect(host.addr);
    inline.send(vec![b'a'; 65 * 1024]);
    assert_eq!(inline.read_until_closed(), b"-ERR Protocol error: too big inline request\r\n");

    let mut large = Client::connect(host.addr);
    large.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048576\r\n");
    large.send(vec![b'v'; 1 << 20]);
    assert_eq!(
        String::from_utf8_lossy(&large.read_until_closed()),
        "-ERR Protocol error: request longer than 1048576 bytes\r\n"
    );

    let mut bystander = Client::connect(host.addr);
    bystander.assert_reply(&["EXISTS", "k"], ":0\r\n");
}

/// Replies far larger than the host's output cap for one connection (200
/// pipelined GETs of a 512 KiB value: 100 MiB, against 4 MiB) all arrive:
/// the handler pauses reading while the host holds all it may, and carries
/// on when the client has read some (`on-drain`). A bystander is served
/// meanwhile.
#[test]
fn replies_past_the_output_cap_are_paced_by_the_reader() {
    let host = host();
    let mut client = Client::connect(host.addr);
    client.assert_reply(&["SET", "big", &"b".repeat(512 * 1024)], "+OK\r\n");
    client.send("GET big\r\n".repeat(200));
    let reply = format!("$524288\r\n{}\r\n", "b".repeat(512 * 1024));
    for n in 0..200 {
        let got = client.read_exact(reply.len());
        assert!(got == reply.as_bytes(), "reply {n} differs");
        if n == 100 {
            let mut bystander = Client::connect(host.addr);
            bystander.assert_reply(&["EXISTS", "big"], ":1\r\n");
        }
    }
    client.assert_reply(&["PING"], "+PONG\r\n");
}
