//! The audit trail: every suspend, resume, reload, ejection and recovery as
//! an event with time, actor, target, reason and before → after.
//!
//! Kept in a bounded in-memory ring for `GET /admin/events` and appended as
//! JSONL to the configured file by a background task, so emitting never
//! waits on disk.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::mpsc;

/// Events kept in memory.
const RING: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Increasing number, for `?since=`.
    pub seq: u64,
    /// Unix milliseconds.
    pub time_ms: u64,
    /// `suspend`, `resume`, `suspension_expired`, `reload`, `reload_rejected`,
    /// `eject`, `recover`, `eject_capped`, `alert`, `fleet_link_up`, `fleet_link_down`;
    /// `abuse_flag`, `abuse_quarantine`, `abuse_unquarantine`.
    pub kind: &'static str,
    pub actor: String,
    pub target: Option<String>,
    pub reason: String,
    pub before: String,
    pub after: String,
    /// Structured fields of kinds that have them (`abuse_flag`: key, kind,
    /// score, cluster, reasons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// Fleet mode: the replica that wrote the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

pub struct EventLog {
    seq: AtomicU64,
    ring: Mutex<VecDeque<Event>>,
    file: Option<mpsc::UnboundedSender<Event>>,
    live: tokio::sync::broadcast::Sender<Event>,
    /// Fleet mode: this replica's id, stamped on every event.
    replica: std::sync::OnceLock<String>,
    /// Fleet mode: events are also handed (never awaited; a full queue
    /// drops) to the task that mirrors them to the fleet's Redis stream.
    mirror: std::sync::OnceLock<mpsc::Sender<Event>>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("seq", &self.seq).finish()
    }
}

/// The fields of an event that the emitter chooses.
pub struct NewEvent<'a> {
    pub kind: &'static str,
    pub actor: &'a str,
    pub target: Option<&'a str>,
    pub reason: &'a str,
    pub before: &'a str,
    pub after: &'a str,
}

impl EventLog {
    /// A log that also appends to `file` (JSONL), when given. Must be
    /// called inside a tokio runtime when `file` is set.
    pub fn new(file: Option<PathBuf>) -> EventLog {
        let file = file.map(|path| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(append(path, rx));
            tx
        });
        EventLog {
            seq: AtomicU64::new(0),
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            file,
            live: tokio::sync::broadcast::channel(256).0,
            replica: std::sync::OnceLock::new(),
            mirror: std::sync::OnceLock::new(),
        }
    }

    /// Fleet mode: names this replica on every event from now on, and
    /// mirrors each one through `mirror`. Set once, at start.
    pub fn join_fleet(&self, replica: &str, mirror: mpsc::Sender<Event>) {
        let _ = self.replica.set(replica.to_string());
        let _ = self.mirror.set(mirror);
    }

    pub fn emit(&self, e: NewEvent<'_>) -> Event {
        self.emit_with(e, None)
    }

    /// [`EventLog::emit`] with structured `detail`.
    pub fn emit_with(&self, e: NewEvent<'_>, detail: Option<serde_json::Value>) -> Event {
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            kind: e.kind,
            actor: e.actor.to_string(),
            target: e.target.map(str::to_string),
            reason: e.reason.to_string(),
            before: e.before.to_string(),
            after: e.after.to_string(),
            detail,
            replica: self.replica.get().cloned(),
        };
        tracing::info!(
            kind = event.kind, actor = %event.actor, target = event.target.as_deref().unwrap_or("-"),
            reason = %event.reason, before = %event.before, after = %event.after, "event"
        );
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(event.clone());
        }
        if let Some(tx) = &self.file {
            let _ = tx.send(event.clone());
        }
        if let Some(tx) = self.mirror.get() {
            let _ = tx.try_send(event.clone());
        }
        // No subscriber is fine; a slow one misses events (and can re-read
        // them with `since`).
        let _ = self.live.send(event.clone());
        event
    }

    /// New events as they happen, for the live stream.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    /// Events after `since` (a `seq`), oldest first.
    pub fn since(&self, since: u64) -> Vec<Event> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().filter(|e| e.seq > since).cloned().collect()
    }
}

async fn append(path: PathBuf, mut rx: mpsc::UnboundedReceiver<Event>) {
    use tokio::io::AsyncWriteExt;
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await;
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the events file; events stay in memory only");
            return;
        }
    };
    while let Some(event) = rx.recv().await {
        let mut line = serde_json::to_vec(&event).expect("serialize event");
        line.push(b'\n');
        if let Err(e) = file.write_all(&line).await {
            tracing::error!(error = %e, "cannot append to the events file");
        }
    }
}
