//! Property tests of the decision function: arbitrary plans, health views,
//! budgets and failure sequences, no sockets and no clock.

use std::cell::Cell;

use proptest::prelude::*;

use super::*;
use crate::dialect::{VendorClass, VendorError};

#[derive(Debug, Clone)]
enum Health {
    Ok,
    Probe,
    Suspended,
    Ejected,
}

impl Health {
    fn admission(&self) -> Admission {
        match self {
            Health::Ok => Admission::Ok,
            Health::Probe => Admission::Probe,
            Health::Suspended => Admission::Suspended("ops".into()),
            Health::Ejected => Admission::Ejected(Duration::from_secs(3)),
        }
    }
}

struct Fake {
    health: Vec<Health>,
    budget: Cell<u32>,
    withdrawn: Cell<u32>,
    asked: std::cell::RefCell<Vec<String>>,
}

impl View for Fake {
    fn admit(&self, target: &Target) -> Admission {
        self.asked.borrow_mut().push(target.name.clone());
        let i: usize = target.name[1..].parse().unwrap();
        self.health[i].admission()
    }

    fn withdraw_retry(&self) -> bool {
        if self.budget.get() == 0 {
            return false;
        }
        self.budget.set(self.budget.get() - 1);
        self.withdrawn.set(self.withdrawn.get() + 1);
        true
    }
}

fn status(status: u16, class: VendorClass, retry_after: Option<Duration>) -> UpstreamError {
    UpstreamError::Status {
        status,
        vendor: VendorError::new(class, None, String::new()),
        retry_after,
    }
}

fn failure() -> impl Strategy<Value = UpstreamError> {
    prop_oneof![
        Just(status(500, VendorClass::ServerError, None)),
        Just(status(502, VendorClass::ServerError, None)),
        (0u64..4000).prop_map(|ms| status(
            429,
            VendorClass::RateLimited,
            Some(Duration::from_millis(ms))
        )),
        Just(status(429, VendorClass::RateLimited, None)),
        Just(status(529, VendorClass::Overloaded, None)),
        Just(status(400, VendorClass::ContextLength, None)),
        Just(status(400, VendorClass::InvalidRequest, None)),
        Just(status(400, VendorClass::ContentPolicy, None)),
        Just(status(403, VendorClass::AccountDisabled, None)),
        Just(status(429, VendorClass::QuotaExhausted, None)),
        Just(UpstreamError::Connect),
        Just(UpstreamError::FirstTokenTimeout(Duration::from_secs(1))),
    ]
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        4 => Just(Health::Ok),
        1 => Just(Health::Probe),
        1 => Just(Health::Suspended),
        1 => Just(Health::Ejected),
    ]
}

fn plan(windows: &[Option<u64>]) -> Vec<Arc<Target>> {
    windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            Arc::new(Target {
                name: format!("t{i}"),
                provider: format!("p{}", i % 2),
                model: "m".into(),
                tools: true,
                images: true,
                context_window: w.unwrap_or(1500),
                window_known: w.is_some(),
                prefill: false,
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_decision_function_keeps_its_promises(
        windows in prop::collection::vec(
            prop_oneof![Just(Some(1000u64)), Just(Some(2000)), Just(Some(4000)), Just(None)],
            1..6,
        ),
        healths in prop::collection::vec(health(), 6),
        failures in prop::collection::vec(failure(), 1..12),
        max_attempts in 1usize..10,
        max_retry_wait_ms in 0u64..3000,
        budget in 0u32..4,
    ) {
        let plan = plan(&windows);
        let limits = Limits { max_attempts, max_retry_wait: Duration::from_millis(max_retry_wait_ms) };
        let view = Fake {
            health: healths.clone(),
            budget: Cell::new(budget),
            withdrawn: Cell::new(0),
            asked: Default::default(),
        };
        let mut history: Vec<Tried> = Vec::new();
        let mut ended = false;
        for _ in 0..64 {
            let step = next_step(limits, &plan, &history, &view);
            match step {
                Step::Try { index, retry, probe, wait } => {
                    prop_assert!(history.len() < max_attempts, "more attempts than allowed");
                    if retry {
                        let last = history.last().expect("a retry follows a failure");
                        prop_assert_eq!(last.index, index, "a retry is on the same target");
                        prop_assert_eq!(last.error.classify().1, Decision::RetrySameTarget);
                        prop_assert!(
                            history.len() < 2 || history[history.len() - 2].index != index,
                            "at most one retry per target"
                        );
                        let later = plan.len() - index - 1;
                        prop_assert!(history.len() + 1 + later <= max_attempts, "a retry took a later target's attempt");
                        if let Wait::For(d) = wait {
                            prop_assert!(d <= limits.max_retry_wait);
                        }
                    } else {
                        prop_assert!(
                            history.iter().all(|t| t.index != index),
                            "a target tried twice without a retry rule"
                        );
                        match healths[index] {
                            Health::Suspended | Health::Ejected => prop_assert!(false, "tried a target that is out"),
                            Health::Probe => prop_assert!(probe),
                            Health::Ok => prop_assert!(!probe),
                        }
                        let floor = history
                            .iter()
                            .filter(|t| t.error.classify().1 == Decision::FailoverToLargerWindow)
                            .map(|t| plan[t.index].context_window)
                            .max();
                        if let Some(floor) = floor {
                            prop_assert!(
                                !plan[index].window_known || plan[index].context_window > floor,
                                "not a larger or unknown window"
                            );
                        }
                    }
                    let error = failures[history.len() % failures.len()].clone();
                    history.push(Tried { index, error });
                }
                Step::Reject => {
                    let last = history.last().expect("a rejection follows a failure");
                    prop_assert!(
                        matches!(
                            last.error.classify().1,
                            Decision::Stop | Decision::FailoverToLargerWindow
                        ),
                        "only the request's fault or a prompt too long for every target is answered as the vendor's"
                    );
                    ended = true;
                    break;
                }
                Step::AllOut { skipped, .. } => {
                    prop_assert!(history.is_empty(), "all-out only before any attempt");
                    prop_assert!(!skipped.is_empty());
                    ended = true;
                    break;
                }
                Step::Exhausted => {
                    ended = true;
                    break;
                }
            }
            if let Some(last) = history.last() {
                if last.error.classify().1 == Decision::Stop {
                    prop_assert_eq!(next_step(limits, &plan, &history, &view), Step::Reject);
                    ended = true;
                    break;
                }
            }
        }
        prop_assert!(ended, "the loop ends");
        prop_assert!(history.len() <= max_attempts);
        prop_assert!(view.withdrawn.get() <= budget, "budget exceeded");
        let asked = view.asked.borrow();
        let mut unique = asked.clone();
        unique.dedup();
        prop_assert_eq!(asked.len(), unique.len(), "health asked twice for one target");
    }
}

#[test]
fn a_retry_waits_for_the_stated_reset_and_only_when_the_budget_pays() {
    let plan = plan(&[Some(1000), Some(1000)]);
    let limits = Limits {
        max_attempts: 4,
        max_retry_wait: Duration::from_secs(2),
    };
    let fake = |budget| Fake {
        health: vec![Health::Ok, Health::Ok],
        budget: Cell::new(budget),
        withdrawn: Cell::new(0),
        asked: Default::default(),
    };
    let limited = vec![Tried {
        index: 0,
        error: status(429, VendorClass::RateLimited, Some(Duration::from_secs(1))),
    }];
    assert_eq!(
        next_step(limits, &plan, &limited, &fake(1)),
        Step::Try {
            index: 0,
            wait: Wait::For(Duration::from_secs(1)),
            retry: true,
            probe: false
        }
    );
    assert!(matches!(
        next_step(limits, &plan, &limited, &fake(0)),
        Step::Try {
            index: 1,
            retry: false,
            ..
        }
    ));
    let quota = vec![Tried {
        index: 0,
        error: status(429, VendorClass::QuotaExhausted, Some(Duration::ZERO)),
    }];
    assert!(
        matches!(
            next_step(limits, &plan, &quota, &fake(5)),
            Step::Try { index: 1, .. }
        ),
        "exhausted quota is never retried on the same target"
    );
    let bare = vec![Tried {
        index: 0,
        error: status(429, VendorClass::RateLimited, None),
    }];
    assert!(matches!(
        next_step(limits, &plan, &bare, &fake(5)),
        Step::Try {
            index: 1,
            wait: Wait::Jitter,
            ..
        }
    ));
}

#[test]
fn a_prompt_too_long_everywhere_gets_the_vendors_answer() {
    // Known 1000 (failed), known 800 (smaller: skipped), unknown (tried).
    let plan = plan(&[Some(1000), Some(800), None]);
    let limits = Limits {
        max_attempts: 6,
        max_retry_wait: Duration::ZERO,
    };
    let view = Fake {
        health: vec![Health::Ok, Health::Ok, Health::Ok],
        budget: Cell::new(0),
        withdrawn: Cell::new(0),
        asked: Default::default(),
    };
    let too_long = || status(400, VendorClass::ContextLength, None);
    let mut history = vec![Tried {
        index: 0,
        error: too_long(),
    }];
    assert!(matches!(
        next_step(limits, &plan, &history, &view),
        Step::Try { index: 2, .. }
    ));
    history.push(Tried {
        index: 2,
        error: too_long(),
    });
    assert_eq!(next_step(limits, &plan, &history, &view), Step::Reject);
}
