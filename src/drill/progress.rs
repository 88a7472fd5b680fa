//! The live status line on stderr: elapsed time, request rate, errors so
//! far and which targets serve, rewritten in place every second.

use std::time::Duration;

use tokio::time::Instant;

use super::load::{self, Outcome};

/// A `\r` status line on stderr every second until `stop`.
pub async fn progress_line(
    name: String,
    sink: load::Sink,
    t0: Instant,
    duration: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use std::io::Write;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut seen, mut ok, mut bad) = (0usize, 0u64, 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let recs = load::lock(&sink);
        let new = &recs[seen.min(recs.len())..];
        let mut served = std::collections::BTreeMap::<&str, u64>::new();
        for r in new {
            if r.outcome == Outcome::Ok {
                ok += 1;
            } else {
                bad += 1;
            }
            if let (Outcome::Ok, Some(t)) = (r.outcome, &r.target) {
                *served.entry(t.as_str()).or_default() += 1;
            }
        }
        let total: u64 = served.values().sum();
        let serving: Vec<String> = served
            .iter()
            .map(|(t, n)| format!("{t} {:.0}%", *n as f64 * 100.0 / total.max(1) as f64))
            .collect();
        let rate = new.len();
        seen = recs.len();
        drop(recs);
        let line = format!(
            "[drill {name}] {:>4.0}s/{:.0}s  {rate:>4} req/s  ok {ok}  errors {bad} ({:.1}%)  serving: {}",
            t0.elapsed().as_secs_f64(),
            duration.as_secs_f64(),
            bad as f64 * 100.0 / (ok + bad).max(1) as f64,
            if serving.is_empty() { "-".to_string() } else { serving.join(", ") }
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line:<110}");
        let _ = err.flush();
    }
    eprintln!();
}
