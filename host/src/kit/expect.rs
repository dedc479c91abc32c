//! What a test expects from a connection (exact bytes, a regex, a byte
//! count, end of stream, silence), how received bytes are checked against it, and
//! the failure a report shows when they do not match.
use std::fmt;
use std::time::Duration;

use super::escape::{excerpt, quote};

/// What the next bytes from the peer must be.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// Bytes that a regular expression matches, from the first byte not yet
    /// expected.
    Regex(Pattern),
    /// This many bytes, whatever they are.
    Count(usize),
    /// End of stream, with no bytes before it.
    Closed,
    /// No bytes and no end of stream until the deadline: met when the
    /// deadline passes, so a test can say that a peer has not answered yet.
    Nothing,
}

/// A compiled regular expression and the text it was written as.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    /// `source`, anchored at the first byte not yet expected: bytes before
    /// a match would otherwise pass unchecked.
    anchored: regex::bytes::Regex,
}

impl Expect {
    /// Exactly `bytes`.
    pub fn exact(bytes: impl AsRef<[u8]>) -> Self {
        Expect::Exact(bytes.as_ref().to_vec())
    }

    /// Bytes matched by `pattern` (the `regex` crate's syntax), which must
    /// match from the first byte not yet expected.
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        let anchored = regex::bytes::Regex::new(&format!(r"\A(?:{pattern})"))?;
        Ok(Expect::Regex(Pattern { source: pattern.to_string(), anchored }))
    }

    /// How the expectation reads in a script and a report.
    pub fn describe(&self) -> String {
        match self {
            Expect::Exact(bytes) => quote(bytes),
            Expect::Regex(pattern) => format!("/{}/", pattern.source.replace('/', r"\/")),
            Expect::Count(1) => "1 byte".into(),
            Expect::Count(n) => format!("{n} bytes"),
            Expect::Closed => "end of stream".into(),
            Expect::Nothing => "nothing".into(),
        }
    }

    /// Checks what was `received` so far (and not yet expected); `ended`
    /// tells whether the peer closed its side after it.
    pub(crate) fn check(&self, received: &[u8], ended: bool) -> Check {
        match self {
            Expect::Exact(bytes) => match bytes.iter().zip(received).position(|(a, b)| a != b) {
                Some(at) => Check::Differs { at },
                None if received.len() >= bytes.len() => Check::Met(bytes.len()),
                None => Check::Pending,
            },
            // A pattern may match more once more bytes arrive, and the
            // first match ends the step: patterns say where they end (`\n`).
            Expect::Regex(pattern) => match pattern.anchored.find(received) {
                Some(found) => Check::Met(found.end()),
                None => Check::Pending,
            },
            Expect::Count(n) if received.len() >= *n => Check::Met(*n),
            Expect::Count(_) => Check::Pending,
            Expect::Closed if !received.is_empty() => Check::Differs { at: 0 },
            Expect::Closed if ended => Check::Met(0),
            Expect::Closed => Check::Pending,
            // Only the deadline passing meets it (the client knows time).
            Expect::Nothing if !received.is_empty() => Check::Differs { at: 0 },
            Expect::Nothing => Check::Pending,
        }
    }
}

/// How received bytes stand against an expectation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Met by the first this many bytes.
    Met(usize),
    /// Can no longer be met: the bytes differ at this offset.
    Differs { at: usize },
    /// Not met yet; more bytes or end of stream may decide.
    Pending,
}

/// Why an expectation was not met.
#[derive(Debug)]
pub enum FailureKind {
    /// The bytes differ from the expected ones at this offset (for end of
    /// stream: bytes came first).
    Differs {
        /// The first byte that differs, counted from the first byte not yet
        /// expected.
        at: usize,
    },
    /// Nothing that meets it arrived within the deadline.
    TimedOut(Duration),
    /// The peer closed its side first.
    EndOfStream,
    /// The connection failed (reset, or another socket error).
    Broken(String),
}

/// An expectation that was not met: what was expected, what came instead.
pub struct Failure {
    /// The expectation, as [`Expect::describe`] gives it.
    pub expected: Expect,
    /// What had arrived and was not yet expected when it failed.
    pub received: Vec<u8>,
    /// Why it failed.
    pub kind: FailureKind,
}

impl fmt::Display for Failure {
    /// Two lines: `expected ...` and `received ...`, bytes quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = match self.kind {
            FailureKind::Differs { at } => at,
            _ => 0,
        };
        let expected = match &self.expected {
            Expect::Exact(bytes) => excerpt(bytes, at),
            other => other.describe(),
        };
        let received = if self.received.is_empty() { "nothing".into() } else { excerpt(&self.received, at) };
        match &self.kind {
            FailureKind::Differs { .. } if matches!(self.expected, Expect::Closed) => {
                write!(f, "expected end of stream\nreceived {received} first")
            }
            FailureKind::Differs { .. } if matches!(self.expected, Expect::Nothing) => {
                write!(f, "expected nothing\nreceived {received}")
            }
            FailureKind::Differs { at } => {
                write!(f, "expected {expected}\nreceived {received}, which differs at byte {at}")
            }
            FailureKind::TimedOut(within) => {
                write!(f, "expected {expected} within {within:?}\nreceived {received}, then nothing more in time")
            }
            FailureKind::EndOfStream => write!(f, "expected {expected}\nreceived {received}, then end of stream"),
            FailureKind::Broken(error) => {
                write!(f, "expected {expected}\nreceived {received}, then the connection failed: {error}")
            }
        }
    }
}

/// Shown as the report, so that `.unwrap()` in a test prints it readably.
impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact bytes fail as soon as one differs, and pass once all arrived.
    #[test]
    fn exact_checks_as_bytes_arrive() {
        let expect = Expect::exact("hello");
        assert_eq!(expect.check(b"he", false), Check::Pending);
        assert_eq!(expect.check(b"hx", false), Check::Differs { at: 1 });
        assert_eq!(expect.check(b"hello world", false), Check::Met(5));
    }

    /// A pattern must match from the first byte, and consumes its match.
    #[test]
    fn regex_is_anchored() {
        let expect = Expect::regex(r"uv\n").unwrap();
        assert_eq!(expect.check(b"uv\nmore", false), Check::Met(3));
        assert_eq!(expect.check(b"xuv\n", false), Check::Pending);
        assert_eq!(expect.describe(), r"/uv\n/");
        assert!(Expect::regex("(").is_err());
    }

    /// Counts wait for enough bytes; end of stream wants nothing before it.
    #[test]
    fn count_and_closed() {
        assert_eq!(Expect::Count(3).check(b"ab", false), Check::Pending);
        assert_eq!(Expect::Count(3).check(b"abcd", false), Check::Met(3));
        assert_eq!(Expect::Closed.check(b"", false), Check::Pending);
        assert_eq!(Expect::Closed.check(b"", true), Check::Met(0));
        assert_eq!(Expect::Closed.check(b"x", true), Check::Differs { at: 0 });
    }

    /// Silence is pending until something arrives, which fails it at once.
    #[test]
    fn nothing() {
        assert_eq!(Expect::Nothing.check(b"", false), Check::Pending);
        assert_eq!(Expect::Nothing.check(b"x", false), Check::Differs { at: 0 });
        let failure =
            Failure { expected: Expect::Nothing, received: b"Uryy".to_vec(), kind: FailureKind::Differs { at: 0 } };
        assert_eq!(failure.to_string(), "expected nothing\nreceived \"Uryy\"");
    }

    /// A report shows both sides quoted, and where they differ.
    #[test]
    fn failure_report() {
        let failure = Failure {
            expected: Expect::exact("Uryyb\n"),
            received: b"Hello\n".to_vec(),
            kind: FailureKind::Differs { at: 0 },
        };
        assert_eq!(failure.to_string(), "expected \"Uryyb\\n\"\nreceived \"Hello\\n\", which differs at byte 0");
    }
}
