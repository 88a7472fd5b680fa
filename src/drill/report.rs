//! The drill report: totals, a per-second view of outcomes and of which
//! target served, the timeline as it ran, the gateway's audit events and
//! each SLO's verdict; `drill::run` writes it as `report.json` and a
//! self-contained `report.html` (rendered by `super::html`, which reads
//! this module, never the reverse).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::load::{Outcome, Record};
use super::slo::{percentile, SloResult};
use super::timeline::{Applied, Sample};

/// Everything a drill found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub drill: String,
    pub description: String,
    pub file: String,
    /// `self-contained` (built-in simulator + in-process gateway on the
    /// demo table) or `gateway` (a running one).
    pub mode: String,
    pub gateway: String,
    pub admin: String,
    pub sim: Option<String>,
    pub started_unix_ms: u64,
    pub load: LoadSummary,
    /// Every SLO held and every timeline step was applied.
    pub passed: bool,
    pub totals: Totals,
    pub seconds: Vec<Second>,
    pub timeline: Vec<Applied>,
    pub events: Vec<EventOut>,
    pub slos: Vec<SloResult>,
    /// Cleanup and warnings.
    pub notes: Vec<String>,
    /// Where the report files were written.
    pub dir: PathBuf,
}

impl Report {
    /// Whether every SLO held (and the timeline ran as written).
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// The SLOs that did not hold.
    pub fn failed_slos(&self) -> impl Iterator<Item = &SloResult> {
        self.slos.iter().filter(|s| !s.passed)
    }

    /// A few lines for a terminal: verdict, each SLO, where the files are.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "drill {}: {} ({} requests, {} errors, {} truncated)\n",
            self.drill,
            if self.passed { "PASSED" } else { "FAILED" },
            self.totals.requests,
            self.totals.errors,
            self.totals.truncated
        );
        for slo in &self.slos {
            s.push_str(&format!(
                "  [{}] {:<28} measured {:>9}  objective {}\n",
                if slo.passed { "pass" } else { "FAIL" },
                slo.name,
                slo.measured,
                slo.objective
            ));
        }
        for a in self.timeline.iter().filter(|a| !a.ok) {
            s.push_str(&format!(
                "  [FAIL] timeline[{}] at {:.1}s {}: {}\n",
                a.index,
                a.at_secs,
                a.what,
                a.error.as_deref().unwrap_or("failed")
            ));
        }
        s.push_str(&format!(
            "  report: {}  {}",
            self.dir.join("report.html").display(),
            self.dir.join("report.json").display()
        ));
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    pub route: String,
    /// `rate 20/s` or `concurrency 8`.
    pub shape: String,
    pub duration_secs: f64,
    pub stream: f64,
    pub tools: f64,
    pub dialects: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub truncated: u64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Streams: time to first content.
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    /// Outcome labels (`ok`, `status_503`, `stream_cut`...) and counts.
    pub by_label: BTreeMap<String, u64>,
    /// Successful answers per serving target.
    pub served_by: BTreeMap<String, u64>,
    /// `openai stream`, `gemini non-stream`...: requests and failures.
    pub by_kind: BTreeMap<String, (u64, u64)>,
}

/// One second of the run (by request start time).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    pub t: u64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub truncated: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Successful answers per serving target.
    pub served: BTreeMap<String, u64>,
    /// Attempts that reached each target (live-table counters).
    pub attempts: BTreeMap<String, u64>,
    /// Each target's state at the end of the second.
    pub states: BTreeMap<String, String>,
}

/// An audit event of the gateway, placed on the drill's clock.
#[derive(Debug, Clone, Serialize)]
pub struct EventOut {
    pub t_secs: f64,
    pub kind: String,
    pub target: Option<String>,
    pub actor: String,
    pub reason: String,
    pub before: String,
    pub after: String,
}

/// Totals over all records.
pub fn totals(records: &[Record]) -> Totals {
    let mut t = Totals {
        requests: records.len() as u64,
        ..Totals::default()
    };
    for r in records {
        match r.outcome {
            Outcome::Ok => t.ok += 1,
            Outcome::Error => t.errors += 1,
            Outcome::Truncated => t.truncated += 1,
        }
        *t.by_label.entry(r.label.clone()).or_default() += 1;
        if let (Outcome::Ok, Some(target)) = (r.outcome, &r.target) {
            *t.served_by.entry(target.clone()).or_default() += 1;
        }
        let kind = format!(
            "{} {}",
            r.dialect.as_str(),
            if r.stream { "stream" } else { "non-stream" }
        );
        let e = t.by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 += u64::from(r.outcome != Outcome::Ok);
    }
    if t.requests > 0 {
        t.error_rate = (t.errors + t.truncated) as f64 / t.requests as f64;
    }
    let mut lat: Vec<f64> = records.iter().map(|r| r.latency_ms).collect();
    t.p50_ms = percentile(&mut lat, 0.5);
    t.p99_ms = percentile(&mut lat, 0.99);
    t.max_ms = lat.last().copied();
    let mut ttft: Vec<f64> = records.iter().filter_map(|r| r.ttft_ms).collect();
    t.ttft_p50_ms = percentile(&mut ttft, 0.5);
    t.ttft_p99_ms = percentile(&mut ttft, 0.99);
    t
}

/// Per-second rows for `0..secs`.
pub fn seconds(records: &[Record], samples: &[Sample], secs: u64) -> Vec<Second> {
    let mut rows: Vec<Second> = (0..secs)
        .map(|t| Second {
            t,
            ..Second::default()
        })
        .collect();
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); secs as usize];
    for r in records {
        let i = (r.start_ms / 1000).min(secs.saturating_sub(1)) as usize;
        let Some(row) = rows.get_mut(i) else { continue };
        row.sent += 1;
        match r.outcome {
            Outcome::Ok => row.ok += 1,
            Outcome::Error => row.errors += 1,
            Outcome::Truncated => row.truncated += 1,
        }
        if let (Outcome::Ok, Some(target)) = (r.outcome, &r.target) {
            *row.served.entry(target.clone()).or_default() += 1;
        }
        lat[i].push(r.latency_ms);
    }
    for (row, l) in rows.iter_mut().zip(lat.iter_mut()) {
        row.p50_ms = percentile(l, 0.5);
        row.p99_ms = percentile(l, 0.99);
    }
    // Attempts: counter at the end of the second minus at its start, the
    // counters interpolated between samples.
    for row in &mut rows {
        let Some(b) = samples
            .iter()
            .find(|s| s.t_secs >= row.t as f64 + 1.0)
            .or(samples.last())
        else {
            continue;
        };
        for (name, rb) in &b.targets {
            let (c0, c1) = (
                counter(samples, name, row.t as f64),
                counter(samples, name, row.t as f64 + 1.0),
            );
            row.attempts
                .insert(name.clone(), (c1 - c0).max(0.0).round() as u64);
            row.states.insert(name.clone(), rb.state.clone());
        }
    }
    rows
}

/// `target`'s attempt counter at `t`, linear between the samples around it.
fn counter(samples: &[Sample], target: &str, t: f64) -> f64 {
    let value = |s: &Sample| s.targets.get(target).map_or(0.0, |r| r.requests as f64);
    let after = samples.iter().position(|s| s.t_secs >= t);
    match after {
        None => samples.last().map_or(0.0, value),
        Some(0) => value(&samples[0]),
        Some(i) => {
            let (a, b) = (&samples[i - 1], &samples[i]);
            let span = (b.t_secs - a.t_secs).max(1e-9);
            value(a) + (value(b) - value(a)) * (t - a.t_secs) / span
        }
    }
}

/// Audit events (admin API JSON) on the drill's clock.
pub fn events(raw: &[Value], started_unix_ms: u64) -> Vec<EventOut> {
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    raw.iter()
        .map(|e| EventOut {
            t_secs: (e.get("time_ms").and_then(Value::as_u64).unwrap_or(0) as f64
                - started_unix_ms as f64)
                / 1000.0,
            kind: s(e, "kind"),
            target: e.get("target").and_then(Value::as_str).map(str::to_string),
            actor: s(e, "actor"),
            reason: s(e, "reason"),
            before: s(e, "before"),
            after: s(e, "after"),
        })
        .collect()
}
