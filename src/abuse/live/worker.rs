//! The detector thread and what it does with each flag.

use std::sync::mpsc::Receiver;
use std::sync::Weak;

use super::{lock, Action, FlagEntry, Guard, Inner, Mode, Policy, Quarantine, Report, Scope};
use crate::abuse::detector::{Detector, Flag, Settings};
use crate::abuse::record::Record;

/// The detector thread: observes each record, applies the policy to each
/// flag. Ends when the guard is gone.
pub(super) fn run(
    weak: Weak<Inner>,
    rx: Receiver<Record>,
    settings: Settings,
    report: impl Fn(&Report),
) {
    let mut detector = Detector::new(settings);
    while let Ok(record) = rx.recv() {
        let Some(flag) = detector.observe(&record) else {
            continue;
        };
        let Some(inner) = weak.upgrade() else {
            break;
        };
        let policy = **inner.policy.load();
        if policy.mode == Mode::Off {
            continue;
        }
        let mut keys = vec![flag.key.clone()];
        if let (Scope::Cluster, Some(c)) = (policy.scope, &flag.cluster) {
            for k in detector.cluster_keys(c) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        let guard = Guard {
            inner: inner.clone(),
        };
        let r = flagged(&guard, flag, policy, &keys, now_secs());
        report(&r);
    }
}

/// Applies `policy` to one flag: quarantines (in `enforce`), the metric,
/// the ring of recent flags.
pub(super) fn flagged(
    guard: &Guard,
    flag: Flag,
    policy: Policy,
    keys: &[String],
    now: u64,
) -> Report {
    let inner = &guard.inner;
    crate::telemetry::abuse_flag(flag.kind);
    let enforce = policy.mode == Mode::Enforce;
    let quarantines: Vec<Quarantine> = if enforce {
        let already = inner.quarantines.load();
        keys.iter()
            .filter(|k| !already.contains_key(k.as_str()))
            .map(|k| Quarantine {
                key: k.clone(),
                action: policy.action,
                rpm: (policy.action == Action::Throttle).then_some(policy.throttle_rpm.get()),
                since: now,
                flagged_key: flag.key.clone(),
                kind: flag.kind.to_string(),
                score: flag.score,
                cluster: flag.cluster.clone(),
                reasons: flag.reasons.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let persist_error = guard.quarantine(&quarantines);
    let entry = FlagEntry {
        flag,
        mode: policy.mode,
        action: enforce.then_some(policy.action),
        quarantined: quarantines.iter().map(|q| q.key.clone()).collect(),
    };
    {
        let mut ring = lock(&inner.flags);
        if ring.len() >= inner.max_flags {
            ring.pop_front();
        }
        ring.push_back(entry.clone());
    }
    Report {
        entry,
        quarantines,
        persist_error,
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
