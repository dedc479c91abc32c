//! UTC timestamps for folder names and reports, without a date crate.
use std::time::{SystemTime, UNIX_EPOCH};

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, proleptic Gregorian calendar).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn parts() -> (i64, u32, u32, u64, u64, u64) {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (y, m, d) = civil((secs / 86_400) as i64);
    let t = secs % 86_400;
    (y, m, d, t / 3600, t / 60 % 60, t % 60)
}

/// `20260127-143005`: sorts by time, safe in a path.
pub fn utc_stamp() -> String {
    let (y, m, d, h, min, s) = parts();
    format!("{y:04}{m:02}{d:02}-{h:02}{min:02}{s:02}")
}

/// `2026-01-27 14:30:05 UTC`, for people.
pub fn utc_now() -> String {
    let (y, m, d, h, min, s) = parts();
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02} UTC")
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(19_782), (2024, 2, 29));
        assert_eq!(super::civil(-1), (1969, 12, 31));
    }
}
