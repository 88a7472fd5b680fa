//! Runs the timeline (faults through the simulator's knobs, ops actions
//! through the admin API) at its times, samples every target's attempt
//! counter and state from the live table, and undoes what the drill left
//! behind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::file::{Action, Injection, Step};
use super::ops::{Admin, Sim, TargetReading};
use crate::sim::{Knobs, Vendor};

/// A timeline step as it actually ran.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// Index in the file's `[[timeline]]`.
    pub index: usize,
    /// Planned time, seconds after the load started.
    pub at_secs: f64,
    /// When it was done.
    pub done_secs: f64,
    /// `fault`, `clear`, `suspend`, `resume`, `reload`.
    pub kind: &'static str,
    pub target: Option<String>,
    /// What was done, in words.
    pub what: String,
    pub note: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
}

/// Where each faulted target lives in the simulator.
pub type Locations = BTreeMap<String, (Vendor, String)>;

/// What the drill changed and has not undone yet.
#[derive(Debug, Default)]
pub struct Leftovers {
    knobs: BTreeSet<(Vendor, String)>,
    suspended: BTreeSet<String>,
}

/// Only the fields that differ from the defaults, e.g. `{"suspended":true}`.
pub fn knobs_text(k: &Knobs) -> String {
    let (Ok(serde_json::Value::Object(mut set)), Ok(serde_json::Value::Object(def))) =
        (serde_json::to_value(k), serde_json::to_value(Knobs::default()))
    else {
        return "{}".into();
    };
    set.retain(|key, v| def.get(key) != Some(v));
    serde_json::Value::Object(set).to_string()
}

/// Runs each step at `t0 + at`; returns how each went.
pub async fn run(
    steps: &[Step],
    locations: &Locations,
    admin: &Admin,
    sim: Option<&Sim>,
    t0: Instant,
    left: &Mutex<Leftovers>,
) -> Vec<Applied> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        tokio::time::sleep_until(t0 + step.at).await;
        let done_secs = t0.elapsed().as_secs_f64();
        let (kind, target, what, result) = apply(step, locations, admin, sim, left).await;
        out.push(Applied {
            index: step.index,
            at_secs: step.at.as_secs_f64(),
            done_secs,
            kind,
            target,
            what,
            note: step.note.clone(),
            ok: result.is_ok(),
            error: result.err(),
        });
    }
    out
}

fn leftovers(left: &Mutex<Leftovers>) -> std::sync::MutexGuard<'_, Leftovers> {
    left.lock().unwrap_or_else(|e| e.into_inner())
}

async fn apply(
    step: &Step,
    locations: &Locations,
    admin: &Admin,
    sim: Option<&Sim>,
    left: &Mutex<Leftovers>,
) -> (&'static str, Option<String>, String, Result<(), String>) {
    let no_sim = || Err("no simulator to inject faults into (--sim URL)".to_string());
    match &step.action {
        Action::Fault { target, injection } => match injection {
            Injection::Sim { knobs, sim_model } => {
                let loc = sim_model.clone().or_else(|| locations.get(target).cloned());
                let what = format!("fault {target} via sim: {}", knobs_text(knobs));
                let result = match (sim, loc) {
                    (Some(sim), Some((vendor, model))) => {
                        let r = sim.set(vendor, &model, knobs).await;
                        if r.is_ok() {
                            leftovers(left).knobs.insert((vendor, model));
                        }
                        r
                    }
                    (None, _) => no_sim(),
                    (_, None) => Err(format!("where `{target}` lives in the simulator is unknown")),
                };
                ("fault", Some(target.clone()), what, result)
            }
        },
        Action::Clear { target, .. } => {
            let Some(sim) = sim else {
                return ("clear", target.clone(), "clear faults".into(), no_sim());
            };
            match target {
                None => {
                    let r = sim.clear_all().await;
                    if r.is_ok() {
                        leftovers(left).knobs.clear();
                    }
                    ("clear", None, "clear every fault".into(), r)
                }
                Some(t) => {
                    let loc = step_location(t, locations);
                    let r = match &loc {
                        Some((vendor, model)) => sim.set(*vendor, model, &Knobs::default()).await,
                        None => Err(format!("where `{t}` lives in the simulator is unknown")),
                    };
                    if let (Ok(()), Some(loc)) = (&r, loc) {
                        leftovers(left).knobs.remove(&loc);
                    }
                    ("clear", Some(t.clone()), format!("clear the faults of {t}"), r)
                }
            }
        }
        Action::Suspend { target, reason, for_ } => {
            let r = admin.suspend(target, reason, *for_).await;
            if r.is_ok() {
                leftovers(left).suspended.insert(target.clone());
            }
            let what = match for_ {
                Some(d) => format!("ops suspend {target} for {} ({reason})", humantime::format_duration(*d)),
                None => format!("ops suspend {target} ({reason})"),
            };
            ("suspend", Some(target.clone()), what, r)
        }
        Action::Resume { target } => {
            let r = admin.resume(target).await.map(drop);
            if r.is_ok() {
                leftovers(left).suspended.remove(target);
            }
            ("resume", Some(target.clone()), format!("ops resume {target}"), r)
        }
        Action::Reload => ("reload", None, "ops reload the routes table".into(), admin.reload().await),
    }
}

fn step_location(target: &str, locations: &Locations) -> Option<(Vendor, String)> {
    locations.get(target).cloned()
}

/// Puts back what the drill changed: knobs it set go back to normal and
/// targets it suspended are resumed. Returns what it did, or failed to do.
pub async fn clean_up(admin: &Admin, sim: Option<&Sim>, left: &Mutex<Leftovers>) -> Vec<String> {
    let (knobs, suspended) = {
        let mut l = leftovers(left);
        (std::mem::take(&mut l.knobs), std::mem::take(&mut l.suspended))
    };
    let mut notes = Vec::new();
    if let Some(sim) = sim {
        for (vendor, model) in knobs {
            match sim.set(vendor, &model, &Knobs::default()).await {
                Ok(()) => notes.push(format!("cleanup: knobs of {vendor}/{model} back to normal")),
                Err(e) => notes.push(format!("cleanup FAILED for knobs of {vendor}/{model}: {e}")),
            }
        }
    }
    for t in suspended {
        match admin.resume(&t).await {
            Ok(_) => notes.push(format!("cleanup: resumed {t}, which the drill had suspended")),
            Err(e) => notes.push(format!("cleanup FAILED to resume {t}: {e}")),
        }
    }
    notes
}

/// Every target's attempt counter and state at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_secs: f64,
    pub targets: BTreeMap<String, TargetReadingOut>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReadingOut {
    pub requests: u64,
    pub state: String,
}

/// Samples the live table every `every` until `stop` turns true.
pub async fn sample(
    admin: Admin,
    t0: Instant,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    out: Arc<Mutex<Vec<Sample>>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok(readings) = admin.readings().await {
            let s = Sample {
                t_secs: t0.elapsed().as_secs_f64(),
                targets: readings
                    .into_iter()
                    .map(|(k, TargetReading { requests, state })| (k, TargetReadingOut { requests, state }))
                    .collect(),
            };
            out.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        }
        if *stop.borrow() {
            break;
        }
    }
}
