//! The live detector, off the request path.
//!
//! A request that passed authentication and decoding becomes a [`Pending`]
//! record: the same [`Record`] the offline scan builds (features, never the
//! text). It travels with the answer and is handed over when the answer
//! ends — so it carries the output tokens the vendor reported, as the
//! key's token reservation is settled — with `try_send` on a bounded
//! queue: a full queue drops the record and counts it; the request never
//! waits. One thread (`worker.rs`) runs the detector over the queue (it is
//! CPU-only) and applies the [`Policy`] to each flag: a flag is kept for
//! the admin API and reported to the gateway (audit event, metric); in
//! `enforce` mode the key is also quarantined (throttled or suspended)
//! until ops lift it.
//!
//! Every change goes through [`Guard::quarantine`] and
//! [`Guard::unquarantine`]. In fleet mode the gateway publishes them: the
//! detector's quarantines through `Live::publish_quarantines` (a bounded
//! queue a fleet task drains), ops unquarantines from the admin handler;
//! other replicas' changes come back through these same two calls.

mod policy;
mod quarantine;
#[cfg(test)]
mod tests;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use governor::clock::{Clock as _, DefaultClock};
use serde::Serialize;
use serde_json::Value;

use super::detector::{Flag, Settings};
use super::log::{LogEntry, LogSink};
use super::record::{Meta, Record};
use crate::model::Dialect;
use quarantine::{load_quarantines, save_quarantines, Active, QuarantineFile};

pub use policy::{Action, Mode, Options, Policy, Scope};
pub use quarantine::{Quarantine, Refusal};

/// Why a guard could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("abuse.quarantine_file: cannot read {path}: {message}")]
    Quarantines { path: String, message: String },
    #[error("abuse.log: cannot open {path}: {message}")]
    Log { path: String, message: String },
}

/// One flag as the admin API lists it: the flag (contract §9 fields), the
/// mode it was raised in and the keys it quarantined.
#[derive(Debug, Clone, Serialize)]
pub struct FlagEntry {
    #[serde(flatten)]
    pub flag: Flag,
    pub mode: Mode,
    pub action: Option<Action>,
    pub quarantined: Vec<String>,
}

/// What the worker reports to the gateway for each flag.
#[derive(Debug, Clone)]
pub struct Report {
    pub entry: FlagEntry,
    /// The quarantines this flag put in force (none outside `enforce`).
    pub quarantines: Vec<Quarantine>,
    /// Set when the quarantine file could not be written.
    pub persist_error: Option<String>,
}

/// Who sent a request, as the request path knows it.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The app key's name (in `any_key` mode, [`anonymous_name`]).
    pub key: &'a str,
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub dialect: Dialect,
    pub route: &'a str,
}

/// The name an unnamed key (`any_key` mode) is watched under: `anon-` and
/// the first 8 hex digits of its SHA-256, never the key itself.
pub fn anonymous_name(presented: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(presented.as_bytes());
    format!("anon-{}", hex::encode(&digest[..4]))
}

/// The time records are stamped with: the wall clock, or a pinned time
/// (for tests and replays of recorded traffic through a live gateway).
#[derive(Debug, Default)]
struct Clock {
    /// Bits of an `f64` of unix seconds; 0: the wall clock.
    pinned: AtomicU64,
}

impl Clock {
    fn now(&self) -> f64 {
        match self.pinned.load(Ordering::Relaxed) {
            0 => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            bits => f64::from_bits(bits),
        }
    }
}

/// The live detector's handle, shared by the request path, the admin API
/// and the worker.
pub struct Guard {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("policy", &**self.inner.policy.load())
            .finish()
    }
}

struct Inner {
    records: SyncSender<Record>,
    /// Taken by [`Guard::start`].
    worker: Mutex<Option<(Receiver<Record>, Settings)>>,
    log: Option<LogSink>,
    clock: Clock,
    policy: ArcSwap<Policy>,
    quarantines: ArcSwap<HashMap<String, Arc<Active>>>,
    flags: Mutex<VecDeque<FlagEntry>>,
    max_flags: usize,
    file: Option<PathBuf>,
    /// Serialises writes of the quarantine file; never taken by a request.
    file_lock: Mutex<()>,
    dropped: AtomicU64,
}

impl Guard {
    /// Builds the guard: restores saved quarantines, opens the traffic log
    /// (its writer thread starts here). The detector starts with
    /// [`Guard::start`].
    pub fn new(opts: Options) -> Result<Guard, GuardError> {
        let saved = match &opts.quarantine_file {
            Some(p) => load_quarantines(p)?,
            None => Vec::new(),
        };
        let log = match &opts.log {
            Some(p) => Some(LogSink::spawn(p, opts.queue, opts.log_bodies).map_err(|e| {
                GuardError::Log {
                    path: p.display().to_string(),
                    message: e.to_string(),
                }
            })?),
            None => None,
        };
        let (records, rx) = mpsc::sync_channel(opts.queue.max(1));
        let map = saved
            .into_iter()
            .map(|q| (q.key.clone(), Arc::new(Active::new(q))))
            .collect();
        Ok(Guard {
            inner: Arc::new(Inner {
                records,
                worker: Mutex::new(Some((rx, opts.settings))),
                log,
                clock: Clock::default(),
                policy: ArcSwap::from_pointee(opts.policy),
                quarantines: ArcSwap::from_pointee(map),
                flags: Mutex::new(VecDeque::new()),
                max_flags: opts.max_flags.max(1),
                file: opts.quarantine_file,
                file_lock: Mutex::new(()),
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// Starts the detector thread; `report` is called on it for each flag.
    /// The thread ends when the guard is dropped. A second call does
    /// nothing.
    pub fn start(&self, report: impl Fn(&Report) + Send + 'static) {
        let Some((rx, settings)) = lock(&self.inner.worker).take() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("abuse-detector".into())
            .spawn(move || worker::run(weak, rx, settings, report));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the abuse detector thread");
        }
    }

    /// Applies a reloaded `[abuse]` policy to the next flags.
    pub fn set_policy(&self, policy: Policy) {
        self.inner.policy.store(Arc::new(policy));
    }

    pub fn policy(&self) -> Policy {
        **self.inner.policy.load()
    }

    /// Whether the request path has anything to do: records to make, or
    /// quarantines to check.
    pub fn watching(&self) -> bool {
        self.policy().mode != Mode::Off || !self.inner.quarantines.load().is_empty()
    }

    /// Stamps records with `ts` (unix seconds) instead of the wall clock
    /// from now on, so recorded traffic can be replayed through a live
    /// gateway at its own pace; `None` goes back to the wall clock.
    pub fn pin_clock(&self, ts: Option<f64>) {
        let bits = ts.map_or(0, |t| t.max(f64::MIN_POSITIVE).to_bits());
        self.inner.clock.pinned.store(bits, Ordering::Relaxed);
    }

    /// Whether `key` may make a request now. Lock-free: one `ArcSwap`
    /// load, and a throttled key's rate limiter.
    pub fn check(&self, key: &str) -> Result<(), Refusal> {
        let map = self.inner.quarantines.load();
        let Some(active) = map.get(key) else {
            return Ok(());
        };
        match (&active.limiter, active.quarantine.action) {
            (_, Action::Suspend) => Err(Refusal::Suspended),
            (Some(l), Action::Throttle) => l.check().map_err(|n| Refusal::Throttled {
                retry_after: n.wait_time_from(DefaultClock::default().now()),
            }),
            (None, Action::Throttle) => Ok(()),
        }
    }

    /// The record of one request, to hand over when its answer ends; `None`
    /// when the mode is `off` or the body is not JSON. The features are
    /// computed here, once; the record keeps no text.
    pub fn begin(&self, who: Who<'_>, body: &[u8]) -> Option<Pending> {
        if self.policy().mode == Mode::Off {
            return None;
        }
        let mut body: Value = serde_json::from_slice(body).ok()?;
        let dialect = match who.dialect {
            Dialect::Responses => Dialect::OpenAi,
            d => d,
        };
        let meta = Meta {
            ts: 0.0,
            key: who.key,
            ip: who.ip,
            user_agent: who.user_agent,
            dialect: Some(dialect),
            output_tokens: 0,
        };
        let record = SCRATCH.with(|s| Record::from_body(meta, &body, &mut s.borrow_mut()));
        let log = self.inner.log.as_ref().map(|sink| {
            if !sink.bodies {
                super::log::redact(&mut body);
            }
            LogEntry {
                ts: 0.0,
                key: who.key.to_string(),
                ip: who.ip.to_string(),
                user_agent: who.user_agent.to_string(),
                dialect: dialect.as_str(),
                route: who.route.to_string(),
                body,
                output_tokens: 0,
            }
        });
        Some(Pending {
            inner: self.inner.clone(),
            record: Some(record),
            log,
            output_tokens: 0,
        })
    }

    /// Puts `quarantines` in force (replacing any for the same keys) and
    /// writes the file. The one place a quarantine starts (the detector's,
    /// or another replica's in fleet mode); publishing is the caller's.
    pub fn quarantine(&self, quarantines: &[Quarantine]) -> Option<String> {
        if quarantines.is_empty() {
            return None;
        }
        self.inner.quarantines.rcu(|map| {
            let mut map = HashMap::clone(map);
            for q in quarantines {
                map.insert(q.key.clone(), Arc::new(Active::new(q.clone())));
            }
            map
        });
        self.inner.persist()
    }

    /// Lifts `key`'s quarantine; what it was (or `None`), and the error of
    /// the file write if it failed. The one place a quarantine ends.
    pub fn unquarantine(&self, key: &str) -> (Option<Quarantine>, Option<String>) {
        let mut old = None;
        self.inner.quarantines.rcu(|map| {
            let mut map = HashMap::clone(map);
            old = map.remove(key).map(|a| a.quarantine.clone());
            map
        });
        let error = old.as_ref().and_then(|_| self.inner.persist());
        (old, error)
    }

    /// The quarantines in force, by key.
    pub fn quarantines(&self) -> Vec<Quarantine> {
        let mut all: Vec<Quarantine> = self
            .inner
            .quarantines
            .load()
            .values()
            .map(|a| a.quarantine.clone())
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Recent flags, newest first.
    pub fn flags(&self) -> Vec<FlagEntry> {
        lock(&self.inner.flags).iter().rev().cloned().collect()
    }

    /// Records dropped because the detector's queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Inner {
    /// Hands a finished record to the detector without waiting.
    fn submit(&self, record: Record) {
        match self.records.try_send(record) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::abuse_record_dropped("detector");
            }
        }
    }

    /// Writes the quarantines in force; the error, if the write failed.
    fn persist(&self) -> Option<String> {
        let path = self.file.as_ref()?;
        let _one_writer = lock(&self.file_lock);
        let mut quarantines: Vec<Quarantine> = self
            .quarantines
            .load()
            .values()
            .map(|a| a.quarantine.clone())
            .collect();
        quarantines.sort_by(|a, b| a.key.cmp(&b.key));
        match save_quarantines(path, &QuarantineFile { quarantines }) {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, "the quarantine file does not hold the live quarantines");
                Some(format!("cannot write {}: {e}", path.display()))
            }
        }
    }
}

/// A request's record, handed to the detector (and the traffic log) when
/// dropped: when its answer ended, or when it failed.
pub struct Pending {
    inner: Arc<Inner>,
    record: Option<Record>,
    log: Option<LogEntry>,
    output_tokens: u64,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("output_tokens", &self.output_tokens)
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// The output tokens the vendor reported for the answer.
    pub fn settle(&mut self, output_tokens: u64) {
        self.output_tokens = output_tokens;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let ts = self.inner.clock.now();
        if let Some(mut r) = self.record.take() {
            r.ts = ts;
            r.output_tokens = u32::try_from(self.output_tokens).unwrap_or(u32::MAX);
            self.inner.submit(r);
        }
        if let (Some(mut entry), Some(sink)) = (self.log.take(), &self.inner.log) {
            entry.ts = ts;
            entry.output_tokens = self.output_tokens;
            sink.submit(entry);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
