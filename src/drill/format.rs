//! The drill, as read from its file (TOML): a load profile, a timeline of
//! faults and ops actions, and the SLOs the run is judged by. Parsing and
//! validation live in `file`.

use std::time::Duration;

use serde::Serialize;
use toml::Table;

use crate::provider::fault::Fault;
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
    /// OpenAI's Responses API (`POST /v1/responses`).
    Responses,
}

impl Dialect {
    pub const ALL: [Dialect; 4] = [
        Dialect::Openai,
        Dialect::Anthropic,
        Dialect::Gemini,
        Dialect::Responses,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Openai => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
            Dialect::Responses => "responses",
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
    Fault {
        target: String,
        injection: Injection,
    },
    /// End faults: of one target, or (without one) every fault; of one
    /// injection kind, or (without `via`) of every kind the drill used.
    Clear {
        target: Option<String>,
        via: Option<InjectionKind>,
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

/// Where and how a fault is injected.
#[derive(Debug, Clone, PartialEq)]
pub enum Injection {
    /// The simulator's knobs: `PUT /_sim/knobs/{vendor}/{model}`;
    /// `sim_model` overrides where the target lives in the simulator
    /// (default: from the gateway's table).
    Sim {
        knobs: Knobs,
        sim_model: Option<(Vendor, String)>,
    },
    /// At the gateway's provider boundary:
    /// `POST /admin/targets/{target}/chaos` (needs `[chaos] enabled` on
    /// that gateway; self-contained drills turn it on). The fault expires
    /// after `for_` (default: the rest of the drill plus a minute).
    Gateway {
        fault: Fault,
        for_: Option<Duration>,
    },
}

impl Injection {
    pub fn kind(&self) -> InjectionKind {
        match self {
            Injection::Sim { .. } => InjectionKind::Sim,
            Injection::Gateway { .. } => InjectionKind::Gateway,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionKind {
    Sim,
    Gateway,
}

impl Drill {
    /// Whether any step injects faults of `kind`.
    pub fn uses(&self, kind: InjectionKind) -> bool {
        self.timeline.iter().any(|s| match &s.action {
            Action::Fault { injection, .. } => injection.kind() == kind,
            Action::Clear { via, .. } => *via == Some(kind),
            _ => false,
        })
    }
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
