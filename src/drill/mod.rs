//! Chaos drills: rehearse "Claude is switched off worldwide at 17:21" on a
//! gateway and get a pass/fail report.
//!
//! A drill file (TOML, see `drills/`) holds a load profile, a timeline of
//! faults and ops actions, and SLOs. [`run`] sends the load through the
//! gateway, applies the timeline at its times (faults through the
//! simulator's knobs or the gateway's own fault injection, ops actions
//! through the admin API), samples the live
//! table, then judges the SLOs and writes `report.json` and a
//! self-contained `report.html`.
//!
//! Two modes: against a running gateway (`gateway`, `admin`, and `sim` for
//! where faults are injected), or self-contained when no gateway is given:
//! the built-in simulator and an in-process gateway on the demo table (plus
//! the drill's `[demo]` overrides), all on loopback.
//!
//! Modules: `format` (the drill), `file` and `section` (parsing,
//! validation), `setup` (self-contained mode, preflight), `load` (driver) and `wire` (each
//! dialect's requests and answer checks), `ops` (admin and simulator
//! clients), `timeline` (steps, live-table sampling, cleanup), `slo`
//! (verdicts), `report`, `html` and `chart` (output), `progress`.

mod chart;
mod file;
mod format;
mod html;
mod load;
mod ops;
mod progress;
mod report;
mod section;
mod setup;
mod slo;
mod timeline;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

pub use format::{
    Action, Dialect, Drill, Injection, InjectionKind, Load, Shape, Slo, SloKind, Step,
};
pub use load::{Outcome, Record};
pub use report::{EventOut, Report, Second, Totals};
pub use slo::SloResult;
pub use timeline::Applied;

/// Why a drill could not run (an SLO miss is not an error: see
/// [`Report::passed`]).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("cannot read drill file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("drill file {path} is invalid:\n  {}", problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("the drill does not fit the gateway:\n  {}", .0.join("\n  "))]
    Preflight(Vec<String>),
    #[error("bad options: {0}")]
    Options(String),
    #[error("cannot start the self-contained simulator and gateway: {0}")]
    Start(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("cannot write the report to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `switchyard drill run` passes in.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub file: PathBuf,
    /// Report directory; default `drill-reports/<name>-<unix time>/`.
    pub out: Option<PathBuf>,
    /// Data plane of a running gateway; `None` = self-contained.
    pub gateway: Option<String>,
    /// Its admin API (default `http://127.0.0.1:9901` with a gateway).
    pub admin: Option<String>,
    /// The simulator the running gateway uses, where faults are injected.
    pub sim: Option<String>,
    /// Admin token; default `$SWITCHYARD_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// App key for the load; default `$SWITCHYARD_DRILL_APP_KEY`, else `drill`.
    pub app_key: Option<String>,
    /// Print a status line on stderr every second.
    pub progress: bool,
}

impl RunOptions {
    /// Self-contained, default report directory, with the progress line.
    pub fn new(file: impl Into<PathBuf>) -> Self {
        RunOptions {
            file: file.into(),
            progress: true,
            ..RunOptions::default()
        }
    }
}

/// Reads and validates a drill file (including its `[demo]` overrides).
pub fn load_file(path: &Path) -> Result<Drill, DrillError> {
    let text = std::fs::read_to_string(path).map_err(|source| DrillError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map_or("drill".into(), |s| s.to_string_lossy().to_string());
    let invalid = |problems| DrillError::Invalid {
        path: path.to_path_buf(),
        problems,
    };
    let drill = file::parse(&text, &stem).map_err(invalid)?;
    setup::demo_config(SocketAddr::from(([127, 0, 0, 1], 9)), &drill)
        .map_err(|e| invalid(vec![e]))?;
    Ok(drill)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Directory-safe form of a drill name.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Runs the drill of `opts.file` and writes its report. `Ok` whether or not
/// the SLOs held: look at [`Report::passed`].
pub async fn run(opts: RunOptions) -> Result<Report, DrillError> {
    let drill = load_file(&opts.file)?;
    if opts.gateway.is_none() && (opts.admin.is_some() || opts.sim.is_some()) {
        return Err(DrillError::Options(
            "--admin and --sim go with --gateway URL (a running gateway); without --gateway the drill is self-contained".into(),
        ));
    }
    let self_contained = opts.gateway.is_none();
    let token = match (&opts.admin_token, self_contained) {
        (Some(t), _) => t.clone(),
        (None, true) => uuid::Uuid::new_v4().simple().to_string(),
        (None, false) => std::env::var("SWITCHYARD_ADMIN_TOKEN").unwrap_or_default(),
    };
    let app_key = opts
        .app_key
        .clone()
        .or_else(|| {
            std::env::var("SWITCHYARD_DRILL_APP_KEY")
                .ok()
                .filter(|k| !k.is_empty())
        })
        .unwrap_or_else(|| "drill".into());
    let mut notes = Vec::new();
    let (in_process, config, gateway_url, admin_url, sim_url) = if self_contained {
        let (ip, config) = setup::start_in_process(&drill, &token).await?;
        let (g, a) = (ip.gateway.addr, ip.gateway.admin_addr);
        let sim = setup::ip_sim_url(&config);
        (
            Some(ip),
            Some(config),
            format!("http://{g}"),
            format!("http://{a}"),
            sim,
        )
    } else {
        if drill.demo.is_some() {
            notes.push("the drill's [demo] overrides apply only self-contained; ignored against a running gateway".into());
        }
        let admin = opts
            .admin
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:9901".into());
        (
            None,
            None,
            opts.gateway.clone().unwrap_or_default(),
            admin,
            opts.sim.clone(),
        )
    };
    let result = drive(
        &drill,
        &opts,
        &token,
        &app_key,
        config.as_ref(),
        &gateway_url,
        &admin_url,
        sim_url.as_deref(),
        notes,
    )
    .await;
    if let Some(ip) = in_process {
        ip.gateway.shutdown().await;
        ip.sim_task.abort();
    }
    let mut report = result?;
    report.mode = if self_contained {
        "self-contained"
    } else {
        "gateway"
    }
    .into();
    let dir = opts.out.clone().unwrap_or_else(|| {
        PathBuf::from("drill-reports").join(format!(
            "{}-{}",
            slug(&drill.name),
            report.started_unix_ms / 1000
        ))
    });
    report.dir = dir.clone();
    write_report(&report, &dir)?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    drill: &Drill,
    opts: &RunOptions,
    token: &str,
    app_key: &str,
    config: Option<&crate::config::Config>,
    gateway_url: &str,
    admin_url: &str,
    sim_url: Option<&str>,
    mut notes: Vec<String>,
) -> Result<Report, DrillError> {
    let local = config.is_some();
    let http = ops::control_client(local)?;
    let admin = ops::Admin {
        http: http.clone(),
        url: admin_url.to_string(),
        token: token.to_string(),
        actor: format!("drill:{}", drill.name),
    };
    let sim = sim_url.map(|url| ops::Sim {
        http,
        url: url.to_string(),
    });
    let table = admin.table().await.map_err(DrillError::Unreachable)?;
    let locations = setup::preflight(drill, &table, config, sim.is_some())?;
    if let Some(sim) = &sim {
        sim.ping().await.map_err(DrillError::Unreachable)?;
    }
    let baseline = admin
        .events(0)
        .await
        .map_err(DrillError::Unreachable)?
        .iter()
        .filter_map(|e| e.get("seq").and_then(serde_json::Value::as_u64))
        .max()
        .unwrap_or(0);
    let client = load::client(local).map_err(|e| DrillError::Start(format!("HTTP client: {e}")))?;

    let sink: load::Sink = Arc::default();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let leftovers = Arc::new(Mutex::new(timeline::Leftovers::default()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    let started_unix_ms = unix_ms();
    let sampler = tokio::spawn(timeline::sample(
        admin.clone(),
        t0,
        Duration::from_millis(500),
        stopped.clone(),
        samples.clone(),
    ));
    let progress = opts.progress.then(|| {
        tokio::spawn(progress::progress_line(
            drill.name.clone(),
            sink.clone(),
            t0,
            drill.load.duration,
            stopped,
        ))
    });
    let steps = {
        let (steps, admin, sim, left) = (
            drill.timeline.clone(),
            admin.clone(),
            sim.clone(),
            leftovers.clone(),
        );
        let (locations, end) = (locations.clone(), drill.load.duration);
        tokio::spawn(async move {
            let ctx = timeline::Ctx {
                locations: &locations,
                admin: &admin,
                sim: sim.as_ref(),
                t0,
                end,
                left: &left,
            };
            timeline::run(&steps, &ctx).await
        })
    };
    let driver = load::Driver {
        client,
        base: gateway_url.to_string(),
        route: drill.load.route.clone(),
        key: app_key.to_string(),
        timeout: drill.load.timeout,
        t0,
        sink: sink.clone(),
    };
    load::run(&drill.load, driver).await;
    let applied = steps.await.unwrap_or_default();
    let _ = stop.send(true);
    let _ = sampler.await;
    if let Some(p) = progress {
        let _ = p.await;
    }
    if !local {
        notes.extend(timeline::clean_up(&admin, sim.as_ref(), &leftovers).await);
    }
    let raw_events = admin.events(baseline).await.unwrap_or_else(|e| {
        notes.push(format!("could not read the audit events: {e}"));
        Vec::new()
    });

    let records = std::mem::take(&mut *load::lock(&sink));
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    let slos = slo::judge(drill, &records, &samples);
    let passed = slos.iter().all(|s| s.passed) && applied.iter().all(|a| a.ok);
    let secs = drill.load.duration.as_secs_f64().ceil() as u64;
    Ok(Report {
        drill: drill.name.clone(),
        description: drill.description.clone(),
        file: opts.file.display().to_string(),
        mode: String::new(),
        gateway: gateway_url.to_string(),
        admin: admin_url.to_string(),
        sim: sim_url.map(str::to_string),
        started_unix_ms,
        load: summary(&drill.load),
        passed,
        totals: report::totals(&records),
        seconds: report::seconds(&records, &samples, secs.max(1)),
        timeline: applied,
        events: report::events(&raw_events, started_unix_ms),
        slos,
        notes,
        dir: PathBuf::new(),
    })
}

fn summary(load: &Load) -> report::LoadSummary {
    report::LoadSummary {
        route: load.route.clone(),
        shape: match load.shape {
            Shape::Rate(r) => format!("rate {r}/s"),
            Shape::Concurrency(c) => format!("concurrency {c}"),
        },
        duration_secs: load.duration.as_secs_f64(),
        stream: load.stream,
        tools: load.tools,
        dialects: load
            .dialects
            .iter()
            .map(|(d, w)| (d.as_str().to_string(), *w))
            .collect(),
    }
}

/// Writes `report.json` and `report.html` into `dir` (created if needed).
fn write_report(report: &Report, dir: &Path) -> Result<(), DrillError> {
    let err = |path: PathBuf| move |source| DrillError::Write { path, source };
    std::fs::create_dir_all(dir).map_err(err(dir.to_path_buf()))?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| DrillError::Write {
        path: dir.join("report.json"),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(dir.join("report.json"), json).map_err(err(dir.join("report.json")))?;
    let html = html::render(report);
    std::fs::write(dir.join("report.html"), html).map_err(err(dir.join("report.html")))?;
    Ok(())
}
