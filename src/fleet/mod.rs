//! Fleet mode (contract §7): replicas behind one load balancer share their
//! ops changes through Redis, and every change is acknowledged.
//!
//! An ops change (suspend, resume, a chaos fault set or cleared, an abuse
//! quarantine put in force or lifted) is applied locally first, then written
//! to Redis in one atomic script (epoch, state hash, stream entry); each
//! replica's link task follows the stream with a blocking read, applies
//! what other replicas wrote, and acknowledges the epoch. The replica that
//! took the change waits for the acks of every live replica (heartbeat
//! with a TTL), bounded by `ack_timeout`.
//!
//! Redis is never on the request path: requests read the live state, which
//! the link task updates. With Redis slow or gone, changes apply locally,
//! are queued, and are written when the link returns; the conflict rule is
//! last writer wins by the time the operator made the change (see
//! ARCHITECTURE.md).

mod audit;
mod keys;
mod limits;
mod link;
mod shared;
mod store;
pub mod turns;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::FleetConfig;
use crate::state::Live;

pub use keys::{FleetKeys, KeysError};
use store::{Change, Store};
pub use store::{FaultState, Op, Replica};

/// Quarantines the detector decided, waiting for the publisher task.
const QUARANTINE_QUEUE: usize = 256;

/// Every command but the blocking read gives up after this: an ops call
/// never hangs on a frozen Redis.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(750);

/// Why the fleet link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet.redis_url: {0}")]
    Url(#[from] redis::RedisError),
}

/// What a fleet change came to, as the admin API reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The change's epoch; none when Redis could not take it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Live replicas that acknowledged the epoch...
    pub applied: usize,
    /// ...out of this many.
    pub replicas: usize,
    /// From the write to the last ack (or the timeout).
    pub ms: u64,
    /// Live replicas that did not ack within `ack_timeout`.
    pub missing: Vec<String>,
    /// False with `--no-wait`: the change was written, acks not awaited.
    pub waited: bool,
    /// Set when the change is not fleet-wide (yet): it applied on this
    /// replica and is written when Redis is back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The fleet view for `GET /admin/fleet`.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub name: String,
    pub replica: String,
    pub epoch: u64,
    pub replicas: Vec<ReplicaView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    #[serde(flatten)]
    pub replica: Replica,
    /// The routes file differs from the one most replicas run.
    pub routes_differ: bool,
}

/// Where this replica listens, for the fleet view.
pub struct Addresses {
    pub data: SocketAddr,
    pub admin: SocketAddr,
}

/// This replica's end of the fleet.
pub struct Fleet {
    id: String,
    name: String,
    store: Store,
    cmd: ConnectionManager,
    ttl: Duration,
    ack_timeout: Duration,
    live: Arc<Live>,
    addresses: Addresses,
    link_up: AtomicBool,
    applied: AtomicU64,
    /// Highest epoch each replica acknowledged, fed by the ack stream.
    acks: Mutex<HashMap<String, u64>>,
    acked: watch::Sender<u64>,
    /// Changes made while Redis was away, oldest first.
    pending: Mutex<Vec<Change>>,
}

/// The Redis URL to use: the file's, else `$SWITCHYARD_REDIS_URL`.
pub fn redis_url(cfg: &FleetConfig, env: &crate::provider::EnvLookup) -> Option<String> {
    cfg.redis_url
        .clone()
        .or_else(|| env("SWITCHYARD_REDIS_URL"))
        .filter(|u| !u.is_empty())
}

impl Fleet {
    /// Sets up the link (no connection yet: Redis may be down at start)
    /// and spawns its background tasks, which end when `shutdown` fires.
    pub fn start(
        live: Arc<Live>,
        cfg: &FleetConfig,
        url: &str,
        addresses: Addresses,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Fleet>, Vec<tokio::task::JoinHandle<()>>), FleetError> {
        let client = redis::Client::open(url)?;
        let manager = |response: Duration| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(COMMAND_TIMEOUT))
                .set_response_timeout(Some(response))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500))
        };
        let cmd =
            ConnectionManager::new_lazy_with_config(client.clone(), manager(COMMAND_TIMEOUT))?;
        let reader = ConnectionManager::new_lazy_with_config(
            client,
            manager(link::BLOCK + COMMAND_TIMEOUT),
        )?;
        let id = cfg.replica.clone().unwrap_or_else(default_replica_id);
        let fleet = Arc::new(Fleet {
            store: Store::new(&cfg.name),
            name: cfg.name.clone(),
            id,
            cmd,
            ttl: cfg.heartbeat_ttl,
            ack_timeout: cfg.ack_timeout,
            live,
            addresses,
            link_up: AtomicBool::new(false),
            applied: AtomicU64::new(0),
            acks: Mutex::new(HashMap::new()),
            acked: watch::channel(0).0,
            pending: Mutex::new(Vec::new()),
        });
        crate::telemetry::fleet_link(&fleet.id, false);
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(audit::QUEUE);
        fleet.live.events.join_fleet(&fleet.id, events_tx);
        let (shared_tx, shared_rx) = tokio::sync::mpsc::channel(shared::QUEUE);
        let _ = fleet.live.shared_health.set(shared_tx);
        let (quarantine_tx, quarantine_rx) = tokio::sync::mpsc::channel(QUARANTINE_QUEUE);
        let _ = fleet.live.fleet_quarantines.set(quarantine_tx);
        let tasks = vec![
            tokio::spawn(link::heartbeat(fleet.clone(), shutdown.clone())),
            tokio::spawn(shared::run(fleet.clone(), shared_rx, shutdown.clone())),
            tokio::spawn(publish_quarantines(
                fleet.clone(),
                quarantine_rx,
                shutdown.clone(),
            )),
            tokio::spawn(audit::mirror(fleet.clone(), events_rx, shutdown.clone())),
            tokio::spawn(limits::run(
                fleet.clone(),
                Arc::new(tokio::sync::Notify::new()),
                shutdown.clone(),
            )),
            tokio::spawn(link::follow(fleet.clone(), reader, shutdown)),
        ];
        Ok((fleet, tasks))
    }

    /// This replica's id in the fleet.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the last exchange with Redis worked.
    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Relaxed)
    }

    /// Publishes a change already applied here, then waits for the acks
    /// unless `wait` is false. Never fails: a change Redis cannot take is
    /// queued and reported as not fleet-wide.
    pub async fn publish(&self, target: &str, op: Op, actor: &str, wait: bool) -> Report {
        let change = Change {
            target: target.to_string(),
            op,
            actor: actor.to_string(),
            origin: self.id.clone(),
            time_ms: unix_ms(),
        };
        let started = tokio::time::Instant::now();
        let written = if self.queue_if_pending(&change) {
            None
        } else {
            let mut con = self.cmd.clone();
            match tokio::time::timeout(COMMAND_TIMEOUT, self.store.write(&mut con, &change, false))
                .await
            {
                Ok(Ok(epoch)) => epoch,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "fleet change not written; queued until Redis is back");
                    self.queue(change);
                    None
                }
                Err(_) => {
                    tracing::warn!(
                        "fleet change not written (Redis timed out); queued until Redis is back"
                    );
                    self.queue(change);
                    None
                }
            }
        };
        let Some(epoch) = written else {
            return Report {
                applied: 1,
                replicas: 1,
                ms: started.elapsed().as_millis() as u64,
                error: Some(
                    "redis unreachable: applied on this replica only; written to the fleet when Redis is back".into(),
                ),
                ..Report::default()
            };
        };
        if !wait {
            return Report {
                epoch: Some(epoch),
                ms: started.elapsed().as_millis() as u64,
                ..Report::default()
            };
        }
        self.wait(epoch, started).await
    }

    /// Waits until every live replica acknowledged `epoch`, or the ack
    /// timeout; a replica whose heartbeat expired is not waited for.
    async fn wait(&self, epoch: u64, started: tokio::time::Instant) -> Report {
        let deadline = started + self.ack_timeout;
        let mut con = self.cmd.clone();
        let replicas =
            match tokio::time::timeout_at(deadline, self.store.replicas(&mut con)).await {
                Ok(Ok(r)) => r,
                _ => return Report {
                    epoch: Some(epoch),
                    applied: 1,
                    replicas: 1,
                    ms: started.elapsed().as_millis() as u64,
                    waited: true,
                    error: Some(
                        "redis unreachable: the change is written but its acks could not be read"
                            .into(),
                    ),
                    ..Report::default()
                },
            };
        let mut changed = self.acked.subscribe();
        let missing = loop {
            let missing: Vec<String> = {
                let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
                replicas
                    .iter()
                    .filter(|r| r.epoch.max(acks.get(&r.id).copied().unwrap_or(0)) < epoch)
                    .map(|r| r.id.clone())
                    .collect()
            };
            if missing.is_empty() {
                break missing;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                break missing;
            }
        };
        Report {
            epoch: Some(epoch),
            applied: replicas.len() - missing.len(),
            replicas: replicas.len(),
            ms: started.elapsed().as_millis() as u64,
            missing,
            waited: true,
            error: None,
        }
    }

    /// The whole fleet's audit trail, oldest first (see `audit`).
    pub async fn events(&self) -> Result<Vec<serde_json::Value>, String> {
        audit::read(self).await
    }

    /// The live replicas as Redis sees them, flagging routes files that
    /// differ from the most common one.
    pub async fn view(&self) -> Result<View, String> {
        let mut con = self.cmd.clone();
        let read = async {
            let replicas = self.store.replicas(&mut con).await?;
            let epoch = self.store.epoch(&mut con).await?;
            Ok::<_, redis::RedisError>((replicas, epoch))
        };
        let (replicas, epoch) = match tokio::time::timeout(COMMAND_TIMEOUT * 2, read).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(format!("redis unreachable: {e}")),
            Err(_) => return Err("redis unreachable: timed out".into()),
        };
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for r in &replicas {
            *counts.entry(r.routes_hash.as_str()).or_default() += 1;
        }
        let common = counts
            .iter()
            .max_by_key(|(hash, n)| (**n, std::cmp::Reverse(**hash)))
            .map(|(hash, _)| hash.to_string())
            .unwrap_or_default();
        let replicas = replicas
            .iter()
            .map(|r| ReplicaView {
                routes_differ: r.routes_hash != common,
                replica: r.clone(),
            })
            .collect();
        Ok(View {
            name: self.name.clone(),
            replica: self.id.clone(),
            epoch,
            replicas,
        })
    }

    /// Queues `change` behind earlier unwritten ones, so order is kept;
    /// returns false when nothing is pending (write it now).
    fn queue_if_pending(&self, change: &Change) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_empty() {
            return false;
        }
        pending.push(change.clone());
        true
    }

    fn queue(&self, change: Change) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(change);
    }

    /// Notes `epoch` as acknowledged by `replica` and wakes the waiters.
    fn note_ack(&self, replica: String, epoch: u64) {
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        let e = acks.entry(replica).or_default();
        *e = (*e).max(epoch);
        drop(acks);
        self.acked.send_modify(|n| *n += 1);
    }

    /// Records a link transition: an event and the gauge, once per change.
    fn set_link(&self, up: bool) {
        if self.link_up.swap(up, Ordering::Relaxed) == up {
            return;
        }
        crate::telemetry::fleet_link(&self.id, up);
        let (kind, reason, before, after) = if up {
            (
                "fleet_link_up",
                "Redis reachable; fleet state synced",
                "down",
                "up",
            )
        } else {
            (
                "fleet_link_down",
                "Redis unreachable; serving on the last state, changes stay local",
                "up",
                "down",
            )
        };
        self.live.events.emit(crate::events::NewEvent {
            kind,
            actor: &self.id,
            target: None,
            reason,
            before,
            after,
        });
    }
}

/// Publishes the quarantines the detector put in force here, off its
/// thread and off the request path: the detector hands them over with
/// `try_send`, this task writes them (without waiting for the acks).
async fn publish_quarantines(
    fleet: Arc<Fleet>,
    mut rx: tokio::sync::mpsc::Receiver<Vec<crate::abuse::live::Quarantine>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let quarantines = tokio::select! {
            q = rx.recv() => match q {
                Some(q) => q,
                None => return,
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        for q in quarantines {
            let key = q.key.clone();
            let report = fleet
                .publish(&key, Op::Quarantine(q), "abuse-detector", false)
                .await;
            if let Some(e) = report.error {
                tracing::warn!(error = %e, "abuse quarantine not published yet");
            }
        }
    }
}

/// Host name + pid: unique per process on a host, readable in the view.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".into());
    format!("{host}-{}", std::process::id())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
