//! OpenAI error shapes: encoded for apps, decoded and classified from
//! vendors (structured `code` / `type` first).

use super::*;

/// OpenAI's status, `type` and `code` for each error kind.
fn error_meta(kind: ErrorKind) -> (u16, &'static str, Option<&'static str>) {
    match kind {
        ErrorKind::InvalidRequest => (400, "invalid_request_error", None),
        ErrorKind::Authentication => (401, "invalid_request_error", Some("invalid_api_key")),
        ErrorKind::Permission => (403, "permission_error", None),
        ErrorKind::NotFound => (404, "invalid_request_error", Some("model_not_found")),
        ErrorKind::RequestTooLarge => (413, "invalid_request_error", Some("request_too_large")),
        ErrorKind::RequestTimeout => (408, "invalid_request_error", Some("request_timeout")),
        ErrorKind::UnsupportedMediaType => (415, "invalid_request_error", None),
        ErrorKind::RateLimited => (429, "rate_limit_exceeded", Some("rate_limit_exceeded")),
        ErrorKind::Overloaded => (503, "server_error", Some("overloaded")),
        ErrorKind::Upstream => (502, "server_error", None),
        ErrorKind::Timeout => (504, "server_error", Some("timeout")),
        ErrorKind::Internal => (500, "server_error", None),
    }
}

pub fn encode_error(error: &ApiError) -> (u16, Vec<u8>) {
    let (status, kind, code) = error_meta(error.kind);
    let code = error.code.or(code);
    let body = json!({"error": {"message": error.message, "type": kind, "param": error.param, "code": code}});
    (
        status,
        serde_json::to_vec(&body).expect("serialize JSON value"),
    )
}

/// Reads an OpenAI `error` object and classifies it from `code` and `type`
/// first; `status` is the HTTP status (absent for an in-stream error).
pub(in crate::dialect) fn vendor_error(status: Option<u16>, err: &Value) -> VendorError {
    let code = err.get("code").and_then(Value::as_str);
    let kind = err.get("type").and_then(Value::as_str);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("upstream error")
        .to_string();
    let class = match (code.unwrap_or_default(), kind.unwrap_or_default()) {
        ("insufficient_quota", _) | (_, "insufficient_quota") => VendorClass::QuotaExhausted,
        ("account_deactivated", _) => VendorClass::AccountDisabled,
        ("invalid_api_key", _) => VendorClass::Credentials,
        ("model_not_found", _) if status == Some(403) => VendorClass::ModelBlocked,
        ("model_not_found", _) => VendorClass::ModelUnavailable,
        ("context_length_exceeded", _) => VendorClass::ContextLength,
        ("content_policy_violation" | "content_filter", _) => VendorClass::ContentPolicy,
        ("rate_limit_exceeded", _) | (_, "requests" | "tokens") => VendorClass::RateLimited,
        _ => taxonomy::fallback(status, &message),
    };
    VendorError::new(class, code.or(kind).map(str::to_owned), message)
}

pub fn decode_error(status: u16, body: &[u8]) -> VendorError {
    match util::error_json(body).as_ref().and_then(|v| v.get("error")) {
        Some(err) if err.is_object() => vendor_error(Some(status), err),
        _ => VendorError::opaque(status),
    }
}
