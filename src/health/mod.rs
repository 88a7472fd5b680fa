//! Per-target runtime state that outlives any one routes table: ops
//! suspensions, passive outlier ejection with probing, counters, and the
//! per-route retry budgets.
//!
//! Keyed by target name (provider + model, never per provider), so a reload
//! that keeps a name keeps its state. Everything on the request path is an
//! atomic or an `ArcSwap` load: no lock that an ops flip or a reload can hold.
//! Time comes from `tokio::time::Instant`, so tests run on a paused clock.

mod budget;
mod persist;
mod stats;

use crate::clock::unix_now;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use budget::RetryBudget;
pub use persist::{load_suspensions, PersistError, StateWriter};
pub use stats::MinuteSummary;

use crate::config::HealthConfig;

/// What ops see for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Healthy,
    /// Serving, but its last attempts failed.
    Degraded,
    /// Taken out by outlier detection until its back-off ends.
    Ejected,
    /// Taken out by ops; never probed.
    Suspended,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Healthy => "healthy",
            TargetState::Degraded => "degraded",
            TargetState::Ejected => "ejected",
            TargetState::Suspended => "suspended",
        }
    }
}

/// An ops suspension: who, why, since when, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub reason: String,
    pub actor: String,
    /// Unix seconds.
    pub since: u64,
    /// Unix seconds; `None` until resumed.
    pub until: Option<u64>,
}

/// May this target take a request now?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Ok,
    /// Its ejection ended and this request is the one probe let through.
    Probe,
    Suspended(String),
    /// Ejected; the value says for how much longer.
    Ejected(Duration),
}

/// How an attempt ended, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A failure of the target (5xx, timeout, reset, unavailable...).
    Failure,
    /// Not the target's fault (the request was bad): no effect on health.
    Neutral,
}

/// What the recorder hands to the fleet (fleet mode only), through a
/// bounded channel it never waits on: the ejections and recoveries this
/// replica decided, for the other replicas to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    Ejected {
        target: String,
        backoff: Duration,
        why: String,
    },
    Recovered {
        target: String,
    },
}

/// A state change worth an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Ejected { backoff: Duration, why: String },
    Recovered,
}

/// Runtime state of one target.
#[derive(Debug)]
pub struct TargetHealth {
    pub name: String,
    epoch: Instant,
    suspension: ArcSwapOption<Suspension>,
    consecutive: AtomicU32,
    /// Consecutive ejections, for the growing back-off.
    ejections: AtomicU32,
    /// Milliseconds since `epoch` when the ejection ends; 0 = not ejected.
    ejected_until: AtomicU64,
    /// Like `ejected_until`, for provider take-outs only, so a take-out is
    /// announced once however many requests saw its cause.
    taken_out_until: AtomicU64,
    probing: AtomicBool,
    /// Fleet mode: the probe after this ejection waits for the fleet's
    /// probe lease, so one replica probes for all (set when an ejection is
    /// shared, cleared when this replica holds the lease or Redis is away).
    gated: AtomicBool,
    /// Error-rate window: start (ms since epoch), requests, failures.
    window_start: AtomicU64,
    window_requests: AtomicU32,
    window_failures: AtomicU32,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    minute: stats::MinuteStats,
    /// Unix seconds of the last state change, for "since when".
    changed_at: AtomicU64,
    why: ArcSwap<String>,
}

/// A duration in whole milliseconds, saturating: a back-off taken from a
/// vendor's answer must not wrap an instant into the past.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TargetHealth {
    pub fn new(name: &str, epoch: Instant) -> TargetHealth {
        TargetHealth {
            name: name.to_string(),
            epoch,
            suspension: ArcSwapOption::empty(),
            consecutive: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            taken_out_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            gated: AtomicBool::new(false),
            window_start: AtomicU64::new(0),
            window_requests: AtomicU32::new(0),
            window_failures: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            minute: stats::MinuteStats::default(),
            changed_at: AtomicU64::new(unix_now()),
            why: ArcSwap::from_pointee(String::new()),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        // +1 so that 0 can mean "not ejected" even at the epoch.
        now.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    fn note(&self, why: String) {
        self.changed_at.store(unix_now(), Ordering::Relaxed);
        self.why.store(Arc::new(why));
    }

    /// Whether a request may go to this target now. Lets exactly one
    /// request through as the probe when an ejection has run out.
    pub fn admit(&self, now: Instant) -> Admission {
        if let Some(s) = self.suspension.load().as_ref() {
            // An expired TTL admits at once; the sweeper records the event.
            if s.until.is_none_or(|u| u > unix_now()) {
                return Admission::Suspended(s.reason.clone());
            }
        }
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return Admission::Ok;
        }
        let at = self.ms(now);
        if at < until {
            return Admission::Ejected(Duration::from_millis(until - at));
        }
        if self.gated.load(Ordering::Acquire) {
            // Another replica may hold the fleet's probe: wait for its
            // outcome (or for the lease to come to this replica).
            return Admission::Ejected(Duration::ZERO);
        }
        match self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Admission::Probe,
            Err(_) => Admission::Ejected(Duration::ZERO),
        }
    }

    /// Records how an ordinary attempt ended; returns a transition when one
    /// happened. A success does not end an ejection: only the probe does
    /// (a request that was in flight when the target was ejected proves
    /// nothing about now).
    pub fn record(&self, outcome: Outcome, now: Instant, cfg: &HealthConfig) -> Option<Transition> {
        self.record_attempt(outcome, false, now, cfg)
    }

    /// Records how the probe admitted by [`TargetHealth::admit`] ended: a
    /// success restores the target, a failure ejects it for longer.
    pub fn record_probe(
        &self,
        outcome: Outcome,
        now: Instant,
        cfg: &HealthConfig,
    ) -> Option<Transition> {
        self.record_attempt(outcome, true, now, cfg)
    }

    fn record_attempt(
        &self,
        outcome: Outcome,
        probe: bool,
        now: Instant,
        cfg: &HealthConfig,
    ) -> Option<Transition> {
        if outcome == Outcome::Neutral {
            if probe {
                self.probing.store(false, Ordering::Release);
            }
            return None;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let at = self.ms(now);
        self.roll_window(at, cfg);
        self.window_requests.fetch_add(1, Ordering::Relaxed);
        let ejected = self.ejected_until.load(Ordering::Acquire) != 0;
        if outcome == Outcome::Success {
            self.consecutive.store(0, Ordering::Relaxed);
            if probe && ejected {
                self.ejected_until.store(0, Ordering::Release);
                self.probing.store(false, Ordering::Release);
                self.ejections.store(0, Ordering::Relaxed);
                self.gated.store(false, Ordering::Release);
                self.note("recovered: a probe succeeded".into());
                return Some(Transition::Recovered);
            }
            return None;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        let failures = self.window_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let consecutive = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let requests = self.window_requests.load(Ordering::Relaxed);
        let why = if probe {
            self.probing.store(false, Ordering::Release);
            Some("the probe failed".to_string())
        } else if ejected {
            None // already ejected: a request that was in flight
        } else if consecutive >= cfg.consecutive_failures {
            Some(format!("{consecutive} consecutive failures"))
        } else if requests >= cfg.min_requests
            && f64::from(failures) >= cfg.error_rate * f64::from(requests)
        {
            Some(format!("{failures} of {requests} attempts failed"))
        } else {
            None
        };
        why.map(|why| self.eject(at, cfg, why))
    }

    fn roll_window(&self, at: u64, cfg: &HealthConfig) {
        let start = self.window_start.load(Ordering::Relaxed);
        if at.saturating_sub(start) >= cfg.window.as_millis() as u64
            && self
                .window_start
                .compare_exchange(start, at, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.window_requests.store(0, Ordering::Relaxed);
            self.window_failures.store(0, Ordering::Relaxed);
        }
    }

    fn eject(&self, at: u64, cfg: &HealthConfig, why: String) -> Transition {
        let n = self.ejections.fetch_add(1, Ordering::AcqRel);
        let backoff = cfg
            .base_ejection
            .saturating_mul(1u32 << n.min(16))
            .min(cfg.max_ejection);
        self.ejected_until
            .store(at.saturating_add(millis(backoff)), Ordering::Release);
        self.consecutive.store(0, Ordering::Relaxed);
        self.note(format!(
            "ejected for {}: {why}",
            humantime::format_duration(backoff)
        ));
        Transition::Ejected { backoff, why }
    }

    /// Fleet mode: the probe after the current ejection needs the fleet's
    /// lease.
    pub fn gate_probe(&self) {
        self.gated.store(true, Ordering::Release);
    }

    /// Fleet mode: this replica may send the probe (it holds the lease, or
    /// Redis is away and each replica probes for itself).
    pub fn open_probe(&self) {
        self.gated.store(false, Ordering::Release);
    }

    /// Whether the probe waits for the fleet's lease.
    pub fn probe_gated(&self) -> bool {
        self.gated.load(Ordering::Acquire)
    }

    /// Whether an ejection has run out and its probe has not been decided:
    /// the moment the fleet's probe lease is taken.
    pub fn awaiting_probe(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        until != 0 && self.ms(now) >= until
    }

    /// Applies an ejection another replica decided (fleet mode), `left`
    /// from now; keeps a later end already in force. Returns whether the
    /// target was not ejected before, so the caller audits it once.
    pub fn apply_ejection(&self, now: Instant, left: Duration, why: &str) -> bool {
        let at = self.ms(now);
        let until = at.saturating_add(millis(left)).max(1);
        let before = self.ejected_until.fetch_max(until, Ordering::AcqRel);
        self.gated.store(true, Ordering::Release);
        self.consecutive.store(0, Ordering::Relaxed);
        self.note(format!(
            "ejected for {}: {why}",
            humantime::format_duration(left)
        ));
        let fresh = before == 0 || before <= at;
        if fresh {
            // The back-off grows here too, whichever replica probes next.
            self.ejections.fetch_add(1, Ordering::AcqRel);
        }
        fresh
    }

    /// Ends an ejection without a local probe: another replica's probe
    /// succeeded, or the fleet's cap refused the ejection. Returns whether
    /// there was one to end.
    pub fn clear_ejection(&self, why: &str) -> bool {
        self.gated.store(false, Ordering::Release);
        if self.ejected_until.swap(0, Ordering::AcqRel) == 0 {
            return false;
        }
        self.taken_out_until.store(0, Ordering::Relaxed);
        self.probing.store(false, Ordering::Release);
        self.ejections.store(0, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        self.note(why.to_string());
        true
    }

    /// Gives back a probe that never reported an outcome.
    pub fn release_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// Takes the target out at once for `backoff` (its provider's account
    /// is disabled or out of quota). Returns whether this call started the
    /// take-out, `false` when one was already in force: concurrent failures
    /// race on one atomic, so exactly one of them wins.
    pub fn take_out(&self, now: Instant, backoff: Duration, why: &str) -> bool {
        let at = self.ms(now);
        let until = at.saturating_add(millis(backoff));
        let before = self.taken_out_until.fetch_max(until, Ordering::AcqRel);
        self.ejected_until.fetch_max(until, Ordering::AcqRel);
        if before > at {
            return false;
        }
        self.note(format!(
            "ejected for {}: {why}",
            humantime::format_duration(backoff)
        ));
        true
    }

    pub fn suspend(&self, s: Suspension) {
        self.note(format!("suspended by {}: {}", s.actor, s.reason));
        self.suspension.store(Some(Arc::new(s)));
    }

    /// Lifts a suspension; returns it if there was one.
    pub fn resume(&self, actor: &str) -> Option<Suspension> {
        let old = self.suspension.swap(None)?;
        self.note(format!("resumed by {actor}"));
        Some((*old).clone())
    }

    pub fn suspension(&self) -> Option<Suspension> {
        self.suspension.load().as_deref().cloned()
    }

    pub fn state(&self, now: Instant) -> TargetState {
        if self.suspension.load().is_some() {
            return TargetState::Suspended;
        }
        let until = self.ejected_until.load(Ordering::Acquire);
        if until != 0 && self.ms(now) < until {
            TargetState::Ejected
        } else if until != 0 || self.consecutive.load(Ordering::Relaxed) > 0 {
            TargetState::Degraded
        } else {
            TargetState::Healthy
        }
    }

    /// Why the target is `degraded`, from what health knows: the failures
    /// in a row, the failures in the current error-rate window, and the
    /// last complete minute's errors and p99; or that its ejection ran out
    /// and no probe has succeeded yet. `None` unless degraded, so ops never
    /// see a bare "degraded".
    pub fn degraded_reason(&self, now: Instant, cfg: &HealthConfig) -> Option<String> {
        if self.state(now) != TargetState::Degraded {
            return None;
        }
        let mut parts = Vec::new();
        if self.ejected_until.load(Ordering::Acquire) != 0 {
            parts.push(format!(
                "its ejection ended ({}); waiting for a probe to succeed",
                self.why.load()
            ));
        }
        let consecutive = self.consecutive.load(Ordering::Relaxed);
        if consecutive > 0 {
            let s = if consecutive == 1 { "" } else { "s" };
            parts.push(format!("{consecutive} consecutive failure{s}"));
        }
        let at = self.ms(now);
        let fresh = at.saturating_sub(self.window_start.load(Ordering::Relaxed))
            < cfg.window.as_millis() as u64;
        let (requests, failures) = (
            self.window_requests.load(Ordering::Relaxed),
            self.window_failures.load(Ordering::Relaxed),
        );
        if fresh && requests > 0 && failures > 0 {
            parts.push(format!(
                "error rate {}% ({failures} of {requests} attempts) in the current {} window",
                u64::from(failures) * 100 / u64::from(requests),
                humantime::format_duration(cfg.window)
            ));
        }
        let minute = self.last_minute();
        if minute.errors > 0 {
            let p99 = minute
                .p99_ms
                .map_or(String::new(), |p| format!(", p99 latency {p} ms"));
            parts.push(format!(
                "last minute: {} errors of {} attempts{p99}",
                minute.errors, minute.requests
            ));
        }
        Some(parts.join("; "))
    }

    /// Records one attempt's latency for the per-minute view.
    pub fn observe(&self, ok: bool, latency: Duration) {
        self.minute.record(unix_now() / 60, ok, latency);
    }

    /// Requests, errors and latency over the last complete minute.
    pub fn last_minute(&self) -> MinuteSummary {
        self.minute.summary(unix_now() / 60)
    }

    /// Unix seconds of the last change, and what it was.
    pub fn last_change(&self) -> (u64, String) {
        (
            self.changed_at.load(Ordering::Relaxed),
            (**self.why.load()).clone(),
        )
    }
}

/// All targets' health and all routes' budgets, by name.
///
/// Rebuilt on reload by [`Registry::carry_over`], which keeps the entries of
/// names that still exist, so state survives while the maps stay read-only.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub targets: BTreeMap<String, Arc<TargetHealth>>,
    pub budgets: BTreeMap<String, Arc<RetryBudget>>,
}

impl Registry {
    /// Entries for `targets` and `routes`, reusing those of `previous`.
    /// Entries of names that disappeared are kept too, so a suspension of a
    /// target removed and later re-added is not forgotten.
    pub fn carry_over<'a>(
        previous: Option<&Registry>,
        targets: impl Iterator<Item = &'a String>,
        routes: impl Iterator<Item = &'a String>,
        epoch: Instant,
        budget_floor: u32,
    ) -> Registry {
        let mut next = previous.cloned().unwrap_or_default();
        for t in targets {
            next.targets
                .entry(t.clone())
                .or_insert_with(|| Arc::new(TargetHealth::new(t, epoch)));
        }
        for r in routes {
            next.budgets
                .entry(r.clone())
                .or_insert_with(|| Arc::new(RetryBudget::new(epoch, budget_floor)));
        }
        next
    }

    /// Every active suspension, for persistence.
    pub fn suspensions(&self) -> BTreeMap<String, Suspension> {
        self.targets
            .iter()
            .filter_map(|(name, h)| h.suspension().map(|s| (name.clone(), s)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
