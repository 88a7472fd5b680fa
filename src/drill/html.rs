//! `report.html`: one self-contained page (inline CSS and SVG, no scripts,
//! no external assets) with the verdict, the SLO table, per-second charts
//! with the timeline and audit events marked on them, and the tables behind.

use std::fmt::Write;

use super::chart::{chart, esc, per_target, states, Series, Style};
use super::report::{Report, Second};

/// The whole page.
pub fn render(r: &Report) -> String {
    let col = |f: fn(&Second) -> f64| r.seconds.iter().map(f).collect::<Vec<f64>>();
    let outcomes = vec![
        Series {
            name: "ok".into(),
            values: col(|s| s.ok as f64),
        },
        Series {
            name: "errors".into(),
            values: col(|s| s.errors as f64),
        },
        Series {
            name: "truncated".into(),
            values: col(|s| s.truncated as f64),
        },
    ];
    let latency = vec![
        Series {
            name: "p50".into(),
            values: col(|s| s.p50_ms.unwrap_or(0.0)),
        },
        Series {
            name: "p99".into(),
            values: col(|s| s.p99_ms.unwrap_or(0.0)),
        },
    ];
    let verdict = if r.passed { "PASSED" } else { "FAILED" };
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Drill {name}: {verdict}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#212121;max-width:1000px}}h1 .badge{{font-size:16px;padding:3px 10px;border-radius:4px;color:#fff;vertical-align:middle}}
.pass{{background:#2e7d32}}.fail{{background:#c62828}}table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}}
th{{background:#f5f5f5}}.chart{{width:100%;height:auto;margin:6px 0 14px;border:1px solid #eee}}.ax{{font-size:11px;fill:#616161}}.tt{{font-size:13px;font-weight:600;fill:#212121}}.mk{{font-size:11px;font-weight:700}}
td.ok{{color:#2e7d32;font-weight:600}}td.bad{{color:#c62828;font-weight:600}}code{{background:#f5f5f5;padding:1px 4px}}</style></head><body>
<h1>Drill <code>{name}</code> <span class="badge {cls}">{verdict}</span></h1><p>{desc}</p>"#,
        name = esc(&r.drill),
        cls = if r.passed { "pass" } else { "fail" },
        desc = esc(&r.description)
    );
    let dialects: Vec<String> = r
        .load
        .dialects
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = write!(
        h,
        "<table><tr><th>mode</th><td>{}</td><th>gateway</th><td>{}</td></tr><tr><th>route</th><td>{}</td><th>load</th><td>{}, {:.0}s, stream {:.0}%, tools {:.0}%, dialects {}</td></tr><tr><th>file</th><td>{}</td><th>started</th><td>{}</td></tr><tr><th>requests</th><td>{} ({} ok, {} errors, {} truncated)</td><th>latency</th><td>p50 {} · p99 {} · max {}</td></tr></table>",
        esc(&r.mode), esc(&r.gateway), esc(&r.load.route), esc(&r.load.shape), r.load.duration_secs,
        r.load.stream * 100.0, r.load.tools * 100.0, esc(&dialects.join(", ")), esc(&r.file), started(r.started_unix_ms),
        r.totals.requests, r.totals.ok, r.totals.errors, r.totals.truncated,
        fmt_ms(r.totals.p50_ms), fmt_ms(r.totals.p99_ms), fmt_ms(r.totals.max_ms)
    );
    h.push_str("<h2>SLOs</h2><table><tr><th>SLO</th><th>kind</th><th>window</th><th>objective</th><th>measured</th><th>verdict</th><th>detail</th></tr>");
    for s in &r.slos {
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{}</td><td>{:.0}s – {:.0}s</td><td>{}</td><td>{}</td><td class="{}">{}</td><td>{}</td></tr>"#,
            esc(&s.name),
            s.kind,
            s.from_secs,
            s.until_secs,
            esc(&s.objective),
            esc(&s.measured),
            if s.passed { "ok" } else { "bad" },
            if s.passed { "pass" } else { "FAIL" },
            esc(&s.detail)
        );
    }
    h.push_str("</table><h2>Per second</h2><p>Bars by request start time. Dashed lines: timeline steps (numbers as in the table below); triangles: the gateway's audit events (hover for details).</p>");
    h.push_str(&chart(
        r,
        "Outcomes per second",
        "",
        &outcomes,
        Style::Stacked,
    ));
    h.push_str(&chart(
        r,
        "Served by (x-switchyard-target of successful answers)",
        "",
        &per_target(r, |s| &s.served),
        Style::Stacked,
    ));
    h.push_str(&chart(
        r,
        "Attempts reaching each target (live table)",
        "",
        &per_target(r, |s| &s.attempts),
        Style::Lines,
    ));
    h.push_str(&states(r));
    h.push_str(&chart(
        r,
        "Latency per second (ms)",
        "",
        &latency,
        Style::Lines,
    ));
    h.push_str("<h2>Timeline</h2><table><tr><th>#</th><th>at</th><th>done</th><th>step</th><th>note</th><th>result</th></tr>");
    for (i, a) in r.timeline.iter().enumerate() {
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{:.1}s</td><td>{:.2}s</td><td>{}</td><td>{}</td><td class="{}">{}</td></tr>"#,
            i + 1,
            a.at_secs,
            a.done_secs,
            esc(&a.what),
            esc(a.note.as_deref().unwrap_or("")),
            if a.ok { "ok" } else { "bad" },
            esc(a.error.as_deref().unwrap_or("applied"))
        );
    }
    h.push_str("</table><h2>Gateway audit events</h2><table><tr><th>t</th><th>kind</th><th>target</th><th>actor</th><th>change</th><th>reason</th></tr>");
    for e in &r.events {
        let _ = write!(
            h,
            "<tr><td>{:.1}s</td><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td></tr>",
            e.t_secs,
            esc(&e.kind),
            esc(e.target.as_deref().unwrap_or("")),
            esc(&e.actor),
            esc(&e.before),
            esc(&e.after),
            esc(&e.reason)
        );
    }
    h.push_str("</table><h2>Outcomes</h2><table><tr><th>outcome</th><th>requests</th></tr>");
    for (k, v) in &r.totals.by_label {
        let _ = write!(h, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
    }
    h.push_str("</table><table><tr><th>request kind</th><th>requests</th><th>failed</th></tr>");
    for (k, (n, bad)) in &r.totals.by_kind {
        let _ = write!(h, "<tr><td>{}</td><td>{n}</td><td>{bad}</td></tr>", esc(k));
    }
    h.push_str("</table>");
    if !r.notes.is_empty() {
        h.push_str("<h2>Notes</h2><ul>");
        for n in &r.notes {
            let _ = write!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    h
}

fn started(unix_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| {
        if v >= 1000.0 {
            format!("{:.2}s", v / 1000.0)
        } else {
            format!("{v:.1}ms")
        }
    })
}
