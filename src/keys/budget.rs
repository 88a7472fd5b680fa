//! A key's request budget in fleet mode: slices of the fleet-wide limit of
//! each window, leased ahead of need by the fleet's background task, so
//! the request path only touches atomics.
//!
//! Windows are fixed (`unix ms / period`). The task takes a slice with one
//! `INCRBY` on the key's counter for the window and grants this replica
//! only the part under the limit, so the grants of all replicas add up to
//! at most the limit. Just before a window ends it leases the next one's
//! first slice, so a new window does not start empty.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Requests one key may make per window across the fleet, and this
/// replica's share of the current (and next) window.
#[derive(Debug)]
pub struct Budget {
    /// Requests per window, fleet-wide.
    pub limit: u64,
    period_ms: u64,
    window: AtomicU64,
    granted: AtomicU64,
    used: AtomicU64,
    /// Leased ahead for window `next_window`.
    next_window: AtomicU64,
    next_granted: AtomicU64,
    /// `window + 1` when the fleet's budget of that window is spent (0:
    /// not known to be).
    spent: AtomicU64,
    /// Redis away: this replica's local share of a window (0: Redis is
    /// answering). A new window starts with it when nothing was leased
    /// ahead, so a dead Redis never refuses a request the share allows.
    fallback: AtomicU64,
    /// Wakes the leasing task when the local slice runs low.
    low: std::sync::Arc<Notify>,
    /// Set by the first lease (or fall-back): until then the key's local
    /// limiter applies, so a new key is not refused while its first slice
    /// is on the way.
    active: std::sync::atomic::AtomicBool,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Budget {
    /// `rpm` requests per minute, counted over windows of `period`.
    pub fn new(rpm: u32, period: Duration, low: std::sync::Arc<Notify>) -> Budget {
        let period_ms = (period.as_millis() as u64).max(1);
        let limit = (u64::from(rpm) * period_ms / 60_000).max(1);
        Budget {
            limit,
            period_ms,
            window: AtomicU64::new(unix_ms() / period_ms),
            granted: AtomicU64::new(0),
            used: AtomicU64::new(0),
            next_window: AtomicU64::new(0),
            next_granted: AtomicU64::new(0),
            spent: AtomicU64::new(0),
            fallback: AtomicU64::new(0),
            low,
            active: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a lease (or fall-back) was ever recorded.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The window `unix_ms` falls in.
    pub fn window_at(&self, unix_ms: u64) -> u64 {
        unix_ms / self.period_ms
    }

    /// Time left in the window of `unix_ms`.
    pub fn left_in_window(&self, unix_ms: u64) -> Duration {
        Duration::from_millis(self.period_ms - unix_ms % self.period_ms)
    }

    /// Moves to window `w` if it is newer, taking what was leased ahead.
    fn roll(&self, w: u64) {
        let current = self.window.load(Ordering::Acquire);
        if current >= w {
            return;
        }
        if self
            .window
            .compare_exchange(current, w, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let ahead = if self.next_window.load(Ordering::Acquire) == w {
                self.next_granted.swap(0, Ordering::AcqRel)
            } else {
                self.fallback.load(Ordering::Acquire)
            };
            self.used.store(0, Ordering::Release);
            self.granted.store(ahead, Ordering::Release);
        }
    }

    /// Counts one request; on refusal, how long until the next window.
    pub fn admit(&self) -> Result<(), Duration> {
        let now = unix_ms();
        self.roll(self.window_at(now));
        let granted = self.granted.load(Ordering::Acquire);
        let used = self.used.fetch_add(1, Ordering::AcqRel);
        if used < granted {
            if granted - used <= self.watermark() {
                self.low.notify_one();
            }
            return Ok(());
        }
        self.used.fetch_sub(1, Ordering::AcqRel);
        self.low.notify_one();
        Err(self.left_in_window(now))
    }

    /// Below this many local requests left, the next slice is leased.
    pub fn watermark(&self) -> u64 {
        (self.limit / 16).max(1)
    }

    /// How many requests to lease for window `w` now, if any: none while
    /// enough is left or when the fleet's budget of `w` is spent.
    pub fn wants(&self, w: u64, slice: u64) -> Option<u64> {
        self.roll(w);
        if self.spent.load(Ordering::Acquire) == w + 1 || self.window.load(Ordering::Acquire) != w {
            return None;
        }
        let left = self
            .granted
            .load(Ordering::Acquire)
            .saturating_sub(self.used.load(Ordering::Acquire));
        (left <= self.watermark()).then_some(slice)
    }

    /// Whether the first slice of window `w` (the next one) is still to be
    /// leased.
    pub fn wants_ahead(&self, w: u64) -> bool {
        self.next_window.load(Ordering::Acquire) != w && self.window.load(Ordering::Acquire) < w
    }

    /// Records what the fleet's counter said after this replica added
    /// `asked` to window `w`: `total` taken by all replicas so far. Grants
    /// the part of `asked` under the limit.
    pub fn granted(&self, w: u64, asked: u64, total: u64) {
        self.active.store(true, Ordering::Release);
        self.fallback.store(0, Ordering::Release);
        let before = total.saturating_sub(asked);
        let grant = self.limit.saturating_sub(before).min(asked);
        if total >= self.limit {
            self.spent.store(w + 1, Ordering::Release);
        }
        if self.window.load(Ordering::Acquire) == w {
            self.granted.fetch_add(grant, Ordering::AcqRel);
        } else if self.window.load(Ordering::Acquire) < w {
            if self.next_window.swap(w, Ordering::AcqRel) != w {
                self.next_granted.store(0, Ordering::Release);
            }
            self.next_granted.fetch_add(grant, Ordering::AcqRel);
        }
    }

    /// Redis is away: this replica may use `share` of window `w` (the
    /// limit divided by the live replicas it last knew), and of each new
    /// window until a lease succeeds again.
    pub fn fall_back(&self, w: u64, share: u64) {
        self.active.store(true, Ordering::Release);
        self.fallback.store(share, Ordering::Release);
        self.roll(w);
        if self.window.load(Ordering::Acquire) == w {
            self.granted.fetch_max(share, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_stop_at_the_limit_across_replicas() {
        let low = std::sync::Arc::new(Notify::new());
        let b = Budget::new(1, Duration::from_secs(3600), low);
        assert_eq!(b.limit, 60);
        let w = b.window_at(unix_ms());
        assert!(b.admit().is_err(), "nothing leased yet");
        // Another replica took 50; this one asks 20 and gets 10.
        assert_eq!(b.wants(w, 20), Some(20));
        b.granted(w, 20, 70);
        let admitted = (0..30).filter(|_| b.admit().is_ok()).count();
        assert_eq!(admitted, 10);
        assert_eq!(b.wants(w, 20), None, "the fleet's budget is spent");
    }

    #[test]
    fn without_redis_each_window_opens_with_the_local_share() {
        let low = std::sync::Arc::new(Notify::new());
        let b = Budget::new(1, Duration::from_secs(3600), low);
        let w = b.window_at(unix_ms());
        b.fall_back(w, 20);
        assert_eq!((0..30).filter(|_| b.admit().is_ok()).count(), 20);
        b.roll(w + 1);
        assert_eq!((0..30).filter(|_| b.admit().is_ok()).count(), 20);
        // Redis answers again: leases replace the share.
        b.granted(w + 2, 5, 5);
        b.roll(w + 2);
        assert_eq!((0..30).filter(|_| b.admit().is_ok()).count(), 5);
    }

    #[test]
    fn a_slice_leased_ahead_opens_the_next_window() {
        let low = std::sync::Arc::new(Notify::new());
        let b = Budget::new(600, Duration::from_secs(3600), low);
        let w = b.window_at(unix_ms());
        assert!(b.wants_ahead(w + 1));
        b.granted(w + 1, 5, 5);
        assert!(!b.wants_ahead(w + 1));
        assert!(b.admit().is_err(), "the ahead slice is not for now");
        b.roll(w + 1);
        assert_eq!((0..10).filter(|_| b.admit().is_ok()).count(), 5);
    }
}
