//! Checks that span the whole file: references, emptiness, duplicates,
//! values. Returns every problem as (key path, message).

use std::collections::BTreeSet;

use super::{AuthMode, Config, ProviderKind};

pub fn validate(cfg: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if cfg.gateway.max_concurrent_requests == 0 {
        out.push((
            "gateway.max_concurrent_requests".into(),
            "must be at least 1".into(),
        ));
    }
    if cfg.gateway.max_header_bytes < 8192 {
        out.push((
            "gateway.max_header_bytes".into(),
            "must be at least 8192".into(),
        ));
    }
    if cfg.gateway.header_read_timeout.is_zero() {
        out.push((
            "gateway.header_read_timeout".into(),
            "must be greater than 0".into(),
        ));
    }
    if cfg.gateway.body_read_timeout.is_zero() {
        out.push((
            "gateway.body_read_timeout".into(),
            "must be greater than 0".into(),
        ));
    }
    if cfg.gateway.max_concurrent_per_key == Some(0) {
        out.push((
            "gateway.max_concurrent_per_key".into(),
            "must be at least 1".into(),
        ));
    }
    for h in &cfg.gateway.admin_allowed_hosts {
        if h.is_empty() || h.contains(['/', ' ', '@']) {
            out.push((
                "gateway.admin_allowed_hosts".into(),
                format!("`{h}` is not a host name"),
            ));
        }
    }
    if cfg.gateway.max_body_bytes == 0 {
        out.push((
            "gateway.max_body_bytes".into(),
            "must be greater than 0".into(),
        ));
    }
    if cfg.auth.mode == AuthMode::Keys && cfg.auth.secret_env.is_empty() {
        out.push((
            "auth.secret_env".into(),
            "mode \"keys\" needs secret_env: the env var with the HMAC secret".into(),
        ));
    }
    if let Some(e) = &cfg.telemetry.otlp_endpoint {
        let ok = (e.starts_with("http://") || e.starts_with("https://"))
            && reqwest::Url::parse(e).is_ok();
        if !ok {
            out.push((
                "telemetry.otlp_endpoint".into(),
                format!("`{e}` is not an http(s) URL"),
            ));
        }
    }
    if cfg.responses.store_ttl.is_zero() {
        out.push((
            "responses.store_ttl".into(),
            "must be longer than 0s".into(),
        ));
    }
    if cfg.telemetry.queue_size == 0 {
        out.push(("telemetry.queue_size".into(), "must be at least 1".into()));
    }
    out.extend(fleet(&cfg.fleet));
    out.extend(super::abuse::validate(&cfg.abuse));
    let h = &cfg.health;
    if h.consecutive_failures == 0 {
        out.push((
            "health.consecutive_failures".into(),
            "must be at least 1".into(),
        ));
    }
    if !(h.error_rate > 0.0 && h.error_rate <= 1.0) {
        out.push(("health.error_rate".into(), "must be in (0, 1]".into()));
    }
    if h.window.is_zero() || h.base_ejection.is_zero() || h.max_ejection < h.base_ejection {
        out.push((
            "health.max_ejection".into(),
            "window and base_ejection must be > 0, and max_ejection >= base_ejection".into(),
        ));
    }
    for (name, p) in &cfg.providers {
        let key = format!("providers.{name}");
        let url_ok = p.base_url.starts_with("http://") || p.base_url.starts_with("https://");
        if !url_ok || reqwest::Url::parse(&p.base_url).is_err() {
            out.push((
                format!("{key}.base_url"),
                format!("`{}` is not an http(s) URL", p.base_url),
            ));
        }
        let needs_key = p.kind != ProviderKind::OpenAiCompatible;
        if needs_key && p.api_key_env.is_none() && p.api_key_file.is_none() {
            out.push((
                key.clone() + ".api_key_env",
                "this provider kind needs api_key_env or api_key_file".into(),
            ));
        }
        if p.api == crate::config::OpenAiApi::Responses && p.kind != ProviderKind::OpenAi {
            out.push((
                key.clone() + ".api",
                "`api = \"responses\"` is for `kind = \"openai\"` providers only".into(),
            ));
        }
        if p.api_key_env.is_some() && p.api_key_file.is_some() {
            out.push((
                key.clone() + ".api_key_file",
                "set api_key_env or api_key_file, not both".into(),
            ));
        }
        if p.connect_timeout.is_zero() || p.request_timeout.is_zero() {
            out.push((
                key.clone() + ".request_timeout",
                "timeouts must be greater than 0".into(),
            ));
        }
    }
    for (name, t) in &cfg.targets {
        let key = format!("targets.{name}");
        if !cfg.providers.contains_key(&t.provider) {
            out.push((
                format!("{key}.provider"),
                format!("unknown provider `{}`", t.provider),
            ));
        }
        if t.model.is_empty() {
            out.push((format!("{key}.model"), "must not be empty".into()));
        }
        if t.context_window == Some(0) {
            out.push((
                format!("{key}.context_window"),
                "must be greater than 0".into(),
            ));
        }
    }
    if cfg.routes.is_empty() {
        out.push(("routes".into(), "at least one route is needed".into()));
    }
    for (name, r) in &cfg.routes {
        let key = format!("routes.{name}");
        if r.targets.is_empty() {
            out.push((
                format!("{key}.targets"),
                "a route needs at least one target".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, t) in r.targets.iter().enumerate() {
            if !cfg.targets.contains_key(t) {
                out.push((
                    format!("{key}.targets[{i}]"),
                    format!("unknown target `{t}`"),
                ));
            }
            if !seen.insert(t) {
                out.push((
                    format!("{key}.targets[{i}]"),
                    format!("target `{t}` is listed twice"),
                ));
            }
        }
        if r.max_attempts == Some(0) {
            out.push((format!("{key}.max_attempts"), "must be at least 1".into()));
        }
        if r.first_token_timeout.is_zero() {
            out.push((
                format!("{key}.first_token_timeout"),
                "must be greater than 0".into(),
            ));
        }
        if r.header_timeout.is_zero() {
            out.push((
                format!("{key}.header_timeout"),
                "must be greater than 0".into(),
            ));
        }
    }
    out
}

/// Things a valid table may get wrong, for `switchyard check` to warn
/// about: a route none of whose targets states its `context_window` can
/// fail a long prompt over only blindly, and answers it with the vendor's
/// 400 when every target refused it.
pub fn warnings(cfg: &Config) -> Vec<String> {
    cfg.routes
        .iter()
        .filter(|(_, r)| {
            r.targets
                .iter()
                .all(|t| cfg.targets.get(t).is_none_or(|t| t.context_window.is_none()))
        })
        .map(|(name, _)| {
            format!(
                "route `{name}`: no target states its context_window (each is planned as {}); set them so long prompts go to a target that fits",
                super::defaults::CONTEXT_WINDOW
            )
        })
        .collect()
}

fn fleet(f: &super::FleetConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(url) = &f.redis_url {
        let parsed = reqwest::Url::parse(url);
        if !url.starts_with("redis://") || parsed.is_err() {
            out.push((
                "fleet.redis_url".into(),
                "must be a redis://HOST:PORT/DB URL".into(),
            ));
        }
    }
    let name_ok = !f.name.is_empty()
        && f.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        out.push((
            "fleet.name".into(),
            "must be non-empty letters, digits, `-`, `_` or `.`".into(),
        ));
    }
    if f.replica
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > 128)
    {
        out.push(("fleet.replica".into(), "must be 1 to 128 characters".into()));
    }
    if f.heartbeat_ttl < std::time::Duration::from_secs(1) {
        out.push(("fleet.heartbeat_ttl".into(), "must be at least 1s".into()));
    }
    if f.ack_timeout.is_zero() {
        out.push(("fleet.ack_timeout".into(), "must be greater than 0".into()));
    }
    if !(f.max_ejected_share > 0.0 && f.max_ejected_share <= 1.0) {
        out.push((
            "fleet.max_ejected_share".into(),
            "must be more than 0 and at most 1".into(),
        ));
    }
    if f.rate_window < std::time::Duration::from_secs(1)
        || f.rate_window > std::time::Duration::from_secs(3600)
    {
        out.push((
            "fleet.rate_window".into(),
            "must be between 1s and 1h".into(),
        ));
    }
    out
}
