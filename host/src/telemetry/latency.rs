//! A histogram of callback durations, 10 µs to 1 s, that records with two
//! relaxed atomic adds: reactors on several threads never wait on each other
//! to record (prometheus-client's own histogram takes a mutex per record).
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// The buckets' upper bounds in nanoseconds; one more bucket takes the rest.
const BOUNDS_NS: [u64; 16] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Durations observed, by bucket. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct Latency(Arc<Buckets>);

#[derive(Debug, Default)]
struct Buckets {
    /// Observations per bucket, not cumulative; the last is above every bound.
    counts: [AtomicU64; BOUNDS_NS.len() + 1],
    /// Every observation added up, in nanoseconds (enough for 584 years).
    sum_ns: AtomicU64,
}

impl Latency {
    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        // Most callbacks are short: the scan usually stops in the first few.
        let bucket = BOUNDS_NS.iter().position(|&bound| ns <= bound).unwrap_or(BOUNDS_NS.len());
        self.0.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.0.counts.iter().map(|count| count.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        let bounds = BOUNDS_NS.iter().map(|&ns| ns as f64 / 1e9).chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> =
            bounds.zip(&self.0.counts).map(|(bound, count)| (bound, count.load(Ordering::Relaxed))).collect();
        // The count is the buckets' total, so `_count` and the `+Inf` bucket
        // agree even when a scrape races a record.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::{Registry, Unit};

    /// Each duration lands in the first bucket that holds it; the text
    /// shows cumulative buckets, the count and the sum in seconds.
    #[test]
    fn buckets_count_and_sum() {
        let latency = Latency::default();
        latency.observe(Duration::from_micros(10)); // on the first bound
        latency.observe(Duration::from_micros(11));
        latency.observe(Duration::from_millis(3));
        latency.observe(Duration::from_secs(2)); // above every bound
        assert_eq!(latency.count(), 4);
        let mut registry = Registry::default();
        registry.register_with_unit("callback", "test", Unit::Seconds, latency.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .rsplit_once(' ')
                .unwrap()
                .1
                .to_string()
        };
        assert_eq!(line("callback_seconds_count"), "4");
        assert_eq!(line("callback_seconds_sum").parse::<f64>().unwrap(), 2.003021);
        assert_eq!(line("callback_seconds_bucket{le=\"0.00001\"}"), "1");
        assert_eq!(line("callback_seconds_bucket{le=\"0.000025\"}"), "2");
        assert_eq!(line("callback_seconds_bucket{le=\"0.0025\"}"), "2");
        assert_eq!(line("callback_seconds_bucket{le=\"0.005\"}"), "3");
        assert_eq!(line("callback_seconds_bucket{le=\"1.0\"}"), "3");
        assert_eq!(line("callback_seconds_bucket{le=\"+Inf\"}"), "4");
    }
}
