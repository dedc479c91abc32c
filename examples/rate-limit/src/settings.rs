//! The operator's settings, from the guest's environment (`host --env`):
//! how many lines a peer may send per window, how long a window is, and
//! which bucket counts them.
use std::time::Duration;

/// Lines a peer may send per window when `RATE_LIMIT` is not set.
pub const DEFAULT_LIMIT: u64 = 10;

/// The window when `RATE_WINDOW` is not set.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// The bucket when `RATE_BUCKET` is not set: the component's name, which
/// is the one bucket the host allows by default.
pub const DEFAULT_BUCKET: &str = "rate_limit";

/// What the operator set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Lines a peer may send per window.
    pub limit: u64,
    /// How long a window lasts, in milliseconds (at least 1).
    pub window_ms: u64,
    /// The store bucket the counts live in.
    pub bucket: String,
}

impl Settings {
    /// The settings in `lookup` (`std::env::var`, in the component), or an
    /// error naming the variable that is wrong.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let limit = match lookup("RATE_LIMIT") {
            None => DEFAULT_LIMIT,
            Some(text) => text.trim().parse().map_err(|_| format!("RATE_LIMIT={text:?} is not a whole number"))?,
        };
        let window = match lookup("RATE_WINDOW") {
            None => DEFAULT_WINDOW,
            Some(text) => parse_duration(&text)
                .ok_or_else(|| format!("RATE_WINDOW={text:?} is not a time such as 60s, 500ms, 5m or 1h"))?,
        };
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        if window_ms == 0 {
            return Err("RATE_WINDOW must be at least 1ms".into());
        }
        let bucket = lookup("RATE_BUCKET").filter(|name| !name.is_empty()).unwrap_or_else(|| DEFAULT_BUCKET.into());
        Ok(Settings { limit, window_ms, bucket })
    }
}

/// `500ms`, `60s`, `5m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = |factor: u64| number.checked_mul(factor).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::from_lookup(|name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string()))
    }

    /// Nothing set: ten lines a minute, in the bucket named after the
    /// component.
    #[test]
    fn defaults() {
        assert_eq!(settings(&[]), Ok(Settings { limit: 10, window_ms: 60_000, bucket: "rate_limit".into() }));
    }

    /// Windows in milliseconds, seconds, minutes and hours.
    #[test]
    fn windows_take_units() {
        for (text, ms) in [("500ms", 500), ("60s", 60_000), ("60", 60_000), ("5m", 300_000), ("1h", 3_600_000)] {
            assert_eq!(settings(&[("RATE_WINDOW", text)]).unwrap().window_ms, ms, "{text}");
        }
        let set = settings(&[("RATE_LIMIT", "5"), ("RATE_BUCKET", "limits")]).unwrap();
        assert_eq!((set.limit, set.bucket.as_str()), (5, "limits"));
    }

    /// What is not a count or a time is refused, naming the variable.
    #[test]
    fn bad_settings_are_refused() {
        for (name, value) in [
            ("RATE_LIMIT", "many"),
            ("RATE_LIMIT", "-1"),
            ("RATE_WINDOW", "1d"),
            ("RATE_WINDOW", "s"),
            ("RATE_WINDOW", "0"),
        ] {
            let error = settings(&[(name, value)]).unwrap_err();
            assert!(error.contains(name), "{error}");
        }
    }
}
