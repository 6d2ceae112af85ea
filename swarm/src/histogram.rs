//! A small mergeable latency histogram (log-linear buckets, about 1.6% relative error).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Values below `SUB_BUCKETS` are exact; above, 7 significant bits are kept.
const SUB_BUCKET_BITS: u32 = 7;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;

/// Counts of microsecond values, sparse and mergeable across workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Wire", from = "Wire")]
pub struct Histogram {
    /// Bucket index to count.
    buckets: BTreeMap<u32, u64>,
    /// Number of recorded values.
    count: u64,
    /// Largest recorded value, exact.
    max: u64,
}

/// The JSON form: buckets as `[index, count]` pairs (integer map keys do not survive serde's
/// internally tagged enums).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wire {
    buckets: Vec<(u32, u64)>,
    count: u64,
    max: u64,
}

impl From<Histogram> for Wire {
    fn from(histogram: Histogram) -> Self {
        let buckets = histogram.buckets.into_iter().collect();
        Wire { buckets, count: histogram.count, max: histogram.max }
    }
}

impl From<Wire> for Histogram {
    fn from(wire: Wire) -> Self {
        let buckets = wire.buckets.into_iter().collect();
        Histogram { buckets, count: wire.count, max: wire.max }
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Histogram {
    /// Records one value (microseconds).
    pub fn record(&mut self, value: u64) {
        *self.buckets.entry(bucket_of(value)).or_insert(0) += 1;
        self.count += 1;
        self.max = self.max.max(value);
    }

    /// Adds every count of `other` into `self`.
    pub fn merge(&mut self, other: &Histogram) {
        for (bucket, count) in &other.buckets {
            *self.buckets.entry(*bucket).or_insert(0) += count;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0.0..=1.0), in microseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return upper_of(*bucket).min(self.max);
            }
        }
        self.max
    }

    /// p50/p90/p99/max in milliseconds.
    pub fn percentiles_ms(&self) -> Percentiles {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Percentiles {
            p50: ms(self.quantile(0.50)),
            p90: ms(self.quantile(0.90)),
            p99: ms(self.quantile(0.99)),
            max: ms(self.max),
        }
    }
}

/// Bucket index: `(magnitude << SUB_BUCKET_BITS) + top bits of the value`.
fn bucket_of(value: u64) -> u32 {
    if value < SUB_BUCKETS {
        return value as u32;
    }
    let highest_bit = 63 - value.leading_zeros();
    let magnitude = highest_bit - (SUB_BUCKET_BITS - 1);
    let sub = (value >> magnitude) as u32;
    (magnitude << SUB_BUCKET_BITS) + sub
}

/// Largest value that falls into `bucket`.
fn upper_of(bucket: u32) -> u64 {
    let magnitude = bucket >> SUB_BUCKET_BITS;
    let sub = u64::from(bucket & (SUB_BUCKETS as u32 - 1));
    if magnitude == 0 {
        return sub;
    }
    ((sub + 1) << magnitude).wrapping_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut histogram = Histogram::default();
        for value in 1..=10 {
            histogram.record(value);
        }
        assert_eq!(histogram.quantile(0.5), 5);
        assert_eq!(histogram.quantile(1.0), 10);
        assert_eq!(histogram.count(), 10);
    }

    #[test]
    fn large_values_within_two_percent() {
        let mut histogram = Histogram::default();
        for value in 1..=100_000u64 {
            histogram.record(value * 7);
        }
        for q in [0.5, 0.9, 0.99] {
            let exact = (q * 100_000.0) * 7.0;
            let got = histogram.quantile(q) as f64;
            assert!((got - exact).abs() / exact < 0.02, "q={q} got={got} exact={exact}");
        }
        assert_eq!(histogram.percentiles_ms().max, 700.0);
    }

    #[test]
    fn bucket_bounds_contain_their_values() {
        for value in [0, 1, 127, 128, 129, 255, 256, 1000, 123_456, u64::MAX / 2, u64::MAX] {
            let bucket = bucket_of(value);
            assert!(upper_of(bucket) >= value, "value {value}");
            if bucket > 0 {
                assert!(upper_of(bucket - 1) < value, "value {value}");
            }
        }
    }

    #[test]
    fn merge_adds_counts() {
        let mut left = Histogram::default();
        let mut right = Histogram::default();
        left.record(10);
        right.record(20_000);
        right.record(30_000);
        left.merge(&right);
        assert_eq!(left.count(), 3);
        assert_eq!(left.quantile(1.0), 30_000);
        let json = serde_json::to_string(&left).expect("serializes");
        let back: Histogram = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, left);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
