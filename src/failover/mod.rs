//! The one loop that walks a route's targets. It is the only place that
//! decides to move on: before the first byte reaches the app, a failure
//! classified as `Failover` may be retried once on the same target (a 500,
//! or a 429 with a short `Retry-After`, within the route's retry budget),
//! then tries the next eligible target; anything else ends the request with
//! one clean error. It also feeds every outcome to the target's health.

mod continuation;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use tokio::time::Instant;

pub use upstream::{Answer, EventStream};

use crate::error::{Attempt, Decision, GatewayError, Reason, UpstreamError};
use crate::events::NewEvent;
use crate::health::{Admission, Outcome, TargetHealth, Transition};
use crate::model::ChatRequest;
use crate::policy::{Route, Target};
use crate::provider::Forwarded;
use crate::state::{Live, Snapshot};
use crate::telemetry::{self, Operation, RequestSpan};

/// How long a disabled vendor account takes its targets out.
const ACCOUNT_DISABLED_EJECTION: Duration = Duration::from_secs(300);

/// A request that found a target with a good answer.
pub struct Served {
    pub target: Arc<Target>,
    pub attempts: Vec<Attempt>,
    pub answer: Answer,
    /// The serving attempt; it records its span and metrics when dropped,
    /// so it travels with the answer to the end of a stream.
    pub operation: Operation,
}

/// Releases a claimed probe if the attempt never reported (e.g. the app
/// went away mid-attempt), so the target can be probed again.
struct ProbeGuard(Option<Arc<TargetHealth>>);

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.release_probe();
        }
    }
}

pub async fn serve(
    live: &Live,
    snapshot: &Arc<Snapshot>,
    route: &Route,
    req: &ChatRequest,
    fwd: &Forwarded,
    span: &RequestSpan,
) -> Result<Served, GatewayError> {
    let parent = span.parent();
    let plan = route
        .plan(req)
        .map_err(|e| GatewayError::NoEligibleTarget {
            route: route.name.clone(),
            why: e.0,
        })?;
    let budget = snapshot.health.budgets.get(&route.name);
    if let Some(b) = budget {
        b.deposit();
    }
    let health_cfg = &snapshot.config.health;
    let mut attempts: Vec<Attempt> = Vec::with_capacity(2);
    let mut skipped = Vec::new();
    let mut soonest_back = Duration::from_secs(1);
    // After a context-length error, only larger windows are worth a try.
    let mut min_window = 0;
    let targets = plan.targets;
    'targets: for (position, target) in targets.iter().enumerate() {
        let target = target.clone();
        if attempts.len() >= route.max_attempts {
            break;
        }
        if target.context_window <= min_window {
            continue;
        }
        let (Some(provider), Some(health)) = (
            snapshot.providers.get(&target.provider),
            snapshot.health.targets.get(&target.name),
        ) else {
            continue;
        };
        let probe = match health.admit(Instant::now()) {
            Admission::Ok => ProbeGuard(None),
            Admission::Probe => ProbeGuard(Some(health.clone())),
            Admission::Suspended(why) => {
                skipped.push((target.name.clone(), format!("suspended ({why})")));
                continue;
            }
            Admission::Ejected(left) => {
                skipped.push((target.name.clone(), "ejected".to_string()));
                soonest_back = soonest_back.min(left.max(Duration::from_secs(1)));
                continue;
            }
        };
        let mut retried = false;
        loop {
            let started = Instant::now();
            let mut op = Operation::start(
                &parent,
                attempts.len() as u32 + 1,
                provider.operation_target(&target.name, &target.model),
                req,
            );
            let result =
                upstream::attempt(provider, &target, route, req, fwd, health.fault(), &mut op)
                    .await;
            let duration = started.elapsed();
            let error = match result {
                Ok(answer) => {
                    if let Answer::Complete(r) = &answer {
                        op.response(r);
                    }
                    telemetry::attempt(&target.name, "ok", duration);
                    health.observe(true, duration);
                    report(
                        live,
                        health,
                        &target,
                        Outcome::Success,
                        None,
                        probe.0.is_some(),
                        health_cfg,
                    );
                    tracing::debug!(route = %route.name, target = %target.name, ?duration, "attempt ok");
                    attempts.push(Attempt {
                        target: target.name.clone(),
                        outcome: Ok(()),
                        duration,
                    });
                    let mut answer = watch_stream(answer, health.clone(), health_cfg.clone());
                    if route.continue_on_cut {
                        if let Answer::Stream { head, rest } = answer {
                            let ctx = continuation::Ctx {
                                snapshot: snapshot.clone(),
                                route: route.clone(),
                                req: req.clone(),
                                fwd: fwd.clone(),
                                later: targets[position + 1..].to_vec(),
                                parent: parent.clone(),
                                attempt: attempts.len() as u32 + 1,
                            };
                            let rest = continuation::wrap(&head, rest, ctx);
                            answer = Answer::Stream { head, rest };
                        }
                    }
                    return Ok(Served {
                        target,
                        attempts,
                        answer,
                        operation: op,
                    });
                }
                Err(error) => error,
            };
            let (reason, decision) = error.classify();
            telemetry::attempt(&target.name, reason.as_str(), duration);
            health.observe(false, duration);
            if decision != Decision::Stop {
                telemetry::failover(&route.name, &target.name, reason.as_str());
            }
            op.fail(reason.as_str(), decision != Decision::Stop, error.status());
            tracing::debug!(
                route = %route.name, target = %target.name, reason = reason.as_str(),
                error = %error, ?duration, "attempt failed"
            );
            let outcome = match decision {
                Decision::Failover => Outcome::Failure,
                Decision::Stop | Decision::FailoverToLargerWindow => Outcome::Neutral,
            };
            report(
                live,
                health,
                &target,
                outcome,
                Some(reason),
                probe.0.is_some(),
                health_cfg,
            );
            if reason == Reason::AccountDisabled {
                take_out_account(live, snapshot, &target);
            }
            attempts.push(Attempt {
                target: target.name.clone(),
                outcome: Err(error.clone()),
                duration,
            });
            match decision {
                Decision::Stop => return Err(rejected(error)),
                Decision::FailoverToLargerWindow => {
                    min_window = target.context_window;
                    continue 'targets;
                }
                Decision::Failover => {}
            }
            // A retry may only use an attempt no later target needs.
            let later = targets.len() - position - 1;
            let room = attempts.len() + 1 + later <= route.max_attempts;
            if let Some(wait) = same_target_retry(&error, route).filter(|_| !retried && room) {
                if budget.is_none_or(|b| b.try_withdraw(Instant::now())) {
                    retried = true;
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            if let UpstreamError::Status {
                status: 429,
                retry_after: None,
                ..
            } = error
            {
                // Back off a little, with jitter, before the next target.
                let jitter = rand::rng().random_range(10..=60);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            continue 'targets;
        }
    }
    if attempts.is_empty() && !skipped.is_empty() {
        return Err(GatewayError::AllOut {
            route: route.name.clone(),
            skipped,
            retry_after: soonest_back,
        });
    }
    Err(GatewayError::Exhausted {
        route: route.name.clone(),
        attempts,
    })
}

/// Whether this failure earns one more try on the same target, after how
/// long: a 500 at once; a 429 whose `Retry-After` is within the route's
/// limit after that delay. No response and missed first tokens never do.
fn same_target_retry(error: &UpstreamError, route: &Route) -> Option<Duration> {
    match error {
        UpstreamError::Status { status: 500, .. } => Some(Duration::ZERO),
        UpstreamError::Status {
            status: 429,
            retry_after: Some(d),
            ..
        } if *d <= route.max_retry_wait => Some(*d),
        _ => None,
    }
}

/// Feeds an outcome to the target's health and turns transitions into events.
fn report(
    live: &Live,
    health: &TargetHealth,
    target: &Target,
    outcome: Outcome,
    reason: Option<Reason>,
    probe: bool,
    cfg: &crate::config::HealthConfig,
) {
    let transition = if probe {
        health.record_probe(outcome, Instant::now(), cfg)
    } else {
        health.record(outcome, Instant::now(), cfg)
    };
    match transition {
        Some(Transition::Ejected { backoff, why }) => {
            telemetry::ejection(&target.name, "outlier");
            let reason = match reason {
                Some(Reason::ModelUnavailable) => format!(
                    "{why}; the vendor says the model is unavailable: consider `switchyard suspend {}`",
                    target.name
                ),
                _ => why,
            };
            live.events.emit(NewEvent {
                kind: "eject",
                actor: "outlier-detection",
                target: Some(&target.name),
                reason: &reason,
                before: "degraded",
                after: &format!("ejected for {}", humantime::format_duration(backoff)),
            });
        }
        Some(Transition::Recovered) => {
            live.events.emit(NewEvent {
                kind: "recover",
                actor: "outlier-detection",
                target: Some(&target.name),
                reason: "a probe request succeeded",
                before: "ejected",
                after: "healthy",
            });
        }
        None => {}
    }
}

/// A disabled vendor account is not one model's problem: every target that
/// uses the same provider (and so the same credential) goes out at once.
fn take_out_account(live: &Live, snapshot: &Snapshot, failed: &Target) {
    for t in snapshot
        .table
        .targets
        .values()
        .filter(|t| t.provider == failed.provider)
    {
        if let Some(h) = snapshot.health.targets.get(&t.name) {
            telemetry::ejection(&t.name, "account_disabled");
            h.force_eject(
                Instant::now(),
                ACCOUNT_DISABLED_EJECTION,
                "the vendor account is disabled",
            );
        }
    }
    live.events.emit(NewEvent {
        kind: "alert",
        actor: "failover",
        target: Some(&failed.name),
        reason: &format!(
            "provider `{}` says the account is disabled; all its targets are out for {}",
            failed.provider,
            humantime::format_duration(ACCOUNT_DISABLED_EJECTION)
        ),
        before: "healthy",
        after: "ejected",
    });
}

/// Records a stream that breaks after it began as a failure of its target.
fn watch_stream(
    answer: Answer,
    health: Arc<TargetHealth>,
    cfg: crate::config::HealthConfig,
) -> Answer {
    match answer {
        Answer::Complete(r) => Answer::Complete(r),
        Answer::Stream { head, rest } => Answer::Stream {
            head,
            rest: Box::pin(rest.inspect(move |item| {
                if item.is_err() {
                    let _ = health.record(Outcome::Failure, Instant::now(), &cfg);
                }
            })),
        },
    }
}

fn rejected(error: UpstreamError) -> GatewayError {
    match error {
        UpstreamError::Status { status, vendor, .. } => GatewayError::Rejected { status, vendor },
        UpstreamError::InBand { status, vendor } => GatewayError::Rejected {
            status: status.unwrap_or(400),
            vendor,
        },
        other => GatewayError::Rejected {
            status: 502,
            vendor: crate::dialect::VendorError {
                code: None,
                message: other.to_string(),
            },
        },
    }
}
