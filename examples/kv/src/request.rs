//! Requests as clients send them in RESP2: arrays of bulk strings (what
//! `redis-cli`, `redis-benchmark` and client libraries send) and inline
//! commands (what a person types in telnet: `SET greeting "hello world"`).
//!
//! Pure functions over bytes, so they are tested on the build machine.
use std::fmt;

/// The most bytes one request may take on the wire, and so the most a
/// connection's unparsed input may hold.
pub const MAX_REQUEST: usize = 1 << 20;

/// The longest inline command, and the longest length line of an array
/// (Redis's limit for both).
pub const MAX_INLINE: usize = 64 * 1024;

/// A request's arguments, the command name first. Empty for requests Redis
/// ignores (`*0`, an empty line).
pub type Args = Vec<Vec<u8>>;

/// Input that is not RESP: the server answers with the message and closes
/// the connection, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// An inline command without its newline after `MAX_INLINE` bytes.
    TooBigInline,
    /// An array length line without its end after `MAX_INLINE` bytes.
    TooBigCount,
    /// An array length that is not a number or too large.
    InvalidCount,
    /// An array element that is not a bulk string.
    ExpectedBulk(u8),
    /// A bulk string length that is not a number, negative or too large.
    InvalidBulkLength,
    /// A bulk string not followed by `\r\n`.
    MissingCrlf,
    /// An inline command with a quote that does not close, or a closing
    /// quote followed by something other than a space.
    UnbalancedQuotes,
    /// A whole request longer than `MAX_REQUEST`.
    TooBigRequest,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self {
            ProtocolError::TooBigInline => f.write_str("too big inline request"),
            ProtocolError::TooBigCount => f.write_str("too big mbulk count string"),
            ProtocolError::InvalidCount => f.write_str("invalid multibulk length"),
            ProtocolError::ExpectedBulk(got) => write!(f, "expected '$', got '{}'", char::from(*got)),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::MissingCrlf => f.write_str("expected \\r\\n after a bulk string"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::TooBigRequest => write!(f, "request longer than {MAX_REQUEST} bytes"),
        }
    }
}

/// The first request in `input`: its arguments and how many bytes it took,
/// or `None` if it has not arrived whole yet.
pub fn parse(input: &[u8]) -> Result<Option<(Args, usize)>, ProtocolError> {
    let parsed = match input.first() {
        None => return Ok(None),
        Some(b'*') => parse_array(input)?,
        Some(_) => parse_inline(input)?,
    };
    if parsed.is_none() && input.len() > MAX_REQUEST {
        return Err(ProtocolError::TooBigRequest);
    }
    Ok(parsed)
}

/// `*<count>\r\n` then `count` times `$<length>\r\n<bytes>\r\n`.
fn parse_array(input: &[u8]) -> Result<Option<(Args, usize)>, ProtocolError> {
    let Some((count, mut at)) = line(input, 1) else {
        return if input.len() > MAX_INLINE { Err(ProtocolError::TooBigCount) } else { Ok(None) };
    };
    let count = number(count).ok_or(ProtocolError::InvalidCount)?;
    // Each element takes at least 6 bytes (`$0\r\n\r\n`).
    if count > (MAX_REQUEST / 6) as i64 {
        return Err(ProtocolError::InvalidCount);
    }
    // Redis ignores arrays of zero or fewer elements.
    let count = count.max(0) as usize;
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let Some(&kind) = input.get(at) else { return Ok(None) };
        if kind != b'$' {
            return Err(ProtocolError::ExpectedBulk(kind));
        }
        let Some((length, start)) = line(input, at + 1) else {
            return if input.len() - at > MAX_INLINE { Err(ProtocolError::InvalidBulkLength) } else { Ok(None) };
        };
        let length = number(length)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= MAX_REQUEST)
            .ok_or(ProtocolError::InvalidBulkLength)?;
        let end = start + length;
        let Some(ending) = input.get(end..end + 2) else { return Ok(None) };
        if ending != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        args.push(input[start..end].to_vec());
        at = end + 2;
    }
    Ok(Some((args, at)))
}

/// One line of words separated by spaces, ended by `\n` or `\r\n`.
fn parse_inline(input: &[u8]) -> Result<Option<(Args, usize)>, ProtocolError> {
    let Some(newline) = input.iter().position(|&b| b == b'\n') else {
        return if input.len() > MAX_INLINE { Err(ProtocolError::TooBigInline) } else { Ok(None) };
    };
    if newline > MAX_INLINE {
        return Err(ProtocolError::TooBigInline);
    }
    let text = input[..newline].strip_suffix(b"\r").unwrap_or(&input[..newline]);
    Ok(Some((split_words(text)?, newline + 1)))
}

/// The line that starts at `from` and ends with `\r\n`, and where the next
/// one starts.
fn line(input: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = input.get(from..)?;
    let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
    Some((&rest[..end], from + end + 2))
}

/// A decimal number in the form Redis accepts for lengths.
fn number(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Splits an inline command into words as `redis-cli` and Redis do: spaces
/// separate words; `"..."` may hold spaces and the escapes `\n`, `\r`, `\t`,
/// `\b`, `\a`, `\xHH` and `\<any>`; `'...'` may hold spaces and `\'`.
fn split_words(text: &[u8]) -> Result<Args, ProtocolError> {
    let mut words = Vec::new();
    let mut at = 0;
    loop {
        while text.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        let Some(&first) = text.get(at) else { return Ok(words) };
        let mut word = Vec::new();
        if first == b'"' || first == b'\'' {
            at += 1;
            loop {
                let &byte = text.get(at).ok_or(ProtocolError::UnbalancedQuotes)?;
                at += 1;
                match byte {
                    _ if byte == first => break,
                    b'\\' if first == b'"' => {
                        let (unescaped, used) = unescape(&text[at..])?;
                        word.push(unescaped);
                        at += used;
                    }
                    b'\\' if text.get(at) == Some(&b'\'') => {
                        word.push(b'\'');
                        at += 1;
                    }
                    _ => word.push(byte),
                }
            }
            // As in Redis, a closing quote must end the word.
            if text.get(at).is_some_and(|b| !b.is_ascii_whitespace()) {
                return Err(ProtocolError::UnbalancedQuotes);
            }
        } else {
            while let Some(&byte) = text.get(at).filter(|b| !b.is_ascii_whitespace()) {
                word.push(byte);
                at += 1;
            }
        }
        words.push(word);
    }
}

/// The byte that the escape at the start of `rest` stands for (a `\` inside
/// double quotes came just before), and how many bytes the escape takes.
fn unescape(rest: &[u8]) -> Result<(u8, usize), ProtocolError> {
    let hex = rest
        .get(1..3)
        .filter(|digits| digits.iter().all(u8::is_ascii_hexdigit))
        .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok());
    match (rest.first(), hex) {
        (None, _) => Err(ProtocolError::UnbalancedQuotes),
        (Some(b'x'), Some(byte)) => Ok((byte, 3)),
        (Some(&escaped), _) => {
            let byte = match escaped {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 0x08,
                b'a' => 0x07,
                // Anything else stands for itself, `\xZZ` included, as in Redis.
                other => other,
            };
            Ok((byte, 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Args {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn parsed(input: &str) -> (Args, usize) {
        parse(input.as_bytes()).expect("valid").expect("whole")
    }

    /// An array of bulk strings, as redis-cli sends it.
    #[test]
    fn array_of_bulk_strings() {
        let input = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n";
        assert_eq!(parsed(input), (args(&["SET", "key", "va\r\nl"]), input.len()));
    }

    /// Every proper prefix of a request is incomplete, not an error.
    #[test]
    fn a_request_split_anywhere_waits_for_the_rest() {
        let input = b"*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n";
        for cut in 0..input.len() {
            assert_eq!(parse(&input[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(input).unwrap().unwrap().1, input.len());
    }

    /// Requests that follow are left for the next call.
    #[test]
    fn pipelined_requests_come_out_one_at_a_time() {
        let input = b"*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let mut at = 0;
        let mut seen = Vec::new();
        while let Some((request, used)) = parse(&input[at..]).unwrap() {
            seen.push(request);
            at += used;
        }
        assert_eq!(at, input.len());
        assert_eq!(seen, [args(&["PING"]), args(&["PING"]), args(&["GET", "k"])]);
    }

    /// Inline commands: spaces, CRLF or LF, quotes and escapes.
    #[test]
    fn inline_commands_split_like_redis() {
        assert_eq!(parsed("PING\r\n"), (args(&["PING"]), 6));
        assert_eq!(parsed("  set  a   b \n"), (args(&["set", "a", "b"]), 14));
        assert_eq!(parsed("SET k \"hello world\"\n").0, args(&["SET", "k", "hello world"]));
        assert_eq!(parsed("ECHO \"a\\tb\\x41\\\"\"\n").0, args(&["ECHO", "a\tbA\""]));
        assert_eq!(parsed("ECHO 'it\\'s' \"\"\n").0, args(&["ECHO", "it's", ""]));
        assert_eq!(parsed("ECHO \"\\xZZ\"\n").0, args(&["ECHO", "xZZ"]));
        assert_eq!(parsed("\r\n"), (Args::new(), 2), "an empty line is an empty request");
    }

    /// Arrays of zero or fewer elements are empty requests, as Redis skips them.
    #[test]
    fn empty_arrays_are_empty_requests() {
        assert_eq!(parsed("*0\r\n"), (Args::new(), 4));
        assert_eq!(parsed("*-1\r\n"), (Args::new(), 5));
    }

    /// Malformed input is an error with Redis's message, at once.
    #[test]
    fn malformed_input_is_a_protocol_error() {
        let cases: [(&[u8], ProtocolError); 7] = [
            (b"*x\r\n", ProtocolError::InvalidCount),
            (b"*999999999\r\n", ProtocolError::InvalidCount),
            (b"*1\r\n:1\r\n", ProtocolError::ExpectedBulk(b':')),
            (b"*1\r\n$-1\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$99999999\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$1\r\nabc\r\n", ProtocolError::MissingCrlf),
            (b"SET k \"open\n", ProtocolError::UnbalancedQuotes),
        ];
        for (input, error) in cases {
            assert_eq!(parse(input), Err(error), "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(parse(b"ECHO \"a\"b\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(ProtocolError::ExpectedBulk(b':').to_string(), "Protocol error: expected '$', got ':'");
    }

    /// Input that could grow without bound is refused once past its limit.
    #[test]
    fn endless_input_is_refused_past_its_limit() {
        let inline = vec![b'a'; MAX_INLINE + 1];
        assert_eq!(parse(&inline), Err(ProtocolError::TooBigInline));
        assert_eq!(parse(&inline[..MAX_INLINE]), Ok(None), "up to the limit it waits");

        let mut count = b"*".to_vec();
        count.resize(MAX_INLINE + 2, b'1');
        assert_eq!(parse(&count), Err(ProtocolError::TooBigCount));

        // Many elements, each small, that add up to more than a request may hold.
        let mut many = format!("*{}\r\n", MAX_REQUEST / 6).into_bytes();
        while many.len() <= MAX_REQUEST {
            many.extend_from_slice(b"$1\r\nx\r\n");
        }
        assert_eq!(parse(&many), Err(ProtocolError::TooBigRequest));
    }
}
