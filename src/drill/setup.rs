//! Setting the stage: the self-contained simulator and gateway (the demo
//! table plus the drill's `[demo]` overrides), and the preflight check of a
//! drill against the gateway's live table.

use std::net::SocketAddr;

use super::format::{Action, Drill, Injection, InjectionKind, SloKind};
use super::{ops, timeline, DrillError};

/// The demo table pointed at `sim`, with the drill's `[demo]` merged in,
/// and chaos enabled when the drill injects faults in the gateway.
pub fn demo_config(sim: SocketAddr, drill: &Drill) -> Result<crate::config::Config, String> {
    let text = crate::demo::DEMO_ROUTES.replace("{sim}", &sim.to_string());
    let chaos = drill.uses(InjectionKind::Gateway);
    if drill.demo.is_none() && !chaos {
        return crate::config::load_str("<demo>", &text, Vec::new()).map_err(|e| e.to_string());
    }
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| format!("demo table: {e}"))?;
    if let Some(overlay) = &drill.demo {
        super::section::merge(&mut table, overlay);
    }
    if chaos {
        let on: toml::Table =
            toml::from_str("[chaos]\nenabled = true").map_err(|e| e.to_string())?;
        super::section::merge(&mut table, &on);
    }
    let merged = toml::to_string(&table).map_err(|e| format!("demo: {e}"))?;
    crate::config::load_str("<demo table + [demo]>", &merged, Vec::new()).map_err(|e| {
        format!(
            "demo: the demo table with these overrides is invalid: {}",
            e.problems().join("; ")
        )
    })
}

/// The self-contained simulator and gateway, stopped when the drill ends.
pub struct InProcess {
    pub gateway: crate::app::Gateway,
    pub sim_task: tokio::task::JoinHandle<()>,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub async fn start_in_process(
    drill: &Drill,
    token: &str,
) -> Result<(InProcess, crate::config::Config), DrillError> {
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .map_err(|e| DrillError::Start(format!("simulator: {e}")))?;
    let sim_addr = listener
        .local_addr()
        .map_err(|e| DrillError::Start(e.to_string()))?;
    let sim = crate::sim::Simulator::new();
    let sim_task = tokio::spawn(async move { sim.serve(listener).await });
    let config = demo_config(sim_addr, drill).map_err(DrillError::Start)?;
    let opts = crate::app::Options {
        path: None,
        env: crate::demo::env(),
        listen: loopback(),
        admin_listen: loopback(),
        admin_token: token.to_string(),
    };
    match crate::app::start(config.clone(), opts).await {
        Ok(gateway) => Ok((InProcess { gateway, sim_task }, config)),
        Err(e) => {
            sim_task.abort();
            Err(DrillError::Start(e.to_string()))
        }
    }
}

/// The simulator URL of the in-process demo table (from a provider's base URL).
pub fn ip_sim_url(config: &crate::config::Config) -> Option<String> {
    config.providers.values().find_map(|p| {
        let (scheme, rest) = p.base_url.split_once("://")?;
        Some(format!("{scheme}://{}", rest.split('/').next()?))
    })
}

/// Checks the drill against the live table; returns where each target
/// faulted through the simulator lives there.
pub fn preflight(
    drill: &Drill,
    table: &ops::Table,
    config: Option<&crate::config::Config>,
    have_sim: bool,
) -> Result<timeline::Locations, DrillError> {
    let mut p = Vec::new();
    let known: Vec<&str> = table.targets.keys().map(String::as_str).collect();
    let target = |key: String, t: &str, p: &mut Vec<String>| {
        if !table.targets.contains_key(t) {
            p.push(format!(
                "{key}: no target `{t}` in the gateway's table (targets: {})",
                known.join(", ")
            ));
        }
    };
    if !table.routes.contains_key(&drill.load.route) {
        let routes: Vec<&str> = table.routes.keys().map(String::as_str).collect();
        p.push(format!(
            "load.route: no route `{}` in the gateway's table (routes: {})",
            drill.load.route,
            routes.join(", ")
        ));
    }
    let need_sim = |i: usize, p: &mut Vec<String>| {
        if !have_sim {
            p.push(format!(
                "timeline[{i}]: simulator faults need the simulator: pass --sim URL (or use via = \"gateway\")"
            ));
        }
    };
    let mut locations = timeline::Locations::new();
    for s in &drill.timeline {
        let key = format!("timeline[{}].target", s.index);
        match &s.action {
            Action::Fault {
                target: t,
                injection: Injection::Sim { sim_model, .. },
            } => {
                need_sim(s.index, &mut p);
                target(key, t, &mut p);
                if let Some(loc) = sim_model {
                    locations.insert(t.clone(), loc.clone());
                } else if table.targets.contains_key(t) {
                    match ops::sim_location(t, table, config) {
                        Ok(loc) => {
                            locations.insert(t.clone(), loc);
                        }
                        Err(e) => p.push(format!("timeline[{}].sim_model: {e}", s.index)),
                    }
                }
            }
            Action::Fault { target: t, .. } => target(key, t, &mut p),
            Action::Clear { target: t, via } => {
                if *via == Some(InjectionKind::Sim) {
                    need_sim(s.index, &mut p);
                }
                if let Some(t) = t {
                    target(key, t, &mut p);
                    if let Ok(loc) = ops::sim_location(t, table, config) {
                        locations.entry(t.clone()).or_insert(loc);
                    }
                }
            }
            Action::Suspend { target: t, .. } | Action::Resume { target: t } => {
                target(key, t, &mut p)
            }
            Action::Reload => {}
        }
    }
    for (i, slo) in drill.slos.iter().enumerate() {
        if let SloKind::DrainTime { target: t, .. } | SloKind::ServedShare { target: t, .. } =
            &slo.kind
        {
            target(format!("slo[{i}].target"), t, &mut p);
        }
    }
    if p.is_empty() {
        Ok(locations)
    } else {
        Err(DrillError::Preflight(p))
    }
}
