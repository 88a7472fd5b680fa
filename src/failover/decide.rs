//! Decisions as data: given a route's limits, the plan, the attempts so far
//! and a view of health, [`next_step`] says what the failover loop does
//! next. It does no I/O, sleeps nowhere and reads no clock; the executor in
//! `failover/mod.rs` (and the continuation) performs the step.
//!
//! Its rules, which the property tests check on arbitrary histories:
//! never more attempts than `max_attempts`; a target is tried at most once,
//! plus one same-target retry when the failure-class table allows it, the
//! vendor's reset fits in `max_retry_wait` and the retry budget pays; a
//! retry never takes an attempt a later target needs; suspended and
//! ejected targets are never tried; after a context-length error only
//! larger (or unknown) windows are, and when none is left the vendor's
//! own answer is returned; after a `Stop` class nothing is tried.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Decision, UpstreamError};
use crate::health::Admission;
use crate::policy::{Route, Target};

/// What the decision needs from health and the retry budget. The executor
/// asks the live registry; tests pass a table.
pub trait View {
    /// May `target` take this request now? Asked once per target per
    /// request, right before it would be chosen, so a probe is only
    /// claimed for a target that is then tried.
    fn admit(&self, target: &Target) -> Admission;
    /// Takes one same-target retry from the route's budget, if it has one.
    fn withdraw_retry(&self) -> bool;
}

/// The route's limits the decision obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_attempts: usize,
    pub max_retry_wait: Duration,
}

impl From<&Route> for Limits {
    fn from(r: &Route) -> Limits {
        Limits {
            max_attempts: r.max_attempts,
            max_retry_wait: r.max_retry_wait,
        }
    }
}

/// One failed attempt: which target of the plan, and how it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Tried {
    pub index: usize,
    pub error: UpstreamError,
}

/// How long to wait before an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Now,
    /// The vendor's stated reset, before a same-target retry.
    For(Duration),
    /// A few jittered milliseconds (a 429 without a reset), so a burst of
    /// failovers does not arrive at the next target in lockstep.
    Jitter,
}

/// What the loop does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Try `plan[index]` after `wait`. `probe` when health admitted it as
    /// the one probe after an ejection; `retry` for a same-target retry.
    Try {
        index: usize,
        wait: Wait,
        retry: bool,
        probe: bool,
    },
    /// The last failure was the request's fault: answer it, try nothing.
    Reject,
    /// Attempts ran out, or no target is left to try.
    Exhausted,
    /// Nothing was tried because every target is out: why, per target, and
    /// the soonest one comes back.
    AllOut {
        skipped: Vec<(String, String)>,
        retry_after: Duration,
    },
}

/// The next step of one request. Pure: the same inputs (and view answers)
/// give the same step.
pub fn next_step(limits: Limits, plan: &[Arc<Target>], history: &[Tried], view: &dyn View) -> Step {
    let attempts = history.len();
    let mut wait = Wait::Now;
    if let Some(last) = history.last() {
        let (_, decision) = last.error.classify();
        if decision == Decision::Stop {
            return Step::Reject;
        }
        let retried = attempts >= 2 && history[attempts - 2].index == last.index;
        // A retry may only use an attempt no later target needs.
        let later = plan.len().saturating_sub(last.index + 1);
        let room = attempts + 1 + later <= limits.max_attempts;
        if !retried && room {
            if let Some(w) = same_target_wait(&last.error, limits) {
                if view.withdraw_retry() {
                    return Step::Try {
                        index: last.index,
                        wait: if w.is_zero() { Wait::Now } else { Wait::For(w) },
                        retry: true,
                        probe: false,
                    };
                }
            }
        }
        if last.error.status() == Some(429) && last.error.reset_after().is_none() {
            wait = Wait::Jitter;
        }
    }
    // When nothing is left after a context-length error, the vendor's own
    // answer (a 400 the app can act on) is the truest one, not a 502.
    let too_long = |t: &Tried| t.error.classify().1 == Decision::FailoverToLargerWindow;
    let end = if history.last().is_some_and(too_long) {
        Step::Reject
    } else {
        Step::Exhausted
    };
    if attempts >= limits.max_attempts {
        return end;
    }
    // After a context-length error, only larger windows are worth a try
    // (the vendor's stated limit, else the target's window), and targets
    // whose window nobody stated.
    let min_window = history
        .iter()
        .filter(|t| too_long(t))
        .filter_map(|t| {
            let target = plan.get(t.index)?;
            Some(
                t.error
                    .context_limit()
                    .map_or(target.context_window, u64::from),
            )
        })
        .max()
        .unwrap_or(0);
    let start = history.last().map_or(0, |t| t.index + 1);
    let mut skipped = Vec::new();
    let mut soonest = Duration::from_secs(1);
    for (index, target) in plan.iter().enumerate().skip(start) {
        if target.window_known && target.context_window <= min_window {
            continue;
        }
        match view.admit(target) {
            Admission::Ok => {
                return Step::Try {
                    index,
                    wait,
                    retry: false,
                    probe: false,
                }
            }
            Admission::Probe => {
                return Step::Try {
                    index,
                    wait,
                    retry: false,
                    probe: true,
                }
            }
            Admission::Suspended(why) => {
                skipped.push((target.name.clone(), format!("suspended ({why})")));
            }
            Admission::Ejected(left) => {
                skipped.push((target.name.clone(), "ejected".to_string()));
                soonest = soonest.min(left.max(Duration::from_secs(1)));
            }
        }
    }
    if attempts == 0 && !skipped.is_empty() {
        return Step::AllOut {
            skipped,
            retry_after: soonest,
        };
    }
    end
}

/// Whether this failure earns one more try on the same target, after how
/// long: the table says the class may be retried, and either the vendor
/// named a reset within the route's `max_retry_wait` (waited for), or it
/// answered a plain 500 (retried at once). No response, missed first
/// tokens and everything else never are.
fn same_target_wait(error: &UpstreamError, limits: Limits) -> Option<Duration> {
    if error.reason().rule().decision != Decision::RetrySameTarget {
        return None;
    }
    match (error.reset_after(), error) {
        (Some(d), _) => (d <= limits.max_retry_wait).then_some(d),
        (None, UpstreamError::Status { status: 500, .. }) => Some(Duration::ZERO),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
