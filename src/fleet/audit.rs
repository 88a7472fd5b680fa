//! The fleet's audit trail (contract §7): every event names its replica
//! and is mirrored to `{name}:events`, a capped stream, so
//! `GET /admin/events` on any replica shows the whole fleet's events in
//! order. The mirror is a background task fed by a bounded queue (the
//! emitter never waits); an event Redis could not take stays in its
//! replica's ring, and that replica's view merges it back in.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{Fleet, COMMAND_TIMEOUT};
use crate::events::Event;

/// Events queued for the mirror at most.
pub(super) const QUEUE: usize = 1024;

/// Events kept in the fleet's stream (approximately), and read back.
const KEPT: usize = 1000;

/// Writes this replica's events to the fleet's stream until shutdown.
pub(super) async fn mirror(
    fleet: Arc<Fleet>,
    mut rx: mpsc::Receiver<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stream = format!("{}:events", fleet.name);
    loop {
        let event = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let json = serde_json::to_string(&event).unwrap_or_default();
        let mut con = fleet.cmd.clone();
        let mut cmd = redis::cmd("XADD");
        let write = cmd
            .arg(&stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(KEPT)
            .arg("*")
            .arg("event")
            .arg(json)
            .query_async::<String>(&mut con);
        if !matches!(
            tokio::time::timeout(COMMAND_TIMEOUT, write).await,
            Ok(Ok(_))
        ) {
            tracing::debug!(seq = event.seq, "event not mirrored to the fleet");
        }
    }
}

/// The fleet's events, oldest first: the stream, plus this replica's own
/// events that never reached it; sorted by time, then replica and seq.
pub(super) async fn read(fleet: &Fleet) -> Result<Vec<serde_json::Value>, String> {
    let stream = format!("{}:events", fleet.name);
    let mut con = fleet.cmd.clone();
    let mut cmd = redis::cmd("XREVRANGE");
    let read = cmd
        .arg(&stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(KEPT)
        .query_async::<redis::streams::StreamRangeReply>(&mut con);
    let reply = match tokio::time::timeout(COMMAND_TIMEOUT, read).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("redis unreachable: {e}")),
        Err(_) => return Err("redis unreachable: timed out".into()),
    };
    let mut events: Vec<serde_json::Value> = reply
        .ids
        .iter()
        .filter_map(|id| id.get::<String>("event"))
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect();
    let seen: HashSet<(String, u64)> = events.iter().filter_map(identity).collect();
    for e in fleet.live.events.since(0) {
        let v = serde_json::to_value(&e).unwrap_or_default();
        if identity(&v).is_some_and(|id| !seen.contains(&id)) {
            events.push(v);
        }
    }
    events.sort_by_key(|e| {
        (
            e["time_ms"].as_u64().unwrap_or(0),
            e["replica"].as_str().unwrap_or("").to_string(),
            e["seq"].as_u64().unwrap_or(0),
        )
    });
    Ok(events)
}

/// (replica, seq): one event's identity across the fleet.
fn identity(e: &serde_json::Value) -> Option<(String, u64)> {
    Some((e["replica"].as_str()?.to_string(), e["seq"].as_u64()?))
}
