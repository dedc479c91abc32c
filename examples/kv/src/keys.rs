//! Redis keys (any bytes) as store keys (strings), losslessly, and the
//! names of the handler's own keys, which no Redis key can take.
//!
//! A Redis key becomes `k:` and the key itself when it is UTF-8 without a
//! `%` (so the store shows it as typed); otherwise each byte that is not
//! part of a UTF-8 character, and each `%`, is written `%HH`. Every store
//! key the handler keeps for itself starts otherwise (`sweep:`).

/// What every store key made from a Redis key starts with.
pub const USER_PREFIX: &str = "k:";

/// The store key of the Redis key `key`.
pub fn store_key(key: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(key)
        && !text.contains('%')
    {
        let mut out = String::with_capacity(USER_PREFIX.len() + text.len());
        out.push_str(USER_PREFIX);
        out.push_str(text);
        return out;
    }
    let mut out = String::from(USER_PREFIX);
    for chunk in key.utf8_chunks() {
        for (at, part) in chunk.valid().split('%').enumerate() {
            if at > 0 {
                out.push_str("%25");
            }
            out.push_str(part);
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The Redis key whose store key is `stored`, or `None` for a key the
/// handler keeps for itself (or one it never wrote).
pub fn redis_key(stored: &str) -> Option<Vec<u8>> {
    let escaped = stored.strip_prefix(USER_PREFIX)?.as_bytes();
    let mut key = Vec::with_capacity(escaped.len());
    let mut at = 0;
    while at < escaped.len() {
        if escaped[at] == b'%' {
            let hex = std::str::from_utf8(escaped.get(at + 1..at + 3)?).ok()?;
            key.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            key.push(escaped[at]);
            at += 1;
        }
    }
    Some(key)
}

/// Whether `stored` is the store key of a Redis key (and not one of the
/// handler's own).
pub fn is_user_key(stored: &str) -> bool {
    stored.starts_with(USER_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UTF-8 keys are kept as typed behind the prefix; `%` and bytes that
    /// are not UTF-8 are escaped; every key comes back as it was.
    #[test]
    fn keys_map_losslessly() {
        let cases: &[(&[u8], &str)] = &[
            (b"greeting", "k:greeting"),
            (b"", "k:"),
            ("caf\u{e9} \u{1f600}".as_bytes(), "k:caf\u{e9} \u{1f600}"),
            (b"100%", "k:100%25"),
            (b"%41", "k:%2541"),
            (b"\xff\xfe", "k:%FF%FE"),
            (b"a\xc3", "k:a%C3"),
            (b"k:sweep:cursor", "k:k:sweep:cursor"),
            (b"\0\r\n", "k:\0\r\n"),
        ];
        for (key, stored) in cases {
            assert_eq!(store_key(key), *stored, "{key:?}");
            assert_eq!(redis_key(stored).as_deref(), Some(*key), "{stored:?}");
            assert!(is_user_key(stored));
        }
    }

    /// No two Redis keys share a store key, whether they are UTF-8 or not,
    /// and the handler's own keys are no Redis key's.
    #[test]
    fn keys_never_collide() {
        let keys: Vec<Vec<u8>> = vec![
            b"%FF".to_vec(),
            b"\xff".to_vec(),
            b"%25".to_vec(),
            b"%".to_vec(),
            b"%%".to_vec(),
            b"\xc3".to_vec(),
            "\u{c3}".as_bytes().to_vec(),
            b"sweep:cursor".to_vec(),
        ];
        let stored: std::collections::HashSet<String> = keys.iter().map(|key| store_key(key)).collect();
        assert_eq!(stored.len(), keys.len(), "{stored:?}");
        for own in ["sweep:cursor", "sweep:tick:17"] {
            assert!(!is_user_key(own) && redis_key(own).is_none(), "{own}");
        }
    }

    /// A store key cut in the middle of an escape is no Redis key's.
    #[test]
    fn broken_escapes_are_refused() {
        assert_eq!(redis_key("k:%F"), None);
        assert_eq!(redis_key("k:%ZZ"), None);
    }
}
