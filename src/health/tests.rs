//! The health state machine on a paused clock.

use std::time::Duration;

use tokio::time::{advance, Instant};

use super::*;

fn cfg() -> HealthConfig {
    HealthConfig::default()
}

fn fail(h: &TargetHealth, n: u32) -> Option<Transition> {
    let mut last = None;
    for _ in 0..n {
        last = h.record(Outcome::Failure, Instant::now(), &cfg()).or(last);
    }
    last
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_then_one_probe_restores() {
    let h = TargetHealth::new("claude", Instant::now());
    assert_eq!(fail(&h, cfg().consecutive_failures - 1), None);
    assert_eq!(h.state(Instant::now()), TargetState::Degraded);
    assert!(matches!(fail(&h, 1), Some(Transition::Ejected { .. })));
    assert_eq!(h.state(Instant::now()), TargetState::Ejected);
    assert!(matches!(h.admit(Instant::now()), Admission::Ejected(_)));

    advance(cfg().base_ejection).await;
    assert_eq!(h.admit(Instant::now()), Admission::Probe);
    // Exactly one probe at a time.
    assert!(matches!(h.admit(Instant::now()), Admission::Ejected(_)));
    assert_eq!(
        h.record_probe(Outcome::Success, Instant::now(), &cfg()),
        Some(Transition::Recovered)
    );
    assert_eq!(h.admit(Instant::now()), Admission::Ok);
    assert_eq!(h.state(Instant::now()), TargetState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_with_each_failed_probe_up_to_the_cap() {
    let h = TargetHealth::new("gpt", Instant::now());
    let mut backoffs = Vec::new();
    let Some(Transition::Ejected { backoff, .. }) = fail(&h, cfg().consecutive_failures) else {
        panic!("not ejected")
    };
    backoffs.push(backoff);
    for _ in 0..6 {
        advance(*backoffs.last().unwrap()).await;
        assert_eq!(h.admit(Instant::now()), Admission::Probe);
        match h.record_probe(Outcome::Failure, Instant::now(), &cfg()) {
            Some(Transition::Ejected { backoff, .. }) => backoffs.push(backoff),
            other => panic!("a failed probe must re-eject, got {other:?}"),
        }
    }
    assert!(backoffs.windows(2).all(|w| w[1] >= w[0]), "{backoffs:?}");
    assert_eq!(*backoffs.last().unwrap(), cfg().max_ejection);
    assert!(
        cfg().max_ejection <= Duration::from_secs(30),
        "a recovered target must return within 30 s"
    );
}

#[tokio::test(start_paused = true)]
async fn error_rate_over_the_window_ejects() {
    let h = TargetHealth::new("gemini", Instant::now());
    let c = cfg();
    let mut ejected = false;
    // Alternate success and failure: never N consecutive, but 50% errors.
    for i in 0..(c.min_requests * 2) {
        let outcome = if i % 2 == 0 {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        ejected |= matches!(
            h.record(outcome, Instant::now(), &c),
            Some(Transition::Ejected { .. })
        );
    }
    assert!(ejected);
}

#[tokio::test(start_paused = true)]
async fn the_window_forgets_old_failures() {
    let h = TargetHealth::new("local", Instant::now());
    let c = cfg();
    for i in 0..(c.min_requests - 1) {
        let outcome = if i % 2 == 0 {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        assert_eq!(h.record(outcome, Instant::now(), &c), None);
    }
    advance(c.window * 2).await;
    for _ in 0..c.min_requests {
        assert_eq!(h.record(Outcome::Success, Instant::now(), &c), None);
    }
    assert_eq!(h.record(Outcome::Failure, Instant::now(), &c), None);
    assert_eq!(h.state(Instant::now()), TargetState::Degraded);
}

#[tokio::test(start_paused = true)]
async fn neutral_outcomes_do_not_count() {
    let h = TargetHealth::new("x", Instant::now());
    for _ in 0..100 {
        assert_eq!(h.record(Outcome::Neutral, Instant::now(), &cfg()), None);
    }
    assert_eq!(h.state(Instant::now()), TargetState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn suspension_wins_and_is_never_probed() {
    let h = TargetHealth::new("claude", Instant::now());
    h.suspend(Suspension {
        reason: "vendor order".into(),
        actor: "ops".into(),
        since: 0,
        until: None,
    });
    for _ in 0..3 {
        advance(Duration::from_secs(60)).await;
        assert_eq!(
            h.admit(Instant::now()),
            Admission::Suspended("vendor order".into())
        );
    }
    assert_eq!(h.state(Instant::now()), TargetState::Suspended);
    assert_eq!(h.resume("ops").unwrap().reason, "vendor order");
    assert_eq!(h.admit(Instant::now()), Admission::Ok);
    assert!(h.resume("ops").is_none());
}

#[tokio::test(start_paused = true)]
async fn retry_budget_is_a_fifth_of_requests_plus_a_floor() {
    let b = RetryBudget::new(Instant::now(), 2);
    // The floor: 2 per second with no deposits.
    assert!(b.try_withdraw(Instant::now()));
    assert!(b.try_withdraw(Instant::now()));
    assert!(!b.try_withdraw(Instant::now()));
    advance(Duration::from_secs(1)).await;
    assert!(b.try_withdraw(Instant::now()));
    assert!(b.try_withdraw(Instant::now()));
    assert!(!b.try_withdraw(Instant::now()));
    // 100 requests buy 20 retries.
    for _ in 0..100 {
        b.deposit();
    }
    let granted = (0..50).filter(|_| b.try_withdraw(Instant::now())).count();
    assert_eq!(granted, 20);
}

#[test]
fn registry_carries_state_over_reloads() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let names = ["a".to_string(), "b".to_string()];
        let r1 = Registry::carry_over(None, names.iter(), names.iter(), Instant::now(), 1);
        r1.targets["a"].suspend(Suspension {
            reason: "r".into(),
            actor: "o".into(),
            since: 0,
            until: None,
        });
        let only_b = ["b".to_string()];
        let r2 = Registry::carry_over(Some(&r1), only_b.iter(), only_b.iter(), Instant::now(), 1);
        assert!(std::sync::Arc::ptr_eq(&r1.targets["b"], &r2.targets["b"]));
        assert_eq!(
            r2.suspensions().len(),
            1,
            "a removed target keeps its suspension"
        );
    });
}

#[tokio::test]
async fn suspensions_round_trip_through_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert!(load_suspensions(&path).unwrap().is_empty());
    let mut s = BTreeMap::new();
    s.insert(
        "claude".to_string(),
        Suspension {
            reason: "r".into(),
            actor: "ops".into(),
            since: 1,
            until: Some(2),
        },
    );
    let shown = s.clone();
    let writer = StateWriter::spawn(path.clone(), move || shown.clone());
    writer.persist().await.unwrap();
    assert_eq!(load_suspensions(&path).unwrap(), s);
    std::fs::write(&path, b"{garbage").unwrap();
    assert!(load_suspensions(&path).is_err());
}

/// Racing callers each wait for a write that saw their change, and the
/// file ends with the latest state even though the writes coalesce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_writer_persists_in_order_and_the_latest_state_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let live = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let read = live.clone();
    let writer = std::sync::Arc::new(StateWriter::spawn(path.clone(), move || {
        read.lock().unwrap().clone()
    }));
    let stamp = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let (live, writer, path, stamp) =
            (live.clone(), writer.clone(), path.clone(), stamp.clone());
        tasks.push(tokio::spawn(async move {
            let mine = {
                let mut l = live.lock().unwrap();
                let mine = stamp.fetch_add(1, Ordering::SeqCst);
                let name = format!("t{}", i % 4);
                if i % 3 == 0 {
                    l.remove(&name);
                } else {
                    l.insert(name, suspension(mine));
                }
                l.insert("stamp".to_string(), suspension(mine));
                mine
            };
            writer.persist().await.unwrap();
            // Once persist returns, the file holds this change or a later one.
            let on_disk = load_suspensions(&path).unwrap();
            assert!(on_disk["stamp"].since >= mine, "{on_disk:?} vs {mine}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(load_suspensions(&path).unwrap(), *live.lock().unwrap());
}

fn suspension(since: u64) -> Suspension {
    Suspension {
        reason: format!("change {since}"),
        actor: "ops".into(),
        since,
        until: None,
    }
}

#[tokio::test]
async fn a_state_file_that_cannot_be_written_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let writer = StateWriter::spawn(blocker.join("state.json"), BTreeMap::new);
    let e = writer.persist().await.unwrap_err();
    assert!(e.to_string().contains("cannot write"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_success_that_was_in_flight_does_not_end_an_ejection() {
    let h = TargetHealth::new("claude", Instant::now());
    fail(&h, cfg().consecutive_failures);
    assert_eq!(h.record(Outcome::Success, Instant::now(), &cfg()), None);
    assert_eq!(h.state(Instant::now()), TargetState::Ejected);
    assert!(matches!(h.admit(Instant::now()), Admission::Ejected(_)));
}

/// A degraded target always says why: its failures in a row and its error
/// rate, or that it waits for a probe after an ejection.
#[tokio::test(start_paused = true)]
async fn a_degraded_target_says_why() {
    let h = TargetHealth::new("gpt", Instant::now());
    assert_eq!(h.degraded_reason(Instant::now(), &cfg()), None, "healthy");
    h.record(Outcome::Success, Instant::now(), &cfg());
    fail(&h, 3);
    assert_eq!(h.state(Instant::now()), TargetState::Degraded);
    let why = h.degraded_reason(Instant::now(), &cfg()).unwrap();
    assert!(why.contains("3 consecutive failures"), "{why}");
    assert!(why.contains("error rate 75% (3 of 4 attempts)"), "{why}");

    fail(&h, cfg().consecutive_failures);
    assert_eq!(h.state(Instant::now()), TargetState::Ejected);
    assert_eq!(
        h.degraded_reason(Instant::now(), &cfg()),
        None,
        "ejected, not degraded"
    );
    advance(cfg().base_ejection).await;
    assert_eq!(h.state(Instant::now()), TargetState::Degraded);
    let why = h.degraded_reason(Instant::now(), &cfg()).unwrap();
    assert!(why.contains("waiting for a probe to succeed"), "{why}");
    assert!(why.contains("consecutive failures"), "{why}");
}

/// A take-out as long as a Duration can be stays in force instead of
/// wrapping into the past.
#[tokio::test(start_paused = true)]
async fn an_endless_take_out_does_not_wrap() {
    let h = TargetHealth::new("gpt", Instant::now());
    assert!(h.take_out(Instant::now(), Duration::MAX, "account disabled"));
    advance(Duration::from_secs(3600)).await;
    assert_eq!(h.state(Instant::now()), TargetState::Ejected);
    assert!(matches!(h.admit(Instant::now()), Admission::Ejected(_)));
}

#[tokio::test(start_paused = true)]
async fn a_recovered_target_carries_traffic_within_30s_even_after_repeated_ejections() {
    // A flapping primary with the default back-off: ejected, then every
    // probe fails for a while, a request arriving every half second.
    let h = TargetHealth::new("flappy", Instant::now());
    let tick = Duration::from_millis(500);
    assert!(fail(&h, cfg().consecutive_failures).is_some());
    for _ in 0..8 {
        loop {
            advance(tick).await;
            if h.admit(Instant::now()) == Admission::Probe {
                break;
            }
        }
        assert!(h
            .record_probe(Outcome::Failure, Instant::now(), &cfg())
            .is_some());
    }
    // It recovers right after its last failed probe: the worst moment.
    let recovered = Instant::now();
    loop {
        advance(tick).await;
        if h.admit(Instant::now()) == Admission::Probe {
            h.record_probe(Outcome::Success, Instant::now(), &cfg());
            break;
        }
    }
    let back = Instant::now() - recovered;
    assert_eq!(h.admit(Instant::now()), Admission::Ok);
    assert!(
        back <= Duration::from_secs(25),
        "traffic came back {back:?} after recovery: a 30 s promise needs a margin"
    );
}
