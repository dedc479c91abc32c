//! Bytes as script text and back: the quoted form with escapes that scripts
//! are written in and that failure reports print, so a report can be pasted
//! into a script.

/// The most bytes a report shows of one side; longer data is shown as a
/// window around the place that matters.
const SHOWN: usize = 96;

/// `bytes` quoted as a script would write them: printable ASCII as is,
/// `\n \r \t \0 \\ \"` for those, `\xNN` for every other byte.
pub fn quote(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() + 2);
    text.push('"');
    for &byte in bytes {
        match byte {
            b'\n' => text.push_str("\\n"),
            b'\r' => text.push_str("\\r"),
            b'\t' => text.push_str("\\t"),
            b'\0' => text.push_str("\\0"),
            b'\\' => text.push_str("\\\\"),
            b'"' => text.push_str("\\\""),
            b' '..=b'~' => text.push(byte as char),
            _ => text.push_str(&format!("\\x{byte:02x}")),
        }
    }
    text.push('"');
    text
}

/// `bytes` quoted for a report: whole when short, else the part around byte
/// `at` with how much was left out on either side.
pub fn excerpt(bytes: &[u8], at: usize) -> String {
    if bytes.len() <= SHOWN {
        return quote(bytes);
    }
    let start = at.saturating_sub(SHOWN / 3).min(bytes.len());
    let end = (start + SHOWN).min(bytes.len());
    let mut text = String::new();
    if start > 0 {
        text.push_str(&format!("({start} bytes) "));
    }
    text.push_str(&quote(&bytes[start..end]));
    if end < bytes.len() {
        text.push_str(&format!(" ({} more bytes)", bytes.len() - end));
    }
    text
}

/// The bytes of the text between a script's double quotes: UTF-8 as
/// written, with the escapes [`quote`] makes (and `\'`).
pub fn unquote(body: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buffer = [0; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            continue;
        }
        let byte = match chars.next() {
            Some('n') => b'\n',
            Some('r') => b'\r',
            Some('t') => b'\t',
            Some('0') => b'\0',
            Some('\\') => b'\\',
            Some('"') => b'"',
            Some('\'') => b'\'',
            Some('x') => {
                let digits: String = chars.by_ref().take(2).collect();
                match u8::from_str_radix(&digits, 16) {
                    Ok(byte) if digits.len() == 2 => byte,
                    _ => return Err(format!("\\x needs two hex digits, as in \\x0a, not \\x{digits}")),
                }
            }
            Some(other) => {
                return Err(format!("unknown escape \\{other} (known: \\n \\r \\t \\0 \\\\ \\\" \\' \\xNN)"));
            }
            None => return Err("a string cannot end with a lone \\".into()),
        };
        bytes.push(byte);
    }
    Ok(bytes)
}

/// The bytes written as hex digits in `words` (`68 69 0a` or `68690a`).
pub fn unhex<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for word in words {
        if word.len() % 2 != 0 || !word.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{word:?} is not hex bytes such as 0a or 68690a"));
        }
        for pair in word.as_bytes().chunks(2) {
            // Two ASCII hex digits: valid UTF-8 and a valid number.
            bytes.push(u8::from_str_radix(std::str::from_utf8(pair).expect("ASCII"), 16).expect("hex digits"));
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte survives quoting and unquoting.
    #[test]
    fn quote_and_unquote_round_trip() {
        let every_byte: Vec<u8> = (0..=255).collect();
        let quoted = quote(&every_byte);
        let body = &quoted[1..quoted.len() - 1];
        assert_eq!(unquote(body).unwrap(), every_byte);
        assert_eq!(quote(b"a\"b\\c\r\n\x7f"), r#""a\"b\\c\r\n\x7f""#);
    }

    /// Escapes read as documented; bad ones are refused with a reason.
    #[test]
    fn unquote_escapes() {
        assert_eq!(unquote(r"Hello\r\n\t\0\x41\'é").unwrap(), "Hello\r\n\t\0A'é".as_bytes());
        assert!(unquote(r"\q").unwrap_err().contains("unknown escape \\q"));
        assert!(unquote(r"\x4").unwrap_err().contains("two hex digits"));
        assert!(unquote(r"\xzz").unwrap_err().contains("two hex digits"));
        assert!(unquote("\\").unwrap_err().contains("lone"));
    }

    /// Hex reads in pairs, spaced or not.
    #[test]
    fn unhex_pairs() {
        assert_eq!(unhex(["68", "69", "0A"]).unwrap(), b"hi\n");
        assert_eq!(unhex(["68690a"]).unwrap(), b"hi\n");
        assert!(unhex(["6"]).is_err());
        assert!(unhex(["zz"]).is_err());
    }

    /// Long data is shown around the byte that matters, with what was left out.
    #[test]
    fn excerpt_windows_long_data() {
        let long = vec![b'a'; 1000];
        let shown = excerpt(&long, 500);
        assert!(shown.starts_with("(468 bytes) \""), "{shown}");
        assert!(shown.ends_with("\" (436 more bytes)"), "{shown}");
        assert_eq!(excerpt(b"short", 3), "\"short\"");
    }
}
