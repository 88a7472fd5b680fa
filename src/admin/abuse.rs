//! `GET /admin/abuse`: the live abuse detector's recent flags (newest
//! first, bounded by `[abuse] max_flags`) and the quarantines in force;
//! `POST /admin/keys/{key}/unquarantine`: lift one (audited); in fleet mode
//! on every replica, with the acks under `fleet`.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::{actor, error, fleet, Admin};

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
    Query(wait): Query<fleet::Wait>,
    headers: HeaderMap,
) -> Response {
    let actor = actor(&headers);
    let (old, persist_error) = admin.live.unquarantine(&key, &actor).await;
    let mut body = match (old, &admin.fleet) {
        (Some(old), _) => json!({"key": key, "unquarantined": true, "was": old}),
        // In fleet mode it is published anyway: another replica may still
        // hold the quarantine.
        (None, Some(_)) => {
            json!({"key": key, "unquarantined": false, "note": "it was not quarantined on this replica"})
        }
        (None, None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("key `{key}` is not quarantined"),
            )
        }
    };
    let op = crate::fleet::Op::Unquarantine;
    fleet::publish(&admin, &mut body, &key, op, &actor, wait).await;
    body["persisted"] = json!(persist_error.is_none());
    if let Some(e) = persist_error {
        body["warning"] = json!(format!(
            "applied, but not persisted: {e}; a restart would bring the quarantine back"
        ));
    }
    Json(body).into_response()
}
