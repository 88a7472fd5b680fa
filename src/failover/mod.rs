//! Failing over: the executor of a route's plan. [`decide::next_step`] says
//! what to do next (try a target, retry the same one, or end the request)
//! from the plan, the attempts so far and the health view; [`serve`]
//! performs each step: waits, sends the attempt (`upstream.rs`), and gives
//! every outcome to the [`Recorder`]. A continuation after a cut
//! (`continuation.rs`) uses the same decision function.

mod continuation;
pub mod decide;
mod recorder;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use tokio::time::Instant;

use decide::{Limits, Step, Tried, View, Wait};
pub use recorder::{Observation, Recorder, Stage};
pub use upstream::{Answer, EventStream};

use crate::dialect::{VendorClass, VendorError};
use crate::error::{Attempt, Decision, GatewayError, UpstreamError};
use crate::health::{Admission, RetryBudget, TargetHealth};
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

/// The health registry and retry budget of one request, as the decision
/// function sees them.
struct LiveView<'a> {
    snapshot: &'a Snapshot,
    budget: Option<&'a Arc<RetryBudget>>,
}

impl View for LiveView<'_> {
    fn admit(&self, target: &Target) -> Admission {
        match (
            self.snapshot.providers.get(&target.provider),
            self.snapshot.health.targets.get(&target.name),
        ) {
            (Some(_), Some(h)) => h.admit(Instant::now()),
            _ => Admission::Suspended("not in the live table".into()),
        }
    }

    fn withdraw_retry(&self) -> bool {
        self.budget.is_none_or(|b| b.try_withdraw(Instant::now()))
    }
}

/// The executor: asks [`decide::next_step`] what to do, does it (waits,
/// sends the attempt, records the outcome), and repeats until a step ends
/// the request.
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
    let view = LiveView { snapshot, budget };
    let recorder = Recorder::new(live.clone(), snapshot.clone());
    let limits = Limits::from(route);
    let targets = plan.targets;
    let mut attempts: Vec<Attempt> = Vec::with_capacity(2);
    let mut history: Vec<Tried> = Vec::with_capacity(2);
    let mut probe = ProbeGuard(None);
    loop {
        let (index, wait, retry, probing) =
            match decide::next_step(limits, &targets, &history, &view) {
                Step::Try {
                    index,
                    wait,
                    retry,
                    probe,
                } => (index, wait, retry, probe),
                Step::Reject => {
                    let last = history.pop().map(|t| t.error);
                    return Err(rejected(last.unwrap_or(UpstreamError::Truncated)));
                }
                Step::Exhausted => {
                    return Err(GatewayError::Exhausted {
                        route: route.name.clone(),
                        attempts,
                    })
                }
                Step::AllOut {
                    skipped,
                    retry_after,
                } => {
                    return Err(GatewayError::AllOut {
                        route: route.name.clone(),
                        skipped,
                        retry_after,
                    })
                }
            };
        let target = targets[index].clone();
        let (Some(provider), Some(health)) = (
            snapshot.providers.get(&target.provider),
            snapshot.health.targets.get(&target.name),
        ) else {
            return Err(GatewayError::Exhausted {
                route: route.name.clone(),
                attempts,
            });
        };
        if !retry {
            probe = ProbeGuard(probing.then(|| health.clone()));
        }
        match wait {
            Wait::Now => {}
            Wait::For(d) => tokio::time::sleep(d).await,
            Wait::Jitter => {
                let ms = rand::rng().random_range(10..=60);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        let started = Instant::now();
        let mut op = Operation::start(
            &parent,
            attempts.len() as u32 + 1,
            provider.operation_target(&target.name, &target.model),
            req,
        );
        let result = upstream::attempt(
            provider,
            &target,
            route,
            req,
            fwd,
            snapshot.faults.get(&target.name),
            &mut op,
        )
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
                            later: targets[index + 1..].to_vec(),
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
        history.push(Tried { index, error });
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
