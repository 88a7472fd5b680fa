//! The live snapshot: table, providers and settings in one `ArcSwap`.
//!
//! A request loads the snapshot once and uses it to the end, so a reload
//! never changes the table under a request in flight. Everything fallible
//! (parse, validate, build clients) happens before the one infallible store.

use crate::clock::unix_now;
use crate::provider::fault::{ActiveFault, Faults};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{self, AuthMode, Config, ConfigError};
use crate::events::{EventLog, NewEvent};
use crate::health::{self, Registry, Suspension};
use crate::keys::KeyStore;
use crate::policy::Table;
use crate::provider::{EnvLookup, Provider, ProviderError};

/// Why a new table could not be built; the old one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("auth.secret_env: env var {0} (the HMAC secret for app keys) is not set or empty")]
    KeySecret(String),
    #[error(transparent)]
    KeyFile(#[from] crate::keys::KeyFileError),
    #[error(transparent)]
    State(#[from] health::PersistError),
    #[error(transparent)]
    Abuse(#[from] crate::abuse::live::GuardError),
    #[error("{}", .0.join("; "))]
    StartOnly(Vec<String>),
    #[error("{}", .0.join("; "))]
    RemovesBusyRoutes(Vec<String>),
}

/// Why an ops action on a target failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("unknown target `{0}`")]
    UnknownTarget(String),
    #[error("chaos is disabled on this gateway: set `[chaos] enabled = true` in its routes file")]
    ChaosDisabled,
    #[error(transparent)]
    Duration(#[from] DurationError),
}

/// The longest suspension or injected fault: beyond it a duration is a
/// typo (or an overflow attempt), not an ops decision.
pub const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// Why a suspension or fault duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration must be more than zero (omit it to suspend until resumed)")]
    Zero,
    #[error("duration {0} is longer than the maximum of 365 days")]
    TooLong(String),
}

/// Checks a suspension or fault duration: more than zero, at most
/// [`MAX_TTL`]. Shared by the admin API and the CLI, so both refuse the same.
pub fn check_ttl(d: std::time::Duration) -> Result<std::time::Duration, DurationError> {
    if d.is_zero() {
        Err(DurationError::Zero)
    } else if d > MAX_TTL {
        Err(DurationError::TooLong(
            humantime::format_duration(d).to_string(),
        ))
    } else {
        Ok(d)
    }
}

/// An ops change that is in force. `persist_error` is set when the state
/// file could not be written: the change holds until a restart, which
/// would lose it. Applying anyway is deliberate: an ops flip during an
/// incident must not fail because a disk is full.
#[derive(Debug)]
pub struct Applied<T> {
    pub value: T,
    pub persist_error: Option<health::PersistError>,
}

impl LoadError {
    /// Each problem on its own line, for the CLI and the admin API.
    pub fn problems(&self) -> Vec<String> {
        match self {
            LoadError::Config(c) => c.problems(),
            LoadError::StartOnly(p) | LoadError::RemovesBusyRoutes(p) => p.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// A route that took a client request this recently carries traffic: a
/// reload that would drop it is refused unless forced.
pub const BUSY_ROUTE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// The only `[gateway]` keys a reload applies; every other one (listeners,
/// connection limits, the state and events files, and any key added later
/// unless listed here) is read once at start, so a reload that changes it
/// is refused rather than silently ignored.
const RELOADABLE_GATEWAY_KEYS: &[&str] = &["max_body_bytes"];

/// What started a reload, and what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The routes file changed on disk: unchanged bytes are a silent no-op.
    FileChange,
    /// SIGHUP or the admin API; `allow_removals` lets the new table drop
    /// routes that carry traffic.
    Explicit { allow_removals: bool },
}

/// The outcome of a reload that was not rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    pub version: u64,
    /// `false` when the routes file (and keys file) were byte for byte the
    /// ones already applied: nothing was rebuilt.
    pub changed: bool,
}

/// How app keys are checked in this snapshot.
#[derive(Debug)]
pub enum Auth {
    AnyKey,
    Keys(KeyStore),
}

/// Everything a request needs, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    pub config: Config,
    pub table: Table,
    pub providers: BTreeMap<String, Arc<Provider>>,
    pub auth: Auth,
    /// Health of every target and budget of every route, carried over
    /// from the previous snapshot by name.
    pub health: Registry,
    /// Chaos faults in force, by target: one registry for the life of the
    /// process, handed from snapshot to snapshot.
    pub faults: Arc<Faults>,
}

impl Snapshot {
    /// Builds a snapshot, reusing the providers (and their connection pools)
    /// of `previous` whose config did not change.
    pub fn build(
        config: Config,
        version: u64,
        previous: Option<&Snapshot>,
        env: &EnvLookup,
        epoch: tokio::time::Instant,
    ) -> Result<Snapshot, LoadError> {
        let mut providers = BTreeMap::new();
        for (name, cfg) in &config.providers {
            let reused = previous
                .and_then(|p| p.providers.get(name))
                .filter(|p| &p.config == cfg)
                .cloned();
            let provider = match reused {
                Some(p) => p,
                None => Arc::new(Provider::build(name, cfg, env)?),
            };
            providers.insert(name.clone(), provider);
        }
        let auth = match config.auth.mode {
            AuthMode::AnyKey => Auth::AnyKey,
            AuthMode::Keys => {
                let var = &config.auth.secret_env;
                let secret = env(var)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| LoadError::KeySecret(var.clone()))?;
                let records = crate::keys::load_file(&config.auth.keys_file)?;
                let previous = previous.and_then(|p| match &p.auth {
                    Auth::Keys(store) => Some(store),
                    Auth::AnyKey => None,
                });
                Auth::Keys(KeyStore::build(secret.into_bytes(), records, previous))
            }
        };
        let health = Registry::carry_over(
            previous.map(|p| &p.health),
            config.targets.keys(),
            config.routes.keys(),
            epoch,
            config.health.retry_floor_per_sec,
        );
        let faults = previous.map_or_else(Arc::default, |p| p.faults.clone());
        Ok(Snapshot {
            version,
            table: Table::compile(&config),
            config,
            providers,
            auth,
            health,
            faults,
        })
    }
}

/// The process-wide live state.
pub struct Live {
    current: Arc<ArcSwap<Snapshot>>,
    pub events: EventLog,
    epoch: tokio::time::Instant,
    /// Problems of the last rejected reload, until one is applied.
    pub last_reload_error: arc_swap::ArcSwapOption<Vec<String>>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// SHA-256 of the admin token: the data plane refuses it as an app key.
    pub admin_token_digest: std::sync::OnceLock<[u8; 32]>,
    /// Serialises reloads (file watch, SIGHUP, admin API) so an older table
    /// is never stored over a newer one, and holds the SHA-256 of the
    /// inputs (routes file, keys file) last applied and last tried. Never
    /// taken on the request path.
    reload_lock: std::sync::Mutex<Digests>,
    /// Where `reload` reads from; `None` for the embedded demo table.
    path: Option<PathBuf>,
    env: EnvLookup,
    next_version: AtomicU64,
    /// The one writer of the state file, when one is configured.
    state_writer: Option<health::StateWriter>,
    /// Why the state file does not hold the live suspensions, until a
    /// write succeeds again: a readiness detail, not a reason to stop
    /// serving.
    pub persist_error: arc_swap::ArcSwapOption<String>,
    /// The live abuse detector and the quarantines it put in force.
    pub abuse: crate::abuse::live::Guard,
    /// Fleet mode: where the recorder hands the ejections and recoveries
    /// it decides (`try_send`, never awaited); unset on a single gateway.
    pub shared_health: std::sync::OnceLock<tokio::sync::mpsc::Sender<health::Shared>>,
    /// Fleet mode: where the abuse detector's thread hands the quarantines
    /// it put in force, for the fleet to publish (`try_send`, never
    /// awaited); unset on a single gateway.
    pub fleet_quarantines:
        std::sync::OnceLock<tokio::sync::mpsc::Sender<Vec<crate::abuse::live::Quarantine>>>,
    /// Fleet mode: the app keys kept in Redis, consulted before the keys
    /// file (a revocation there wins); kept up to date by the follower.
    pub fleet_keys: arc_swap::ArcSwapOption<KeyStore>,
}

impl Live {
    /// Builds the first snapshot; a failure here stops the process.
    /// Restores saved suspensions. Must run inside a tokio runtime.
    pub fn new(config: Config, path: Option<PathBuf>, env: EnvLookup) -> Result<Live, LoadError> {
        let epoch = tokio::time::Instant::now();
        let saved = match &config.gateway.state_file {
            Some(p) => health::load_suspensions(p)?,
            None => BTreeMap::new(),
        };
        let events = EventLog::new(config.gateway.events_file.clone());
        let abuse = crate::abuse::live::Guard::new(crate::abuse::live::Options::of(&config.abuse))?;
        let mut snapshot = Snapshot::build(config, 1, None, &env, epoch)?;
        for (name, s) in saved {
            let h = snapshot
                .health
                .targets
                .entry(name.clone())
                .or_insert_with(|| Arc::new(health::TargetHealth::new(&name, epoch)));
            h.suspend(s);
        }
        let applied = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|bytes| inputs_digest(&bytes, &snapshot.config));
        let current = Arc::new(ArcSwap::from_pointee(snapshot));
        let state_writer = current
            .load()
            .config
            .gateway
            .state_file
            .clone()
            .map(|path| {
                let live = current.clone();
                health::StateWriter::spawn(path, move || live.load().health.suspensions())
            });
        Ok(Live {
            events,
            epoch,
            last_reload_error: arc_swap::ArcSwapOption::empty(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            admin_token_digest: std::sync::OnceLock::new(),
            reload_lock: std::sync::Mutex::new(Digests {
                applied,
                tried: applied,
            }),
            env,
            next_version: AtomicU64::new(current.load().version + 1),
            current,
            path,
            state_writer,
            persist_error: arc_swap::ArcSwapOption::empty(),
            abuse,
            shared_health: std::sync::OnceLock::new(),
            fleet_quarantines: std::sync::OnceLock::new(),
            fleet_keys: arc_swap::ArcSwapOption::empty(),
        })
    }

    /// An env var as this gateway reads its settings (tests inject them).
    pub fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// Checks an app key: the fleet's keys first (fleet mode; a key known
    /// there is decided there, so a revocation in Redis wins over the keys
    /// file), then the snapshot's keys file.
    pub fn authenticate_key(
        &self,
        file: &KeyStore,
        presented: &str,
    ) -> Result<Arc<crate::keys::AppKey>, crate::keys::Refused> {
        if let Some(fleet) = self.fleet_keys.load().as_ref() {
            match fleet.authenticate(presented) {
                Err(crate::keys::Refused::Unknown) => {}
                decided => return decided,
            }
        }
        file.authenticate(presented)
    }

    /// The snapshot to use for one whole request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Sets the gauges read from live state: each target's state and the
    /// table version (at scrape time, and on a timer for OTLP export).
    pub fn publish_gauges(&self) {
        let snap = self.load();
        let now = tokio::time::Instant::now();
        let all = ["healthy", "degraded", "ejected", "suspended"];
        for (name, h) in &snap.health.targets {
            if snap.table.targets.contains_key(name) {
                crate::telemetry::target_state(name, h.state(now).as_str(), &all);
            }
        }
        crate::telemetry::config_version(snap.version);
    }

    /// Re-reads the routes file; on any error nothing changes, and the
    /// error is kept for the admin API and counted. Inputs identical to the
    /// applied ones change nothing (no new version, no event), so nothing
    /// that merely reads the file can start a loop. Refused as well: a
    /// change to a start-only setting, and (unless allowed) a table that
    /// drops a route that took traffic in the last [`BUSY_ROUTE_WINDOW`].
    pub fn reload(&self, actor: &str, trigger: Trigger) -> Result<Reloaded, LoadError> {
        let Some(path) = &self.path else {
            return Ok(Reloaded {
                version: self.load().version,
                changed: false,
            });
        };
        let mut digests = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.load();
        let unchanged = |version| Reloaded {
            version,
            changed: false,
        };
        let read = std::fs::read(path).map_err(|e| {
            LoadError::Config(ConfigError::Read {
                file: path.display().to_string(),
                message: e.to_string(),
            })
        });
        let parsed = read.and_then(|bytes| {
            let text = String::from_utf8(bytes.clone()).map_err(|e| {
                LoadError::Config(ConfigError::Read {
                    file: path.display().to_string(),
                    message: e.to_string(),
                })
            })?;
            let config =
                config::load_str(&path.display().to_string(), &text, config::env_overrides())?;
            let digest = inputs_digest(&bytes, &config);
            Ok((config, digest))
        });
        let (config, digest) = match parsed {
            Ok(p) => p,
            Err(e) => return Err(self.rejected(actor, &current, e)),
        };
        if digests.applied == Some(digest) {
            self.last_reload_error.store(None);
            digests.tried = Some(digest);
            return Ok(unchanged(current.version));
        }
        if trigger == Trigger::FileChange && digests.tried == Some(digest) {
            return Ok(unchanged(current.version));
        }
        digests.tried = Some(digest);
        let allow_removals = matches!(
            trigger,
            Trigger::Explicit {
                allow_removals: true
            }
        );
        let result = start_only_changes(&current.config, &config, path)
            .and_then(|()| busy_removals(&current, &config, allow_removals))
            .and_then(|()| self.apply(config));
        match result {
            Ok(v) => {
                digests.applied = Some(digest);
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::reload("ok");
                self.last_reload_error.store(None);
                self.events.emit(NewEvent {
                    kind: "reload",
                    actor,
                    target: None,
                    reason: "routes file re-read",
                    before: &current.version.to_string(),
                    after: &v.to_string(),
                });
                Ok(Reloaded {
                    version: v,
                    changed: true,
                })
            }
            Err(e) => Err(self.rejected(actor, &current, e)),
        }
    }

    /// Records a rejected reload (counter, event, `last_reload_error`).
    fn rejected(&self, actor: &str, current: &Snapshot, e: LoadError) -> LoadError {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::reload("rejected");
        let problems = e.problems();
        let before = current.version.to_string();
        self.events.emit(NewEvent {
            kind: "reload_rejected",
            actor,
            target: None,
            reason: &problems.join("; "),
            before: &before,
            after: &before,
        });
        self.last_reload_error.store(Some(Arc::new(problems)));
        e
    }

    /// Builds a snapshot from a validated config, then swaps atomically.
    pub fn apply(&self, config: Config) -> Result<u64, LoadError> {
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let snapshot = Snapshot::build(config, version, Some(&self.load()), &self.env, self.epoch)?;
        self.abuse
            .set_policy(crate::abuse::live::Policy::of(&snapshot.config.abuse));
        self.current.store(Arc::new(snapshot));
        Ok(version)
    }

    /// Takes a target out of every route at once, until resumed or `ttl`.
    /// Returns once the change is in force and written to the state file
    /// (or the write failed: see [`Applied`]).
    pub async fn suspend(
        &self,
        target: &str,
        reason: &str,
        actor: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<Applied<Suspension>, OpsError> {
        let ttl = ttl.map(check_ttl).transpose()?;
        let snap = self.load();
        let h = snap
            .health
            .targets
            .get(target)
            .filter(|_| snap.table.targets.contains_key(target))
            .ok_or_else(|| OpsError::UnknownTarget(target.to_string()))?;
        let before = h.state(tokio::time::Instant::now()).as_str();
        let now = unix_now();
        let s = Suspension {
            reason: reason.to_string(),
            actor: actor.to_string(),
            since: now,
            until: ttl.map(|d| now.saturating_add(d.as_secs().max(1))),
        };
        h.suspend(s.clone());
        crate::telemetry::suspension(target);
        let persist_error = self.persist(actor).await;
        self.events.emit(NewEvent {
            kind: "suspend",
            actor,
            target: Some(target),
            reason,
            before,
            after: "suspended",
        });
        Ok(Applied {
            value: s,
            persist_error,
        })
    }

    /// Puts a target back; `value` is `None` if it was not suspended.
    /// Returns once the change is in force and written to the state file
    /// (or the write failed: see [`Applied`]).
    pub async fn resume(
        &self,
        target: &str,
        actor: &str,
        kind: &'static str,
    ) -> Result<Applied<Option<Suspension>>, OpsError> {
        let snap = self.load();
        let h = snap
            .health
            .targets
            .get(target)
            .ok_or_else(|| OpsError::UnknownTarget(target.to_string()))?;
        let Some(old) = h.resume(actor) else {
            return Ok(Applied {
                value: None,
                persist_error: None,
            });
        };
        let persist_error = self.persist(actor).await;
        let after = h.state(tokio::time::Instant::now()).as_str();
        self.events.emit(NewEvent {
            kind,
            actor,
            target: Some(target),
            reason: &old.reason,
            before: "suspended",
            after,
        });
        Ok(Applied {
            value: Some(old),
            persist_error,
        })
    }

    /// Injects `fault` on `target` for `ttl` (chaos drills only).
    pub fn set_fault(
        &self,
        target: &str,
        fault: crate::provider::fault::Fault,
        ttl: std::time::Duration,
        actor: &str,
    ) -> Result<u64, OpsError> {
        let snap = self.load();
        if !snap.config.chaos.enabled {
            return Err(OpsError::ChaosDisabled);
        }
        if !snap.table.targets.contains_key(target) {
            return Err(OpsError::UnknownTarget(target.to_string()));
        }
        let ttl = check_ttl(ttl)?;
        // Expiry is kept in whole seconds: round up, so a fault lasts at
        // least what was asked (a "1s" fault set at .99 would otherwise
        // be gone 10 ms later).
        let until = unix_now().saturating_add(ttl.as_secs().max(1) + 1);
        self.set_fault_until(target, fault, until, actor)?;
        Ok(until)
    }

    /// Injects `fault` on `target` until `until` (unix seconds): the same
    /// expiry on every replica when a fleet change carries it. An `until`
    /// already past is a no-op.
    pub fn set_fault_until(
        &self,
        target: &str,
        fault: crate::provider::fault::Fault,
        until: u64,
        actor: &str,
    ) -> Result<(), OpsError> {
        let snap = self.load();
        if !snap.config.chaos.enabled {
            return Err(OpsError::ChaosDisabled);
        }
        if !snap.table.targets.contains_key(target) {
            return Err(OpsError::UnknownTarget(target.to_string()));
        }
        let now = unix_now();
        if until <= now {
            return Ok(());
        }
        let described = serde_json::to_string(&fault).unwrap_or_default();
        snap.faults
            .set(target, Some(Arc::new(ActiveFault::new(fault, until))));
        self.events.emit(NewEvent {
            kind: "chaos_set",
            actor,
            target: Some(target),
            reason: &format!(
                "{described} for {}",
                humantime::format_duration(std::time::Duration::from_secs(until - now))
            ),
            before: "no fault",
            after: "fault injected",
        });
        Ok(())
    }

    /// Removes an injected fault; `Ok(false)` if there was none.
    pub fn clear_fault(&self, target: &str, actor: &str) -> Result<bool, OpsError> {
        let snap = self.load();
        if !snap.health.targets.contains_key(target) {
            return Err(OpsError::UnknownTarget(target.to_string()));
        }
        let had = snap.faults.set(target, None).is_some();
        if had {
            self.events.emit(NewEvent {
                kind: "chaos_cleared",
                actor,
                target: Some(target),
                reason: "cleared",
                before: "fault injected",
                after: "no fault",
            });
        }
        Ok(had)
    }

    /// Lifts suspensions whose TTL has passed, with an event each.
    pub async fn expire_suspensions(&self) {
        let now = unix_now();
        let expired: Vec<String> = self
            .load()
            .health
            .suspensions()
            .into_iter()
            .filter(|(_, s)| s.until.is_some_and(|u| u <= now))
            .map(|(name, _)| name)
            .collect();
        for name in self.load().faults.expire(now) {
            self.events.emit(NewEvent {
                kind: "chaos_expired",
                actor: "ttl",
                target: Some(&name),
                reason: "the fault's time ran out",
                before: "fault injected",
                after: "no fault",
            });
        }
        for name in expired {
            if let Err(e) = self.resume(&name, "ttl", "suspension_expired").await {
                tracing::warn!(target_name = %name, error = %e, "cannot lift an expired suspension");
            }
        }
    }

    /// Writes the live suspensions through the one state writer. A failure
    /// is raised as an `alert` event, counted, and kept as a readiness
    /// detail until a later write succeeds; the change itself stays.
    async fn persist(&self, actor: &str) -> Option<health::PersistError> {
        let writer = self.state_writer.as_ref()?;
        match writer.persist().await {
            Ok(()) => {
                self.persist_error.store(None);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "the state file does not hold the live suspensions");
                crate::telemetry::state_persist_failure();
                let message = e.to_string();
                self.events.emit(NewEvent {
                    kind: "alert",
                    actor,
                    target: None,
                    reason: &format!(
                        "{message}; the change is in force but a restart would lose it"
                    ),
                    before: "persisted",
                    after: "not persisted",
                });
                self.persist_error.store(Some(Arc::new(message)));
                Some(e)
            }
        }
    }
}

impl Live {
    /// Audits one flag of the live abuse detector (called on its thread):
    /// an `abuse_flag` event with the flag's fields, one `abuse_quarantine`
    /// event per key it quarantined, and an `alert` if the quarantine file
    /// could not be written.
    pub fn abuse_flagged(&self, report: &crate::abuse::live::Report) {
        let e = &report.entry;
        let f = &e.flag;
        let detail = serde_json::json!({
            "key": f.key, "kind": f.kind, "score": f.score, "cluster": f.cluster,
            "reasons": f.reasons, "flagged_at": f.flagged_at, "mode": e.mode,
            "action": e.action, "quarantined": e.quarantined,
        });
        let after = match e.action {
            Some(a) if e.quarantined.contains(&f.key) => format!("quarantined ({})", a.as_str()),
            _ => "flagged".to_string(),
        };
        let reason = format!(
            "{} (score {:.2}): {}",
            f.kind,
            f.score,
            f.reasons.join("; ")
        );
        self.events.emit_with(
            NewEvent {
                kind: "abuse_flag",
                actor: "abuse-detector",
                target: Some(&f.key),
                reason: &reason,
                before: "active",
                after: &after,
            },
            Some(detail),
        );
        for q in report.quarantines.iter().filter(|q| q.key != f.key) {
            self.events.emit(NewEvent {
                kind: "abuse_quarantine",
                actor: "abuse-detector",
                target: Some(&q.key),
                reason: &format!(
                    "in cluster {} of flagged key {}",
                    q.cluster.as_deref().unwrap_or("-"),
                    q.flagged_key
                ),
                before: "active",
                after: &format!("quarantined ({})", q.action.as_str()),
            });
        }
        self.publish_quarantines(&report.quarantines);
        if let Some(message) = &report.persist_error {
            self.events.emit(NewEvent {
                kind: "alert",
                actor: "abuse-detector",
                target: None,
                reason: &format!(
                    "{message}; the quarantine is in force but a restart would lose it"
                ),
                before: "persisted",
                after: "not persisted",
            });
        }
    }

    /// Fleet mode: hands quarantines already in force here to the fleet's
    /// publisher task (`try_send`: safe on the detector's thread, never
    /// waits). Outside fleet mode, or with the queue full, they stay local.
    pub fn publish_quarantines(&self, quarantines: &[crate::abuse::live::Quarantine]) {
        let Some(tx) = self.fleet_quarantines.get() else {
            return;
        };
        if !quarantines.is_empty() && tx.try_send(quarantines.to_vec()).is_err() {
            tracing::warn!("fleet quarantine queue full: this quarantine stays on this replica");
        }
    }

    /// Puts another replica's quarantine in force here (audited); the
    /// quarantine file is written off the runtime. The error of that write,
    /// if any.
    pub async fn apply_quarantine(
        self: &Arc<Self>,
        q: crate::abuse::live::Quarantine,
        actor: &str,
    ) -> Option<String> {
        let live = self.clone();
        let applied = q.clone();
        let error = tokio::task::spawn_blocking(move || live.abuse.quarantine(&[applied]))
            .await
            .unwrap_or_else(|_| Some("the quarantine writer panicked".into()));
        self.events.emit(NewEvent {
            kind: "abuse_quarantine",
            actor,
            target: Some(&q.key),
            reason: &format!(
                "{} flag of key {} (score {:.2})",
                q.kind, q.flagged_key, q.score
            ),
            before: "active",
            after: &format!("quarantined ({})", q.action.as_str()),
        });
        error
    }

    /// Lifts the abuse quarantine of app key `key` (audited); what it was,
    /// or `None` if it had none. The quarantine file is written off the
    /// runtime.
    pub async fn unquarantine(
        self: &Arc<Self>,
        key: &str,
        actor: &str,
    ) -> (Option<crate::abuse::live::Quarantine>, Option<String>) {
        let live = self.clone();
        let name = key.to_string();
        let (old, error) = tokio::task::spawn_blocking(move || live.abuse.unquarantine(&name))
            .await
            .unwrap_or((None, Some("the quarantine writer panicked".into())));
        if let Some(q) = &old {
            self.events.emit(NewEvent {
                kind: "abuse_unquarantine",
                actor,
                target: Some(key),
                reason: &format!("quarantine lifted ({} flag, score {:.2})", q.kind, q.score),
                before: &format!("quarantined ({})", q.action.as_str()),
                after: "active",
            });
        }
        (old, error)
    }
}

/// SHA-256 of the inputs of a table: the routes file's bytes and, with
/// app keys on, the keys file's (`switchyard keys revoke` changes only it).
#[derive(Debug, Default)]
struct Digests {
    applied: Option<[u8; 32]>,
    tried: Option<[u8; 32]>,
}

fn inputs_digest(routes: &[u8], config: &Config) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update((routes.len() as u64).to_le_bytes());
    h.update(routes);
    if config.auth.mode == AuthMode::Keys {
        h.update(std::fs::read(&config.auth.keys_file).unwrap_or_default());
    }
    h.finalize().into()
}

/// Refuses a reload that changes a setting only read at start: the
/// `[gateway]` keys not in [`RELOADABLE_GATEWAY_KEYS`], `[telemetry]`,
/// `[fleet]`, and the `[abuse]` keys not in `RELOADABLE_ABUSE_KEYS`.
fn start_only_changes(old: &Config, new: &Config, path: &std::path::Path) -> Result<(), LoadError> {
    let mut changed = Vec::new();
    let sections = [
        ("gateway", json_map(&old.gateway), json_map(&new.gateway)),
        (
            "telemetry",
            json_map(&old.telemetry),
            json_map(&new.telemetry),
        ),
        ("fleet", json_map(&old.fleet), json_map(&new.fleet)),
        ("abuse", json_map(&old.abuse), json_map(&new.abuse)),
    ];
    for (section, before, after) in &sections {
        let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for key in keys {
            if *section == "gateway" && RELOADABLE_GATEWAY_KEYS.contains(&key.as_str()) {
                continue;
            }
            if *section == "abuse" && config::RELOADABLE_ABUSE_KEYS.contains(&key.as_str()) {
                continue;
            }
            let (b, a) = (before.get(key), after.get(key));
            if b != a {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or("unset".to_string(), |v| v.to_string())
                };
                changed.push(format!(
                    "{}: [{section}] {key} is read only at start: it changed from {} to {}; restart the gateway to apply it, or put the old value back to reload the rest",
                    path.display(),
                    show(b),
                    show(a)
                ));
            }
        }
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(LoadError::StartOnly(changed))
    }
}

fn json_map(v: &impl serde::Serialize) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// Refuses a table that drops a route which took a client request within
/// [`BUSY_ROUTE_WINDOW`], unless `allow`: a half-saved or mistaken file
/// must not turn live traffic into 404s.
fn busy_removals(current: &Snapshot, new: &Config, allow: bool) -> Result<(), LoadError> {
    if allow {
        return Ok(());
    }
    let now = tokio::time::Instant::now();
    let busy: Vec<String> = current
        .config
        .routes
        .keys()
        .filter(|r| !new.routes.contains_key(*r))
        .filter_map(|r| {
            let ago = current.health.budgets.get(r)?.since_last_request(now)?;
            (ago <= BUSY_ROUTE_WINDOW).then(|| {
                format!(
                    "route `{r}` would be removed but took a request {} ago (within the last {}); \
                     remove it anyway with `switchyard reload --allow-removals` \
                     (POST /admin/reload?allow_removals=true)",
                    humantime::format_duration(std::time::Duration::from_secs(ago.as_secs())),
                    humantime::format_duration(BUSY_ROUTE_WINDOW)
                )
            })
        })
        .collect();
    if busy.is_empty() {
        Ok(())
    } else {
        Err(LoadError::RemovesBusyRoutes(busy))
    }
}
