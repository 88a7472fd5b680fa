//! The one loop that walks a route's targets. It is the only place that
//! decides to move on: before the first byte reaches the app, a failure
//! classified as `Failover` tries the next eligible target; anything else
//! ends the request with one clean error.

mod upstream;

use std::sync::Arc;
use std::time::Instant;

pub use upstream::{Answer, EventStream};

use crate::error::{Attempt, Decision, GatewayError, UpstreamError};
use crate::model::ChatRequest;
use crate::policy::{Route, Target};
use crate::provider::Forwarded;
use crate::state::Snapshot;

/// A request that found a target with a good answer.
pub struct Served {
    pub target: Arc<Target>,
    pub attempts: Vec<Attempt>,
    pub answer: Answer,
}

pub async fn serve(
    snapshot: &Snapshot,
    route: &Route,
    req: &ChatRequest,
    fwd: &Forwarded,
) -> Result<Served, GatewayError> {
    let plan = route
        .plan(req, |_| Ok(()))
        .map_err(|e| GatewayError::NoEligibleTarget {
            route: route.name.clone(),
            why: e.0,
        })?;
    let mut attempts = Vec::with_capacity(plan.targets.len());
    // After a context-length error, only larger windows are worth a try.
    let mut min_window = 0;
    for target in plan.targets {
        if target.context_window <= min_window {
            continue;
        }
        let Some(provider) = snapshot.providers.get(&target.provider) else {
            continue;
        };
        let started = Instant::now();
        let result = upstream::attempt(provider, &target, route, req, fwd).await;
        let duration = started.elapsed();
        match result {
            Ok(answer) => {
                tracing::debug!(route = %route.name, target = %target.name, ?duration, "attempt ok");
                attempts.push(Attempt {
                    target: target.name.clone(),
                    outcome: Ok(()),
                    duration,
                });
                return Ok(Served {
                    target,
                    attempts,
                    answer,
                });
            }
            Err(error) => {
                let (reason, decision) = error.classify();
                tracing::debug!(
                    route = %route.name, target = %target.name, reason = reason.as_str(),
                    error = %error, ?duration, "attempt failed"
                );
                attempts.push(Attempt {
                    target: target.name.clone(),
                    outcome: Err(error.clone()),
                    duration,
                });
                match decision {
                    Decision::Failover => {}
                    Decision::FailoverToLargerWindow => min_window = target.context_window,
                    Decision::Stop => return Err(rejected(error)),
                }
            }
        }
    }
    Err(GatewayError::Exhausted {
        route: route.name.clone(),
        attempts,
    })
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
