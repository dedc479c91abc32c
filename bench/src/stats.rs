//! Medians, spreads and percentiles.
use serde::Serialize;

/// Several rounds of one figure.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// (max - min) / median, in percent: how far rounds disagree.
    pub spread_pct: f64,
    pub rounds: usize,
}

impl Summary {
    /// None for no values.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        let (min, max) = (v[0], v[n - 1]);
        let spread_pct = if median != 0.0 { (max - min) / median.abs() * 100.0 } else { 0.0 };
        Some(Summary { median, min, max, spread_pct, rounds: n })
    }
}

/// The `p`th percentile of sorted `samples` (nearest rank).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A number with three significant digits and k/M for large ones.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 10e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 10e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A ratio with two decimals near 1, and two significant digits far from
/// it: 0.88, 0.017, 38, 1234.
pub fn short_ratio(r: f64) -> String {
    let a = r.abs();
    if a == 0.0 || !a.is_finite() {
        format!("{r}")
    } else if a >= 100.0 {
        format!("{r:.0}")
    } else if a >= 10.0 {
        format!("{r:.1}")
    } else if a >= 0.1 {
        format!("{r:.2}")
    } else {
        let decimals = (-a.log10()).ceil() as usize + 1;
        format!("{r:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_and_percentiles() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.spread_pct), (2.0, 1.0, 3.0, 100.0));
        assert_eq!(Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap().median, 2.5);
        assert!(Summary::of(&[]).is_none());
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(short(98_234.0), "98.2k");
        assert_eq!(short(13.14), "13.1");
        assert_eq!(short_ratio(0.876), "0.88");
        assert_eq!(short_ratio(0.01654), "0.017");
        assert_eq!(short_ratio(0.00207), "0.0021");
        assert_eq!(short_ratio(38.24), "38.2");
        assert_eq!(short_ratio(1234.5), "1234");
    }
}
