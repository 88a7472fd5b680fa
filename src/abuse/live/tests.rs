//! Unit tests of the live detector's guard: the queue, the clock, the
//! policy, quarantines and their file.

use std::num::NonZeroU32;

use super::worker::flagged;
use super::*;
use crate::abuse::detector::Flag;

fn options(queue: usize) -> Options {
    Options {
        policy: Policy {
            mode: Mode::Enforce,
            action: Action::Suspend,
            throttle_rpm: NonZeroU32::new(2).unwrap(),
            scope: Scope::Key,
        },
        queue,
        max_flags: 2,
        quarantine_file: None,
        log: None,
        log_bodies: false,
        settings: Settings::default(),
    }
}

fn who(key: &str) -> Who<'_> {
    Who {
        key,
        ip: "10.0.0.1",
        user_agent: "ua",
        dialect: Dialect::OpenAi,
        route: "r",
    }
}

const BODY: &[u8] = br#"{"model":"r","messages":[{"role":"user","content":"hello"}]}"#;

#[test]
fn a_full_queue_drops_and_counts_without_waiting() {
    // No worker started: nothing drains the queue of two.
    let guard = Guard::new(options(2)).unwrap();
    for _ in 0..5 {
        let mut p = guard.begin(who("k"), BODY).expect("a record");
        p.settle(7);
    }
    assert_eq!(guard.dropped(), 3);
    let (rx, _) = lock(&guard.inner.worker).take().unwrap();
    let first = rx.try_recv().unwrap();
    assert_eq!((first.key.as_str(), first.output_tokens), ("k", 7));
    assert!(
        first.ts > 1.0e9,
        "stamped with the wall clock: {}",
        first.ts
    );
}

#[test]
fn off_records_nothing_and_a_pinned_clock_stamps_records() {
    let mut opts = options(4);
    opts.policy.mode = Mode::Off;
    let guard = Guard::new(opts.clone()).unwrap();
    assert!(guard.begin(who("k"), BODY).is_none());
    assert!(!guard.watching());
    let guard = Guard::new(options(4)).unwrap();
    guard.pin_clock(Some(1_000.5));
    drop(guard.begin(who("k"), BODY));
    let (rx, _) = lock(&guard.inner.worker).take().unwrap();
    assert_eq!(rx.try_recv().unwrap().ts, 1_000.5);
    assert!(guard.begin(who("k"), b"not json").is_none());
}

fn flag(key: &str) -> Flag {
    Flag {
        key: key.into(),
        flagged_at: 1.0,
        kind: "distillation",
        score: 0.9,
        cluster: None,
        reasons: vec!["why".into()],
    }
}

#[test]
fn enforce_quarantines_observe_does_not_and_ops_lift_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(4);
    opts.quarantine_file = Some(dir.path().join("q.json"));
    let guard = Guard::new(opts.clone()).unwrap();
    let observe = Policy {
        mode: Mode::Observe,
        ..opts.policy
    };
    let r = flagged(&guard, flag("a"), observe, &["a".into()], 5);
    assert!(r.quarantines.is_empty() && r.entry.action.is_none());
    assert_eq!(guard.check("a"), Ok(()));
    let r = flagged(&guard, flag("b"), opts.policy, &["b".into(), "c".into()], 5);
    assert_eq!(r.entry.quarantined, ["b", "c"]);
    assert_eq!(guard.check("b"), Err(Refusal::Suspended));
    assert_eq!(guard.check("c"), Err(Refusal::Suspended));
    // Restored from the file by a new guard.
    let again = Guard::new(opts.clone()).unwrap();
    assert_eq!(again.check("b"), Err(Refusal::Suspended));
    let (old, err) = again.unquarantine("b");
    assert!(old.is_some() && err.is_none());
    assert_eq!(again.check("b"), Ok(()));
    assert_eq!(again.unquarantine("b").0, None);
    let third = Guard::new(opts).unwrap();
    assert_eq!(third.check("b"), Ok(()));
    assert_eq!(third.check("c"), Err(Refusal::Suspended));
    // The ring keeps the newest `max_flags`.
    flagged(&guard, flag("d"), observe, &["d".into()], 5);
    let keys: Vec<String> = guard.flags().into_iter().map(|f| f.flag.key).collect();
    assert_eq!(keys, ["d", "b"]);
}

#[test]
fn a_throttled_key_keeps_its_rate() {
    let mut opts = options(4);
    opts.policy.action = Action::Throttle;
    let guard = Guard::new(opts.clone()).unwrap();
    flagged(&guard, flag("t"), opts.policy, &["t".into()], 5);
    assert_eq!(guard.check("t"), Ok(()));
    assert_eq!(guard.check("t"), Ok(()));
    assert!(matches!(guard.check("t"), Err(Refusal::Throttled { .. })));
    assert_eq!(guard.check("other"), Ok(()));
}

#[test]
fn anonymous_names_hide_the_key() {
    let n = anonymous_name("sk-secret");
    assert!(n.starts_with("anon-") && n.len() == 13 && !n.contains("secret"));
    assert_eq!(n, anonymous_name("sk-secret"));
}
