//! `--scenario soak`: the clients stay connected while `--churn-rate` of them reconnect every
//! second and (with `--rooms`) `--move-rate` move to another room, for `--duration`; the RSS of
//! the `--rss-pid` processes (the nodes) is read every `--sample-interval`, and the report gives
//! each one's slope after `--warmup` (least squares, KiB per minute) — flat within noise means no
//! leak — and, after the last change, the exact count every client must show.

use std::time::{Duration, Instant};

use serde::Serialize;

/// One RSS reading of every watched process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RssSample {
    /// Seconds since the soak started.
    pub t_s: f64,
    /// VmRSS of each `--rss-pid`, KiB, in order (`None`: the process could not be read).
    pub rss_kib: Vec<Option<u64>>,
}

/// What the soak measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SoakReport {
    /// The processes watched.
    pub pids: Vec<u32>,
    /// Samples before this many seconds are left out of the slopes.
    pub warmup_s: f64,
    /// Every sample, in order.
    pub samples: Vec<RssSample>,
    /// Per process: RSS growth after the warm-up, KiB per minute (`None`: fewer than 3 samples).
    pub slope_kib_per_min: Vec<Option<f64>>,
    /// Per process: RSS at the first sample after the warm-up and at the last one, KiB.
    pub after_warmup_kib: Vec<Option<(u64, u64)>>,
    /// Room moves acknowledged during the soak.
    pub moves_ok: u64,
}

/// Reads VmRSS (KiB) of `pid` from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples every watched process now.
pub fn sample(pids: &[u32], started: Instant) -> RssSample {
    RssSample {
        t_s: started.elapsed().as_secs_f64(),
        rss_kib: pids.iter().map(|&pid| rss_kib(pid)).collect(),
    }
}

impl SoakReport {
    /// The slopes and end points of `samples` after `warmup`.
    pub fn build(pids: &[u32], warmup: Duration, samples: Vec<RssSample>, moves_ok: u64) -> Self {
        let warmup_s = warmup.as_secs_f64();
        let mut slope_kib_per_min = Vec::new();
        let mut after_warmup_kib = Vec::new();
        for index in 0..pids.len() {
            let points: Vec<(f64, f64)> = samples
                .iter()
                .filter(|sample| sample.t_s >= warmup_s)
                .filter_map(|sample| sample.rss_kib[index].map(|kib| (sample.t_s / 60.0, kib as f64)))
                .collect();
            slope_kib_per_min.push(slope(&points));
            let ends = points.first().zip(points.last()).map(|(a, b)| (a.1 as u64, b.1 as u64));
            after_warmup_kib.push(ends);
        }
        Self { pids: pids.to_vec(), warmup_s, samples, slope_kib_per_min, after_warmup_kib, moves_ok }
    }
}

/// Least-squares slope of `points` (y per x); `None` with fewer than 3 points.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let variance: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    (variance > 0.0).then(|| covariance / variance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_is_the_least_squares_line_after_the_warmup() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0)]), None);
        let line: Vec<(f64, f64)> = (0..10).map(|x| (f64::from(x), 5.0 + 2.0 * f64::from(x))).collect();
        assert!((slope(&line).expect("slope") - 2.0).abs() < 1e-9);
        let samples = (0..7)
            .map(|i| RssSample {
                t_s: f64::from(i) * 30.0,
                rss_kib: vec![Some(if i < 2 { 1000 + 500 * i as u64 } else { 2000 + 10 * i as u64 }), None],
            })
            .collect();
        let report = SoakReport::build(&[1, 2], Duration::from_secs(60), samples, 0);
        // After 60 s: 10 KiB per 30 s sample = 20 KiB per minute; the warm-up's jump is left out.
        assert!((report.slope_kib_per_min[0].expect("slope") - 20.0).abs() < 1e-9);
        assert_eq!(report.after_warmup_kib[0], Some((2020, 2060)));
        assert_eq!(report.slope_kib_per_min[1], None, "an unreadable process has no slope");
    }

    #[test]
    fn this_process_rss_is_readable() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
