//! Inline SVG charts for `report.html`: per-second stacked bars and lines
//! with the timeline's steps (numbered) and the gateway's audit events
//! marked on them, and a per-target state strip.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::report::{Report, Second};

const W: f64 = 960.0;
const H: f64 = 230.0;
const ML: f64 = 56.0;
const MR: f64 = 16.0;
const MT: f64 = 30.0;
const MB: f64 = 26.0;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A fixed colour per well-known name, else one from a palette.
fn color(name: &str, i: usize) -> &'static str {
    const PALETTE: [&str; 8] = [
        "#00838f", "#ad1457", "#6d4c41", "#558b2f", "#283593", "#f9a825", "#4e342e", "#37474f",
    ];
    match name {
        "ok" => "#2e7d32",
        "errors" => "#c62828",
        "truncated" => "#ef6c00",
        "claude" => "#d97706",
        "gpt" => "#10a37f",
        "gemini" => "#4285f4",
        "local" => "#7e57c2",
        "p50" => "#1565c0",
        "p99" => "#c62828",
        _ => PALETTE[i % PALETTE.len()],
    }
}

fn state_color(state: &str) -> &'static str {
    match state {
        "healthy" => "#c8e6c9",
        "degraded" => "#fff59d",
        "ejected" => "#ffab91",
        "suspended" => "#b0bec5",
        _ => "#eeeeee",
    }
}

fn step_color(kind: &str) -> &'static str {
    match kind {
        "fault" => "#c62828",
        "clear" => "#2e7d32",
        "suspend" | "resume" => "#1565c0",
        _ => "#616161",
    }
}

/// 1, 2, 2.5, 5 × 10^k at or above `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * mag)
}

pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

pub enum Style {
    Stacked,
    Lines,
}

struct Frame {
    n: usize,
    ymax: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        ML + t / self.n.max(1) as f64 * (W - ML - MR)
    }
    fn y(&self, v: f64) -> f64 {
        MT + (H - MT - MB) * (1.0 - v / self.ymax)
    }
}

/// One chart as inline SVG: axes, the series, then timeline markers
/// (numbered, matching the timeline table) and audit-event ticks.
pub fn chart(r: &Report, title: &str, unit: &str, series: &[Series], style: Style) -> String {
    let n = r.seconds.len().max(1);
    let peak = match style {
        Style::Stacked => (0..n)
            .map(|i| {
                series
                    .iter()
                    .map(|s| s.values.get(i).copied().unwrap_or(0.0))
                    .sum::<f64>()
            })
            .fold(0.0, f64::max),
        Style::Lines => series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max),
    };
    let f = Frame {
        n,
        ymax: nice(peak),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    let lead = (f.ymax / 10f64.powf(f.ymax.log10().floor())).round();
    let divisions = if lead == 2.0 { 4 } else { 5 };
    for k in 0..=divisions {
        let v = f.ymax * f64::from(k) / f64::from(divisions);
        let y = f.y(v);
        let _ = write!(
            s,
            r##"<line x1="{ML}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{tx}" y="{ty:.1}" class="ax" text-anchor="end">{v}{unit}</text>"##,
            x2 = W - MR,
            tx = ML - 4.0,
            ty = y + 3.0,
            v = if f.ymax < 4.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            },
        );
    }
    let step = [1, 2, 5, 10, 15, 30, 60, 120, 300]
        .into_iter()
        .find(|st| n / st <= 12)
        .unwrap_or(600);
    for t in (0..=n).step_by(step) {
        let x = f.x(t as f64);
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{y}" class="ax" text-anchor="middle">{t}s</text>"#,
            y = H - 8.0
        );
    }
    let bw = ((W - ML - MR) / n as f64 - 1.0).max(0.5);
    match style {
        Style::Stacked => {
            for i in 0..n {
                let mut base = 0.0;
                for (j, se) in series.iter().enumerate() {
                    let v = se.values.get(i).copied().unwrap_or(0.0);
                    if v <= 0.0 {
                        continue;
                    }
                    let (y0, y1) = (f.y(base), f.y(base + v));
                    let _ = write!(
                        s,
                        r#"<rect x="{x:.1}" y="{y1:.1}" width="{bw:.1}" height="{h:.1}" fill="{c}"><title>{i}s: {name} {v}</title></rect>"#,
                        x = f.x(i as f64) + 0.5,
                        h = (y0 - y1).max(0.5),
                        c = color(&se.name, j),
                        name = esc(&se.name)
                    );
                    base += v;
                }
            }
        }
        Style::Lines => {
            for (j, se) in series.iter().enumerate() {
                let pts: Vec<String> = se
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("{:.1},{:.1}", f.x(i as f64 + 0.5), f.y(*v)))
                    .collect();
                let _ = write!(
                    s,
                    r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{p}"><title>{name}</title></polyline>"#,
                    c = color(&se.name, j),
                    p = pts.join(" "),
                    name = esc(&se.name)
                );
            }
        }
    }
    for (i, a) in r.timeline.iter().enumerate() {
        let x = f.x(a.at_secs);
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="{MT}" y2="{y2}" stroke="{c}" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{ty}" class="mk" fill="{c}">{k}</text><title>{what}</title>"#,
            y2 = H - MB,
            c = step_color(a.kind),
            tx = x + 2.0 + label_shift(r, i, &f),
            ty = MT - 4.0,
            k = i + 1,
            what = esc(&a.what)
        );
    }
    for e in r
        .events
        .iter()
        .filter(|e| e.t_secs >= 0.0 && e.t_secs <= n as f64)
    {
        let x = f.x(e.t_secs);
        let _ = write!(
            s,
            r##"<path d="M{x:.1},{y0} l-4,7 h8 z" fill="#424242"><title>{t:.1}s {k} {tg}: {why}</title></path>"##,
            y0 = H - MB - 7.0,
            t = e.t_secs,
            k = esc(&e.kind),
            tg = esc(e.target.as_deref().unwrap_or("")),
            why = esc(&e.reason)
        );
    }
    let mut lx = ML;
    let _ = write!(
        s,
        r#"<text x="{ML}" y="12" class="tt">{}</text>"#,
        esc(title)
    );
    lx += 8.0 * title.len() as f64 + 16.0;
    for (j, se) in series.iter().enumerate() {
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="4" width="10" height="10" fill="{c}"/><text x="{tx:.1}" y="13" class="ax">{name}</text>"#,
            c = color(&se.name, j),
            tx = lx + 13.0,
            name = esc(&se.name)
        );
        lx += 20.0 + 7.0 * se.name.len() as f64;
    }
    s.push_str("</svg>");
    s
}

/// Moves a step's number right of earlier numbers drawn at about the same x.
fn label_shift(r: &Report, i: usize, f: &Frame) -> f64 {
    let x = f.x(r.timeline[i].at_secs);
    let near = r.timeline[..i]
        .iter()
        .filter(|a| (f.x(a.at_secs) - x).abs() < 12.0)
        .count();
    near as f64 * 10.0
}

/// A strip per target: its state in each second (from the live table).
pub fn states(r: &Report) -> String {
    let n = r.seconds.len().max(1);
    let names: Vec<String> = r
        .seconds
        .iter()
        .flat_map(|s| s.states.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let row = 16.0;
    let h = MT + row * names.len() as f64 + MB;
    let f = Frame { n, ymax: 1.0 };
    let mut s = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {h}" role="img" aria-label="target states"><text x="{ML}" y="12" class="tt">Target state per second (live table)</text>"#
    );
    let mut lx = ML + 300.0;
    for st in ["healthy", "degraded", "ejected", "suspended"] {
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="4" width="10" height="10" fill="{c}"/><text x="{tx}" y="13" class="ax">{st}</text>"#,
            c = state_color(st),
            tx = lx + 13.0
        );
        lx += 85.0;
    }
    for (k, name) in names.iter().enumerate() {
        let y = MT + row * k as f64;
        let _ = write!(
            s,
            r#"<text x="{tx}" y="{ty:.1}" class="ax" text-anchor="end">{}</text>"#,
            esc(name),
            tx = ML - 4.0,
            ty = y + 12.0
        );
        for (i, sec) in r.seconds.iter().enumerate() {
            let st = sec.states.get(name).map_or("", String::as_str);
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{hh}" fill="{c}"><title>{i}s {n}: {st}</title></rect>"#,
                x = f.x(i as f64),
                w = (W - ML - MR) / n as f64,
                hh = row - 2.0,
                c = state_color(st),
                n = esc(name)
            );
        }
    }
    for (i, a) in r.timeline.iter().enumerate() {
        let x = f.x(a.at_secs);
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="{y1}" y2="{y2}" stroke="{c}" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{ty}" class="mk" fill="{c}">{k}</text>"#,
            y1 = MT - 12.0,
            y2 = h - MB,
            c = step_color(a.kind),
            tx = x + 2.0 + label_shift(r, i, &f),
            ty = MT - 3.0,
            k = i + 1
        );
    }
    s.push_str("</svg>");
    s
}

pub fn per_target(r: &Report, pick: impl Fn(&Second) -> &BTreeMap<String, u64>) -> Vec<Series> {
    let names: BTreeSet<String> = r
        .seconds
        .iter()
        .flat_map(|s| pick(s).keys().cloned())
        .collect();
    names
        .into_iter()
        .map(|name| Series {
            values: r
                .seconds
                .iter()
                .map(|s| pick(s).get(&name).copied().unwrap_or(0) as f64)
                .collect(),
            name,
        })
        .collect()
}
