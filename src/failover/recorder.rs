//! The recorder: the one place every outcome of an upstream attempt goes.
//!
//! A first byte (or whole body), a stream cut after it began, a continuation
//! and a probe all end here, and here only: the recorder updates the
//! target's health, turns health transitions into audit events (`eject`,
//! `recover`) and metrics (`switchyard_ejections_total`), and applies the
//! failure-class table's provider take-outs (`alert`). Nothing else on the
//! request path calls `TargetHealth::record`, so no outcome can change
//! health silently.
//!
//! This is also the seam fleet mode plugs into: in fleet mode the ejections
//! and recoveries [`Recorder::record`] decides are handed (never awaited)
//! to the fleet's background task, which shares them; nothing else on the
//! request path needs to know.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Audit, Reason};
use crate::events::NewEvent;
use crate::health::{Outcome, Shared, TargetHealth, Transition};
use crate::policy::Target;
use crate::state::{Live, Snapshot};
use crate::telemetry;

/// Where in a request's life an outcome was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The attempt ended before anything reached the app: a failure, the
    /// first content of a stream, or a whole non-stream body.
    Attempt { duration: Duration },
    /// A stream that already reached the app broke.
    MidStream,
}

/// What to record: which target, how it went, and whether it was the probe.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub target: &'a Target,
    pub health: &'a TargetHealth,
    /// `Ok` for a good answer, else the failure's class.
    pub result: Result<(), Reason>,
    pub stage: Stage,
    /// The attempt was the one probe admitted after an ejection.
    pub probe: bool,
}

/// Records outcomes against one snapshot; cheap to clone into a stream.
#[derive(Clone)]
pub struct Recorder {
    live: Arc<Live>,
    snapshot: Arc<Snapshot>,
}

impl Recorder {
    pub fn new(live: Arc<Live>, snapshot: Arc<Snapshot>) -> Recorder {
        Recorder { live, snapshot }
    }

    /// The health of target `name` in this snapshot.
    pub fn health(&self, name: &str) -> Option<Arc<TargetHealth>> {
        self.snapshot.health.targets.get(name).cloned()
    }

    /// Records one outcome: health, audit events, metrics, take-outs.
    pub fn record(&self, o: Observation<'_>) {
        let name = &o.target.name;
        if let Stage::Attempt { duration } = o.stage {
            let label = o.result.err().map_or("ok", Reason::as_str);
            telemetry::attempt(name, label, duration);
            o.health.observe(o.result.is_ok(), duration);
        }
        let outcome = match o.result {
            Ok(()) => Outcome::Success,
            Err(reason) => match reason.rule().audit {
                Audit::Outlier => Outcome::Failure,
                // A take-out ejects the whole provider below; the attempt
                // itself must not also count toward an outlier ejection.
                Audit::Alert | Audit::Nothing => Outcome::Neutral,
            },
        };
        let cfg = &self.snapshot.config.health;
        let now = Instant::now();
        let transition = if o.probe {
            o.health.record_probe(outcome, now, cfg)
        } else {
            o.health.record(outcome, now, cfg)
        };
        match transition {
            Some(Transition::Ejected { backoff, why }) => {
                telemetry::ejection(name, "outlier");
                let reason = match o.result {
                    Err(Reason::ModelUnavailable) => format!(
                        "{why}; the vendor says the model is unavailable: consider `switchyard suspend {name}`"
                    ),
                    _ => why,
                };
                self.live.events.emit(NewEvent {
                    kind: "eject",
                    actor: "outlier-detection",
                    target: Some(name),
                    reason: &reason,
                    before: "degraded",
                    after: &format!("ejected for {}", humantime::format_duration(backoff)),
                });
                self.share(
                    o.health,
                    Shared::Ejected {
                        target: name.clone(),
                        backoff,
                        why: reason,
                    },
                );
            }
            Some(Transition::Recovered) => {
                self.live.events.emit(NewEvent {
                    kind: "recover",
                    actor: "outlier-detection",
                    target: Some(name),
                    reason: "a probe request succeeded",
                    before: "ejected",
                    after: "healthy",
                });
                self.share(
                    o.health,
                    Shared::Recovered {
                        target: name.clone(),
                    },
                );
            }
            None => {}
        }
        if let Err(reason) = o.result {
            if reason.rule().audit == Audit::Alert {
                self.take_out_provider(o.target, reason);
            }
        }
    }

    /// Fleet mode: hands a transition to the fleet's background task
    /// without waiting (a full queue drops it: the other replicas then
    /// decide on their own, as without a fleet). An ejection's probe then
    /// waits for the fleet's probe lease.
    fn share(&self, health: &TargetHealth, what: Shared) {
        let Some(tx) = self.live.shared_health.get() else {
            return;
        };
        let ejected = matches!(what, Shared::Ejected { .. });
        if ejected {
            health.gate_probe();
        }
        if tx.try_send(what).is_err() {
            tracing::warn!(target_name = %health.name, "fleet health queue full; transition kept local");
            if ejected {
                health.open_probe();
            }
        }
    }

    /// A disabled account or exhausted quota is not one model's problem:
    /// every target of the same provider (the same credential) goes out.
    ///
    /// Idempotent under concurrency: the targets are taken out in name
    /// order, and only the caller that starts the take-out of the first of
    /// them writes the `alert`, so N requests failing at once give one.
    fn take_out_provider(&self, failed: &Target, reason: Reason) {
        let backoff = reason.rule().take_out;
        let why = match reason {
            Reason::QuotaExhausted => "the vendor says quota or billing is exhausted",
            _ => "the vendor says the account is disabled",
        };
        let now = Instant::now();
        let mut first = None;
        for t in self
            .snapshot
            .table
            .targets
            .values()
            .filter(|t| t.provider == failed.provider)
        {
            if let Some(h) = self.snapshot.health.targets.get(&t.name) {
                let started = h.take_out(now, backoff, why);
                first.get_or_insert(started);
                if started {
                    telemetry::ejection(&t.name, reason.as_str());
                }
            }
        }
        if first != Some(true) {
            return;
        }
        self.live.events.emit(NewEvent {
            kind: "alert",
            actor: "failover",
            target: Some(&failed.name),
            reason: &format!(
                "provider `{}`: {why} ({}); all its targets are out for {}",
                failed.provider,
                reason.as_str(),
                humantime::format_duration(backoff)
            ),
            before: "healthy",
            after: "ejected",
        });
    }
}
