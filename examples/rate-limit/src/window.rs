//! Fixed windows by the wall clock: which window a moment falls in, the
//! store key that counts a client's lines in it, and which lines of a count
//! are allowed.
//!
//! Windows are numbered by the wall clock (milliseconds since the Unix
//! epoch over the window's length), so every instance and every host with
//! a clock in step counts a client's lines in the same key.
use crate::client::Client;

/// The number of the window `now` falls in.
pub fn index(now_ms: u64, window_ms: u64) -> u64 {
    now_ms / window_ms
}

/// The key that counts `client`'s lines in window `index`: the window
/// first, so that a key says without being read whether its window is over.
pub fn key(index: u64, client: &Client) -> String {
    format!("{index}/{client}")
}

/// Whether `key` counted a window before `current`: a key of another shape
/// is never old.
pub fn is_old(key: &str, current: u64) -> bool {
    key.split_once('/').and_then(|(index, _)| index.parse::<u64>().ok()).is_some_and(|index| index < current)
}

/// The number, within its window, of the first of `lines` lines whose
/// count brought the window's total to `total`; the others follow it.
pub fn first_number(total: u64, lines: u64) -> u64 {
    total.saturating_sub(lines) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A moment falls in the window its milliseconds say; windows start at
    /// the epoch.
    #[test]
    fn windows_by_the_wall_clock() {
        assert_eq!(index(59_999, 60_000), 0);
        assert_eq!(index(60_000, 60_000), 1);
        assert_eq!(index(1_750_000_000_000, 60_000), 29_166_666);
    }

    /// Keys carry their window, which says which are over, for v4, v6 and
    /// Unix clients alike; keys of other shapes are left alone.
    #[test]
    fn keys_say_their_window() {
        let v4 = Client::Ip("192.0.2.7".parse().unwrap());
        let v6 = Client::Ip("2001:db8::1".parse().unwrap());
        let user = Client::User(1000);
        assert_eq!(key(42, &v4), "42/192.0.2.7");
        assert_eq!(key(42, &v6), "42/2001:db8::1");
        assert_eq!(key(42, &user), "42/uid:1000");
        assert!(is_old(&key(41, &v6), 42));
        assert!(is_old(&key(41, &user), 42));
        assert!(!is_old(&key(42, &v6), 42));
        assert!(!is_old(&key(43, &v4), 42));
        for other in ["", "41", "x/1.2.3.4", "-1/1.2.3.4"] {
            assert!(!is_old(other, 42), "{other:?}");
        }
    }

    /// Three lines that take a window's count to 7 are its 5th, 6th and
    /// 7th.
    #[test]
    fn lines_are_numbered_from_the_total() {
        assert_eq!(first_number(7, 3), 5);
        assert_eq!(first_number(1, 1), 1);
    }
}
