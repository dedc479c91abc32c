//! Durations and sizes as an operator writes them, in flags, the config
//! file and test scripts: `500ms`, `2s`, `1m`; `65536`, `64K`, `16M`.
use std::time::Duration;

/// Parses a duration: a number with `ms`, `s` or `m`, or seconds alone.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 =
        number.trim().parse().map_err(|_| format!("{text:?} is not a duration such as 500ms, 2s or 1m"))?;
    if !(0.0..=1e9).contains(&value) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Parses a size in bytes: a number with `K`, `M` or `G` (powers of 1024),
/// or bytes alone.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let (number, shift) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 10),
        Some((i, 'M' | 'm')) => (&text[..i], 20),
        Some((i, 'G' | 'g')) => (&text[..i], 30),
        _ => (text, 0),
    };
    let value: usize =
        number.trim().parse().map_err(|_| format!("{text:?} is not a size such as 65536, 64K or 16M"))?;
    value.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations and sizes read as documented; nonsense is refused.
    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("16M").unwrap(), 16 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
