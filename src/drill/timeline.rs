//! Runs the timeline (faults through the simulator's knobs, ops actions
//! through the admin API) at its times, samples every target's attempt
//! counter and state from the live table, and undoes what the drill left
//! behind.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::format::{Action, Injection, InjectionKind, Step};
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
    knobs: HashSet<(Vendor, String)>,
    gateway: BTreeSet<String>,
    suspended: BTreeSet<String>,
}

/// Only the fields that differ from the defaults, e.g. `{"suspended":true}`.
pub fn knobs_text(k: &Knobs) -> String {
    let (Ok(serde_json::Value::Object(mut set)), Ok(serde_json::Value::Object(def))) = (
        serde_json::to_value(k),
        serde_json::to_value(Knobs::default()),
    ) else {
        return "{}".into();
    };
    set.retain(|key, v| def.get(key) != Some(v));
    serde_json::Value::Object(set).to_string()
}

/// What the steps act on.
pub struct Ctx<'a> {
    pub locations: &'a Locations,
    pub admin: &'a Admin,
    pub sim: Option<&'a Sim>,
    pub t0: Instant,
    /// When the load ends (gateway faults expire a minute after it).
    pub end: Duration,
    pub left: &'a Mutex<Leftovers>,
}

/// Runs each step at `t0 + at`; returns how each went.
pub async fn run(steps: &[Step], ctx: &Ctx<'_>) -> Vec<Applied> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        tokio::time::sleep_until(ctx.t0 + step.at).await;
        let done_secs = ctx.t0.elapsed().as_secs_f64();
        let (kind, target, what, result) = apply(step, ctx).await;
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

type Done = (&'static str, Option<String>, String, Result<(), String>);

async fn apply(step: &Step, ctx: &Ctx<'_>) -> Done {
    match &step.action {
        Action::Fault { target, injection } => {
            let t = Some(target.clone());
            match injection {
                Injection::Sim { knobs, sim_model } => {
                    let what = format!("fault {target} via sim: {}", knobs_text(knobs));
                    let loc = sim_model
                        .clone()
                        .or_else(|| ctx.locations.get(target).cloned());
                    ("fault", t, what, sim_fault(ctx, target, loc, knobs).await)
                }
                Injection::Gateway { fault, for_ } => {
                    let text = serde_json::to_string(fault).unwrap_or_default();
                    let what = format!("fault {target} via gateway: {text}");
                    let left = ctx.end.saturating_sub(ctx.t0.elapsed()) + Duration::from_secs(60);
                    let r = ctx
                        .admin
                        .set_fault(target, fault, for_.unwrap_or(left))
                        .await;
                    if r.is_ok() {
                        leftovers(ctx.left).gateway.insert(target.clone());
                    }
                    ("fault", t, what, r)
                }
            }
        }
        Action::Clear { target, via } => {
            let what = match target {
                Some(t) => format!("clear the faults of {t}"),
                None => "clear every fault".to_string(),
            };
            let sim_too = match via {
                Some(InjectionKind::Sim) => true,
                Some(InjectionKind::Gateway) => false,
                None => ctx.sim.is_some(),
            };
            let mut r = Ok(());
            if sim_too {
                r = clear_sim(ctx, target.as_deref()).await;
            }
            if *via != Some(InjectionKind::Sim) {
                let explicit = *via == Some(InjectionKind::Gateway);
                r = r.and(clear_gateway(ctx, target.as_deref(), explicit).await);
            }
            ("clear", target.clone(), what, r)
        }
        Action::Suspend {
            target,
            reason,
            for_,
        } => {
            let r = ctx.admin.suspend(target, reason, *for_).await;
            if r.is_ok() {
                leftovers(ctx.left).suspended.insert(target.clone());
            }
            let what = match for_ {
                Some(d) => format!(
                    "ops suspend {target} for {} ({reason})",
                    humantime::format_duration(*d)
                ),
                None => format!("ops suspend {target} ({reason})"),
            };
            ("suspend", Some(target.clone()), what, r)
        }
        Action::Resume { target } => {
            let r = ctx.admin.resume(target).await.map(drop);
            if r.is_ok() {
                leftovers(ctx.left).suspended.remove(target);
            }
            let what = format!("ops resume {target}");
            ("resume", Some(target.clone()), what, r)
        }
        Action::Reload => {
            let what = "ops reload the routes table".to_string();
            ("reload", None, what, ctx.admin.reload().await)
        }
    }
}

async fn sim_fault(
    ctx: &Ctx<'_>,
    target: &str,
    loc: Option<(Vendor, String)>,
    knobs: &Knobs,
) -> Result<(), String> {
    let Some(sim) = ctx.sim else {
        return Err("no simulator to inject faults into (--sim URL)".into());
    };
    let Some((vendor, model)) = loc else {
        return Err(format!(
            "where `{target}` lives in the simulator is unknown"
        ));
    };
    sim.set(vendor, &model, knobs).await?;
    leftovers(ctx.left).knobs.insert((vendor, model));
    Ok(())
}

async fn clear_sim(ctx: &Ctx<'_>, target: Option<&str>) -> Result<(), String> {
    let Some(sim) = ctx.sim else {
        return Err("no simulator to clear faults in (--sim URL)".into());
    };
    let Some(t) = target else {
        sim.clear_all().await?;
        leftovers(ctx.left).knobs.clear();
        return Ok(());
    };
    let Some((vendor, model)) = ctx.locations.get(t).cloned() else {
        return Err(format!("where `{t}` lives in the simulator is unknown"));
    };
    sim.set(vendor, &model, &Knobs::default()).await?;
    leftovers(ctx.left).knobs.remove(&(vendor, model));
    Ok(())
}

/// Clears gateway faults: of `target` when the drill set one there (or
/// always, when `explicit`), else of every target the drill faulted.
async fn clear_gateway(ctx: &Ctx<'_>, target: Option<&str>, explicit: bool) -> Result<(), String> {
    let targets: Vec<String> = {
        let l = leftovers(ctx.left);
        match target {
            Some(t) if explicit || l.gateway.contains(t) => vec![t.to_string()],
            Some(_) => Vec::new(),
            None => l.gateway.iter().cloned().collect(),
        }
    };
    for t in targets {
        ctx.admin.clear_fault(&t).await?;
        leftovers(ctx.left).gateway.remove(&t);
    }
    Ok(())
}

/// Puts back what the drill changed: knobs it set go back to normal,
/// gateway faults are cleared and targets it suspended are resumed.
/// Returns what it did, or failed to do.
pub async fn clean_up(admin: &Admin, sim: Option<&Sim>, left: &Mutex<Leftovers>) -> Vec<String> {
    let (knobs, gateway, suspended) = {
        let mut l = leftovers(left);
        (
            std::mem::take(&mut l.knobs),
            std::mem::take(&mut l.gateway),
            std::mem::take(&mut l.suspended),
        )
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
    for t in gateway {
        match admin.clear_fault(&t).await {
            Ok(()) => notes.push(format!("cleanup: cleared the gateway fault of {t}")),
            Err(e) => notes.push(format!(
                "cleanup FAILED to clear the gateway fault of {t}: {e}"
            )),
        }
    }
    for t in suspended {
        match admin.resume(&t).await {
            Ok(_) => notes.push(format!(
                "cleanup: resumed {t}, which the drill had suspended"
            )),
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
                    .map(|(k, TargetReading { requests, state })| {
                        (k, TargetReadingOut { requests, state })
                    })
                    .collect(),
            };
            out.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        }
        if *stop.borrow() {
            break;
        }
    }
}
