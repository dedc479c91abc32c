//! Line framing for line-based protocols: bytes arrive in whatever pieces
//! TCP delivers, and a handler wants whole lines.
//!
//! ```
//! use evconn_guest::lines::LineBuffer;
//!
//! let mut lines = LineBuffer::new(1024);
//! lines.push(b"hel").unwrap();
//! assert_eq!(lines.next_line(), None); // not a whole line yet
//! lines.push(b"lo\r\nwor").unwrap();
//! assert_eq!(lines.next_line(), Some(&b"hello\r\n"[..]));
//! assert_eq!(lines.next_line(), None); // "wor" waits for its end
//! ```
use std::fmt;

/// The bytes of one connection that do not yet form a whole line, and the
/// whole lines not yet taken.
///
/// A line ends with `\n` (so `\r\n` works too); [`next_line`](Self::next_line)
/// returns it with its ending, so a handler that answers line for line keeps
/// the client's own line endings. The buffer never holds a line longer than
/// its limit: [`push`](Self::push) refuses one, so a client cannot grow it
/// without bound by never sending a newline.
#[derive(Debug, Clone)]
pub struct LineBuffer {
    /// Bytes received; those before `taken` were returned as lines already.
    bytes: Vec<u8>,
    /// Where the next line starts in `bytes`.
    taken: usize,
    /// The most bytes a line may hold, not counting its `\n` or `\r\n`.
    max_line: usize,
    /// Bytes of the line not ended yet, at the end of `bytes`.
    open_len: usize,
    /// Whether that line ends in `\r` so far (which `\n` may follow).
    open_ends_in_cr: bool,
}

/// A line was longer than the limit of its [`LineBuffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTooLong {
    /// The limit that the line exceeded, in bytes.
    pub max_line: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line longer than {} bytes", self.max_line)
    }
}

impl std::error::Error for LineTooLong {}

/// Lets `?` end a callback on a line that is too long.
impl From<LineTooLong> for String {
    fn from(error: LineTooLong) -> Self {
        error.to_string()
    }
}

impl LineBuffer {
    /// An empty buffer for lines of at most `max_line` bytes, not counting
    /// their `\n` or `\r\n`.
    pub fn new(max_line: usize) -> Self {
        LineBuffer { bytes: Vec::new(), taken: 0, max_line, open_len: 0, open_ends_in_cr: false }
    }

    /// Appends bytes as they arrived.
    ///
    /// # Errors
    /// [`LineTooLong`] if a line, whole or not yet ended, is longer than the
    /// limit. The buffer is then in an unspecified state: the connection
    /// should be closed (returning the error from the callback does that).
    pub fn push(&mut self, data: &[u8]) -> Result<(), LineTooLong> {
        let mut pieces = data.split(|&b| b == b'\n');
        // `split` yields one piece more than there are newlines: the last
        // one is the start (or the continuation) of a line not ended yet.
        let open_piece = pieces.next_back().unwrap_or_default();
        for ended in pieces {
            self.extend_open_line(ended);
            self.check(self.open_len - usize::from(self.open_ends_in_cr))?;
            self.open_len = 0;
            self.open_ends_in_cr = false;
        }
        self.extend_open_line(open_piece);
        // The `\r` may be the first half of a `\r\n` split across reads.
        self.check(self.open_len - usize::from(self.open_ends_in_cr))?;
        // Lines already taken are dropped here rather than in `next_line`,
        // so that taking many lines from one read moves the rest only once.
        self.bytes.drain(..self.taken);
        self.taken = 0;
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    /// The next whole line, with its `\n` or `\r\n`; `None` if no whole line
    /// is waiting.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        let rest = &self.bytes[self.taken..];
        let end = rest.iter().position(|&b| b == b'\n')? + 1;
        let start = self.taken;
        self.taken += end;
        Some(&self.bytes[start..start + end])
    }

    /// How many bytes wait that are not part of a whole line yet.
    pub fn unended_len(&self) -> usize {
        self.open_len
    }

    fn extend_open_line(&mut self, piece: &[u8]) {
        if let Some(&last) = piece.last() {
            self.open_len += piece.len();
            self.open_ends_in_cr = last == b'\r';
        }
    }

    fn check(&self, length: usize) -> Result<(), LineTooLong> {
        if length > self.max_line { Err(LineTooLong { max_line: self.max_line }) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines(buffer: &mut LineBuffer) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = buffer.next_line() {
            lines.push(String::from_utf8(line.to_vec()).unwrap());
        }
        lines
    }

    /// A line split over many pushes comes out whole, once.
    #[test]
    fn a_line_split_across_pushes_comes_out_whole() {
        let mut buffer = LineBuffer::new(100);
        for piece in ["he", "l", "lo wo", "rld\r", "\n"] {
            assert!(all_lines(&mut buffer).is_empty(), "no line before its end");
            buffer.push(piece.as_bytes()).unwrap();
        }
        assert_eq!(all_lines(&mut buffer), ["hello world\r\n"]);
        assert_eq!(buffer.unended_len(), 0);
    }

    /// Many lines in one push come out in order, the unended rest stays.
    #[test]
    fn many_lines_in_one_push_come_out_in_order() {
        let mut buffer = LineBuffer::new(100);
        buffer.push(b"one\ntwo\r\n\nthree\nfo").unwrap();
        assert_eq!(all_lines(&mut buffer), ["one\n", "two\r\n", "\n", "three\n"]);
        assert_eq!(buffer.unended_len(), 2);
        buffer.push(b"ur\n").unwrap();
        assert_eq!(all_lines(&mut buffer), ["four\n"]);
    }

    /// The limit counts a line's bytes without its ending, whether the line
    /// arrives whole or in pieces.
    #[test]
    fn the_limit_counts_bytes_before_the_line_ending() {
        let mut whole = LineBuffer::new(4);
        whole.push(b"abcd\r\nabcd\n").unwrap();
        assert_eq!(whole.push(b"abcde\n"), Err(LineTooLong { max_line: 4 }));

        let mut pieces = LineBuffer::new(4);
        pieces.push(b"ab").unwrap();
        pieces.push(b"cd\r").unwrap(); // the \r may start the ending
        pieces.push(b"\n").unwrap();
        assert_eq!(all_lines(&mut pieces), ["abcd\r\n"]);
        pieces.push(b"abc").unwrap();
        assert!(pieces.push(b"de").is_err(), "an unended line past the limit is refused");
    }

    /// A long line after many short ones is still measured from its start.
    #[test]
    fn lines_are_measured_from_their_own_start() {
        let mut buffer = LineBuffer::new(3);
        buffer.push(b"abc\nab").unwrap();
        assert_eq!(all_lines(&mut buffer), ["abc\n"]);
        buffer.push(b"c\nabc").unwrap();
        assert!(buffer.push(b"d").is_err());
    }
}
