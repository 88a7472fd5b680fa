//! Judges each SLO of the drill against what the run recorded: requests
//! (by start time) for error rate, latency, served share and truncations;
//! samples of the live table's attempt counters for the drain time.

use std::time::Duration;

use serde::Serialize;

use super::format::{Action, Drill, Slo, SloKind};
use super::load::{Outcome, Record};
use super::timeline::Sample;

/// One SLO's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct SloResult {
    pub name: String,
    pub kind: &'static str,
    pub target: Option<String>,
    /// The window judged, seconds after the load started.
    pub from_secs: f64,
    pub until_secs: f64,
    /// The objective in words, e.g. `<= 1.00%`.
    pub objective: String,
    /// The measured value in words, e.g. `0.25%` (`n/a` when unmeasurable).
    pub measured: String,
    /// The measured value as a number (share, ms or count).
    pub value: Option<f64>,
    pub passed: bool,
    pub detail: String,
}

/// Nearest-rank percentile of `values` (sorted here); `None` when empty.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else {
        format!("{v:.0}ms")
    }
}

/// The window of `slo`: its own `from`/`until`, else the defaults (the
/// whole run; for a drain time, from the target's first fault or
/// suspension until it is cleared or resumed).
fn window(slo: &Slo, drill: &Drill) -> (Duration, Duration) {
    let end = drill.load.duration;
    let SloKind::DrainTime { target, .. } = &slo.kind else {
        return (slo.from.unwrap_or_default(), slo.until.unwrap_or(end));
    };
    let from = slo.from.unwrap_or_else(|| {
        drill
            .timeline
            .iter()
            .find(|s| match &s.action {
                Action::Fault { target: t, .. } | Action::Suspend { target: t, .. } => t == target,
                _ => false,
            })
            .map_or(Duration::ZERO, |s| s.at)
    });
    let until = slo.until.unwrap_or_else(|| {
        drill
            .timeline
            .iter()
            .filter(|s| s.at > from)
            .find(|s| match &s.action {
                Action::Resume { target: t } => t == target,
                Action::Clear { target: None, .. } => true,
                Action::Clear {
                    target: Some(t), ..
                } => t == target,
                _ => false,
            })
            .map_or(end, |s| s.at)
    });
    (from, until)
}

/// Judges every SLO of `drill`.
pub fn judge(drill: &Drill, records: &[Record], samples: &[Sample]) -> Vec<SloResult> {
    drill
        .slos
        .iter()
        .map(|s| judge_one(s, drill, records, samples))
        .collect()
}

fn judge_one(slo: &Slo, drill: &Drill, records: &[Record], samples: &[Sample]) -> SloResult {
    let (from, until) = window(slo, drill);
    let (from_ms, until_ms) = (from.as_millis() as u64, until.as_millis() as u64);
    let in_window: Vec<&Record> = records
        .iter()
        .filter(|r| r.start_ms >= from_ms && r.start_ms < until_ms)
        .collect();
    let n = in_window.len();
    let mut out = SloResult {
        name: slo.name.clone(),
        kind: slo.kind.as_str(),
        target: None,
        from_secs: from.as_secs_f64(),
        until_secs: until.as_secs_f64(),
        objective: String::new(),
        measured: "n/a".into(),
        value: None,
        passed: false,
        detail: String::new(),
    };
    match &slo.kind {
        SloKind::ErrorRate { max } => {
            out.objective = format!("<= {}", pct(*max));
            let bad = in_window
                .iter()
                .filter(|r| r.outcome != Outcome::Ok)
                .count();
            if n == 0 {
                out.detail = "no requests were sent in the window".into();
            } else {
                let rate = bad as f64 / n as f64;
                out.value = Some(rate);
                out.measured = pct(rate);
                out.passed = rate <= *max;
                out.detail = format!("{bad} of {n} requests failed as the app saw them");
            }
        }
        SloKind::P99Latency { max } => {
            let max_ms = max.as_secs_f64() * 1000.0;
            out.objective = format!("<= {}", ms(max_ms));
            let mut lat: Vec<f64> = in_window.iter().map(|r| r.latency_ms).collect();
            match percentile(&mut lat, 0.99) {
                Some(p99) => {
                    out.value = Some(p99);
                    out.measured = ms(p99);
                    out.passed = p99 <= max_ms;
                    out.detail = format!("p99 of {n} requests, whole request, errors included");
                }
                None => out.detail = "no requests were sent in the window".into(),
            }
        }
        SloKind::ServedShare { target, min } => {
            out.target = Some(target.clone());
            out.objective = format!(">= {}", pct(*min));
            let ok: Vec<&&Record> = in_window
                .iter()
                .filter(|r| r.outcome == Outcome::Ok)
                .collect();
            let by = ok
                .iter()
                .filter(|r| r.target.as_deref() == Some(target))
                .count();
            if ok.is_empty() {
                out.detail = "no successful answers in the window".into();
            } else {
                let share = by as f64 / ok.len() as f64;
                out.value = Some(share);
                out.measured = pct(share);
                out.passed = share >= *min;
                out.detail = format!("{by} of {} successful answers came from {target}", ok.len());
            }
        }
        SloKind::TruncatedStreams { max } => {
            out.objective = format!("<= {max}");
            let t = in_window
                .iter()
                .filter(|r| r.outcome == Outcome::Truncated)
                .count() as u64;
            let streams = in_window.iter().filter(|r| r.stream).count();
            out.value = Some(t as f64);
            out.measured = t.to_string();
            out.passed = t <= *max;
            out.detail = format!("{t} of {streams} streams ended cleanly without a finish");
        }
        SloKind::DrainTime { target, max } => {
            out.target = Some(target.clone());
            out.objective = format!("<= {}", ms(max.as_secs_f64() * 1000.0));
            drain(&mut out, target, *max, from, until, samples);
        }
    }
    out
}

/// Time from `from` until the target's attempt counter stopped moving,
/// judged on the live-table samples within the window.
fn drain(
    out: &mut SloResult,
    target: &str,
    max: Duration,
    from: Duration,
    until: Duration,
    samples: &[Sample],
) {
    let (f, u) = (from.as_secs_f64(), until.as_secs_f64());
    let count = |s: &Sample| s.targets.get(target).map(|r| r.requests);
    let before = samples.iter().rev().find(|s| s.t_secs <= f).and_then(count);
    let inside: Vec<(f64, u64)> = samples
        .iter()
        .filter(|s| s.t_secs > f && s.t_secs <= u)
        .filter_map(|s| Some((s.t_secs, count(s)?)))
        .collect();
    let Some(&(last_t, _)) = inside.last() else {
        out.detail = format!("no samples of the live table for {target} in the window");
        return;
    };
    let mut prev = before.or(inside.first().map(|x| x.1));
    let mut last_move = None;
    let mut attempts = 0;
    for &(t, c) in &inside {
        if let Some(p) = prev.filter(|p| c > *p) {
            attempts += c - p;
            last_move = Some(t);
        }
        prev = Some(c);
    }
    let still = last_move == Some(last_t) && u - f > 1.0;
    let secs = match last_move {
        _ if still => u - f,
        Some(t) => t - f,
        None => 0.0,
    };
    out.value = Some(secs * 1000.0);
    out.measured = ms(secs * 1000.0);
    out.passed = !still && secs <= max.as_secs_f64();
    out.detail = if still {
        format!("attempts still reached {target} when the window ended ({attempts} in the window)")
    } else if last_move.is_none() {
        format!("no attempt reached {target} after the window started")
    } else {
        format!("{attempts} attempts reached {target} in the window, the last about {secs:.1}s after it started")
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.99), Some(99.0));
        assert_eq!(percentile(&mut v, 0.5), Some(50.0));
        assert_eq!(percentile(&mut [], 0.5), None);
    }
}
