//! The retry budget of one route: extra attempts on the same target are
//! allowed up to 20% of client requests, plus a small floor per second, so
//! an outage cannot multiply the load on a struggling vendor.

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
}

impl RetryBudget {
    pub fn new(epoch: Instant, floor_per_sec: u32) -> RetryBudget {
        RetryBudget {
            epoch,
            balance: AtomicI64::new(0),
            floor: floor_per_sec,
            floor_slot: AtomicU64::new(0),
        }
    }

    /// Called once per client request.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some((b + DEPOSIT).min(CAP))
            });
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
