//! The link's two background tasks: the heartbeat, and the follower that
//! syncs with Redis, applies other replicas' changes from a blocking
//! stream read, and acknowledges them. Both only ever touch the live state
//! through `Live`, the same calls the admin API makes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use sha2::Digest;
use tokio::sync::watch;

use super::store::{self, Change, FaultState, Op, Replica};
use super::{unix_ms, Fleet, COMMAND_TIMEOUT};
use crate::health::Suspension;

/// How long one blocking read waits for a change. Each empty return is
/// also the backstop: the follower notices a gap or a dead link within it.
pub(super) const BLOCK: Duration = Duration::from_secs(1);

/// Pause before retrying a Redis that did not answer.
const RETRY: Duration = Duration::from_millis(250);

/// A quarantine the detector put in force this recently may still be on
/// its way to Redis (the publisher task writes it): a sync does not lift it.
const QUARANTINE_GRACE_SECS: u64 = 10;

/// Publishes this replica's heartbeat every third of the TTL.
pub(super) async fn heartbeat(fleet: Arc<Fleet>, mut shutdown: watch::Receiver<bool>) {
    let every = (fleet.ttl / 3).max(Duration::from_millis(200));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut con = fleet.cmd.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let me = Replica {
            id: fleet.id.clone(),
            data: fleet.addresses.data.to_string(),
            admin: fleet.addresses.admin.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            routes_hash: routes_hash(&fleet),
            epoch: fleet.applied.load(Ordering::Relaxed),
            heartbeat_ms: unix_ms(),
        };
        let beat = fleet.store.heartbeat(&mut con, &me, fleet.ttl);
        match tokio::time::timeout(COMMAND_TIMEOUT, beat).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "fleet heartbeat failed"),
            Err(_) => tracing::debug!("fleet heartbeat timed out"),
        }
    }
}

/// SHA-256 of the effective table (the routes file after env overrides,
/// without this replica's own id), short: formatting and comments do not
/// count, a reload does.
fn routes_hash(fleet: &Fleet) -> String {
    let mut config = fleet.live.load().config.clone();
    config.fleet.replica = None;
    let text = toml::to_string(&config).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..8])
}

/// Where the follower reads from next.
struct Cursor {
    changes: String,
    acks: String,
    health: String,
}

/// Syncs, then follows the change and ack streams until shutdown; on any
/// error marks the link down and syncs again once Redis answers.
pub(super) async fn follow(
    fleet: Arc<Fleet>,
    mut reader: ConnectionManager,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut cursor: Option<Cursor> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(at) = &mut cursor else {
            let synced = tokio::select! {
                r = tokio::time::timeout(COMMAND_TIMEOUT * 4, sync(&fleet)) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match synced {
                Ok(Ok(c)) => {
                    cursor = Some(c);
                    fleet.set_link(true);
                }
                failed => {
                    if let Ok(Err(e)) = failed {
                        tracing::debug!(error = %e, "fleet sync failed");
                    }
                    fleet.set_link(false);
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
            }
            continue;
        };
        let read = tokio::select! {
            r = fleet.store.read(&mut reader, &at.changes, &at.acks, &at.health, BLOCK) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match read {
            Ok(Some(reply)) => {
                if !take(&fleet, reply, at).await {
                    // A gap in the epochs (the stream was trimmed past us):
                    // the state hash is the truth, sync from it.
                    cursor = None;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "fleet read failed");
                fleet.set_link(false);
                cursor = None;
            }
        }
    }
}

/// Applies the changes and notes the acks of one read; false on a gap.
async fn take(fleet: &Fleet, reply: redis::streams::StreamReadReply, at: &mut Cursor) -> bool {
    let mut applied = None;
    let mut keys_changed = false;
    for key in reply.keys {
        if key.key == fleet.store.acks {
            for id in &key.ids {
                if let Some((replica, epoch)) = store::ack(id) {
                    fleet.note_ack(replica, epoch);
                }
            }
            if let Some(last) = key.ids.last() {
                at.acks = last.id.clone();
            }
            continue;
        }
        if key.key == fleet.store.health {
            for id in &key.ids {
                if id.get::<String>("op").as_deref() == Some("keys") {
                    keys_changed = true;
                    continue;
                }
                match store::health_entry(id) {
                    Some(e) if e.origin != fleet.id => super::shared::apply(fleet, &e),
                    Some(_) => {}
                    None => tracing::warn!(id = %id.id, "malformed shared ejection skipped"),
                }
            }
            if let Some(last) = key.ids.last() {
                at.health = last.id.clone();
            }
            continue;
        }
        for id in &key.ids {
            at.changes = id.id.clone();
            let Some(entry) = store::entry(id) else {
                tracing::warn!(id = %id.id, "malformed fleet change skipped");
                continue;
            };
            let expected = fleet.applied.load(Ordering::Relaxed) + 1;
            if entry.epoch > expected {
                return false;
            }
            if entry.epoch < expected {
                continue;
            }
            if entry.change.origin != fleet.id {
                apply(fleet, &entry.change).await;
            }
            fleet.applied.store(entry.epoch, Ordering::Relaxed);
            applied = Some(entry.epoch);
        }
    }
    if keys_changed {
        super::keys::reload(fleet).await;
    }
    if let Some(epoch) = applied {
        ack(fleet, epoch).await;
    }
    true
}

/// Applies another replica's change locally, without publishing it again;
/// the event names the replica it came from.
async fn apply(fleet: &Fleet, c: &Change) {
    let actor = attributed(&c.actor, &c.origin);
    let result = match &c.op {
        Op::Suspend(s) => suspend(fleet, &c.target, s, &actor).await,
        Op::Resume => fleet
            .live
            .resume(&c.target, &actor, "resume")
            .await
            .map(|_| ()),
        Op::Fault(f) => fault(fleet, &c.target, f, &actor),
        Op::ClearFault => fleet.live.clear_fault(&c.target, &actor).map(|_| ()),
        Op::Quarantine(q) => {
            quarantine(fleet, q, &actor).await;
            Ok(())
        }
        Op::Unquarantine => {
            unquarantine(fleet, &c.target, &actor).await;
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::warn!(target_name = %c.target, origin = %c.origin, error = %e, "fleet change not applied here");
    }
}

/// Suspends unless the same suspension is already in place or has run out.
async fn suspend(
    fleet: &Fleet,
    target: &str,
    s: &Suspension,
    actor: &str,
) -> Result<(), crate::state::OpsError> {
    let now = unix_ms() / 1000;
    let ttl = match s.until {
        Some(u) if u <= now => return Ok(()),
        Some(u) => Some(Duration::from_secs(u - now)),
        None => None,
    };
    let snap = fleet.live.load();
    let current = snap.health.targets.get(target).and_then(|h| h.suspension());
    if current.is_some_and(|c| c.reason == s.reason && c.until == s.until) {
        return Ok(());
    }
    fleet.live.suspend(target, &s.reason, actor, ttl).await?;
    Ok(())
}

/// Injects a fault with the expiry it was set with, unless the same one is
/// already in force.
fn fault(
    fleet: &Fleet,
    target: &str,
    f: &FaultState,
    actor: &str,
) -> Result<(), crate::state::OpsError> {
    let current = fleet.live.load().faults.get(target);
    if current.is_some_and(|c| c.fault == f.fault && c.until == f.until) {
        return Ok(());
    }
    fleet
        .live
        .set_fault_until(target, f.fault.clone(), f.until, actor)
}

/// Puts a quarantine in force unless the same one already is.
async fn quarantine(fleet: &Fleet, q: &crate::abuse::live::Quarantine, actor: &str) {
    if fleet.live.abuse.quarantines().iter().any(|c| c == q) {
        return;
    }
    if let Some(e) = fleet.live.apply_quarantine(q.clone(), actor).await {
        tracing::warn!(key = %q.key, error = %e, "fleet quarantine applied but not persisted");
    }
}

async fn unquarantine(fleet: &Fleet, key: &str, actor: &str) {
    if let (_, Some(e)) = fleet.live.unquarantine(key, actor).await {
        tracing::warn!(key = %key, error = %e, "fleet unquarantine applied but not persisted");
    }
}

/// `actor@origin`, once: a change re-seeded by another replica keeps its
/// first origin.
fn attributed(actor: &str, origin: &str) -> String {
    if actor.contains('@') {
        actor.to_string()
    } else {
        format!("{actor}@{origin}")
    }
}

async fn ack(fleet: &Fleet, epoch: u64) {
    let mut con = fleet.cmd.clone();
    let write = fleet.store.ack(&mut con, &fleet.id, epoch);
    if !matches!(
        tokio::time::timeout(COMMAND_TIMEOUT, write).await,
        Ok(Ok(()))
    ) {
        tracing::debug!(epoch, "fleet ack not written; the heartbeat carries it");
    }
}

/// Brings this replica and Redis into agreement: re-seeds an empty Redis
/// from the local suspensions, writes the changes made while Redis was
/// away, then takes Redis's state as the truth and acknowledges it.
async fn sync(fleet: &Fleet) -> redis::RedisResult<Cursor> {
    let mut con = fleet.cmd.clone();
    if !fleet.store.has_epoch(&mut con).await? {
        reseed(fleet, &mut con).await?;
    }
    flush_pending(fleet, &mut con).await?;
    let state = fleet.store.state(&mut con).await?;
    let snap = fleet.live.load();
    let now = unix_ms() / 1000;
    for (target, json) in &state.suspensions {
        let Ok(s) = serde_json::from_str::<Suspension>(json) else {
            continue;
        };
        if s.until.is_some_and(|u| u <= now) {
            continue;
        }
        if let Err(e) = suspend(fleet, target, &s, &s.actor).await {
            tracing::warn!(target_name = %target, error = %e, "fleet suspension not applied here");
        }
    }
    for (target, _) in snap.health.suspensions() {
        if !state.suspensions.contains_key(&target) {
            if let Err(e) = fleet.live.resume(&target, "fleet-sync", "resume").await {
                tracing::warn!(target_name = %target, error = %e, "fleet resume not applied here");
            }
        }
    }
    // Chaos faults: the hash is the truth, with each fault's own expiry.
    for (target, json) in &state.faults {
        let Ok(f) = serde_json::from_str::<FaultState>(json) else {
            continue;
        };
        if let Err(e) = fault(fleet, target, &f, "fleet-sync") {
            tracing::warn!(target_name = %target, error = %e, "fleet fault not applied here");
        }
    }
    for (target, _) in snap.faults.all() {
        if !state.faults.contains_key(&target) {
            let _ = fleet.live.clear_fault(&target, "fleet-sync");
        }
    }
    // Abuse quarantines: likewise, but one the detector just decided here
    // may not be written yet, so it stays.
    for (key, json) in &state.quarantines {
        if let Ok(q) = serde_json::from_str::<crate::abuse::live::Quarantine>(json) {
            quarantine(fleet, &q, "fleet-sync").await;
        } else {
            tracing::warn!(key = %key, "malformed fleet quarantine skipped");
        }
    }
    for q in fleet.live.abuse.quarantines() {
        if !state.quarantines.contains_key(&q.key) && q.since + QUARANTINE_GRACE_SECS < now {
            unquarantine(fleet, &q.key, "fleet-sync").await;
        }
    }
    // Shared ejections still in force (their origin is not kept here:
    // the event names the fleet).
    for (target, until_ms) in &state.ejected {
        let entry = store::HealthEntry {
            target: target.clone(),
            until_ms: Some(*until_ms),
            why: "shared ejection in force when this replica synced".into(),
            origin: "fleet".into(),
        };
        super::shared::apply(fleet, &entry);
    }
    super::keys::reload(fleet).await;
    fleet.applied.store(state.epoch, Ordering::Relaxed);
    fleet.store.ack(&mut con, &fleet.id, state.epoch).await?;
    Ok(Cursor {
        changes: state.changes_id,
        acks: state.acks_id,
        health: state.health_id,
    })
}

/// Writes every local suspension, chaos fault and quarantine to an empty
/// Redis; with several replicas
/// doing so at once, the conflict rule keeps the latest of each.
async fn reseed(fleet: &Fleet, con: &mut ConnectionManager) -> redis::RedisResult<()> {
    let now = unix_ms() / 1000;
    for (target, s) in fleet.live.load().health.suspensions() {
        if s.until.is_some_and(|u| u <= now) {
            continue;
        }
        let change = Change {
            target: target.clone(),
            actor: s.actor.clone(),
            origin: fleet.id.clone(),
            time_ms: s.since * 1000,
            op: Op::Suspend(s),
        };
        fleet.store.write(con, &change, true).await?;
        tracing::info!(target_name = %target, "fleet suspension re-seeded into an empty Redis");
    }
    // A fault keeps its expiry; when it was set is not kept, so any later
    // change to it wins.
    for (target, f) in fleet.live.load().faults.all() {
        let change = Change {
            target: target.clone(),
            actor: "fleet-reseed".into(),
            origin: fleet.id.clone(),
            time_ms: 0,
            op: Op::Fault(FaultState {
                fault: f.fault.clone(),
                until: f.until,
            }),
        };
        fleet.store.write(con, &change, true).await?;
        tracing::info!(target_name = %target, "fleet chaos fault re-seeded into an empty Redis");
    }
    for q in fleet.live.abuse.quarantines() {
        let change = Change {
            target: q.key.clone(),
            actor: "abuse-detector".into(),
            origin: fleet.id.clone(),
            time_ms: q.since * 1000,
            op: Op::Quarantine(q),
        };
        fleet.store.write(con, &change, true).await?;
        tracing::info!(key = %change.target, "fleet quarantine re-seeded into an empty Redis");
    }
    Ok(())
}

/// Writes the changes made while Redis was away, oldest first; one that a
/// newer change to the same target overtook is dropped.
async fn flush_pending(fleet: &Fleet, con: &mut ConnectionManager) -> redis::RedisResult<()> {
    loop {
        let next = {
            let pending = fleet.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.first().cloned()
        };
        let Some(change) = next else {
            return Ok(());
        };
        fleet.store.write(con, &change, true).await?;
        let mut pending = fleet.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.first() == Some(&change) {
            pending.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::attributed;

    #[test]
    fn a_change_names_its_first_origin_only() {
        assert_eq!(attributed("cli:ann", "a"), "cli:ann@a");
        assert_eq!(attributed("cli:ann@a", "b"), "cli:ann@a");
    }
}
