//! The retry budget of one route: extra attempts on the same target are
//! allowed up to 20% of client requests, plus a small floor per second, so
//! an outage cannot multiply the load on a struggling vendor. It also notes
//! when the route last took a request, so a reload can tell a route that
//! carries traffic from one nobody uses.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tokio::time::Instant;

/// Milli-tokens deposited per client request (0.2 retries).
const DEPOSIT: i64 = 200;
/// Milli-tokens one retry costs.
const COST: i64 = 1000;
/// Most milli-tokens saved up (100 retries' worth).
const CAP: i64 = 100_000;

#[derive(Debug)]
pub struct RetryBudget {
    epoch: Instant,
    balance: AtomicI64,
    floor: u32,
    /// Current second (since epoch) and retries taken from the floor in it,
    /// packed as `second << 32 | used`.
    floor_slot: AtomicU64,
    /// Milliseconds since `epoch` of the last client request, plus one;
    /// 0 = none yet.
    last_request: AtomicU64,
}

impl RetryBudget {
    pub fn new(epoch: Instant, floor_per_sec: u32) -> RetryBudget {
        RetryBudget {
            epoch,
            balance: AtomicI64::new(0),
            floor: floor_per_sec,
            floor_slot: AtomicU64::new(0),
            last_request: AtomicU64::new(0),
        }
    }

    /// Called once per client request.
    pub fn deposit(&self) {
        let at = Instant::now().saturating_duration_since(self.epoch);
        self.last_request
            .store(at.as_millis() as u64 + 1, Ordering::Relaxed);
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some((b + DEPOSIT).min(CAP))
            });
    }

    /// How long ago the route took its last client request; `None` if it
    /// never took one.
    pub fn since_last_request(&self, now: Instant) -> Option<std::time::Duration> {
        let at = self.last_request.load(Ordering::Relaxed).checked_sub(1)?;
        let now = now.saturating_duration_since(self.epoch).as_millis() as u64;
        Some(std::time::Duration::from_millis(now.saturating_sub(at)))
    }

    /// Takes one retry from the budget, if any is left.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let paid = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b >= COST).then_some(b - COST)
            })
            .is_ok();
        paid || self.take_floor(now)
    }

    fn take_floor(&self, now: Instant) -> bool {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        self.floor_slot
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |slot| {
                let (s, used) = (slot >> 32, slot & 0xffff_ffff);
                match (s == second, used < u64::from(self.floor)) {
                    (false, _) if self.floor > 0 => Some((second << 32) | 1),
                    (true, true) => Some((second << 32) | (used + 1)),
                    _ => None,
                }
            })
            .is_ok()
    }
}
