//! The admin listener answers only to the names it is meant to be reached
//! by: loopback names, plus `[gateway] admin_allowed_hosts`. A page that
//! rebinds its own DNS name to 127.0.0.1 makes the browser send that name
//! as `Host`, so it is refused before any handler (`/metrics` included)
//! runs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::StatusCode;

use crate::state::Live;

/// Names every admin listener answers to, whatever its port.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Middleware: 421 for a `Host` (or HTTP/2 `:authority`) that is not one
/// of ours. A request without one (HTTP/1.0 probes) is not a browser's.
pub async fn check(State(live): State<Arc<Live>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(h) if !allowed(&h, &live.load().config.gateway.admin_allowed_hosts) => {
            super::error(
                StatusCode::MISDIRECTED_REQUEST,
                "this Host is not served by the admin listener; add it to [gateway] admin_allowed_hosts",
            )
        }
        _ => next.run(req).await,
    }
}

/// `host` (with or without a port) is loopback or one of `extra`.
fn allowed(host: &str, extra: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .map_or(host.as_str(), |(ip, _)| &host[..ip.len() + 2]),
        None => host.split_once(':').map_or(host.as_str(), |(n, _)| n),
    };
    LOOPBACK.contains(&name)
        || extra
            .iter()
            .any(|e| e.eq_ignore_ascii_case(name) || e.eq_ignore_ascii_case(&host))
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn loopback_names_with_any_port_and_configured_names_only() {
        for ok in [
            "localhost",
            "LOCALHOST:9901",
            "127.0.0.1:1",
            "[::1]:9901",
            "[::1]",
        ] {
            assert!(allowed(ok, &[]), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9901",
            "127.0.0.1.evil.example",
            "[::2]:9901",
            "localhost.evil:80",
        ] {
            assert!(!allowed(bad, &[]), "{bad}");
        }
        let extra = vec!["ops.internal".to_string()];
        assert!(allowed("ops.internal:9901", &extra));
        assert!(!allowed("other.internal:9901", &extra));
    }
}
