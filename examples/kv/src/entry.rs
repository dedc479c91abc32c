//! What the store holds for one key: the Redis value and, if the key
//! expires, its deadline, in one store value, so that one read gets both
//! and one write sets both.
//!
//! A value that never expires is stored as it is, so that `INCR` can count
//! it with the store's atomic `increment` (which needs a bare decimal
//! integer), unless it starts with [`TAG`]. Any other value is stored as
//! [`TAG`], the deadline (milliseconds since the Unix epoch, 8 bytes, big
//! endian; [`NEVER`] for none) and the value. No bare value starts with
//! [`TAG`], and no UTF-8 text does, so the two never mix up.
use std::borrow::Cow;

/// The first byte of a stored value that carries a deadline.
pub const TAG: u8 = 0xff;

/// A tagged value's header: the tag and the deadline.
const HEADER: usize = 9;

/// The deadline of a tagged value that never expires.
pub const NEVER: u64 = u64::MAX;

/// A key's value and when it is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The Redis value.
    pub value: Vec<u8>,
    /// When the key is gone, in milliseconds since the Unix epoch (the wall
    /// clock, so that every host agrees); `None` if it never is.
    pub deadline: Option<u64>,
}

impl Entry {
    /// Reads a stored value.
    pub fn decode(mut stored: Vec<u8>) -> Entry {
        let Some(deadline) = tagged_deadline(&stored) else { return Entry { value: stored, deadline: None } };
        stored.drain(..HEADER);
        Entry { value: stored, deadline: (deadline != NEVER).then_some(deadline) }
    }

    /// Whether the key still exists at `now`: a key is gone at its deadline.
    pub fn is_live(&self, now: u64) -> bool {
        self.deadline.is_none_or(|deadline| now < deadline)
    }
}

/// When the key whose stored value is `stored` is gone, if it ever is:
/// the header alone is read.
pub fn deadline(stored: &[u8]) -> Option<u64> {
    tagged_deadline(stored).filter(|&deadline| deadline != NEVER)
}

/// The deadline in a tagged value's header ([`NEVER`] included); `None`
/// for a bare value.
fn tagged_deadline(stored: &[u8]) -> Option<u64> {
    let header: [u8; HEADER] = stored.get(..HEADER)?.try_into().expect("HEADER bytes");
    (header[0] == TAG).then(|| u64::from_be_bytes(header[1..].try_into().expect("8 bytes")))
}

/// What the store keeps for `value` with `deadline`: `value` itself if it
/// can be.
pub fn encode(value: &[u8], deadline: Option<u64>) -> Cow<'_, [u8]> {
    if deadline.is_none() && value.first() != Some(&TAG) {
        return Cow::Borrowed(value);
    }
    let mut stored = Vec::with_capacity(HEADER + value.len());
    stored.push(TAG);
    stored.extend_from_slice(&deadline.unwrap_or(NEVER).to_be_bytes());
    stored.extend_from_slice(value);
    Cow::Owned(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: &[u8], deadline: Option<u64>) -> Entry {
        Entry::decode(encode(value, deadline).into_owned())
    }

    /// A value without a deadline is stored as it is (an integer stays an
    /// integer for the store's `increment`); one with a deadline, or one
    /// that starts with the tag, is tagged; each comes back as it was.
    #[test]
    fn values_and_deadlines_round_trip() {
        assert!(matches!(encode(b"42", None), Cow::Borrowed(b"42")));
        assert!(matches!(encode(b"", None), Cow::Borrowed(b"")));
        let tagged = encode(b"42", Some(1_700_000_000_000));
        assert_eq!(tagged[0], TAG);
        assert_eq!(tagged.len(), HEADER + 2);
        for (value, deadline) in [
            (&b"42"[..], None),
            (b"42", Some(1_700_000_000_000)),
            (b"", Some(1)),
            (b"\xff", None),
            (b"\xff\x00\x00", None),
            (b"\xffshort", Some(0)),
            (&[TAG; 20][..], None),
        ] {
            assert_eq!(
                round_trip(value, deadline),
                Entry { value: value.to_vec(), deadline },
                "{value:?} {deadline:?}"
            );
        }
        assert!(matches!(encode(b"\xff", None), Cow::Owned(_)), "a value starting with the tag is tagged");
    }

    /// A key is live before its deadline and gone at it.
    #[test]
    fn a_key_is_gone_at_its_deadline() {
        let entry = Entry { value: b"v".to_vec(), deadline: Some(1000) };
        assert!(entry.is_live(999));
        assert!(!entry.is_live(1000));
        assert!(Entry { value: Vec::new(), deadline: None }.is_live(u64::MAX));
    }
}
