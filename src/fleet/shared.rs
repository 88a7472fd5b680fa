//! Shared outlier ejections (contract §7): what one replica's recorder
//! decides, every replica applies, and one probe serves the whole fleet.
//!
//! The recorder hands each ejection and recovery to [`run`] through a
//! bounded channel (`try_send`: the request path never waits); this task
//! writes it to Redis under the fleet's cap, and the other replicas'
//! followers apply it ([`apply`]). When a shared ejection runs out, each
//! replica's probe stays gated until this task takes the probe lease
//! (`SET NX PX`): the holder sends the one probe, whose outcome (recover,
//! or eject again) is shared like any other. Redis away: the gate opens
//! and each replica probes for itself, as a single gateway does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::store::HealthEntry;
use super::{unix_ms, Fleet, COMMAND_TIMEOUT};
use crate::events::NewEvent;
use crate::health::Shared;

/// Transitions queued for Redis at most; beyond, the recorder keeps them
/// local (a replica that cannot share still ejects for itself).
pub(super) const QUEUE: usize = 256;

/// How often ejections that ran out are looked for (the probe waits up to
/// this plus one Redis round trip after the end of an ejection).
const SCAN: Duration = Duration::from_millis(100);

/// How long one replica holds the probe lease: if its probe never reports
/// (no traffic, or it died), another replica takes it after this.
pub(super) const PROBE_LEASE: Duration = Duration::from_secs(5);

/// Publishes this replica's transitions and takes probe leases, until
/// shutdown.
pub(super) async fn run(
    fleet: Arc<Fleet>,
    mut rx: mpsc::Receiver<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SCAN);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When this replica last tried each target's lease.
    let mut tried: HashMap<String, Instant> = HashMap::new();
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => Some(m),
                None => return,
            },
            _ = tick.tick() => None,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match msg {
            Some(Shared::Ejected {
                target,
                backoff,
                why,
            }) => {
                tried.remove(&target);
                publish_ejection(&fleet, &target, backoff, &why).await;
            }
            Some(Shared::Recovered { target }) => {
                tried.remove(&target);
                publish_recovery(&fleet, &target).await;
            }
            None => leases(&fleet, &mut tried).await,
        }
    }
}

/// The routes holding `target`, each with its cap on shared ejections:
/// the configured share of its targets, at least one.
fn caps(fleet: &Fleet, target: &str) -> Vec<(usize, Vec<String>)> {
    let snap = fleet.live.load();
    let share = snap.config.fleet.max_ejected_share;
    snap.table
        .routes
        .values()
        .filter(|r| r.targets.iter().any(|t| t.name == target))
        .map(|r| {
            let names: Vec<String> = r.targets.iter().map(|t| t.name.clone()).collect();
            let cap = ((share * names.len() as f64).floor() as usize).max(1);
            (cap, names)
        })
        .collect()
}

async fn publish_ejection(fleet: &Fleet, target: &str, backoff: Duration, why: &str) {
    let until_ms = unix_ms().saturating_add(backoff.as_millis() as u64);
    let routes = caps(fleet, target);
    let mut con = fleet.cmd.clone();
    let write = fleet
        .store
        .eject(&mut con, target, until_ms, why, &fleet.id, &routes);
    match tokio::time::timeout(COMMAND_TIMEOUT, write).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            // Over the cap: lift it here too, so this replica does not
            // take out what the fleet refused to.
            let Some(h) = fleet.live.load().health.targets.get(target).cloned() else {
                return;
            };
            if h.clear_ejection("ejection lifted: over the fleet's max_ejected_share") {
                crate::telemetry::ejection(target, "capped");
                fleet.live.events.emit(NewEvent {
                    kind: "eject_capped",
                    actor: &format!("outlier-detection@{}", fleet.id),
                    target: Some(target),
                    reason: &format!(
                        "{why}; not ejected: enough of a route's targets are ejected fleet-wide (fleet.max_ejected_share)"
                    ),
                    before: "ejected",
                    after: "degraded",
                });
            }
        }
        failed => {
            if let Ok(Err(e)) = failed {
                tracing::debug!(error = %e, "shared ejection not written");
            }
            open_gate(fleet, target);
        }
    }
}

async fn publish_recovery(fleet: &Fleet, target: &str) {
    let mut con = fleet.cmd.clone();
    let write = fleet.store.recover(&mut con, target, &fleet.id);
    if !matches!(
        tokio::time::timeout(COMMAND_TIMEOUT, write).await,
        Ok(Ok(()))
    ) {
        tracing::debug!(target_name = %target, "shared recovery not written");
    }
}

/// Redis could not be asked: this replica probes for itself.
fn open_gate(fleet: &Fleet, target: &str) {
    if let Some(h) = fleet.live.load().health.targets.get(target) {
        h.open_probe();
    }
}

/// Takes the probe lease of every target whose ejection ran out and whose
/// probe is still gated; retries a lost lease once it may have expired.
async fn leases(fleet: &Fleet, tried: &mut HashMap<String, Instant>) {
    let now = Instant::now();
    let snap = fleet.live.load();
    for (name, h) in &snap.health.targets {
        if !h.probe_gated() || !h.awaiting_probe(now) {
            tried.remove(name);
            continue;
        }
        if tried.get(name).is_some_and(|t| now < *t + PROBE_LEASE) {
            continue;
        }
        tried.insert(name.clone(), now);
        let mut con = fleet.cmd.clone();
        let take = fleet.store.lease(&mut con, name, &fleet.id, PROBE_LEASE);
        match tokio::time::timeout(COMMAND_TIMEOUT, take).await {
            Ok(Ok(true)) => h.open_probe(),
            Ok(Ok(false)) => {}
            _ => h.open_probe(),
        }
    }
}

/// Applies another replica's shared ejection or recovery here (never
/// published again); audited once, naming the replica it came from.
pub(super) fn apply(fleet: &Fleet, e: &HealthEntry) {
    let snap = fleet.live.load();
    let Some(h) = snap.health.targets.get(&e.target) else {
        return;
    };
    let actor = format!("outlier-detection@{}", e.origin);
    match e.until_ms {
        Some(until) => {
            let left = Duration::from_millis(until.saturating_sub(unix_ms()));
            if left.is_zero() {
                return;
            }
            if h.apply_ejection(Instant::now(), left, &e.why) {
                crate::telemetry::ejection(&e.target, "fleet");
                fleet.live.events.emit(NewEvent {
                    kind: "eject",
                    actor: &actor,
                    target: Some(&e.target),
                    reason: &e.why,
                    before: "healthy",
                    after: &format!(
                        "ejected for {} (shared by {})",
                        humantime::format_duration(Duration::from_secs(left.as_secs().max(1))),
                        e.origin
                    ),
                });
            }
        }
        None => {
            if h.clear_ejection(&format!("recovered: a probe succeeded on {}", e.origin)) {
                fleet.live.events.emit(NewEvent {
                    kind: "recover",
                    actor: &actor,
                    target: Some(&e.target),
                    reason: "a probe request succeeded",
                    before: "ejected",
                    after: "healthy",
                });
            }
        }
    }
}
