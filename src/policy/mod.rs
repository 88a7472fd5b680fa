//! The compiled routing table: routes, targets and what each target can do.
//!
//! Pure data and pure functions: choosing targets does no I/O and reads no
//! clock, so it is cheap to test and safe to swap as a whole on reload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, OnUnsupported};
use crate::model::ChatRequest;

/// A provider plus an upstream model, under a stable name ops can use.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub provider: String,
    pub model: String,
    pub tools: bool,
    pub images: bool,
    /// The configured window, or the default one when `window_known` is
    /// false.
    pub context_window: u64,
    /// Whether the operator stated the window: after a context-length
    /// error, a target of unknown window is still worth a try.
    pub window_known: bool,
    pub prefill: bool,
}

impl Target {
    /// Why this target cannot honour `req`, if it cannot.
    pub fn unsupported(&self, req: &ChatRequest) -> Option<String> {
        if req.uses_tools() && !self.tools {
            return Some(format!("{} has no tool support", self.name));
        }
        if req.has_images() && !self.images {
            return Some(format!("{} does not accept images", self.name));
        }
        let need = req.estimated_tokens() + u64::from(req.max_tokens.unwrap_or(0));
        if need > self.context_window {
            return Some(format!(
                "{} has a context window of {} tokens; this request needs about {need}",
                self.name, self.context_window
            ));
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    /// In priority order.
    pub targets: Vec<Arc<Target>>,
    pub max_attempts: usize,
    pub first_token_timeout: Duration,
    /// Non-stream: sending → response headers.
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub on_unsupported: OnUnsupported,
    pub max_retry_wait: Duration,
    pub commit_tokens: u32,
    pub commit_time: Option<Duration>,
    pub continue_on_cut: bool,
    /// Largest request body for this route.
    pub max_body_bytes: usize,
}

/// The targets that can honour one request, in order, and why others were
/// left out. Whether each may take traffic *now* (suspended, ejected) is
/// asked by the failover loop right before it tries it, so that a probe is
/// only claimed for a target that is really tried.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub targets: Vec<Arc<Target>>,
    pub skipped: Vec<(String, String)>,
}

/// The request must fail before any attempt: the chosen target cannot
/// honour it and the route says so, or no target can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError(pub String);

impl Route {
    /// Chooses the targets that can honour `req`, in priority order.
    pub fn plan(&self, req: &ChatRequest) -> Result<Plan, PlanError> {
        let mut plan = Plan {
            targets: Vec::with_capacity(self.targets.len()),
            skipped: Vec::new(),
        };
        for (i, t) in self.targets.iter().enumerate() {
            if let Some(why) = t.unsupported(req) {
                // `fail`: the first-choice target must honour the request;
                // fallbacks that cannot are left out of the plan.
                if i == 0 && self.on_unsupported == OnUnsupported::Fail {
                    return Err(PlanError(why));
                }
                plan.skipped.push((t.name.clone(), why));
                continue;
            }
            plan.targets.push(t.clone());
        }
        if plan.targets.is_empty() {
            let why = plan
                .skipped
                .iter()
                .map(|(t, why)| format!("{t}: {why}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(PlanError(why));
        }
        Ok(plan)
    }
}

/// Routes and targets, compiled from a validated [`Config`].
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub routes: BTreeMap<String, Route>,
    pub targets: BTreeMap<String, Arc<Target>>,
    /// The largest body any route accepts: the limit while reading, before
    /// the route is known.
    pub max_body_bytes: usize,
}

impl Table {
    /// Compiles a config that passed [`crate::config::validate`]; dangling
    /// names were rejected there, so lookups here cannot miss.
    pub fn compile(cfg: &Config) -> Table {
        let targets: BTreeMap<String, Arc<Target>> = cfg
            .targets
            .iter()
            .map(|(name, t)| {
                let target = Target {
                    name: name.clone(),
                    provider: t.provider.clone(),
                    model: t.model.clone(),
                    tools: t.tools,
                    images: t.images,
                    context_window: t
                        .context_window
                        .unwrap_or(crate::config::defaults::CONTEXT_WINDOW),
                    window_known: t.context_window.is_some(),
                    prefill: t.prefill,
                };
                (name.clone(), Arc::new(target))
            })
            .collect();
        let routes: BTreeMap<String, Route> = cfg
            .routes
            .iter()
            .map(|(name, r)| {
                let chain: Vec<Arc<Target>> = r
                    .targets
                    .iter()
                    .filter_map(|t| targets.get(t).cloned())
                    .collect();
                let route = Route {
                    name: name.clone(),
                    // One per target, and room for a same-target retry each.
                    max_attempts: r.max_attempts.map_or(chain.len() * 2, |n| n as usize),
                    targets: chain,
                    first_token_timeout: r.first_token_timeout,
                    header_timeout: r.header_timeout,
                    idle_timeout: r.idle_timeout,
                    on_unsupported: r.on_unsupported,
                    max_retry_wait: r.max_retry_wait,
                    commit_tokens: r.commit_tokens,
                    commit_time: r.commit_time,
                    continue_on_cut: r.continue_on_cut,
                    max_body_bytes: r.max_body_bytes.unwrap_or(cfg.gateway.max_body_bytes),
                };
                (name.clone(), route)
            })
            .collect();
        let max_body_bytes = routes
            .values()
            .map(|r: &Route| r.max_body_bytes)
            .chain(std::iter::once(cfg.gateway.max_body_bytes))
            .max()
            .unwrap_or(cfg.gateway.max_body_bytes);
        Table {
            routes,
            targets,
            max_body_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Image, Message, Part, Role};

    fn target(name: &str, images: bool) -> Arc<Target> {
        Arc::new(Target {
            name: name.into(),
            provider: "p".into(),
            model: "m".into(),
            tools: true,
            images,
            context_window: 1000,
            window_known: true,
            prefill: false,
        })
    }

    fn route(on_unsupported: OnUnsupported) -> Route {
        Route {
            name: "r".into(),
            targets: vec![target("a", false), target("b", true), target("c", true)],
            max_attempts: 3,
            first_token_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            on_unsupported,
            max_retry_wait: Duration::from_secs(1),
            commit_tokens: 0,
            commit_time: None,
            continue_on_cut: false,
            max_body_bytes: 1 << 20,
        }
    }

    fn image_request() -> ChatRequest {
        ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: vec![Part::Image(Image::Url("u".into()))],
            }],
            ..ChatRequest::default()
        }
    }

    #[test]
    fn skips_targets_that_cannot_honour_the_request() {
        let plan = route(OnUnsupported::Skip).plan(&image_request()).unwrap();
        let names: Vec<_> = plan.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(plan.skipped[0].0, "a");
    }

    #[test]
    fn fail_policy_rejects_instead_of_skipping() {
        let err = route(OnUnsupported::Fail)
            .plan(&image_request())
            .unwrap_err();
        assert!(err.0.contains("does not accept images"));
    }

    #[test]
    fn a_plan_with_no_capable_target_is_an_error() {
        let mut r = route(OnUnsupported::Skip);
        r.targets.truncate(1);
        let err = r.plan(&image_request()).unwrap_err();
        assert!(err.0.contains("a does not accept images"), "{}", err.0);
    }

    #[test]
    fn context_window_is_checked() {
        let mut req = ChatRequest::default();
        req.messages.push(Message {
            role: Role::User,
            content: vec![Part::Text("x".repeat(8000))],
        });
        assert!(target("a", true)
            .unsupported(&req)
            .unwrap()
            .contains("context window"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// The plan is exactly the capable targets, in route order; with
        /// `fail`, an incapable first-choice target rejects the request.
        #[test]
        fn plan_keeps_exactly_the_capable_targets_in_order(
            caps in proptest::collection::vec((proptest::bool::ANY, proptest::bool::ANY, 1u64..4000), 1..6),
            images in proptest::bool::ANY,
            tools in proptest::bool::ANY,
            words in 0usize..3000,
            fail in proptest::bool::ANY,
        ) {
            let targets: Vec<Arc<Target>> = caps.iter().enumerate().map(|(i, (t, im, w))| Arc::new(Target {
                name: format!("t{i}"), provider: "p".into(), model: "m".into(),
                tools: *t, images: *im, context_window: *w, window_known: true, prefill: false,
            })).collect();
            let mut r = route(if fail { OnUnsupported::Fail } else { OnUnsupported::Skip });
            r.targets = targets.clone();
            let mut content = vec![Part::Text("w".repeat(words * 4))];
            if images { content.push(Part::Image(Image::Url("u".into()))); }
            let mut req = ChatRequest { messages: vec![Message { role: Role::User, content }], ..ChatRequest::default() };
            if tools {
                req.tools.push(crate::model::ToolDef { name: "f".into(), description: None, parameters: serde_json::json!({}) });
            }
            let capable: Vec<String> = targets.iter().filter(|t| t.unsupported(&req).is_none()).map(|t| t.name.clone()).collect();
            match r.plan(&req) {
                Ok(plan) => {
                    let names: Vec<String> = plan.targets.iter().map(|t| t.name.clone()).collect();
                    proptest::prop_assert_eq!(&names, &capable);
                    proptest::prop_assert!(!fail || capable.first() == Some(&targets[0].name));
                    proptest::prop_assert_eq!(plan.skipped.len(), targets.len() - capable.len());
                }
                Err(_) => proptest::prop_assert!(capable.is_empty() || (fail && capable.first() != Some(&targets[0].name))),
            }
        }
    }
}
