//! Parses and validates a drill file. Every problem found names its key
//! (`load.rate`, `timeline[2].knobs`, `slo[1].max`) and all of them are
//! reported at once.

use std::time::Duration;

use toml::Table;

use super::format::*;
use super::section::{Problems, Section};
use crate::provider::fault::Fault;
use crate::sim::{Knobs, Vendor};

/// Parses and validates a drill file's text; `stem` names the drill when the
/// file has no `name`. On failure returns every problem found.
pub fn parse(text: &str, stem: &str) -> Result<Drill, Problems> {
    let root: Table = toml::from_str(text).map_err(|e| vec![e.to_string().trim().to_string()])?;
    let mut p = Problems::new();
    let mut top = Section::new("", &root);
    let name = top
        .opt::<String>("name", &mut p)
        .unwrap_or_else(|| stem.to_string());
    if name.trim().is_empty() {
        p.push("name: must not be empty".into());
    }
    let description = top.opt::<String>("description", &mut p).unwrap_or_default();
    let load = match top.req::<Table>("load", "a [load] table", &mut p) {
        Some(t) => parse_load(&t, &mut p),
        None => None,
    };
    let steps = top
        .opt::<Vec<Table>>("timeline", &mut p)
        .unwrap_or_default();
    let slos = top.opt::<Vec<Table>>("slo", &mut p).unwrap_or_default();
    let demo = top.opt::<Table>("demo", &mut p);
    top.finish(&mut p);

    let mut timeline: Vec<Step> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, t)| parse_step(i, t, &mut p))
        .collect();
    timeline.sort_by_key(|s| s.at);
    if slos.is_empty() {
        p.push("slo: a drill needs at least one [[slo]] to judge the run by".into());
    }
    let slos: Vec<Slo> = slos
        .iter()
        .enumerate()
        .filter_map(|(i, t)| parse_slo(i, t, &mut p))
        .collect();
    if let Some(load) = &load {
        check_times(load.duration, &timeline, &slos, &mut p);
    }
    match load {
        Some(load) if p.is_empty() => Ok(Drill {
            name,
            description,
            load,
            timeline,
            slos,
            demo,
        }),
        _ => Err(p),
    }
}

fn parse_load(t: &Table, p: &mut Problems) -> Option<Load> {
    let mut s = Section::new("load", t);
    let route = s.req::<String>("route", "the route name apps send as `model`", p);
    let rate = s.opt::<f64>("rate", p);
    let concurrency = s.opt::<u32>("concurrency", p);
    let shape = match (rate, concurrency) {
        (Some(r), None) if r > 0.0 && r <= 5000.0 => Some(Shape::Rate(r)),
        (Some(r), None) => {
            p.push(format!(
                "load.rate: {r} requests/s is out of range (0 < rate <= 5000)"
            ));
            None
        }
        (None, Some(c)) if (1..=2048).contains(&c) => Some(Shape::Concurrency(c)),
        (None, Some(c)) => {
            p.push(format!("load.concurrency: {c} is out of range (1..=2048)"));
            None
        }
        (Some(_), Some(_)) => {
            p.push("load.rate, load.concurrency: give one of the two, not both".into());
            None
        }
        (None, None) if t.contains_key("rate") || t.contains_key("concurrency") => None,
        (None, None) => {
            p.push("load.rate: missing (requests per second; or load.concurrency: workers)".into());
            None
        }
    };
    let duration = s.req_duration("duration", p);
    if duration.is_some_and(|d| d.is_zero() || d > Duration::from_secs(3600)) {
        p.push("load.duration: must be more than 0 and at most 1h".into());
    }
    let timeout = s.duration("timeout", p).unwrap_or(Duration::from_secs(30));
    if timeout.is_zero() {
        p.push("load.timeout: must be more than 0".into());
    }
    let stream = s.share("stream", 0.0, p);
    let tools = s.share("tools", 0.0, p);
    let max_in_flight = s.opt::<usize>("max_in_flight", p).unwrap_or(512).max(1);
    let seed = s.opt::<u64>("seed", p).unwrap_or(1);
    let dialects = match s.opt::<Table>("dialects", p) {
        Some(d) => parse_dialects(&d, p),
        None => vec![(Dialect::Openai, 1.0)],
    };
    s.finish(p);
    Some(Load {
        route: route?,
        shape: shape?,
        duration: duration?,
        timeout,
        stream,
        tools,
        dialects,
        max_in_flight,
        seed,
    })
}

fn parse_dialects(t: &Table, p: &mut Problems) -> Vec<(Dialect, f64)> {
    let mut s = Section::new("load.dialects", t);
    let mut out = Vec::new();
    for d in Dialect::ALL {
        match s.opt::<f64>(d.as_str(), p) {
            Some(w) if w >= 0.0 && w.is_finite() => out.push((d, w)),
            Some(w) => p.push(format!(
                "load.dialects.{}: weight {w} must be 0 or more",
                d.as_str()
            )),
            None => {}
        }
    }
    s.finish(p);
    if out.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
        p.push("load.dialects: give at least one dialect a weight above 0".into());
    }
    out
}

fn parse_step(i: usize, t: &Table, p: &mut Problems) -> Option<Step> {
    let mut s = Section::new(format!("timeline[{i}]"), t);
    let at = s.req_duration("at", p);
    let note = s.opt::<String>("note", p);
    let what = s.req::<String>("do", "one of fault, clear, suspend, resume, reload", p);
    let action = match what.as_deref() {
        Some("fault") => {
            let target = s.req::<String>("target", "the target to fault", p);
            let via = s.opt::<String>("via", p).unwrap_or_else(|| "sim".into());
            let injection = match via.as_str() {
                "sim" => {
                    let knobs =
                        s.req::<Knobs>("knobs", "simulator knobs, e.g. { suspended = true }", p);
                    let sim_model = s
                        .opt::<String>("sim_model", p)
                        .and_then(|m| sim_model(&s.key("sim_model"), &m, p));
                    knobs.map(|knobs| Injection::Sim { knobs, sim_model })
                }
                "gateway" => {
                    let fault = s.req::<Fault>(
                        "fault",
                        "a gateway fault, e.g. { kind = \"unavailable\" }",
                        p,
                    );
                    let for_ = s.duration("for", p);
                    fault.map(|fault| Injection::Gateway { fault, for_ })
                }
                other => {
                    p.push(format!(
                        "{}: unknown injection `{other}` (expected \"sim\" or \"gateway\")",
                        s.key("via")
                    ));
                    None
                }
            };
            target
                .zip(injection)
                .map(|(target, injection)| Action::Fault { target, injection })
        }
        Some("clear") => {
            let target = s.opt::<String>("target", p);
            let via = match s.opt::<String>("via", p).as_deref() {
                None => Ok(None),
                Some("sim") => Ok(Some(InjectionKind::Sim)),
                Some("gateway") => Ok(Some(InjectionKind::Gateway)),
                Some(other) => Err(format!(
                    "{}: unknown injection `{other}` (expected \"sim\" or \"gateway\")",
                    s.key("via")
                )),
            };
            via.map_err(|e| p.push(e))
                .ok()
                .map(|via| Action::Clear { target, via })
        }
        Some("suspend") => {
            let target = s.req::<String>("target", "the target ops suspend", p);
            let reason = s
                .opt::<String>("reason", p)
                .unwrap_or_else(|| "chaos drill".into());
            let for_ = s.duration("for", p);
            target.map(|target| Action::Suspend {
                target,
                reason,
                for_,
            })
        }
        Some("resume") => s
            .req::<String>("target", "the target ops resume", p)
            .map(|target| Action::Resume { target }),
        Some("reload") => Some(Action::Reload),
        Some(other) => {
            p.push(format!(
                "{}: unknown action `{other}` (expected fault, clear, suspend, resume or reload)",
                s.key("do")
            ));
            None
        }
        None => None,
    };
    s.finish(p);
    Some(Step {
        index: i,
        at: at?,
        action: action?,
        note,
    })
}

fn sim_model(key: &str, m: &str, p: &mut Problems) -> Option<(Vendor, String)> {
    let parsed = m
        .split_once('/')
        .and_then(|(v, model)| Some((Vendor::parse(v)?, model)))
        .filter(|(_, model)| !model.is_empty());
    if parsed.is_none() {
        p.push(format!(
            "{key}: `{m}` is not vendor/model (vendors: anthropic, openai, gemini, local; model or *)"
        ));
    }
    parsed.map(|(v, model)| (v, model.to_string()))
}

fn parse_slo(i: usize, t: &Table, p: &mut Problems) -> Option<Slo> {
    let mut s = Section::new(format!("slo[{i}]"), t);
    let kind_name = s.req::<String>(
        "kind",
        "one of error_rate, p99_latency, drain_time, served_share, truncated_streams",
        p,
    );
    let name = s.opt::<String>("name", p);
    let from = s.duration("from", p);
    let until = s.duration("until", p);
    let max_share = |s: &mut Section<'_>, p: &mut Problems| {
        let v = s.req::<f64>("max", "a share between 0 and 1", p)?;
        if (0.0..=1.0).contains(&v) {
            Some(v)
        } else {
            p.push(format!(
                "{}: {v} is not a share between 0 and 1",
                s.key("max")
            ));
            None
        }
    };
    let kind = match kind_name.as_deref() {
        Some("error_rate") => max_share(&mut s, p).map(|max| SloKind::ErrorRate { max }),
        Some("p99_latency") => s
            .req_duration("max", p)
            .map(|max| SloKind::P99Latency { max }),
        Some("drain_time") => {
            let target = s.req::<String>("target", "the faulted target", p);
            let max = s.req_duration("max", p);
            target
                .zip(max)
                .map(|(target, max)| SloKind::DrainTime { target, max })
        }
        Some("served_share") => {
            let target = s.req::<String>("target", "the target that should serve", p);
            let min = s.req::<f64>("min", "a share between 0 and 1", p);
            if let Some(m) = min.filter(|m| !(0.0..=1.0).contains(m)) {
                p.push(format!(
                    "{}: {m} is not a share between 0 and 1",
                    s.key("min")
                ));
            }
            let min = min.filter(|m| (0.0..=1.0).contains(m));
            target
                .zip(min)
                .map(|(target, min)| SloKind::ServedShare { target, min })
        }
        Some("truncated_streams") => Some(SloKind::TruncatedStreams {
            max: s.opt::<u64>("max", p).unwrap_or(0),
        }),
        Some(other) => {
            p.push(format!(
                "{}: unknown SLO kind `{other}` (expected error_rate, p99_latency, drain_time, served_share or truncated_streams)",
                s.key("kind")
            ));
            None
        }
        None => None,
    };
    s.finish(p);
    let kind = kind?;
    let name = name.unwrap_or_else(|| match &kind {
        SloKind::DrainTime { target, .. } => format!("drain_time {target}"),
        SloKind::ServedShare { target, .. } => format!("served_share {target}"),
        k => k.as_str().to_string(),
    });
    Some(Slo {
        name,
        kind,
        from,
        until,
    })
}

/// Times must fall inside the load's duration; windows must not be empty.
fn check_times(duration: Duration, timeline: &[Step], slos: &[Slo], p: &mut Problems) {
    let d = humantime::format_duration(duration);
    for s in timeline {
        if s.at > duration {
            p.push(format!(
                "timeline[{}].at: {} is after the load ends (load.duration = {d})",
                s.index,
                humantime::format_duration(s.at)
            ));
        }
    }
    for (i, slo) in slos.iter().enumerate() {
        for (k, v) in [("from", slo.from), ("until", slo.until)] {
            if let Some(v) = v.filter(|v| *v > duration) {
                let v = humantime::format_duration(v);
                p.push(format!(
                    "slo[{i}].{k}: {v} is after the load ends (load.duration = {d})"
                ));
            }
        }
        if let (Some(f), Some(u)) = (slo.from, slo.until) {
            if f >= u {
                p.push(format!(
                    "slo[{i}].until: the window must end after it starts (from)"
                ));
            }
        }
        if let SloKind::DrainTime { target, .. } = &slo.kind {
            let starts = timeline.iter().any(|s| match &s.action {
                Action::Fault { target: t, .. } | Action::Suspend { target: t, .. } => t == target,
                _ => false,
            });
            if slo.from.is_none() && !starts {
                p.push(format!(
                    "slo[{i}].from: missing, and no timeline step faults or suspends `{target}` to start the window"
                ));
            }
        }
    }
}
