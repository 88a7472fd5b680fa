//! Per-target traffic over the last minute for `switchyard status`:
//! requests, errors, and approximate p50 / p99 attempt latency, kept in
//! atomics (log-spaced latency buckets), so recording takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds in microseconds: 100 µs · 2^i, up to ~7 minutes.
const BUCKETS: usize = 23;

fn bucket(d: Duration) -> usize {
    let us = d.as_micros().max(1) as u64;
    let i = (us.div_ceil(100)).next_power_of_two().trailing_zeros() as usize;
    i.min(BUCKETS - 1)
}

fn upper_bound(i: usize) -> Duration {
    Duration::from_micros(100u64 << i)
}

#[derive(Debug, Default)]
struct Window {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Window {
    fn clear(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        for b in &self.latency {
            b.store(0, Ordering::Relaxed);
        }
    }
}

/// Two one-minute windows (even and odd minutes): the one being written and
/// the last complete one.
#[derive(Debug, Default)]
pub struct MinuteStats {
    windows: [Window; 2],
    /// Minute number (since the epoch) each window holds.
    minutes: [AtomicU64; 2],
}

/// What `status` shows for the last complete minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct MinuteSummary {
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

impl MinuteStats {
    pub fn record(&self, minute: u64, ok: bool, latency: Duration) {
        let slot = (minute % 2) as usize;
        let held = self.minutes[slot].load(Ordering::Acquire);
        if held != minute
            && self.minutes[slot]
                .compare_exchange(held, minute, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.windows[slot].clear();
        }
        let w = &self.windows[slot];
        w.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            w.errors.fetch_add(1, Ordering::Relaxed);
        }
        w.latency[bucket(latency)].fetch_add(1, Ordering::Relaxed);
    }

    /// The last complete minute (the one before `minute`).
    pub fn summary(&self, minute: u64) -> MinuteSummary {
        let last = minute.saturating_sub(1);
        let slot = (last % 2) as usize;
        if self.minutes[slot].load(Ordering::Acquire) != last {
            return MinuteSummary::default();
        }
        let w = &self.windows[slot];
        let counts: Vec<u64> = w
            .latency
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| -> Option<u64> {
            if total == 0 {
                return None;
            }
            let rank = (q * total as f64).ceil() as u64;
            let mut seen = 0;
            counts.iter().enumerate().find_map(|(i, c)| {
                seen += c;
                (seen >= rank).then(|| upper_bound(i).as_millis() as u64)
            })
        };
        MinuteSummary {
            requests: w.requests.load(Ordering::Relaxed),
            errors: w.errors.load(Ordering::Relaxed),
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_the_last_complete_minute() {
        let s = MinuteStats::default();
        for i in 0..100 {
            s.record(
                7,
                i % 10 != 0,
                Duration::from_millis(if i < 98 { 3 } else { 900 }),
            );
        }
        assert_eq!(
            s.summary(7),
            MinuteSummary::default(),
            "minute 7 is not complete yet"
        );
        let m = s.summary(8);
        assert_eq!((m.requests, m.errors), (100, 10));
        assert!(m.p50_ms.unwrap() >= 3 && m.p50_ms.unwrap() <= 7, "{m:?}");
        assert!(m.p99_ms.unwrap() >= 900, "{m:?}");
        // Two minutes later the window is stale.
        assert_eq!(s.summary(10), MinuteSummary::default());
    }
}
