//! The one loop that walks a route's targets. It is the only place that
//! decides to move on: before the first byte reaches the app, a failure
//! classified as `Failover` may be retried once on the same target (a 500,
//! or a 429 with a short `Retry-After`, within the route's retry budget),
//! then tries the next eligible target; anything else ends the request with
//! one clean error. It also feeds every outcome to the target's health.

mod continuation;
mod recorder;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use tokio::time::Instant;

pub use recorder::{Observation, Recorder, Stage};
pub use upstream::{Answer, EventStream};

use crate::dialect::{VendorClass, VendorError};
use crate::error::{Attempt, Decision, GatewayError, UpstreamError};
use crate::health::{Admission, TargetHealth};
use crate::model::ChatRequest;
use crate::policy::{Route, Target};
use crate::provider::Forwarded;
use crate::state::{Live, Snapshot};
use crate::telemetry::{self, Operation, RequestSpan};

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
    live: &Arc<Live>,
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
    let recorder = Recorder::new(live.clone(), snapshot.clone());
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
                    recorder.record(Observation {
                        target: &target,
                        health,
                        result: Ok(()),
                        stage: Stage::Attempt { duration },
                        probe: probe.0.is_some(),
                    });
                    tracing::debug!(route = %route.name, target = %target.name, ?duration, "attempt ok");
                    attempts.push(Attempt {
                        target: target.name.clone(),
                        outcome: Ok(()),
                        duration,
                    });
                    let mut answer = watch_stream(answer, recorder.clone(), target.clone());
                    if route.continue_on_cut {
                        if let Answer::Stream { head, rest } = answer {
                            let ctx = continuation::Ctx {
                                recorder: recorder.clone(),
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
            if decision != Decision::Stop {
                telemetry::failover(&route.name, &target.name, reason.as_str());
            }
            op.fail(reason.as_str(), decision != Decision::Stop, error.status());
            tracing::debug!(
                route = %route.name, target = %target.name, reason = reason.as_str(),
                error = %error, ?duration, "attempt failed"
            );
            recorder.record(Observation {
                target: &target,
                health,
                result: Err(reason),
                stage: Stage::Attempt { duration },
                probe: probe.0.is_some(),
            });
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
                // The recorder took the provider out: its other targets
                // are skipped as ejected.
                Decision::TakeProviderOut => continue 'targets,
                Decision::Failover | Decision::RetrySameTarget => {}
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
/// long: the table says the class may be retried, and either the vendor
/// named a reset within the route's `max_retry_wait` (waited for), or it
/// answered a plain 500 (retried at once). No response, missed first
/// tokens and everything else never are.
fn same_target_retry(error: &UpstreamError, route: &Route) -> Option<Duration> {
    if error.reason().rule().decision != Decision::RetrySameTarget {
        return None;
    }
    match (error.reset_after(), error) {
        (Some(d), _) => (d <= route.max_retry_wait).then_some(d),
        (None, UpstreamError::Status { status: 500, .. }) => Some(Duration::ZERO),
        _ => None,
    }
}

/// Records a stream that breaks after it began as a failure of its target.
fn watch_stream(answer: Answer, recorder: Recorder, target: Arc<Target>) -> Answer {
    match answer {
        Answer::Complete(r) => Answer::Complete(r),
        Answer::Stream { head, rest } => Answer::Stream {
            head,
            rest: Box::pin(rest.inspect(move |item| {
                if let Err(e) = item {
                    if let Some(health) = recorder.health(&target.name) {
                        recorder.record(Observation {
                            target: &target,
                            health: &health,
                            result: Err(e.reason()),
                            stage: Stage::MidStream,
                            probe: false,
                        });
                    }
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
            vendor: VendorError::new(VendorClass::ServerError, None, other.to_string()),
        },
    }
}
