//! Fleet-wide request limits without a Redis call per request: each
//! replica leases slices of every key's per-window budget ahead of need
//! (`keys::Budget`), one `INCRBY` on `{name}:rate:{key}:{window}` per
//! slice, and the request path only counts down its local slice.
//!
//! A slice is a quarter of the window's limit divided by the live
//! replicas, so a replica never sits on much of what the others could
//! use; a new slice is leased when the local one runs low (the request
//! path wakes this task), and the next window's first slice just before
//! it starts. With Redis away, each replica allows the limit divided by
//! the live replicas it last saw, for the window in progress.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::{unix_ms, Fleet};

/// How often budgets are looked at when no request asked.
const TICK: Duration = Duration::from_millis(50);

/// The next window's first slice is leased this long before it starts:
/// more than `LEASE_TIMEOUT`, so a lease Redis does not answer falls back
/// to the local share before the window opens.
const AHEAD: Duration = Duration::from_millis(300);

/// A lease is one `INCRBY` (sub-millisecond on a healthy Redis); past this
/// the replica uses its local share instead.
const LEASE_TIMEOUT: Duration = Duration::from_millis(200);

/// How often the live replica count (the slice size's divisor) is read.
const COUNT_EVERY: Duration = Duration::from_secs(1);

pub(super) async fn run(fleet: Arc<Fleet>, low: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut replicas: u64 = 1;
    let mut counted: Option<tokio::time::Instant> = None;
    // After a failed lease, Redis is not asked again for a while: each
    // replica uses its local share at once instead of waiting on timeouts.
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = low.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let redis_up = quiet_until.is_none_or(|t| tokio::time::Instant::now() >= t);
        if redis_up && counted.is_none_or(|c| c.elapsed() >= COUNT_EVERY) {
            counted = Some(tokio::time::Instant::now());
            let mut con = fleet.cmd.clone();
            match tokio::time::timeout(LEASE_TIMEOUT, fleet.store.replicas(&mut con)).await {
                Ok(Ok(r)) => replicas = (r.len() as u64).max(1),
                _ => {
                    // Redis is away: lease nothing, fall back at once.
                    quiet_until = Some(tokio::time::Instant::now() + QUIET);
                    lease(&fleet, &low, replicas, false).await;
                    continue;
                }
            }
        }
        if !lease(&fleet, &low, replicas, redis_up).await {
            quiet_until = Some(tokio::time::Instant::now() + QUIET);
        } else if redis_up {
            quiet_until = None;
        }
    }
}

/// How long Redis is left alone after a lease failed.
const QUIET: Duration = Duration::from_secs(1);

/// One pass over every key with a request limit; false when Redis did
/// not answer (every key then got its local share).
async fn lease(fleet: &Fleet, low: &Arc<Notify>, replicas: u64, mut redis_up: bool) -> bool {
    let snap = fleet.live.load();
    let period = snap.config.fleet.rate_window;
    let mut keys = Vec::new();
    if let crate::state::Auth::Keys(store) = &snap.auth {
        keys.extend(store.keys().map(|(_, k)| k.clone()));
    }
    if let Some(overlay) = fleet.live.fleet_keys.load_full() {
        keys.extend(overlay.keys().map(|(_, k)| k.clone()));
    }
    let asked_redis = redis_up;
    for key in keys {
        let Some(budget) = key.fleet_budget(period, low) else {
            continue;
        };
        let now = unix_ms();
        let w = budget.window_at(now);
        let slice = (budget.limit / (4 * replicas)).max(1);
        let mut asks = Vec::new();
        if let Some(n) = budget.wants(w, slice) {
            asks.push((w, n));
        }
        if budget.left_in_window(now) <= AHEAD && budget.wants_ahead(w + 1) {
            asks.push((w + 1, slice));
        }
        for (window, n) in asks {
            let total = if redis_up {
                take(fleet, &key.name, window, n, period).await
            } else {
                None
            };
            match total {
                Some(total) => budget.granted(window, n, total),
                None => {
                    redis_up = false;
                    budget.fall_back(w, (budget.limit / replicas).max(1));
                }
            }
        }
    }
    redis_up || !asked_redis
}

/// Adds `n` to the key's counter for `window`; the new total, or `None`
/// when Redis did not answer in time.
async fn take(fleet: &Fleet, key: &str, window: u64, n: u64, period: Duration) -> Option<u64> {
    let counter = format!("{}:rate:{key}:{window}", fleet.name);
    let mut con = fleet.cmd.clone();
    let mut pipe = redis::pipe();
    let call = pipe
        .atomic()
        .cmd("INCRBY")
        .arg(&counter)
        .arg(n)
        .cmd("PEXPIRE")
        .arg(&counter)
        .arg(period.as_millis() as u64 * 3)
        .ignore()
        .query_async::<(u64,)>(&mut con);
    match tokio::time::timeout(LEASE_TIMEOUT, call).await {
        Ok(Ok((total,))) => Some(total),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "rate slice not leased; local share used");
            None
        }
        Err(_) => None,
    }
}
