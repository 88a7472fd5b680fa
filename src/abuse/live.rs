//! The live detector, off the request path.
//!
//! A request that passed authentication and decoding becomes a [`Pending`]
//! record: the same [`Record`] the offline scan builds (features, never the
//! text). It travels with the answer and is handed over when the answer
//! ends — so it carries the output tokens the vendor reported, as the
//! key's token reservation is settled — with `try_send` on a bounded
//! queue: a full queue drops the record and counts it; the request never
//! waits. One thread runs the [`Detector`] over the queue (the detector is
//! CPU-only) and applies the [`Policy`] to each flag: a flag is kept for
//! the admin API and reported to the gateway (audit event, metric); in
//! `enforce` mode the key is also quarantined (throttled or suspended)
//! until ops lift it.
//!
//! Quarantines are local to this gateway. Every change goes through
//! [`Guard::quarantine`] and [`Guard::unquarantine`], the one seam where a
//! fleet-wide publication can be added later.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::detector::{Detector, Flag, Settings};
use super::log::{LogEntry, LogSink};
use super::record::{Meta, Record};
use crate::model::Dialect;

/// What the gateway does about abuse (`[abuse] mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Nothing is recorded.
    Off,
    /// Flags are raised; no key is touched.
    #[default]
    Observe,
    /// Flags are raised and the flagged key is quarantined.
    Enforce,
}

/// What `enforce` does to a flagged key (`[abuse] action`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Requests per minute cut to `throttle_rpm`.
    #[default]
    Throttle,
    /// Every request refused (403).
    Suspend,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Throttle => "throttle",
            Action::Suspend => "suspend",
        }
    }
}

/// Which keys a flag quarantines (`[abuse] scope`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The flagged key only.
    #[default]
    Key,
    /// The flagged key and, for a key farm, the sibling keys the detector
    /// counted as the same campaign (never every key sharing a client).
    Cluster,
}

/// What the worker does with a flag; replaced on reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub action: Action,
    pub throttle_rpm: NonZeroU32,
    pub scope: Scope,
}

/// What a guard is built from: start-only settings and the first policy.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: Policy,
    /// Records waiting for the detector.
    pub queue: usize,
    /// Recent flags kept for the admin API.
    pub max_flags: usize,
    pub quarantine_file: Option<PathBuf>,
    /// The traffic log (contract §9), when recorded.
    pub log: Option<PathBuf>,
    pub log_bodies: bool,
    pub settings: Settings,
}

/// Why a guard could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("abuse.quarantine_file: cannot read {path}: {message}")]
    Quarantines { path: String, message: String },
    #[error("abuse.log: cannot open {path}: {message}")]
    Log { path: String, message: String },
}

/// A key taken out of normal service by a flag, until ops lift it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantine {
    pub key: String,
    pub action: Action,
    /// Requests per minute left to a throttled key.
    pub rpm: Option<u32>,
    /// Unix seconds.
    pub since: u64,
    /// The flagged key that led here: this key, or its cluster's.
    pub flagged_key: String,
    pub kind: String,
    pub score: f64,
    pub cluster: Option<String>,
    pub reasons: Vec<String>,
}

/// A quarantine in force.
struct Active {
    quarantine: Quarantine,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl Active {
    fn new(quarantine: Quarantine) -> Active {
        let limiter = quarantine
            .rpm
            .and_then(NonZeroU32::new)
            .filter(|_| quarantine.action == Action::Throttle)
            .map(|n| RateLimiter::direct(Quota::per_minute(n)));
        Active {
            quarantine,
            limiter,
        }
    }
}

/// Why a quarantined key's request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Suspended,
    Throttled { retry_after: Duration },
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

#[derive(Serialize, Deserialize, Default)]
struct QuarantineFile {
    quarantines: Vec<Quarantine>,
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
            .spawn(move || run(weak, rx, settings, report));
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
    /// writes the file. The one place a quarantine starts: a fleet-wide
    /// publication belongs here.
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

/// The detector thread: observes each record, applies the policy to each
/// flag. Ends when the guard is gone.
fn run(weak: Weak<Inner>, rx: Receiver<Record>, settings: Settings, report: impl Fn(&Report)) {
    let mut detector = Detector::new(settings);
    while let Ok(record) = rx.recv() {
        let Some(flag) = detector.observe(&record) else {
            continue;
        };
        let Some(inner) = weak.upgrade() else {
            break;
        };
        let policy = **inner.policy.load();
        if policy.mode == Mode::Off {
            continue;
        }
        let mut keys = vec![flag.key.clone()];
        if let (Scope::Cluster, Some(c)) = (policy.scope, &flag.cluster) {
            for k in detector.cluster_keys(c) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        let guard = Guard {
            inner: inner.clone(),
        };
        let r = flagged(&guard, flag, policy, &keys, now_secs());
        report(&r);
    }
}

/// Applies `policy` to one flag: quarantines (in `enforce`), the metric,
/// the ring of recent flags.
fn flagged(guard: &Guard, flag: Flag, policy: Policy, keys: &[String], now: u64) -> Report {
    let inner = &guard.inner;
    crate::telemetry::abuse_flag(flag.kind);
    let enforce = policy.mode == Mode::Enforce;
    let quarantines: Vec<Quarantine> = if enforce {
        let already = inner.quarantines.load();
        keys.iter()
            .filter(|k| !already.contains_key(k.as_str()))
            .map(|k| Quarantine {
                key: k.clone(),
                action: policy.action,
                rpm: (policy.action == Action::Throttle).then_some(policy.throttle_rpm.get()),
                since: now,
                flagged_key: flag.key.clone(),
                kind: flag.kind.to_string(),
                score: flag.score,
                cluster: flag.cluster.clone(),
                reasons: flag.reasons.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let persist_error = guard.quarantine(&quarantines);
    let entry = FlagEntry {
        flag,
        mode: policy.mode,
        action: enforce.then_some(policy.action),
        quarantined: quarantines.iter().map(|q| q.key.clone()).collect(),
    };
    {
        let mut ring = lock(&inner.flags);
        if ring.len() >= inner.max_flags {
            ring.pop_front();
        }
        ring.push_back(entry.clone());
    }
    Report {
        entry,
        quarantines,
        persist_error,
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn load_quarantines(path: &Path) -> Result<Vec<Quarantine>, GuardError> {
    let err = |e: &dyn std::fmt::Display| GuardError::Quarantines {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(err(&e)),
        Ok(bytes) => serde_json::from_slice::<QuarantineFile>(&bytes)
            .map(|f| f.quarantines)
            .map_err(|e| err(&e)),
    }
}

/// Replaces the file atomically: a temp file in the same directory, then a
/// rename.
fn save_quarantines(path: &Path, file: &QuarantineFile) -> std::io::Result<()> {
    use std::io::Write;
    let body = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&body)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(queue: usize) -> Options {
        Options {
            policy: Policy {
                mode: Mode::Enforce,
                action: Action::Suspend,
                throttle_rpm: NonZeroU32::new(2).unwrap(),
                scope: Scope::Key,
            },
            queue,
            max_flags: 2,
            quarantine_file: None,
            log: None,
            log_bodies: false,
            settings: Settings::default(),
        }
    }

    fn who(key: &str) -> Who<'_> {
        Who {
            key,
            ip: "10.0.0.1",
            user_agent: "ua",
            dialect: Dialect::OpenAi,
            route: "r",
        }
    }

    const BODY: &[u8] = br#"{"model":"r","messages":[{"role":"user","content":"hello"}]}"#;

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        // No worker started: nothing drains the queue of two.
        let guard = Guard::new(options(2)).unwrap();
        for _ in 0..5 {
            let mut p = guard.begin(who("k"), BODY).expect("a record");
            p.settle(7);
        }
        assert_eq!(guard.dropped(), 3);
        let (rx, _) = lock(&guard.inner.worker).take().unwrap();
        let first = rx.try_recv().unwrap();
        assert_eq!((first.key.as_str(), first.output_tokens), ("k", 7));
        assert!(
            first.ts > 1.0e9,
            "stamped with the wall clock: {}",
            first.ts
        );
    }

    #[test]
    fn off_records_nothing_and_a_pinned_clock_stamps_records() {
        let mut opts = options(4);
        opts.policy.mode = Mode::Off;
        let guard = Guard::new(opts.clone()).unwrap();
        assert!(guard.begin(who("k"), BODY).is_none());
        assert!(!guard.watching());
        let guard = Guard::new(options(4)).unwrap();
        guard.pin_clock(Some(1_000.5));
        drop(guard.begin(who("k"), BODY));
        let (rx, _) = lock(&guard.inner.worker).take().unwrap();
        assert_eq!(rx.try_recv().unwrap().ts, 1_000.5);
        assert!(guard.begin(who("k"), b"not json").is_none());
    }

    fn flag(key: &str) -> Flag {
        Flag {
            key: key.into(),
            flagged_at: 1.0,
            kind: "distillation",
            score: 0.9,
            cluster: None,
            reasons: vec!["why".into()],
        }
    }

    #[test]
    fn enforce_quarantines_observe_does_not_and_ops_lift_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(4);
        opts.quarantine_file = Some(dir.path().join("q.json"));
        let guard = Guard::new(opts.clone()).unwrap();
        let observe = Policy {
            mode: Mode::Observe,
            ..opts.policy
        };
        let r = flagged(&guard, flag("a"), observe, &["a".into()], 5);
        assert!(r.quarantines.is_empty() && r.entry.action.is_none());
        assert_eq!(guard.check("a"), Ok(()));
        let r = flagged(&guard, flag("b"), opts.policy, &["b".into(), "c".into()], 5);
        assert_eq!(r.entry.quarantined, ["b", "c"]);
        assert_eq!(guard.check("b"), Err(Refusal::Suspended));
        assert_eq!(guard.check("c"), Err(Refusal::Suspended));
        // Restored from the file by a new guard.
        let again = Guard::new(opts.clone()).unwrap();
        assert_eq!(again.check("b"), Err(Refusal::Suspended));
        let (old, err) = again.unquarantine("b");
        assert!(old.is_some() && err.is_none());
        assert_eq!(again.check("b"), Ok(()));
        assert_eq!(again.unquarantine("b").0, None);
        let third = Guard::new(opts).unwrap();
        assert_eq!(third.check("b"), Ok(()));
        assert_eq!(third.check("c"), Err(Refusal::Suspended));
        // The ring keeps the newest `max_flags`.
        flagged(&guard, flag("d"), observe, &["d".into()], 5);
        let keys: Vec<String> = guard.flags().into_iter().map(|f| f.flag.key).collect();
        assert_eq!(keys, ["d", "b"]);
    }

    #[test]
    fn a_throttled_key_keeps_its_rate() {
        let mut opts = options(4);
        opts.policy.action = Action::Throttle;
        let guard = Guard::new(opts.clone()).unwrap();
        flagged(&guard, flag("t"), opts.policy, &["t".into()], 5);
        assert_eq!(guard.check("t"), Ok(()));
        assert_eq!(guard.check("t"), Ok(()));
        assert!(matches!(guard.check("t"), Err(Refusal::Throttled { .. })));
        assert_eq!(guard.check("other"), Ok(()));
    }

    #[test]
    fn anonymous_names_hide_the_key() {
        let n = anonymous_name("sk-secret");
        assert!(n.starts_with("anon-") && n.len() == 13 && !n.contains("secret"));
        assert_eq!(n, anonymous_name("sk-secret"));
    }
}
