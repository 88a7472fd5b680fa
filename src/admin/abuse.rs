//! `GET /admin/abuse`: the live abuse detector's recent flags (newest
//! first, bounded by `[abuse] max_flags`) and the quarantines in force;
//! `POST /admin/keys/{key}/unquarantine`: lift one (audited).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::{actor, error, Admin};

pub(super) async fn view(State(admin): State<Admin>) -> Json<serde_json::Value> {
    let guard = &admin.live.abuse;
    let policy = guard.policy();
    Json(json!({
        "mode": policy.mode,
        "action": policy.action,
        "throttle_rpm": policy.throttle_rpm.get(),
        "scope": policy.scope,
        "flags": guard.flags(),
        "quarantines": guard.quarantines(),
        "records_dropped": guard.dropped(),
    }))
}

pub(super) async fn unquarantine(
    State(admin): State<Admin>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (old, persist_error) = admin.live.unquarantine(&key, &actor(&headers)).await;
    let Some(old) = old else {
        return error(
            StatusCode::NOT_FOUND,
            format!("key `{key}` is not quarantined"),
        );
    };
    let mut body = json!({"key": key, "unquarantined": true, "was": old});
    body["persisted"] = json!(persist_error.is_none());
    if let Some(e) = persist_error {
        body["warning"] = json!(format!(
            "applied, but not persisted: {e}; a restart would bring the quarantine back"
        ));
    }
    Json(body).into_response()
}
