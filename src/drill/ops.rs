//! The drill's control connections: the gateway's admin API (ops actions,
//! the live table, the audit trail) and the simulator's `/_sim` knobs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::DrillError;
use crate::provider::fault::Fault;
use crate::sim::{Knobs, Vendor};

/// Control calls give up after this long.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for control calls (admin, simulator), never for load.
pub fn control_client(no_proxy: bool) -> Result<reqwest::Client, DrillError> {
    let mut b = reqwest::Client::builder().timeout(CONTROL_TIMEOUT);
    if no_proxy {
        b = b.no_proxy();
    }
    b.build()
        .map_err(|e| DrillError::Start(format!("HTTP client: {e}")))
}

/// The gateway's admin API, with its bearer token.
#[derive(Clone)]
pub struct Admin {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
    /// Sent as `x-switchyard-actor`, so the audit trail says who acted.
    pub actor: String,
}

/// One target as the live table describes it.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    pub provider: String,
    pub model: String,
}

/// The parts of `GET /admin/routes` a drill uses.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub routes: BTreeMap<String, Vec<String>>,
    pub targets: BTreeMap<String, TargetInfo>,
}

/// A reading of every target's attempt counter and state.
#[derive(Debug, Clone, Default)]
pub struct TargetReading {
    pub requests: u64,
    pub state: String,
}

impl Admin {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header("x-switchyard-actor", &self.actor);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", self.url))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            200..=299 => Ok(v),
            401 => Err("the admin API refused the token (set SWITCHYARD_ADMIN_TOKEN)".into()),
            s => Err(format!(
                "admin API answered {s}: {}",
                v.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
            )),
        }
    }

    /// The live table: routes (target order) and targets.
    pub async fn table(&self) -> Result<Table, String> {
        let v = self
            .call(reqwest::Method::GET, "/admin/routes", None)
            .await?;
        let mut t = Table::default();
        for (name, r) in v
            .get("routes")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let targets = r
                .get("targets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            t.routes.insert(name.clone(), targets);
        }
        for (name, x) in v
            .get("targets")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| {
                x.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            t.targets.insert(
                name.clone(),
                TargetInfo {
                    provider: s("provider"),
                    model: s("model"),
                },
            );
        }
        Ok(t)
    }

    /// Every target's attempt counter and state, right now.
    pub async fn readings(&self) -> Result<BTreeMap<String, TargetReading>, String> {
        let v = self
            .call(reqwest::Method::GET, "/admin/routes", None)
            .await?;
        Ok(v.get("targets")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, x)| {
                let reading = TargetReading {
                    requests: x.get("requests").and_then(Value::as_u64).unwrap_or(0),
                    state: x
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string(),
                };
                (name.clone(), reading)
            })
            .collect())
    }

    pub async fn suspend(
        &self,
        target: &str,
        reason: &str,
        for_: Option<Duration>,
    ) -> Result<(), String> {
        let mut body = serde_json::json!({ "reason": reason });
        if let Some(d) = for_ {
            body["for"] = Value::String(humantime::format_duration(d).to_string());
        }
        let path = format!("/admin/targets/{target}/suspend");
        self.call(reqwest::Method::POST, &path, Some(body))
            .await
            .map(drop)
    }

    /// Returns whether the target was suspended.
    pub async fn resume(&self, target: &str) -> Result<bool, String> {
        let path = format!("/admin/targets/{target}/resume");
        let v = self.call(reqwest::Method::POST, &path, None).await?;
        Ok(v.get("resumed") == Some(&Value::Bool(true)))
    }

    /// Injects `fault` at the gateway's provider boundary for `target`,
    /// expiring after `ttl` (`POST /admin/targets/{target}/chaos`).
    pub async fn set_fault(
        &self,
        target: &str,
        fault: &Fault,
        ttl: Duration,
    ) -> Result<(), String> {
        let body = serde_json::json!({
            "fault": fault,
            "for": humantime::format_duration(ttl).to_string(),
        });
        let path = format!("/admin/targets/{target}/chaos");
        self.call(reqwest::Method::POST, &path, Some(body))
            .await
            .map(drop)
    }

    /// Clears the injected fault of `target`, if any.
    pub async fn clear_fault(&self, target: &str) -> Result<(), String> {
        let path = format!("/admin/targets/{target}/chaos");
        self.call(reqwest::Method::DELETE, &path, None)
            .await
            .map(drop)
    }

    pub async fn reload(&self) -> Result<(), String> {
        self.call(reqwest::Method::POST, "/admin/reload", None)
            .await
            .map(drop)
    }

    /// Audit events after `since` (a sequence number).
    pub async fn events(&self, since: u64) -> Result<Vec<Value>, String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/admin/events?since={since}"),
                None,
            )
            .await?;
        Ok(v.get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
}

/// The simulator's control API.
#[derive(Clone)]
pub struct Sim {
    pub http: reqwest::Client,
    pub url: String,
}

impl Sim {
    async fn check(
        resp: Result<reqwest::Response, reqwest::Error>,
        url: &str,
    ) -> Result<(), String> {
        let resp = resp.map_err(|e| format!("cannot reach the simulator at {url}: {e}"))?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        Err(format!(
            "simulator answered {status}: {}",
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("no message")
        ))
    }

    fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// Whether the simulator answers its control API.
    pub async fn ping(&self) -> Result<(), String> {
        let url = format!("{}/_sim/knobs", self.base());
        Self::check(self.http.get(&url).send().await, &self.url).await
    }

    pub async fn set(&self, vendor: Vendor, model: &str, knobs: &Knobs) -> Result<(), String> {
        let url = format!("{}/_sim/knobs/{vendor}/{model}", self.base());
        Self::check(self.http.put(&url).json(knobs).send().await, &self.url).await
    }

    pub async fn clear_all(&self) -> Result<(), String> {
        let url = format!("{}/_sim/knobs", self.base());
        Self::check(self.http.delete(&url).send().await, &self.url).await
    }
}

/// Where `target` lives in the simulator: the provider's base URL path
/// names the vendor in the demo table (`http://sim/anthropic`); against a
/// running gateway the provider's name must be a simulator vendor.
pub fn sim_location(
    target: &str,
    table: &Table,
    config: Option<&crate::config::Config>,
) -> Result<(Vendor, String), String> {
    let info = table
        .targets
        .get(target)
        .ok_or_else(|| format!("no target `{target}` in the gateway's table"))?;
    let from_url = config
        .and_then(|c| c.providers.get(&info.provider))
        .and_then(|p| {
            let url = p.base_url.as_str();
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            rest.split('/').nth(1).and_then(Vendor::parse)
        });
    from_url
        .or_else(|| Vendor::parse(&info.provider))
        .map(|v| (v, info.model.clone()))
        .ok_or_else(|| {
            format!(
                "cannot tell where target `{target}` (provider `{}`) lives in the simulator; set sim_model = \"vendor/model\"",
                info.provider
            )
        })
}
