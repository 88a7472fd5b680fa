//! Capability-aware continuation (opt-in per route): when a stream breaks
//! after text already reached the app, ask one later target that accepts an
//! assistant prefill to continue from what was delivered, and forward only
//! its continuation. At most once per request, never into a turn with tool
//! calls, and a continuation that fails is never what the app sees: the app
//! gets the original cut's error instead.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::decide::{self, Limits, Step, View};
use super::recorder::{Observation, Recorder, Stage};
use super::upstream::{self, Answer, EventStream};
use crate::health::Admission;
use crate::model::{ChatRequest, Message, Part, Role, StreamEvent, Usage};
use crate::policy::{Route, Target};
use crate::provider::Forwarded;
use crate::state::Snapshot;
use crate::telemetry::{Operation, Parent};

/// What a continuation needs, owned, since it runs inside the app's stream.
pub(super) struct Ctx {
    /// Where the continuation's outcome is recorded, like any attempt's.
    pub recorder: Recorder,
    pub snapshot: Arc<Snapshot>,
    pub route: Route,
    pub req: ChatRequest,
    pub fwd: Forwarded,
    /// Later targets of the plan, in order.
    pub later: Vec<Arc<Target>>,
    /// The request's span, which a continuation attempt hangs under.
    pub parent: Parent,
    /// The number of the attempt that began the stream.
    pub attempt: u32,
}

/// Wraps a stream that began on one target with a one-time continuation.
pub(super) fn wrap(head: &[StreamEvent], mut rest: EventStream, ctx: Ctx) -> EventStream {
    let mut delivered = String::new();
    let mut has_tools = false;
    let mut first_usage = None;
    for e in head {
        track(e, &mut delivered, &mut has_tools);
        if let StreamEvent::Usage(u) = e {
            first_usage = Some(*u);
        }
    }
    Box::pin(async_stream::stream! {
        let mut continued = false;
        // Once continued: what the first attempt delivered, so the usage the
        // app sees describes both attempts.
        let mut before: Option<Usage> = None;
        // The continuation's attempt, once there is one: it sees the rest.
        let mut op: Option<Operation> = None;
        loop {
            match rest.next().await {
                None => break,
                Some(Ok(mut events)) => {
                    for e in &mut events {
                        track(e, &mut delivered, &mut has_tools);
                        match (e, before) {
                            (StreamEvent::Usage(u), None) => first_usage = Some(*u),
                            (StreamEvent::Usage(u), Some(b)) => *u = both(b, *u),
                            _ => {}
                        }
                    }
                    if let Some(op) = &mut op {
                        for e in &events {
                            op.see(e);
                        }
                    }
                    yield Ok(events);
                }
                Some(Err(cut)) => {
                    if let Some(op) = &mut op {
                        op.broke(cut.classify().0.as_str());
                    }
                    if continued || has_tools || delivered.is_empty() {
                        yield Err(cut);
                        break;
                    }
                    continued = true;
                    match resume(&ctx, &delivered).await {
                        Some((mut first, next, started)) => {
                            let b = first_usage.unwrap_or(Usage {
                                input_tokens: ctx.req.estimated_tokens(),
                                output_tokens: (delivered.len() as u64).div_ceil(4),
                            });
                            before = Some(b);
                            for e in &mut first {
                                if let StreamEvent::Usage(u) = e {
                                    *u = both(b, *u);
                                }
                            }
                            tracing::debug!(route = %ctx.route.name, error = %cut, "stream continued on a fallback");
                            rest = next;
                            op = Some(started);
                            if let Some(op) = &mut op {
                                for e in &first {
                                    op.see(e);
                                }
                            }
                            yield Ok(first);
                        }
                        None => {
                            yield Err(cut);
                            break;
                        }
                    }
                }
            }
        }
    })
}

/// Health as a continuation sees it: a target whose ejection just ended is
/// not probed with a continuation (its probe is given back at once), since a
/// failed probe here would cost the app its stream.
struct NoProbe<'a>(&'a Snapshot);

impl View for NoProbe<'_> {
    fn admit(&self, target: &Target) -> Admission {
        let Some(h) = self.0.health.targets.get(&target.name) else {
            return Admission::Suspended("not in the live table".into());
        };
        match h.admit(Instant::now()) {
            Admission::Probe => {
                h.release_probe();
                Admission::Ejected(Duration::ZERO)
            }
            other => other,
        }
    }

    fn withdraw_retry(&self) -> bool {
        false
    }
}

/// The usage of a continued answer: the app's prompt once (the
/// continuation's own input repeats it, plus the prefill), and the output
/// of both attempts.
fn both(before: Usage, continuation: Usage) -> Usage {
    Usage {
        input_tokens: before.input_tokens,
        output_tokens: before.output_tokens + continuation.output_tokens,
    }
}

fn track(e: &StreamEvent, delivered: &mut String, has_tools: &mut bool) {
    match e {
        StreamEvent::TextDelta(t) => delivered.push_str(t),
        StreamEvent::ToolCallStart { .. } | StreamEvent::ToolCallDelta { .. } => *has_tools = true,
        _ => {}
    }
}

/// Starts the continuation on the first admitted target that accepts a
/// prefill; returns its first content events (without its `Start`) and
/// the rest of its stream, and the attempt's operation.
async fn resume(ctx: &Ctx, delivered: &str) -> Option<(Vec<StreamEvent>, EventStream, Operation)> {
    // The same decision as any attempt: one attempt, over the later targets
    // that accept a prefill, health asked in order.
    let plan: Vec<Arc<Target>> = ctx.later.iter().filter(|t| t.prefill).cloned().collect();
    let limits = Limits {
        max_attempts: 1,
        max_retry_wait: Duration::ZERO,
    };
    let view = NoProbe(&ctx.snapshot);
    let Step::Try { index, .. } = decide::next_step(limits, &plan, &[], &view) else {
        return None;
    };
    let target = &plan[index];
    let provider = ctx.snapshot.providers.get(&target.provider)?;
    let mut req = ctx.req.clone();
    req.stream = true;
    req.messages.push(Message {
        role: Role::Assistant,
        content: vec![Part::Text(delivered.to_string())],
    });
    let health = ctx.snapshot.health.targets.get(&target.name)?;
    let mut op = Operation::start(
        &ctx.parent,
        ctx.attempt + 1,
        provider.operation_target(&target.name, &target.model),
        &req,
    );
    let started = Instant::now();
    let result = upstream::attempt(
        provider,
        target,
        &ctx.route,
        &req,
        &ctx.fwd,
        ctx.snapshot.faults.get(&target.name),
        &mut op,
    )
    .await;
    let observe = |result| {
        ctx.recorder.record(Observation {
            target,
            health,
            result,
            stage: Stage::Attempt {
                duration: started.elapsed(),
            },
            probe: false,
        })
    };
    match result {
        Ok(Answer::Stream { head, rest }) => {
            observe(Ok(()));
            let first = head
                .into_iter()
                .filter(|e| !matches!(e, StreamEvent::Start { .. }))
                .collect();
            Some((first, rest, op))
        }
        Ok(Answer::Complete(_)) => None,
        Err(e) => {
            op.fail(e.reason().as_str(), false, e.status());
            observe(Err(e.reason()));
            tracing::debug!(target = %target.name, error = %e, "continuation refused; the app gets the original error");
            None
        }
    }
}
