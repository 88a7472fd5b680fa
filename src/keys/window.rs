//! Tokens per minute as a sliding window: sixty one-second slots of
//! tokens charged. A request reserves its worst case at admission and is
//! settled with what the vendor reports, so the tokens a key uses in any
//! minute stay within its limit (plus at most one request's overshoot when
//! a vendor generates more than was reserved).
//!
//! Lock-free: each slot is one atomic holding its second and its count, so
//! the request path never waits on another request, a reload or ops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SLOTS: u64 = 60;

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The window is full; room comes back after this long.
    RetryAfter(Duration),
    /// The prompt alone is larger than a whole minute's limit.
    Never,
}

/// One key's window. Slot `s % 60` holds second `s` (upper 32 bits) and
/// the tokens charged in it (lower 32 bits).
#[derive(Debug)]
pub struct TokenWindow {
    limit: u64,
    origin: Instant,
    slots: [AtomicU64; SLOTS as usize],
}

fn pack(second: u64, tokens: u64) -> u64 {
    (second << 32) | tokens.min(u64::from(u32::MAX))
}

fn unpack(v: u64) -> (u64, u64) {
    (v >> 32, v & u64::from(u32::MAX))
}

impl TokenWindow {
    pub fn new(limit: u32) -> TokenWindow {
        TokenWindow {
            limit: u64::from(limit),
            origin: Instant::now(),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Seconds since the window was made; slot 0 is never "in the future".
    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_secs() + SLOTS
    }

    fn live(now: u64, second: u64) -> bool {
        second <= now && now - second < SLOTS
    }

    /// Tokens charged within the minute ending at `now`.
    pub fn used(&self, now: u64) -> u64 {
        self.slots
            .iter()
            .map(|s| unpack(s.load(Ordering::Acquire)))
            .filter(|(second, _)| Self::live(now, *second))
            .map(|(_, tokens)| tokens)
            .sum()
    }

    fn slot(&self, second: u64) -> &AtomicU64 {
        &self.slots[(second % SLOTS) as usize]
    }

    fn add(&self, now: u64, n: u64) {
        let _ = self
            .slot(now)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let (second, tokens) = unpack(v);
                Some(if second == now {
                    pack(now, tokens.saturating_add(n))
                } else {
                    pack(now, n)
                })
            });
    }

    /// Takes `n` back from `second`'s slot, if that second is still in the
    /// window (an older charge no longer counts anyway).
    fn sub(&self, now: u64, second: u64, n: u64) {
        if !Self::live(now, second) {
            return;
        }
        let _ = self
            .slot(second)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let (s, tokens) = unpack(v);
                (s == second).then(|| pack(s, tokens.saturating_sub(n)))
            });
    }

    /// Reserves up to `want` tokens for a request whose prompt is about
    /// `prompt` tokens: admitted when the prompt fits in what is left of
    /// the minute, and holding at most what is left, so one request cannot
    /// push the window far past the limit before it is settled. Returns the
    /// tokens reserved, charged at second `now`.
    pub fn reserve(&self, now: u64, prompt: u64, want: u64) -> Result<u64, Full> {
        let prompt = prompt.max(1);
        if prompt > self.limit {
            return Err(Full::Never);
        }
        let used = self.used(now);
        let left = self.limit.saturating_sub(used);
        if left < prompt {
            return Err(Full::RetryAfter(
                self.retry_after(now, used + prompt - self.limit),
            ));
        }
        let take = want.max(prompt).min(left);
        self.add(now, take);
        // Another request may have reserved at the same moment: back out
        // rather than overshoot (both may back out; neither overshoots).
        let after = self.used(now);
        if after > self.limit {
            self.sub(now, now, take);
            return Err(Full::RetryAfter(self.retry_after(now, after - self.limit)));
        }
        Ok(take)
    }

    /// Settles a reservation of `reserved` tokens made at `second` with the
    /// `used` tokens the vendor reported: the unused part is given back, an
    /// excess is charged now.
    pub fn settle(&self, now: u64, second: u64, reserved: u64, used: u64) {
        if used < reserved {
            self.sub(now, second, reserved - used);
        } else if used > reserved {
            self.add(now, used - reserved);
        }
    }

    /// How long until `need` tokens have left the window.
    fn retry_after(&self, now: u64, need: u64) -> Duration {
        let mut freed = 0;
        for age in (0..SLOTS).rev() {
            let second = now - age;
            let (s, tokens) = unpack(self.slot(second).load(Ordering::Acquire));
            if s == second {
                freed += tokens;
                if freed >= need {
                    return Duration::from_secs(SLOTS - age);
                }
            }
        }
        Duration::from_secs(SLOTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_never_holds_more_than_the_limit() {
        let w = TokenWindow::new(100);
        let t = 1000;
        // A request that may generate up to 4096 holds what is left...
        assert_eq!(w.reserve(t, 10, 4096), Ok(100));
        // ...so nothing else fits until it is settled.
        assert!(matches!(w.reserve(t, 1, 1), Err(Full::RetryAfter(_))));
        w.settle(t, t, 100, 30);
        assert_eq!(w.used(t), 30);
        assert_eq!(w.reserve(t + 1, 10, 50), Ok(50));
        w.settle(t + 2, t + 1, 50, 50);
        assert_eq!(w.used(t + 2), 80);
        // The excess of a request that generated more than it reserved is
        // charged, and keeps the next ones out.
        assert_eq!(w.reserve(t + 3, 5, 5), Ok(5));
        w.settle(t + 4, t + 3, 5, 40);
        assert_eq!(w.used(t + 4), 120);
        let Err(Full::RetryAfter(wait)) = w.reserve(t + 5, 1, 1) else {
            panic!("over the limit")
        };
        // 30 tokens leave at t + 60: that is enough for 1 more token.
        assert_eq!(wait, Duration::from_secs(55));
        assert_eq!(w.used(t + 60), 90);
        assert_eq!(w.reserve(t + 60, 10, 10), Ok(10));
    }

    #[test]
    fn a_prompt_larger_than_the_limit_is_never_admitted() {
        let w = TokenWindow::new(100);
        assert_eq!(w.reserve(100, 101, 101), Err(Full::Never));
        assert_eq!(w.used(100), 0);
    }

    #[test]
    fn a_late_refund_of_an_expired_charge_changes_nothing() {
        let w = TokenWindow::new(100);
        assert_eq!(w.reserve(100, 50, 50), Ok(50));
        assert_eq!(w.reserve(170, 50, 50), Ok(50));
        // Settles the first, long gone, reservation: the second stays.
        w.settle(171, 100, 50, 0);
        assert_eq!(w.used(171), 50);
    }
}
