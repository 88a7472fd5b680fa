//! The drill file (TOML): a load profile, a timeline of faults and ops
//! actions, and the SLOs the run is judged by. Every problem found while
//! reading it names its key (`load.rate`, `timeline[2].knobs`, `slo[1].max`)
//! and all of them are reported at once.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use toml::{Table, Value};

use crate::sim::{Knobs, Vendor};

/// A whole drill, validated.
#[derive(Debug, Clone)]
pub struct Drill {
    pub name: String,
    pub description: String,
    pub load: Load,
    /// Steps in the order they run (by `at`; ties keep file order).
    pub timeline: Vec<Step>,
    pub slos: Vec<Slo>,
    /// `[demo]`: merged into the demo routes table in self-contained mode
    /// (e.g. `[demo.routes.frontier] commit_tokens = 6`); ignored against a
    /// running gateway.
    pub demo: Option<Table>,
}

/// The app traffic the drill sends for its whole duration.
#[derive(Debug, Clone)]
pub struct Load {
    /// The route name apps send as `model`.
    pub route: String,
    pub shape: Shape,
    pub duration: Duration,
    /// Per request, body included; a request that takes longer is an error.
    pub timeout: Duration,
    /// Share of streamed requests (0..=1).
    pub stream: f64,
    /// Share of requests that offer a tool (0..=1).
    pub tools: f64,
    /// Relative weight of each app dialect.
    pub dialects: Vec<(Dialect, f64)>,
    /// Open loop: requests in flight beyond this are not sent (counted as
    /// `skipped`), so a stalled gateway cannot make the driver explode.
    pub max_in_flight: usize,
    /// Seed of the request mix, so two runs send the same sequence.
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Open loop: this many requests per second, whatever the latency.
    Rate(f64),
    /// Closed loop: this many workers, each sending back to back.
    Concurrency(u32),
}

/// The SDK dialect a drill request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    Openai,
    Anthropic,
    Gemini,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::Openai, Dialect::Anthropic, Dialect::Gemini];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Openai => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
        }
    }
}

/// One timeline entry: at `at` after the load starts, do `action`.
#[derive(Debug, Clone)]
pub struct Step {
    /// Position in the file's `[[timeline]]` list (for messages).
    pub index: usize,
    pub at: Duration,
    pub action: Action,
    pub note: Option<String>,
}

/// What a timeline step does: a fault (or its end) or an ops action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Make a target misbehave.
    Fault { target: String, injection: Injection },
    /// End faults: of one target, or (without one) every fault of that kind.
    Clear {
        target: Option<String>,
        via: InjectionKind,
    },
    /// `POST /admin/targets/{target}/suspend`.
    Suspend {
        target: String,
        reason: String,
        for_: Option<Duration>,
    },
    /// `POST /admin/targets/{target}/resume`.
    Resume { target: String },
    /// `POST /admin/reload`.
    Reload,
}

/// Where and how a fault is injected. Only the simulator's knobs exist in
/// this version; a `Gateway` kind (faults at the gateway's provider
/// boundary) is meant to join it.
#[derive(Debug, Clone, PartialEq)]
pub enum Injection {
    /// `PUT /_sim/knobs/{vendor}/{model}`; `sim_model` overrides where the
    /// target lives in the simulator (default: from the gateway's table).
    Sim {
        knobs: Knobs,
        sim_model: Option<(Vendor, String)>,
    },
}

impl Injection {
    pub fn kind(&self) -> InjectionKind {
        match self {
            Injection::Sim { .. } => InjectionKind::Sim,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionKind {
    Sim,
}

/// One objective the run is judged by, over a window of the run (request
/// start times; default: the whole run).
#[derive(Debug, Clone)]
pub struct Slo {
    pub name: String,
    pub kind: SloKind,
    pub from: Option<Duration>,
    pub until: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SloKind {
    /// Share of requests the app saw fail (error status, broken or
    /// truncated stream, timeout, wrong answer) at most `max`.
    ErrorRate { max: f64 },
    /// 99th percentile of the whole-request latency (errors included).
    P99Latency { max: Duration },
    /// Time from the window start (default: the target's first fault or
    /// suspension) until no attempt reaches `target` any more, before the
    /// window ends (default: when that target is resumed or cleared).
    DrainTime { target: String, max: Duration },
    /// Share of successful answers served by `target` at least `min`.
    ServedShare { target: String, min: f64 },
    /// Streams that ended cleanly but incomplete (no finish): at most `max`.
    TruncatedStreams { max: u64 },
}

impl SloKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SloKind::ErrorRate { .. } => "error_rate",
            SloKind::P99Latency { .. } => "p99_latency",
            SloKind::DrainTime { .. } => "drain_time",
            SloKind::ServedShare { .. } => "served_share",
            SloKind::TruncatedStreams { .. } => "truncated_streams",
        }
    }
}

/// Collected problems, each `key: message`.
type Problems = Vec<String>;

/// Reads a TOML table key by key so that every error names its key, and
/// reports keys nobody asked for.
struct Section<'a> {
    path: String,
    table: &'a Table,
    known: BTreeSet<&'static str>,
}

impl<'a> Section<'a> {
    fn new(path: impl Into<String>, table: &'a Table) -> Self {
        Section {
            path: path.into(),
            table,
            known: BTreeSet::new(),
        }
    }

    fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn opt<T: DeserializeOwned>(&mut self, k: &'static str, p: &mut Problems) -> Option<T> {
        self.known.insert(k);
        let v = self.table.get(k)?;
        match v.clone().try_into::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                let msg = e.to_string();
                p.push(format!("{}: {}", self.key(k), msg.trim()));
                None
            }
        }
    }

    fn req<T: DeserializeOwned>(&mut self, k: &'static str, what: &str, p: &mut Problems) -> Option<T> {
        if !self.table.contains_key(k) {
            self.known.insert(k);
            p.push(format!("{}: missing ({what})", self.key(k)));
            return None;
        }
        self.opt(k, p)
    }

    fn duration(&mut self, k: &'static str, p: &mut Problems) -> Option<Duration> {
        self.known.insert(k);
        let v = self.table.get(k)?;
        let Some(s) = v.as_str() else {
            p.push(format!(
                "{}: expected a duration string such as \"10s\" or \"1m30s\", found {}",
                self.key(k),
                v.type_str()
            ));
            return None;
        };
        match humantime::parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                p.push(format!("{}: `{s}` is not a duration ({e}; try 10s, 1m30s, 500ms)", self.key(k)));
                None
            }
        }
    }

    fn req_duration(&mut self, k: &'static str, p: &mut Problems) -> Option<Duration> {
        if !self.table.contains_key(k) {
            self.known.insert(k);
            p.push(format!("{}: missing (a duration such as \"30s\")", self.key(k)));
            return None;
        }
        self.duration(k, p)
    }

    fn share(&mut self, k: &'static str, default: f64, p: &mut Problems) -> f64 {
        match self.opt::<f64>(k, p) {
            Some(v) if (0.0..=1.0).contains(&v) => v,
            Some(v) => {
                p.push(format!("{}: {v} is not a share between 0 and 1", self.key(k)));
                default
            }
            None => default,
        }
    }

    fn finish(self, p: &mut Problems) {
        for k in self.table.keys() {
            if !self.known.contains(k.as_str()) {
                let expected: Vec<&str> = self.known.iter().copied().collect();
                p.push(format!(
                    "{}: unknown key (expected one of: {})",
                    self.key(k),
                    expected.join(", ")
                ));
            }
        }
    }
}

/// Parses and validates a drill file's text; `stem` names the drill when the
/// file has no `name`. On failure returns every problem found.
pub fn parse(text: &str, stem: &str) -> Result<Drill, Problems> {
    let root: Table = toml::from_str(text).map_err(|e| vec![e.to_string().trim().to_string()])?;
    let mut p = Problems::new();
    let mut top = Section::new("", &root);
    let name = top.opt::<String>("name", &mut p).unwrap_or_else(|| stem.to_string());
    if name.trim().is_empty() {
        p.push("name: must not be empty".into());
    }
    let description = top.opt::<String>("description", &mut p).unwrap_or_default();
    let load = match top.req::<Table>("load", "a [load] table", &mut p) {
        Some(t) => parse_load(&t, &mut p),
        None => None,
    };
    let steps = top.opt::<Vec<Table>>("timeline", &mut p).unwrap_or_default();
    let slos = top.opt::<Vec<Table>>("slo", &mut p).unwrap_or_default();
    let demo = top.opt::<Table>("demo", &mut p);
    top.finish(&mut p);

    let mut timeline: Vec<Step> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, t)| parse_step(i, t, &mut p))
        .collect();
    timeline.sort_by_key(|s| s.at);
    let slos: Vec<Slo> = slos
        .iter()
        .enumerate()
        .filter_map(|(i, t)| parse_slo(i, t, &mut p))
        .collect();
    if slos.is_empty() {
        p.push("slo: a drill needs at least one [[slo]] to judge the run by".into());
    }
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
            p.push(format!("load.rate: {r} requests/s is out of range (0 < rate <= 5000)"));
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
            Some(w) => p.push(format!("load.dialects.{}: weight {w} must be 0 or more", d.as_str())),
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
                    let knobs = s.req::<Knobs>("knobs", "simulator knobs, e.g. { suspended = true }", p);
                    let sim_model = s.opt::<String>("sim_model", p).and_then(|m| sim_model(&s.key("sim_model"), &m, p));
                    knobs.map(|knobs| Injection::Sim { knobs, sim_model })
                }
                "gateway" => {
                    p.push(format!(
                        "{}: gateway-side fault injection is not available in this version; use via = \"sim\"",
                        s.key("via")
                    ));
                    None
                }
                other => {
                    p.push(format!("{}: unknown injection `{other}` (expected \"sim\")", s.key("via")));
                    None
                }
            };
            target.zip(injection).map(|(target, injection)| Action::Fault { target, injection })
        }
        Some("clear") => {
            let target = s.opt::<String>("target", p);
            match s.opt::<String>("via", p).as_deref() {
                None | Some("sim") => Some(Action::Clear {
                    target,
                    via: InjectionKind::Sim,
                }),
                Some(other) => {
                    p.push(format!("{}: unknown injection `{other}` (expected \"sim\")", s.key("via")));
                    None
                }
            }
        }
        Some("suspend") => {
            let target = s.req::<String>("target", "the target ops suspend", p);
            let reason = s.opt::<String>("reason", p).unwrap_or_else(|| "chaos drill".into());
            let for_ = s.duration("for", p);
            target.map(|target| Action::Suspend { target, reason, for_ })
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
            p.push(format!("{}: {v} is not a share between 0 and 1", s.key("max")));
            None
        }
    };
    let kind = match kind_name.as_deref() {
        Some("error_rate") => max_share(&mut s, p).map(|max| SloKind::ErrorRate { max }),
        Some("p99_latency") => s.req_duration("max", p).map(|max| SloKind::P99Latency { max }),
        Some("drain_time") => {
            let target = s.req::<String>("target", "the faulted target", p);
            let max = s.req_duration("max", p);
            target.zip(max).map(|(target, max)| SloKind::DrainTime { target, max })
        }
        Some("served_share") => {
            let target = s.req::<String>("target", "the target that should serve", p);
            let min = s.req::<f64>("min", "a share between 0 and 1", p);
            if let Some(m) = min.filter(|m| !(0.0..=1.0).contains(m)) {
                p.push(format!("{}: {m} is not a share between 0 and 1", s.key("min")));
            }
            let min = min.filter(|m| (0.0..=1.0).contains(m));
            target.zip(min).map(|(target, min)| SloKind::ServedShare { target, min })
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
                p.push(format!("slo[{i}].{k}: {v} is after the load ends (load.duration = {d})"));
            }
        }
        if let (Some(f), Some(u)) = (slo.from, slo.until) {
            if f >= u {
                p.push(format!("slo[{i}].until: the window must end after it starts (from)"));
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

/// Deep-merges `overlay` into `base` (tables merge, anything else replaces).
pub fn merge(base: &mut Table, overlay: &Table) {
    for (k, v) in overlay {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}
