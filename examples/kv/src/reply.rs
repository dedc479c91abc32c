//! Replies in RESP2, the protocol `redis-cli` and `redis-benchmark` speak.

/// One reply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`.
    Status(&'static str),
    /// `-ERR ...`: the first word is the error's kind (`ERR`, `OOM`, ...).
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$5\r\nhello`.
    Bulk(Vec<u8>),
    /// `$-1`: no such key.
    Null,
    /// `*2` and its elements.
    Array(Vec<Reply>),
}

impl Reply {
    /// An error of kind `ERR`.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    /// A bulk string of `text`.
    pub fn text(text: &str) -> Reply {
        Reply::Bulk(text.as_bytes().to_vec())
    }

    /// Appends the reply's RESP2 form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Status(status) => line(out, b'+', status.as_bytes()),
            // A newline inside an error would end it early and desynchronise
            // the client: Redis turns them into spaces too.
            Reply::Error(message) => line(out, b'-', message.replace(['\r', '\n'], " ").as_bytes()),
            Reply::Integer(n) => line(out, b':', decimal(&mut [0; 20], *n)),
            Reply::Bulk(bytes) => {
                line(out, b'$', decimal(&mut [0; 20], bytes.len() as i64));
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Null => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(elements) => {
                line(out, b'*', decimal(&mut [0; 20], elements.len() as i64));
                for element in elements {
                    element.encode(out);
                }
            }
        }
    }
}

/// `n` in decimal, written into the end of `buffer` (every reply has a
/// length or a number: this spares an allocation each).
fn decimal(buffer: &mut [u8; 20], n: i64) -> &[u8] {
    let mut at = buffer.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buffer[at] = b'-';
    }
    &buffer[at..]
}

fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: Reply) -> String {
        let mut out = Vec::new();
        reply.encode(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// Each kind of reply in its RESP2 form.
    #[test]
    fn replies_encode_as_resp2() {
        assert_eq!(encoded(Reply::Status("OK")), "+OK\r\n");
        assert_eq!(encoded(Reply::err("bad")), "-ERR bad\r\n");
        assert_eq!(encoded(Reply::Integer(-7)), ":-7\r\n");
        assert_eq!(encoded(Reply::text("a\r\nb")), "$4\r\na\r\nb\r\n");
        assert_eq!(encoded(Reply::Null), "$-1\r\n");
        assert_eq!(encoded(Reply::Array(vec![Reply::Integer(1), Reply::Array(vec![])])), "*2\r\n:1\r\n*0\r\n");
    }

    /// Numbers are written as Rust writes them, the extremes included.
    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, -7, 10, 1_000_000, i64::MAX, i64::MIN] {
            assert_eq!(encoded(Reply::Integer(n)), format!(":{n}\r\n"));
        }
    }

    /// An error message cannot break out of its line.
    #[test]
    fn newlines_in_errors_become_spaces() {
        assert_eq!(encoded(Reply::err("unknown command 'a\r\n+OK'")), "-ERR unknown command 'a  +OK'\r\n");
    }
}
